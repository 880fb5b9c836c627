#!/usr/bin/env python3
"""An envoys-mcp client against a vouch-protected rmcp server (vouch's envoys profile).

    python envoys_mcp_client.py CONFIG.json

CONFIG.json is written by `cargo run -p vouch-rmcp --example envoys_interop_server`:
{"url": ..., "token": <vouch token bound to the allowed identity>,
 "outsider_token": <vouch token bound to the outsider>}.

Checks, each printing `ok <name>` or `FAIL <name>: <reason>`:
  mcp-session          the MCP Python SDK's streamablehttp_client with EnvoysAuth
                       initializes, lists tools, calls `add` (2 + 3 = 5) and `whoami`
                       (the identity vouch verified)
  outsider-refused     the same client signed by a non-allowlisted envoys identity
                       cannot initialize; a direct signed POST gets 401 not_allowed
Exit status: 0 all ok, 1 any failure, 2 bad input.
"""
from __future__ import annotations

import asyncio
import json
import sys

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from envoys import Envoys, EnvoysConfig
from envoys_mcp import EnvoysAuth
from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client

BASE_URL = "https://envoys.me"
ALLOWED = ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
           "test@rfc8032-vec1.example")
OUTSIDER = ("07" * 32, "outsider@elsewhere.example")
TIMEOUT = 20


def envoys_client(seed_hex: str, address: str) -> Envoys:
    priv = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed_hex))
    priv_pem = priv.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode("ascii")
    pub_pem = priv.public_key().public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")
    return Envoys(EnvoysConfig(agent_key="unused-offline", address=address,
                               public_key=pub_pem, private_key=priv_pem, base_url=BASE_URL))


def text_of(result) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


async def session(url: str, token: str, who: tuple[str, str]) -> dict:
    auth = EnvoysAuth(envoys_client(*who))
    async with streamablehttp_client(url, headers={"x-mcpvault-token": token},
                                     auth=auth) as (read, write, _):
        async with ClientSession(read, write) as s:
            await s.initialize()
            tools = sorted(t.name for t in (await s.list_tools()).tools)
            add = text_of(await s.call_tool("add", {"a": 2, "b": 3}))
            whoami = text_of(await s.call_tool("whoami", {}))
            return {"tools": tools, "add": add, "whoami": whoami}


async def check_allowed(cfg: dict) -> list[str]:
    got = await asyncio.wait_for(session(cfg["url"], cfg["token"], ALLOWED), TIMEOUT)
    want = {"tools": ["add", "whoami"], "add": "5", "whoami": ALLOWED[1]}
    return [] if got == want else [f"got {got}, want {want}"]


async def check_outsider(cfg: dict) -> list[str]:
    failures = []
    try:
        got = await asyncio.wait_for(
            session(cfg["url"], cfg["outsider_token"], OUTSIDER), TIMEOUT)
        failures.append(f"outsider was served: {got}")
    except Exception:  # noqa: BLE001 - any failure to get a session is the expected refusal
        pass
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "outsider", "version": "1"}}}
    async with httpx.AsyncClient(auth=EnvoysAuth(envoys_client(*OUTSIDER))) as http:
        r = await http.post(cfg["url"], json=init, headers={
            "x-mcpvault-token": cfg["outsider_token"],
            "accept": "application/json, text/event-stream"})
    reason = r.json().get("detail", {}).get("detail") if r.headers.get(
        "content-type", "").startswith("application/json") else None
    if r.status_code != 401 or reason != "not_allowed":
        failures.append(f"direct POST: {r.status_code} {r.text[:200]}")
    return failures


async def main_async(cfg: dict) -> int:
    failed = False
    for name, check in (("mcp-session", check_allowed), ("outsider-refused", check_outsider)):
        try:
            problems = await check(cfg)
        except Exception as e:  # noqa: BLE001
            problems = [f"{type(e).__name__}: {e}"]
        if problems:
            failed = True
            print(f"FAIL {name}: {'; '.join(problems)}")
        else:
            print(f"ok {name}")
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        with open(argv[1], encoding="utf-8") as f:
            cfg = json.load(f)
        cfg["url"], cfg["token"], cfg["outsider_token"]
    except (OSError, ValueError, KeyError) as e:
        print(f"bad input: {e}", file=sys.stderr)
        return 2
    return asyncio.run(main_async(cfg))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
