//! Integration tests for vouch-gateway, built as one binary: a real gateway on 127.0.0.1 in
//! front of a real upstream (axum) on 127.0.0.1, with signed requests from a hyper client or
//! written on a raw socket.

// Test helpers outside #[test] functions may panic on a broken fixture: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[cfg(feature = "authz")]
mod authz;
mod forward;
mod identity_only;
mod listing;
mod metrics;
mod sessions;
mod sign_responses;
mod sign_upstream;
mod tls;
#[cfg(unix)]
mod unix_socket;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::routing::post;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};
use vouch_gateway::Gateway;
use vouch_httpsig::{RequestView, SigningKey, mcp_content_digest, mcp_spec, sign};
use vouch_keys::{ShardedReplayStore, StaticResolver};
use vouch_token::{KeyPair, Restriction, Token, Verifier};
use vouch_tower::{CapabilityPipeline, Origin, ServeConfig, SignaturePipeline, TOKEN_HEADER};

pub(crate) const AGENT: &str = "https://agents.example/agents/worker@agents.example";
/// How long any one read waits before the test fails (a bound against hangs, not a timing).
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub(crate) fn root() -> KeyPair {
    KeyPair::from_seed(&[9; 32]).unwrap()
}

/// A token for `search` and `db_query`.
pub(crate) fn token() -> String {
    Token::mint(
        &root(),
        "auth-server",
        "agent-a",
        Restriction::new().tools(["search", "db_query"]).ttl(600),
    )
    .unwrap()
    .to_base64()
}

/// What the upstream saw, and the switch that lets its SSE stream finish.
#[derive(Clone, Default)]
pub(crate) struct Upstream {
    pub(crate) calls: Arc<AtomicUsize>,
    pub(crate) heads: Arc<Mutex<Vec<HeaderMap>>>,
    pub(crate) release: Arc<Notify>,
    pub(crate) finished: Arc<AtomicUsize>,
    pub(crate) addr: Option<SocketAddr>,
}

impl Upstream {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr.unwrap())
    }

    pub(crate) fn last_head(&self) -> HeaderMap {
        self.heads
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the upstream saw a request")
    }

    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

const TOOLS: [&str; 3] = ["search", "db_query", "drop_table"];

/// The JSON-RPC answer to `message`: the three tools for `tools/list`, `{"ok": true}` else.
fn answer(message: &Value) -> Value {
    let result = if message["method"] == "tools/list" {
        json!({"tools": TOOLS.iter().map(|t| json!({"name": t, "inputSchema": {"type": "object"}})).collect::<Vec<_>>()})
    } else {
        json!({"ok": true})
    };
    json!({"jsonrpc": "2.0", "id": message["id"], "result": result})
}

fn record(up: &Upstream, headers: HeaderMap) {
    up.calls.fetch_add(1, Ordering::SeqCst);
    up.heads.lock().unwrap().push(headers);
}

async fn json_route(State(up): State<Upstream>, headers: HeaderMap, body: Bytes) -> Response<Body> {
    record(&up, headers);
    let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Response::builder()
        .header("content-type", "application/json")
        .header("connection", "x-upstream-hop")
        .header("x-upstream-hop", "1")
        .header("keep-alive", "timeout=5")
        .body(Body::from(answer(&message).to_string()))
        .unwrap()
}

/// A body fed from a channel, frame by frame.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

pub(crate) const PROGRESS: &str = r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}"#;

/// SSE: a progress notification at once, then (after `release`) the answer, then the end.
async fn sse_route(State(up): State<Upstream>, headers: HeaderMap, body: Bytes) -> Response<Body> {
    record(&up, headers);
    let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        tx.send(Bytes::from(format!("event: message\ndata: {PROGRESS}\n\n")))
            .await
            .unwrap();
        up.release.notified().await;
        tx.send(Bytes::from(format!(
            "event: message\r\nid: 2\r\ndata: {}\r\n\r\n",
            answer(&message)
        )))
        .await
        .unwrap();
        up.finished.fetch_add(1, Ordering::SeqCst);
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::new(ChannelBody(rx)))
        .unwrap()
}

async fn text_route(State(up): State<Upstream>, headers: HeaderMap, body: Bytes) -> Response<Body> {
    record(&up, headers);
    let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Response::builder()
        .header("content-type", "text/plain")
        .body(Body::from(answer(&message).to_string()))
        .unwrap()
}

async fn hang_route(State(up): State<Upstream>, headers: HeaderMap) -> Response<Body> {
    record(&up, headers);
    std::future::pending().await
}

/// The upstream MCP server: `/mcp` (JSON), `/sse` (streamed), `/hang` (never answers),
/// `/text` (JSON labelled `text/plain`).
pub(crate) async fn upstream() -> Upstream {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = Upstream {
        addr: Some(listener.local_addr().unwrap()),
        ..Upstream::default()
    };
    let app = upstream_app(&up);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    up
}

/// The upstream's routes, recording into `up`.
pub(crate) fn upstream_app(up: &Upstream) -> Router {
    Router::new()
        .route("/mcp", post(json_route))
        .route("/sse", post(sse_route))
        .route("/hang", post(hang_route))
        .route("/text", post(text_route))
        .with_state(up.clone())
}

/// A gateway at 127.0.0.1 forwarding to `upstream`, adjusted by `tune`; its address.
pub(crate) async fn gateway(upstream: &str, tune: impl FnOnce(Gateway) -> Gateway) -> SocketAddr {
    spawn_gateway(|signature| {
        tune(
            Gateway::new(
                upstream,
                signature,
                CapabilityPipeline::new(Verifier::new(root().public_key())),
            )
            .unwrap(),
        )
    })
    .await
}

/// Serves the gateway `build` makes from a signature pipeline (for its address, trusting
/// [`AGENT`]) on 127.0.0.1.
pub(crate) async fn spawn_gateway(build: impl FnOnce(SignaturePipeline) -> Gateway) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let agent = KeyPair::from_seed(&[1; 32]).unwrap().public_key();
    let app = build(SignaturePipeline::new(
        Origin::http(addr),
        StaticResolver::new().with_ed25519(AGENT, &agent),
        ShardedReplayStore::new(10_000),
    ))
    .into_router();
    tokio::spawn(async move {
        vouch_tower::serve(listener, app, ServeConfig::default())
            .await
            .unwrap()
    });
    addr
}

pub(crate) fn message(method: &str, tool: Option<&str>) -> String {
    let mut m = json!({"jsonrpc": "2.0", "id": 7, "method": method});
    if let Some(t) = tool {
        m["params"] = json!({"name": t, "arguments": {}});
    }
    m.to_string()
}

/// A `tools/call` of `search` to the gateway at `addr`, signed by the agent, with the token.
pub(crate) fn search_call(addr: SocketAddr) -> Request<Vec<u8>> {
    signed(
        addr,
        &message("tools/call", Some("search")),
        Some(&token()),
        &[],
    )
}

/// `request` with one byte of its signature changed: a signature that does not verify.
pub(crate) fn with_bad_signature(mut request: Request<Vec<u8>>) -> Request<Vec<u8>> {
    let value = request.headers()["signature"].to_str().unwrap().to_owned();
    let at = value.find(":").unwrap() + 10;
    let was = &value[at..=at];
    let value = format!(
        "{}{}{}",
        &value[..at],
        if was == "A" { "B" } else { "A" },
        &value[at + 1..]
    );
    request
        .headers_mut()
        .insert("signature", value.parse().unwrap());
    request
}

/// A POST to the gateway signed by the agent, with the token header if given, and `extra`
/// fields added after signing (they are not covered).
pub(crate) fn signed(
    addr: SocketAddr,
    body: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
) -> Request<Vec<u8>> {
    signed_for(&addr.to_string(), body, token, extra)
}

/// As [`signed`], for `http://{authority}/mcp`.
pub(crate) fn signed_for(
    authority: &str,
    body: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
) -> Request<Vec<u8>> {
    let mut builder = Request::post(format!("http://{authority}/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("content-digest", mcp_content_digest(body.as_bytes()));
    if let Some(t) = token {
        builder = builder.header(TOKEN_HEADER, t);
    }
    let mut req = builder.body(body.as_bytes().to_vec()).unwrap();
    let key = SigningKey::ed25519_from_seed(&[1; 32]).unwrap();
    let header = token.map(|_| "x-mcpvault-token");
    let spec = mcp_spec(&RequestView::of(&req), &key, AGENT, header, now()).unwrap();
    sign(RequestView::of(&req), &spec, &key)
        .unwrap()
        .apply(req.headers_mut())
        .unwrap();
    for (name, value) in extra {
        req.headers_mut().append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    req
}

/// Sends `req` with a hyper client; the response with its body still streaming.
pub(crate) async fn send(req: Request<Vec<u8>>) -> Response<Incoming> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    tokio::time::timeout(
        PATIENCE,
        client.request(req.map(|b| Full::new(Bytes::from(b)))),
    )
    .await
    .expect("a response head within the patience bound")
    .unwrap()
}

/// The whole body, as text.
pub(crate) async fn text(response: Response<Incoming>) -> String {
    let bytes = tokio::time::timeout(PATIENCE, response.into_body().collect())
        .await
        .expect("the body within the patience bound")
        .unwrap()
        .to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// `{"detail": {"error": …}}`'s code.
pub(crate) async fn error_code(response: Response<Incoming>) -> String {
    let body: Value = serde_json::from_str(&text(response).await).unwrap();
    body["detail"]["error"].as_str().unwrap().to_owned()
}

pub(crate) fn assert_status(response: &Response<Incoming>, status: StatusCode) {
    assert_eq!(response.status(), status, "{:?}", response.headers());
}
