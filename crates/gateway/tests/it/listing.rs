//! `tools/list` narrowed to the grants, and responses streamed as they arrive.

use std::sync::atomic::Ordering;

use http::StatusCode;
use http_body_util::BodyExt as _;
use serde_json::Value;

use crate::*;

fn tool_names(message: &Value) -> Vec<String> {
    message["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn tools_list_json_is_filtered_to_the_grants() {
    let up = upstream().await;
    let gw = gateway(&up.url("/mcp"), |g| g).await;
    let response = send(signed(
        gw,
        &message("tools/list", None),
        Some(&token()),
        &[],
    ))
    .await;
    assert_status(&response, StatusCode::OK);
    let body: Value = serde_json::from_str(&text(response).await).unwrap();
    assert_eq!(body["id"], 7);
    assert_eq!(tool_names(&body), ["search", "db_query"]);
    assert_eq!(up.calls(), 1);
}

/// The next data frame of `body`, as text, within the patience bound.
async fn next_chunk(body: &mut Incoming) -> Option<String> {
    loop {
        let frame = tokio::time::timeout(PATIENCE, body.frame())
            .await
            .expect("a frame within the patience bound (the gateway must not buffer)")?
            .unwrap();
        if let Ok(data) = frame.into_data() {
            return Some(String::from_utf8(data.to_vec()).unwrap());
        }
    }
}

/// Sends `method` to the streaming upstream; checks that its first event reaches the client
/// while the upstream is still held open, then releases it and returns the rest of the stream.
async fn streamed(method: &str, tool: Option<&str>) -> (String, String) {
    let up = upstream().await;
    let gw = gateway(&up.url("/sse"), |g| g).await;
    let response = send(signed(gw, &message(method, tool), Some(&token()), &[])).await;
    assert_status(&response, StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    let first = next_chunk(&mut body).await.expect("a first event");
    assert_eq!(
        up.finished.load(Ordering::SeqCst),
        0,
        "the upstream has not finished: it waits for the release"
    );
    up.release.notify_one();
    let mut rest = String::new();
    while let Some(chunk) = next_chunk(&mut body).await {
        rest.push_str(&chunk);
    }
    assert_eq!(up.finished.load(Ordering::SeqCst), 1);
    (first, rest)
}

/// The JSON of each `data:` line of an SSE text.
fn data_events(sse: &str) -> Vec<Value> {
    sse.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| serde_json::from_str(d.trim()).unwrap())
        .collect()
}

#[tokio::test]
async fn sse_events_reach_the_client_before_the_upstream_finishes() {
    let (first, rest) = streamed("tools/call", Some("search")).await;
    assert_eq!(first, format!("event: message\ndata: {PROGRESS}\n\n"));
    let events = data_events(&rest);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["result"]["ok"], true);
}

#[tokio::test]
async fn tools_list_sse_is_filtered_and_other_events_pass_unchanged() {
    let (first, rest) = streamed("tools/list", None).await;
    // Streamed as it came, byte for byte, before the upstream finished.
    assert_eq!(first, format!("event: message\ndata: {PROGRESS}\n\n"));
    let events = data_events(&rest);
    assert_eq!(events.len(), 1, "{rest}");
    assert_eq!(events[0]["id"], 7);
    assert_eq!(tool_names(&events[0]), ["search", "db_query"]);
    assert!(rest.starts_with("event: message\nid: 2\ndata: "), "{rest}");
    assert!(rest.ends_with("\n\n"));
}

#[tokio::test]
async fn tools_list_is_filtered_by_the_configured_operation() {
    // db_query performs `write`; the token allows only `read` on it.
    let root = root();
    let token = vouch_token::Token::mint(
        &root,
        "auth-server",
        "agent-a",
        vouch_token::Restriction::new()
            .tools(["search", "db_query"])
            .operations("db_query", ["read"])
            .ttl(600),
    )
    .unwrap()
    .to_base64();
    let up = upstream().await;
    let gw = gateway(&up.url("/mcp"), |g| g.operation("db_query", "write")).await;
    let response = send(signed(gw, &message("tools/list", None), Some(&token), &[])).await;
    assert_status(&response, StatusCode::OK);
    let body: Value = serde_json::from_str(&text(response).await).unwrap();
    assert_eq!(tool_names(&body), ["search"]);
    let refused = send(signed(
        gw,
        &message("tools/call", Some("db_query")),
        Some(&token),
        &[],
    ))
    .await;
    assert_status(&refused, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_listing_the_gateway_cannot_filter_is_not_passed_on() {
    let up = upstream().await;
    let gw = gateway(&up.url("/text"), |g| g).await;
    let listing = send(signed(
        gw,
        &message("tools/list", None),
        Some(&token()),
        &[],
    ))
    .await;
    assert_status(&listing, StatusCode::BAD_GATEWAY);
    assert_eq!(error_code(listing).await, "upstream_invalid");
    // Other answers in that form pass.
    let call = send(signed(
        gw,
        &message("tools/call", Some("search")),
        Some(&token()),
        &[],
    ))
    .await;
    assert_status(&call, StatusCode::OK);
    assert_eq!(up.calls(), 2);
}
