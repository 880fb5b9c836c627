//! A gateway without token roots: every request must be signed by an admitted signer, no token
//! is asked for, and the upstream learns who called but gets no grants.

use http::StatusCode;
use serde_json::Value;
use vouch_gateway::Gateway;
use vouch_tower::TOKEN_HEADER;

use crate::{AGENT, assert_status, message, send, signed, spawn_gateway, text, token, upstream};

async fn identity_gateway(upstream: &str) -> std::net::SocketAddr {
    spawn_gateway(|signature| Gateway::identity_only(upstream, signature).unwrap()).await
}

#[tokio::test]
async fn a_signed_call_without_a_token_reaches_the_upstream_with_the_identity_and_no_grants() {
    let up = upstream().await;
    let gw = identity_gateway(&up.url("/mcp")).await;
    let response = send(signed(
        gw,
        &message("tools/call", Some("drop_table")),
        None,
        &[],
    ))
    .await;
    assert_status(&response, StatusCode::OK);
    assert_eq!(up.calls(), 1);
    let head = up.last_head();
    assert_eq!(head["x-vouch-keyid"], AGENT);
    assert!(!head["x-vouch-identity"].is_empty());
    assert!(!head.contains_key("x-vouch-grants"), "{head:?}");
}

#[tokio::test]
async fn an_unsigned_call_is_refused_without_contacting_the_upstream() {
    let up = upstream().await;
    let gw = identity_gateway(&up.url("/mcp")).await;
    let mut request = signed(gw, &message("tools/call", Some("search")), None, &[]);
    request.headers_mut().remove("signature");
    request.headers_mut().remove("signature-input");
    let response = send(request).await;
    assert_status(&response, StatusCode::UNAUTHORIZED);
    let body: Value = serde_json::from_str(&text(response).await).unwrap();
    assert_eq!(body["detail"]["error"], "invalid_signature", "{body}");
    assert_eq!(body["detail"]["detail"], "missing_signature", "{body}");
    assert_eq!(up.calls(), 0);
}

#[tokio::test]
async fn a_token_sent_anyway_is_not_forwarded_and_forged_vouch_fields_are_replaced() {
    let up = upstream().await;
    let gw = identity_gateway(&up.url("/mcp")).await;
    let response = send(signed(
        gw,
        &message("tools/call", Some("search")),
        Some(&token()),
        &[
            ("x-vouch-identity", "admin@evil.example"),
            ("x-vouch-grants", "e30"),
        ],
    ))
    .await;
    assert_status(&response, StatusCode::OK);
    let head = up.last_head();
    assert!(!head.contains_key(TOKEN_HEADER), "{head:?}");
    assert!(!head.contains_key("x-vouch-grants"), "{head:?}");
    assert_eq!(head.get_all("x-vouch-identity").iter().count(), 1);
    assert_ne!(head["x-vouch-identity"], "admin@evil.example");
}

#[tokio::test]
async fn tools_list_passes_unfiltered() {
    let up = upstream().await;
    let gw = identity_gateway(&up.url("/mcp")).await;
    let response = send(signed(gw, &message("tools/list", None), None, &[])).await;
    assert_status(&response, StatusCode::OK);
    let body: Value = serde_json::from_str(&text(response).await).unwrap();
    let names: Vec<&str> = body["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["search", "db_query", "drop_table"]);
}

#[tokio::test]
async fn an_ambiguous_message_is_refused_before_the_upstream_sees_it() {
    let up = upstream().await;
    let gw = identity_gateway(&up.url("/mcp")).await;
    // Two names: a first-key upstream would run one tool while logs show the other.
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","name":"drop_table"}}"#;
    let response = send(signed(gw, body, None, &[])).await;
    assert_status(&response, StatusCode::BAD_REQUEST);
    let answer: Value = serde_json::from_str(&text(response).await).unwrap();
    assert_eq!(answer["error"]["code"], -32600, "{answer}");
    let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"}]"#;
    let response = send(signed(gw, batch, None, &[])).await;
    assert_status(&response, StatusCode::BAD_REQUEST);
    assert_eq!(up.calls(), 0);
}
