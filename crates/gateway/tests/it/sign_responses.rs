//! `sign_responses`: the gateway signs each answer with its own key, bound to the client's
//! request; the upstream's own signature and digest are not trusted; streams are signed over
//! their head.

use axum::routing::post;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use vouch_httpsig::{
    Error, RequestView, ResponseView, SigningKey, Verifier as SigVerifier, VerifyPolicy,
    mcp_content_digest,
};

use crate::*;

const GATEWAY_KEYID: &str = "https://gateway.example/.well-known/response-key";

fn gateway_key() -> SigningKey {
    SigningKey::ed25519_from_seed(&[6; 32]).unwrap()
}

/// An upstream that signs and digests its answers itself, wrongly: the gateway must not pass
/// that on as its own.
async fn forging_upstream() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/mcp",
        post(|| async {
            Response::builder()
                .header("content-type", "application/json")
                .header("content-digest", mcp_content_digest(b"something else"))
                .header(
                    "signature-input",
                    r#"reqres=("@status");created=1;keyid="up""#,
                )
                .header("signature", "reqres=:AAAA:")
                .body(axum::body::Body::from(
                    r#"{"jsonrpc":"2.0","id":7,"result":{}}"#,
                ))
                .unwrap()
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/mcp")
}

/// Sends `req`; the head and the whole body.
async fn exchange(req: Request<Vec<u8>>) -> (http::response::Parts, Vec<u8>) {
    let (parts, body) = send(req).await.into_parts();
    let bytes = tokio::time::timeout(PATIENCE, body.collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    (parts, bytes.to_vec())
}

fn verify(
    parts: &http::response::Parts,
    body: &[u8],
    sent: &Request<Vec<u8>>,
) -> Result<vouch_httpsig::Verified, Error> {
    let view = ResponseView::new(parts, body).with_request(RequestView::of(sent));
    SigVerifier::new(VerifyPolicy::mcp_response("sig1"))
        .prepare(view, now())?
        .verify(&gateway_key().verifying_key()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_signed_by_the_gateway_not_the_upstream() {
    let upstream = forging_upstream().await;
    let gw = gateway(&upstream, |g| {
        g.sign_responses(gateway_key(), GATEWAY_KEYID)
    })
    .await;
    let token = token();
    let sent = signed(
        gw,
        &message("tools/call", Some("search")),
        Some(&token),
        &[],
    );
    let (parts, body) = exchange(sent.clone()).await;
    assert_eq!(parts.status, StatusCode::OK);
    let verified = verify(&parts, &body, &sent).unwrap();
    assert_eq!(verified.params.keyid.as_deref(), Some(GATEWAY_KEYID));
    // One signature, the gateway's; the digest is of the body forwarded.
    assert_eq!(parts.headers.get_all("signature").iter().count(), 1);
    assert_eq!(
        parts.headers.get("content-digest").unwrap(),
        &mcp_content_digest(&body)
    );
    // Another request of the same agent does not get to use this answer.
    let other = signed(
        gw,
        &message("tools/call", Some("search")),
        Some(&token),
        &[],
    );
    assert_eq!(
        verify(&parts, &body, &other).unwrap_err(),
        Error::BadSignature
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn narrowed_listings_and_refusals_are_signed() {
    let up = upstream().await;
    let gw = gateway(&up.url("/mcp"), |g| {
        g.sign_responses(gateway_key(), GATEWAY_KEYID)
    })
    .await;
    let token = token();
    let sent = signed(gw, &message("tools/list", None), Some(&token), &[]);
    let (parts, body) = exchange(sent.clone()).await;
    assert_eq!(parts.status, StatusCode::OK);
    verify(&parts, &body, &sent).unwrap();
    // A tool the token does not grant: the capability layer's 403, signed.
    let sent = signed(
        gw,
        &message("tools/call", Some("drop_table")),
        Some(&token),
        &[],
    );
    let (parts, body) = exchange(sent.clone()).await;
    assert_eq!(parts.status, StatusCode::FORBIDDEN);
    verify(&parts, &body, &sent).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_signed_over_their_head() {
    let up = upstream().await;
    let gw = gateway(&up.url("/sse"), |g| {
        g.sign_responses(gateway_key(), GATEWAY_KEYID)
    })
    .await;
    let sent = signed(
        gw,
        &message("tools/call", Some("search")),
        Some(&token()),
        &[],
    );
    let response = send(sent.clone()).await;
    assert_status(&response, StatusCode::OK);
    let (parts, _) = response.into_parts();
    // Verified from the head alone, while the stream is still open.
    assert!(parts.headers.get("content-digest").is_none());
    verify(&parts, b"", &sent).unwrap();
    up.release.notify_waiters();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_option_answers_are_not_signed() {
    let up = upstream().await;
    let gw = gateway(&up.url("/mcp"), |g| g).await;
    let sent = signed(gw, &message("tools/list", None), Some(&token()), &[]);
    let (parts, body) = exchange(sent.clone()).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(
        verify(&parts, &body, &sent).unwrap_err(),
        Error::NoSignature
    );
}
