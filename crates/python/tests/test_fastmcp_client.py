"""The whole Python path of issue 16: a real FastMCP server under uvicorn on 127.0.0.1 behind
VouchMiddleware, and the MCP Python SDK's streamable HTTP client signing with VouchAuth and
carrying an attenuated token. Allowed calls, a tool outside the grants, tools/list as the token
allows, caller_identity inside the tool; unsigned, tampered, replayed and relayed requests, and
another agent riding the session."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client
from mcp.server.fastmcp import Context, FastMCP
from mcp.server.transport_security import TransportSecuritySettings

import vouch
from vouch import Signer
from vouch.asgi import SigningStats, VouchMiddleware, caller_identity, grants
from vouch.httpx import VouchAuth

AGENT = "https://agents.example/worker"
OTHER = "https://agents.example/other"
DEADLINE = 30  # seconds for a session: a hang fails, never blocks CI


@dataclass
class Server:
    origin: str
    url: str
    agent: Signer
    other: Signer
    token: str  # attenuated: whoami and db_query only, db_query read-only
    root_public: str
    ran: list[str] = field(default_factory=list)  # tools FastMCP actually executed
    stats: SigningStats = field(default_factory=SigningStats)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    port = _free_port()
    origin = f"http://127.0.0.1:{port}"
    root_private, root_public = vouch.generate_keypair()
    agent_private, agent_public = vouch.generate_keypair()
    other_private, other_public = vouch.generate_keypair()
    root_token = vouch.mint(
        root_private,
        {
            "tools": ["whoami", "db_query", "db_write"],
            "operations": {"db_query": ["read", "write"]},
            "ttl": 600,
        },
    )
    # Narrowed offline by the holder for its sub-agent: no db_write, db_query read-only.
    token = vouch.attenuate(
        root_token,
        root_public,
        {"tools": ["whoami", "db_query"], "operations": {"db_query": ["read"]}},
    )
    srv = Server(
        origin=origin,
        url=f"{origin}/mcp",
        agent=Signer(agent_private, AGENT),
        other=Signer(other_private, OTHER),
        token=token,
        root_public=root_public,
    )

    security = TransportSecuritySettings(
        allowed_hosts=[f"127.0.0.1:{port}"], allowed_origins=[origin]
    )
    mcp = FastMCP("vouch-e2e", transport_security=security)

    @mcp.tool()
    def whoami(ctx: Context) -> str:
        """Who vouch verified, and what the token grants."""
        srv.ran.append("whoami")
        facts = grants(ctx) or {}
        return json.dumps({"identity": caller_identity(ctx), "tools": facts.get("tools")})

    @mcp.tool()
    def db_query(sql: str) -> str:
        """A read."""
        srv.ran.append("db_query")
        return f"rows for {sql}"

    @mcp.tool()
    def db_write(sql: str) -> str:
        """A write: outside the attenuated token."""
        srv.ran.append("db_write")
        return f"wrote {sql}"

    app = VouchMiddleware(
        mcp.streamable_http_app(),
        origin=origin,
        agents={AGENT: agent_public, OTHER: other_public},
        roots=[root_public],
        operations={"db_query": "read"},
        stats=srv.stats,
    )
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    end = time.monotonic() + DEADLINE
    while not uv.started:
        if time.monotonic() > end or not thread.is_alive():
            pytest.fail("uvicorn with FastMCP did not start")
        time.sleep(0.05)
    yield srv
    uv.should_exit = True
    thread.join(10)


def _text(result: Any) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


async def _session(srv: Server, auth: httpx.Auth | None, work: Any, close: bool = True) -> Any:
    with anyio.fail_after(DEADLINE):
        async with streamablehttp_client(srv.url, auth=auth, terminate_on_close=close) as (
            read,
            write,
            session_id,
        ):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await work(session, session_id())


def test_allowed_calls_and_the_identity_inside_the_tool(server: Server) -> None:
    async def work(session: ClientSession, _: str | None) -> tuple[str, str]:
        rows = await session.call_tool("db_query", {"sql": "select 1"})
        who = await session.call_tool("whoami", {})
        return _text(rows), _text(who)

    rows, who = anyio.run(_session, server, VouchAuth(server.agent, server.token), work)
    assert rows == "rows for select 1"
    seen = json.loads(who)
    assert seen["identity"] == AGENT
    assert sorted(seen["tools"]) == ["db_query", "whoami"]


def test_tools_list_is_what_the_token_allows(server: Server) -> None:
    async def work(session: ClientSession, _: str | None) -> list[str]:
        listed = await session.list_tools()
        return sorted(t.name for t in listed.tools)

    names = anyio.run(_session, server, VouchAuth(server.agent, server.token), work)
    # FastMCP lists three tools; the attenuated token grants two.
    assert names == ["db_query", "whoami"]


def _signed(
    srv: Server, signer: Signer, message: dict[str, Any], session: str | None
) -> tuple[dict[str, str], bytes]:
    body = json.dumps(message).encode()
    headers = {
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": "2025-06-18",
        "x-mcpvault-token": vouch.seal(srv.token),
    }
    if session is not None:
        headers["mcp-session-id"] = session
    for name, value in signer.sign("POST", srv.url, headers, body):
        headers[name] = value
    return headers, body


def _open_session(srv: Server) -> str:
    """A session opened by the agent through the real client and left open; its id."""

    async def work(_: ClientSession, session_id: str | None) -> str:
        assert session_id
        return session_id

    sid: str = anyio.run(_session, srv, VouchAuth(srv.agent, srv.token), work, False)
    return sid


def _call(name: str, ident: int) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": ident,
        "method": "tools/call",
        "params": {"name": name, "arguments": {"sql": "drop table t"}},
    }


def test_a_tool_outside_the_grants_is_refused_before_fastmcp(server: Server) -> None:
    # Through the client: the call fails.
    async def work(session: ClientSession, _: str | None) -> None:
        await session.call_tool("db_write", {"sql": "x"})

    with pytest.raises(Exception):
        anyio.run(_session, server, VouchAuth(server.agent, server.token), work)
    # On the wire: 403 forbidden, and FastMCP never ran the tool.
    sid = _open_session(server)
    headers, body = _signed(server, server.agent, _call("db_write", 7), sid)
    answer = httpx.post(server.url, headers=headers, content=body)
    assert answer.status_code == 403
    assert answer.json()["detail"]["error"] == "forbidden"
    assert "db_write" not in server.ran


def test_unsigned_clients_are_refused(server: Server) -> None:
    async def work(session: ClientSession, _: str | None) -> None:
        await session.list_tools()

    with pytest.raises(Exception):
        anyio.run(_session, server, None, work)
    answer = httpx.post(
        server.url,
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={"accept": "application/json, text/event-stream"},
    )
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Signature")


def test_a_tampered_body_is_refused(server: Server) -> None:
    sid = _open_session(server)
    headers, body = _signed(server, server.agent, _call("db_query", 8), sid)
    tampered = body.replace(b"drop table t", b"drop table u")
    assert len(tampered) == len(body) and tampered != body
    answer = httpx.post(server.url, headers=headers, content=tampered)
    assert answer.status_code == 401
    assert answer.json()["detail"]["error"] == "invalid_signature"


def test_a_replayed_request_is_refused(server: Server) -> None:
    sid = _open_session(server)
    headers, body = _signed(server, server.agent, _call("db_query", 9), sid)
    first = httpx.post(server.url, headers=headers, content=body)
    assert first.status_code == 200, first.text
    again = httpx.post(server.url, headers=headers, content=body)
    assert again.status_code == 401
    assert again.json()["detail"]["error"] == "invalid_signature"


def test_a_request_signed_for_another_server_is_refused(server: Server) -> None:
    # Signed for another origin, sent here unchanged: refused before any key lookup.
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).encode()
    headers = {"content-type": "application/json", "host": "mcp.elsewhere.example"}
    for name, value in server.agent.sign(
        "POST", "http://mcp.elsewhere.example/mcp", headers, body
    ):
        headers[name] = value
    answer = httpx.post(server.url, headers=headers, content=body)
    assert answer.status_code == 421


def test_another_agent_cannot_ride_the_session(server: Server) -> None:
    sid = _open_session(server)
    # The other agent is known and signs correctly, with the same token: the session is not its.
    headers, body = _signed(server, server.other, _call("db_query", 10), sid)
    answer = httpx.post(server.url, headers=headers, content=body)
    assert answer.status_code == 403
    before = server.stats.snapshot()
    assert before["by_address"].get(AGENT, 0) > 0
