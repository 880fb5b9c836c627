"""VouchMiddleware narrows the app's answer to tools/list to the tools the token grants, in
every form an app may answer it (JSON in pieces, SSE events split anywhere), and passes on no
listing it cannot narrow: an app (or a proxied upstream) cannot leak the tools a token lacks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import vouch
from asgi_support import Agent, call_body, middleware, run

LISTING = {
    "jsonrpc": "2.0",
    "id": 3,
    "result": {"tools": [{"name": "search"}, {"name": "drop_table"}, {"name": "fetch"}]},
}


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Agent:
    return Agent.create(tmp_path_factory.mktemp("keys"), "agent-a")


@pytest.fixture(scope="module")
def root() -> tuple[str, str]:
    return vouch.generate_keypair()


@pytest.fixture(scope="module")
def token(root: tuple[str, str]) -> str:
    return vouch.seal(vouch.mint(root[0], {"tools": ["search", "fetch"], "ttl": 600}))


class Lister:
    """An app answering every request with `chunks` under `content_type` and `status`."""

    def __init__(self, content_type: bytes | None, chunks: list[bytes], status: int = 200) -> None:
        self.content_type = content_type
        self.chunks = chunks
        self.status = status

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        headers = [(b"content-length", str(sum(map(len, self.chunks))).encode())]
        if self.content_type is not None:
            headers.append((b"content-type", self.content_type))
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        for i, chunk in enumerate(self.chunks):
            more = i + 1 < len(self.chunks)
            await send({"type": "http.response.body", "body": chunk, "more_body": more})


def listing_request(agent: Agent, token: str) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 3, "method": "tools/list"})
    return agent.sign(body, headers=(("X-MCPVault-Token", token),))


def names(message: dict[str, Any]) -> list[str]:
    return [t["name"] for t in message["result"]["tools"]]


def test_a_json_listing_in_pieces_is_narrowed(agent: Agent, root: tuple[str, str], token: str) -> None:
    text = json.dumps(LISTING).encode()
    app = middleware(Lister(b"application/json", [text[:10], text[10:40], text[40:]]), [agent], roots=[root[1]])
    answer = run(app, listing_request(agent, token))
    assert answer.status == 200
    assert names(answer.json()) == ["search", "fetch"]
    # The length is the narrowed body's, not the app's.
    assert answer.headers[b"content-length"] == str(len(answer.body)).encode()


@pytest.mark.parametrize("cut", [1, 7, 25, 60])
def test_an_sse_listing_is_narrowed_wherever_its_chunks_break(
    agent: Agent, root: tuple[str, str], token: str, cut: int
) -> None:
    stream = (
        b": ping\r\n\r\n"
        + b"event: message\r\ndata: "
        + json.dumps(LISTING).encode()
        + b"\r\n\r\n"
        + b'data: {"jsonrpc":"2.0","method":"notifications/message"}\n\n'
    )
    chunks = [stream[i : i + cut] for i in range(0, len(stream), cut)]
    app = middleware(Lister(b"text/event-stream", chunks), [agent], roots=[root[1]])
    answer = run(app, listing_request(agent, token))
    assert answer.status == 200
    assert b"content-length" not in answer.headers
    # Events the filter passes keep their line endings; the narrowed one is rewritten with LF.
    events = [e for e in answer.body.decode().replace("\r\n", "\n").split("\n\n") if e]
    assert events[0] == ": ping"
    data = json.loads(events[1].split("data: ", 1)[1])
    assert names(data) == ["search", "fetch"]
    assert "notifications/message" in events[2]


@pytest.mark.parametrize(
    "content_type, chunks",
    [
        (b"text/plain", [b"search drop_table fetch"]),
        (None, [json.dumps(LISTING).encode()]),
        (b"application/json", [b"not json, drop_table"]),
    ],
    ids=["another-media-type", "no-media-type", "not-json"],
)
def test_a_listing_that_cannot_be_narrowed_is_not_passed_on(
    agent: Agent, root: tuple[str, str], token: str, content_type: bytes | None, chunks: list[bytes]
) -> None:
    app = middleware(Lister(content_type, chunks), [agent], roots=[root[1]])
    answer = run(app, listing_request(agent, token))
    assert answer.status == 502
    assert b"drop_table" not in answer.body
    assert answer.json() == {"detail": {"error": "upstream_invalid"}}


def test_an_error_answer_passes_as_is(agent: Agent, root: tuple[str, str], token: str) -> None:
    app = middleware(Lister(b"text/plain", [b"busy"], status=503), [agent], roots=[root[1]])
    answer = run(app, listing_request(agent, token))
    assert (answer.status, answer.body) == (503, b"busy")


def test_other_methods_and_identity_only_are_not_touched(agent: Agent, root: tuple[str, str], token: str) -> None:
    text = json.dumps(LISTING).encode()
    # A tools/call answered with a tools array is not a listing: passed unchanged.
    app = middleware(Lister(b"application/json", [text]), [agent], roots=[root[1]])
    answer = run(app, agent.sign(call_body("search", token)))
    assert answer.status == 200 and answer.body == text
    # Without roots there are no grants to narrow to.
    app = middleware(Lister(b"application/json", [text]), [agent])
    answer = run(app, listing_request(agent, token))
    assert answer.status == 200 and answer.body == text


def test_the_configured_operation_decides(tmp_path: Path, root: tuple[str, str]) -> None:
    agent = Agent.create(tmp_path, "agent-b")
    token = vouch.seal(
        vouch.mint(
            root[0],
            {"tools": ["search", "fetch"], "operations": {"fetch": ["read"]}, "ttl": 600},
        )
    )
    text = json.dumps(LISTING).encode()
    # fetch is called as a write here, and the token grants it read only: not listed.
    app = middleware(
        Lister(b"application/json", [text]), [agent], roots=[root[1]], operations={"fetch": "write"}
    )
    answer = run(app, listing_request(agent, token))
    assert names(answer.json()) == ["search"]
