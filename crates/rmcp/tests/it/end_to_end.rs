//! A real rmcp server behind vouch and a real rmcp client with the signing client, on
//! 127.0.0.1, in session mode and in stateless JSON mode; raw HTTP for the attacks the rmcp
//! client would never make.

use std::time::{SystemTime, UNIX_EPOCH};

use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use vouch_reqwest::SigningMiddleware;
use vouch_rmcp::SigningClient;
use vouch_token::{Restriction, Token};

use crate::support::{
    Mode, OTHER, OUTSIDER, Server, WORKER, http_client, root, root_token, signing_key, spawn,
    worker_token,
};

type Client = RunningService<RoleClient, ClientConfig>;

async fn connect(url: &str, keyid: &str, token: &str) -> Result<Client, String> {
    let client = SigningClient::new(http_client(), signing_key(keyid), keyid)
        .with_token(token)
        .unwrap();
    let transport = StreamableHttpClientTransport::with_client(
        client,
        StreamableHttpClientTransportConfig::with_uri(url),
    );
    ClientConfig::default()
        .serve(transport)
        .await
        .map_err(|e| e.to_string())
}

async fn call(client: &Client, tool: &str, args: Value) -> Result<String, String> {
    let mut params = CallToolRequestParams::new(tool.to_owned());
    if let Value::Object(map) = args {
        params = params.with_arguments(map);
    }
    let result = client.call_tool(params).await.map_err(|e| e.to_string())?;
    assert_ne!(result.is_error, Some(true), "{tool} failed: {result:?}");
    let text = result
        .content
        .iter()
        .find_map(|c| c.as_text().map(|t| t.text.clone()))
        .expect("a text result");
    Ok(text)
}

/// The names of the tools `client` is shown, sorted.
async fn tool_names(client: &Client) -> Vec<String> {
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    names
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// ---- raw HTTP, signed by the same middleware the client uses ---------------------------------

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1.0"}}}"#;

fn tools_call(tool: &str) -> String {
    json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
           "params": {"name": tool, "arguments": {"a": 1, "b": 2}}})
    .to_string()
}

fn raw(
    url: &str,
    keyid: Option<&str>,
    token: &str,
    session: Option<&str>,
    body: &str,
) -> reqwest::Request {
    let mut req = http_client()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("x-mcpvault-token", token)
        .body(body.to_owned())
        .build()
        .unwrap();
    if let Some(s) = session {
        req.headers_mut()
            .insert("mcp-session-id", s.parse().unwrap());
        req.headers_mut()
            .insert("mcp-protocol-version", "2025-06-18".parse().unwrap());
    }
    if let Some(keyid) = keyid {
        SigningMiddleware::new(signing_key(keyid), keyid)
            .sign_request(&mut req)
            .unwrap();
    }
    req
}

async fn send(req: reqwest::Request) -> (u16, Value, Option<String>) {
    let res = http_client().execute(req).await.unwrap();
    let status = res.status().as_u16();
    let session = res
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        session,
    )
}

fn reason(body: &Value) -> &str {
    body.pointer("/detail/detail")
        .and_then(Value::as_str)
        .unwrap_or("")
}

macro_rules! both_modes {
    ($($name:ident),* $(,)?) => {
        mod session_mode {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(super::Mode::Session).await } )*
        }
        mod stateless_json_mode {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(super::Mode::StatelessJson).await } )*
        }
    };
}

both_modes!(
    signed_call_with_token_reaches_the_tool_with_caller_and_grants,
    tools_list_shows_only_granted_tools,
    tool_outside_the_grants_is_403,
    attenuated_token_is_narrower_than_its_parent,
    expired_token_is_refused,
    caller_off_the_allowlist_is_refused,
    unsigned_request_is_401,
    tampered_body_is_401,
    replayed_request_is_401,
    token_stolen_by_another_agent_is_refused,
);

async fn signed_call_with_token_reaches_the_tool_with_caller_and_grants(mode: Mode) {
    let server = spawn(mode).await;
    let client = connect(&server.url, WORKER, &worker_token(WORKER))
        .await
        .unwrap();
    assert_eq!(
        call(&client, "add", json!({"a": 2, "b": 3})).await.unwrap(),
        "5"
    );
    let who: Value =
        serde_json::from_str(&call(&client, "whoami", json!({})).await.unwrap()).unwrap();
    assert_eq!(who["identity"], "worker@agents.example");
    assert_eq!(who["keyid"], WORKER);
    assert_eq!(who["max_rows"], 10);
    assert_eq!(who["tools"], json!(["add", "db_query", "whoami"]));
    client.cancel().await.unwrap();
    // Every request the client made was signed and verified, through the coalescer.
    let seen = server.seen();
    assert!(seen.iter().any(|s| s.layer == "signature"));
    let verified = seen.iter().filter(|s| s.layer == "signature").count();
    assert_eq!(
        server.coalescer.stats().submitted,
        verified as u64,
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .all(|s| s.accepted && s.identity.as_deref() == Some("worker@agents.example")),
        "{seen:?}"
    );
}

async fn tools_list_shows_only_granted_tools(mode: Mode) {
    let server = spawn(mode).await;
    let worker = connect(&server.url, WORKER, &worker_token(WORKER))
        .await
        .unwrap();
    let names = tool_names(&worker).await;
    assert_eq!(names, ["add", "db_query", "whoami"]);

    // A read-only token sees only the read-only tools (operations from the annotations).
    let read_only = root_token()
        .attenuate(
            Restriction::new()
                .operations("add", ["read"])
                .operations("whoami", ["read"])
                .operations("db_query", ["read"])
                .operations("drop_table", ["read"]),
        )
        .unwrap()
        .to_base64();
    let reader = connect(&server.url, OTHER, &read_only).await.unwrap();
    let names = tool_names(&reader).await;
    assert_eq!(
        names,
        ["add", "whoami"],
        "db_query is execute, drop_table is write"
    );
    worker.cancel().await.unwrap();
    reader.cancel().await.unwrap();
}

async fn tool_outside_the_grants_is_403(mode: Mode) {
    let server = spawn(mode).await;
    let token = worker_token(WORKER);
    let client = connect(&server.url, WORKER, &token).await.unwrap();
    assert!(call(&client, "drop_table", json!({})).await.is_err());
    client.cancel().await.unwrap();
    let refused = server
        .seen()
        .into_iter()
        .find(|s| s.layer == "capability" && !s.accepted)
        .expect("the capability layer refused the call");
    assert_eq!(refused.reason, "forbidden");

    // The status the client saw, on the wire.
    let (status, body, _) = send(raw(
        &server.url,
        Some(WORKER),
        &token,
        None,
        &tools_call("drop_table"),
    ))
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body.pointer("/detail/error").unwrap(), "forbidden");
}

async fn attenuated_token_is_narrower_than_its_parent(mode: Mode) {
    let server = spawn(mode).await;
    // The parent (not holder-bound) may drop tables and read 50 rows ...
    let parent = connect(&server.url, OTHER, &root_token().to_base64())
        .await
        .unwrap();
    assert_eq!(
        call(&parent, "drop_table", json!({})).await.unwrap(),
        "dropped"
    );
    assert_eq!(
        call(&parent, "db_query", json!({})).await.unwrap(),
        "50 rows"
    );
    // ... the worker's attenuation may not, and reads 10.
    let child = connect(&server.url, WORKER, &worker_token(WORKER))
        .await
        .unwrap();
    assert!(call(&child, "drop_table", json!({})).await.is_err());
    assert_eq!(
        call(&child, "db_query", json!({})).await.unwrap(),
        "10 rows"
    );
    parent.cancel().await.unwrap();
    child.cancel().await.unwrap();
}

async fn expired_token_is_refused(mode: Mode) {
    let server = spawn(mode).await;
    let expired = Token::mint_at(
        &root(),
        "auth.example",
        "team-a",
        Restriction::new().ttl(60),
        now() - 3600,
    )
    .unwrap()
    .to_base64();
    assert!(connect(&server.url, WORKER, &expired).await.is_err());
    let seen = server.seen();
    assert!(
        seen.iter()
            .any(|s| s.layer == "capability" && !s.accepted && s.reason == "invalid_token"),
        "{seen:?}"
    );
    let (status, body, _) = send(raw(&server.url, Some(WORKER), &expired, None, INITIALIZE)).await;
    assert_eq!(status, 401);
    assert!(
        body.pointer("/detail/detail")
            .unwrap()
            .as_str()
            .unwrap()
            .contains("expired"),
        "{body}"
    );
}

async fn caller_off_the_allowlist_is_refused(mode: Mode) {
    let server = spawn(mode).await;
    assert!(
        connect(&server.url, OUTSIDER, &root_token().to_base64())
            .await
            .is_err()
    );
    let seen = server.seen();
    assert!(!seen.is_empty());
    assert!(
        seen.iter()
            .all(|s| s.layer == "signature" && !s.accepted && s.reason == "not_allowed"),
        "{seen:?}"
    );
}

async fn unsigned_request_is_401(mode: Mode) {
    let server = spawn(mode).await;
    let (status, body, _) = send(raw(
        &server.url,
        None,
        &worker_token(WORKER),
        None,
        INITIALIZE,
    ))
    .await;
    assert_eq!(status, 401);
    assert_eq!(reason(&body), "missing_signature");
}

async fn tampered_body_is_401(mode: Mode) {
    let server = spawn(mode).await;
    let mut req = raw(
        &server.url,
        Some(WORKER),
        &worker_token(WORKER),
        None,
        &tools_call("add"),
    );
    *req.body_mut() = Some(tools_call("drop_table").into());
    let (status, body, _) = send(req).await;
    assert_eq!(status, 401);
    assert_eq!(reason(&body), "digest_mismatch");
}

async fn replayed_request_is_401(mode: Mode) {
    let server = spawn(mode).await;
    let req = raw(
        &server.url,
        Some(WORKER),
        &worker_token(WORKER),
        None,
        INITIALIZE,
    );
    let again = req.try_clone().unwrap();
    let (status, body, _) = send(req).await;
    assert_eq!(status, 200, "{body}");
    let (status, body, _) = send(again).await;
    assert_eq!(status, 401);
    assert_eq!(reason(&body), "replayed");
}

async fn token_stolen_by_another_agent_is_refused(mode: Mode) {
    let server = spawn(mode).await;
    // OTHER signs correctly, with the worker's holder-bound token.
    assert!(
        connect(&server.url, OTHER, &worker_token(WORKER))
            .await
            .is_err()
    );
    let (status, body, _) = send(raw(
        &server.url,
        Some(OTHER),
        &worker_token(WORKER),
        None,
        INITIALIZE,
    ))
    .await;
    // A holder mismatch makes the token invalid for this caller: 401, like a bad token.
    assert_eq!(status, 401, "{body}");
    assert!(
        body.pointer("/detail/detail")
            .unwrap()
            .as_str()
            .unwrap()
            .contains("holder"),
        "{body}"
    );
}

// ---- session mode only ----------------------------------------------------------------------

async fn raw_session(server: &Server, keyid: &str) -> String {
    let (status, body, session) = send(raw(
        &server.url,
        Some(keyid),
        &worker_token(keyid),
        None,
        INITIALIZE,
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    let session = session.expect("session mode issues a session id");
    let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    let (status, body, _) = send(raw(
        &server.url,
        Some(keyid),
        &worker_token(keyid),
        Some(&session),
        initialized,
    ))
    .await;
    assert_eq!(status, 202, "{body}");
    session
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_used_by_another_identity_is_refused() {
    let server = spawn(Mode::Session).await;
    let session = raw_session(&server, WORKER).await;
    assert_eq!(server.sessions.len(), 1);

    // OTHER, properly signed and with a valid token of its own, takes the worker's session.
    let (status, body, _) = send(raw(
        &server.url,
        Some(OTHER),
        &worker_token(OTHER),
        Some(&session),
        &tools_call("add"),
    ))
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(reason(&body), "session_bound_to_another_caller");

    // The owner still can.
    let (status, body, _) = send(raw(
        &server.url,
        Some(WORKER),
        &worker_token(WORKER),
        Some(&session),
        &tools_call("add"),
    ))
    .await;
    assert_eq!(status, 200, "{body}");

    // A session id nobody was given.
    let (status, body, _) = send(raw(
        &server.url,
        Some(WORKER),
        &worker_token(WORKER),
        Some("not-a-session"),
        &tools_call("add"),
    ))
    .await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_get_and_session_delete_are_signed_and_verified() {
    let server = spawn(Mode::Session).await;
    let client = connect(&server.url, WORKER, &worker_token(WORKER))
        .await
        .unwrap();
    assert_eq!(
        call(&client, "add", json!({"a": 1, "b": 1})).await.unwrap(),
        "2"
    );
    assert_eq!(server.sessions.len(), 1);
    client.cancel().await.unwrap();
    let verified = |method: &str| {
        server.seen().iter().any(|s| {
            s.layer == "signature"
                && s.method == method
                && s.accepted
                && s.identity.as_deref() == Some("worker@agents.example")
        })
    };
    // The client's standalone SSE stream and its DELETE at the end went through the layer.
    for _ in 0..50 {
        if verified("DELETE") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(verified("GET"), "{:?}", server.seen());
    assert!(verified("DELETE"), "{:?}", server.seen());
    assert_eq!(server.sessions.len(), 0, "the DELETE unbinds the session");
}
