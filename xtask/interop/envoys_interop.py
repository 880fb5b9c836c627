#!/usr/bin/env python3
"""Interop harness between vouch (Rust, RFC 9421) and the Python `envoys` SDK.

Requires: envoys==0.3.0, envoys-mcp==0.1.1 (and their deps: cryptography, httpx).

    python envoys_interop.py sign OUT.json    # envoys signs, writes vectors
    python envoys_interop.py verify IN.json   # envoys verifies vectors (e.g. from vouch)

JSON shape (both directions):
    {"public_key_hex": "<32-byte raw Ed25519 public key, hex>",
     "requests": [{"id": str, "method": str, "path": str (path + query as sent),
                   "authority": "127.0.0.1:8080",
                   "headers": [[name, value], ...],
                   "body_b64": "<standard base64 of exact body bytes, '' for none>"}]}

envoys profile (0.3.0), as implemented in envoys/client.py:
  * one signature, label must be `sig1`;
  * components ("@method" ["@authority"] "@path" "content-digest"), in that order;
    @authority only when sign_request(authority=...) is used;
  * params, in order: ;keyid="<base_url>/agents/<address>";created=<int>;nonce="<b64url 16B>"[;tag="..."]
    (no alg, no expires);
  * Content-Digest is always sent and signed, also for no body (digest of b"");
    sha-256, or sha-512 when the canonical body is >= 4096 bytes;
  * bodies are JSON objects, hashed as json.dumps(body, separators=(",", ":"),
    ensure_ascii=False).encode() -- the verifier re-serializes the *parsed* body;
  * @path is the path only (EnvoysAuth uses httpx url.path, the middleware uses
    ASGI scope["path"]; both are percent-decoded, without query);
  * verifier: created must satisfy -30 <= now - created <= 300; replay cache keyed
    by keyid|created|signature for 300 s (success only); keyid must contain
    "/agents/"; the key is fetched from the keyid URL (patched out here).

`verify` drives the real server path: envoys_mcp.EnvoysVerifyMiddleware (which
calls `await Envoys.verify_request(method, scope["path"], headers, json.loads(body)
or None, options)`) with `Envoys.resolve_key_from_keyid` monkeypatched to return the
public key from the input file; the clock is real. Per request it prints
`ok <id>` or `FAIL <id>: <reason>` plus negative self-checks:
  replay-rejected          same request again must be rejected (replay cache)
  tampered-rejected        body (or, without a body, @path) changed by one byte
  redigested-rejected      body changed by one byte AND Content-Digest recomputed,
                           so only the Ed25519 check can reject it
Exit status: 0 all ok, 1 any failure, 2 bad input.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import sys
from typing import Any, Optional
from urllib.parse import unquote, urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

import envoys
import envoys.client as envoys_client
from envoys import Envoys, EnvoysConfig, VerifyRequestOptions

# RFC 8032 section 7.1, TEST 1.
SEED_HEX = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
PUBLIC_KEY_HEX = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
BASE_URL = "https://envoys.me"
ADDRESS = "test@rfc8032-vec1.example"  # keyid = f"{BASE_URL}/agents/{ADDRESS}"
AUTHORITY = "127.0.0.1:8080"


class BadInput(Exception):
    pass


# ─── sign ─────────────────────────────────────────────────────────────────────

def _canonical(body: Any) -> bytes:
    # Same serialization envoys uses for digests (envoys.client._canonical_body)
    # and httpx 0.28 uses for json=...
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _padded_body(target_len: int) -> dict:
    """A JSON object whose canonical serialization is exactly target_len bytes."""
    base = {"task": "bulk", "data": ""}
    filler = target_len - len(_canonical(base))
    if filler < 0:
        raise ValueError("target too small")
    body = {"task": "bulk", "data": "x" * filler}
    assert len(_canonical(body)) == target_len
    return body


def cmd_sign(out_path: str) -> int:
    seed = bytes.fromhex(SEED_HEX)
    priv = Ed25519PrivateKey.from_private_bytes(seed)
    pub_raw = priv.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert pub_raw.hex() == PUBLIC_KEY_HEX, "RFC 8032 vector mismatch"
    priv_pem = priv.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode("ascii")
    pub_pem = priv.public_key().public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")

    client = Envoys(EnvoysConfig(
        agent_key="unused-offline", address=ADDRESS, public_key=pub_pem,
        private_key=priv_pem, base_url=BASE_URL))

    # (id, method, signed_path, sent_path, body_obj, sign_request kwargs)
    cases: list[tuple[str, str, str, str, Any, dict]] = [
        ("get-nobody", "GET", "/api/status", "/api/status", None, {}),
        # EnvoysAuth signs url.path only; the query is sent but not covered.
        ("get-query", "GET", "/api/search", "/api/search?q=envoys&n=1", None, {}),
        ("post-small-json", "POST", "/api/task", "/api/task",
         {"task": "summarize", "url": "https://example.com/doc"}, {}),
        ("post-unicode-json", "POST", "/api/msg", "/api/msg",
         {"msg": "h\u00e9llo \u2713 \U0001F600", "n": 1, "ok": True, "x": None}, {}),
        ("post-4095-sha256", "POST", "/api/bulk", "/api/bulk", _padded_body(4095), {}),
        ("post-4096-sha512", "POST", "/api/bulk", "/api/bulk", _padded_body(4096), {}),
        ("post-large-sha512", "POST", "/api/bulk", "/api/bulk",
         {"items": [{"i": i, "name": f"item-{i}", "tags": ["a", "b"]} for i in range(200)]},
         {}),
        ("post-tag", "POST", "/api/task", "/api/task",
         {"task": "heartbeat"}, {"tag": "task"}),
        ("post-authority", "POST", "/rpc", "/rpc",
         {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, {"authority": AUTHORITY}),
    ]

    out_reqs = []
    for rid, method, signed_path, sent_path, body, kwargs in cases:
        signed = client.sign_request(method, signed_path, body, **kwargs)
        body_bytes = b"" if body is None else _canonical(body)
        headers: list[list[str]] = []
        if body is not None:
            # Not set by envoys; the caller adds it (README / httpx json=).
            headers.append(["Content-Type", "application/json"])
        headers.extend([k, v] for k, v in signed.items())
        out_reqs.append({
            "id": rid,
            "method": method,
            "path": sent_path,
            "authority": AUTHORITY,
            "headers": headers,
            "body_b64": base64.b64encode(body_bytes).decode("ascii"),
        })

    doc = {"public_key_hex": pub_raw.hex(), "requests": out_reqs}
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {len(out_reqs)} envoys-signed requests to {out_path}")
    return 0


# ─── verify ───────────────────────────────────────────────────────────────────

def _load_input(path: str) -> tuple[bytes, list[dict]]:
    try:
        with open(path, "r", encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        raise BadInput(f"cannot read {path}: {e}")
    if not isinstance(doc, dict):
        raise BadInput("top level must be an object")
    try:
        pk = bytes.fromhex(doc["public_key_hex"])
    except (KeyError, TypeError, ValueError):
        raise BadInput("public_key_hex missing or not hex")
    if len(pk) != 32:
        raise BadInput(f"public_key_hex must be 32 bytes, got {len(pk)}")
    reqs = doc.get("requests")
    if not isinstance(reqs, list) or not reqs:
        raise BadInput("requests must be a non-empty list")
    out = []
    seen_ids = set()
    for i, r in enumerate(reqs):
        if not isinstance(r, dict):
            raise BadInput(f"requests[{i}] is not an object")
        for key, typ in (("id", str), ("method", str), ("path", str),
                         ("authority", str), ("headers", list), ("body_b64", str)):
            if not isinstance(r.get(key), typ):
                raise BadInput(f"requests[{i}].{key} missing or not {typ.__name__}")
        if r["id"] in seen_ids:
            raise BadInput(f"duplicate id {r['id']!r}")
        seen_ids.add(r["id"])
        hdrs = []
        for h in r["headers"]:
            if (not isinstance(h, list) or len(h) != 2
                    or not all(isinstance(x, str) for x in h)):
                raise BadInput(f"requests[{i}].headers entries must be [name, value]")
            hdrs.append((h[0], h[1]))
        try:
            body = base64.b64decode(r["body_b64"], validate=True)
        except (binascii.Error, ValueError):
            raise BadInput(f"requests[{i}].body_b64 is not valid base64")
        out.append({"id": r["id"], "method": r["method"], "path": r["path"],
                    "authority": r["authority"], "headers": hdrs, "body": body})
    return pk, out


def _install_offline_key_resolution(pub_raw: bytes, seen_keyids: list[str]) -> None:
    """Monkeypatch envoys key resolution to the local key (no network)."""
    pem = Ed25519PublicKey.from_public_bytes(pub_raw).public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")

    async def resolve_key_from_keyid(keyid_url: str, guard: Any = None) -> str:
        seen_keyids.append(keyid_url)
        return pem

    async def no_network(*a: Any, **kw: Any) -> Any:
        raise RuntimeError("network key resolution disabled in interop harness")

    # verify_request calls Envoys.resolve_key_from_keyid(keyid, opts.resolver).
    Envoys.resolve_key_from_keyid = staticmethod(resolve_key_from_keyid)  # type: ignore[method-assign]
    envoys_client._safe_resolve_fetch = no_network  # belt and braces
    Envoys.clear_key_cache()
    Envoys.clear_replay_cache()
    Envoys.clear_pins()


def _asgi_scope(method: str, path: str, authority: str,
                headers: list[tuple[str, str]]) -> dict:
    parts = urlsplit(path)
    raw_path = parts.path or "/"
    hdrs = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    if not any(k == b"host" for k, _ in hdrs):
        hdrs.append((b"host", authority.encode("latin-1")))
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method.upper(),
        "scheme": "http",
        "path": unquote(raw_path),  # what uvicorn/hypercorn put in scope["path"]
        "raw_path": raw_path.encode("latin-1"),
        "query_string": parts.query.encode("latin-1"),
        "root_path": "",
        "headers": hdrs,
        "client": ("127.0.0.1", 50000),
        "server": (authority.rsplit(":", 1)[0], 8080),
    }


async def _verify_one(method: str, path: str, authority: str,
                      headers: list[tuple[str, str]], body: bytes) -> tuple[bool, str]:
    """Run one request through envoys' real server path. Returns (verified, reason)."""
    results: list[Any] = []
    reached_app = []

    async def app(scope: dict, receive: Any, send: Any) -> None:
        reached_app.append(True)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    def audit(result: Any, scope: dict) -> None:
        results.append(result)

    scope = _asgi_scope(method, path, authority, headers)
    sent_body = False

    async def receive() -> dict:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    responses: list[dict] = []

    async def send(msg: dict) -> None:
        responses.append(msg)

    try:
        from envoys_mcp import EnvoysVerifyMiddleware
    except ImportError:  # same call the middleware makes
        try:
            body_obj = json.loads(body) if body else None
        except ValueError as e:
            return False, f"body is not JSON (envoys only verifies JSON bodies): {e}"
        hmap = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        res = await Envoys.verify_request(scope["method"], scope["path"], hmap,
                                          body_obj, VerifyRequestOptions())
        return bool(res.verified), res.error or ""

    mw = EnvoysVerifyMiddleware(app, options=VerifyRequestOptions(), audit=audit)
    try:
        await mw(scope, receive, send)
    except ValueError as e:  # json.loads in the middleware
        return False, f"body is not JSON (envoys only verifies JSON bodies): {e}"
    status = next((m["status"] for m in responses
                   if m["type"] == "http.response.start"), None)
    if not results:
        return False, f"middleware produced no verify result (status {status})"
    res = results[0]
    ok = bool(res.verified) and status == 200 and bool(reached_app)
    return ok, (res.error or "") if not ok else ""


def _tamper_json_body(body: bytes) -> Optional[bytes]:
    """Change one byte so the body still parses as JSON but means something else."""
    try:
        orig = _canonical(json.loads(body))
    except ValueError:
        return None
    candidates = [i for i, b in enumerate(body) if chr(b).isalnum()]
    for i in candidates:
        for repl in (b"x", b"y", b"7", b"1"):
            if body[i:i + 1] == repl:
                continue
            t = body[:i] + repl + body[i + 1:]
            try:
                if _canonical(json.loads(t)) != orig:
                    return t
            except ValueError:
                continue
    return None


def _with_header(headers: list[tuple[str, str]], name: str, value: str) -> list[tuple[str, str]]:
    return [(k, value if k.lower() == name else v) for k, v in headers]


def _redigest(headers: list[tuple[str, str]], body: bytes) -> list[tuple[str, str]]:
    old = next((v for k, v in headers if k.lower() == "content-digest"), "")
    canon = _canonical(json.loads(body))
    if old.startswith("sha-512="):
        new = "sha-512=:" + base64.b64encode(hashlib.sha512(canon).digest()).decode() + ":"
    else:
        new = "sha-256=:" + base64.b64encode(hashlib.sha256(canon).digest()).decode() + ":"
    return _with_header(headers, "content-digest", new)


def _tamper_path(path: str) -> str:
    parts = urlsplit(path)
    p = parts.path or "/"
    idx = max(i for i, ch in enumerate(p) if ch != "/") if p.strip("/") else None
    if idx is None:
        p2 = "/x"
    else:
        p2 = p[:idx] + ("x" if p[idx] != "x" else "y") + p[idx + 1:]
    return p2 + (f"?{parts.query}" if parts.query else "")


async def _verify_all(pub_raw: bytes, reqs: list[dict]) -> int:
    seen_keyids: list[str] = []
    _install_offline_key_resolution(pub_raw, seen_keyids)
    failures = 0

    def fail(rid: str, why: str) -> None:
        nonlocal failures
        failures += 1
        print(f"FAIL {rid}: {why}")

    for r in reqs:
        rid, m, p, a, h, b = (r["id"], r["method"], r["path"], r["authority"],
                              r["headers"], r["body"])
        ok, why = await _verify_one(m, p, a, h, b)
        if not ok:
            note = ""
            if b:
                try:
                    if _canonical(json.loads(b)) != b:
                        note = (" (note: body bytes are not envoys-canonical JSON; envoys "
                                "digests json.dumps(parsed, separators=(',',':'), "
                                "ensure_ascii=False))")
                except ValueError:
                    pass
            fail(rid, (why or "rejected") + note)
            continue
        print(f"ok {rid}")

        # Negative 1: exact replay must be rejected by envoys' replay cache.
        ok2, why2 = await _verify_one(m, p, a, h, b)
        if ok2:
            fail(rid, "replay of an accepted request was accepted")
        else:
            print(f"ok {rid} replay-rejected ({why2})")

        # The replay cache is keyed by keyid|created|signature, which tampered
        # copies share; clear it so the rejections below are about the tamper.
        Envoys.clear_replay_cache()

        if b:
            tb = _tamper_json_body(b)
            if tb is None:
                fail(rid, "could not build a one-byte JSON tamper of the body")
                continue
            # Negative 2: body changed by one byte, headers untouched.
            ok3, why3 = await _verify_one(m, p, a, h, tb)
            if ok3:
                fail(rid, "tampered body was accepted")
            elif "replay" in why3.lower():
                fail(rid, f"tampered body rejected for the wrong reason: {why3}")
            else:
                print(f"ok {rid} tampered-rejected ({why3})")
            # Negative 3: same tamper, Content-Digest recomputed -> only Ed25519 can catch it.
            ok4, why4 = await _verify_one(m, p, a, _redigest(h, tb), tb)
            if ok4:
                fail(rid, "tampered body with recomputed Content-Digest was accepted")
            elif "signature verification failed" not in why4.lower():
                fail(rid, f"re-digested tamper rejected for an unexpected reason: {why4}")
            else:
                print(f"ok {rid} redigested-rejected ({why4})")
        else:
            # Negative 2 (no body): @path changed by one byte.
            tp = _tamper_path(p)
            ok3, why3 = await _verify_one(m, tp, a, h, b)
            if ok3:
                fail(rid, f"tampered path {tp!r} was accepted")
            elif "signature verification failed" not in why3.lower():
                fail(rid, f"tampered path rejected for an unexpected reason: {why3}")
            else:
                print(f"ok {rid} tampered-rejected ({why3})")
        Envoys.clear_replay_cache()

    if not seen_keyids:
        fail("*", "envoys never asked for a public key (key resolution not exercised)")
    return 1 if failures else 0


def cmd_verify(in_path: str) -> int:
    try:
        pub_raw, reqs = _load_input(in_path)
    except BadInput as e:
        print(f"bad input: {e}", file=sys.stderr)
        return 2
    return asyncio.run(_verify_all(pub_raw, reqs))


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ("sign", "verify"):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        print(f"usage: {argv[0]} sign OUT.json | verify IN.json", file=sys.stderr)
        return 2
    if getattr(envoys, "__version__", "?") != "0.3.0":
        print(f"warning: written against envoys 0.3.0, found {envoys.__version__}",
              file=sys.stderr)
    return cmd_sign(argv[2]) if argv[1] == "sign" else cmd_verify(argv[2])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
