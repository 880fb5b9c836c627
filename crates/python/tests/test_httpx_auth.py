"""vouch.httpx.VouchAuth on real httpx clients: what goes on the wire passes `vouch check`, and
whatever changes it after signing does not."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from signer_support import accepted, check, raw_of, rejected

import vouch
from vouch import Signer
from vouch.httpx import VouchAuth

KEYID = "agent-a"
URL = "http://127.0.0.1:8080/mcp"
MESSAGE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "tools/call",
    "params": {"name": "add", "arguments": {"q": "\u65e5\u672c"}},
}


@pytest.fixture(scope="module")
def agent() -> tuple[str, str]:
    return vouch.generate_keypair()


@pytest.fixture(scope="module")
def root() -> tuple[str, str]:
    return vouch.generate_keypair()


@pytest.fixture(scope="module")
def token(root) -> str:
    return vouch.mint(root[0], {"tools": ["add"], "holder": KEYID})


class Recorder:
    """A transport that keeps every request as sent and answers 200 (or what `answer` says)."""

    def __init__(self, answer=None) -> None:
        self.sent: list[httpx.Request] = []
        self.answer = answer

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.sent.append(request)
        if self.answer is not None:
            return self.answer(request)
        return httpx.Response(200, json={"ok": True})


def client(auth: httpx.Auth, rec: Recorder, **kw) -> httpx.Client:
    return httpx.Client(auth=auth, transport=httpx.MockTransport(rec), **kw)


def test_sync_requests_pass_vouch_check(agent, token):
    rec = Recorder()
    auth = VouchAuth(Signer(agent[0], KEYID), token)
    with client(auth, rec) as c:
        c.post(URL, json=MESSAGE, headers={"Mcp-Session-Id": "s1"})
        c.post(URL, content=b"")
        c.get(URL, headers={"Accept": "text/event-stream", "Mcp-Session-Id": "s1"})
        c.delete(URL, headers={"Mcp-Session-Id": "s1"})
    assert [r.method for r in rec.sent] == ["POST", "POST", "GET", "DELETE"]
    for r in rec.sent:
        report = accepted(check(raw_of(r), agent[1]))
        assert report["keyid"] == KEYID
        assert '"x-mcpvault-token"' in report["covered"]
    call = rec.sent[0]
    assert call.headers["mcp-method"] == "tools/call" and call.headers["mcp-name"] == "add"
    assert "content-digest" not in rec.sent[2].headers


def test_async_requests_pass_vouch_check(agent, token):
    rec = Recorder()
    auth = VouchAuth(Signer(agent[0], KEYID), token)

    async def run() -> None:
        async with httpx.AsyncClient(auth=auth, transport=httpx.MockTransport(rec)) as c:
            await c.post(URL, json=MESSAGE)
            await c.get(URL)

    asyncio.run(run())
    for r in rec.sent:
        accepted(check(raw_of(r), agent[1]))


@pytest.mark.parametrize("profile", ["mcp", "envoys", "sep2752"])
def test_every_profile(agent, profile):
    rec = Recorder()
    keyid = None if profile == "sep2752" else KEYID
    with client(VouchAuth(Signer(agent[0], keyid, profile)), rec) as c:
        c.post(URL + "?a=1", json=MESSAGE)
        c.get(URL)
    for r in rec.sent:
        accepted(check(raw_of(r), agent[1], profile))


def test_the_digest_is_over_the_bytes_httpx_sends(agent):
    rec = Recorder()

    def chunks():
        yield b'{"a": '
        yield '"caf\u00e9"}'.encode()

    with client(VouchAuth(Signer(agent[0], KEYID)), rec) as c:
        c.post(URL, json={"q": "\u00e9\u65e5 \U0001f600"})  # httpx's own JSON encoding
        c.post(URL, content=b'{ "spaced" :  1 }\n')
        c.post(URL, content=chunks())  # a streamed body: read, digested, sent as read
    for r in rec.sent:
        accepted(check(raw_of(r), agent[1]))
    assert rec.sent[2].content == '{"a": "caf\u00e9"}'.encode()


def test_the_token_is_sent_sealed_and_covered(agent, root, token):
    rec = Recorder()
    with client(VouchAuth(Signer(agent[0], KEYID), token), rec) as c:
        c.post(URL, json=MESSAGE)
    sent = rec.sent[0].headers["x-mcpvault-token"]
    assert sent != token and vouch.inspect(sent)["sealed"] is True
    facts = vouch.verify(sent, root[1], tool="add", caller=KEYID)
    assert facts["holder"] == KEYID
    # seal=False sends it as given; a sealed one is sent unchanged.
    rec2 = Recorder()
    with client(VouchAuth(Signer(agent[0], KEYID), token, seal=False), rec2) as c:
        c.post(URL, json=MESSAGE)
    with client(VouchAuth(Signer(agent[0], KEYID), sent), rec2) as c:
        c.post(URL, json=MESSAGE)
    assert [r.headers["x-mcpvault-token"] for r in rec2.sent] == [token, sent]


def test_another_token_header(agent, token):
    rec = Recorder()
    auth = VouchAuth(Signer(agent[0], KEYID), token, token_header="X-Token")
    with client(auth, rec) as c:
        c.post(URL, json=MESSAGE)
    r = rec.sent[0]
    assert "x-mcpvault-token" not in r.headers
    assert '"x-token"' in accepted(check(raw_of(r), agent[1]))["covered"]


def test_a_token_the_request_carries_is_kept(agent, token):
    rec = Recorder()
    with client(VouchAuth(Signer(agent[0], KEYID), token), rec) as c:
        c.post(URL, json=MESSAGE, headers={"X-MCPVault-Token": "mine"})
    assert rec.sent[0].headers.get_list("x-mcpvault-token") == ["mine"]


@pytest.mark.parametrize(
    "args, kw, error",
    [
        (("not a signer",), {}, TypeError),
        ((None, "not a token"), {}, ValueError),
        ((None, ""), {}, ValueError),
        ((None, 7), {}, TypeError),
        ((None,), {"token_header": "bad header"}, ValueError),
        ((None,), {"token_header": "Signature"}, ValueError),
        ((None,), {"token_header": "content-digest"}, ValueError),
    ],
)
def test_bad_arguments(agent, args, kw, error):
    if args[0] is None:
        args = (Signer(agent[0], KEYID), *args[1:])
    with pytest.raises(error):
        VouchAuth(*args, **kw)


# --- what breaks the signature after it is made --------------------------------------------


def hook(change):
    """An httpx request event hook: it runs after the auth flow, just before the transport."""

    def run(request: httpx.Request) -> None:
        change(request)

    return {"request": [run]}


def _set(name: str, value: str):
    def change(request: httpx.Request) -> None:
        request.headers[name] = value

    return change


def _rewrite_body(request: httpx.Request) -> None:
    # What a "helpful" layer might do: re-serialize the JSON (same meaning, other bytes).
    body = json.dumps(json.loads(request.content), indent=1).encode()
    request._content = body
    request.stream = httpx.ByteStream(body)
    request.headers["Content-Length"] = str(len(body))


@pytest.mark.parametrize(
    "change, code",
    [
        pytest.param(
            _set("Mcp-Session-Id", "someone-else"), "bad_signature", id="covered header changed"
        ),
        pytest.param(
            _set("X-MCPVault-Token", "stolen"), "missing_component", id="token added after signing"
        ),
        pytest.param(_set("Mcp-Name", "drop_table"), "bad_signature", id="mcp-name rewritten"),
        pytest.param(_rewrite_body, "digest_mismatch", id="body re-serialized"),
    ],
)
def test_changes_after_signing_are_refused(agent, change, code):
    rec = Recorder()
    auth = VouchAuth(Signer(agent[0], KEYID))  # no token: the hook adds one in one case
    with client(auth, rec, event_hooks=hook(change)) as c:
        c.post(URL, json=MESSAGE, headers={"Mcp-Session-Id": "s1"})
    reason = rejected(check(raw_of(rec.sent[0]), agent[1]))
    assert reason == code


def test_a_redirect_httpx_follows_carries_a_stale_signature(agent, token):
    """httpx follows redirects without running the auth flow again: the redirected request keeps
    the signature made for the first URL, and the server refuses it. (The MCP SDK does not
    follow redirects this way: see the next test.)"""

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/mcp":
            return httpx.Response(307, headers={"Location": "/mcp/"})
        return httpx.Response(200)

    rec = Recorder(answer)
    with client(VouchAuth(Signer(agent[0], KEYID), token), rec, follow_redirects=True) as c:
        c.post(URL, json=MESSAGE)
    first, second = rec.sent
    accepted(check(raw_of(first), agent[1]))
    assert second.url.path == "/mcp/"
    assert rejected(check(raw_of(second), agent[1])) == "bad_signature"


def test_a_redirect_sent_again_through_the_client_is_signed_anew(agent, token):
    """The MCP SDK sends a within-origin redirect's next request through `client.send`, which
    runs the auth flow again: VouchAuth replaces the copied signature fields."""

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/mcp":
            return httpx.Response(307, headers={"Location": "/mcp/"})
        return httpx.Response(200)

    rec = Recorder(answer)
    with client(VouchAuth(Signer(agent[0], KEYID), token), rec) as c:
        response = c.post(URL, json=MESSAGE)
        assert response.next_request is not None
        assert "signature" in response.next_request.headers  # copied by httpx
        c.send(response.next_request)
    second = rec.sent[1]
    assert len(second.headers.get_list("signature")) == 1
    assert accepted(check(raw_of(second), agent[1]))["keyid"] == KEYID


def test_httpx_forwards_the_token_on_a_cross_origin_redirect(agent, token):
    """A hazard of httpx, not of VouchAuth: with follow_redirects=True httpx drops only
    Authorization on a redirect to another origin, so the token header goes along (sealed, and
    useless without the holder's key when bound: see test_httpx_mcp). The MCP SDK follows
    redirects only within the origin; with plain httpx, leave follow_redirects off or bind the
    token (`holder`)."""

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.host == "127.0.0.1":
            return httpx.Response(307, headers={"Location": "http://elsewhere.example/x"})
        return httpx.Response(200)

    rec = Recorder(answer)
    with client(VouchAuth(Signer(agent[0], KEYID), token), rec, follow_redirects=True) as c:
        c.post(URL, json=MESSAGE)
    first, second = rec.sent
    assert second.url.host == "elsewhere.example"
    assert second.headers["x-mcpvault-token"] == first.headers["x-mcpvault-token"]
    assert vouch.inspect(second.headers["x-mcpvault-token"])["sealed"] is True
