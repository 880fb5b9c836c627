"""envoys-mcp's own client (EnvoysAuth, the envoys profile) against VouchMiddleware configured
with profile="envoys", through httpx's ASGI transport."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from envoys import Envoys, EnvoysConfig
from envoys_mcp.auth import EnvoysAuth

from asgi_support import EchoApp
from vouch.asgi import VouchMiddleware

ADDRESS = "worker@agents.example"
BASE = "https://agents.example"
KEYID = f"{BASE}/agents/{ADDRESS}"


@pytest.fixture(scope="module")
def envoys() -> tuple[Envoys, str]:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    config = EnvoysConfig(
        agent_key="", address=ADDRESS, public_key=public, private_key=private, base_url=BASE
    )
    return Envoys(config), public


def post(app: Any, auth: httpx.Auth, payloads: list[dict[str, Any]]) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://mcp.example", auth=auth
        ) as client:
            return [await client.post("/mcp", json=p) for p in payloads]

    return asyncio.run(go())


CALL = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "search", "arguments": {}}}


def test_an_envoys_client_is_accepted_under_the_envoys_profile(envoys: tuple[Envoys, str]) -> None:
    agent, public = envoys
    app = EchoApp()
    mw = VouchMiddleware(app, origin="http://mcp.example", agents={KEYID: public}, profile="envoys")
    (response,) = post(mw, EnvoysAuth(agent), [CALL])
    assert response.status_code == 200, response.text
    state = json.loads(response.text)["vouch"]
    assert state == {"identity": ADDRESS, "keyid": KEYID, "facts": None}
    assert json.loads(app.seen[0].body) == CALL


def test_an_envoys_client_is_refused_under_the_mcp_profile(envoys: tuple[Envoys, str]) -> None:
    agent, public = envoys
    app = EchoApp()
    mw = VouchMiddleware(app, origin="http://mcp.example", agents={KEYID: public})
    (response,) = post(mw, EnvoysAuth(agent), [CALL])
    assert response.status_code == 401
    assert app.seen == []


def test_an_envoys_client_with_an_unknown_key_is_refused(envoys: tuple[Envoys, str]) -> None:
    agent, _ = envoys
    other = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    app = EchoApp()
    mw = VouchMiddleware(app, origin="http://mcp.example", agents={KEYID: other}, profile="envoys")
    (response,) = post(mw, EnvoysAuth(agent), [CALL])
    assert response.status_code == 401
    assert response.json()["detail"]["error"] == "invalid_signature"
