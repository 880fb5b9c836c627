//! An axum server with both vouch layers on 127.0.0.1 and a reqwest client with both
//! middlewares.

use axum::Router;
use axum::routing::post;
use reqwest_middleware::ClientBuilder;
use serde_json::json;
use vouch_httpsig::SigningKey;
use vouch_keys::{ShardedReplayStore, StaticResolver};
use vouch_reqwest::{SignError, SigningMiddleware, TokenMiddleware};
use vouch_token::{Access, KeyPair, Restriction, Token, Verifier};
use vouch_tower::{
    CapabilityLayer, CapabilityPipeline, Grants, SignatureLayer, SignaturePipeline, VerifiedCaller,
};

const WORKER: &str = "https://agents.example/agents/worker@agents.example";

async fn server(root: &KeyPair) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let worker_pk = KeyPair::from_seed(&[1; 32]).unwrap().public_key();
    let signature = SignatureLayer::new(SignaturePipeline::new(
        vouch_tower::Origin::http(addr),
        StaticResolver::new().with_ed25519(WORKER, &worker_pk),
        ShardedReplayStore::new(10_000),
    ));
    let capability = CapabilityLayer::new(
        CapabilityPipeline::new(Verifier::new(root.public_key())).operation("db_query", "read"),
    );
    let app = Router::new()
        .route(
            "/mcp",
            post(|caller: VerifiedCaller, grants: Grants| async move {
                format!(
                    "{} may read {} rows",
                    caller.identity,
                    grants.limit("db_query", "max_rows").unwrap_or(0)
                )
            }),
        )
        .route(
            "/echo-token",
            post(|headers: http::HeaderMap| async move {
                // What reached the server, past both layers.
                headers["x-mcpvault-token"].to_str().unwrap().to_owned()
            }),
        )
        .layer(capability)
        .layer(signature);
    tokio::spawn(async move {
        vouch_tower::serve(listener, app, vouch_tower::ServeConfig::default())
            .await
            .unwrap()
    });
    format!("http://{addr}/mcp")
}

fn http_client() -> reqwest::Client {
    crate::install_crypto();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn tools_call(tool: &str) -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": {}}}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_client_with_token_against_a_protected_server() {
    let root = KeyPair::from_seed(&[9; 32]).unwrap();
    let url = server(&root).await;
    let token = Token::mint(
        &root,
        "auth-server",
        "agent-a",
        Restriction::new()
            .tools(["db_query"])
            .limit("db_query", "max_rows", 50)
            .ttl(600),
    )
    .unwrap()
    .attenuate(
        Restriction::new()
            .holder(WORKER)
            .limit("db_query", "max_rows", 10),
    )
    .unwrap()
    .to_base64();
    let client = ClientBuilder::new(http_client())
        .with(TokenMiddleware::new(&token).unwrap())
        .with(SigningMiddleware::new(
            SigningKey::ed25519_from_seed(&[1; 32]).unwrap(),
            WORKER,
        ))
        .build();

    let res = client
        .post(&url)
        .header("content-type", "application/json")
        .body(tools_call("db_query"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.text().await.unwrap(),
        "worker@agents.example may read 10 rows"
    );

    let res = client
        .post(&url)
        .body(tools_call("shell"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "tool outside the token");

    // Unsigned, with the same token: the signature layer refuses first.
    let res = http_client()
        .post(&url)
        .header("x-mcpvault-token", &token)
        .body(tools_call("db_query"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers().contains_key("www-authenticate"));

    // Another agent that stole the token signs with its own key: unknown key / not the holder.
    let thief = ClientBuilder::new(http_client())
        .with(TokenMiddleware::new(&token).unwrap())
        .with(SigningMiddleware::new(
            SigningKey::ed25519_from_seed(&[2; 32]).unwrap(),
            WORKER,
        ))
        .build();
    assert_eq!(
        thief
            .post(&url)
            .body(tools_call("db_query"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

/// The worker's token as its holder keeps it: unsealed, so that it can attenuate it further.
fn worker_token(root: &KeyPair) -> String {
    Token::mint(
        root,
        "auth-server",
        "agent-a",
        Restriction::new()
            .tools(["db_query"])
            .limit("db_query", "max_rows", 50)
            .ttl(600),
    )
    .unwrap()
    .attenuate(
        Restriction::new()
            .holder(WORKER)
            .limit("db_query", "max_rows", 10),
    )
    .unwrap()
    .to_base64()
}

/// Sends one signed `db_query` call with `token` attached, and returns the token text the server
/// received (the call passed the signature and capability layers).
async fn received(url: &str, token: TokenMiddleware) -> String {
    let client = ClientBuilder::new(http_client())
        .with(token)
        .with(SigningMiddleware::new(
            SigningKey::ed25519_from_seed(&[1; 32]).unwrap(),
            WORKER,
        ))
        .build();
    let res = client
        .post(url.replace("/mcp", "/echo-token"))
        .body(tools_call("db_query"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.text().await.unwrap()
}

fn facts(root: &KeyPair, token: &Token) -> vouch_token::Facts {
    Verifier::new(root.public_key())
        .verify(token, &Access::now().caller(WORKER).tool("db_query"))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_receives_the_token_sealed_and_it_grants_the_same() {
    let root = KeyPair::from_seed(&[9; 32]).unwrap();
    let url = server(&root).await;
    let held = worker_token(&root);

    let sent = received(&url, TokenMiddleware::new(&held).unwrap()).await;
    assert_ne!(sent, held);
    let sent = Token::from_base64(&sent).unwrap();
    assert!(sent.is_sealed(), "the server gets no attenuation secret");
    let held = Token::from_base64(&held).unwrap();
    assert!(!held.is_sealed());
    assert_eq!(facts(&root, &sent), facts(&root, &held));
    assert_eq!(facts(&root, &sent).limit("db_query", "max_rows"), Some(10));

    // The server cannot delegate what it received; the holder still can.
    assert!(sent.attenuate(Restriction::new().ttl(60)).is_err());
    assert!(held.attenuate(Restriction::new().ttl(60)).is_ok());

    // Another header: sealed too.
    let middleware = TokenMiddleware::with_header(
        http::HeaderName::from_static("x-mcpvault-token"),
        &held.to_base64(),
    )
    .unwrap();
    let sent = received(&url, middleware).await;
    assert!(Token::from_base64(&sent).unwrap().is_sealed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_already_sealed_token_is_sent_as_is() {
    let root = KeyPair::from_seed(&[9; 32]).unwrap();
    let url = server(&root).await;
    let sealed = Token::from_base64(&worker_token(&root))
        .unwrap()
        .seal()
        .unwrap()
        .to_base64();
    assert_eq!(
        received(&url, TokenMiddleware::new(&sealed).unwrap()).await,
        sealed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unsealed_opt_out_sends_the_token_as_given() {
    let root = KeyPair::from_seed(&[9; 32]).unwrap();
    let url = server(&root).await;
    let held = worker_token(&root);
    let sent = received(&url, TokenMiddleware::unsealed(&held).unwrap()).await;
    assert_eq!(sent, held);
    assert!(!Token::from_base64(&sent).unwrap().is_sealed());

    let middleware = TokenMiddleware::unsealed_with_header(
        http::HeaderName::from_static("x-mcpvault-token"),
        &held,
    )
    .unwrap();
    assert_eq!(received(&url, middleware).await, held);
}

#[test]
fn a_token_that_does_not_parse_is_refused_at_configuration() {
    let header = || http::HeaderName::from_static("x-mcpvault-token");
    for garbage in ["dG9rZW4", "", "not base64!", "line\nbreak"] {
        for result in [
            TokenMiddleware::new(garbage),
            TokenMiddleware::with_header(header(), garbage),
            TokenMiddleware::unsealed(garbage),
            TokenMiddleware::unsealed_with_header(header(), garbage),
        ] {
            assert!(
                matches!(result, Err(SignError::Token(_))),
                "{garbage:?}: {result:?}"
            );
        }
    }

    // A token whose proof is not the secret of its last key cannot be sealed: refused too.
    let root = KeyPair::from_seed(&[9; 32]).unwrap();
    let mut bytes = Token::from_base64(&worker_token(&root)).unwrap().to_bytes();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let broken = Token::from_bytes(&bytes).unwrap().to_base64();
    let err = TokenMiddleware::new(&broken).unwrap_err();
    assert!(matches!(err, SignError::Token(_)), "{err}");
}

#[tokio::test]
async fn a_streaming_body_is_an_error_not_an_unsigned_request() {
    let client = ClientBuilder::new(http_client())
        .with(SigningMiddleware::new(
            SigningKey::ed25519_from_seed(&[1; 32]).unwrap(),
            WORKER,
        ))
        .build();
    // A port nothing listens on: if the middleware let the request through, the error would be
    // a connection error instead.
    let stream = futures_stream();
    let err = client
        .post("http://127.0.0.1:9/mcp")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("streaming body"), "{err}");
}

fn futures_stream()
-> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + Sync + 'static {
    struct Once(Option<Vec<u8>>);
    impl futures_core::Stream for Once {
        type Item = Result<Vec<u8>, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(self.0.take().map(Ok))
        }
    }
    Once(Some(b"{}".to_vec()))
}
