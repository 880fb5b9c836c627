"""vouch.Signer: key forms, strict inputs, exact bytes, and the real `vouch check` and `vouch sign`."""

from __future__ import annotations

import base64
import hashlib
import json
import threading

import pytest
from signer_support import (
    accepted,
    b64url,
    check,
    jwk_of,
    pem_of,
    raw_request,
    rejected,
    vouch,
)

import vouch as v
from vouch import Signer

NOW = 1_800_000_000
NONCE = "bm9uY2Utbm9uY2Utbm9uY2U"  # 17 bytes of base64url
URL = "http://127.0.0.1:8080/mcp?x=1"
KEYID = "https://agents.example/agents/worker@agents.example"
CALL = json.dumps(
    {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "add", "arguments": {}}}
).encode()
PROFILES = ["mcp", "envoys", "sep2752"]


@pytest.fixture(scope="module")
def keys() -> tuple[str, str]:
    return v.generate_keypair()


def signer(keys: tuple[str, str], profile: str = "mcp", **kw: object) -> Signer:
    keyid = None if profile == "sep2752" else KEYID
    return Signer(keys[0], keyid, profile, **kw)  # type: ignore[arg-type]


def sha256_digest(body: bytes) -> str:
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"


def fields(out: list[tuple[str, str]]) -> dict[str, str]:
    names = [n.lower() for n, _ in out]
    assert len(names) == len(set(names)), out
    return {n.lower(): val for n, val in out}


def covered(signature_input: str) -> list[str]:
    inner = signature_input.split("=(", 1)[1].split(")", 1)[0]
    return [c.strip('"') for c in inner.split()] if inner else []


# --- keys ---------------------------------------------------------------------------------


def test_every_key_form_gives_the_same_signature(keys, tmp_path):
    seed, public = keys
    jwk = jwk_of(seed, public)
    forms: dict[str, object] = {
        "hex": seed,
        "hex upper": seed.upper(),
        "hex newline": seed + "\n",
        "pem": pem_of(seed),
        "jwk text": json.dumps(jwk),
        "jwk dict": jwk,
        "jwk without x": {k: jwk[k] for k in ("kty", "crv", "d")},
        "mcpvault file": json.dumps({"private_key": seed, "public_key": public}),
    }
    outs = {}
    for name, key in forms.items():
        s = Signer(key, KEYID)  # type: ignore[arg-type]
        assert s.public_key == public, name
        outs[name] = s.sign("POST", URL, [], CALL, created=NOW, nonce=NONCE)
    first = outs["hex"]
    for name, out in outs.items():
        assert out == first, name
    # The same key in the files `vouch keygen` writes.
    for fmt in ("pem", "jwk", "hex"):
        made = vouch("keygen", "--out", "-", "--format", fmt)
        assert made.returncode == 0, made.stderr
        s = Signer(made.stdout.decode(), KEYID)
        assert s.public_key == made.stderr.decode().split()[-1]


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(
            lambda s, p: {"kty": "OKP", "crv": "Ed25519", "x": b64url(bytes.fromhex(p))},
            id="public jwk",
        ),
        pytest.param(
            lambda s, p: json.dumps(
                {"kty": "OKP", "crv": "Ed25519", "x": b64url(bytes.fromhex(p))}
            ),
            id="public jwk text",
        ),
        pytest.param(
            lambda s, p: {**jwk_of(s, p), "d": b64url(bytes.fromhex(s)[:31])}, id="jwk d 31 bytes"
        ),
        pytest.param(
            lambda s, p: {**jwk_of(s, p), "d": b64url(bytes.fromhex(s) + b"\0")},
            id="jwk d 33 bytes",
        ),
        pytest.param(lambda s, p: {**jwk_of(s, p), "d": "!!!"}, id="jwk d not base64url"),
        pytest.param(
            lambda s, p: {**jwk_of(s, p), "x": b64url(bytes(32))}, id="jwk x of another key"
        ),
        pytest.param(lambda s, p: {**jwk_of(s, p), "kty": "EC"}, id="jwk not okp"),
        pytest.param(lambda s, p: {**jwk_of(s, p), "crv": "X25519"}, id="jwk x25519"),
        pytest.param(lambda s, p: "{", id="broken json"),
        pytest.param(lambda s, p: "[1, 2]", id="json not an object"),
        pytest.param(
            lambda s, p: pem_of(s).replace("PRIVATE KEY", "PUBLIC KEY"), id="pem public label"
        ),
        pytest.param(
            lambda s, p: pem_of(s).replace("PRIVATE KEY", "EC PRIVATE KEY"), id="pem other label"
        ),
        pytest.param(
            lambda s, p: pem_of(s)[:60] + "\n-----END PRIVATE KEY-----\n", id="pem truncated"
        ),
        pytest.param(
            lambda s, p: "-----BEGIN PRIVATE KEY-----\n%%%%\n-----END PRIVATE KEY-----\n",
            id="pem not base64",
        ),
        pytest.param(lambda s, p: s[:-1], id="hex 63"),
        pytest.param(lambda s, p: s + "0", id="hex 65"),
        pytest.param(lambda s, p: s + p, id="hex 128 seed and public"),
        pytest.param(lambda s, p: "0x" + s[2:], id="hex 0x"),
        pytest.param(lambda s, p: s[:-1] + "g", id="hex not hex"),
        pytest.param(lambda s, p: "", id="empty"),
        pytest.param(lambda s, p: "correct horse battery staple", id="junk"),
    ],
)
def test_bad_keys_are_refused(keys, key):
    with pytest.raises(ValueError, match="key"):
        Signer(key(*keys), KEYID)


@pytest.mark.parametrize("key", [None, 7, b"\x01" * 32, ["a"]])
def test_keys_of_the_wrong_type(key):
    with pytest.raises(TypeError, match="key must be"):
        Signer(key, KEYID)  # type: ignore[arg-type]


def test_the_key_never_shows(keys):
    s = signer(keys)
    assert keys[0] not in repr(s) and KEYID in repr(s)
    assert s.keyid == KEYID and s.profile == "mcp"


@pytest.mark.parametrize(
    "args, kw, match",
    [
        ((None,), {}, "keyid: required"),
        (("",), {}, "keyid"),
        (("a\nb",), {}, "keyid"),
        (("caf\u00e9",), {}, "keyid"),
        ((KEYID, "nope"), {}, "unknown"),
        ((KEYID, "web-bot-auth"), {}, "web-bot-auth is not offered"),
        ((KEYID, "sep2752"), {}, "thumbprint"),
        ((KEYID,), {"nonce_bytes": 11}, "nonce_bytes"),
        ((KEYID,), {"nonce_bytes": 65}, "nonce_bytes"),
        ((KEYID,), {"nonce_bytes": True}, "nonce_bytes"),
        ((KEYID,), {"nonce_bytes": -1}, "nonce_bytes"),
        ((KEYID,), {"expires_in": 0}, "expires_in"),
        ((KEYID,), {"expires_in": -5}, "expires_in"),
        ((KEYID,), {"expires_in": 1.5}, "expires_in"),
        ((KEYID,), {"tag": ""}, "tag"),
        ((KEYID,), {"tag": "t\u00e4g"}, "tag"),
    ],
)
def test_bad_arguments_are_refused(keys, args, kw, match):
    with pytest.raises(ValueError, match=match):
        Signer(keys[0], *args, **kw)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda s: s.sign("GE T", URL), "method"),
        (lambda s: s.sign("GET", "/mcp"), "absolute"),
        (lambda s: s.sign("GET", "ftp://h/x"), "absolute"),
        (lambda s: s.sign("GET", "http://h/a b"), "url"),
        (lambda s: s.sign("GET", URL, [("bad name", "x")]), "header name"),
        (lambda s: s.sign("GET", URL, [("x-a", "a\nb")]), "header value"),
        (lambda s: s.sign("GET", URL, {"x-a": "a\rb"}), "header value"),
        (lambda s: s.sign("GET", URL, [], created=-1), "created"),
        (lambda s: s.sign("GET", URL, [], created=True), "created"),
        (lambda s: s.sign("GET", URL, [], token_header="a b"), "token_header"),
        (lambda s: s.sign("GET", URL, [], nonce="caf\u00e9"), "nonce"),
        (lambda s: s.sign("GET", URL, [], nonce=""), "nonce"),
        (
            lambda s: s.sign("GET", URL, [("Signature-Input", 'sig1=("@method");created=1')]),
            "already signed",
        ),
        (
            lambda s: s.sign("POST", URL, [("Content-Digest", sha256_digest(b"other"))], b"body"),
            "does not fit",
        ),
        (
            lambda s: s.sign("POST", URL, [("Content-Digest", sha256_digest(b"b"))] * 2, b"b"),
            "more than one",
        ),
    ],
)
def test_bad_requests_are_refused(keys, call, match):
    with pytest.raises(ValueError, match=match):
        call(signer(keys))


def test_headers_must_be_pairs(keys):
    with pytest.raises(TypeError, match="pair"):
        signer(keys).sign("GET", URL, ["x-a"])
    with pytest.raises(TypeError, match="str or bytes"):
        signer(keys).sign("GET", URL, [("x-a", 7)])


# --- what is signed -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"a":1}', id="compact"),
        pytest.param(b'{"a": 1}\n', id="whitespace"),
        pytest.param('{"q":"caf\u00e9 \u65e5\u672c \U0001f600"}'.encode(), id="utf-8"),
        pytest.param('{"q":"caf\u00e9"}'.encode("utf-16"), id="not utf-8"),
        pytest.param(bytes(range(256)), id="binary"),
    ],
)
@pytest.mark.parametrize("profile", PROFILES)
def test_content_digest_is_over_the_exact_bytes(keys, profile, body):
    out = fields(
        signer(keys, profile).sign("POST", URL, [("content-type", "application/json")], body)
    )
    assert out["content-digest"] == sha256_digest(body)
    assert "content-digest" in covered(out["signature-input"])


def test_equal_json_in_other_bytes_is_another_digest(keys):
    a = fields(signer(keys).sign("POST", URL, [], b'{"a":1}'))["content-digest"]
    b = fields(signer(keys).sign("POST", URL, [], b'{"a": 1}'))["content-digest"]
    assert a != b


@pytest.mark.parametrize("method", ["GET", "DELETE", "POST"])
@pytest.mark.parametrize("profile", PROFILES)
def test_empty_bodies_as_each_profile_says(keys, profile, method):
    out = fields(signer(keys, profile).sign(method, URL, []))
    if profile == "mcp":
        # vouch's profile binds a body when there is one; an empty one needs no digest.
        assert "content-digest" not in out
        assert "content-digest" not in covered(out["signature-input"])
    else:
        # envoys and SEP-2752 put a Content-Digest on every request.
        assert out["content-digest"] == sha256_digest(b"")
        assert "content-digest" in covered(out["signature-input"])


def test_a_content_digest_given_is_kept_when_it_fits(keys):
    body = b'{"a":1}'
    sha512 = "sha-512=:" + base64.b64encode(hashlib.sha512(body).digest()).decode() + ":"
    out = fields(signer(keys).sign("POST", URL, [("Content-Digest", sha512)], body))
    assert "content-digest" not in out
    assert "content-digest" in covered(out["signature-input"])


def test_mcp_headers_of_a_json_rpc_post(keys):
    s = signer(keys)
    out = s.sign("POST", URL, [], CALL)
    assert [n for n, _ in out] == [
        "Content-Digest",
        "Mcp-Method",
        "Mcp-Name",
        "Signature-Input",
        "Signature",
    ]
    f = fields(out)
    assert (f["mcp-method"], f["mcp-name"]) == ("tools/call", "add")
    assert {"mcp-method", "mcp-name"} <= set(covered(f["signature-input"]))
    # Wrapped when not header text, as vouch-httpsig's mcp module encodes it.
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "resources/read",
            "params": {"uri": "file:///caf\u00e9"},
        }
    ).encode()
    assert fields(s.sign("POST", URL, [], body))["mcp-name"] == "=?base64?ZmlsZTovLy9jYWbDqQ==?="
    # A notification: a method, no name.
    note = fields(
        s.sign("POST", URL, [], b'{"jsonrpc":"2.0","method":"notifications/initialized"}')
    )
    assert note["mcp-method"] == "notifications/initialized" and "mcp-name" not in note
    # Headers the caller set are kept (and signed), not replaced.
    given = fields(s.sign("POST", URL, [("Mcp-Method", "tools/call"), ("Mcp-Name", "add")], CALL))
    assert "mcp-method" not in given and "mcp-name" not in given
    assert {"mcp-method", "mcp-name"} <= set(covered(given["signature-input"]))
    # Not for a GET, not for a body that is not JSON-RPC, not for the other profiles.
    assert "mcp-method" not in fields(s.sign("GET", URL, [], CALL))
    assert "mcp-method" not in fields(s.sign("POST", URL, [], b"[1]"))
    for profile in ("envoys", "sep2752"):
        assert "mcp-method" not in fields(signer(keys, profile).sign("POST", URL, [], CALL))


def test_signature_parameters_per_profile(keys):
    headers = [
        ("Mcp-Session-Id", "s1"),
        ("MCP-Protocol-Version", "2025-06-18"),
        ("X-MCPVault-Token", "t"),
    ]
    mcp = fields(signer(keys).sign("POST", URL, headers, CALL, created=NOW, nonce=NONCE))
    assert mcp["signature-input"] == (
        'sig1=("@method" "@target-uri" "content-digest" "mcp-session-id" "mcp-protocol-version" '
        f'"x-mcpvault-token" "mcp-method" "mcp-name");created={NOW};nonce="{NONCE}";alg="ed25519";'
        f'keyid="{KEYID}"'
    )
    envoys = fields(
        signer(keys, "envoys").sign("POST", URL, headers, CALL, created=NOW, nonce=NONCE)
    )
    assert envoys["signature-input"] == (
        f'sig1=("@method" "@path" "content-digest");keyid="{KEYID}";created={NOW};nonce="{NONCE}"'
    )
    sep = signer(keys, "sep2752")
    out = fields(sep.sign("POST", URL, headers, CALL, created=NOW, nonce=NONCE))
    t = sep.jwk_thumbprint
    assert sep.keyid == t and len(t) == 43
    assert out["signature-input"] == (
        'sig1=("@method" "@target-uri" "content-digest" "mcp-protocol-version" "mcp-session-id" '
        f'"x-mcpvault-token");created={NOW};nonce="{NONCE}";keyid="{t}";tag="{t}"'
    )
    # SEP-2752 names no token; vouch's SEP-2752 policy binds one whenever it is sent.


def test_a_token_in_another_header_is_covered_and_so_is_the_default_one(keys):
    out = fields(
        signer(keys).sign(
            "GET", URL, [("X-Token", "a"), ("X-MCPVault-Token", "b")], token_header="X-Token"
        )
    )
    assert {"x-token", "x-mcpvault-token"} <= set(covered(out["signature-input"]))


def test_options(keys):
    s = signer(keys, tag="app-1", expires_in=60, nonce_bytes=32)
    si = fields(s.sign("GET", URL, [], created=NOW))["signature-input"]
    assert f";expires={NOW + 60};" in si and si.endswith(';tag="app-1"')
    nonce = si.split('nonce="', 1)[1].split('"', 1)[0]
    assert len(base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))) == 32
    # Default: 16 random bytes, fresh each time.
    nonces = {
        fields(signer(keys).sign("GET", URL))["signature-input"].split('nonce="')[1][:22]
        for _ in range(20)
    }
    assert len(nonces) == 20


def test_sign_releases_the_gil_and_stays_sound(keys):
    s = signer(keys)
    results: list[list[tuple[str, str]]] = []

    def work() -> None:
        for _ in range(50):
            results.append(s.sign("POST", URL, [], CALL, created=NOW, nonce=NONCE))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 200 and all(r == results[0] for r in results)


# --- against the real vouch command ----------------------------------------------------------

REQUESTS = {
    "json-rpc post": (
        "POST",
        URL,
        [("Content-Type", "application/json"), ("Mcp-Session-Id", "abc")],
        CALL,
    ),
    "unicode body": (
        "POST",
        URL,
        [("Content-Type", "application/json")],
        '{"q":"\u65e5\u672c"}'.encode(),
    ),
    "empty post": ("POST", URL, [], b""),
    "sse get": (
        "GET",
        "http://127.0.0.1:8080/mcp",
        [("Accept", "text/event-stream"), ("Mcp-Session-Id", "abc")],
        b"",
    ),
    "delete": ("DELETE", "http://127.0.0.1:8080/mcp", [("Mcp-Session-Id", "abc")], b""),
    "with token": ("POST", URL, [("X-MCPVault-Token", "tok")], CALL),
}


def signed_raw(
    s: Signer, method: str, url: str, headers: list[tuple[str, str]], body: bytes
) -> bytes:
    out = s.sign(method, url, headers, body, created=NOW)
    return raw_request(method, url, headers + out, body)


@pytest.mark.parametrize("name", list(REQUESTS))
@pytest.mark.parametrize("profile", PROFILES)
def test_python_signed_requests_pass_vouch_check(keys, profile, name):
    s = signer(keys, profile)
    report = accepted(check(signed_raw(s, *REQUESTS[name]), keys[1], profile, now=NOW))
    assert report["keyid"] == s.keyid and report["created"] == NOW


TAMPER = {
    "body byte": lambda r: r.replace(b'"add"', b'"rm!"'),
    "method": lambda r: r.replace(b"POST ", b"PUT ", 1),
    "path": lambda r: r.replace(b"/mcp?x=1", b"/mcq?x=1", 1),
    "query": lambda r: r.replace(b"?x=1", b"?x=2", 1),
    "authority": lambda r: r.replace(b"Host: 127.0.0.1:8080", b"Host: 127.0.0.1:8081", 1),
    "session header": lambda r: r.replace(b"Mcp-Session-Id: abc", b"Mcp-Session-Id: abd", 1),
    "signature byte": lambda r: _flip_signature(r),
    "signature removed": lambda r: b"\r\n".join(
        l for l in r.split(b"\r\n") if not l.startswith(b"Signature: ")
    ),
    "token added after signing": lambda r: r.replace(
        b"\r\n\r\n", b"\r\nX-MCPVault-Token: stolen\r\n\r\n", 1
    ),
    "digest removed": lambda r: b"\r\n".join(
        l for l in r.split(b"\r\n") if not l.startswith(b"Content-Digest: ")
    ),
}


def _flip_signature(raw: bytes) -> bytes:
    head, _, rest = raw.partition(b"\r\nSignature: sig1=:")
    value, _, tail = rest.partition(b":")
    sig = bytearray(base64.b64decode(value))
    sig[0] ^= 1
    return head + b"\r\nSignature: sig1=:" + base64.b64encode(bytes(sig)) + b":" + tail


# What each profile covers decides which changes it notices: envoys covers neither the
# authority, the query, nor the MCP headers (docs/threat-model.md), and accepts a token header
# it does not cover.
NOT_COVERED = {
    "envoys": {"query", "authority", "session header", "token added after signing"},
    "sep2752": set(),
    "mcp": set(),
}


@pytest.mark.parametrize("how", list(TAMPER))
@pytest.mark.parametrize("profile", PROFILES)
def test_tampered_copies_are_refused_by_vouch_check(keys, profile, how):
    s = signer(keys, profile)
    raw = signed_raw(s, *REQUESTS["json-rpc post"])
    accepted(check(raw, keys[1], profile, now=NOW))
    tampered = TAMPER[how](raw)
    assert tampered != raw
    result = check(tampered, keys[1], profile, now=NOW)
    if how in NOT_COVERED[profile]:
        accepted(result)
    else:
        rejected(result)


@pytest.mark.parametrize("profile", PROFILES)
def test_too_old_and_from_the_future_are_refused(keys, profile):
    raw = signed_raw(signer(keys, profile), *REQUESTS["json-rpc post"])
    assert rejected(check(raw, keys[1], profile, now=NOW + 301)) == "too_old"
    assert rejected(check(raw, keys[1], profile, now=NOW - 61)) == "created_in_future"
    other = v.generate_keypair()[1]
    assert rejected(check(raw, other, profile, now=NOW)) == "bad_signature"


def test_expires_is_enforced(keys):
    raw = signed_raw(signer(keys, expires_in=10), *REQUESTS["json-rpc post"])
    accepted(check(raw, keys[1], now=NOW + 5))
    assert rejected(check(raw, keys[1], now=NOW + 11)) == "expired"


@pytest.mark.parametrize("profile", PROFILES)
def test_the_same_bytes_as_vouch_sign(keys, profile, tmp_path):
    """Ed25519 is deterministic: with the same created and nonce, vouch sign and Signer agree."""
    key_file = tmp_path / "agent.pem"
    key_file.write_text(pem_of(keys[0]))
    method, url, headers, body = REQUESTS["json-rpc post"]
    # vouch sign does not add Mcp-Method / Mcp-Name: give them to both.
    headers = headers + [("Mcp-Method", "tools/call"), ("Mcp-Name", "add")]
    s = signer(keys, profile)
    ours = fields(s.sign(method, url, headers, body, created=NOW, nonce=NONCE))
    args = ["sign", "--key", str(key_file), "--profile", profile, "--scheme", "http"]
    args += ["--created", str(NOW), "--nonce", NONCE]
    if profile != "sep2752":
        args += ["--keyid", KEYID]
    out = vouch(*args, "-", stdin=raw_request(method, url, headers, body))
    assert out.returncode == 0, out.stderr
    theirs = {}
    for line in out.stdout.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        n, _, val = line.decode().partition(": ")
        theirs[n.lower()] = val
    for name in ("content-digest", "signature-input", "signature"):
        assert ours[name] == theirs[name], name
