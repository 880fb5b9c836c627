"""An ``httpx.Auth`` that signs every request with a `vouch.Signer` (RFC 9421).

    from vouch import Signer
    from vouch.httpx import VouchAuth

    auth = VouchAuth(Signer(key_pem, "https://agents.example/a"), token=token)
    httpx.post(url, json=message, auth=auth)

    # The MCP Python SDK (mcp<2):
    async with streamablehttp_client(url, auth=auth) as (read, write, _):
        ...

The signature covers the exact bytes httpx sends: ``requires_request_body`` makes httpx read the
body (a streamed body is buffered) before the flow runs, and the flow is the last thing to touch
the request before httpx's own ``request`` event hooks and the transport. A hook or transport
that changes a covered header, the URL or the body after that breaks the signature (the server
refuses it, as it must).
"""

from __future__ import annotations

import re
from collections.abc import Generator

import httpx

from vouch import Signer, VouchError, inspect, seal

__all__ = ["VouchAuth"]

# RFC 9110 field-name token.
_FIELD_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# The fields VouchAuth owns: a request that reaches it carrying them (a redirect httpx built from
# a signed request) has them replaced.
_OWNED = ("signature", "signature-input", "content-digest")


class VouchAuth(httpx.Auth):
    """Signs every request with `signer` and, when a token is given, attaches it first.

    `token` (the base64url capability token) travels in `token_header` (default
    ``X-MCPVault-Token``) and is covered by the signature (mcp and sep2752 profiles). It is sent
    sealed: an unsealed token carries the secret that attenuates it, so it is sealed once, here
    (``seal=False`` sends it as given, only for servers that must attenuate on your behalf). A
    request that already has the token header keeps its own.

    Works with `httpx.Client` and `httpx.AsyncClient` (and so with the MCP Python SDK's
    streamable HTTP client through ``auth=``). Any ``Signature``, ``Signature-Input`` and
    ``Content-Digest`` already on a request are replaced: VouchAuth owns them.
    """

    requires_request_body = True

    def __init__(
        self,
        signer: Signer,
        token: str | None = None,
        *,
        token_header: str = "X-MCPVault-Token",
        seal: bool = True,
    ) -> None:
        if not isinstance(signer, Signer):
            raise TypeError("signer must be a vouch.Signer")
        if not isinstance(token_header, str) or not _FIELD_NAME.match(token_header):
            raise ValueError("token_header: not a header field name")
        if token_header.lower() in _OWNED:
            raise ValueError(f"token_header: {token_header} is a signature field")
        if token is not None:
            token = _sendable(token, seal)
        self._signer = signer
        self._token = token
        self._token_header = token_header

    @property
    def signer(self) -> Signer:
        """The signer."""
        return self._signer

    @property
    def token_header(self) -> str:
        """The header the token travels in."""
        return self._token_header

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self.sign(request)
        yield request

    def sign(self, request: httpx.Request) -> None:
        """Signs `request` in place (its body must have been read): what the flow does."""
        for name in _OWNED:
            if name in request.headers:
                del request.headers[name]
        if self._token is not None and self._token_header not in request.headers:
            request.headers[self._token_header] = self._token
        fields = self._signer.sign(
            request.method,
            str(request.url),
            request.headers.raw,
            request.content,
            token_header=self._token_header,
        )
        for name, value in fields:
            request.headers[name] = value

    def __repr__(self) -> str:
        token = "with a token" if self._token is not None else "no token"
        return f"VouchAuth({self._signer!r}, {token} in {self._token_header})"


def _sendable(token: str, sealed: bool) -> str:
    if not isinstance(token, str):
        raise TypeError("token must be a str")
    token = token.strip()
    try:
        info = inspect(token)
        if sealed and not info["sealed"]:
            token = seal(token)
    except VouchError as e:
        raise ValueError(f"token: {e}") from e
    return token
