"""The MCP Python SDK's streamable HTTP client with auth=VouchAuth, against a real vouch-protected
server: `vouch gateway` (vouch's Rust pipeline) in front of a FastMCP server
(examples/gateway/server.py), both subprocesses on 127.0.0.1. The gateway's decision log shows
what it verified: initialize, tools/list, tools/call, the SSE GET and the DELETE."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client
from signer_support import ROOT, vouch_bin

import vouch
from vouch import Signer
from vouch.httpx import VouchAuth

KEYID = "https://agents.example/agents/worker@agents.example"
THIEF = "https://agents.example/agents/thief@agents.example"
SERVER = ROOT / "examples" / "gateway" / "server.py"
DEADLINE = 30  # seconds a process gets to start, or a session to finish: a hang fails, not blocks


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(log: Path, text: str, proc: subprocess.Popen[bytes], what: str) -> None:
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        if text in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            pytest.fail(f"{what} exited ({proc.returncode}): {log.read_text(errors='replace')}")
        time.sleep(0.05)
    pytest.fail(f"{what} did not start: {log.read_text(errors='replace')}")


class Gateway:
    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self.log = log

    def decisions(self) -> list[dict[str, object]]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                d = json.loads(line)
                if d.get("message") == "decision":
                    out.append(d)
        return out

    def wait_decision(self, **want: object) -> None:
        end = time.monotonic() + DEADLINE
        while time.monotonic() < end:
            if any(all(d.get(k) == v for k, v in want.items()) for d in self.decisions()):
                return
            time.sleep(0.05)
        pytest.fail(f"no decision {want} in {self.decisions()}")


@pytest.fixture(scope="module")
def agent() -> tuple[str, str]:
    return vouch.generate_keypair()


@pytest.fixture(scope="module")
def root() -> tuple[str, str]:
    return vouch.generate_keypair()


@pytest.fixture(scope="module")
def token(root) -> str:
    # Read-only tools for this agent only (bound to its keyid); delete_records is not granted.
    return vouch.mint(root[0], {"tools": ["whoami", "slow_count"], "holder": KEYID, "ttl": 600})


@pytest.fixture(scope="module")
def thief() -> tuple[str, str]:
    return vouch.generate_keypair()


@pytest.fixture(scope="module")
def gateway(agent, thief, root, tmp_path_factory) -> Iterator[Gateway]:
    work = tmp_path_factory.mktemp("gateway")
    up_port, gw_port = free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        up_log = work / "upstream.log"
        up = subprocess.Popen(
            [sys.executable, str(SERVER), "--port", str(up_port)],
            stdout=subprocess.DEVNULL,
            stderr=up_log.open("wb"),
        )
        procs.append(up)
        wait_for(up_log, "listening on", up, "server.py")
        gw_log = work / "gateway.log"
        origin = f"http://127.0.0.1:{gw_port}"
        gw = subprocess.Popen(
            [
                str(vouch_bin()),
                "gateway",
                "--upstream",
                f"http://127.0.0.1:{up_port}/mcp",
                "--listen",
                f"127.0.0.1:{gw_port}",
                "--origin",
                origin,
                "--agent",
                f"{KEYID}={agent[1]}",
                "--agent",
                f"{THIEF}={thief[1]}",  # a known agent, but not the token's holder
                "--root",
                root[1],
                "--op",
                "whoami:read",
                "--op",
                "slow_count:read",
                "--op",
                "delete_records:write",
                "--log-format",
                "json",
            ],
            stdout=subprocess.DEVNULL,
            stderr=gw_log.open("wb"),
        )
        procs.append(gw)
        wait_for(gw_log, "vouch gateway: listening", gw, "vouch gateway")
        yield Gateway(origin + "/mcp", gw_log)
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def statuses(error: BaseException) -> list[int]:
    """The HTTP statuses of every httpx.HTTPStatusError in an exception (group)."""
    if isinstance(error, httpx.HTTPStatusError):
        return [error.response.status_code]
    out: list[int] = []
    for inner in getattr(error, "exceptions", ()):
        out += statuses(inner)
    if error.__cause__ is not None:
        out += statuses(error.__cause__)
    return out


def run_session(url: str, auth: httpx.Auth | None, body) -> object:
    async def main() -> object:
        with anyio.fail_after(DEADLINE), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # streamablehttp_client's alias
            async with streamablehttp_client(url, auth=auth) as (read, write, _):
                async with ClientSession(read, write) as session:
                    return await body(session)

    return anyio.run(main)


def test_a_session_is_verified_end_to_end(gateway, agent, token):
    auth = VouchAuth(Signer(agent[0], KEYID), token)
    before = len(gateway.decisions())

    async def body(session: ClientSession) -> object:
        await session.initialize()
        listed = await session.list_tools()
        called = await session.call_tool("whoami", {})
        counted = await session.call_tool("slow_count", {"n": 2, "delay_ms": 1})
        # The standalone SSE GET opens after `initialized`; hold the session until it is in.
        await anyio.to_thread.run_sync(
            lambda: gateway.wait_decision(layer="signature", method="GET", accepted=True)
        )
        return listed, called, counted

    listed, called, counted = run_session(gateway.url, auth, body)  # type: ignore[misc]
    # The gateway lists only the tools the token grants.
    assert sorted(t.name for t in listed.tools) == ["slow_count", "whoami"]
    # The server sees the identity the gateway verified from our signature (the address an
    # address-style keyid claims).
    assert called.isError is False and called.content[0].text == "worker@agents.example"
    assert counted.content[0].text == "counted to 2"
    # The DELETE goes out when the session closes.
    gateway.wait_decision(layer="signature", method="DELETE", accepted=True)
    ours = gateway.decisions()[before:]
    assert ours and all(d["accepted"] for d in ours), ours
    signed = [d["method"] for d in ours if d["layer"] == "signature"]
    assert set(signed) == {"POST", "GET", "DELETE"}
    # initialize, notifications/initialized, tools/list and the two calls.
    assert signed.count("POST") >= 5, signed
    tools = {d.get("tool") for d in ours if d["layer"] == "capability"}
    assert {"whoami", "slow_count"} <= tools


def test_a_call_outside_the_grants_is_refused(gateway, agent, token):
    auth = VouchAuth(Signer(agent[0], KEYID), token)
    before = len(gateway.decisions())

    async def body(session: ClientSession) -> object:
        await session.initialize()
        return await session.call_tool("delete_records", {"table": "orders"})

    with pytest.raises(BaseException) as caught:
        run_session(gateway.url, auth, body)
    assert 403 in statuses(caught.value), caught.value
    refused = [d for d in gateway.decisions()[before:] if not d["accepted"]]
    assert [(d["layer"], d.get("tool")) for d in refused] == [("capability", "delete_records")]


def test_an_unsigned_client_is_refused(gateway, token):
    async def body(session: ClientSession) -> object:
        return await session.initialize()

    with pytest.raises(BaseException) as caught:
        run_session(gateway.url, None, body)
    assert 401 in statuses(caught.value), caught.value
    # The same with a token but no signature.
    r = httpx.post(
        gateway.url,
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={"X-MCPVault-Token": token, "Accept": "application/json, text/event-stream"},
    )
    assert r.status_code == 401


def test_another_key_under_the_same_keyid_is_refused(gateway, token):
    thief = VouchAuth(Signer(vouch.generate_keypair()[0], KEYID), token)

    async def body(session: ClientSession) -> object:
        return await session.initialize()

    with pytest.raises(BaseException) as caught:
        run_session(gateway.url, thief, body)
    assert 401 in statuses(caught.value), caught.value


def test_a_replayed_request_is_refused(gateway, agent, token):
    sent: list[httpx.Request] = []
    auth = VouchAuth(Signer(agent[0], KEYID), token)
    message = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "0"},
        },
    }
    headers = {"Accept": "application/json, text/event-stream"}
    with httpx.Client(auth=auth, event_hooks={"request": [sent.append]}) as c:
        assert c.post(gateway.url, json=message, headers=headers).status_code == 200
    first = sent[0]
    with httpx.Client() as plain:
        again = plain.send(
            httpx.Request(first.method, first.url, headers=first.headers, content=first.content)
        )
    assert again.status_code == 401, again.text
    assert again.json() == {"detail": {"detail": "replayed", "error": "invalid_signature"}}


@pytest.mark.parametrize("profile", ["envoys", "sep2752"])
def test_the_other_profiles_against_a_gateway_for_them(agent, root, profile, tmp_path):
    """`vouch gateway --profile P` accepts the SDK client signing with Signer(profile=P)."""
    s = Signer(agent[0], None if profile == "sep2752" else KEYID, profile)
    port = free_port()
    log = tmp_path / "gateway.log"
    gw = subprocess.Popen(
        [
            str(vouch_bin()),
            "gateway",
            "--upstream",
            "http://127.0.0.1:9/mcp",  # nothing listens: initialize is answered 502
            "--listen",
            f"127.0.0.1:{port}",
            "--origin",
            f"http://127.0.0.1:{port}",
            "--agent",
            f"{s.keyid}={agent[1]}",
            "--profile",
            profile,
            "--log-format",
            "json",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    try:
        wait_for(log, "vouch gateway: listening", gw, "vouch gateway")
        g = Gateway(f"http://127.0.0.1:{port}/mcp", log)
        with httpx.Client(auth=VouchAuth(s)) as c:
            c.post(g.url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        with httpx.Client() as c:
            assert (
                c.post(g.url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).status_code
                == 401
            )
        d = [(x["layer"], x["accepted"]) for x in g.decisions()]
        assert d[0] == ("signature", True) and d[-1] == ("signature", False), d
    finally:
        gw.terminate()
        gw.wait(timeout=10)


def test_a_leaked_token_is_useless_to_another_known_agent(gateway, thief, token):
    """The token is bound to the worker's keyid: a known agent that got hold of it (say, through
    a redirect httpx followed to its host: see test_httpx_auth) cannot use it."""
    auth = VouchAuth(Signer(thief[0], THIEF), token)
    before = len(gateway.decisions())

    async def body(session: ClientSession) -> object:
        return await session.initialize()

    with pytest.raises(BaseException) as caught:
        run_session(gateway.url, auth, body)
    assert 401 in statuses(caught.value), caught.value
    refused = [d for d in gateway.decisions()[before:] if not d["accepted"]]
    assert [(d["layer"], d["identity"]) for d in refused] == [
        ("capability", "thief@agents.example")
    ]
