from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any, final

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

@final
class SigningStats:
    """Signing statistics in the seed's shape; safe to share between threads."""

    def __new__(cls) -> SigningStats: ...
    def snapshot(self) -> dict[str, Any]:
        """`{"verified_requests", "rejected_requests", "distinct_identities", "by_address"}`."""
    def untracked(self) -> int: ...

@final
class Denied:
    """A refusal: answer with exactly this status, these fields and this body."""

    @property
    def status(self) -> int: ...
    @property
    def headers(self) -> list[tuple[bytes, bytes]]: ...
    @property
    def body(self) -> bytes: ...

@final
class Pending:
    """A request whose head passed `Gate.head`, waiting for its body (finish it once)."""

    @property
    def identity(self) -> str: ...
    def finish(self, body: bytes) -> dict[str, Any] | Denied: ...
    def too_large(self) -> Denied: ...
    def timed_out(self) -> Denied: ...
    def answered(self, status: int, headers: Iterable[tuple[bytes, bytes]]) -> None: ...
    def listing(self) -> ToolsList | None: ...

@final
class ToolsList:
    """The narrowing of one `tools/list` answer to the tools the token grants."""

    def json(self, body: bytes) -> bytes: ...
    def push(self, chunk: bytes) -> bytes: ...
    def finish(self) -> bytes: ...

@final
class Gate:
    """vouch-tower's checks, configured once (the native half of `VouchMiddleware`)."""

    def __new__(
        cls,
        *,
        origin: str | list[str],
        agents: dict[str, str] | None = None,
        resolve_https: bool = False,
        allowlist: list[str] | None = None,
        roots: list[str] | None = None,
        audience: str | list[str] | None = None,
        replay: str = "memory",
        replay_share: int | None = None,
        pins: str | None = ...,
        profile: str = "mcp",
        exempt_paths: list[str] = ...,
        max_body_bytes: int = ...,
        body_timeout: float = ...,
        rate_limit: tuple[int, int] | None = None,
        token_header: str | None = None,
        operations: dict[str, str] | None = None,
        stats: SigningStats | None = None,
        audit: Callable[[dict[str, Any]], object] | None = None,
        sessions: bool | tuple[int, int, float] | None = None,
    ) -> Gate: ...
    @property
    def blocking(self) -> bool: ...
    @property
    def binds_sessions(self) -> bool: ...
    @property
    def max_body_bytes(self) -> int: ...
    @property
    def body_timeout(self) -> float: ...
    @property
    def identity_only(self) -> bool: ...
    @property
    def stats(self) -> SigningStats: ...
    def is_exempt(self, path: str) -> bool: ...
    def head(
        self, method: str, path: bytes, query: bytes, headers: list[tuple[bytes, bytes]]
    ) -> Pending | Denied: ...

class VouchMiddleware:
    """Verifies every request to `app` with vouch's Rust checks before the app sees it."""

    app: ASGIApp
    gate: Gate
    stats: SigningStats
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
        max_body_bytes: int = 1048576,
        body_timeout: float = 10.0,
        rate_limit: tuple[int, int] | None = None,
        token_header: str | None = None,
        operations: Mapping[str, str] | None = None,
        stats: SigningStats | None = None,
        sessions: bool | tuple[int, int, float] = True,
    ) -> None: ...
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None: ...

def vouch_state(obj: Any) -> dict[str, Any] | None: ...
def caller_identity(ctx: Any) -> str | None: ...
def grants(ctx: Any) -> dict[str, Any] | None: ...
