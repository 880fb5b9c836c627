"""vouch: attenuable Ed25519 capability tokens for MCP servers, verified by vouch's Rust core.

Every decode, signature check and attenuation rule runs in the Rust crate ``vouch-token``;
this package only converts arguments and results.
"""

from vouch._vouch import (
    Forbidden,
    InvalidToken,
    MissingToken,
    VouchError,
    attenuate,
    generate_keypair,
    inspect,
    mint,
    seal,
    verify,
)

__all__ = [
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
