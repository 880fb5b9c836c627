"""The token API: round trips, attenuation only narrows, every error path, strict inputs."""

import threading

import pytest

import vouch
from vouch import Forbidden, InvalidToken, MissingToken, VouchError

NOW = 1_800_000_000


@pytest.fixture(scope="module")
def keys():
    return vouch.generate_keypair()


@pytest.fixture(scope="module")
def root_token(keys):
    private, _ = keys
    return vouch.mint(
        private,
        {
            "issuer": "auth-server",
            "subject": "agent-a",
            "tools": ["db_query", "file_read", "search"],
            "operations": {"db_query": ["read", "write"]},
            "resource_limits": {"db_query": {"max_rows": 100}},
            "ttl": 3600,
        },
    )


def test_generate_keypair_gives_hex_halves():
    private, public = vouch.generate_keypair()
    assert len(private) == 64 and len(public) == 64
    int(private, 16), int(public, 16)
    assert private != public
    assert vouch.generate_keypair()[0] != private


def test_round_trip_facts_in_the_seed_shape(keys, root_token):
    _, public = keys
    facts = vouch.verify(root_token, public, tool="db_query", op="write")
    assert facts["tools"] == ["db_query", "file_read", "search"]
    assert facts["tool_wildcard"] is False
    assert facts["operations"] == [["db_query", "read"], ["db_query", "write"]]
    assert facts["resource_limits"] == [["db_query", "max_rows", 100]]
    assert facts["issuer"] == "auth-server"
    assert facts["subject"] == "agent-a"
    assert facts["delegation_depth"] == 0
    assert facts["audience"] is None and facts["holder"] is None
    assert len(facts["revocation_ids"]) == 1


def test_mint_defaults_as_the_cli(keys):
    private, public = keys
    facts = vouch.verify(vouch.mint(private, {}), public)
    assert facts["tool_wildcard"] is True and facts["tools"] == []
    assert (facts["issuer"], facts["subject"]) == ("vouch", "agent")
    info = vouch.inspect(vouch.mint(private, {}))
    assert info["blocks"][0]["expires_at"] is not None


def test_attenuation_narrows(keys, root_token):
    _, public = keys
    worker = vouch.attenuate(
        root_token,
        public,
        {
            "tools": ["db_query"],
            "operations": {"db_query": ["read"]},
            "resource_limits": {"db_query": {"max_rows": 10}},
            "holder": "https://agents.example/worker",
        },
    )
    caller = "https://agents.example/worker"
    facts = vouch.verify(worker, public, tool="db_query", op="read", caller=caller)
    assert facts["tools"] == ["db_query"]
    assert facts["operations"] == [["db_query", "read"]]
    assert facts["resource_limits"] == [["db_query", "max_rows", 10]]
    assert facts["holder"] == caller
    assert facts["delegation_depth"] == 1
    with pytest.raises(Forbidden) as e:
        vouch.verify(worker, public, tool="db_query", op="write", caller=caller)
    assert (e.value.code, e.value.error, e.value.reason) == (403, "forbidden", "operation_not_granted")
    with pytest.raises(Forbidden) as e:
        vouch.verify(worker, public, tool="search", caller=caller)
    assert e.value.reason == "tool_not_granted"


@pytest.mark.parametrize(
    "claims",
    [
        {"tools": ["db_query", "shell"]},
        {"operations": {"db_query": ["delete"]}},
        {"resource_limits": {"db_query": {"max_rows": 101}}},
        {"ttl": 10**6},
    ],
    ids=["new_tool", "new_operation", "higher_limit", "longer_ttl"],
)
def test_attenuation_cannot_widen(keys, root_token, claims):
    _, public = keys
    with pytest.raises(ValueError, match="refused"):
        vouch.attenuate(root_token, public, claims)


def test_attenuate_checks_the_token_under_the_public_key(root_token):
    _, other = vouch.generate_keypair()
    with pytest.raises(InvalidToken) as e:
        vouch.attenuate(root_token, other, {"tools": ["search"]})
    assert e.value.reason == "unknown_root_key"


def test_attenuate_refuses_an_expired_token(keys):
    private, public = keys
    old = vouch.mint(private, {"expires_at": 1_000})
    with pytest.raises(InvalidToken) as e:
        vouch.attenuate(old, public, {"tools": ["search"]})
    assert e.value.reason == "expired"


def test_attenuate_refuses_issuer_and_subject(keys, root_token):
    _, public = keys
    for key in ("issuer", "subject"):
        with pytest.raises(ValueError, match="only a root token"):
            vouch.attenuate(root_token, public, {key: "x"})


def test_seal_stops_attenuation_but_verifies(keys, root_token):
    _, public = keys
    sealed = vouch.seal(root_token)
    assert vouch.inspect(sealed)["sealed"] is True
    assert vouch.inspect(root_token)["sealed"] is False
    assert vouch.verify(sealed, public, tool="search")["subject"] == "agent-a"
    with pytest.raises(ValueError, match="refused"):
        vouch.attenuate(sealed, public, {"tools": ["search"]})
    with pytest.raises(ValueError, match="refused"):
        vouch.seal(sealed)


@pytest.mark.parametrize("token", [None, ""])
def test_missing_token(keys, token):
    _, public = keys
    with pytest.raises(MissingToken) as e:
        vouch.verify(token, public)
    assert (e.value.code, e.value.error) == (401, "missing_token")
    assert isinstance(e.value, VouchError)


@pytest.mark.parametrize(
    "token",
    ["not a token", "AAAA", "A" * 20_000, "Zm9v+/=="],
    ids=["garbage", "short", "oversized", "not_base64url"],
)
def test_malformed_token_is_invalid(keys, token):
    _, public = keys
    with pytest.raises(InvalidToken) as e:
        vouch.verify(token, public)
    assert (e.value.code, e.value.error) == (401, "invalid_token")
    assert e.value.reason == "malformed"


def test_tampered_token_is_invalid(keys, root_token):
    _, public = keys
    # Flip one character in the middle (inside a block payload or signature).
    i = len(root_token) // 2
    flipped = "A" if root_token[i] != "A" else "B"
    tampered = root_token[:i] + flipped + root_token[i + 1 :]
    with pytest.raises(InvalidToken) as e:
        vouch.verify(tampered, public)
    assert e.value.reason in ("bad_signature", "malformed")


def test_wrong_root_key_is_invalid(root_token):
    _, other = vouch.generate_keypair()
    with pytest.raises(InvalidToken) as e:
        vouch.verify(root_token, other)
    assert e.value.reason == "unknown_root_key"


def test_expiry_and_not_before(keys):
    private, public = keys
    token = vouch.mint(private, {"not_before": NOW, "expires_at": NOW + 60})
    assert vouch.verify(token, public, now=NOW)["expires_at"] == NOW + 60
    with pytest.raises(InvalidToken) as e:
        vouch.verify(token, public, now=NOW - 1)
    assert e.value.reason == "not_yet_valid"
    with pytest.raises(InvalidToken) as e:
        vouch.verify(token, public, now=NOW + 60)
    assert e.value.reason == "expired"


def test_audience(keys):
    private, public = keys
    token = vouch.mint(private, {"audience": "https://mcp.example"})
    assert vouch.verify(token, public, audience="https://mcp.example")["audience"] == [
        "https://mcp.example"
    ]
    for audience in (None, "https://other.example"):
        with pytest.raises(InvalidToken) as e:
            vouch.verify(token, public, audience=audience)
        assert e.value.reason == "wrong_audience"


def test_holder(keys):
    private, public = keys
    token = vouch.mint(private, {"holder": "agent-key-1"})
    assert vouch.verify(token, public, caller="agent-key-1")["holder"] == "agent-key-1"
    for caller in (None, "agent-key-2"):
        with pytest.raises(InvalidToken) as e:
            vouch.verify(token, public, caller=caller)
        assert e.value.reason == "holder_mismatch"


def test_delegation_depth(keys):
    private, public = keys
    token = vouch.mint(private, {"max_depth": 1})
    once = vouch.attenuate(token, public, {"tools": ["a", "b"]})
    assert vouch.verify(once, public)["delegation_depth"] == 1
    with pytest.raises(ValueError, match="refused"):
        vouch.attenuate(once, public, {"tools": ["a"]})


def test_inspect_reports_blocks_without_checking(keys, root_token):
    _, public = keys
    worker = vouch.attenuate(root_token, public, {"tools": ["search"]})
    info = vouch.inspect(worker)
    assert [b["index"] for b in info["blocks"]] == [0, 1]
    assert info["blocks"][0]["issuer"] == "auth-server"
    assert info["blocks"][1]["tools"] == ["search"]
    assert info["effective"]["tools"] == ["search"]
    with pytest.raises(InvalidToken):
        vouch.inspect("not a token")


@pytest.mark.parametrize(
    "claims, message",
    [
        ({"tool": ["db_query"]}, "unknown claim"),
        ({"tools": "db_query"}, "list of str"),
        ({"tools": [1]}, "expected a str"),
        ({"ttl": -1}, "from 0"),
        ({"ttl": True}, "not a bool"),
        ({"ttl": "3600"}, "expected an int"),
        ({"ttl": 2**64}, "from 0"),
        ({"operations": {"db_query": "read"}}, "list of str"),
        ({"operations": {"db_query": []}}, "must not be empty"),
        ({"operations": ["db_query"]}, "expected a dict"),
        ({"resource_limits": {"db_query": 100}}, "expected a dict"),
        ({"resource_limits": {"db_query": {"max_rows": 1.5}}}, "expected an int"),
        ({"max_depth": 16}, "0 to 15"),
        ({"holder": ["a"]}, "expected a str"),
        ({"tools": [""]}, "invalid input"),
        ({1: "x"}, "keys must be str"),
    ],
)
def test_strict_claims(keys, claims, message):
    private, _ = keys
    with pytest.raises(ValueError, match=message):
        vouch.mint(private, claims)


@pytest.mark.parametrize(
    "key",
    ["", "00" * 31, "00" * 33, "zz" * 32, "é" * 32],
    ids=["empty", "short", "long", "not_hex", "non_ascii"],
)
def test_strict_keys(root_token, key):
    with pytest.raises(ValueError, match="64 hex digits"):
        vouch.mint(key, {})
    with pytest.raises(ValueError, match="64 hex digits"):
        vouch.verify(root_token, key)


def test_weak_public_key_is_refused(root_token):
    with pytest.raises(ValueError, match="public key"):
        vouch.verify(root_token, "00" * 32)


@pytest.mark.parametrize(
    "now, message",
    [(True, "not a bool"), (-1, "from 0"), (2**64, "from 0"), (1.5, "expected an int"), ("1", "expected an int")],
)
def test_strict_now(keys, root_token, now, message):
    _, public = keys
    with pytest.raises(ValueError, match=f"^now: .*{message}"):
        vouch.verify(root_token, public, now=now)


def test_op_without_tool_is_refused(keys, root_token):
    _, public = keys
    with pytest.raises(ValueError, match="op needs a tool"):
        vouch.verify(root_token, public, op="read")


def test_verify_releases_the_gil(keys, root_token):
    # Threads verifying concurrently must all succeed (the GIL is released in the Rust half;
    # this checks that doing so is sound, not that it is faster).
    _, public = keys
    results = []

    def work():
        for _ in range(50):
            results.append(vouch.verify(root_token, public, tool="search")["subject"])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["agent-a"] * 200
