"""verify checks a token's signatures once and decides every request afresh.

The checked tokens are cached by root key and token text (as vouch-tower's capability layer
does); everything that depends on the request or the clock must still be decided each time.
"""

import pytest

import vouch
from vouch import Forbidden, InvalidToken

NOW = 1_800_000_000


@pytest.fixture()
def keys():
    return vouch.generate_keypair()


def token(private, **claims):
    return vouch.mint(private, {"tools": ["db_query"], "expires_at": NOW + 60, **claims})


def test_a_cached_token_still_expires(keys):
    private, public = keys
    t = token(private)
    vouch.verify(t, public, tool="db_query", now=NOW)
    with pytest.raises(InvalidToken) as e:
        vouch.verify(t, public, tool="db_query", now=NOW + 60)
    assert e.value.reason == "expired"


def test_a_cached_token_is_decided_per_tool_and_audience(keys):
    private, public = keys
    t = token(private, audience="https://mcp.example")
    vouch.verify(t, public, tool="db_query", audience="https://mcp.example", now=NOW)
    with pytest.raises(Forbidden):
        vouch.verify(t, public, tool="drop_table", audience="https://mcp.example", now=NOW)
    with pytest.raises(InvalidToken):
        vouch.verify(t, public, tool="db_query", now=NOW)
    with pytest.raises(InvalidToken):
        vouch.verify(t, public, tool="db_query", audience="https://other.example", now=NOW)


def test_a_cached_token_is_decided_per_holder(keys):
    private, public = keys
    t = token(private, holder="https://agents.example/a")
    vouch.verify(t, public, caller="https://agents.example/a", now=NOW)
    with pytest.raises(InvalidToken) as e:
        vouch.verify(t, public, caller="https://agents.example/b", now=NOW)
    assert e.value.reason == "holder_mismatch"


def test_the_cache_is_per_root_key(keys):
    private, public = keys
    _, other = vouch.generate_keypair()
    t = token(private)
    vouch.verify(t, public, now=NOW)
    with pytest.raises(InvalidToken):
        vouch.verify(t, other, now=NOW)


def test_many_tokens_and_keys_stay_correct(keys):
    """More tokens and keys than the caches hold: evicted entries are checked again."""
    private, public = keys
    tokens = [token(private, subject=f"agent-{i}") for i in range(600)]
    for _ in range(2):
        for i, t in enumerate(tokens):
            assert vouch.verify(t, public, now=NOW)["subject"] == f"agent-{i}"
    pairs = [vouch.generate_keypair() for _ in range(20)]
    for _ in range(2):
        for p, q in pairs:
            assert vouch.verify(token(p), q, now=NOW)["tools"] == ["db_query"]
            with pytest.raises(InvalidToken):
                vouch.verify(token(p), public, now=NOW)


def test_a_long_token_verifies_without_being_cached(keys):
    private, public = keys
    t = token(private, tools=[f"tool_{i:03}" for i in range(200)])
    assert len(t) > 2048
    for _ in range(2):
        assert len(vouch.verify(t, public, now=NOW)["tools"]) == 200


def test_facts_keys_in_the_documented_order(keys):
    """verify builds the facts dict directly: the keys, in the order of their JSON form."""
    private, public = keys
    facts = vouch.verify(token(private, holder="h", audience="a"), public, caller="h",
                         audience="a", now=NOW)
    assert list(facts) == list(vouch.Facts.__annotations__)
    assert facts["audience"] == ["a"] and facts["holder"] == "h"
    assert facts["not_before"] is None and facts["expires_at"] == NOW + 60
    assert all(isinstance(i, str) and len(i) == 32 for i in facts["revocation_ids"])
