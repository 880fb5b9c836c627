"""Helpers of the VouchMiddleware tests: agents that sign with the real `vouch sign`, an
in-process ASGI driver that records what the app and the client saw, and a redis-server."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import uvicorn

import vouch
from signer_support import b64url, vouch_bin  # one definition of each for every test


@dataclass
class Signed:
    """A request as sent: method, origin-form target, fields (lower-case names) and body."""

    method: str
    target: str
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: str) -> list[bytes]:
        key = name.lower().encode()
        return [v for k, v in self.headers if k == key]

    def with_header(self, name: str, value: str | bytes) -> Signed:
        """A copy with `name` replaced by one field `value`."""
        key = name.lower().encode()
        v = value.encode() if isinstance(value, str) else value
        return replace(self, headers=[(k, x) for k, x in self.headers if k != key] + [(key, v)])

    def adding(self, name: str, value: str | bytes) -> Signed:
        """A copy with one more `name` field."""
        v = value.encode() if isinstance(value, str) else value
        return replace(self, headers=self.headers + [(name.lower().encode(), v)])

    def without(self, name: str) -> Signed:
        key = name.lower().encode()
        return replace(self, headers=[(k, v) for k, v in self.headers if k != key])

    def with_body(self, body: bytes) -> Signed:
        """A copy carrying another body (Content-Length fixed, the signed digest kept)."""
        return replace(self, body=body).with_header("content-length", str(len(body)))

    def raw(self) -> bytes:
        head = f"{self.method} {self.target} HTTP/1.1\r\n".encode()
        for k, v in self.headers:
            head += k + b": " + v + b"\r\n"
        return head + b"\r\n" + self.body

    def scope(self) -> dict[str, Any]:
        path, _, query = self.target.partition("?")
        return {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": self.method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": list(self.headers),
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }


def parse_raw(raw: bytes) -> Signed:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    method, target, _ = lines[0].decode().split(" ", 2)
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.append((name.strip().lower(), value.strip()))
    return Signed(method, target, headers, body)


@dataclass
class Agent:
    """A signer with a fresh Ed25519 key, signing through `vouch sign`."""

    keyid: str
    key_file: Path
    public: str
    jwk: str

    @classmethod
    def create(cls, tmp: Path, keyid: str) -> Agent:
        private, public = vouch.generate_keypair()
        d, x = bytes.fromhex(private), bytes.fromhex(public)
        key_file = tmp / f"{public}.jwk"
        key_file.write_text(
            json.dumps({"kty": "OKP", "crv": "Ed25519", "d": b64url(d), "x": b64url(x)})
        )
        jwk = json.dumps({"kty": "OKP", "crv": "Ed25519", "x": b64url(x)})
        return cls(keyid, key_file, public, jwk)

    def sign(
        self,
        body: bytes | str = b"",
        *,
        method: str = "POST",
        target: str = "/mcp",
        host: str = "mcp.example",
        headers: tuple[tuple[str, str], ...] = (),
        profile: str = "mcp",
    ) -> Signed:
        if isinstance(body, str):
            body = body.encode()
        raw = f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n"
        if body or method == "POST":
            raw += "Content-Type: application/json\r\n"
        for k, v in headers:
            raw += f"{k}: {v}\r\n"
        raw += f"Content-Length: {len(body)}\r\n\r\n"
        out = subprocess.run(
            [
                vouch_bin(),
                "sign",
                "--key",
                str(self.key_file),
                "--keyid",
                self.keyid,
                "--profile",
                profile,
                "--scheme",
                "http",
                "-",
            ],
            input=raw.encode() + body,
            capture_output=True,
            check=False,
        )
        assert out.returncode == 0, out.stderr.decode()
        return parse_raw(out.stdout.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))


def call_body(tool: str, token: str | None = None, ident: int = 1) -> str:
    params: dict[str, Any] = {"name": tool, "arguments": {}}
    if token is not None:
        params["_meta"] = {"token": token}
    return json.dumps({"jsonrpc": "2.0", "id": ident, "method": "tools/call", "params": params})


@dataclass
class Seen:
    """What the app saw of one request."""

    scope: dict[str, Any]
    body: bytes
    after: list[dict[str, Any]] = field(default_factory=list)


class EchoApp:
    """An ASGI app that records each request and answers 200 with its vouch state."""

    def __init__(self, *, read_after: bool = False) -> None:
        self.seen: list[Seen] = []
        self.read_after = read_after

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            message = await receive()
            assert message["type"] == "lifespan.startup"
            await send({"type": "lifespan.startup.complete"})
            return
        body = b""
        while True:
            m = await receive()
            body += m.get("body", b"")
            if not m.get("more_body"):
                break
        seen = Seen(scope, body)
        if self.read_after:
            # What a streaming handler gets next: the client's own messages.
            seen.after.append(await receive())
        self.seen.append(seen)
        state = scope.get("state", {}).get("vouch")
        payload = json.dumps({"vouch": state}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


@dataclass
class Answer:
    status: int
    headers: dict[bytes, bytes]
    body: bytes
    received: int

    def json(self) -> Any:
        return json.loads(self.body)

    def detail(self) -> Any:
        return self.json()["detail"]


def run(
    app: Any,
    request: Signed,
    *,
    messages: list[dict[str, Any]] | None = None,
    hang: bool = False,
    scope: dict[str, Any] | None = None,
) -> Answer:
    """Sends `request` through `app` in-process; counts the receive() calls the app made.

    `messages` replaces the body messages (default: the whole body in one); `hang` makes
    receive wait forever once they are used up (else it says http.disconnect). An app that
    answers nothing gives status 0."""
    queue = list(
        messages
        if messages is not None
        else [{"type": "http.request", "body": request.body, "more_body": False}]
    )
    sent: list[dict[str, Any]] = []
    received = 0

    async def receive() -> dict[str, Any]:
        nonlocal received
        received += 1
        if queue:
            return queue.pop(0)
        if hang:
            await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope or request.scope(), receive, send))
    start = next((m for m in sent if m["type"] == "http.response.start"), None)
    if start is None:
        # No answer at all (the client went away): status 0.
        return Answer(0, {}, b"", received)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Answer(start["status"], dict(start["headers"]), body, received)


class RedisServer:
    """A redis-server on a free loopback port (a missing redis-server fails, never skips)."""

    def __init__(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail(
                "redis-server is not installed: the Redis tests need a real one "
                "(`apt-get install redis-server`; `cargo xtask ci` installs it)"
            )
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        pytest.fail(f"redis-server did not listen on port {self.port} within 5 s")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def middleware(app: Any, agents: list[Agent], **kw: Any) -> Any:
    from vouch.asgi import VouchMiddleware

    kw.setdefault("origin", "http://mcp.example")
    return VouchMiddleware(app, agents={a.keyid: a.public for a in agents}, **kw)


# --- a real server --------------------------------------------------------------------------

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
