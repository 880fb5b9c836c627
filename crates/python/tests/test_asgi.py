"""VouchMiddleware in-process, attacked like an outsider: every refusal, with requests signed
by the real `vouch sign`. The app records what it saw; the driver counts receive() calls."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import vouch
from asgi_support import Agent, EchoApp, Signed, call_body, middleware, run
from vouch.asgi import Denied, Gate, Pending, SigningStats, VouchMiddleware, caller_identity, grants


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys")


@pytest.fixture(scope="module")
def agent(tmp: Path) -> Agent:
    return Agent.create(tmp, "agent-a")


@pytest.fixture(scope="module")
def other(tmp: Path) -> Agent:
    return Agent.create(tmp, "https://agents.example/agents/b@agents.example")


@pytest.fixture(scope="module")
def root() -> tuple[str, str]:
    return vouch.generate_keypair()


@pytest.fixture(scope="module")
def token(root: tuple[str, str]) -> str:
    return vouch.mint(root[0], {"tools": ["search"], "ttl": 600})


def guarded(agents: list[Agent], root: tuple[str, str] | None = None, **kw: Any) -> tuple[EchoApp, Any]:
    app = EchoApp()
    if root is not None:
        kw.setdefault("roots", [root[1]])
    return app, middleware(app, agents, **kw)


def refused(answer: Any, status: int, app: EchoApp, error: str | None = None) -> dict[str, Any]:
    assert answer.status == status, answer.body
    assert app.seen == [], "the app must not see a refused request"
    body = answer.json()
    if error is not None:
        assert body["detail"]["error"] == error, body
    return body


# --- allowed requests -------------------------------------------------------------------------


def test_a_signed_call_with_a_granted_token_reaches_the_app(
    agent: Agent, root: tuple[str, str], token: str
) -> None:
    app, mw = guarded([agent], root)
    body = call_body("search")
    answer = run(mw, agent.sign(body, headers=(("X-MCPVault-Token", token),)))
    assert answer.status == 200, answer.body
    (seen,) = app.seen
    assert seen.body == body.encode(), "the buffered body is replayed to the app"
    state = seen.scope["state"]["vouch"]
    assert state["identity"] == "agent-a" and state["keyid"] == "agent-a"
    assert state["facts"]["tools"] == ["search"]
    assert state["facts"]["subject"] == "agent"


def test_the_token_may_ride_in_params_meta(agent: Agent, root: tuple[str, str], token: str) -> None:
    app, mw = guarded([agent], root)
    answer = run(mw, agent.sign(call_body("search", token)))
    assert answer.status == 200, answer.body


def test_identity_only_mode_has_no_facts(agent: Agent) -> None:
    app, mw = guarded([agent])
    assert mw.gate.identity_only
    answer = run(mw, agent.sign(call_body("search")))
    assert answer.status == 200, answer.body
    assert app.seen[0].scope["state"]["vouch"] == {
        "identity": "agent-a",
        "keyid": "agent-a",
        "facts": None,
    }


def test_an_address_keyid_is_identified_by_its_address(other: Agent) -> None:
    app, mw = guarded([other])
    assert run(mw, other.sign(call_body("search"))).status == 200
    assert app.seen[0].scope["state"]["vouch"]["identity"] == "b@agents.example"


def test_agents_may_be_given_as_jwk(agent: Agent) -> None:
    app = EchoApp()
    mw = VouchMiddleware(app, origin="http://mcp.example", agents={agent.keyid: agent.jwk})
    assert run(mw, agent.sign(call_body("search"))).status == 200


def test_after_the_body_the_app_receives_the_clients_own_messages(agent: Agent) -> None:
    app = EchoApp(read_after=True)
    mw = middleware(app, [agent])
    answer = run(mw, agent.sign(call_body("search")))
    assert answer.status == 200
    assert app.seen[0].after == [{"type": "http.disconnect"}]


def test_a_get_without_body_passes(agent: Agent) -> None:
    app, mw = guarded([agent])
    answer = run(mw, agent.sign(method="GET", target="/mcp?session=1"))
    assert answer.status == 200, answer.body


# --- refusals on the head ---------------------------------------------------------------------


def test_unsigned_is_401_with_the_challenge(agent: Agent) -> None:
    app, mw = guarded([agent])
    request = agent.sign(call_body("search")).without("signature").without("signature-input")
    answer = run(mw, request)
    body = refused(answer, 401, app, "invalid_signature")
    assert body["detail"]["detail"] == "missing_signature"
    assert answer.headers[b"www-authenticate"].startswith(b"Signature")
    assert answer.received == 0, "refused before any body byte is read"


def test_an_unknown_key_is_401(tmp: Path, agent: Agent) -> None:
    stranger = Agent.create(tmp, "stranger")
    app, mw = guarded([agent])
    body = refused(run(mw, stranger.sign(call_body("search"))), 401, app)
    assert body["detail"]["detail"] == "unknown_key"


def test_a_key_that_is_not_the_keyids_is_401(tmp: Path, agent: Agent) -> None:
    impostor = Agent.create(tmp, "agent-a")
    app, mw = guarded([agent])
    refused(run(mw, impostor.sign(call_body("search"))), 401, app, "invalid_signature")


def test_a_tampered_covered_header_is_401(agent: Agent) -> None:
    app, mw = guarded([agent])
    signed = agent.sign(call_body("search"))
    # The target is covered (@target-uri): another path breaks the signature.
    answer = run(mw, Signed("POST", "/admin", signed.headers, signed.body))
    refused(answer, 401, app, "invalid_signature")
    # So is the method.
    answer = run(mw, Signed("PUT", "/mcp", signed.headers, signed.body))
    refused(answer, 401, app, "invalid_signature")


def test_wrong_host_is_421_before_any_key_lookup(tmp: Path, agent: Agent) -> None:
    app, mw = guarded([agent])
    answer = run(mw, agent.sign(call_body("search"), host="evil.example"))
    refused(answer, 421, app, "misdirected_request")
    # An unknown signer gets the same 421: the origin is decided before any key is looked up.
    stranger = Agent.create(tmp, "stranger-2")
    answer = run(mw, stranger.sign(call_body("search"), host="evil.example"))
    refused(answer, 421, app, "misdirected_request")


def test_a_request_relayed_to_another_server_is_refused(agent: Agent) -> None:
    # Two servers trust the same agent; a request signed for A must not pass at B.
    app_b, server_b = guarded([agent], origin="http://b.example")
    for_a = agent.sign(call_body("search"), host="a.example")
    refused(run(server_b, for_a), 421, app_b)
    # With its Host rewritten to B's, the signed target no longer matches: 401.
    refused(run(server_b, for_a.with_header("host", "b.example")), 401, app_b)
    # A accepts it.
    app_a, server_a = guarded([agent], origin="http://a.example")
    assert run(server_a, for_a).status == 200


def test_several_origins(agent: Agent) -> None:
    app, mw = guarded([agent], origin=["http://mcp.example", "http://alias.example"])
    assert run(mw, agent.sign(call_body("search"), host="alias.example")).status == 200


def test_a_declared_body_over_the_cap_is_413_without_reading_it(agent: Agent) -> None:
    app, mw = guarded([agent], max_body_bytes=64)
    request = agent.sign("x" * 65)
    answer = run(mw, request)
    refused(answer, 413, app, "payload_too_large")
    assert answer.received == 0, "the body is never read"
    assert answer.headers[b"connection"] == b"close"


def test_an_undeclared_body_over_the_cap_is_413(agent: Agent) -> None:
    app, mw = guarded([agent], max_body_bytes=64)
    request = agent.sign(call_body("search")).without("content-length")
    messages = [
        {"type": "http.request", "body": request.body[:40], "more_body": True},
        {"type": "http.request", "body": request.body[40:], "more_body": False},
    ]
    answer = run(mw, request, messages=messages)
    refused(answer, 413, app, "payload_too_large")


def test_a_body_that_never_comes_is_408(agent: Agent) -> None:
    app, mw = guarded([agent], body_timeout=0.2)
    request = agent.sign(call_body("search"))
    messages = [{"type": "http.request", "body": request.body[:10], "more_body": True}]
    answer = run(mw, request, messages=messages, hang=True)
    refused(answer, 408, app, "request_timeout")
    assert answer.headers[b"connection"] == b"close"


def test_a_client_gone_before_its_body_gets_no_answer(agent: Agent) -> None:
    app, mw = guarded([agent])
    request = agent.sign(call_body("search"))
    answer = run(mw, request, messages=[])
    assert answer.status == 0 and answer.received == 1
    assert app.seen == []


def test_identity_not_on_the_allowlist_is_401(agent: Agent, other: Agent) -> None:
    app, mw = guarded([agent, other], allowlist=["*@agents.example"])
    body = refused(run(mw, agent.sign(call_body("search"))), 401, app)
    assert body["detail"]["detail"] == "not_allowed"
    assert run(mw, other.sign(call_body("search"))).status == 200


def test_pins_refuse_another_key_for_a_pinned_identity(tmp: Path) -> None:
    # Two keyids claim the same address with different keys: the first use pins its key.
    first = Agent.create(tmp, "https://agents.example/one/agents/c@agents.example")
    second = Agent.create(tmp, "https://keys.agents.example/agents/c@agents.example")
    for pins, status in (("memory", 401), (None, 200)):
        app, mw = guarded([first, second], pins=pins)
        assert run(mw, first.sign(call_body("search"))).status == 200
        answer = run(mw, second.sign(call_body("search")))
        assert answer.status == status, (pins, answer.body)
        if status == 401:
            assert answer.detail()["detail"] == "key_not_pinned"


# --- refusals with the body -------------------------------------------------------------------


def test_a_tampered_body_is_401(agent: Agent) -> None:
    app, mw = guarded([agent])
    signed = agent.sign(call_body("search"))
    answer = run(mw, signed.with_body(call_body("delete").encode()))
    body = refused(answer, 401, app, "invalid_signature")
    assert body["detail"]["detail"] == "digest_mismatch"


def test_a_duplicate_content_digest_is_401(agent: Agent) -> None:
    app, mw = guarded([agent])
    signed = agent.sign(call_body("search"))
    digest = signed.header("content-digest")[0]
    refused(run(mw, signed.adding("content-digest", digest)), 401, app, "invalid_signature")


def test_a_replay_is_401(agent: Agent) -> None:
    app, mw = guarded([agent])
    signed = agent.sign(call_body("search"))
    assert run(mw, signed).status == 200
    answer = run(mw, signed)
    assert answer.status == 401
    assert answer.detail()["detail"] == "replayed"
    assert len(app.seen) == 1


def test_a_refused_body_leaves_no_replay_record(agent: Agent) -> None:
    app, mw = guarded([agent], body_timeout=0.2)
    signed = agent.sign(call_body("search"))
    messages = [{"type": "http.request", "body": b"", "more_body": True}]
    assert run(mw, signed, messages=messages, hang=True).status == 408
    assert run(mw, signed).status == 200, "the signature was not recorded before its body came"


def test_missing_token_is_401(agent: Agent, root: tuple[str, str]) -> None:
    app, mw = guarded([agent], root)
    refused(run(mw, agent.sign(call_body("search"))), 401, app, "missing_token")


def test_invalid_token_is_401(agent: Agent, root: tuple[str, str]) -> None:
    app, mw = guarded([agent], root)
    forged = vouch.mint(vouch.generate_keypair()[0], {"tools": ["search"]})
    for bad in ["garbage", forged]:
        answer = run(mw, agent.sign(call_body("search"), headers=(("X-MCPVault-Token", bad),)))
        refused(answer, 401, app, "invalid_token")


def test_a_tool_outside_the_grants_is_403(agent: Agent, root: tuple[str, str], token: str) -> None:
    app, mw = guarded([agent], root)
    answer = run(mw, agent.sign(call_body("delete"), headers=(("X-MCPVault-Token", token),)))
    refused(answer, 403, app, "forbidden")


def test_a_token_for_another_audience_is_401(agent: Agent, root: tuple[str, str]) -> None:
    app, mw = guarded([agent], root, audience="https://mcp.example")
    elsewhere = vouch.mint(root[0], {"tools": ["search"], "audience": "https://other.example"})
    answer = run(mw, agent.sign(call_body("search"), headers=(("X-MCPVault-Token", elsewhere),)))
    refused(answer, 401, app, "invalid_token")


def test_a_token_bound_to_another_holder_is_401(
    agent: Agent, other: Agent, root: tuple[str, str]
) -> None:
    app, mw = guarded([agent, other], root)
    held = vouch.mint(root[0], {"tools": ["search"], "holder": other.keyid})
    answer = run(mw, agent.sign(call_body("search"), headers=(("X-MCPVault-Token", held),)))
    refused(answer, 401, app, "invalid_token")
    answer = run(mw, other.sign(call_body("search"), headers=(("X-MCPVault-Token", held),)))
    assert answer.status == 200, answer.body


def test_another_token_header(agent: Agent, root: tuple[str, str], token: str) -> None:
    app, mw = guarded([agent], root, token_header="Authorization-Token")
    answer = run(mw, agent.sign(call_body("search"), headers=(("Authorization-Token", token),)))
    assert answer.status == 200, answer.body


@pytest.mark.parametrize(
    "body",
    [
        '{"jsonrpc":"2.0","id":1,"id":2,"method":"tools/call","params":{"name":"search"}}',
        '[{"jsonrpc":"2.0","id":1,"method":"tools/list"}]',
        "not json",
    ],
    ids=["duplicate_keys", "batch", "not_json"],
)
def test_an_ambiguous_message_is_400(agent: Agent, root: tuple[str, str], token: str, body: str) -> None:
    for r in (root, None):
        app, mw = guarded([agent], r)
        answer = run(mw, agent.sign(body, headers=(("X-MCPVault-Token", token),)))
        assert answer.status == 400, answer.body
        assert answer.json()["jsonrpc"] == "2.0"
        assert app.seen == []


def test_mcp_headers_must_agree_with_the_message(agent: Agent) -> None:
    app, mw = guarded([agent])
    signed = agent.sign(call_body("search"), headers=(("Mcp-Method", "tools/list"),))
    answer = run(mw, signed)
    assert answer.status == 400, answer.body
    assert app.seen == []


def test_the_rate_limit_is_per_identity(agent: Agent, other: Agent) -> None:
    app, mw = guarded([agent, other], rate_limit=(1, 2))
    statuses = [run(mw, agent.sign(call_body("search"))).status for _ in range(4)]
    assert statuses[:2] == [200, 200] and 429 in statuses[2:], statuses
    assert run(mw, other.sign(call_body("search"))).status == 200


# --- what the app gets ------------------------------------------------------------------------


def test_client_sent_x_vouch_fields_never_reach_the_app(agent: Agent) -> None:
    app, mw = guarded([agent], exempt_paths=["/health"])
    signed = agent.sign(call_body("search")).adding("x-vouch-identity", "admin")
    signed = signed.adding("X-Vouch-Grants", "everything")
    assert run(mw, signed).status == 200
    names = [k for k, _ in app.seen[0].scope["headers"]]
    assert not [n for n in names if n.startswith(b"x-vouch-")], names
    assert b"content-digest" in names
    # Nor on an exempt path.
    health = Signed("GET", "/health", [(b"host", b"mcp.example"), (b"x-vouch-identity", b"admin")], b"")
    assert run(mw, health).status == 200
    assert app.seen[1].scope["headers"] == [(b"host", b"mcp.example")]


def test_an_exempt_path_needs_no_signature_and_gets_no_identity(agent: Agent) -> None:
    app, mw = guarded([agent], exempt_paths=["/health"])
    answer = run(mw, Signed("GET", "/health", [(b"host", b"mcp.example")], b""))
    assert answer.status == 200
    assert "vouch" not in app.seen[0].scope["state"]
    # Only that exact path.
    answer = run(mw, Signed("GET", "/health/x", [(b"host", b"mcp.example")], b""))
    assert answer.status == 401


def test_the_scope_state_is_not_shared_with_other_requests(agent: Agent) -> None:
    app, mw = guarded([agent])
    request = agent.sign(call_body("search"))
    shared: dict[str, Any] = {"lifespan": 1}
    scope = request.scope()
    scope["state"] = shared
    assert run(mw, request, scope=scope).status == 200
    assert shared == {"lifespan": 1}
    assert app.seen[0].scope["state"]["lifespan"] == 1


def test_websockets_are_refused_and_lifespan_passes(agent: Agent) -> None:
    import asyncio

    app, mw = guarded([agent])
    sent: list[dict[str, Any]] = []

    async def send(m: dict[str, Any]) -> None:
        sent.append(m)

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    asyncio.run(mw({"type": "websocket", "path": "/ws", "headers": []}, receive, send))
    assert sent == [{"type": "websocket.close", "code": 1008}]
    sent.clear()
    asyncio.run(mw({"type": "lifespan"}, receive, send))
    assert sent == [{"type": "lifespan.startup.complete"}]


def test_caller_identity_and_grants_read_a_fastmcp_context(
    agent: Agent, root: tuple[str, str], token: str
) -> None:
    from starlette.requests import Request

    app, mw = guarded([agent], root)
    assert run(mw, agent.sign(call_body("search"), headers=(("X-MCPVault-Token", token),))).status == 200
    request = Request(app.seen[0].scope)
    ctx = SimpleNamespace(request_context=SimpleNamespace(request=request))
    assert caller_identity(ctx) == "agent-a"
    facts = grants(ctx)
    assert facts is not None and facts["tools"] == ["search"]
    assert request.state.vouch["keyid"] == "agent-a"
    # A request the middleware did not verify has neither.
    bare = SimpleNamespace(request_context=SimpleNamespace(request=Request(Signed("GET", "/", [], b"").scope())))
    assert caller_identity(bare) is None and grants(bare) is None
    assert caller_identity(SimpleNamespace(request_context=None)) is None


def test_signing_stats_and_audit(agent: Agent, root: tuple[str, str], token: str) -> None:
    decisions: list[dict[str, Any]] = []
    stats = SigningStats()
    app, mw = guarded([agent], root, audit=decisions.append, stats=stats)
    assert mw.stats is stats
    assert run(mw, agent.sign(call_body("search"), headers=(("X-MCPVault-Token", token),))).status == 200
    assert run(mw, agent.sign(call_body("search")).without("signature")).status == 401
    snapshot = stats.snapshot()
    assert snapshot == {
        "verified_requests": 1,
        "rejected_requests": 1,
        "distinct_identities": 1,
        "by_address": {"agent-a": 1},
    }
    layers = [(d["layer"], d["accepted"], d["reason"]) for d in decisions]
    assert layers == [
        ("signature", True, "ok"),
        ("capability", True, "ok"),
        ("signature", False, "missing_signature"),
    ], layers
    assert decisions[1]["tool"] == "search" and decisions[1]["identity"] == "agent-a"


def test_a_failing_audit_callable_does_not_change_the_decision(
    agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_: dict[str, Any]) -> None:
        raise RuntimeError("audit sink down")

    reported: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)
    app, mw = guarded([agent], audit=broken)
    assert run(mw, agent.sign(call_body("search"))).status == 200
    assert [type(r.exc_value) for r in reported] == [RuntimeError]


# --- the envoys profile -----------------------------------------------------------------------


def test_the_envoys_profile(agent: Agent) -> None:
    signed = agent.sign(call_body("search"), profile="envoys")
    app, mw = guarded([agent], profile="envoys")
    assert run(mw, signed).status == 200
    # The mcp profile requires @target-uri, which envoys signatures do not cover.
    app, mw = guarded([agent])
    refused(run(mw, signed), 401, app, "invalid_signature")


# --- the native gate --------------------------------------------------------------------------


def test_gate_takes_fields_as_lists_too(agent: Agent) -> None:
    gate = Gate(origin="http://mcp.example", agents={agent.keyid: agent.public})
    signed = agent.sign(call_body("search"))
    step = gate.head("POST", b"/mcp", b"", [[k, v] for k, v in signed.headers])
    assert isinstance(step, Pending)


def test_gate_steps(agent: Agent) -> None:
    gate = Gate(origin="http://mcp.example", agents={agent.keyid: agent.public})
    assert not gate.blocking and gate.identity_only
    signed = agent.sign(call_body("search"))
    step = gate.head("POST", b"/mcp", b"", signed.headers)
    assert isinstance(step, Pending) and step.identity == "agent-a"
    state = step.finish(signed.body)
    assert state == {"identity": "agent-a", "keyid": "agent-a", "facts": None}
    with pytest.raises(RuntimeError):
        step.finish(signed.body)
    denied = gate.head("POST", b"/mcp", b"", [(b"host", b"mcp.example")])
    assert isinstance(denied, Denied) and denied.status == 401
    assert (b"content-length", str(len(denied.body)).encode()) in denied.headers
    assert json.loads(denied.body)["detail"]["error"] == "invalid_signature"


@pytest.mark.parametrize(
    "method,path,headers",
    [
        ("GE T", b"/mcp", []),
        ("POST", b"mcp", []),
        ("POST", b"/mcp", [(b"bad name", b"x")]),
        ("POST", b"/mcp", [(b"x-a", b"line\nbreak")]),
        ("POST", b"/mcp", [(b"x-a",)]),
        ("POST", b"/mcp", [("host", "mcp.example")]),
        ("POST", b"/mcp", [b"host"]),
        ("POST", b"/mcp", [(b"x-a", b"1")] * 257),
    ],
)
def test_gate_refuses_a_malformed_head(method: str, path: bytes, headers: list[Any]) -> None:
    gate = Gate(origin="http://mcp.example")
    denied = gate.head(method, path, b"", headers)
    assert isinstance(denied, Denied) and denied.status == 400


@pytest.mark.parametrize(
    "kw",
    [
        {"origin": "mcp.example"},
        {"origin": []},
        {"origin": "http://mcp.example", "agents": {"a": "not a key"}},
        {"origin": "http://mcp.example", "agents": {"": "00" * 32}},
        {"origin": "http://mcp.example", "roots": ["zz"]},
        {"origin": "http://mcp.example", "audience": "x"},
        {"origin": "http://mcp.example", "profile": "sep9999"},
        {"origin": "http://mcp.example", "replay": "file.db"},
        {"origin": "http://mcp.example", "pins": "pins.json"},
        {"origin": "http://mcp.example", "body_timeout": 0},
        {"origin": "http://mcp.example", "max_body_bytes": 0},
        {"origin": "http://mcp.example", "rate_limit": (0, 1)},
        {"origin": "http://mcp.example", "token_header": "bad header"},
    ],
)
def test_gate_refuses_bad_configuration(kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Gate(**kw)


# --- MCP sessions bound to their signer -------------------------------------------------------


class SessionApp:
    """Names a new session for a request without one (as an MCP server's initialize), echoes
    the vouch state otherwise; DELETE ends a session."""

    def __init__(self, *, fail_first: bool = False) -> None:
        self.opened = 0
        self.calls = 0
        self.fail_first = fail_first

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await receive()
        self.calls += 1
        if self.fail_first and self.calls == 1:
            raise RuntimeError("the app failed before answering")
        headers = [(b"content-type", b"application/json")]
        if not any(k == b"mcp-session-id" for k, _ in scope["headers"]):
            self.opened += 1
            headers.append((b"mcp-session-id", f"session-{self.opened}".encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"{}"})


def in_session(agent: Agent, session: str, method: str = "POST") -> Signed:
    body = call_body("search") if method == "POST" else ""
    return agent.sign(body, method=method, headers=(("Mcp-Session-Id", session),))


def test_a_session_belongs_to_its_signer(agent: Agent, other: Agent) -> None:
    app = SessionApp()
    mw = middleware(app, [agent, other])
    assert mw.gate.binds_sessions, "on by default"
    opened = run(mw, agent.sign(call_body("search")))
    assert opened.status == 200
    session = opened.headers[b"mcp-session-id"].decode()
    assert run(mw, in_session(agent, session)).status == 200
    calls = app.calls
    stolen = run(mw, in_session(other, session))
    assert stolen.status == 403, stolen.body
    assert stolen.detail() == {"error": "forbidden", "detail": "session_bound_to_another_caller"}
    unknown = run(mw, in_session(agent, "session-99"))
    assert unknown.status == 404 and unknown.detail()["detail"] == "session_not_found"
    assert app.calls == calls, "refused requests never reach the app"
    # The client ends its session: the binding goes with it.
    assert run(mw, in_session(agent, session, method="DELETE")).status == 200
    assert run(mw, in_session(agent, session)).status == 404


def test_sessions_per_identity_are_capped(agent: Agent, other: Agent) -> None:
    app = SessionApp()
    mw = middleware(app, [agent, other], sessions=(100, 1, 600.0))
    assert run(mw, agent.sign(call_body("search"))).status == 200
    over = run(mw, agent.sign(call_body("search")))
    assert over.status == 429, over.body
    assert over.detail()["detail"] == "session_limit_per_identity"
    assert b"retry-after" in over.headers
    assert run(mw, other.sign(call_body("search"))).status == 200


def test_a_request_the_app_fails_gives_its_place_back(agent: Agent) -> None:
    app = SessionApp(fail_first=True)
    mw = middleware(app, [agent], sessions=(100, 1, 600.0))
    with pytest.raises(RuntimeError):
        run(mw, agent.sign(call_body("search")))
    import gc

    gc.collect()
    assert run(mw, agent.sign(call_body("search"))).status == 200


def test_sessions_can_be_left_unbound(agent: Agent, other: Agent) -> None:
    app = SessionApp()
    mw = middleware(app, [agent, other], sessions=False)
    assert not mw.gate.binds_sessions
    session = run(mw, agent.sign(call_body("search"))).headers[b"mcp-session-id"].decode()
    assert run(mw, in_session(other, session)).status == 200


@pytest.mark.parametrize("sessions", [(1, 1), (10, 1, 0.0), "yes"])
def test_gate_refuses_bad_session_settings(sessions: Any) -> None:
    with pytest.raises(ValueError):
        Gate(origin="http://mcp.example", sessions=sessions)
