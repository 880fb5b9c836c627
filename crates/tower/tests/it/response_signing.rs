//! The response signing layer behind the signature layer: answers bound to their request, the
//! upstream's own signature and digest replaced, event streams signed over the head, the body
//! cap, and unverified requests left unsigned.

use crate::support::now;
use axum::body::Body;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use tower::{ServiceBuilder, ServiceExt as _};
use vouch_httpsig::{
    Error, RESPONSE_LABEL, RequestView, ResponseView, SigningKey, Verifier, VerifyPolicy,
    mcp_content_digest, mcp_spec, sign,
};
use vouch_keys::{ShardedReplayStore, StaticResolver};
use vouch_token::KeyPair;
use vouch_tower::*;

const AGENT: &str = "agent-a";
const SERVER_KEYID: &str = "https://mcp.example/.well-known/vouch-key";

fn server_key() -> SigningKey {
    SigningKey::ed25519_from_seed(&[9; 32]).unwrap()
}

/// The request as the client sent it (absolute URI, signed), and as the server receives it.
fn signed(body: &str) -> (Request<Vec<u8>>, Request<Body>) {
    let body = body.as_bytes().to_vec();
    let mut sent = Request::post("http://mcp.example/mcp")
        .header("host", "mcp.example")
        .header("content-digest", mcp_content_digest(&body))
        .body(body.clone())
        .unwrap();
    let key = SigningKey::ed25519_from_seed(&[1; 32]).unwrap();
    let spec = mcp_spec(&RequestView::of(&sent), &key, AGENT, None, now()).unwrap();
    sign(RequestView::of(&sent), &spec, &key)
        .unwrap()
        .apply(sent.headers_mut())
        .unwrap();
    let (mut parts, _) = sent.clone().into_parts();
    parts.uri = "/mcp".parse().unwrap();
    (sent, Request::from_parts(parts, Body::from(body)))
}

/// Signature layer, response signer, and an inner service answering `status`, `content_type`
/// and `body`, with a forged signature and digest of its own (as an untrusted upstream might).
fn app(
    status: StatusCode,
    content_type: &'static str,
    body: &'static str,
    max: usize,
) -> impl tower::Service<Request<Body>, Response = Response<Body>, Error = std::convert::Infallible>
+ Clone {
    let pipeline = SignaturePipeline::new(
        crate::origin(),
        StaticResolver::new()
            .with_ed25519(AGENT, &KeyPair::from_seed(&[1; 32]).unwrap().public_key()),
        ShardedReplayStore::new(1000),
    );
    ServiceBuilder::new()
        .layer(SignatureLayer::new(pipeline).exempt_paths(["/health"]))
        .layer(ResponseSigningLayer::new(server_key(), SERVER_KEYID).max_body_bytes(max))
        .service_fn(move |_: Request<Body>| async move {
            let response = Response::builder()
                .status(status)
                .header("content-type", content_type)
                .header("content-digest", mcp_content_digest(b"forged"))
                .header("signature-input", "up=(\"@status\");created=1")
                .header("signature", "up=:AAAA:")
                .body(Body::from(body))
                .unwrap();
            Ok::<_, std::convert::Infallible>(response)
        })
}

async fn call(
    svc: impl tower::Service<Request<Body>, Response = Response<Body>, Error = std::convert::Infallible>,
    request: Request<Body>,
) -> (http::response::Parts, Vec<u8>) {
    let response = svc.oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    (parts, body.collect().await.unwrap().to_bytes().to_vec())
}

fn verify(
    parts: &http::response::Parts,
    body: &[u8],
    sent: &Request<Vec<u8>>,
) -> Result<vouch_httpsig::Verified, Error> {
    let view = ResponseView::new(parts, body).with_request(RequestView::of(sent));
    Verifier::new(VerifyPolicy::mcp_response("sig1"))
        .prepare(view, now())?
        .verify(&server_key().verifying_key()?)
}

#[tokio::test]
async fn answers_are_signed_and_bound_to_their_request() {
    let body = r#"{"jsonrpc":"2.0","id":1,"result":{}}"#;
    let svc = app(StatusCode::OK, "application/json", body, 1 << 20);
    let (sent, received) = signed("{}");
    let (parts, bytes) = call(svc.clone(), received).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(bytes, body.as_bytes());
    let verified = verify(&parts, &bytes, &sent).unwrap();
    assert_eq!(verified.label, RESPONSE_LABEL);
    assert_eq!(verified.params.keyid.as_deref(), Some(SERVER_KEYID));
    // The inner service's signature and digest are gone: one signature, ours, and our digest.
    let inputs: Vec<_> = parts.headers.get_all("signature-input").iter().collect();
    assert_eq!(inputs.len(), 1);
    assert!(inputs[0].to_str().unwrap().starts_with("reqres=("));
    assert_eq!(
        parts.headers.get("content-digest").unwrap(),
        &mcp_content_digest(body.as_bytes())
    );
    // Another request (same method, target and body; its own signature): not this answer.
    let (other, _) = signed("{}");
    assert_eq!(
        verify(&parts, &bytes, &other).unwrap_err(),
        Error::BadSignature
    );
    // A swapped body.
    assert_eq!(
        verify(&parts, b"{\"result\":1}", &sent).unwrap_err(),
        Error::DigestMismatch
    );
}

#[tokio::test]
async fn refusals_by_inner_layers_are_signed_with_their_status() {
    let svc = app(StatusCode::FORBIDDEN, "application/json", "{}", 1 << 20);
    let (sent, received) = signed("{}");
    let (mut parts, bytes) = call(svc, received).await;
    assert_eq!(parts.status, StatusCode::FORBIDDEN);
    verify(&parts, &bytes, &sent).unwrap();
    // Turning the refusal into a success breaks the signature.
    parts.status = StatusCode::OK;
    assert_eq!(
        verify(&parts, &bytes, &sent).unwrap_err(),
        Error::BadSignature
    );
}

#[tokio::test]
async fn event_streams_are_signed_over_the_head_only() {
    let svc = app(StatusCode::OK, "text/event-stream", "data: {}\n\n", 4);
    let (sent, received) = signed("{}");
    let (parts, bytes) = call(svc, received).await;
    assert_eq!(parts.status, StatusCode::OK);
    // Streamed as it came, over the cap (which applies to buffered bodies only).
    assert_eq!(bytes, b"data: {}\n\n");
    assert!(parts.headers.get("content-digest").is_none());
    let verified = verify(&parts, &bytes, &sent).unwrap();
    assert!(
        !verified
            .components()
            .iter()
            .any(|c| c.name() == "content-digest")
    );
}

#[tokio::test]
async fn a_body_over_the_cap_is_an_unsigned_500() {
    let svc = app(StatusCode::OK, "application/json", "0123456789", 9);
    let (sent, received) = signed("{}");
    let (parts, bytes) = call(svc, received).await;
    assert_eq!(parts.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(bytes.is_empty());
    assert!(parts.headers.get("signature").is_none());
    assert_eq!(
        verify(&parts, &bytes, &sent).unwrap_err(),
        Error::NoSignature
    );
    // At the cap it is signed.
    let svc = app(StatusCode::OK, "application/json", "0123456789", 10);
    let (sent, received) = signed("{}");
    let (parts, bytes) = call(svc, received).await;
    verify(&parts, &bytes, &sent).unwrap();
}

#[tokio::test]
async fn unverified_requests_get_unsigned_answers() {
    // An exempt path: no request signature to bind to.
    let svc = app(StatusCode::OK, "application/json", "ok", 1 << 20);
    let request = Request::get("/health")
        .header("host", "mcp.example")
        .body(Body::empty())
        .unwrap();
    let (parts, _) = call(svc.clone(), request).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert!(parts.headers.get("signature").is_none());
    // A refusal by the signature layer itself.
    let request = Request::post("/mcp")
        .header("host", "mcp.example")
        .body(Body::from("{}"))
        .unwrap();
    let (parts, _) = call(svc, request).await;
    assert_eq!(parts.status, StatusCode::UNAUTHORIZED);
    assert!(parts.headers.get("signature").is_none());
}
