"""vouch: attenuable Ed25519 capability tokens for MCP servers, verified by vouch's Rust core.

Every decode, signature check and attenuation rule runs in the Rust crate ``vouch-token``;
this package only converts arguments and results. `Signer` signs HTTP requests (RFC 9421) with
``vouch-httpsig``; `vouch.httpx.VouchAuth` (needs httpx) applies it to every httpx request.
"""

from typing import Any, TypedDict

from vouch._vouch import (
    Forbidden,
    InvalidToken,
    MissingToken,
    Signer,
    VouchError,
    attenuate,
    generate_keypair,
    inspect,
    mint,
    seal,
    verify,
)


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
