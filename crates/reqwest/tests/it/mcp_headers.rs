//! The signing middleware mirrors a JSON-RPC body into `Mcp-Method` / `Mcp-Name` and signs
//! them; headers the caller set are kept.

use http::HeaderValue;
use vouch_httpsig::{RequestView, SigningKey, Verifier, VerifyPolicy};
use vouch_reqwest::{SigningMiddleware, mcp_request_headers};

fn key() -> SigningKey {
    SigningKey::ed25519_from_seed(&[3; 32]).unwrap()
}

fn signed(body: &str, extra: &[(&str, &str)]) -> reqwest::Request {
    crate::install_crypto();
    let client = reqwest::Client::new();
    let mut builder = client.post("https://mcp.example/mcp").body(body.to_owned());
    for (n, v) in extra {
        builder = builder.header(*n, *v);
    }
    let mut req = builder.build().unwrap();
    SigningMiddleware::new(key(), "agent-a")
        .sign_request(&mut req)
        .unwrap();
    req
}

/// Verifies `req` with the MCP policy and returns the covered component names.
fn covered(req: &reqwest::Request) -> Vec<String> {
    let uri: http::Uri = req.url().as_str().parse().unwrap();
    let body = req.body().and_then(|b| b.as_bytes()).unwrap_or_default();
    let view = RequestView::from_parts(req.method(), &uri, req.headers(), body);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let prepared = Verifier::new(VerifyPolicy::mcp())
        .prepare(view, now)
        .unwrap();
    let names = prepared
        .components()
        .iter()
        .map(ToString::to_string)
        .collect();
    prepared.verify(&key().verifying_key().unwrap()).unwrap();
    names
}

#[test]
fn a_tool_call_gets_both_headers_signed() {
    let req = signed(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{}}}"#,
        &[],
    );
    assert_eq!(req.headers()["mcp-method"], "tools/call");
    assert_eq!(req.headers()["mcp-name"], "search");
    let names = covered(&req);
    assert!(names.contains(&"\"mcp-method\"".to_owned()), "{names:?}");
    assert!(names.contains(&"\"mcp-name\"".to_owned()), "{names:?}");
}

#[test]
fn names_are_wrapped_when_they_are_not_header_text() {
    let headers = mcp_request_headers(
        r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///café"}}"#
            .as_bytes(),
    );
    assert_eq!(headers.len(), 2);
    assert_eq!(headers[1].1, "=?base64?ZmlsZTovLy9jYWbDqQ==?=");
}

#[test]
fn only_what_the_body_has() {
    let list = mcp_request_headers(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
    assert_eq!(list.len(), 1, "no Mcp-Name for tools/list");
    let nameless = mcp_request_headers(
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":7}}"#,
    );
    assert_eq!(nameless.len(), 1, "no Mcp-Name for a non-string name");
    for body in [
        &b"not json"[..],
        br#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
        b"",
        br#"[{"method":"x"}]"#,
    ] {
        assert!(mcp_request_headers(body).is_empty());
    }
}

#[test]
fn headers_the_caller_set_are_kept_and_signed() {
    let req = signed(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"execute_sql","arguments":{"region":"us-west1"}}}"#,
        &[
            ("Mcp-Name", "execute_sql"),
            ("Mcp-Param-Region", "us-west1"),
        ],
    );
    assert_eq!(req.headers().get_all("mcp-name").iter().count(), 1);
    assert_eq!(
        req.headers()["mcp-param-region"],
        HeaderValue::from_static("us-west1")
    );
    assert!(covered(&req).contains(&"\"mcp-param-region\"".to_owned()));
}

#[test]
fn a_get_gets_none() {
    crate::install_crypto();
    let mut req = reqwest::Client::new()
        .get("https://mcp.example/mcp")
        .build()
        .unwrap();
    SigningMiddleware::new(key(), "agent-a")
        .sign_request(&mut req)
        .unwrap();
    assert!(!req.headers().contains_key("mcp-method"));
}
