"""Added time per request of an ASGI verifier: envoys-mcp's EnvoysVerifyMiddleware vs vouch's.

One bare ASGI app (it reads the body and answers a small JSON) is served by uvicorn on 127.0.0.1,
alone and behind each middleware, one server process at a time on the same port. The same
envoys-signed requests (signed once, up front, by envoys 0.3.0's own client: RFC 9421 with
Content-Digest, a unique nonce each) are sent to every side by the same load generator: raw
HTTP/1.1 over a fixed number of keep-alive connections. The cost per request is the server
process's CPU time (utime + stime from /proc/PID/stat, over the measured requests) divided by the
requests; a middleware's added time is its side's cost minus the bare app's. Every response must
be 200; afterwards a tampered and a replayed request must be refused (401) by each middleware and
accepted by the bare app, or nothing is reported.

    python middleware.py [--out FILE.json] [--sides bare,envoys,vouch] [--requests N]
                         [--concurrency C] [--warmup W]
    python middleware.py serve SIDE PORT       (one server process; run by the above)

envoys resolves a signer's key from its keyid URL; here `Envoys.resolve_key_from_keyid` is
replaced by a function returning the local key (as xtask/interop/envoys_interop.py does), so
the envoys side does no network I/O. The vouch side (`vouch.asgi.VouchMiddleware`, envoys
profile, the same agent key) is the function `vouch_side` below; without `vouch.asgi` the bench
fails, it does not skip.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from typing import Any, Awaitable, Callable

# RFC 8032 section 7.1, TEST 1: the agent's key (as in xtask/interop).
SEED_HEX = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
PUBLIC_KEY_HEX = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
BASE_URL = "https://envoys.me"
ADDRESS = "bench@rfc8032-vec1.example"
KEYID = f"{BASE_URL}/agents/{ADDRESS}"
PATH = "/mcp"
GOAL = 5.0

Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

ANSWER = b'{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"ok"}]}}'


# ─── the server side ──────────────────────────────────────────────────────────


async def bare_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Reads the whole body, answers a small JSON."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        more = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(ANSWER)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": ANSWER})


def public_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(PUBLIC_KEY_HEX))
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def envoys_side(app: App, port: int) -> App:
    """(b) envoys-mcp 0.1.1's EnvoysVerifyMiddleware, its keyid resolved to the local key."""
    import envoys.client as envoys_client
    from envoys import Envoys
    from envoys_mcp import EnvoysVerifyMiddleware

    pem = public_pem()

    async def resolve_key_from_keyid(keyid_url: str, guard: Any = None) -> str:
        if keyid_url != KEYID:
            raise ValueError(f"unknown keyid {keyid_url}")
        return pem

    async def no_network(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("network key resolution is disabled in this bench")

    Envoys.resolve_key_from_keyid = staticmethod(resolve_key_from_keyid)  # type: ignore[method-assign]
    envoys_client._safe_resolve_fetch = no_network  # type: ignore[attr-defined]
    return EnvoysVerifyMiddleware(app, allowlist=[KEYID])


# ─── (c) vouch: VouchMiddleware, envoys profile ───────────────────────────────────────────────
def vouch_side(app: App, port: int) -> App:
    """(c) vouch's VouchMiddleware for the envoys profile, with the same agent key."""
    from vouch.asgi import VouchMiddleware

    return VouchMiddleware(
        app,
        origin=f"http://127.0.0.1:{port}",
        agents={KEYID: PUBLIC_KEY_HEX},
        profile="envoys",
        # One identity sends every request here: lift the per-identity rate limit (envoys has
        # none) so that the figure is the verification's cost, not 429s.
        rate_limit=(1_000_000, 1_000_000),
    )


SIDES: dict[str, Callable[[App, int], App]] = {
    "bare": lambda app, port: app,
    "envoys": envoys_side,
    "vouch": vouch_side,
}


def serve(side: str, port: int) -> None:
    import uvicorn

    app = SIDES[side](bare_app, port)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        loop="asyncio",
        http="h11",
        lifespan="off",
        access_log=False,
        log_level="warning",
    )
    uvicorn.Server(config).run()


# ─── the load generator ───────────────────────────────────────────────────────


def canonical(body: Any) -> bytes:
    # What envoys digests (and httpx's json= sends).
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sign_requests(count: int, port: int) -> list[bytes]:
    """`count` raw HTTP/1.1 requests, each signed by envoys' client (a fresh nonce each)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from envoys import Envoys, EnvoysConfig

    private = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(SEED_HEX))
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    client = Envoys(
        EnvoysConfig(
            agent_key="unused-offline",
            address=ADDRESS,
            public_key=public_pem(),
            private_key=private_pem,
            base_url=BASE_URL,
        )
    )
    out = []
    for i in range(count):
        body = {
            "jsonrpc": "2.0",
            "id": i,
            "method": "tools/call",
            "params": {"name": "db_query", "arguments": {"sql": "select 1"}},
        }
        signed = client.sign_request("POST", PATH, body)
        raw = canonical(body)
        head = [
            f"POST {PATH} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Content-Type: application/json",
            "Accept: application/json",
            f"Content-Length: {len(raw)}",
        ]
        head += [f"{k}: {v}" for k, v in signed.items()]
        out.append(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + raw)
    return out


def tamper(request: bytes) -> bytes:
    """The same request with one byte of the body changed (still JSON, same length)."""
    at = request.rindex(b"select 1")
    return request[:at] + b"select 2" + request[at + len(b"select 1") :]


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)
    return status


async def load(port: int, requests: list[bytes], concurrency: int) -> list[int]:
    """Sends `requests` over `concurrency` keep-alive connections; the statuses, in order."""
    statuses = [0] * len(requests)
    queue = iter(range(len(requests)))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in queue:
                statuses[i] = await exchange(reader, writer, requests[i])
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


async def one(port: int, request: bytes) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        return await exchange(reader, writer, request)
    finally:
        writer.close()


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # Fields 14 and 15 (utime, stime), counted from 1 with pid and comm before ")".
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def wait_for(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"middleware bench: the server exited with {server.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("middleware bench: the server did not listen within 30 s")


def run_side(
    side: str, port: int, warmup: list[bytes], measured: list[bytes], concurrency: int
) -> dict[str, Any]:
    server = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "serve", side, str(port)],
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_for(port, server)
        statuses = asyncio.run(load(port, warmup, concurrency))
        if any(s != 200 for s in statuses):
            raise SystemExit(f"middleware bench: {side}: warm-up statuses {set(statuses)}")
        cpu0, t0 = cpu_seconds(server.pid), time.perf_counter()
        statuses = asyncio.run(load(port, measured, concurrency))
        cpu1, t1 = cpu_seconds(server.pid), time.perf_counter()
        bad = [s for s in statuses if s != 200]
        if bad:
            raise SystemExit(
                f"middleware bench: {side}: {len(bad)} of {len(statuses)} requests were "
                f"refused (statuses {sorted(set(bad))})"
            )
        # Each middleware must really verify: a tampered body and a replay are refused.
        expected = 200 if side == "bare" else 401
        for what, request in (("tampered", tamper(measured[0])), ("replayed", measured[-1])):
            status = asyncio.run(one(port, request))
            if status != expected:
                raise SystemExit(
                    f"middleware bench: {side}: a {what} request got {status}, not {expected}"
                )
    finally:
        server.terminate()
        server.wait(timeout=30)
    n = len(measured)
    return {
        "requests": n,
        "cpu_us_per_request": (cpu1 - cpu0) / n * 1e6,
        "rps": n / (t1 - t0),
        "wall_s": t1 - t0,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out")
    parser.add_argument("--sides", default="bare,envoys,vouch")
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--warmup", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    sides = args.sides.split(",")
    for side in sides:
        if side not in SIDES:
            parser.error(f"unknown side {side!r} (bare, envoys, vouch)")
    if "bare" not in sides:
        parser.error("the bare side is the baseline: --sides must include it")
    if "vouch" in sides:
        try:
            import vouch.asgi  # noqa: F401
        except ImportError as e:
            print(
                f"middleware bench: vouch.asgi.VouchMiddleware is not available ({e}); it is "
                "the vouch side of this comparison (run with --sides bare,envoys to measure "
                "the others alone)",
                file=sys.stderr,
            )
            return 1

    port = free_port()
    # Signed once: every side gets the very same bytes. envoys accepts a signature for 300 s.
    signed = sign_requests(args.warmup + args.requests, port)
    warmup, measured = signed[: args.warmup], signed[args.warmup :]
    started = time.monotonic()
    results = {}
    for side in sides:
        results[side] = run_side(side, port, warmup, measured, args.concurrency)
        r = results[side]
        print(
            f"  {side:<8} {r['cpu_us_per_request']:8.1f} µs CPU/request "
            f"{r['rps']:8.0f} req/s ({r['requests']} requests)",
            flush=True,
        )
    if time.monotonic() - started > 280:
        print("middleware bench: warning: the run came close to envoys' 300 s window")

    bare = results["bare"]["cpu_us_per_request"]
    added = {side: results[side]["cpu_us_per_request"] - bare for side in sides if side != "bare"}
    summary: dict[str, Any] = {
        "sides": results,
        "added_cpu_us_per_request": added,
        "concurrency": args.concurrency,
        "goal": GOAL,
    }
    for side, us in added.items():
        print(f"  added by {side}: {us:.1f} µs CPU/request")
    if "envoys" in added and "vouch" in added:
        ratio = added["envoys"] / added["vouch"] if added["vouch"] > 0 else float("inf")
        summary["ratio_envoys_over_vouch"] = ratio
        print(f"  envoys/vouch added time: {ratio:.2f} (goal >= {GOAL})")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(main())
