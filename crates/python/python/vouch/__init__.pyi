from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Literal, TypedDict, final

__all__ = [
    "Claims",
    "Facts",
    "Forbidden",
    "InvalidToken",
    "MissingToken",
    "Signer",
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

@final
class Signer:
    """Signs HTTP requests with one Ed25519 key under one profile (RFC 9421).

    `key`: a PKCS#8 PEM, a JWK with "d" (JSON text or dict), MCPVault's JSON key file, or 64 hex
    digits of the Ed25519 seed. `keyid` is required but for "sep2752", where it is the key's JWK
    thumbprint. Bad keys and arguments raise ValueError.
    """

    def __new__(
        cls,
        key: str | Mapping[str, Any],
        keyid: str | None = None,
        profile: Literal["mcp", "envoys", "sep2752"] = "mcp",
        *,
        tag: str | None = None,
        expires_in: int | None = None,
        nonce_bytes: int | None = None,
    ) -> Signer: ...
    @property
    def keyid(self) -> str:
        """The keyid every signature carries."""
    @property
    def profile(self) -> str:
        """The profile: "mcp", "envoys" or "sep2752"."""
    @property
    def public_key(self) -> str:
        """The Ed25519 public key, 64 hex digits."""
    @property
    def jwk_thumbprint(self) -> str:
        """The RFC 7638 JWK thumbprint of the public key."""
    def sign(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | Iterable[tuple[str | bytes, str | bytes]] | None = None,
        body: bytes | None = None,
        *,
        created: int | None = None,
        nonce: str | None = None,
        token_header: str | None = None,
    ) -> list[tuple[str, str]]:
        """The header fields to add: Content-Digest, Mcp-Method/Mcp-Name, Signature-Input, Signature."""
