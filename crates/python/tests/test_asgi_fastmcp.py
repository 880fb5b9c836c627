"""A real FastMCP server (the MCP Python SDK's streamable HTTP app) under uvicorn, behind
VouchMiddleware, driven over raw sockets with requests signed by `vouch sign`: the session
opened by initialize, caller_identity and grants inside a tool, a tool outside the grants,
another signer in the session, and the session's end. (The MCP client with VouchAuth is
another test's.)"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from mcp.server.fastmcp import Context, FastMCP
from mcp.server.transport_security import TransportSecuritySettings

import vouch
from asgi_support import HOST, ORIGIN, Agent, Served, connect, read_response
from vouch.asgi import VouchMiddleware, caller_identity, grants


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, Agent, Agent, str]]:
    tmp = tmp_path_factory.mktemp("fastmcp-keys")
    a, b = Agent.create(tmp, "agent-a"), Agent.create(tmp, "agent-b")
    private, public = vouch.generate_keypair()
    token = vouch.mint(private, {"tools": ["whoami"], "ttl": 600})
    # FastMCP's own Host check must allow the origin the middleware serves.
    security = TransportSecuritySettings(allowed_hosts=[HOST], allowed_origins=[ORIGIN])
    mcp = FastMCP("vouch-test", json_response=True, transport_security=security)

    @mcp.tool()
    def whoami(ctx: Context) -> str:
        facts = grants(ctx) or {}
        return json.dumps({"who": caller_identity(ctx), "tools": facts.get("tools")})

    @mcp.tool()
    def secret() -> str:
        return "never"

    app = VouchMiddleware(
        mcp.streamable_http_app(),
        origin=ORIGIN,
        agents={a.keyid: a.public, b.keyid: b.public},
        roots=[public],
    )
    served = Served(app)
    yield served, a, b, token
    served.stop()


def rpc(
    served: Served,
    agent: Agent,
    token: str,
    message: dict[str, Any] | None,
    session: str | None = None,
    method: str = "POST",
) -> tuple[int, dict[str, str], Any]:
    headers = [("Accept", "application/json, text/event-stream"), ("X-MCPVault-Token", token)]
    if session is not None:
        headers.append(("Mcp-Session-Id", session))
    body = json.dumps(message) if message is not None else ""
    request = agent.sign(body, method=method, host=HOST, headers=tuple(headers))
    with connect(served) as sock:
        sock.sendall(request.raw())
        status, fields, raw = read_response(sock)
    return status, fields, json.loads(raw) if raw else None


INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "1"},
    },
}


def call(tool: str, ident: int) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": ident, "method": "tools/call", "params": {"name": tool, "arguments": {}}}


def test_a_fastmcp_server_behind_vouch(setup: tuple[Served, Agent, Agent, str]) -> None:
    served, a, b, token = setup
    status, fields, answer = rpc(served, a, token, INIT)
    assert status == 200, answer
    session = fields["mcp-session-id"]
    status, _, _ = rpc(served, a, token, {"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
    assert status == 202
    # Inside the tool: the verified signer and the token's grants.
    status, _, answer = rpc(served, a, token, call("whoami", 2), session)
    assert status == 200, answer
    text = answer["result"]["content"][0]["text"]
    assert json.loads(text) == {"who": "agent-a", "tools": ["whoami"]}
    # A tool outside the grants never reaches FastMCP.
    status, _, answer = rpc(served, a, token, call("secret", 3), session)
    assert status == 403 and answer["detail"]["error"] == "forbidden"
    # Another signer, same token, in agent-a's session: refused.
    status, _, answer = rpc(served, b, token, call("whoami", 4), session)
    assert status == 403 and answer["detail"]["detail"] == "session_bound_to_another_caller"
    # Unsigned: refused.
    request = a.sign(json.dumps(call("whoami", 5)), host=HOST).without("signature")
    with connect(served) as sock:
        sock.sendall(request.raw())
        status, _, _ = read_response(sock)
    assert status == 401
    # agent-a ends its session; it is gone for everyone.
    status, _, _ = rpc(served, a, token, None, session, method="DELETE")
    assert status == 200
    status, _, answer = rpc(served, a, token, call("whoami", 6), session)
    assert status == 404
