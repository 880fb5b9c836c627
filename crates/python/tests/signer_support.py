"""Helpers for the signer tests: the `vouch` command, raw requests, key encodings."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

# RFC 8410 PKCS#8 v1 prefix of an Ed25519 private key; the 32-byte seed follows.
PKCS8_V1_PREFIX = bytes.fromhex("302e020100300506032b657004220420")


def vouch_bin() -> Path:
    """The `vouch` command built by `cargo build -p vouch-cli --bin vouch` (run-tests.sh does)."""
    explicit = os.environ.get("VOUCH_BIN")
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    path = Path(explicit) if explicit else target / "debug" / "vouch"
    if not path.is_file():
        pytest.fail(
            f"the vouch command is missing at {path}: run `cargo build -p vouch-cli --bin vouch` "
            "with the same CARGO_TARGET_DIR (crates/python/run-tests.sh does), or set VOUCH_BIN"
        )
    return path


def vouch(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(vouch_bin()), *args], input=stdin, capture_output=True, timeout=60, check=False
    )


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pem_of(seed_hex: str) -> str:
    der = base64.b64encode(PKCS8_V1_PREFIX + bytes.fromhex(seed_hex)).decode()
    return f"-----BEGIN PRIVATE KEY-----\n{der}\n-----END PRIVATE KEY-----\n"


def jwk_of(seed_hex: str, public_hex: str) -> dict[str, str]:
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "d": b64url(bytes.fromhex(seed_hex)),
        "x": b64url(bytes.fromhex(public_hex)),
    }


def raw_request(
    method: str,
    url: str,
    headers: list[tuple[str, str]] | list[tuple[bytes, bytes]],
    body: bytes = b"",
) -> bytes:
    """An HTTP/1.1 request as `vouch check` reads it (Host from the URL, Content-Length set)."""
    import httpx

    u = httpx.URL(url)
    lines = [f"{method} {u.raw_path.decode()} HTTP/1.1", f"Host: {u.netloc.decode()}"]
    for name, value in headers:
        n = name.decode() if isinstance(name, bytes) else name
        v = value.decode() if isinstance(value, bytes) else value
        if n.lower() in ("host", "content-length", "transfer-encoding"):
            continue
        lines.append(f"{n}: {v}")
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def raw_of(request: object) -> bytes:
    """The raw form of an `httpx.Request` as sent."""
    import httpx

    assert isinstance(request, httpx.Request)
    return raw_request(request.method, str(request.url), request.headers.raw, request.content)


def check(
    raw: bytes,
    public_hex: str,
    profile: str = "mcp",
    *,
    now: int | None = None,
    scheme: str = "http",
) -> subprocess.CompletedProcess[bytes]:
    """`vouch check` of a raw request; returncode 0 accepted, 1 rejected."""
    args = ["check", "--pubkey", public_hex, "--profile", profile, "--scheme", scheme]
    if now is not None:
        args += ["--now", str(now)]
    return vouch(*args, "-", stdin=raw)


def accepted(result: subprocess.CompletedProcess[bytes]) -> dict[str, object]:
    assert result.returncode == 0, result.stderr.decode()
    out: dict[str, object] = json.loads(result.stdout)
    return out


def rejected(result: subprocess.CompletedProcess[bytes]) -> str:
    """The reason code of a rejection (`vouch: rejected: ... (code)`)."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    line = result.stderr.decode().strip()
    assert line.startswith("vouch: rejected:"), line
    return line.rsplit("(", 1)[-1].rstrip(")")
