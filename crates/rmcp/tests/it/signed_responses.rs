//! `Protected::sign_responses`: a real rmcp server signs its answers, and a client checks each
//! against the request it sent (the middleware's `check_response`, what the reqwest
//! middleware runs), in JSON mode (body covered) and session mode (event streams, head only).

use rmcp::transport::StreamableHttpServerConfig;
use serde_json::{Value, json};
use vouch_httpsig::SigningKey;
use vouch_keys::{ShardedReplayStore, StaticResolver};
use vouch_reqwest::{ResponseError, SentRequest, ServerKey, SigningMiddleware};
use vouch_rmcp::{Origin, Protected};
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
    let resolver = StaticResolver::new().with_ed25519(
        WORKER,
        &KeyPair::from_seed(&seed_of(WORKER)).unwrap().public_key(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let signatures =
        SignaturePipeline::new(Origin::http(addr), resolver, ShardedReplayStore::new(1000));
    let config = match mode {
        Mode::Session => StreamableHttpServerConfig::default(),
        Mode::StatelessJson => StreamableHttpServerConfig::default()
            .with_legacy_session_mode(false)
            .with_json_response(true),
    };
    let app = Protected::new(signatures, CapabilityPipeline::new(verifier()))
        .tools(&Tools::tool_router().list_all())
        .config(config.with_sse_keep_alive(None))
        .sign_responses(server_key(), SERVER_KEYID)
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
