"""MCPVault's Python API on vouch's tokens: its quickstart runs with only the imports changed.

    from vouch.compat import MCPVault                   # was: from mcpvault import MCPVault
    from vouch.compat.fastapi import MCPVaultAuth       # was: from mcpvault.middleware.fastapi ...

`MCPVault` takes MCPVault's config dicts (operations as ``(tool, op)`` pairs, resource limits as
``(tool, key, value)`` triples, ``max_delegation_depth``, ``requested_tool``, ``revocation_list``)
and turns them into vouch's claims; every decode, signature check and attenuation rule runs in
vouch's Rust core. Tokens are vouch's, not Biscuit: an MCPVault token does not verify here, nor a
vouch token in MCPVault.

Where MCPVault is lenient this is strict: an unknown config key, a wrong type or an operation
other than read, write or execute raises `ValueError` instead of being ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, cast

from vouch import (
    Claims,
    Forbidden,
    InvalidToken,
    MissingToken,
    VouchError,
    attenuate,
    generate_keypair,
    inspect,
    mint,
    verify,
)

__all__ = ["MCPVault", "McpVaultError", "Forbidden", "InvalidToken", "MissingToken"]

McpVaultError = VouchError
"""MCPVault's exception name for vouch's token errors (`MissingToken`, `InvalidToken`,
`Forbidden`). Mistakes in the caller's own config are `ValueError`."""

_OPERATIONS = ("read", "write", "execute")
"""The operations MCPVault knows (it reads them case-insensitively)."""

_MINT_KEYS = frozenset(
    {
        "tools",
        "ttl",
        "issuer",
        "subject",
        "max_delegation_depth",
        "operations",
        "resource_limits",
        # vouch's own claims, passed through.
        "audience",
        "holder",
        "not_before",
    }
)
_ATTENUATE_KEYS = frozenset(
    {
        "tools",
        "ttl",
        "max_delegation_depth",
        "operations",
        "resource_limits",
        "audience",
        "holder",
        "not_before",
    }
)
_VERIFY_KEYS = frozenset({"requested_tool", "revocation_list"})


def _pairs(value: Any, key: str, width: int) -> list[tuple[Any, ...]]:
    """A list or tuple of `width`-long lists or tuples (a bare str or dict is refused)."""
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{key}: expected a list of {width}-tuples")
    rows = []
    for row in value:
        if not isinstance(row, (list, tuple)) or len(row) != width:
            raise ValueError(f"{key}: expected a list of {width}-tuples")
        rows.append(tuple(row))
    return rows


def _operations(value: Any) -> dict[str, list[str]]:
    """MCPVault's ``[(tool, op), ...]`` as vouch's ``{tool: [op, ...]}``."""
    out: dict[str, list[str]] = {}
    for tool, op in _pairs(value, "operations", 2):
        if not isinstance(tool, str) or not isinstance(op, str):
            raise ValueError("operations: expected (str, str) pairs")
        name = op.lower()
        if name not in _OPERATIONS:
            raise ValueError(f"operations: unknown operation {op!r} (read, write or execute)")
        ops = out.setdefault(tool, [])
        if name not in ops:
            ops.append(name)
    return out


def _limits(value: Any) -> dict[str, dict[str, int]]:
    """MCPVault's ``[(tool, key, value), ...]`` as vouch's ``{tool: {key: value}}``."""
    out: dict[str, dict[str, int]] = {}
    for tool, name, limit in _pairs(value, "resource_limits", 3):
        if not isinstance(tool, str) or not isinstance(name, str):
            raise ValueError("resource_limits: expected (str, str, int) triples")
        per_tool = out.setdefault(tool, {})
        if name in per_tool:
            raise ValueError(f"resource_limits: {tool}.{name} given twice")
        # The int check (no bool, no negative) is the native claims parser's.
        per_tool[name] = limit
    return out


def _claims(config: Mapping[str, Any], allowed: frozenset[str], what: str) -> Claims:
    """MCPVault's MintConfig or AttenuateConfig dict as vouch's claims."""
    if not isinstance(config, Mapping):
        raise ValueError(f"{what}: expected a dict")
    claims: dict[str, Any] = {}
    for key, value in config.items():
        if key not in allowed:
            raise ValueError(f"{what}: unknown key {key!r} (known: {', '.join(sorted(allowed))})")
        if key == "tools":
            # None is MCPVault's tool wildcard: no tools claim at all.
            if value is not None:
                claims["tools"] = value
        elif key == "max_delegation_depth":
            claims["max_depth"] = value
        elif key == "operations":
            claims["operations"] = _operations(value)
        elif key == "resource_limits":
            claims["resource_limits"] = _limits(value)
        else:
            claims[key] = value
    # The native parser checks every value's type; Claims is only its static shape.
    return cast(Claims, claims)


def _revocation_list(value: Any) -> frozenset[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValueError("revocation_list: expected a list of hex revocation ids")
    ids = []
    for item in value:
        if not isinstance(item, str):
            raise ValueError("revocation_list: expected a list of hex revocation ids")
        ids.append(item.lower())
    return frozenset(ids)


def _check_revocation(
    token: str | None, public_key_hex: str, revoked: frozenset[str], audience: str | None = None
) -> None:
    """Raises `InvalidToken` if a block of `token` (verified under the key) is revoked."""
    if not revoked:
        return
    facts = verify(token, public_key_hex, audience=audience)
    if revoked.intersection(facts["revocation_ids"]):
        error = InvalidToken("token revoked")
        error.reason = "revoked"
        raise error


class MCPVault:
    """MCPVault's token API: key pairs, mint, attenuate, verify and inspect, on vouch's core.

    Keys are hex: the private key is the 32-byte Ed25519 seed, the public key its 32 bytes.
    """

    def generate_keypair(self) -> tuple[str, str]:
        """A fresh root key pair ``(private_key_hex, public_key_hex)``."""
        return generate_keypair()

    def mint(self, private_key_hex: str, config: Mapping[str, Any]) -> str:
        """A root token. `config` needs ``ttl``, ``issuer`` and ``subject`` (as MCPVault);
        ``tools`` (None or absent: every tool), ``operations``, ``resource_limits`` and
        ``max_delegation_depth`` (default 5) are optional."""
        claims = _claims(config, _MINT_KEYS, "mint config")
        for required in ("ttl", "issuer", "subject"):
            if required not in claims:
                raise ValueError(f"mint config: missing {required!r}")
        return mint(private_key_hex, claims)

    def attenuate(self, token_b64: str, public_key_hex: str, config: Mapping[str, Any]) -> str:
        """Narrows `token_b64`, which must verify under `public_key_hex` and still be valid;
        a config that would widen it raises `ValueError`."""
        return attenuate(token_b64, public_key_hex, _claims(config, _ATTENUATE_KEYS, "config"))

    def verify(
        self, token_b64: str, public_key_hex: str, options: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Verifies `token_b64` for ``options["requested_tool"]`` and returns the facts (the
        seed's keys, then vouch's). ``options["revocation_list"]`` lists revoked ids (hex)."""
        if not isinstance(options, Mapping):
            raise ValueError("verify options: expected a dict")
        unknown = set(options) - _VERIFY_KEYS
        if unknown:
            raise ValueError(f"verify options: unknown key {sorted(unknown)[0]!r}")
        tool = options.get("requested_tool")
        if not isinstance(tool, str):
            raise ValueError("verify options: requested_tool must be a str")
        revoked = _revocation_list(options.get("revocation_list", ()))
        _check_revocation(token_b64, public_key_hex, revoked)
        return dict(verify(token_b64, public_key_hex, tool=tool))

    def inspect(self, token_b64: str) -> dict[str, Any]:
        """What the token claims, with NO signature checked: never authorize on it."""
        return inspect(token_b64)
