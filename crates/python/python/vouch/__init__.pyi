from typing import Any, ClassVar, TypedDict

__all__ = [
    "Claims",
    "Facts",
    "Forbidden",
    "InvalidToken",
    "MissingToken",
    "VouchError",
    "attenuate",
    "generate_keypair",
    "inspect",
    "mint",
    "seal",
    "verify",
]

class Claims(TypedDict, total=False):
    """The claims of `mint` and `attenuate`: the seed's keys plus vouch's.

    `issuer` and `subject` are for `mint` only. Unknown keys and wrong types raise ValueError.
    """

    tools: list[str] | tuple[str, ...]
    ttl: int
    issuer: str
    subject: str
    operations: dict[str, list[str]]
    resource_limits: dict[str, dict[str, int]]
    max_depth: int
    audience: str | list[str]
    holder: str
    expires_at: int
    not_before: int

class Facts(TypedDict):
    """The verified facts, in the seed's (MCPVault's) shape followed by vouch's fields."""

    tools: list[str]
    tool_wildcard: bool
    operations: list[list[str]]
    resource_limits: list[list[Any]]
    delegation_depth: int
    issuer: str
    subject: str
    expires_at: int
    not_before: int | None
    audience: list[str] | None
    holder: str | None
    revocation_ids: list[str]


class VouchError(Exception):
    """Base of the token errors."""

    code: ClassVar[int]
    """HTTP status: 401, or 403 for Forbidden."""
    error: ClassVar[str]
    """The seed's coarse reason: missing_token, invalid_token or forbidden."""
    reason: str
    """vouch's detailed code (expired, bad_signature, tool_not_granted, ...): for logs."""

class MissingToken(VouchError):
    """No token was presented (401, missing_token)."""

class InvalidToken(VouchError):
    """The token itself is unacceptable (401, invalid_token)."""

class Forbidden(VouchError):
    """The token is sound but does not grant the tool or operation (403, forbidden)."""

def generate_keypair() -> tuple[str, str]:
    """A fresh root key pair: (private_hex, public_hex)."""

def mint(private: str, claims: Claims) -> str:
    """Mints a root token; ttl defaults to 3600, issuer to "vouch", subject to "agent"."""

def attenuate(token: str, public: str, claims: Claims) -> str:
    """Narrows a token that verifies under `public` and is still valid."""

def seal(token: str) -> str:
    """Seals a token so that nobody can attenuate it further."""

def verify(
    token: str | None,
    public: str,
    *,
    tool: str | None = None,
    op: str | None = None,
    caller: str | None = None,
    audience: str | None = None,
    now: int | None = None,
) -> Facts:
    """Verifies a token for one request; raises MissingToken, InvalidToken or Forbidden."""

def inspect(token: str) -> dict[str, Any]:
    """What a token claims, with NO signature checked: never authorize on it."""
