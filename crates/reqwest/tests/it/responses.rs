//! Signed responses end to end: a server with the response signing layer on 127.0.0.1, and a
//! reqwest client that verifies every answer, against a fixed and a pinned key; what it refuses.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::routing::post;
use http::Response;
use http_body_util::BodyExt as _;
use reqwest_middleware::ClientBuilder;
use vouch_httpsig::SigningKey;
use vouch_keys::{ShardedReplayStore, StaticResolver, jwk_thumbprint};
use vouch_reqwest::{ResponseError, ServerKey, SigningMiddleware};
use vouch_token::KeyPair;
use vouch_tower::{ResponseSigningLayer, SignatureLayer, SignaturePipeline};

const WORKER: &str = "worker@agents.example";
const SERVER_KEYID: &str = "https://mcp.example/server-key";

/// A captured answer: head and body.
type Captured = Arc<Mutex<Option<(http::response::Parts, bytes::Bytes)>>>;

/// A server that signs its answers with the key of seed `sign_with` (or not). With `replay`,
/// an attacker's layer in front captures the first signed answer and sends it again, instead
/// of the real one, for every later request.
async fn server(sign_with: Option<u8>, replay: Option<Captured>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let worker = KeyPair::from_seed(&[1; 32]).unwrap().public_key();
    let signature = SignatureLayer::new(SignaturePipeline::new(
        vouch_tower::Origin::http(addr),
        StaticResolver::new().with_ed25519(WORKER, &worker),
        ShardedReplayStore::new(10_000),
    ));
    let mut app = Router::new()
        .route(
            "/mcp",
            post(|| async {
                (
                    [("content-type", "application/json")],
                    r#"{"result":"real"}"#,
                )
            }),
        )
        .route(
            "/sse",
            post(|| async { ([("content-type", "text/event-stream")], "data: {}\n\n") }),
        );
    if let Some(seed) = sign_with {
        let key = SigningKey::ed25519_from_seed(&[seed; 32]).unwrap();
        app = app.layer(ResponseSigningLayer::new(key, SERVER_KEYID));
    }
    let app = app.layer(signature).layer(axum::middleware::map_response(
        move |response: Response<Body>| {
            let replay = replay.clone();
            async move {
                let Some(replay) = replay else {
                    return response;
                };
                let (parts, body) = response.into_parts();
                let bytes = body.collect().await.unwrap().to_bytes();
                let mut slot = replay.lock().unwrap();
                if let Some((old_parts, old_body)) = slot.as_ref() {
                    return Response::from_parts(old_parts.clone(), Body::from(old_body.clone()));
                }
                if parts.status == 200 && parts.headers.contains_key("content-digest") {
                    *slot = Some((parts.clone(), bytes.clone()));
                }
                Response::from_parts(parts, Body::from(bytes))
            }
        },
    ));
    tokio::spawn(async move {
        vouch_tower::serve(listener, app, vouch_tower::ServeConfig::default())
            .await
            .unwrap()
    });
    format!("http://{addr}")
}

fn server_public(seed: u8) -> vouch_token::PublicKey {
    KeyPair::from_seed(&[seed; 32]).unwrap().public_key()
}

fn client(server: ServerKey) -> reqwest_middleware::ClientWithMiddleware {
    crate::install_crypto();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let signer = SigningMiddleware::new(SigningKey::ed25519_from_seed(&[1; 32]).unwrap(), WORKER)
        .verify_responses(server);
    ClientBuilder::new(http).with(signer).build()
}

fn fixed(seed: u8) -> ServerKey {
    ServerKey::fixed(
        SigningKey::ed25519_from_seed(&[seed; 32])
            .unwrap()
            .verifying_key()
            .unwrap(),
    )
}

fn refusal(e: reqwest_middleware::Error) -> ResponseError {
    match e {
        reqwest_middleware::Error::Middleware(e) => e.downcast::<ResponseError>().unwrap(),
        e => panic!("not a refusal: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_answers_verify_with_the_fixed_or_the_pinned_key() {
    let url = server(Some(9), None).await;
    let res = client(fixed(9))
        .post(format!("{url}/mcp"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.url().as_str().ends_with("/mcp"), "the URL is kept");
    assert_eq!(res.text().await.unwrap(), r#"{"result":"real"}"#);

    let pinned = ServerKey::pinned(
        StaticResolver::new().with_ed25519(SERVER_KEYID, &server_public(9)),
        jwk_thumbprint(&server_public(9)),
    );
    let res = client(pinned)
        .post(format!("{url}/mcp"))
        .body("{}")
        .send()
        .await;
    assert_eq!(res.unwrap().status(), 200);

    // An event stream: its head checks, the stream is handed on.
    let res = client(fixed(9))
        .post(format!("{url}/sse"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.text().await.unwrap(), "data: {}\n\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_or_foreign_answers_are_refused() {
    // A server that does not sign.
    let url = server(None, None).await;
    let e = client(fixed(9))
        .post(format!("{url}/mcp"))
        .body("{}")
        .send()
        .await;
    let e = refusal(e.unwrap_err());
    assert!(matches!(e, ResponseError::Unsigned { status: 200 }));
    assert_eq!(
        e.to_string(),
        "response refused: it is not signed by the server (HTTP 200)"
    );

    // The signature layer's own refusal (here: a key the server does not know) is not bound to
    // any verified request, so it is unsigned, and the status says why.
    let url = server(Some(9), None).await;
    crate::install_crypto();
    let stranger = SigningMiddleware::new(SigningKey::ed25519_from_seed(&[3; 32]).unwrap(), WORKER)
        .verify_responses(fixed(9));
    let stranger = ClientBuilder::new(reqwest::Client::builder().no_proxy().build().unwrap())
        .with(stranger)
        .build();
    let e = stranger.post(format!("{url}/mcp")).body("{}").send().await;
    assert!(matches!(
        refusal(e.unwrap_err()),
        ResponseError::Unsigned { status: 401 }
    ));

    // Signed by another key than the configured one.
    let url = server(Some(8), None).await;
    let e = client(fixed(9))
        .post(format!("{url}/mcp"))
        .body("{}")
        .send()
        .await;
    assert!(matches!(
        refusal(e.unwrap_err()),
        ResponseError::Rejected(vouch_httpsig::Error::BadSignature)
    ));

    // Pinned to another key than the one the keyid resolves to.
    let pinned = ServerKey::pinned(
        StaticResolver::new().with_ed25519(SERVER_KEYID, &server_public(8)),
        jwk_thumbprint(&server_public(9)),
    );
    let e = client(pinned)
        .post(format!("{url}/mcp"))
        .body("{}")
        .send()
        .await;
    assert!(matches!(
        refusal(e.unwrap_err()),
        ResponseError::KeyNotPinned
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_replayed_onto_another_request_is_refused() {
    let captured = Captured::default();
    let url = server(Some(9), Some(captured.clone())).await;
    let client = client(fixed(9));
    // The first answer is real (and captured by the attacker's layer).
    let res = client.post(format!("{url}/mcp")).body("{}").send().await;
    assert_eq!(res.unwrap().status(), 200);
    assert!(captured.lock().unwrap().is_some());
    // The second request gets the first answer, validly signed by the server, for another
    // request: refused.
    let e = client.post(format!("{url}/mcp")).body("{}").send().await;
    assert!(matches!(
        refusal(e.unwrap_err()),
        ResponseError::Rejected(vouch_httpsig::Error::BadSignature)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_cap_is_refused() {
    let url = server(Some(9), None).await;
    crate::install_crypto();
    let signer = SigningMiddleware::new(SigningKey::ed25519_from_seed(&[1; 32]).unwrap(), WORKER)
        .verify_responses(fixed(9))
        .max_response_bytes(4);
    let client = ClientBuilder::new(reqwest::Client::builder().no_proxy().build().unwrap())
        .with(signer)
        .build();
    let e = client.post(format!("{url}/mcp")).body("{}").send().await;
    assert!(matches!(refusal(e.unwrap_err()), ResponseError::TooLarge));
}
