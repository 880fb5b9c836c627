"""The MCP Python SDK with auth=VouchAuth against a vouch-protected Rust MCP server: rmcp behind
every vouch layer (examples/protected_server.rs, built by run-tests.sh), a subprocess on
127.0.0.1. Its keys are the example's fixed demo keys: token root seed [42; 32], agent seed
[1; 32] under the keyid below. Each HTTP exchange is recorded on the client: initialize,
tools/list, tools/call, the SSE GET and the DELETE must all be answered with success."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client
from signer_support import ROOT

import vouch
from vouch import Signer
from vouch.httpx import VouchAuth

AGENT_SEED = "01" * 32
ROOT_SEED = "2a" * 32
AGENT = "https://agents.example/agents/worker@agents.example"
DEADLINE = 30


def example_bin() -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    path = target / "debug" / "examples" / "protected_server"
    if not path.is_file():
        pytest.fail(
            f"the protected_server example is missing at {path}: run `cargo build -p "
            "vouch-examples --example protected_server` with the same CARGO_TARGET_DIR "
            "(crates/python/run-tests.sh does)"
        )
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("rmcp") / "server.log"
    proc = subprocess.Popen(
        [str(example_bin()), f"127.0.0.1:{port}"], stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    try:
        end = time.monotonic() + DEADLINE
        while "protected MCP server at" not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > end:
                pytest.fail(f"protected_server did not start: {log.read_text(errors='replace')}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def token() -> str:
    return vouch.mint(
        ROOT_SEED,
        {"tools": ["db_query"], "resource_limits": {"db_query": {"max_rows": 50}}, "holder": AGENT},
    )


class Exchanges:
    """Every (method, JSON-RPC method or None, status) the client saw."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None, int]] = []

    async def record(self, response: httpx.Response) -> None:
        request = response.request
        method = request.headers.get("mcp-method")
        self.seen.append((request.method, method, response.status_code))

    def factory(self, auth: httpx.Auth | None):
        def make(headers=None, timeout=None, auth=auth) -> httpx.AsyncClient:
            return httpx.AsyncClient(
                headers=headers, timeout=timeout, auth=auth, event_hooks={"response": [self.record]}
            )

        return make


def run(url: str, auth: httpx.Auth | None, body, exchanges: Exchanges) -> object:
    async def main() -> object:
        with anyio.fail_after(DEADLINE), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            async with streamablehttp_client(
                url, auth=auth, httpx_client_factory=exchanges.factory(auth)
            ) as (read, write, _):
                async with ClientSession(read, write) as session:
                    return await body(session)

    return anyio.run(main)


def statuses(error: BaseException) -> list[int]:
    if isinstance(error, httpx.HTTPStatusError):
        return [error.response.status_code]
    out: list[int] = []
    for inner in getattr(error, "exceptions", ()):
        out += statuses(inner)
    return out


def test_the_sdk_client_against_a_protected_rmcp_server(server, token):
    seen = Exchanges()
    auth = VouchAuth(Signer(AGENT_SEED, AGENT), token)

    async def body(session: ClientSession) -> object:
        await session.initialize()
        listed = await session.list_tools()
        called = await session.call_tool("db_query", {"sql": "select 1"})
        # Hold the session until the standalone SSE GET (opened after `initialized`) answered.
        with anyio.fail_after(DEADLINE):
            while not any(m == "GET" for m, _, _ in seen.seen):
                await anyio.sleep(0.02)
        return listed, called

    listed, called = run(server, auth, body, seen)  # type: ignore[misc]
    assert [t.name for t in listed.tools] == ["db_query"]  # drop_table is not granted
    assert called.content[0].text == 'worker@agents.example ran "select 1", at most 50 rows'
    methods = {(m, rpc) for m, rpc, _ in seen.seen}
    assert {
        ("POST", "initialize"),
        ("POST", "tools/list"),
        ("POST", "tools/call"),
        ("GET", None),
        ("DELETE", None),
    } <= methods, seen.seen
    assert all(200 <= status < 300 for _, _, status in seen.seen), seen.seen


def test_a_tool_outside_the_grants_is_refused(server, token):
    seen = Exchanges()

    async def body(session: ClientSession) -> object:
        await session.initialize()
        return await session.call_tool("drop_table", {})

    with pytest.raises(BaseException) as caught:
        run(server, VouchAuth(Signer(AGENT_SEED, AGENT), token), body, seen)
    assert 403 in statuses(caught.value), caught.value
    assert ("POST", "tools/call", 403) in seen.seen


@pytest.mark.parametrize("who", ["unsigned", "another key", "no token"])
def test_refused_clients(server, token, who):
    auth = {
        "unsigned": None,
        "another key": VouchAuth(Signer(vouch.generate_keypair()[0], AGENT), token),
        "no token": VouchAuth(Signer(AGENT_SEED, AGENT)),
    }[who]
    seen = Exchanges()

    async def body(session: ClientSession) -> object:
        await session.initialize()
        return await session.call_tool("db_query", {"sql": "select 1"})

    with pytest.raises(BaseException) as caught:
        run(server, auth, body, seen)
    assert 401 in statuses(caught.value), (caught.value, seen.seen)
