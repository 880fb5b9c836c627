"""VouchMiddleware under a real uvicorn on 127.0.0.1, spoken to over raw sockets where the
framing matters: an oversized declared body answered before it is sent, a slow body cut with
408, one identity flooding while another keeps passing, and a FastAPI app behind it."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request

import vouch

from asgi_support import Agent, EchoApp, call_body
from vouch.asgi import VouchMiddleware, caller_identity, grants

ORIGIN = "http://mcp.test"
HOST = "mcp.test"


class Served:
    """An ASGI app served by uvicorn on a free loopback port, in a thread."""

    def __init__(self, app: Any) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                break
            time.sleep(0.05)
        else:
            pytest.fail("uvicorn did not start within 10 s")
        self.port: int = self.server.servers[0].sockets[0].getsockname()[1]

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    assert "transfer-encoding" not in headers, "the tests' apps answer with a Content-Length"
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside the body"
        rest += chunk
    return status, headers, rest[:length]


def connect(served: Served) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", served.port), timeout=10)
    return sock


def exchange(served: Served, data: bytes) -> tuple[int, dict[str, str], bytes]:
    with connect(served) as sock:
        sock.sendall(data)
        return read_response(sock)


def closed_by_server(sock: socket.socket) -> bool:
    """True if the server closes the connection (reads EOF within the socket timeout)."""
    try:
        while True:
            if sock.recv(65536) == b"":
                return True
    except (TimeoutError, socket.timeout):
        return False
    except ConnectionResetError:
        return True


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
