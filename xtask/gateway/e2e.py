#!/usr/bin/env python3
"""End-to-end tests of `vouch gateway` in front of a real Python FastMCP server, with real clients.

    python e2e.py --vouch VOUCH --client GATEWAY_CLIENT --server SERVER_PY --work DIR

Run by `cargo xtask ci gateway` (xtask/src/gateway.rs), in the interop venv (envoys 0.3.0,
envoys-mcp 0.1.1, mcp<2). Everything runs as real processes on 127.0.0.1:

- the upstream: examples/gateway/server.py (FastMCP: `whoami` returns the X-Vouch-Identity it
  received, `slow_count` reports progress as it counts, `delete_records` is destructive), run
  through recording_upstream.py, which records the head of every request it receives;
- two `vouch gateway`s in front of it: one with `--profile envoys` and `--token-header
  X-Agent-Token` for the Python clients, one with the MCP profile for rmcp's SigningClient
  (a gateway verifies one signature profile, and the two clients sign different ones);
- clients: the `mcp` package's streamable HTTP client with envoys-mcp's EnvoysAuth and the token
  header; vouch-rmcp's SigningClient (the `gateway_client` example); raw httpx requests signed
  here for the requests no real client would send (forged, tampered, replayed, stale, ...).

For each upstream mode (JSON responses or SSE, stateless or with sessions) every case prints one
line, `ok` or `FAIL`, and the run exits 1 if any case failed (2 on bad usage or a missing
dependency). Every wait is bounded and every process is stopped in `finally`.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import json
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

try:
    import httpx
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from envoys import Envoys
    from envoys_mcp import EnvoysAuth
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    from common import (ACCEPT, ENVOYS_COMPONENTS, INITIALIZE, PATH, RECORDER, STARTUP_TIMEOUT,
                        CaseFailure, Proc, Report, Upstream, VouchCli, b64, check, compact,
                        envoys_client, header_values, messages, sign, sse_messages, tool_text,
                        tools_call)
except ImportError as e:  # a missing dependency is a failure, never a skip
    print(f"e2e: missing Python dependency: {e} (run through `cargo xtask ci gateway`, which "
          "makes the venv)", file=sys.stderr)
    sys.exit(2)

# Identities. The keyids are address-style: the gateway's identity is the address.
DOMAIN = "e2e.example"
ALICE = "https://envoys.me/agents/alice@e2e.example"         # the Python MCP client
BOB = "https://envoys.me/agents/bob@e2e.example"             # holds no token of his own
RMCP = "https://agents.e2e.example/agents/rmcp@e2e.example"  # rmcp's SigningClient
FLOOD = "https://envoys.me/agents/flood@e2e.example"         # for the rate limit
PINNED_A = "https://envoys.me/agents/pinned@e2e.example"     # one identity, two keyids...
PINNED_B = "https://mirror.e2e.example/agents/pinned@e2e.example"  # ...and two keys
MALLORY = "https://envoys.me/agents/mallory@elsewhere.example"  # known key, not allowlisted
GHOST = "https://envoys.me/agents/ghost@e2e.example"         # no key configured
AGENTS = {"alice": ALICE, "bob": BOB, "rmcp": RMCP, "flood": FLOOD, "pinned_a": PINNED_A,
          "pinned_b": PINNED_B, "mallory": MALLORY}
FORGED = "admin@evil"
AUDIENCE = "https://gateway.e2e.example"
TOKEN_HEADER = "x-agent-token"  # the envoys-profile gateway's --token-header

# slow_count in the progress case: 4 steps of 400 ms. The first progress event must reach the
# client at least PROGRESS_LEAD before the result (a buffered stream gives them together).
SLOW_N, SLOW_DELAY_MS = 4, 400
PROGRESS_LEAD = 0.8
DRAIN_N, DRAIN_DELAY_MS = 8, 250  # the call in flight during SIGTERM: 2 s
GATEWAY_DRAIN = 10.0  # vouch gateway's drain window after SIGTERM

CALL_TIMEOUT = 20.0
HTTP_TIMEOUT = httpx.Timeout(15.0)

MODES = [
    ("json+stateless", ["--json", "--stateless"]),
    ("json+sessions", ["--json"]),
    ("sse+stateless", ["--stateless"]),
    ("sse+sessions", []),
]


# --- keys, tokens, processes -------------------------------------------------------------------


@dataclass
class Setup(VouchCli):
    vouch: Path
    client: Path
    server: Path
    python: str
    work: Path
    keys: dict[str, Ed25519PrivateKey] = field(default_factory=dict)
    pubs: dict[str, str] = field(default_factory=dict)
    root_hex: str = ""
    tokens: dict[str, str] = field(default_factory=dict)
    expired_at: float = 0.0

    def prepare(self) -> None:
        self.root_hex = self.keygen("root")
        self.keygen("other_root")
        for name in AGENTS:
            self.keygen(name)
        self.keygen("ghost")
        # The expiring token first: by the time the table runs it has expired.
        self.mint("expired", "--tools", "whoami", "--bind", ALICE, "--ttl", "1")
        self.expired_at = time.time() + 1
        common = ["--ttl", "900", "--audience", AUDIENCE]
        self.mint("alice", "--tools", "whoami,slow_count", "--bind", ALICE, *common)
        self.mint("alice_full", "--tools", "whoami,slow_count,delete_records",
                  "--op", "delete_records:delete", "--op", "whoami:execute",
                  "--op", "slow_count:execute", "--bind", ALICE, *common)
        self.mint("alice_read_delete", "--tools", "delete_records", "--op",
                  "delete_records:read", "--bind", ALICE, *common)
        self.mint("bob", "--tools", "whoami,slow_count", "--bind", BOB, *common)
        self.mint("pinned", "--tools", "whoami", *common)
        self.mint("flood", "--tools", "whoami", "--bind", FLOOD, *common)
        self.mint("other_root", "--tools", "whoami", "--bind", ALICE, "--ttl", "900",
                  root="other_root")
        self.mint("elsewhere", "--tools", "whoami", "--bind", ALICE, "--ttl", "900",
                  "--audience", "https://elsewhere.example")
        # rmcp's SigningClient seals the token itself.
        self.mint("rmcp", "--tools", "whoami,slow_count", "--bind", RMCP, *common, seal=False)
        (self.work / "rmcp.token").write_text(self.tokens["rmcp"])

    def envoys(self, name: str) -> Envoys:
        """An envoys client signing as agent `name` (offline: the gateway knows the key)."""
        return envoys_client(self.keys[name], AGENTS[name])


class Gateway:
    """A running `vouch gateway`."""

    def __init__(self, setup: Setup, name: str, upstream: str, work: Path, *extra: str,
                 tokens: bool = True) -> None:
        """`tokens=False`: identity-only mode (no `--root`)."""
        args = [str(setup.vouch), "gateway", "--listen", "127.0.0.1:0", "--upstream", upstream,
                "--allow", f"*@{DOMAIN}", "--log-format", "json",
                "--pins", str(work / f"{name}-pins.json")]
        if tokens:
            args += ["--root", setup.root_hex, "--audience", AUDIENCE,
                     "--op", "delete_records:delete"]
        for agent, keyid in AGENTS.items():
            args += ["--agent", f"{keyid}={setup.pubs[agent]}"]
        self.proc = Proc(f"gateway {name}", args + list(extra), work / f"gateway-{name}.log")
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    async def start(self) -> None:
        line = await self.proc.wait_line("vouch gateway: listening on", STARTUP_TIMEOUT)
        listen = line.split("listening on http://127.0.0.1:", 1)[1]
        self.port = int(listen.split("/", 1)[0])
        # Ready when /healthz answers (unsigned, without the upstream).
        deadline = time.monotonic() + STARTUP_TIMEOUT
        async with httpx.AsyncClient(trust_env=False, timeout=2.0) as http:
            while True:
                try:
                    r = await http.get(f"http://127.0.0.1:{self.port}/healthz")
                    if r.status_code == 200 and r.json() == {"status": "ok"}:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or self.proc.popen.poll() is not None:
                    raise RuntimeError(f"{self.proc.name} not ready: {self.proc.tail()}")
                await asyncio.sleep(0.05)


# --- raw signed requests ------------------------------------------------------------------------

class Raw:
    """Signed raw requests to a gateway as one agent, in a session when the upstream keeps them."""

    def __init__(self, setup: Setup, http: httpx.AsyncClient, gateway: Gateway, agent: str,
                 token: str | None, stateless: bool) -> None:
        self.setup, self.http, self.gateway = setup, http, gateway
        self.key, self.keyid = setup.keys[agent], AGENTS[agent]
        self.token, self.stateless = token, stateless
        self.session: str | None = None

    def headers(self, body: bytes, extra: dict[str, str] | None = None, **sign_args) -> dict:
        base = {"content-type": "application/json", "accept": ACCEPT}
        if self.token is not None:
            base[TOKEN_HEADER] = self.token
        if self.session is not None:
            base["mcp-session-id"] = self.session
        base.update(extra or {})
        return sign("POST", body, self.key, self.keyid, headers=base, **sign_args)

    async def post(self, message: dict, extra: dict[str, str] | None = None,
                   **sign_args) -> httpx.Response:
        body = compact(message)
        return await self.http.post(self.gateway.url, content=body,
                                    headers=self.headers(body, extra, **sign_args))

    async def delete(self) -> httpx.Response:
        """Ends the session: a signed DELETE (the envoys profile digests the empty body too)."""
        base = {TOKEN_HEADER: self.token or "", "mcp-session-id": self.session or ""}
        return await self.http.request("DELETE", self.gateway.url, content=b"",
                                       headers=sign("DELETE", b"", self.key, self.keyid,
                                                    headers=base))

    async def open(self) -> None:
        """initialize (and notifications/initialized) when the upstream keeps sessions."""
        if self.stateless:
            return
        r = await self.post(INITIALIZE)
        check(r.status_code == 200, f"initialize: {r.status_code} {r.text[:200]}")
        self.session = r.headers.get("mcp-session-id")
        check(bool(self.session), f"no Mcp-Session-Id from initialize: {dict(r.headers)}")
        r = await self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        check(r.status_code == 202, f"notifications/initialized: {r.status_code} {r.text[:200]}")


# --- the cases ----------------------------------------------------------------------------------


@dataclass
class Mode:
    name: str
    stateless: bool
    sse: bool
    setup: Setup
    http: httpx.AsyncClient
    upstream: Upstream
    envoys_gw: Gateway
    mcp_gw: Gateway
    work: Path

    def raw(self, agent: str = "alice", token: str | None = "alice",
            gateway: Gateway | None = None) -> Raw:
        return Raw(self.setup, self.http, gateway or self.envoys_gw, agent,
                   None if token is None else self.setup.tokens.get(token, token), self.stateless)


def session_for(mode: Mode, token: str, *, agent: str = "alice",
                headers: dict[str, str] | None = None, gateway: Gateway | None = None):
    """The `mcp` package's streamable HTTP client, signing with EnvoysAuth, token in a header."""
    all_headers = {TOKEN_HEADER: mode.setup.tokens[token], **(headers or {})}
    return streamablehttp_client((gateway or mode.envoys_gw).url, headers=all_headers,
                                 timeout=CALL_TIMEOUT, auth=EnvoysAuth(mode.setup.envoys(agent)))


async def with_session(mode: Mode, token: str, body: Callable[[ClientSession], Awaitable[Any]],
                       **kwargs) -> Any:
    async def run() -> Any:
        async with session_for(mode, token, **kwargs) as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await body(session)
    return await asyncio.wait_for(run(), CALL_TIMEOUT)


def text_of(result) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


async def case_allowed_call(mode: Mode) -> str:
    async def body(s: ClientSession):
        return await s.call_tool("whoami", {})
    before = len(mode.upstream.requests())
    result = await with_session(mode, "alice", body)
    check(not result.isError, f"whoami failed: {result}")
    who = text_of(result)
    check(who == "alice@e2e.example", f"whoami returned {who!r}, want alice@e2e.example")
    seen = mode.upstream.requests()[before:]
    check(seen, "the upstream received nothing")
    for r in seen:
        check(header_values(r, "x-vouch-identity") == ["alice@e2e.example"],
              f"{r['method']} upstream X-Vouch-Identity {header_values(r, 'x-vouch-identity')}")
        check(header_values(r, "x-vouch-keyid") == [ALICE], f"X-Vouch-Keyid {r['headers']}")
        grants = header_values(r, "x-vouch-grants")
        check(len(grants) == 1, f"X-Vouch-Grants {grants}")
        facts = json.loads(base64.urlsafe_b64decode(grants[0] + "=" * (-len(grants[0]) % 4)))
        check(sorted(facts["tools"]) == ["slow_count", "whoami"] and facts["holder"] == ALICE,
              f"X-Vouch-Grants facts {facts}")
        names = {k for k, _ in r["headers"]}
        check(not names & {TOKEN_HEADER, "signature", "signature-input"},
              f"forwarded fields that must be removed: {sorted(names)}")
    return (f"200 through the mcp client (EnvoysAuth); whoami = {who}; the upstream got "
            f"X-Vouch-Identity/Keyid/Grants on all {len(seen)} requests, no token, no signature")


async def case_tools_list(mode: Mode) -> str:
    async def body(s: ClientSession):
        return sorted(t.name for t in (await s.list_tools()).tools)
    got = {t: await with_session(mode, t, body)
           for t in ("alice", "alice_full", "alice_read_delete")}
    want = {"alice": ["slow_count", "whoami"],
            "alice_full": ["delete_records", "slow_count", "whoami"],
            "alice_read_delete": []}
    check(got == want, f"tools/list {got}, want {want}")
    return ("whoami+slow_count token sees 2 tools; with delete_records:delete 3; "
            "with delete_records:read only 0")


async def case_destructive_granted(mode: Mode) -> str:
    async def body(s: ClientSession):
        return await s.call_tool("delete_records", {"table": "orders"})
    result = await with_session(mode, "alice_full", body)
    check(not result.isError and text_of(result) == "deleted every record of orders",
          f"delete_records: {result}")
    return "delete_records with a token granting delete_records:delete: 200"


async def case_mcp_client_forbidden(mode: Mode) -> str:
    async def body(s: ClientSession):
        return await s.call_tool("delete_records", {"table": "orders"})
    try:
        result = await with_session(mode, "alice", body)
    except Exception as e:  # noqa: BLE001 - the refusal surfaces as an httpx error in a group
        statuses = [x.response.status_code for x in leaves(e)
                    if isinstance(x, httpx.HTTPStatusError)]
        check(statuses == [403], f"expected one HTTP 403, got {statuses}: {e!r}")
        return "the mcp client's delete_records without the grant fails with HTTP 403"
    raise CaseFailure(f"delete_records without the grant was served: {result}")


def leaves(e: BaseException) -> list[BaseException]:
    if isinstance(e, BaseExceptionGroup):
        return [leaf for sub in e.exceptions for leaf in leaves(sub)]
    return [e]


async def case_progress(mode: Mode) -> str:
    events: list[tuple[float, float]] = []
    start = time.monotonic()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        events.append((time.monotonic(), progress))

    async def body(s: ClientSession):
        nonlocal start
        start = time.monotonic()
        result = await s.call_tool("slow_count", {"n": SLOW_N, "delay_ms": SLOW_DELAY_MS},
                                   progress_callback=on_progress)
        return result, time.monotonic()
    result, done = await with_session(mode, "alice", body)
    check(text_of(result) == f"counted to {SLOW_N}", f"slow_count: {result}")
    total = SLOW_N * SLOW_DELAY_MS / 1000
    check(done - start >= total * 0.9, f"the result came after {done - start:.2f} s, the tool "
          f"sleeps {total} s")
    if not mode.sse:
        # No stream in JSON-response mode: the upstream (FastMCP) drops the notifications and
        # answers once; the gateway passes that one JSON body.
        check(events == [], f"progress in JSON-response mode: {events}")
        raw = mode.raw()
        await raw.open()
        r = await raw.post(tools_call("slow_count", {"n": 2, "delay_ms": 10}, progress="p"))
        msgs = messages(r)
        check(r.status_code == 200 and r.headers.get("content-type", "")
              .startswith("application/json") and len(msgs) == 1
              and tool_text(msgs, 1) == "counted to 2",
              f"raw JSON response {r.status_code} {r.headers.get('content-type')} {msgs}")
        return (f"JSON-response mode: no progress events, one application/json result after "
                f"{done - start:.2f} s")
    check([p for _, p in events] == [float(i) for i in range(1, SLOW_N + 1)],
          f"progress events {events}")
    lead = done - events[0][0]
    check(lead >= PROGRESS_LEAD, f"first progress only {lead:.2f} s before the result "
          f"(want >= {PROGRESS_LEAD} s): the stream was buffered")
    return (f"first progress at {events[0][0] - start:.2f} s, result at {done - start:.2f} s "
            f"({lead:.2f} s later), {len(events)} events in order")


async def case_forged_unsigned(mode: Mode) -> str:
    async def body(s: ClientSession):
        return text_of(await s.call_tool("whoami", {}))
    before = len(mode.upstream.requests())
    who = await with_session(mode, "alice", body,
                             headers={"X-Vouch-Identity": FORGED, "x-vouch-keyid": "forged"})
    check(who == "alice@e2e.example", f"whoami returned {who!r}")
    for r in mode.upstream.requests()[before:]:
        check(header_values(r, "x-vouch-identity") == ["alice@e2e.example"]
              and header_values(r, "x-vouch-keyid") == [ALICE],
              f"upstream fields {r['headers']}")
    return f"X-Vouch-Identity: {FORGED} from the mcp client (unsigned) removed; whoami = {who}"


async def case_forged_signed(mode: Mode) -> str:
    raw = mode.raw()
    await raw.open()
    before = len(mode.upstream.requests())
    r = await raw.post(tools_call("whoami"), {"X-Vouch-Identity": FORGED},
                       components=(*ENVOYS_COMPONENTS, "x-vouch-identity"))
    who = tool_text(messages(r), 1)
    check(r.status_code == 200 and who == "alice@e2e.example",
          f"{r.status_code} whoami {who!r} {r.text[:200]}")
    seen = mode.upstream.requests()[before:]
    check(len(seen) == 1 and header_values(seen[0], "x-vouch-identity") == ["alice@e2e.example"],
          f"upstream got {[header_values(s, 'x-vouch-identity') for s in seen]}")
    return f"X-Vouch-Identity: {FORGED} covered by a valid signature: removed; whoami = {who}"


async def case_rmcp_client(mode: Mode) -> str:
    setup = mode.setup
    argv = [str(setup.client), mode.mcp_gw.url, str(setup.work / "rmcp.pem"), RMCP,
            str(setup.work / "rmcp.token"), "delete_records"]
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise CaseFailure("gateway_client did not finish within 60 s") from None
    check(proc.returncode == 0, f"gateway_client exited {proc.returncode}: {err.decode()[:600]}")
    got = json.loads(out)
    check(got["tools"] == ["slow_count", "whoami"], f"rmcp tools/list {got['tools']}")
    check(got["whoami"] == "rmcp@e2e.example", f"rmcp whoami {got['whoami']!r}")
    check("403" in got["forbidden"] and '"forbidden"' in got["forbidden"],
          f"rmcp call outside the grants: {got['forbidden']!r}")
    check(got["forged_whoami"] == "rmcp@e2e.example",
          f"rmcp with X-Vouch-Identity: {FORGED}: whoami {got['forged_whoami']!r}")
    return ("SigningClient (MCP profile): tools/list = slow_count, whoami; whoami = "
            "rmcp@e2e.example; delete_records 403 forbidden; forged X-Vouch-Identity ignored")


@dataclass
class Row:
    """One refusal: what is sent, the status and error codes it must get. `detail` is the exact
    `detail` code (None: no detail at all), or "" for a free-text detail that must contain
    `says`."""
    name: str
    status: int
    error: str
    detail: str | None
    send: Callable[[Mode], Awaitable[httpx.Response]]
    says: str = ""


def refusal_rows() -> tuple[list[Row], Callable[[Mode], Awaitable[httpx.Response]]]:
    """The refusal table, and the not-JSON-RPC request (whose answer is a JSON-RPC error)."""
    now = lambda: int(time.time())  # noqa: E731
    call = tools_call("whoami")

    async def unsigned(m: Mode) -> httpx.Response:
        return await m.http.post(m.envoys_gw.url, content=compact(call), headers={
            "content-type": "application/json", "accept": ACCEPT,
            TOKEN_HEADER: m.setup.tokens["alice"]})

    async def bad_signature(m: Mode) -> httpx.Response:
        raw = m.raw()
        body = compact(call)
        h = raw.headers(body)
        sig = bytearray(base64.b64decode(h["signature"][len("sig1=:"):-1]))
        sig[0] ^= 1
        h["signature"] = f"sig1=:{b64(bytes(sig))}:"
        return await m.http.post(m.envoys_gw.url, content=body, headers=h)

    async def other_key(m: Mode) -> httpx.Response:
        raw = m.raw()
        raw.key = m.setup.keys["bob"]  # alice's keyid, bob's key
        return await raw.post(call)

    async def tampered(m: Mode) -> httpx.Response:
        raw = m.raw()
        h = raw.headers(compact(call))
        return await m.http.post(m.envoys_gw.url, content=compact(tools_call("slow_count")),
                                 headers=h)

    async def no_path(m: Mode) -> httpx.Response:
        return await m.raw().post(call, components=("@method", "content-digest"))

    async def no_nonce(m: Mode) -> httpx.Response:
        return await m.raw().post(call, nonce=None)

    async def unknown_key(m: Mode) -> httpx.Response:
        raw = m.raw()
        raw.key, raw.keyid = m.setup.keys["ghost"], GHOST
        return await raw.post(call)

    async def not_allowed(m: Mode) -> httpx.Response:
        return await m.raw("mallory", token="alice").post(call)

    async def replayed(m: Mode) -> httpx.Response:
        raw = m.raw()
        body = compact(INITIALIZE)
        h = raw.headers(body)
        first = await m.http.post(m.envoys_gw.url, content=body, headers=h)
        check(first.status_code == 200, f"the original: {first.status_code} {first.text[:200]}")
        return await m.http.post(m.envoys_gw.url, content=body, headers=h)

    async def stale(m: Mode) -> httpx.Response:
        return await m.raw().post(call, created=now() - 600)

    async def future(m: Mode) -> httpx.Response:
        return await m.raw().post(call, created=now() + 120)

    async def key_changed(m: Mode) -> httpx.Response:
        first = await m.raw("pinned_a", token="pinned").post(INITIALIZE)
        check(first.status_code == 200, f"pinned_a: {first.status_code} {first.text[:200]}")
        return await m.raw("pinned_b", token="pinned").post(INITIALIZE)

    async def wrong_host(m: Mode) -> httpx.Response:
        return await m.raw().post(call, {"host": f"gateway.elsewhere.example:{m.envoys_gw.port}"})

    async def missing_token(m: Mode) -> httpx.Response:
        return await m.raw(token=None).post(call)

    async def malformed_token(m: Mode) -> httpx.Response:
        return await m.raw(token="not-a-token").post(call)

    async def expired_token(m: Mode) -> httpx.Response:
        wait = m.setup.expired_at + 1.1 - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        return await m.raw(token="expired").post(call)

    async def other_root(m: Mode) -> httpx.Response:
        return await m.raw(token="other_root").post(call)

    async def other_audience(m: Mode) -> httpx.Response:
        return await m.raw(token="elsewhere").post(call)

    async def stolen(m: Mode) -> httpx.Response:
        return await m.raw("bob", token="alice").post(call)  # bound to alice

    async def tool_not_granted(m: Mode) -> httpx.Response:
        return await m.raw().post(tools_call("delete_records", {"table": "orders"}))

    async def op_not_granted(m: Mode) -> httpx.Response:
        return await m.raw(token="alice_read_delete").post(
            tools_call("delete_records", {"table": "orders"}))

    async def not_jsonrpc(m: Mode) -> httpx.Response:
        raw = m.raw()
        body = b'{"hello": "world"'
        return await m.http.post(m.envoys_gw.url, content=body, headers=raw.headers(body))

    return [
        Row("unsigned", 401, "invalid_signature", "missing_signature", unsigned),
        Row("signature bytes altered", 401, "invalid_signature", "bad_signature", bad_signature),
        Row("signed with another key than the keyid's", 401, "invalid_signature",
            "bad_signature", other_key),
        Row("body changed after signing", 401, "invalid_signature", "digest_mismatch", tampered),
        Row("signature not covering @path", 401, "invalid_signature", "incomplete_signature",
            no_path),
        Row("signature without a nonce", 401, "invalid_signature", "incomplete_signature",
            no_nonce),
        Row("keyid with no known key", 401, "invalid_signature", "unknown_key", unknown_key),
        Row("identity outside --allow", 401, "invalid_signature", "not_allowed", not_allowed),
        Row("the same signed request twice", 401, "invalid_signature", "replayed", replayed),
        Row("created 10 minutes ago", 401, "invalid_signature", "expired", stale),
        Row("created 2 minutes in the future", 401, "invalid_signature", "expired", future),
        Row("identity's pinned key replaced", 401, "invalid_signature", "key_not_pinned",
            key_changed),
        Row("Host of another origin", 421, "misdirected_request", "unknown_origin", wrong_host),
        Row("no token", 401, "missing_token", None, missing_token),
        Row("malformed token", 401, "invalid_token", "", malformed_token, "malformed"),
        Row("expired token", 401, "invalid_token", "", expired_token, "expired"),
        Row("token from an unknown root", 401, "invalid_token", "", other_root, "root"),
        Row("token for another audience", 401, "invalid_token", "", other_audience, "audience"),
        Row("token bound to another holder", 401, "invalid_token", "", stolen, "holder"),
        Row("tool not granted", 403, "forbidden", "", tool_not_granted, "delete_records"),
        Row("operation not granted (delete_records:read, needs delete)", 403, "forbidden", "",
            op_not_granted, "operation \"delete\""),
    ], not_jsonrpc


async def case_refusal(mode: Mode, row: Row) -> str:
    before = len(mode.upstream.requests())
    # A connection of its own: a refusal answered before the body is read may close the
    # connection without `Connection: close`, and the next request on it would fail.
    async with httpx.AsyncClient(trust_env=False, timeout=HTTP_TIMEOUT) as http:
        r = await row.send(dataclasses.replace(mode, http=http))
    if row.name in ("the same signed request twice", "identity's pinned key replaced"):
        before += 1  # the first, valid request did reach the upstream
    check(r.status_code == row.status, f"status {r.status_code}, want {row.status}: {r.text[:300]}")
    check(r.headers.get("content-type", "").startswith("application/json"),
          f"content-type {r.headers.get('content-type')}")
    detail = r.json().get("detail", {})
    check(detail.get("error") == row.error, f"error {detail}, want {row.error}")
    if row.detail is None:
        check(set(detail) == {"error"}, f"detail {detail}, want no detail")
    elif row.detail:
        check(detail.get("detail") == row.detail, f"detail {detail}, want {row.detail}")
    else:
        check(isinstance(detail.get("detail"), str) and row.says in detail["detail"],
              f"detail {detail}, want one naming {row.says!r}")
    if r.status_code == 401:
        check(r.headers.get("www-authenticate", "").startswith("Signature")
              or row.error in ("missing_token", "invalid_token"),
              f"401 without a Signature challenge: {dict(r.headers)}")
    after = len(mode.upstream.requests())
    check(after == before, f"the upstream received {after - before} request(s)")
    shown = f"{row.error}/{detail.get('detail')}" if row.detail else row.error
    if row.detail == "":
        shown += f" ({detail['detail'][:60]})"
    return f"{r.status_code} {shown}, upstream not contacted"


async def case_bad_request(mode: Mode, send) -> str:
    before = len(mode.upstream.requests())
    r = await send(mode)
    body = r.json()
    check(r.status_code == 400 and body.get("jsonrpc") == "2.0" and body.get("id") is None
          and body.get("error", {}).get("code") == -32700,
          f"{r.status_code} {body}")
    check(len(mode.upstream.requests()) == before, "the upstream received the request")
    return "400 JSON-RPC error -32700 (signed, valid token, not JSON), upstream not contacted"


async def case_body_cap(mode: Mode) -> str:
    """A declared Content-Length over the 1 MiB cap: 413 before any body byte is read."""
    before = len(mode.upstream.requests())
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", mode.envoys_gw.port), 5)
    try:
        writer.write((f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{mode.envoys_gw.port}\r\n"
                      f"Content-Type: application/json\r\nContent-Length: {2 << 20}\r\n"
                      "Connection: close\r\n\r\n").encode())
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = response.decode(errors="replace").partition("\r\n\r\n")
    check(head.startswith("HTTP/1.1 413"), f"response {head!r}")
    detail = json.loads(body).get("detail", {})
    check(detail == {"error": "payload_too_large", "detail": "body_too_large"}, f"{detail}")
    check(len(mode.upstream.requests()) == before, "the upstream received the request")
    return "413 payload_too_large/body_too_large at once (2 MiB declared, no body sent)"


async def case_rate_limit(mode: Mode) -> str:
    """A gateway of its own with `--rate 5` (bursts of 10). Signed requests without a token count
    against the identity's rate and are refused 401 missing_token by the capability layer, which
    comes after the rate limit; past the burst, 429."""
    gw = Gateway(mode.setup, "rate", mode.upstream.url, mode.work, "--profile", "envoys",
                 "--token-header", TOKEN_HEADER, "--rate", "5")
    try:
        await gw.start()
        raw = mode.raw("flood", token=None, gateway=gw)
        statuses: list[int] = []
        limited = None
        for _ in range(6):
            batch = await asyncio.gather(*(raw.post(tools_call("whoami")) for _ in range(10)))
            statuses += [r.status_code for r in batch]
            limited = next((r for r in batch if r.status_code == 429), None)
            if limited is not None:
                break
        check(limited is not None, f"no 429 in {len(statuses)} requests: {set(statuses)}")
        check(set(statuses) <= {401, 429}, f"statuses {set(statuses)}")
        first = statuses.index(429)
        check(first >= 10, f"429 after {first} requests, within the burst of 10")
        detail = limited.json().get("detail", {})
        check(detail.get("error") == "rate_limited", f"{detail}")
        retry = limited.headers.get("retry-after", "")
        check(retry.isdigit() and int(retry) >= 1, f"Retry-After {retry!r}")
        # Another identity is not limited.
        r = await mode.raw(token=None, gateway=gw).post(tools_call("whoami"))
        check(r.status_code == 401 and r.json()["detail"]["error"] == "missing_token",
              f"another identity got {r.status_code} {r.text[:200]}")
        return (f"--rate 5: 429 rate_limited, Retry-After {retry}, after {first} requests; "
                "another identity unaffected")
    finally:
        gw.proc.stop()


async def case_identity_only(mode: Mode) -> str:
    """`vouch gateway` without `--root`: signatures checked, no token asked for, nothing
    filtered, no X-Vouch-Grants; a token header sent anyway is still removed."""
    gw = Gateway(mode.setup, "identity-only", mode.upstream.url, mode.work, "--profile",
                 "envoys", "--token-header", TOKEN_HEADER, tokens=False)
    try:
        await gw.start()
        before = len(mode.upstream.requests())

        async def body(s: ClientSession):
            tools = sorted(t.name for t in (await s.list_tools()).tools)
            who = text_of(await s.call_tool("whoami", {}))
            deleted = text_of(await s.call_tool("delete_records", {"table": "orders"}))
            return tools, who, deleted
        tools, who, deleted = await with_session(mode, "alice", body, gateway=gw)
        check(tools == ["delete_records", "slow_count", "whoami"], f"tools/list {tools}")
        check(who == "alice@e2e.example", f"whoami {who!r}")
        check(deleted == "deleted every record of orders", f"delete_records {deleted!r}")
        seen = mode.upstream.requests()[before:]
        check(bool(seen), "the upstream received nothing")
        for r in seen:
            names = {k for k, _ in r["headers"]}
            check(header_values(r, "x-vouch-identity") == ["alice@e2e.example"]
                  and "x-vouch-keyid" in names and "x-vouch-grants" not in names
                  and TOKEN_HEADER not in names, f"upstream fields {sorted(names)}")
        async with httpx.AsyncClient(trust_env=False, timeout=HTTP_TIMEOUT) as http:
            r = await http.post(gw.url, content=compact(tools_call("whoami")), headers={
                "content-type": "application/json", "accept": ACCEPT})
        check(r.status_code == 401 and r.json().get("detail", {}).get("detail")
              == "missing_signature", f"unsigned: {r.status_code} {r.text[:200]}")
        check(len(mode.upstream.requests()) == before + len(seen), "unsigned reached upstream")
        return ("no --root: tools/list unfiltered (3 tools), whoami = alice@e2e.example, "
                "delete_records 200; X-Vouch-Identity/Keyid but no Grants, token header "
                "removed; unsigned still 401 missing_signature")
    finally:
        gw.proc.stop()


async def case_session_binding(mode: Mode) -> str:
    """Each session is bound to the caller that created it (identity and key)."""
    if mode.stateless:
        r = await mode.raw().post(INITIALIZE)
        check(r.status_code == 200 and "mcp-session-id" not in r.headers,
              f"stateless initialize: {r.status_code} {dict(r.headers)}")
        return "stateless upstream: initialize 200 without Mcp-Session-Id, nothing to bind"
    alice = mode.raw()
    await alice.open()
    before = len(mode.upstream.requests())

    def refused(r: httpx.Response, status: int, error: str, detail: str) -> None:
        check(r.status_code == status and r.json().get("detail") == {"error": error,
                                                                     "detail": detail},
              f"{r.status_code} {r.text[:200]}, want {status} {error}/{detail}")
    bob = mode.raw("bob", token="bob")
    bob.session = alice.session
    refused(await bob.post(tools_call("whoami")), 403, "forbidden",
            "session_bound_to_another_caller")
    stranger = mode.raw()
    stranger.session = "e2e" + secrets.token_hex(16)
    refused(await stranger.post(tools_call("whoami")), 404, "not_found", "session_not_found")
    check(len(mode.upstream.requests()) == before, "a refused request reached the upstream")
    r = await alice.post(tools_call("whoami"))
    check(r.status_code == 200 and tool_text(messages(r), 1) == "alice@e2e.example",
          f"alice in her own session: {r.status_code} {r.text[:200]}")
    r = await alice.delete()
    check(r.status_code == 200, f"DELETE of the session: {r.status_code} {r.text[:200]}")
    after_delete = len(mode.upstream.requests())
    refused(await alice.post(tools_call("whoami")), 404, "not_found", "session_not_found")
    check(len(mode.upstream.requests()) == after_delete, "the ended session reached the upstream")
    return ("another identity in alice's session: 403 session_bound_to_another_caller; an "
            "unknown session: 404 session_not_found; after alice's DELETE her session is 404; "
            "none reached the upstream")


async def case_sigterm_drain(mode: Mode) -> str:
    gw = Gateway(mode.setup, "drain", mode.upstream.url, mode.work, "--profile", "envoys",
                 "--token-header", TOKEN_HEADER)
    try:
        await gw.start()
        raw = mode.raw(gateway=gw)
        await raw.open()
        body = compact(tools_call("slow_count", {"n": DRAIN_N, "delay_ms": DRAIN_DELAY_MS},
                                  rid=7, progress="drain"))
        started = asyncio.Event()
        calls_before = len(mode.upstream.requests())

        async def call() -> tuple[int, str, float]:
            async with mode.http.stream("POST", gw.url, content=body,
                                        headers=raw.headers(body)) as r:
                text = ""
                async for chunk in r.aiter_text():
                    text += chunk
                    if "notifications/progress" in text:
                        started.set()
                return r.status_code, text, time.monotonic()
        task = asyncio.create_task(call())
        deadline = time.monotonic() + 10
        # In flight: the first progress event arrived (SSE), or the upstream has the call (JSON).
        while not started.is_set() and len(mode.upstream.requests()) == calls_before:
            check(time.monotonic() < deadline and not task.done(),
                  f"the slow call never started: {task.done() and task.result()}")
            await asyncio.sleep(0.02)
        check(not task.done(), "the call finished before SIGTERM")
        sent = time.monotonic()
        gw.proc.signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        try:
            async with httpx.AsyncClient(trust_env=False, timeout=2) as fresh:
                await fresh.get(f"http://127.0.0.1:{gw.port}/healthz")
            raise CaseFailure("a new connection was accepted after SIGTERM")
        except httpx.TransportError:
            pass
        status, text, done = await asyncio.wait_for(task, GATEWAY_DRAIN + 5)
        check(status == 200, f"the call in flight got {status}: {text[:200]}")
        msgs = sse_messages(text) if mode.sse else [json.loads(text)]
        check(tool_text(msgs, 7) == f"counted to {DRAIN_N}", f"the call's result: {text[-300:]}")
        check(done - sent >= 0.5, f"the call ended {done - sent:.2f} s after SIGTERM: was it in "
              "flight?")
        code = await gw.proc.wait_exit(GATEWAY_DRAIN + 2 - (time.monotonic() - sent))
        check(code == 0, f"gateway exit status {code}: {gw.proc.tail()}")
        exited = time.monotonic() - sent
        check("vouch gateway: stopped" in gw.proc.text(), f"no stop line: {gw.proc.tail()}")
        return (f"call in flight finished 200 {done - sent:.2f} s after SIGTERM; new connections "
                f"refused; exit 0 after {exited:.2f} s")
    finally:
        gw.proc.stop()


async def case_upstream_down(mode: Mode) -> str:
    mode.upstream.proc.signal(signal.SIGTERM)
    code = await mode.upstream.proc.wait_exit(8)
    if code is None:
        mode.upstream.proc.stop()
    r = await mode.raw().post(tools_call("whoami"))
    check(r.status_code == 502, f"status {r.status_code}: {r.text[:200]}")
    check(r.json() == {"detail": {"error": "upstream_unavailable"}}, f"body {r.text[:200]}")
    health = await mode.http.get(f"http://127.0.0.1:{mode.envoys_gw.port}/healthz")
    check(health.status_code == 200 and health.json() == {"status": "ok"},
          f"/healthz {health.status_code} {health.text[:100]}")
    return '502 {"detail":{"error":"upstream_unavailable"}}; /healthz still 200'


async def case_upstream_saw_no_forgery(mode: Mode) -> str:
    requests = mode.upstream.requests()
    identities = {"alice@e2e.example", "rmcp@e2e.example", "pinned@e2e.example"}
    for r in requests:
        ids = header_values(r, "x-vouch-identity")
        check(len(ids) == 1 and ids[0] in identities, f"{r['method']} X-Vouch-Identity {ids}")
        flat = json.dumps(r["headers"])
        check(FORGED not in flat, f"{FORGED} reached the upstream: {r['headers']}")
        names = {k for k, _ in r["headers"]}
        check(not names & {TOKEN_HEADER, "x-mcpvault-token", "signature", "signature-input"},
              f"forwarded {sorted(names)}")
    # The control: straight to the upstream, the same client's forged field is what whoami
    # returns. Without the gateway the forgery works, so the checks above can fail.
    async def body(s: ClientSession):
        return text_of(await s.call_tool("whoami", {}))

    async def direct() -> str:
        async with streamablehttp_client(mode.upstream.url, timeout=CALL_TIMEOUT,
                                         headers={"X-Vouch-Identity": FORGED}) as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await body(session)
    who = await asyncio.wait_for(direct(), CALL_TIMEOUT)
    check(who == FORGED, f"control: straight to the upstream, whoami returned {who!r}")
    return (f"all {len(requests)} requests the upstream received carry one verified "
            f"X-Vouch-Identity, never {FORGED}, no token, no client signature (control: "
            f"straight to the upstream, whoami = {who})")


# --- the run ------------------------------------------------------------------------------------


async def run_mode(setup: Setup, report: Report, name: str, flags: list[str]) -> None:
    work = setup.work / name.replace("+", "-")
    work.mkdir(parents=True, exist_ok=True)
    stateless, sse = "--stateless" in flags, "--json" not in flags
    upstream = Upstream(setup.python, setup.server, flags, work)
    gateways: list[Gateway] = []
    try:
        try:
            await upstream.start()
            envoys_gw = Gateway(setup, "envoys", upstream.url, work, "--profile", "envoys",
                                "--token-header", TOKEN_HEADER)
            gateways.append(envoys_gw)
            mcp_gw = Gateway(setup, "mcp", upstream.url, work)
            gateways.append(mcp_gw)
            await asyncio.gather(envoys_gw.start(), mcp_gw.start())
        except Exception as e:  # noqa: BLE001
            print(f"FAIL {name:<14} start: {e}", flush=True)
            report.failed.append(f"{name} start")
            return
        async with httpx.AsyncClient(trust_env=False, timeout=HTTP_TIMEOUT) as http:
            mode = Mode(name, stateless, sse, setup, http, upstream, envoys_gw, mcp_gw, work)

            def logs() -> str:
                return (f"upstream: {upstream.proc.tail(4)} || gateway: "
                        f"{envoys_gw.proc.tail(3)}")

            async def case(title: str, run) -> None:
                await report.case(name, title, run, logs)

            await case("allowed call, identity upstream", lambda: case_allowed_call(mode))
            await case("tools/list filtered", lambda: case_tools_list(mode))
            await case("destructive tool with its operation", lambda: case_destructive_granted(mode))
            await case("progress streamed", lambda: case_progress(mode))
            await case("forged X-Vouch-Identity, unsigned", lambda: case_forged_unsigned(mode))
            await case("forged X-Vouch-Identity, signed", lambda: case_forged_signed(mode))
            await case("mcp client outside the grants", lambda: case_mcp_client_forbidden(mode))
            await case("rmcp SigningClient", lambda: case_rmcp_client(mode))
            rows, not_jsonrpc = refusal_rows()
            for row in rows:
                await case(f"refused: {row.name}", lambda row=row: case_refusal(mode, row))
            await case("refused: not JSON-RPC", lambda: case_bad_request(mode, not_jsonrpc))
            await case("refused: body over the cap", lambda: case_body_cap(mode))
            await case("refused: over the rate limit", lambda: case_rate_limit(mode))
            await case("session bound to its creator", lambda: case_session_binding(mode))
            await case("identity-only gateway", lambda: case_identity_only(mode))
            await case("nothing forged reached the upstream",
                       lambda: case_upstream_saw_no_forgery(mode))
            await case("SIGTERM drains in-flight requests", lambda: case_sigterm_drain(mode))
            await case("upstream down", lambda: case_upstream_down(mode))
    finally:
        for gw in gateways:
            gw.proc.stop()
        upstream.proc.stop()


async def main_async(setup: Setup, modes: list[str]) -> int:
    report = Report()
    started = time.monotonic()
    for name, flags in MODES:
        if not modes or name in modes:
            await run_mode(setup, report, name, flags)
    took = time.monotonic() - started
    total = report.passed + len(report.failed)
    if report.failed:
        print(f"gateway e2e: {len(report.failed)} of {total} cases FAILED in {took:.1f} s: "
              + "; ".join(report.failed), flush=True)
        return 1
    print(f"gateway e2e: all {total} cases passed in {took:.1f} s", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vouch", type=Path, required=True, help="the vouch binary")
    parser.add_argument("--client", type=Path, required=True,
                        help="vouch-rmcp's gateway_client example binary")
    parser.add_argument("--server", type=Path, required=True,
                        help="examples/gateway/server.py")
    parser.add_argument("--work", type=Path, required=True, help="a scratch directory")
    parser.add_argument("--mode", action="append", default=[],
                        choices=[m for m, _ in MODES], help="only these modes (repeatable)")
    args = parser.parse_args()
    for path in (args.vouch, args.client, args.server, RECORDER):
        if not path.is_file():
            print(f"e2e: {path} does not exist", file=sys.stderr)
            return 2
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"
    args.work.mkdir(parents=True, exist_ok=True)
    setup = Setup(args.vouch.resolve(), args.client.resolve(), args.server.resolve(),
                  sys.executable, args.work.resolve())
    try:
        setup.prepare()
    except Exception as e:  # noqa: BLE001
        print(f"FAIL setup: {e}", flush=True)
        return 1
    return asyncio.run(main_async(setup, args.mode))


if __name__ == "__main__":
    sys.exit(main())
