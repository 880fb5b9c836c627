//! The signing client over a recording client: every method rmcp calls is signed over exactly
//! what rmcp's reqwest client sends, bearer included.

#![allow(
    clippy::disallowed_types,
    reason = "rmcp's StreamableHttpClient trait takes std HashMaps"
)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::stream::BoxStream;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use rmcp::model::{ClientJsonRpcMessage, ClientNotification, InitializedNotification};
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
    StreamableHttpResponseLimits,
};
use sse_stream::Sse;
use vouch_httpsig::{RequestView, Verifier, VerifyPolicy, VerifyingKey};
use vouch_rmcp::SigningClient;
use vouch_token::{Access, KeyPair, Token};

use crate::support::{WORKER, seed_of, signing_key, verifier, worker_token};

/// One request as the wrapped client would have sent it.
#[derive(Debug, Clone)]
struct Sent {
    method: Method,
    uri: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

#[derive(Clone, Default)]
struct Recorder {
    sent: Arc<Mutex<Vec<Sent>>>,
}

impl Recorder {
    fn record(
        &self,
        method: Method,
        uri: &str,
        session: Option<&str>,
        auth: Option<&str>,
        custom: HashMap<HeaderName, HeaderValue>,
        body: Vec<u8>,
    ) {
        // What rmcp's reqwest client does with its arguments.
        let mut headers = HeaderMap::new();
        for (k, v) in custom {
            headers.insert(k, v);
        }
        if let Some(s) = session {
            headers.insert("mcp-session-id", s.parse().unwrap());
        }
        if let Some(a) = auth {
            headers.insert("authorization", format!("Bearer {a}").parse().unwrap());
        }
        self.sent.lock().unwrap().push(Sent {
            method,
            uri: uri.to_owned(),
            headers,
            body,
        });
    }
}

#[derive(Debug)]
enum Never {}

impl std::fmt::Display for Never {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {}
    }
}

impl std::error::Error for Never {}

impl StreamableHttpClient for Recorder {
    type Error = Never;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Never>> {
        self.record(
            Method::POST,
            &uri,
            session_id.as_deref(),
            auth_header.as_deref(),
            custom_headers,
            serde_json::to_vec(&message).unwrap(),
        );
        Ok(StreamableHttpPostResponse::Accepted)
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), StreamableHttpError<Never>> {
        self.record(
            Method::DELETE,
            &uri,
            Some(&session_id),
            auth_header.as_deref(),
            custom_headers,
            Vec::new(),
        );
        Ok(())
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        _last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<Never>> {
        self.record(
            Method::GET,
            &uri,
            session_id.as_deref(),
            auth_header.as_deref(),
            custom_headers,
            Vec::new(),
        );
        Ok(Box::pin(futures_util::stream::empty()))
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn verify(sent: &Sent) -> Result<Vec<String>, vouch_httpsig::Error> {
    let uri: http::Uri = sent.uri.parse().unwrap();
    let view = RequestView::from_parts(&sent.method, &uri, &sent.headers, &sent.body);
    let prepared = Verifier::new(VerifyPolicy::mcp()).prepare(view, now())?;
    assert_eq!(prepared.keyid(), Some(WORKER));
    let public = *KeyPair::from_seed(&seed_of(WORKER))
        .unwrap()
        .public_key()
        .as_bytes();
    // The covered components, as the signature base lists them (one `"name": value` a line).
    let covered = String::from_utf8(prepared.base().to_vec())
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(": ").map(|(name, _)| name.to_owned()))
        .filter(|name| name != "\"@signature-params\"")
        .collect();
    prepared.verify(&VerifyingKey::ed25519(public))?;
    Ok(covered)
}

fn message() -> ClientJsonRpcMessage {
    ClientJsonRpcMessage::notification(ClientNotification::InitializedNotification(
        InitializedNotification::default(),
    ))
}

fn custom() -> HashMap<HeaderName, HeaderValue> {
    HashMap::from([(
        HeaderName::from_static("mcp-protocol-version"),
        HeaderValue::from_static("2025-06-18"),
    )])
}

#[tokio::test]
async fn every_request_rmcp_makes_is_signed_over_what_is_sent() {
    let recorder = Recorder::default();
    let held = worker_token(WORKER);
    let client = SigningClient::new(recorder.clone(), signing_key(WORKER), WORKER)
        .with_token(&held)
        .unwrap();
    let sealed = Token::from_base64(&held)
        .unwrap()
        .seal()
        .unwrap()
        .to_base64();
    let uri: Arc<str> = Arc::from("http://127.0.0.1:9/mcp");
    let session: Arc<str> = Arc::from("s-1");
    let limits = StreamableHttpResponseLimits::default();

    client
        .post_message(uri.clone(), message(), None, None, custom())
        .await
        .unwrap();
    client
        .post_message_with_max_sse_event_size(
            uri.clone(),
            message(),
            Some(session.clone()),
            None,
            custom(),
            1024,
        )
        .await
        .unwrap();
    client
        .post_message_with_response_limits(
            uri.clone(),
            message(),
            Some(session.clone()),
            Some("bearer-1".into()),
            custom(),
            limits,
        )
        .await
        .unwrap();
    let _ = client
        .get_stream(uri.clone(), Some(session.clone()), None, None, custom())
        .await
        .unwrap();
    let _ = client
        .get_stream_with_max_sse_event_size(
            uri.clone(),
            Some(session.clone()),
            Some("7".into()),
            None,
            custom(),
            1024,
        )
        .await
        .unwrap();
    client
        .delete_session(
            uri.clone(),
            session.clone(),
            Some("bearer-1".into()),
            custom(),
        )
        .await
        .unwrap();

    let sent = recorder.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 6);
    let methods: Vec<&Method> = sent.iter().map(|s| &s.method).collect();
    assert_eq!(
        methods,
        [
            &Method::POST,
            &Method::POST,
            &Method::POST,
            &Method::GET,
            &Method::GET,
            &Method::DELETE
        ]
    );
    for s in &sent {
        let covered = verify(s).unwrap_or_else(|e| panic!("{} not verified: {e}", s.method));
        assert_eq!(s.headers["x-mcpvault-token"], sealed.as_str());
        assert!(
            covered.contains(&"\"x-mcpvault-token\"".to_owned()),
            "{covered:?}"
        );
        assert!(covered.contains(&"\"mcp-protocol-version\"".to_owned()));
        assert_eq!(
            s.method == Method::POST,
            covered.contains(&"\"content-digest\"".to_owned())
        );
        assert_eq!(
            s.headers.contains_key("mcp-session-id"),
            covered.contains(&"\"mcp-session-id\"".to_owned())
        );
        assert_eq!(
            s.headers.contains_key("authorization"),
            covered.contains(&"\"authorization\"".to_owned()),
            "the bearer is covered"
        );
    }
    // Each request has its own nonce: none is a replay of another.
    let inputs: std::collections::BTreeSet<_> = sent
        .iter()
        .map(|s| s.headers["signature-input"].clone())
        .collect();
    assert_eq!(inputs.len(), sent.len());
}

#[tokio::test]
async fn a_changed_body_or_bearer_breaks_the_signature() {
    let recorder = Recorder::default();
    let client = SigningClient::new(recorder.clone(), signing_key(WORKER), WORKER);
    client
        .post_message(
            Arc::from("http://127.0.0.1:9/mcp"),
            message(),
            Some(Arc::from("s")),
            Some("bearer-1".into()),
            custom(),
        )
        .await
        .unwrap();
    let sent = recorder.sent.lock().unwrap()[0].clone();
    assert!(verify(&sent).is_ok());

    let mut other_body = sent.clone();
    other_body.body = br#"{"jsonrpc":"2.0","method":"notifications/cancelled"}"#.to_vec();
    assert!(verify(&other_body).is_err());

    let mut other_bearer = sent.clone();
    other_bearer
        .headers
        .insert("authorization", "Bearer stolen".parse().unwrap());
    assert!(verify(&other_bearer).is_err());
}

/// Sends one message through `client` and returns the token header the server would receive.
async fn sent_token(client: SigningClient<Recorder>, recorder: &Recorder) -> String {
    client
        .post_message(
            Arc::from("http://127.0.0.1:9/mcp"),
            message(),
            None,
            None,
            custom(),
        )
        .await
        .unwrap();
    let sent = recorder.sent.lock().unwrap().pop().unwrap();
    verify(&sent).unwrap();
    sent.headers["x-mcpvault-token"]
        .to_str()
        .unwrap()
        .to_owned()
}

fn facts(token: &Token) -> vouch_token::Facts {
    verifier()
        .verify(token, &Access::now().caller(WORKER).tool("db_query"))
        .unwrap()
}

#[tokio::test]
async fn the_token_is_sent_sealed_and_grants_the_same() {
    let held = worker_token(WORKER);
    let recorder = Recorder::default();
    let client = SigningClient::new(recorder.clone(), signing_key(WORKER), WORKER)
        .with_token(&held)
        .unwrap();
    let sent = sent_token(client, &recorder).await;
    assert_ne!(sent, held);

    // Decoded as the server decodes it: sealed, and it verifies and grants what the held one does.
    let sent = Token::from_base64(&sent).unwrap();
    let held = Token::from_base64(&held).unwrap();
    assert!(sent.is_sealed(), "the server gets no attenuation secret");
    assert!(!held.is_sealed());
    assert_eq!(facts(&sent), facts(&held));
    assert_eq!(facts(&sent).limit("db_query", "max_rows"), Some(10));
    assert!(sent.attenuate(vouch_token::Restriction::new()).is_err());

    // Another header: sealed too. A sealed token: sent as it is.
    let client = SigningClient::new(recorder.clone(), signing_key(WORKER), WORKER)
        .with_token_header(
            HeaderName::from_static("x-mcpvault-token"),
            &held.to_base64(),
        )
        .unwrap();
    assert_eq!(sent_token(client, &recorder).await, sent.to_base64());
    let client = SigningClient::new(recorder.clone(), signing_key(WORKER), WORKER)
        .with_token(&sent.to_base64())
        .unwrap();
    assert_eq!(sent_token(client, &recorder).await, sent.to_base64());
}

#[tokio::test]
async fn the_unsealed_opt_out_sends_the_token_as_given() {
    let held = worker_token(WORKER);
    let recorder = Recorder::default();
    let client = SigningClient::new(recorder.clone(), signing_key(WORKER), WORKER)
        .with_unsealed_token(&held)
        .unwrap();
    let sent = sent_token(client, &recorder).await;
    assert_eq!(sent, held);
    assert!(!Token::from_base64(&sent).unwrap().is_sealed());
    assert_eq!(
        facts(&Token::from_base64(&sent).unwrap()),
        facts(&Token::from_base64(&held).unwrap())
    );
}

#[test]
fn a_token_that_does_not_parse_is_refused_at_configuration() {
    let client = || SigningClient::new(Recorder::default(), signing_key(WORKER), WORKER);
    for garbage in ["dG9rZW4", "", "not a token"] {
        for result in [
            client().with_token(garbage),
            client().with_token_header(HeaderName::from_static("x-token"), garbage),
            client().with_unsealed_token(garbage),
        ] {
            assert!(
                matches!(result, Err(vouch_reqwest::SignError::Token(_))),
                "{garbage:?}: {result:?}"
            );
        }
    }
}

/// rmcp's OAuth client wraps any `StreamableHttpClient`, the signing one included; it hands its
/// bearer down as `auth_header`, which the tests above show is covered.
#[test]
fn composes_with_rmcps_oauth_client() {
    fn assert_client<C: StreamableHttpClient>() {}
    assert_client::<rmcp::transport::AuthClient<SigningClient>>();
    assert_client::<rmcp::transport::AuthClient<SigningClient<Recorder>>>();
}

fn tool_call(name: &str) -> ClientJsonRpcMessage {
    serde_json::from_value(serde_json::json!({
        "jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": name, "arguments": {"region": "us-west1"}}
    }))
    .unwrap()
}

#[tokio::test]
async fn the_mcp_request_headers_are_sent_and_signed_in_both_generations() {
    let recorder = Recorder::default();
    let client = SigningClient::new(recorder.clone(), signing_key(WORKER), WORKER);
    let uri: Arc<str> = Arc::from("http://127.0.0.1:9/mcp");
    // 2025-06-18: rmcp sends no MCP request headers; the signing client adds them.
    client
        .post_message(
            uri.clone(),
            tool_call("add"),
            Some(Arc::from("s-1")),
            None,
            custom(),
        )
        .await
        .unwrap();
    // 2026-07-28: rmcp sends them (here as its transport would for a tool whose schema marks
    // `region` with x-mcp-header: Region); they are kept as they are and signed.
    let mut modern = HashMap::from([
        (
            HeaderName::from_static("mcp-protocol-version"),
            HeaderValue::from_static("2026-07-28"),
        ),
        (
            HeaderName::from_static("mcp-method"),
            HeaderValue::from_static("tools/call"),
        ),
        (
            HeaderName::from_static("mcp-name"),
            HeaderValue::from_static("=?base64?Y2Fmw6k=?="),
        ),
    ]);
    modern.insert(
        HeaderName::from_static("mcp-param-region"),
        HeaderValue::from_static("us-west1"),
    );
    client
        .post_message(uri.clone(), tool_call("café"), None, None, modern)
        .await
        .unwrap();

    let sent = recorder.sent.lock().unwrap().clone();
    let legacy = &sent[0];
    assert_eq!(legacy.headers["mcp-method"], "tools/call");
    assert_eq!(legacy.headers["mcp-name"], "add");
    let covered = verify(legacy).unwrap();
    for h in ["\"mcp-method\"", "\"mcp-name\""] {
        assert!(covered.contains(&h.to_owned()), "{h} in {covered:?}");
    }
    let now = &sent[1];
    assert_eq!(now.headers["mcp-name"], "=?base64?Y2Fmw6k=?=");
    assert_eq!(now.headers.get_all("mcp-method").iter().count(), 1);
    let covered = verify(now).unwrap();
    for h in ["\"mcp-method\"", "\"mcp-name\"", "\"mcp-param-region\""] {
        assert!(covered.contains(&h.to_owned()), "{h} in {covered:?}");
    }
    // What was sent passes vouch's header check against the body it was sent with.
    for s in &sent {
        let message = vouch_tower::jsonrpc::parse(&s.body).unwrap();
        vouch_tower::mcp_headers::check(&s.headers, Some(&message)).unwrap();
    }
}
