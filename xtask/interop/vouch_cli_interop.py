#!/usr/bin/env python3
"""Interop between the `vouch` command and the Python `envoys` package, through raw requests.

    python vouch_cli_interop.py check VOUCH IN.json   # `vouch check` each envoys-signed request
    python vouch_cli_interop.py sign VOUCH DIR OUT.json
                                                      # `vouch sign --profile envoys`, written in
                                                      # the shape `envoys_interop.py verify` reads

The JSON shape is envoys_interop.py's. Each request becomes a raw HTTP/1.1 request (CRLF, Host
from the authority, Content-Length when there is a body) fed to the binary on stdin. Any
unexpected outcome prints FAIL and the script exits 1.
"""

import base64
import json
import os
import re
import subprocess
import sys

ENVOYS_COMPONENTS = '"@method" "@path" "content-digest"'
KEYID = "https://envoys.me/agents/cli@vouch.example"


def raw_request(method: str, path: str, authority: str, headers, body: bytes) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {authority}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def run(vouch: str, args: list[str], stdin: bytes) -> subprocess.CompletedProcess:
    return subprocess.run([vouch, *args], input=stdin, capture_output=True, check=False)


def check(vouch: str, path: str) -> int:
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    args = ["check", "--pubkey", doc["public_key_hex"], "--require", ENVOYS_COMPONENTS,
            "--require-nonce", "--scheme", "http", "-"]
    failures = 0
    for r in doc["requests"]:
        body = base64.b64decode(r["body_b64"])
        raw = raw_request(r["method"], r["path"], r["authority"], r["headers"], body)
        signed_input = next(v for k, v in r["headers"] if k.lower() == "signature-input")
        keyid = re.search(r'keyid="([^"]*)"', signed_input).group(1)
        out = run(vouch, args, raw)
        if out.returncode != 0:
            print(f"FAIL {r['id']}: exit {out.returncode}: {out.stderr.decode().strip()}")
            failures += 1
            continue
        verified = json.loads(out.stdout)
        if verified["keyid"] != keyid:
            print(f"FAIL {r['id']}: keyid {verified['keyid']!r}, expected {keyid!r}")
            failures += 1
            continue
        print(f"ok {r['id']}: vouch check verified {keyid}")
        # The same request with one body byte changed must be rejected by the digest.
        if body:
            tampered = raw[:-1] + bytes([raw[-1] ^ 1])
            bad = run(vouch, args, tampered)
            if bad.returncode != 1 or b"digest_mismatch" not in bad.stderr:
                print(f"FAIL {r['id']}: tampered body not rejected: {bad.returncode} {bad.stderr!r}")
                failures += 1
            else:
                print(f"ok {r['id']}: tampered body rejected (digest_mismatch)")
    return 1 if failures else 0


def sign(vouch: str, work_dir: str, out_path: str) -> int:
    key = f"{work_dir}/cli-agent.pem"
    try:
        os.remove(key)
    except FileNotFoundError:
        pass
    made = run(vouch, ["keygen", "--out", key], b"")
    if made.returncode != 0:
        print(f"FAIL keygen: {made.stderr.decode().strip()}")
        return 1
    public_hex = made.stdout.decode().strip()
    authority = "127.0.0.1:8080"
    cases = [
        ("cli-get", "GET", "/api/status", b""),
        ("cli-post", "POST", "/rpc", b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}'),
        ("cli-post-task", "POST", "/api/task", b'{"task":"heartbeat"}'),
    ]
    requests = []
    for rid, method, path, body in cases:
        headers = [("Content-Type", "application/json")] if body else []
        raw = raw_request(method, path, authority, headers, body)
        out = run(vouch, ["sign", "--key", key, "--keyid", KEYID, "--profile", "envoys",
                          "--scheme", "http", "-"], raw)
        if out.returncode != 0:
            print(f"FAIL {rid}: vouch sign exit {out.returncode}: {out.stderr.decode().strip()}")
            return 1
        head = out.stdout.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
        fields = [line.split(": ", 1) for line in head]
        sent = [[k, v] for k, v in fields if k.lower() not in ("host", "content-length")]
        requests.append({"id": rid, "method": method, "path": path, "authority": authority,
                         "headers": sent, "body_b64": base64.b64encode(body).decode("ascii")})
        print(f"signed {rid} with vouch sign --profile envoys")
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump({"public_key_hex": public_hex, "requests": requests}, f, indent=2)
        f.write("\n")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[1] == "check":
        return check(argv[2], argv[3])
    if len(argv) == 5 and argv[1] == "sign":
        return sign(argv[2], argv[3], argv[4])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
