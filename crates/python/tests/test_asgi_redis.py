"""VouchMiddleware with the Rust Redis stores, against a real redis-server this module starts
(a missing redis-server fails, never skips): replay shared by replicas, the per-identity share,
pins, and 503 (never a pass) when Redis is down."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from asgi_support import Agent, EchoApp, RedisServer, call_body, middleware, run
from vouch.asgi import Gate


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def agents(tmp_path_factory: pytest.TempPathFactory) -> tuple[Agent, Agent]:
    tmp = tmp_path_factory.mktemp("redis-keys")
    return Agent.create(tmp, "agent-a"), Agent.create(tmp, "agent-b")


def test_replicas_share_the_replay_store(redis: RedisServer, agents: tuple[Agent, Agent]) -> None:
    a, _ = agents
    one, two = EchoApp(), EchoApp()
    replica_1 = middleware(one, [a], replay=redis.url)
    replica_2 = middleware(two, [a], replay=redis.url)
    assert replica_1.gate.blocking, "Redis calls are run off the event loop"
    signed = a.sign(call_body("search"))
    assert run(replica_1, signed).status == 200
    answer = run(replica_2, signed)
    assert answer.status == 401 and answer.detail()["detail"] == "replayed"
    assert two.seen == []


def test_each_identity_holds_only_its_share(redis: RedisServer, agents: tuple[Agent, Agent]) -> None:
    a, b = agents
    app = EchoApp()
    mw = middleware(app, [a, b], replay=redis.url, replay_share=2)
    statuses = [run(mw, a.sign(call_body("search"))).status for _ in range(3)]
    assert statuses == [200, 200, 429], statuses
    assert run(mw, b.sign(call_body("search"))).status == 200


def test_pins_in_redis(redis: RedisServer, tmp_path: Path) -> None:
    first = Agent.create(tmp_path, "https://agents.example/one/agents/d@agents.example")
    second = Agent.create(tmp_path, "https://keys.agents.example/agents/d@agents.example")
    app = EchoApp()
    replica_1 = middleware(app, [first, second], pins=redis.url)
    replica_2 = middleware(app, [first, second], pins=redis.url)
    assert run(replica_1, first.sign(call_body("search"))).status == 200
    answer = run(replica_2, second.sign(call_body("search")))
    assert answer.status == 401 and answer.detail()["detail"] == "key_not_pinned"


def test_redis_down_is_503_never_a_pass(redis: RedisServer, agents: tuple[Agent, Agent]) -> None:
    a, _ = agents
    app = EchoApp()
    mw = middleware(app, [a], replay=redis.url)
    assert run(mw, a.sign(call_body("search"))).status == 200
    redis.stop()
    answer = run(mw, a.sign(call_body("search")))
    assert answer.status == 503, answer.body
    assert answer.detail()["error"] == "unavailable"
    assert len(app.seen) == 1


def test_an_unreachable_redis_fails_at_construction() -> None:
    with pytest.raises(ConnectionError):
        Gate(origin="http://mcp.example", replay="redis://127.0.0.1:1/")
    with pytest.raises(ConnectionError):
        Gate(origin="http://mcp.example", pins="redis://127.0.0.1:1/")
