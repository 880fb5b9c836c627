//! `Protected::sign_responses`: a real rmcp server signs its answers, and a client checks each
//! against the request it sent (the middleware's `check_response`, what the reqwest
//! middleware runs), in JSON mode (body covered) and session mode (event streams, head only).
//! Then a real rmcp client through `SigningClient::verify_responses`: it works against a
//! signing server, and fails against one that does not sign, one that signs with another key,
//! and a man in the middle who swaps a body or replays an earlier signed answer.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use rmcp::model::{CallToolRequestParams, ClientConfig, ClientJsonRpcMessage};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::StreamableHttpServerConfig;
use rmcp::transport::streamable_http_client::{
    StreamableHttpClient, StreamableHttpClientTransportConfig, StreamableHttpPostResponse,
};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use vouch_httpsig::SigningKey;
use vouch_keys::{ShardedReplayStore, StaticResolver, jwk_thumbprint};
use vouch_reqwest::{ResponseError, SentRequest, ServerKey, SigningMiddleware};
use vouch_rmcp::{Origin, Protected, SigningClient};
use vouch_token::KeyPair;
use vouch_tower::{CapabilityPipeline, SignaturePipeline};

use crate::support::{
    Mode, Tools, WORKER, http_client, seed_of, signing_key, spawn, verifier, worker_token,
};

const SERVER_KEYID: &str = "https://mcp.example/.well-known/server-key";

fn server_key() -> SigningKey {
    SigningKey::ed25519_from_seed(&[42; 32]).unwrap()
}

async fn spawn_signing(mode: Mode) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    spawn_signing_as(mode, listener, server_key(), addr).await
}

/// A signing server on `listener`, signing with `key`, that takes requests signed for
/// `origin` (its own address, or a proxy's in front of it).
async fn spawn_signing_as(
    mode: Mode,
    listener: tokio::net::TcpListener,
    key: SigningKey,
    origin: SocketAddr,
) -> String {
    let addr = listener.local_addr().unwrap();
    let resolver = StaticResolver::new().with_ed25519(
        WORKER,
        &KeyPair::from_seed(&seed_of(WORKER)).unwrap().public_key(),
    );
    let signatures = SignaturePipeline::new(
        Origin::http(origin),
        resolver,
        ShardedReplayStore::new(1000),
    );
    let config = match mode {
        Mode::Session => StreamableHttpServerConfig::default(),
        Mode::StatelessJson => StreamableHttpServerConfig::default()
            .with_legacy_session_mode(false)
            .with_json_response(true),
    };
    let app = Protected::new(signatures, CapabilityPipeline::new(verifier()))
        .tools(&Tools::tool_router().list_all())
        .config(config.with_sse_keep_alive(None))
        .sign_responses(key, SERVER_KEYID)
        .serve(|| Ok(Tools::new()));
    tokio::spawn(async move {
        vouch_rmcp::serve(listener, app, vouch_rmcp::ServeConfig::default())
            .await
            .unwrap()
    });
    format!("http://{addr}/mcp")
}

fn middleware() -> SigningMiddleware {
    SigningMiddleware::new(signing_key(WORKER), WORKER)
        .verify_responses(ServerKey::fixed(server_key().verifying_key().unwrap()))
}

/// Signs and sends `body`, checks the answer; the status and body of a checked answer.
async fn exchange(url: &str, body: &str) -> Result<(u16, String), ResponseError> {
    let mut req = http_client()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("x-mcpvault-token", worker_token(WORKER))
        .body(body.to_owned())
        .build()
        .unwrap();
    let signer = middleware();
    signer.sign_request(&mut req).unwrap();
    let sent = SentRequest::of(&req);
    let res = http_client().execute(req).await.unwrap();
    let res = signer.check_response(&sent, res).await?;
    let status = res.status().as_u16();
    Ok((status, res.text().await.unwrap()))
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1.0"}}}"#;

fn tools_call(tool: &str) -> String {
    json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
           "params": {"name": tool, "arguments": {"a": 1, "b": 2}}})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_answers_and_refusals_are_signed() {
    let url = spawn_signing(Mode::StatelessJson).await;
    let (status, body) = exchange(&url, INITIALIZE).await.unwrap();
    assert_eq!(status, 200);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert!(body.pointer("/result/serverInfo").is_some(), "{body}");
    let (status, body) = exchange(&url, &tools_call("add")).await.unwrap();
    assert_eq!(status, 200);
    assert!(body.contains('3'), "{body}");
    // The capability layer's refusal is signed too.
    let (status, _) = exchange(&url, &tools_call("drop_table")).await.unwrap();
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_stream_answers_are_signed_over_the_head() {
    let url = spawn_signing(Mode::Session).await;
    let (status, body) = exchange(&url, INITIALIZE).await.unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("serverInfo"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_does_not_sign_is_refused() {
    let server = spawn(Mode::StatelessJson).await;
    assert!(matches!(
        exchange(&server.url, INITIALIZE).await,
        Err(ResponseError::Unsigned { .. })
    ));
}

// A real rmcp client through `SigningClient::verify_responses`.

type Client = RunningService<RoleClient, ClientConfig>;

/// The error rmcp reports for an answer the verifying client refused.
const REFUSED: &str = "answer refused";

fn verifying_client() -> SigningClient<vouch_rmcp::VerifyingHttpClient> {
    SigningClient::new(http_client(), signing_key(WORKER), WORKER)
        .with_token(&worker_token(WORKER))
        .unwrap()
        .verify_responses(ServerKey::fixed(server_key().verifying_key().unwrap()))
}

/// Connects (initialize) through `client`; a hang is a failure of the test, not a pass.
async fn connect<C>(url: &str, client: C) -> Result<Client, String>
where
    C: StreamableHttpClient + Send + Sync + 'static,
{
    let transport = StreamableHttpClientTransport::with_client(
        client,
        StreamableHttpClientTransportConfig::with_uri(url),
    );
    tokio::time::timeout(
        Duration::from_secs(30),
        ClientConfig::default().serve(transport),
    )
    .await
    .expect("initialize hung")
    .map_err(|e| e.to_string())
}

/// Calls `add` with 1 and 2; the text it answers.
async fn add(client: &Client) -> Result<String, String> {
    let params = CallToolRequestParams::new("add").with_arguments(
        json!({"a": 1, "b": 2})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    );
    let result = tokio::time::timeout(Duration::from_secs(30), client.call_tool(params))
        .await
        .expect("tools/call hung")
        .map_err(|e| e.to_string())?;
    result
        .content
        .iter()
        .find_map(|c| c.as_text().map(|t| t.text.clone()))
        .ok_or_else(|| format!("no text in {result:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verifying_client_works_against_a_signing_server_in_json_mode() {
    let url = spawn_signing(Mode::StatelessJson).await;
    let client = connect(&url, verifying_client()).await.unwrap();
    assert_eq!(add(&client).await.unwrap(), "3");
    assert_eq!(add(&client).await.unwrap(), "3");
    // A refusal by the capability layer is signed, checked, and surfaces as a failed call.
    let refused = client
        .call_tool(CallToolRequestParams::new("drop_table"))
        .await;
    assert!(refused.is_err(), "{refused:?}");
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verifying_client_works_against_a_signing_server_in_session_mode() {
    let url = spawn_signing(Mode::Session).await;
    let client = connect(&url, verifying_client()).await.unwrap();
    assert_eq!(add(&client).await.unwrap(), "3");
    assert_eq!(add(&client).await.unwrap(), "3");
    // Closing deletes the session: a signed DELETE, its signed answer checked.
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verifying_client_refuses_a_server_that_does_not_sign() {
    for mode in [Mode::StatelessJson, Mode::Session] {
        let server = spawn(mode).await;
        // The same client without verification works: the server itself is fine.
        let plain = SigningClient::new(http_client(), signing_key(WORKER), WORKER)
            .with_token(&worker_token(WORKER))
            .unwrap();
        let client = connect(&server.url, plain).await.unwrap();
        assert_eq!(add(&client).await.unwrap(), "3");
        client.cancel().await.unwrap();
        let refused = connect(&server.url, verifying_client()).await;
        assert!(
            refused.as_ref().is_err_and(|e| e.contains(REFUSED)),
            "{mode:?}: {:?}",
            refused.map(|_| ())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verifying_client_refuses_a_server_signing_with_another_key() {
    for mode in [Mode::StatelessJson, Mode::Session] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let other = SigningKey::ed25519_from_seed(&[43; 32]).unwrap();
        let url = spawn_signing_as(mode, listener, other, addr).await;
        let refused = connect(&url, verifying_client()).await;
        assert!(
            refused.as_ref().is_err_and(|e| e.contains(REFUSED)),
            "{mode:?}: {:?}",
            refused.map(|_| ())
        );
    }
}

/// What the man in the middle does to the answers to `tools/call`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attack {
    /// Passes everything on.
    Nothing,
    /// Changes the tool's answer, keeping the signed headers.
    SwapBody,
    /// Answers every `tools/call` after the first with the first one's signed answer.
    Replay,
}

#[derive(Clone)]
struct Proxy {
    upstream: String,
    attack: Attack,
    first_call: Arc<Mutex<Option<(http::StatusCode, http::HeaderMap, bytes::Bytes)>>>,
    tampered: Arc<Mutex<usize>>,
}

async fn relay(State(proxy): State<Proxy>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let is_call = serde_json::from_slice::<Value>(&body)
        .is_ok_and(|m| m.get("method").and_then(Value::as_str) == Some("tools/call"));
    let mut upstream = http_client()
        .request(parts.method, &proxy.upstream)
        .body(body);
    // Host included: the server takes requests for the proxy's origin.
    for (name, value) in &parts.headers {
        if name != http::header::CONTENT_LENGTH {
            upstream = upstream.header(name, value);
        }
    }
    let answer = upstream.send().await.unwrap();
    let status = answer.status();
    let mut headers = answer.headers().clone();
    headers.remove(http::header::CONTENT_LENGTH);
    headers.remove(http::header::TRANSFER_ENCODING);
    let mut body = answer.bytes().await.unwrap();
    if is_call {
        match proxy.attack {
            Attack::Nothing => {}
            Attack::SwapBody => {
                let mut message: Value = serde_json::from_slice(&body).unwrap();
                message["result"]["content"][0]["text"] = json!("42");
                body = serde_json::to_vec(&message).unwrap().into();
                *proxy.tampered.lock().unwrap() += 1;
            }
            Attack::Replay => {
                let mut first = proxy.first_call.lock().unwrap();
                match first.as_ref() {
                    None => *first = Some((status, headers.clone(), body.clone())),
                    Some((status, headers, body)) => {
                        *proxy.tampered.lock().unwrap() += 1;
                        let mut replayed = Response::new(Body::from(body.clone()));
                        *replayed.status_mut() = *status;
                        *replayed.headers_mut() = headers.clone();
                        return replayed;
                    }
                }
            }
        }
    }
    let mut relayed = Response::new(Body::from(body));
    *relayed.status_mut() = status;
    *relayed.headers_mut() = headers;
    relayed
}

/// A signing server in `mode` behind a man in the middle doing `attack`; the proxy's URL
/// (requests are signed for it) and its count of tampered answers.
async fn behind_proxy(attack: Attack, mode: Mode) -> (String, Arc<Mutex<usize>>) {
    let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front_addr = front.local_addr().unwrap();
    let back = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = spawn_signing_as(mode, back, server_key(), front_addr).await;
    let proxy = Proxy {
        upstream,
        attack,
        first_call: Arc::default(),
        tampered: Arc::default(),
    };
    let tampered = proxy.tampered.clone();
    let app = axum::Router::new()
        .route("/mcp", axum::routing::any(relay))
        .with_state(proxy);
    tokio::spawn(async move { axum::serve(front, app).await.unwrap() });
    (format!("http://{front_addr}/mcp"), tampered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_relay_is_transparent_to_the_verifying_client() {
    let (url, tampered) = behind_proxy(Attack::Nothing, Mode::StatelessJson).await;
    let client = connect(&url, verifying_client()).await.unwrap();
    assert_eq!(add(&client).await.unwrap(), "3");
    assert_eq!(*tampered.lock().unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swapped_body_fails_the_call() {
    let (url, tampered) = behind_proxy(Attack::SwapBody, Mode::StatelessJson).await;
    // Without verification, the swap goes through: the attack is real.
    let plain = SigningClient::new(http_client(), signing_key(WORKER), WORKER)
        .with_token(&worker_token(WORKER))
        .unwrap();
    let client = connect(&url, plain).await.unwrap();
    assert_eq!(add(&client).await.unwrap(), "42");
    // With it, the call fails: the body does not match the signed Content-Digest.
    let client = connect(&url, verifying_client()).await.unwrap();
    let swapped = add(&client).await;
    assert!(
        swapped.as_ref().is_err_and(|e| e.contains(REFUSED)),
        "{swapped:?}"
    );
    assert_eq!(*tampered.lock().unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_replayed_onto_a_later_request_fails_the_call() {
    // In session mode the answers are event streams, signed over their head: the binding to
    // the request is in the head, so a replayed stream fails as a replayed JSON answer does.
    for mode in [Mode::StatelessJson, Mode::Session] {
        let (url, tampered) = behind_proxy(Attack::Replay, mode).await;
        let client = connect(&url, verifying_client()).await.unwrap();
        // The first answer is genuine; the second call gets it again, signed by the server and
        // intact, but bound to the first request's signature.
        assert_eq!(add(&client).await.unwrap(), "3", "{mode:?}");
        let replayed = add(&client).await;
        assert!(
            replayed.as_ref().is_err_and(|e| e.contains(REFUSED)),
            "{mode:?}: {replayed:?}"
        );
        assert_eq!(*tampered.lock().unwrap(), 1, "{mode:?}");
    }
}

/// Initializes by hand through `client`; the session id the server assigned.
async fn open_session<C: StreamableHttpClient>(client: &C, url: &str) -> Arc<str> {
    let message: ClientJsonRpcMessage = serde_json::from_str(INITIALIZE).unwrap();
    let answer = client
        .post_message(url.into(), message, None, None, Default::default())
        .await
        .unwrap();
    match answer {
        StreamableHttpPostResponse::Sse(_, Some(session))
        | StreamableHttpPostResponse::Json(_, Some(session)) => session.into(),
        other => panic!("no session in {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_get_stream_and_the_delete_are_checked_too() {
    let url = spawn_signing(Mode::Session).await;
    let client = verifying_client();
    let session = open_session(&client, &url).await;
    let stream = client
        .get_stream(
            url.as_str().into(),
            Some(session.clone()),
            None,
            None,
            Default::default(),
        )
        .await;
    assert!(stream.is_ok(), "the signed GET stream was refused");
    drop(stream);
    client
        .delete_session(url.as_str().into(), session, None, Default::default())
        .await
        .unwrap();

    // The same calls to a server that does not sign: the answers are refused.
    let server = spawn(Mode::Session).await;
    let plain = SigningClient::new(http_client(), signing_key(WORKER), WORKER)
        .with_token(&worker_token(WORKER))
        .unwrap();
    let session = open_session(&plain, &server.url).await;
    let stream = client
        .get_stream(
            server.url.as_str().into(),
            Some(session.clone()),
            None,
            None,
            Default::default(),
        )
        .await;
    assert!(
        stream
            .as_ref()
            .is_err_and(|e| e.to_string().contains(REFUSED)),
        "an unsigned GET stream was accepted"
    );
    let deleted = client
        .delete_session(
            server.url.as_str().into(),
            session,
            None,
            Default::default(),
        )
        .await;
    assert!(
        deleted
            .as_ref()
            .is_err_and(|e| e.to_string().contains(REFUSED)),
        "{deleted:?}"
    );
}

fn client_with(server: ServerKey) -> SigningClient<vouch_rmcp::VerifyingHttpClient> {
    SigningClient::new(http_client(), signing_key(WORKER), WORKER)
        .with_token(&worker_token(WORKER))
        .unwrap()
        .verify_responses(server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_server_key_is_resolved_by_keyid_and_checked() {
    let url = spawn_signing(Mode::StatelessJson).await;
    let public = KeyPair::from_seed(&[42; 32]).unwrap().public_key();
    let pinned = ServerKey::pinned(
        StaticResolver::new().with_ed25519(SERVER_KEYID, &public),
        jwk_thumbprint(&public),
    );
    let client = connect(&url, client_with(pinned)).await.unwrap();
    assert_eq!(add(&client).await.unwrap(), "3");

    // The keyid resolves to another key than the pinned one.
    let other = KeyPair::from_seed(&[43; 32]).unwrap().public_key();
    let swapped = ServerKey::pinned(
        StaticResolver::new().with_ed25519(SERVER_KEYID, &other),
        jwk_thumbprint(&public),
    );
    let refused = connect(&url, client_with(swapped)).await;
    assert!(
        refused.as_ref().is_err_and(|e| e.contains(REFUSED)),
        "{:?}",
        refused.map(|_| ())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_over_the_body_cap_fails_the_call() {
    let url = spawn_signing(Mode::StatelessJson).await;
    let capped = verifying_client().max_response_bytes(64);
    let refused = connect(&url, capped).await;
    assert!(
        refused.as_ref().is_err_and(|e| e.contains(REFUSED)),
        "{:?}",
        refused.map(|_| ())
    );
    // The same cap, large enough: the answers pass.
    let client = connect(&url, verifying_client().max_response_bytes(1 << 16))
        .await
        .unwrap();
    assert_eq!(add(&client).await.unwrap(), "3");
}
