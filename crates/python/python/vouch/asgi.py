"""vouch's server checks for any ASGI app (FastMCP's ``streamable_http_app()``, FastAPI, ...).

``VouchMiddleware`` verifies every HTTP request's RFC 9421 signature (and, given token roots,
its capability token) before the app sees it. Every check and every error answer is
vouch-tower's, run in Rust (``vouch._vouch.Gate``) with the GIL released; this module only
moves ASGI messages:

1. the request head is checked first (origin, declared length, signature, allowlist, pins),
   before any body byte is read;
2. the body is then read up to ``max_body_bytes`` within ``body_timeout`` and checked (digest,
   replay, rate limit, JSON-RPC strictness, token and grants);
3. an allowed request reaches the app with ``scope["state"]["vouch"] = {"identity", "keyid",
   "facts"}`` (``facts`` is None without ``roots``), the buffered body, and then the client's
   own ``receive`` (so that disconnects reach streaming handlers). Client-sent ``x-vouch-*``
   fields never reach the app;
4. the app's answer to a ``tools/list`` (JSON, or an SSE stream event by event) is narrowed to
   the tools the token grants, as the gateway narrows it; a listing in another form is not
   passed on (502).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any

from vouch._vouch import Denied, Gate, Pending, SigningStats, ToolsList

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

__all__ = [
    "Denied",
    "Gate",
    "Pending",
    "SigningStats",
    "ToolsList",
    "VouchMiddleware",
    "caller_identity",
    "grants",
    "vouch_state",
]

_PREFIX = b"x-vouch-"


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


class VouchMiddleware:
    """Verifies every request to ``app``; see the module's documentation.

    ``origin``: the origin(s) clients address this server by (``"https://mcp.example"``); a
    request for any other (its ``Host``) is refused 421, so a request signed for another server
    cannot be relayed here. ``agents``: keyid → public key (PEM, JWK or 64 hex digits);
    ``resolve_https``: also fetch keys of URL keyids over HTTPS. ``allowlist``: identities (``*``
    matches any run) that may call. ``roots``: token root public keys; None checks identity
    only. ``audience``: this server's audience(s) for tokens. ``replay``/``pins``: ``"memory"``
    or a ``redis://`` URL (``pins=None``: no pinning). ``profile``: ``"mcp"`` or ``"envoys"``
    (envoys-mcp's clients). ``exempt_paths``: exact paths served without checks.
    ``audit``: called with a dict per decision (layer, accepted, identity, reason, method,
    tool). ``rate_limit``: ``(per_second, burst)`` per identity (default 50, 100).
    ``sessions``: bind each MCP session (``Mcp-Session-Id``) to the signer whose request
    created it (403 for anyone else, 404 for a session it did not bind, 429/503 over the
    per-identity/total caps); ``True`` (16 per identity, 10 000 in all, 30 min idle), a
    ``(capacity, per_identity, idle_seconds)`` tuple, or ``False``.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        origin: str | Iterable[str],
        agents: Mapping[str, str] | None = None,
        resolve_https: bool = False,
        allowlist: Iterable[str] | None = None,
        roots: Iterable[str] | None = None,
        audience: str | Iterable[str] | None = None,
        replay: str = "memory",
        replay_share: int | None = None,
        pins: str | None = "memory",
        exempt_paths: Iterable[str] = (),
        audit: Callable[[dict[str, Any]], object] | None = None,
        profile: str = "mcp",
        max_body_bytes: int = 1 << 20,
        body_timeout: float = 10.0,
        rate_limit: tuple[int, int] | None = None,
        token_header: str | None = None,
        operations: Mapping[str, str] | None = None,
        stats: SigningStats | None = None,
        sessions: bool | tuple[int, int, float] = True,
    ) -> None:
        self.app = app
        self.gate = Gate(
            origin=origin if isinstance(origin, str) else list(origin),
            agents=dict(agents) if agents is not None else None,
            resolve_https=resolve_https,
            allowlist=list(allowlist) if allowlist is not None else None,
            roots=list(roots) if roots is not None else None,
            audience=(
                audience if audience is None or isinstance(audience, str) else list(audience)
            ),
            replay=replay,
            replay_share=replay_share,
            pins=pins,
            profile=profile,
            exempt_paths=list(exempt_paths),
            max_body_bytes=max_body_bytes,
            body_timeout=body_timeout,
            rate_limit=rate_limit,
            token_header=token_header,
            operations=dict(operations) if operations is not None else None,
            stats=stats,
            audit=audit,
            sessions=sessions,
        )
        self.stats: SigningStats = self.gate.stats
        self._blocking = self.gate.blocking
        self._cap = self.gate.max_body_bytes
        self._timeout = self.gate.body_timeout
        self._sessions = self.gate.binds_sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.app(scope, receive, send)
            return
        if kind != "http":
            # Websockets carry no signed body and are not checked: refused.
            if kind == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        headers = scope["headers"]
        inner_headers = [(k, v) for k, v in headers if not k.lower().startswith(_PREFIX)]
        if self.gate.is_exempt(scope["path"]):
            await self.app({**scope, "headers": inner_headers}, receive, send)
            return
        raw_path = scope.get("raw_path") or scope["path"].encode("utf-8")
        query = scope.get("query_string", b"")
        gate = self.gate
        if self._blocking:
            step = await asyncio.to_thread(gate.head, scope["method"], raw_path, query, headers)
        else:
            step = gate.head(scope["method"], raw_path, query, headers)
        if isinstance(step, Denied):
            await _answer(send, step)
            return
        try:
            body = await _read_within(receive, self._cap, self._timeout)
        except asyncio.TimeoutError:
            await _answer(send, step.timed_out())
            return
        except _TooLarge:
            await _answer(send, step.too_large())
            return
        except _Disconnected:
            return
        if self._blocking:
            result = await asyncio.to_thread(step.finish, body)
        else:
            result = step.finish(body)
        if isinstance(result, Denied):
            await _answer(send, result)
            return
        state = dict(scope.get("state") or ())
        state["vouch"] = result
        inner = {**scope, "headers": inner_headers, "state": state}
        if self._sessions:
            send = _watching(send, step)
        listing = step.listing()
        if listing is not None:
            send = _narrowing(send, listing)
        await self.app(inner, _replay(body, receive), send)


async def _read(receive: Receive, cap: int) -> bytes:
    """The whole body, or _TooLarge past `cap`, or _Disconnected."""
    chunks: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.disconnect":
            raise _Disconnected
        if kind != "http.request":
            continue
        chunk = message.get("body", b"")
        if chunk:
            total += len(chunk)
            if total > cap:
                raise _TooLarge
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    if len(chunks) == 1:
        return chunks[0]
    return b"".join(chunks)


if sys.version_info >= (3, 11):

    async def _read_within(receive: Receive, cap: int, timeout: float) -> bytes:
        async with asyncio.timeout(timeout):
            return await _read(receive, cap)

else:

    async def _read_within(receive: Receive, cap: int, timeout: float) -> bytes:
        return await asyncio.wait_for(_read(receive, cap), timeout)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that yields the buffered body once, then the client's own messages."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def _watching(send: Send, step: Pending) -> Send:
    """A send that shows the app's answer to the session binding (binds a session it names)."""

    async def watched(message: Message) -> None:
        if message["type"] == "http.response.start":
            step.answered(message["status"], message.get("headers", ()))
        await send(message)

    return watched


_LISTING_INVALID = b'{"detail":{"error":"upstream_invalid"}}'
# The most of a JSON tools/list answer held to be narrowed (the gateway's bound).
_MAX_LISTING = 8 << 20


def _media_type(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The media type of the one Content-Type field, lowercased; None if absent or repeated."""
    found = [v for k, v in headers if k.lower() == b"content-type"]
    if len(found) != 1:
        return None
    return found[0].split(b";", 1)[0].strip().lower()


def _narrowing(send: Send, listing: ToolsList) -> Send:
    """A send that narrows the app's answer to a tools/list to the granted tools."""
    mode = ""
    start: Message | None = None
    held: list[bytes] = []
    size = 0

    async def refuse() -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 502,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(_LISTING_INVALID)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": _LISTING_INVALID})

    async def narrowed(message: Message) -> None:
        nonlocal mode, start, size
        kind = message["type"]
        if kind == "http.response.start":
            headers = list(message.get("headers", ()))
            media = _media_type(headers)
            if media == b"text/event-stream":
                mode = "sse"
                headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
                await send({**message, "headers": headers})
            elif media == b"application/json":
                mode, start = "json", message
            elif not 200 <= message["status"] < 300:
                mode = "pass"
                await send(message)
            else:
                # A listing in a form that cannot be narrowed is not passed on.
                mode = "refused"
                await refuse()
            return
        if kind != "http.response.body":
            await send(message)
            return
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        if mode == "sse":
            try:
                out = listing.push(chunk)
                if not more:
                    out += listing.finish()
            except ValueError:
                mode = "refused"
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            if out or not more:
                await send({"type": "http.response.body", "body": out, "more_body": more})
        elif mode == "json" and start is not None:
            size += len(chunk)
            if size > _MAX_LISTING:
                mode = "refused"
                await refuse()
                return
            held.append(chunk)
            if more:
                return
            try:
                body = listing.json(b"".join(held))
            except ValueError:
                mode = "refused"
                await refuse()
                return
            headers = [(k, v) for k, v in start.get("headers", ()) if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        elif mode == "pass":
            await send(message)

    return narrowed


async def _answer(send: Send, denied: Denied) -> None:
    await send({"type": "http.response.start", "status": denied.status, "headers": denied.headers})
    await send({"type": "http.response.body", "body": denied.body})


def _scope_of(obj: Any) -> Mapping[str, Any] | None:
    """The ASGI scope of a FastMCP Context, a Starlette/FastAPI Request, or a scope."""
    if isinstance(obj, Mapping):
        return obj
    request_context = getattr(obj, "request_context", None)
    if request_context is not None:
        obj = getattr(request_context, "request", None)
    scope = getattr(obj, "scope", None)
    return scope if isinstance(scope, Mapping) else None


def vouch_state(obj: Any) -> dict[str, Any] | None:
    """``{"identity", "keyid", "facts"}`` of a verified request, or None.

    ``obj`` is a FastMCP ``Context``, a Starlette/FastAPI ``Request`` or an ASGI scope.
    """
    scope = _scope_of(obj)
    if scope is None:
        return None
    state = scope.get("state")
    if not isinstance(state, Mapping):
        return None
    found = state.get("vouch")
    return found if isinstance(found, dict) else None


def caller_identity(ctx: Any) -> str | None:
    """The verified signer's identity (its address, else its keyid), or None if the request
    was not verified by ``VouchMiddleware`` (an exempt path, another transport)."""
    state = vouch_state(ctx)
    return None if state is None else state["identity"]


def grants(ctx: Any) -> dict[str, Any] | None:
    """The verified token's facts (the seed's shape), or None (identity-only, not verified)."""
    state = vouch_state(ctx)
    return None if state is None else state["facts"]
