"""VouchMiddleware under a real uvicorn on 127.0.0.1, spoken to over raw sockets where the
framing matters: an oversized declared body answered before it is sent, a slow body cut with
408, one identity flooding while another keeps passing, and a FastAPI app behind it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request

import vouch

from asgi_support import (
    HOST,
    ORIGIN,
    Agent,
    EchoApp,
    Served,
    call_body,
    closed_by_server,
    connect,
    exchange,
    read_response,
)
from vouch.asgi import VouchMiddleware, caller_identity, grants

@pytest.fixture(scope="module")
def agents(tmp_path_factory: pytest.TempPathFactory) -> tuple[Agent, Agent]:
    tmp = tmp_path_factory.mktemp("server-keys")
    return Agent.create(tmp, "agent-a"), Agent.create(tmp, "agent-b")


@pytest.fixture
def serve() -> Iterator[Any]:
    started: list[Served] = []

    def start(app: Any) -> Served:
        s = Served(app)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def guarded(agents: tuple[Agent, ...], **kw: Any) -> tuple[EchoApp, VouchMiddleware]:
    app = EchoApp()
    mw = VouchMiddleware(app, origin=ORIGIN, agents={a.keyid: a.public for a in agents}, **kw)
    return app, mw


def test_a_signed_request_over_a_real_socket(agents: tuple[Agent, Agent], serve: Any) -> None:
    app, mw = guarded(agents)
    served = serve(mw)
    with connect(served) as sock:
        # Two requests on one keep-alive connection.
        for _ in range(2):
            sock.sendall(agents[0].sign(call_body("search"), host=HOST).raw())
            status, _, body = read_response(sock)
            assert status == 200, body
            assert json.loads(body)["vouch"]["identity"] == "agent-a"
    unsigned = agents[0].sign(call_body("search"), host=HOST).without("signature")
    status, headers, body = exchange(served, unsigned.raw())
    assert status == 401 and "www-authenticate" in headers


def test_an_oversized_declared_body_is_answered_before_it_is_sent(
    agents: tuple[Agent, Agent], serve: Any
) -> None:
    app, mw = guarded(agents, max_body_bytes=1024)
    served = serve(mw)
    request = agents[0].sign(call_body("search"), host=HOST).with_header(
        "content-length", str(50 * 1024 * 1024)
    )
    head = request.raw()[: -len(request.body)]
    with connect(served) as sock:
        sock.sendall(head)  # the 50 MiB body is never sent
        status, headers, body = read_response(sock)
        assert status == 413, body
        assert json.loads(body)["detail"]["error"] == "payload_too_large"
        assert headers.get("connection") == "close"
        assert closed_by_server(sock)
    assert app.seen == []


def test_a_slow_body_is_cut_with_408(agents: tuple[Agent, Agent], serve: Any) -> None:
    app, mw = guarded(agents, body_timeout=0.5)
    served = serve(mw)
    request = agents[0].sign(call_body("search"), host=HOST)
    raw = request.raw()
    with connect(served) as sock:
        sock.sendall(raw[: len(raw) - len(request.body) + 10])  # the head and 10 body bytes
        status, headers, body = read_response(sock)
        assert status == 408, body
        assert headers.get("connection") == "close"
        assert closed_by_server(sock)
    assert app.seen == []
    # The signature was not recorded: the same request, whole, passes.
    status, _, body = exchange(served, raw)
    assert status == 200, body


def test_one_identity_flooding_does_not_stop_another(agents: tuple[Agent, Agent], serve: Any) -> None:
    a, b = agents
    app, mw = guarded(agents, rate_limit=(1, 3))
    served = serve(mw)
    statuses = []
    retry_after = None
    for _ in range(8):
        status, headers, _ = exchange(served, a.sign(call_body("search"), host=HOST).raw())
        statuses.append(status)
        if status == 429:
            retry_after = headers.get("retry-after")
    assert statuses[:3] == [200, 200, 200], statuses
    assert 429 in statuses, statuses
    assert retry_after is not None and int(retry_after) >= 1
    for _ in range(2):
        status, _, body = exchange(served, b.sign(call_body("search"), host=HOST).raw())
        assert status == 200, body
    assert mw.stats.snapshot()["by_address"]["agent-b"] == 2


def test_a_fastapi_app_behind_the_middleware(
    agents: tuple[Agent, Agent], serve: Any, tmp_path: Path
) -> None:
    private, public = vouch.generate_keypair()
    token = vouch.mint(private, {"tools": ["search"], "ttl": 600})
    api = FastAPI()

    @api.post("/mcp")
    async def mcp(request: Request) -> dict[str, Any]:
        message = await request.json()
        return {
            "who": caller_identity(request),
            "tools": (grants(request) or {}).get("tools"),
            "method": message["method"],
            "state": request.state.vouch["keyid"],
        }

    @api.get("/health")
    async def health() -> dict[str, str]:
        return {"ok": "yes"}

    served = serve(
        VouchMiddleware(
            api,
            origin=ORIGIN,
            agents={agents[0].keyid: agents[0].public},
            roots=[public],
            exempt_paths=["/health"],
        )
    )
    signed = agents[0].sign(call_body("search", token), host=HOST)
    status, _, body = exchange(served, signed.raw())
    assert status == 200, body
    assert json.loads(body) == {
        "who": "agent-a",
        "tools": ["search"],
        "method": "tools/call",
        "state": "agent-a",
    }
    status, _, body = exchange(served, agents[0].sign(call_body("delete", token), host=HOST).raw())
    assert status == 403, body
    status, _, body = exchange(served, f"GET /health HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
    assert status == 200 and json.loads(body) == {"ok": "yes"}
