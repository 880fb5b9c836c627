"""MCPVault's Python quickstart, with only its imports changed, on vouch (FastAPI's TestClient).

QUICKSTART is the "Full Example" of MCPVault's Python quickstart
(https://su760.github.io/mcpvault/getting-started/python/), kept verbatim: the test swaps its two
mcpvault imports for vouch.compat's and checks that nothing else changed.
"""

from __future__ import annotations

import json
import time

import pytest

from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

import vouch
from vouch.compat import MCPVault, McpVaultError
from vouch.compat.fastapi import MCPVaultAuth

QUICKSTART = '''\
from mcpvault import MCPVault
from mcpvault.middleware.fastapi import MCPVaultAuth
from fastapi import FastAPI, Request

vault = MCPVault()

# 1. Generate an Ed25519 keypair (do this once; store securely)
priv_key, pub_key = vault.generate_keypair()

# 2. Mint a root token for agent-alpha, granting access to db_query for 1 hour
token = vault.mint(priv_key, {
    "tools": ["db_query"],
    "ttl": 3600,
    "issuer": "my-server",
    "subject": "agent-alpha",
})

# 3. Attenuate: delegate to a worker with tighter TTL (30 min)
worker_token = vault.attenuate(token, pub_key, {
    "tools": ["db_query"],
    "ttl": 1800,
})

# 4. Protect a FastAPI route — only accepts tokens scoped to db_query
app = FastAPI()
auth = MCPVaultAuth(public_key_hex=pub_key)

@app.post("/mcp")
@auth.require_tool("db_query")
async def handle_mcp_request(request: Request):
    # Verified facts are available on request.state
    facts = request.state.mcpvault_facts
    return {"issuer": facts["issuer"], "subject": facts["subject"]}
'''

IMPORTS = {
    "from mcpvault import MCPVault": "from vouch.compat import MCPVault",
    "from mcpvault.middleware.fastapi import MCPVaultAuth": (
        "from vouch.compat.fastapi import MCPVaultAuth"
    ),
}


def ported() -> str:
    text = QUICKSTART
    for old, new in IMPORTS.items():
        assert text.count(old) == 1
        text = text.replace(old, new)
    return text


@pytest.fixture()
def qs():
    """The ported quickstart, run: its names (vault, keys, tokens, app, auth)."""
    names: dict = {"__name__": "quickstart"}
    exec(compile(ported(), "quickstart.py", "exec"), names)
    app = names["app"]
    auth = names["auth"]

    # Extra routes on the quickstart's own app and guard, to see all the facts.
    @app.post("/facts")
    @auth.require_tool("db_query")
    async def facts(request: Request):
        return request.state.mcpvault_facts

    @app.post("/files")
    @auth.require_tool("file_read")
    async def files(request: Request):
        return {"ok": True}

    @app.post("/echo")
    @auth.require_tool("db_query")
    async def echo(request: Request):
        # The endpoint still reads the body the guard read.
        return {"body": (await request.body()).decode()}

    names["client"] = TestClient(app)
    return names


def rpc(token: str | None = None, *, tool: str = "db_query") -> dict:
    params: dict = {"name": tool, "arguments": {"sql": "select 1"}}
    if token is not None:
        params["_meta"] = {"token": token}
    return {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}


def header(token: str) -> dict:
    return {"X-MCPVault-Token": token}


def tampered(token: str) -> str:
    middle = len(token) // 2
    flipped = "A" if token[middle] != "A" else "B"
    return token[:middle] + flipped + token[middle + 1 :]


# ── the quickstart ─────────────────────────────────────────────────────────────


def test_only_the_imports_changed():
    before = QUICKSTART.splitlines()
    after = ported().splitlines()
    assert len(before) == len(after)
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    assert changed == list(IMPORTS.items())


def test_quickstart_facts_through_the_header(qs):
    client = qs["client"]
    for token in (qs["token"], qs["worker_token"]):
        r = client.post("/mcp", headers=header(token), json=rpc())
        assert r.status_code == 200, r.text
        assert r.json() == {"issuer": "my-server", "subject": "agent-alpha"}


def test_facts_in_the_seed_shape(qs):
    r = qs["client"].post("/facts", headers=header(qs["worker_token"]), json=rpc())
    assert r.status_code == 200, r.text
    facts = r.json()
    assert facts["tools"] == ["db_query"]
    assert facts["tool_wildcard"] is False
    assert facts["operations"] == [] and facts["resource_limits"] == []
    assert facts["delegation_depth"] == 1
    assert (facts["issuer"], facts["subject"]) == ("my-server", "agent-alpha")
    # The worker's TTL (30 min) is the tighter one.
    assert facts["expires_at"] <= int(time.time()) + 1800


def test_token_in_params_meta(qs):
    r = qs["client"].post("/mcp", json=rpc(qs["worker_token"]))
    assert r.status_code == 200, r.text
    assert r.json()["subject"] == "agent-alpha"


def test_header_wins_over_the_body(qs):
    client = qs["client"]
    r = client.post("/mcp", headers=header(qs["token"]), json=rpc("not-a-token"))
    assert r.status_code == 200, r.text
    r = client.post("/mcp", headers=header("not-a-token"), json=rpc(qs["token"]))
    assert r.status_code == 401
    assert r.json()["detail"]["error"] == "invalid_token"


def test_endpoint_reads_the_body_the_guard_read(qs):
    body = json.dumps(rpc(qs["token"]))
    r = qs["client"].post("/echo", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    assert r.json() == {"body": body}


# ── the error table ────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"json": rpc()}, {"json": {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}}],
    ids=["no_body", "no_meta", "other_method"],
)
def test_missing_token(qs, kwargs):
    r = qs["client"].post("/mcp", **kwargs)
    assert r.status_code == 401
    assert r.json() == {"detail": {"error": "missing_token"}}


def invalid(r) -> str:
    assert r.status_code == 401, r.text
    body = r.json()
    assert set(body) == {"detail"} and set(body["detail"]) == {"error", "detail"}
    assert body["detail"]["error"] == "invalid_token"
    assert isinstance(body["detail"]["detail"], str) and body["detail"]["detail"]
    return body["detail"]["detail"]


def test_invalid_token_tampered(qs):
    invalid(qs["client"].post("/mcp", headers=header(tampered(qs["worker_token"]))))
    invalid(qs["client"].post("/mcp", json=rpc(tampered(qs["worker_token"]))))


def test_invalid_token_expired(qs):
    expired = vouch.mint(
        qs["priv_key"],
        {"tools": ["db_query"], "expires_at": int(time.time()) - 60, "subject": "agent-alpha"},
    )
    assert "expire" in invalid(qs["client"].post("/mcp", headers=header(expired)))


def test_invalid_token_wrong_root(qs):
    other = MCPVault()
    other_priv, _ = other.generate_keypair()
    foreign = other.mint(
        other_priv, {"tools": ["db_query"], "ttl": 60, "issuer": "x", "subject": "y"}
    )
    invalid(qs["client"].post("/mcp", headers=header(foreign)))


@pytest.mark.parametrize("text", ["garbage", "A" * 40, "!!!"])
def test_invalid_token_malformed(qs, text):
    invalid(qs["client"].post("/mcp", headers=header(text)))


def test_empty_and_repeated_token_headers_are_invalid(qs):
    assert invalid(qs["client"].post("/mcp", headers=header(""))) == "empty token header"
    token = qs["token"]
    r = qs["client"].post(
        "/mcp", headers=[("X-MCPVault-Token", token), ("X-MCPVault-Token", token)]
    )
    assert invalid(r) == "more than one token header"


def forbidden(r) -> None:
    assert r.status_code == 403, r.text
    body = r.json()
    assert body["detail"]["error"] == "forbidden"
    assert set(body["detail"]) == {"error", "detail"} and body["detail"]["detail"]


def test_forbidden_tool(qs):
    forbidden(qs["client"].post("/files", headers=header(qs["token"])))
    forbidden(qs["client"].post("/files", json=rpc(qs["worker_token"], tool="file_read")))


def test_attenuated_token_is_narrower(qs):
    vault, priv, pub = qs["vault"], qs["priv_key"], qs["pub_key"]
    root = vault.mint(
        priv,
        {"tools": ["db_query", "file_read"], "ttl": 3600, "issuer": "s", "subject": "a"},
    )
    worker = vault.attenuate(root, pub, {"tools": ["db_query"], "ttl": 600})
    client = qs["client"]
    assert client.post("/files", headers=header(root)).status_code == 200
    forbidden(client.post("/files", headers=header(worker)))
    assert client.post("/mcp", headers=header(worker)).status_code == 200
    with pytest.raises(ValueError):
        vault.attenuate(worker, pub, {"tools": ["db_query", "file_read"]})
    with pytest.raises(ValueError):
        vault.attenuate(worker, pub, {"ttl": 7200})


def test_operation_is_vouchs_addition():
    vault = MCPVault()
    priv, pub = vault.generate_keypair()
    reader = vault.mint(
        priv,
        {
            "tools": ["db_query"],
            "operations": [("db_query", "READ")],
            "ttl": 60,
            "issuer": "s",
            "subject": "a",
        },
    )
    app = FastAPI()
    auth = MCPVaultAuth(public_key_hex=pub)

    @app.post("/read")
    @auth.require_tool("db_query", operation="read")
    async def read(request: Request):
        return {"ok": True}

    @app.post("/write")
    @auth.require_tool("db_query", operation="write")
    async def write(request: Request):
        return {"ok": True}

    client = TestClient(app)
    assert client.post("/read", headers=header(reader)).status_code == 200
    forbidden(client.post("/write", headers=header(reader)))


# ── the body is read as strictly as the Rust layers read it ────────────────────


def rpc_error(r, code: int) -> None:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["jsonrpc"] == "2.0" and body["id"] is None
    assert body["error"]["code"] == code


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"\xff\xfe{}", -32700),
        (b'{"jsonrpc":"2.0"', -32700),
        (b'{"jsonrpc":"2.0","id":1} {}', -32700),
        (b'{"jsonrpc":"2.0","id":1,"method":"x","params":{"n":NaN}}', -32700),
        (b'[{"jsonrpc":"2.0","id":1,"method":"tools/list"}]', -32600),
        (b'"text"', -32600),
        (b'{"jsonrpc":"2.0","jsonrpc":"2.0","id":1,"method":"tools/list"}', -32600),
        (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"db_query",'
         b'"name":"drop"}}', -32600),
        (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"db_query",'
         b'"_meta":{"token":"a","token":"b"}}}', -32600),
        (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"db_query",'
         b'"_meta":{"tok\\u0065n":"a","token":"b"}}}', -32600),
        (b'{"id":1,"method":"tools/list"}', -32600),
        (b'{"jsonrpc":"2.0","id":1,"method":7}', -32600),
        (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}', -32600),
    ],
    ids=[
        "not_utf8",
        "truncated",
        "two_values",
        "nan",
        "batch",
        "not_object",
        "duplicate_top",
        "duplicate_params",
        "duplicate_meta",
        "duplicate_meta_escaped",
        "no_jsonrpc",
        "method_not_str",
        "call_without_name",
    ],
)
def test_bad_body_refused(qs, body, code):
    rpc_error(qs["client"].post("/mcp", content=body), code)


def test_duplicates_deeper_are_the_tools_business(qs):
    body = (
        '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"db_query",'
        '"arguments":{"q":1,"q":2},"_meta":{"token":"%s"}}}' % qs["token"]
    )
    assert qs["client"].post("/mcp", content=body).status_code == 200


def test_body_with_a_header_is_left_to_the_endpoint(qs):
    # Not JSON-RPC, not even JSON: refused (400) were it read for a token.
    r = qs["client"].post("/echo", headers=header(qs["token"]), content=b"not json {")
    assert r.status_code == 200, r.text
    assert r.json() == {"body": "not json {"}
    rpc_error(qs["client"].post("/echo", content=b"not json {"), -32700)


def test_oversized_body_is_refused():
    vault = MCPVault()
    _, pub = vault.generate_keypair()
    app = FastAPI()
    auth = MCPVaultAuth(public_key_hex=pub, max_body_bytes=64)

    @app.post("/mcp")
    @auth.require_tool("db_query")
    async def handle(request: Request):
        return {}

    client = TestClient(app)
    r = client.post("/mcp", content=b"{" + b" " * 100 + b"}")
    assert r.status_code == 413
    assert r.json() == {"detail": {"error": "payload_too_large"}}

    def chunks():
        yield b"{"
        yield b" " * 100
        yield b"}"

    r = client.post("/mcp", content=chunks())
    assert r.status_code == 413


# ── the guard itself ───────────────────────────────────────────────────────────


def test_sync_endpoint_and_any_request_parameter_name():
    vault = MCPVault()
    priv, pub = vault.generate_keypair()
    token = vault.mint(priv, {"tools": ["t"], "ttl": 60, "issuer": "s", "subject": "a"})
    app = FastAPI()
    auth = MCPVaultAuth(public_key_hex=pub)

    @app.post("/sync")
    @auth.require_tool("t")
    def handle(req: Request):
        return {"subject": req.state.mcpvault_facts["subject"]}

    r = TestClient(app).post("/sync", headers=header(token))
    assert r.status_code == 200 and r.json() == {"subject": "a"}


def test_endpoint_without_a_request_is_refused_at_decoration():
    _, pub = MCPVault().generate_keypair()
    auth = MCPVaultAuth(public_key_hex=pub)
    with pytest.raises(TypeError):

        @auth.require_tool("t")
        async def handle(x: int):
            return {}


@pytest.mark.parametrize("key", ["", "zz" * 32, "00" * 31, "00" * 32])
def test_bad_public_key_fails_at_start(key):
    with pytest.raises(ValueError):
        MCPVaultAuth(public_key_hex=key)


@pytest.mark.parametrize("tool", ["", None, 7])
def test_bad_tool_name_fails_at_decoration(tool):
    _, pub = MCPVault().generate_keypair()
    with pytest.raises(ValueError):
        MCPVaultAuth(public_key_hex=pub).require_tool(tool)


def test_revocation_list():
    vault = MCPVault()
    priv, pub = vault.generate_keypair()
    token = vault.mint(priv, {"tools": ["t"], "ttl": 60, "issuer": "s", "subject": "a"})
    worker = vault.attenuate(token, pub, {"ttl": 30})
    ids = vault.verify(worker, pub, {"requested_tool": "t"})["revocation_ids"]
    assert len(ids) == 2
    with pytest.raises(McpVaultError) as e:
        vault.verify(worker, pub, {"requested_tool": "t", "revocation_list": [ids[1].upper()]})
    assert e.value.code == 401 and e.value.reason == "revoked"
    # Revoking the root block revokes every token under it.
    app = FastAPI()
    auth = MCPVaultAuth(public_key_hex=pub, revocation_list=[ids[0]])

    @app.post("/t")
    @auth.require_tool("t")
    async def handle(request: Request):
        return {}

    client = TestClient(app)
    assert invalid(client.post("/t", headers=header(worker))) == "token revoked"
    assert invalid(client.post("/t", headers=header(token))) == "token revoked"
    other = vault.mint(priv, {"tools": ["t"], "ttl": 60, "issuer": "s", "subject": "a"})
    assert client.post("/t", headers=header(other)).status_code == 200


# ── MCPVault's config dicts ────────────────────────────────────────────────────


def test_config_translation():
    vault = MCPVault()
    priv, pub = vault.generate_keypair()
    token = vault.mint(
        priv,
        {
            "tools": ["db_query", "file_read"],
            "operations": [("db_query", "read"), ["db_query", "Write"], ("file_read", "read")],
            "resource_limits": [("db_query", "max_rows", 100)],
            "max_delegation_depth": 1,
            "ttl": 3600,
            "issuer": "auth-server",
            "subject": "agent-a",
        },
    )
    facts = vault.verify(token, pub, {"requested_tool": "db_query"})
    assert facts["operations"] == [
        ["db_query", "read"],
        ["db_query", "write"],
        ["file_read", "read"],
    ]
    assert facts["resource_limits"] == [["db_query", "max_rows", 100]]
    worker = vault.attenuate(
        token,
        pub,
        {"operations": [("db_query", "read")], "resource_limits": [("db_query", "max_rows", 10)]},
    )
    facts = vault.verify(worker, pub, {"requested_tool": "db_query"})
    assert ["db_query", "write"] not in facts["operations"]
    assert facts["resource_limits"] == [["db_query", "max_rows", 10]]
    # max_delegation_depth 1: one attenuation, not two.
    with pytest.raises(ValueError, match="depth"):
        vault.attenuate(worker, pub, {"ttl": 60})
    # tools None is MCPVault's wildcard.
    wild = vault.mint(priv, {"tools": None, "ttl": 60, "issuer": "s", "subject": "a"})
    assert vault.verify(wild, pub, {"requested_tool": "anything"})["tool_wildcard"] is True
    with pytest.raises(vouch.Forbidden):
        vault.verify(token, pub, {"requested_tool": "search"})


BASE = {"ttl": 60, "issuer": "s", "subject": "a"}


@pytest.mark.parametrize(
    "config",
    [
        {"ttl": 60, "issuer": "s"},
        {"ttl": 60, "subject": "a"},
        {"issuer": "s", "subject": "a"},
        {**BASE, "tool": ["t"]},
        {**BASE, "max_depth": 1},
        {**BASE, "tools": "db_query"},
        {**BASE, "operations": {"t": ["read"]}},
        {**BASE, "operations": [("t", "delete")]},
        {**BASE, "operations": [("t",)]},
        {**BASE, "operations": [("t", 1)]},
        {**BASE, "resource_limits": [("t", "rows", -1)]},
        {**BASE, "resource_limits": [("t", "rows", True)]},
        {**BASE, "resource_limits": [("t", "rows", 1), ("t", "rows", 2)]},
        {**BASE, "max_delegation_depth": 99},
        ["ttl"],
    ],
    ids=lambda c: json.dumps(c, default=str)[:40],
)
def test_strict_mint_config(config):
    vault = MCPVault()
    priv, _ = vault.generate_keypair()
    with pytest.raises(ValueError):
        vault.mint(priv, config)


@pytest.mark.parametrize(
    "options",
    [{}, {"requested_tool": 1}, {"requested_tool": "t", "extra": 1},
     {"requested_tool": "t", "revocation_list": "abc"}],
)
def test_strict_verify_options(options):
    vault = MCPVault()
    priv, pub = vault.generate_keypair()
    token = vault.mint(priv, {**BASE, "tools": ["t"]})
    with pytest.raises(ValueError):
        vault.verify(token, pub, options)


def test_attenuate_refuses_issuer_and_a_token_of_another_root():
    vault = MCPVault()
    priv, pub = vault.generate_keypair()
    _, other = vault.generate_keypair()
    token = vault.mint(priv, {**BASE, "tools": ["t"]})
    with pytest.raises(ValueError):
        vault.attenuate(token, pub, {"issuer": "x"})
    with pytest.raises(vouch.InvalidToken):
        vault.attenuate(token, other, {"ttl": 30})


def test_inspect_checks_nothing():
    vault = MCPVault()
    priv, _ = vault.generate_keypair()
    info = vault.inspect(vault.mint(priv, {**BASE, "tools": ["t"]}))
    assert len(info["blocks"]) == 1
