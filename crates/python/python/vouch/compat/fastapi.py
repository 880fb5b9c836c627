"""MCPVault's FastAPI guard on vouch's tokens: ``@auth.require_tool("db_query")``.

    auth = MCPVaultAuth(public_key_hex=pub_key)

    @app.post("/mcp")
    @auth.require_tool("db_query")
    async def handle_mcp_request(request: Request):
        facts = request.state.mcpvault_facts
        ...

The token is read from the ``X-MCPVault-Token`` header, else from ``params._meta.token`` of a
JSON-RPC body. Refusals follow MCPVault's table, as FastAPI ``HTTPException`` details (so the body
is ``{"detail": {...}}``):

==========================================  ======  ================================================
condition                                   status  body
==========================================  ======  ================================================
no token                                    401     ``{"detail": {"error": "missing_token"}}``
malformed, forged, expired, revoked token   401     ``{"detail": {"error": "invalid_token", "detail": ...}}``
tool or operation not granted               403     ``{"detail": {"error": "forbidden", "detail": ...}}``
==========================================  ======  ================================================

A body read for its token is read as strictly as vouch's Rust layers read it (so that the guard
and the endpoint cannot read two different messages): at most `max_body_bytes` (413 above), UTF-8,
one JSON object, no key twice in the message, in ``params`` or in ``params._meta``, ``jsonrpc``
``"2.0"``, a string ``method``, and a ``tools/call`` with a string ``params.name``; anything else
is answered 400 with a JSON-RPC error, as the Rust layers do. A request with the header has its
body left to the endpoint. Verification runs in vouch's Rust core with the GIL released.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar, cast

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from vouch import Forbidden, InvalidToken, MissingToken, generate_keypair, mint, verify
from vouch.compat import _check_revocation, _revocation_list

__all__ = ["MCPVaultAuth", "TOKEN_HEADER", "DEFAULT_MAX_BODY_BYTES"]

TOKEN_HEADER = "X-MCPVault-Token"
"""The header MCPVault's HTTP transports carry the token in."""

DEFAULT_MAX_BODY_BYTES = 1 << 20
"""The most body bytes read for a token (the Rust layers' default too)."""

_PARSE_ERROR = -32700
_INVALID_REQUEST = -32600

_log = logging.getLogger("vouch.compat.fastapi")

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


class _BadBody(Exception):
    """A body the guard refuses to read a token from: (JSON-RPC code, message)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Duplicates(dict):  # type: ignore[type-arg]
    """A JSON object in which some key appeared more than once."""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = dict(pairs)
    if len(out) != len(pairs):
        return _Duplicates(out)
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _body_token(body: bytes) -> str | None:
    """The string in ``params._meta.token`` of a strictly read JSON-RPC message, or None."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _BadBody(_PARSE_ERROR, "parse error: body is not UTF-8") from None
    try:
        message = json.loads(text, object_pairs_hook=_object, parse_constant=_no_constants)
    except (ValueError, RecursionError):
        raise _BadBody(_PARSE_ERROR, "parse error: body is not one JSON value") from None
    if isinstance(message, list):
        raise _BadBody(_INVALID_REQUEST, "invalid request: batches are not accepted")
    if not isinstance(message, dict):
        raise _BadBody(_INVALID_REQUEST, "invalid request: message is not an object")
    if isinstance(message, _Duplicates):
        raise _BadBody(_INVALID_REQUEST, "invalid request: duplicate key in the message")
    params = message.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    if isinstance(params, _Duplicates):
        raise _BadBody(_INVALID_REQUEST, "invalid request: duplicate key in params")
    if isinstance(meta, _Duplicates):
        raise _BadBody(_INVALID_REQUEST, "invalid request: duplicate key in params._meta")
    if message.get("jsonrpc") != "2.0":
        raise _BadBody(_INVALID_REQUEST, 'invalid request: jsonrpc is not "2.0"')
    method = message.get("method")
    if "method" in message and not isinstance(method, str):
        raise _BadBody(_INVALID_REQUEST, "invalid request: method is not a string")
    if method == "tools/call" and not (
        isinstance(params, dict) and isinstance(params.get("name"), str)
    ):
        raise _BadBody(_INVALID_REQUEST, "invalid request: tools/call without params.name")
    token = meta.get("token") if isinstance(meta, dict) else None
    return token if isinstance(token, str) else None


def _request_parameter(func: Callable[..., Any]) -> str:
    """The name of the endpoint's `Request` parameter (by annotation, else named ``request``)."""
    signature = inspect.signature(func)
    for name, parameter in signature.parameters.items():
        annotation = parameter.annotation
        if annotation is Request or annotation == "Request":
            return name
    if "request" in signature.parameters:
        return "request"
    raise TypeError(
        f"require_tool: {getattr(func, '__name__', func)!r} must take a `request: Request` "
        "parameter (the verified facts go to request.state.mcpvault_facts)"
    )


def _refuse(status: int, error: str, detail: str | None = None) -> HTTPException:
    body: dict[str, str] = {"error": error}
    if detail is not None:
        body["detail"] = detail
    return HTTPException(status_code=status, detail=body)


class MCPVaultAuth:
    """MCPVault's FastAPI guard: verifies a vouch token for the tool an endpoint serves.

    `public_key_hex` is the root public key (hex) tokens must verify under; `revocation_list`
    lists revoked ids (hex, from ``facts["revocation_ids"]``). vouch's additions, keyword only:
    `audience` (this server's name, for tokens minted with an audience), `header` (the token
    header), `max_body_bytes` (the most body bytes read for a token; 413 above).
    """

    def __init__(
        self,
        public_key_hex: str,
        revocation_list: Iterable[str] | None = None,
        *,
        audience: str | None = None,
        header: str = TOKEN_HEADER,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        if not isinstance(public_key_hex, str):
            raise ValueError("public_key_hex: expected a str")
        if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int):
            raise ValueError("max_body_bytes: expected an int")
        if max_body_bytes < 0:
            raise ValueError("max_body_bytes: expected a non-negative int")
        # A malformed or weak key fails here (ValueError), at start-up, not on each request:
        # a token of another root makes verify parse the key, then refuse the signature.
        try:
            verify(mint(generate_keypair()[0], {"ttl": 60}), public_key_hex)
        except InvalidToken:
            pass
        self._public_key_hex = public_key_hex
        self._revoked = _revocation_list(revocation_list or ())
        self._audience = audience
        self._header = header.lower()
        self._max_body_bytes = max_body_bytes

    def require_tool(
        self, tool_name: str, *, operation: str | None = None
    ) -> Callable[[Endpoint], Endpoint]:
        """A decorator for an endpoint taking a `Request`: the request's token must grant
        `tool_name` (and, with vouch's `operation`, that operation on it). The facts go to
        ``request.state.mcpvault_facts``; sync endpoints run in the thread pool."""
        if not isinstance(tool_name, str) or not tool_name:
            raise ValueError("require_tool: tool_name must be a non-empty str")
        if operation is not None and not isinstance(operation, str):
            raise ValueError("require_tool: operation must be a str")

        def decorator(func: Endpoint) -> Endpoint:
            name = _request_parameter(func)
            position = list(inspect.signature(func).parameters).index(name)
            is_async = inspect.iscoroutinefunction(func)

            @functools.wraps(func)
            async def guarded(*args: Any, **kwargs: Any) -> Any:
                request = kwargs[name] if name in kwargs else args[position]
                if not isinstance(request, Request):
                    raise TypeError(f"require_tool: {name!r} is not a Request")
                refused = await self._authorize(request, tool_name, operation)
                if refused is not None:
                    return refused
                if is_async:
                    return await cast(Callable[..., Awaitable[Any]], func)(*args, **kwargs)
                return await run_in_threadpool(func, *args, **kwargs)

            return cast(Endpoint, guarded)

        return decorator

    async def _authorize(
        self, request: Request, tool: str, operation: str | None
    ) -> JSONResponse | None:
        """Sets ``request.state.mcpvault_facts``, or raises the table's HTTPException; a body
        that cannot be read is answered here (400 with a JSON-RPC error)."""
        try:
            token = await self._token(request)
        except _BadBody as e:
            _log.info("body refused: %s", e.message)
            return JSONResponse(
                status_code=400,
                content={
                    "jsonrpc": "2.0",
                    "id": None,
                    "error": {"code": e.code, "message": e.message},
                },
            )
        if token is None:
            _log.info("no token")
            raise _refuse(401, "missing_token")
        try:
            _check_revocation(token, self._public_key_hex, self._revoked, self._audience)
            facts = verify(
                token, self._public_key_hex, tool=tool, op=operation, audience=self._audience
            )
        except MissingToken:
            raise _refuse(401, "missing_token") from None
        except InvalidToken as e:
            _log.info("token invalid: %s (%s)", e, e.reason)
            raise _refuse(401, "invalid_token", str(e)) from None
        except Forbidden as e:
            _log.info("token refused: %s (%s)", e, e.reason)
            raise _refuse(403, "forbidden", str(e)) from None
        request.state.mcpvault_facts = facts
        return None

    async def _token(self, request: Request) -> str | None:
        """The header's token if the header is there (an empty one is invalid, two are
        refused), else the body's."""
        values = request.headers.getlist(self._header)
        if len(values) > 1:
            raise _refuse(401, "invalid_token", "more than one token header")
        if values:
            if not values[0]:
                raise _refuse(401, "invalid_token", "empty token header")
            return values[0]
        body = await self._body(request)
        return _body_token(body) if body else None

    async def _body(self, request: Request) -> bytes:
        """The body, read at most up to the cap, and kept for the endpoint to read again."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_body_bytes:
            raise _refuse(413, "payload_too_large")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self._max_body_bytes:
                raise _refuse(413, "payload_too_large")
            chunks.append(chunk)
        body = b"".join(chunks)
        # Starlette's Request.body() returns this cached copy to the endpoint.
        request._body = body
        return body
