//! `upstream_unix_socket`: the upstream reached over a Unix domain socket, with the `Host` (and
//! signed authority) still the upstream URL's.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::StatusCode;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use vouch_gateway::{Error, Gateway};
use vouch_httpsig::SigningKey;
use vouch_keys::{ShardedReplayStore, StaticResolver};
use vouch_token::{KeyPair, Verifier};
use vouch_tower::{CapabilityPipeline, Origin, SignaturePipeline};

use crate::*;

/// The upstream URL the gateway is configured with: its host is never resolved.
const UPSTREAM_URL: &str = "http://upstream.internal:8000/mcp";

/// A socket path of this test's own, removed when dropped.
struct SocketPath(PathBuf);

impl SocketPath {
    fn new(name: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("vouch-gw-{}-{name}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        Self(path)
    }
}

impl Drop for SocketPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The test upstream's routes on a Unix socket at `path`; what it saw, and how many
/// connections it accepted.
fn unix_upstream(path: &SocketPath) -> (Upstream, Arc<AtomicUsize>) {
    let listener = tokio::net::UnixListener::bind(&path.0).unwrap();
    let up = Upstream::default();
    let accepted = Arc::new(AtomicUsize::new(0));
    let (app, counter) = (upstream_app(&up), accepted.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            let app = app.clone();
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app))
                    .await;
            });
        }
    });
    (up, accepted)
}

fn over(path: &SocketPath) -> impl FnOnce(Gateway) -> Gateway {
    let path = path.0.clone();
    move |g: Gateway| g.upstream_unix_socket(path).unwrap()
}

#[tokio::test]
async fn calls_reach_a_unix_socket_upstream_with_the_configured_host_on_one_connection() {
    let socket = SocketPath::new("calls");
    let (up, accepted) = unix_upstream(&socket);
    let gw = gateway(UPSTREAM_URL, over(&socket)).await;
    for _ in 0..2 {
        let response = send(signed(
            gw,
            &message("tools/call", Some("search")),
            Some(&token()),
            &[],
        ))
        .await;
        assert_status(&response, StatusCode::OK);
        let body: Value = serde_json::from_str(&text(response).await).unwrap();
        assert_eq!(body["result"]["ok"], true);
    }
    assert_eq!(up.calls(), 2);
    // Kept alive and reused, as over TCP.
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    let head = up.last_head();
    assert_eq!(head["host"], "upstream.internal:8000");
    assert_eq!(head["x-vouch-keyid"], AGENT);
    assert!(!head["x-vouch-grants"].is_empty());
    assert!(head.get("signature").is_none());
    assert!(head.get(vouch_tower::TOKEN_HEADER).is_none());
}

#[tokio::test]
async fn refusals_never_reach_a_unix_socket_upstream() {
    let socket = SocketPath::new("refusals");
    let (up, accepted) = unix_upstream(&socket);
    let gw = gateway(UPSTREAM_URL, over(&socket)).await;

    let mut unsigned = signed(
        gw,
        &message("tools/call", Some("search")),
        Some(&token()),
        &[],
    );
    unsigned.headers_mut().remove("signature");
    let response = send(unsigned).await;
    assert_status(&response, StatusCode::UNAUTHORIZED);

    // A tool the token does not grant.
    let response = send(signed(
        gw,
        &message("tools/call", Some("drop_table")),
        Some(&token()),
        &[],
    ))
    .await;
    assert_status(&response, StatusCode::FORBIDDEN);

    // No token at all.
    let response = send(signed(
        gw,
        &message("tools/call", Some("search")),
        None,
        &[],
    ))
    .await;
    assert_status(&response, StatusCode::UNAUTHORIZED);

    assert_eq!(up.calls(), 0);
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn tools_list_from_a_unix_socket_upstream_is_filtered() {
    let socket = SocketPath::new("listing");
    let (up, _) = unix_upstream(&socket);
    let gw = gateway(UPSTREAM_URL, over(&socket)).await;
    let response = send(signed(
        gw,
        &message("tools/list", None),
        Some(&token()),
        &[],
    ))
    .await;
    assert_status(&response, StatusCode::OK);
    let body: Value = serde_json::from_str(&text(response).await).unwrap();
    let names: Vec<&str> = body["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["search", "db_query"]);
    assert_eq!(up.calls(), 1);
}

#[tokio::test]
async fn a_missing_unix_socket_is_a_bad_gateway() {
    let socket = SocketPath::new("missing");
    let gw = gateway(UPSTREAM_URL, over(&socket)).await;
    let response = send(signed(
        gw,
        &message("tools/call", Some("search")),
        Some(&token()),
        &[],
    ))
    .await;
    assert_status(&response, StatusCode::BAD_GATEWAY);
    assert_eq!(error_code(response).await, "upstream_unavailable");
}

#[tokio::test]
async fn a_path_on_a_unix_socket_is_the_configured_one_whatever_the_host() {
    // The host of the URL is never connected to: an upstream URL naming another host still
    // goes to the socket.
    let socket = SocketPath::new("elsewhere");
    let (up, _) = unix_upstream(&socket);
    let gw = gateway("http://192.0.2.1:9/sse", over(&socket)).await;
    let response = send(signed(
        gw,
        &message("tools/call", Some("search")),
        Some(&token()),
        &[],
    ))
    .await;
    assert_status(&response, StatusCode::OK);
    up.release.notify_one();
    let body = text(response).await;
    assert!(body.contains(r#""ok":true"#), "{body}");
    assert_eq!(up.last_head()["host"], "192.0.2.1:9");
}

#[test]
fn a_unix_socket_needs_an_http_upstream_url_and_a_path() {
    let pipeline = || {
        SignaturePipeline::new(
            Origin::http("127.0.0.1:1".parse().unwrap()),
            StaticResolver::new(),
            ShardedReplayStore::new(10),
        )
    };
    let capability = || CapabilityPipeline::new(Verifier::new(root().public_key()));
    let https = Gateway::new("https://upstream.internal/mcp", pipeline(), capability())
        .unwrap()
        .upstream_unix_socket("/run/upstream.sock");
    assert!(matches!(https, Err(Error::Upstream(_))), "{https:?}");
    let empty = Gateway::new(UPSTREAM_URL, pipeline(), capability())
        .unwrap()
        .upstream_unix_socket("");
    assert!(matches!(empty, Err(Error::Upstream(_))), "{empty:?}");
}

#[tokio::test]
async fn a_signing_gateway_signs_the_configured_authority_over_a_unix_socket() {
    // A vouch-protected upstream for origin http://upstream.internal:8000, admitting only the
    // gateway's key, served on the socket.
    const GATEWAY_KEYID: &str = "https://gateway.example/agents/gateway@gateway.example";
    let socket = SocketPath::new("signed");
    let listener = tokio::net::UnixListener::bind(&socket.0).unwrap();
    let signatures = SignaturePipeline::new(
        "http://upstream.internal:8000".parse::<Origin>().unwrap(),
        StaticResolver::new().with_ed25519(
            GATEWAY_KEYID,
            &KeyPair::from_seed(&[5; 32]).unwrap().public_key(),
        ),
        ShardedReplayStore::new(1_000),
    );
    let seen = Upstream::default();
    let app = upstream_app(&seen).layer(vouch_tower::SignatureLayer::new(signatures));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let gw = gateway(UPSTREAM_URL, |g| {
        over(&socket)(g).sign_upstream(
            SigningKey::ed25519_from_seed(&[5; 32]).unwrap(),
            GATEWAY_KEYID,
        )
    })
    .await;
    let response = send(signed(
        gw,
        &message("tools/call", Some("search")),
        Some(&token()),
        &[],
    ))
    .await;
    assert_status(&response, StatusCode::OK);
    assert_eq!(seen.calls(), 1);
    assert!(seen.last_head().contains_key("signature"));
}
