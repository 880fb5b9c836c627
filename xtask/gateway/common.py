#!/usr/bin/env python3
"""What the end-to-end harnesses share: xtask/gateway/e2e.py (`cargo xtask ci gateway`) and
xtask/authz/e2e.py (`cargo xtask ci authz`, which imports this file from here).

Processes with a log file (Proc), the FastMCP upstream that records every request it receives
(Upstream, through recording_upstream.py), keys and tokens from the `vouch` command (VouchCli),
raw requests signed in the envoys profile (sign), JSON-RPC and SSE helpers, and the report that
prints one line per case. Runs in the interop venv (httpx, cryptography, envoys).
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import subprocess
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from envoys import Envoys, EnvoysConfig

HERE = Path(__file__).resolve().parent
RECORDER = HERE / "recording_upstream.py"

PATH = "/mcp"
ACCEPT = "application/json, text/event-stream"
STARTUP_TIMEOUT = 20.0


class CaseFailure(Exception):
    """An assertion of a case that did not hold."""


def check(cond: bool, message: str) -> None:
    if not cond:
        raise CaseFailure(message)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def compact(obj: Any) -> bytes:
    """JSON as envoys signs bodies (compact separators, Unicode kept)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# --- keys, tokens, processes -------------------------------------------------------------------


class VouchCli:
    """Keys and tokens made by the `vouch` command, in `work`. A mixin: the class using it has
    `vouch` (the binary), `work`, and the dicts `keys`, `pubs` and `tokens`."""

    vouch: Path
    work: Path
    keys: dict[str, Ed25519PrivateKey]
    pubs: dict[str, str]
    tokens: dict[str, str]

    def run(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run([str(self.vouch), *args], input=stdin, capture_output=True,
                              text=True, timeout=30, cwd=self.work)
        if done.returncode != 0:
            raise RuntimeError(f"vouch {args[0]} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout.strip()

    def keygen(self, name: str) -> str:
        path = self.work / f"{name}.pem"
        public = self.run("keygen", "--out", str(path))
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(key, Ed25519PrivateKey)
        self.keys[name], self.pubs[name] = key, public
        return public

    def mint(self, name: str, *args: str, root: str = "root", seal: bool = True) -> None:
        token = self.run("mint", "--key", str(self.work / f"{root}.pem"), *args)
        if seal:
            token = self.run("seal", "--token", "-", stdin=token)
        self.tokens[name] = token


def envoys_client(key: Ed25519PrivateKey, keyid: str) -> Envoys:
    """An envoys client signing with `key` as the address-style `keyid` (offline: the verifier
    knows the key)."""
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode("ascii")
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")
    base, address = keyid.split("/agents/")
    return Envoys(EnvoysConfig(agent_key="unused-offline", address=address, public_key=public,
                               private_key=private, base_url=base))


class Proc:
    """A child process whose stderr goes to a log file; stopped by `stop` (or `kill`)."""

    def __init__(self, name: str, argv: list[str], log: Path) -> None:
        self.name, self.log = name, log
        self._log_file = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log_file,
                                      stderr=subprocess.STDOUT)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    async def wait_line(self, needle: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.text().splitlines():
                if needle in line:
                    return line
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.popen.returncode}) before "
                                   f"{needle!r}: {self.tail()}")
            await asyncio.sleep(0.05)
        raise RuntimeError(f"{self.name}: no {needle!r} within {timeout} s: {self.tail()}")

    def tail(self, lines: int = 8) -> str:
        return " | ".join(self.text().splitlines()[-lines:])

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    async def wait_exit(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                return self.popen.returncode
            await asyncio.sleep(0.05)
        return None

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self._log_file.close()


class Upstream:
    """examples/gateway/server.py, through the recorder, in one mode (its `flags`)."""

    def __init__(self, python: str, server: Path, flags: list[str], work: Path) -> None:
        self.record = work / "upstream-requests.jsonl"
        self.record.write_text("")
        self.proc = Proc("server.py", [python, str(RECORDER), str(server), str(self.record),
                                       "--port", "0", *flags], work / "upstream.log")
        self.url = ""

    @property
    def port(self) -> int:
        return int(self.url.split(":")[2].split("/")[0])

    async def start(self) -> None:
        line = await self.proc.wait_line("listening on http://", STARTUP_TIMEOUT)
        self.url = line.split("listening on ", 1)[1].strip()
        check(self.url.startswith("http://127.0.0.1:") and self.url.endswith(PATH),
              f"server.py startup line: {line!r}")

    def requests(self) -> list[dict]:
        return [json.loads(line) for line in self.record.read_text().splitlines() if line]


# --- raw signed requests ------------------------------------------------------------------------


ENVOYS_COMPONENTS = ("@method", "@path", "content-digest")


def sign(method: str, body: bytes, key: Ed25519PrivateKey, keyid: str, *,
         created: int | None = None, nonce: str | None = "", headers: dict[str, str] | None = None,
         components: tuple[str, ...] = ENVOYS_COMPONENTS, path: str = PATH) -> dict[str, str]:
    """RFC 9421 headers in the envoys profile's shape (label sig1; keyid, created, nonce), written
    here so that each field can be made wrong on purpose. `nonce=None` leaves it out; the extra
    `headers` are sent and may be covered by naming them in `components`."""
    out = {k.lower(): v for k, v in (headers or {}).items()}
    out["content-digest"] = f"sha-256=:{b64(hashlib.sha256(body).digest())}:"
    created = int(time.time()) if created is None else created
    lines = []
    for c in components:
        value = {"@method": method.upper(), "@path": path}[c] if c.startswith("@") else out[c]
        lines.append(f'"{c}": {value}')
    params = "(" + " ".join(f'"{c}"' for c in components) + f');keyid="{keyid}";created={created}'
    if nonce is not None:
        params += f';nonce="{nonce or secrets.token_urlsafe(16)}"'
    lines.append(f'"@signature-params": {params}')
    signature = key.sign("\n".join(lines).encode("utf-8"))
    out["signature-input"] = f"sig1={params}"
    out["signature"] = f"sig1=:{b64(signature)}:"
    return out


def tools_call(tool: str, arguments: dict | None = None, *, rid: int = 1,
               progress: str | None = None) -> dict:
    params: dict[str, Any] = {"name": tool, "arguments": arguments or {}}
    if progress is not None:
        params["_meta"] = {"progressToken": progress}
    return {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": params}


INITIALIZE = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
              "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                         "clientInfo": {"name": "vouch-e2e-raw", "version": "1"}}}


def messages(response: httpx.Response) -> list[dict]:
    """The JSON-RPC messages of a response: a JSON body, or the data of each SSE event."""
    kind = response.headers.get("content-type", "")
    if kind.startswith("application/json"):
        body = response.json()
        return body if isinstance(body, list) else [body]
    if kind.startswith("text/event-stream"):
        return sse_messages(response.text)
    return []


def sse_messages(text: str) -> list[dict]:
    found = []
    for event in text.replace("\r\n", "\n").split("\n\n"):
        data = "\n".join(line[5:].lstrip(" ") for line in event.split("\n")
                         if line.startswith("data:"))
        if data.strip():
            found.append(json.loads(data))
    return found


def tool_text(msgs: list[dict], rid: int) -> str | None:
    for m in msgs:
        if m.get("id") == rid and "result" in m:
            return "".join(c.get("text", "") for c in m["result"].get("content", []))
    return None


def header_values(request: dict, name: str) -> list[str]:
    return [v for k, v in request["headers"] if k == name]



# --- the report ---------------------------------------------------------------------------------


class Report:
    def __init__(self) -> None:
        self.passed = 0
        self.failed: list[str] = []

    async def case(self, mode: str, name: str, run: Callable[[], Awaitable[str] | str],
                   logs: Callable[[], str] = lambda: "") -> None:
        started = time.monotonic()
        try:
            result = run()
            if asyncio.iscoroutine(result):
                result = await asyncio.wait_for(result, 60)
            took = time.monotonic() - started
            print(f"ok   {mode:<14} {name}: {result} [{took:.2f} s]", flush=True)
            self.passed += 1
        except Exception as e:  # noqa: BLE001 - every failure is reported, the run goes on
            reason = f"{type(e).__name__}: {e}" if not isinstance(e, CaseFailure) else str(e)
            print(f"FAIL {mode:<14} {name}: {reason}", flush=True)
            extra = logs()
            if extra:
                print(f"     logs: {extra}", flush=True)
            self.failed.append(f"{mode} {name}")

