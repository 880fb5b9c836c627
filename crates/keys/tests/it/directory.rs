//! The Web Bot Auth directory resolver against a local HTTP server (plain http and loopback
//! explicitly allowed), and the guards that refuse before any fetch under the default config.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use vouch_httpsig::{AgentKind, DIRECTORY_MEDIA_TYPE, SignatureAgent};
use vouch_keys::*;
use vouch_token::{KeyPair, PublicKey};

fn public(seed: u8) -> PublicKey {
    KeyPair::from_seed(&[seed; 32]).unwrap().public_key()
}

struct Server {
    base: String,
    hits: Arc<AtomicUsize>,
}

/// One canned answer per path (`hit` counts the server's earlier requests): status, content
/// type, body.
fn route(path: &str, hit: usize) -> (&'static str, &'static str, String) {
    let jwk = |seed: u8| public_jwk(&public(seed));
    let mislabelled = {
        let mut k = jwk(6);
        k["kid"] = json!(jwk_thumbprint(&public(5)));
        k
    };
    match path {
        "/ok/.well-known/http-message-signatures-directory" => (
            "200 OK",
            "application/http-message-signatures-directory+json; charset=utf-8",
            json!({"keys": [jwk(5), jwk(6)]}).to_string(),
        ),
        "/json/.well-known/http-message-signatures-directory" => (
            "200 OK",
            "application/json",
            json!({"keys": [jwk(5)]}).to_string(),
        ),
        "/mislabelled/.well-known/http-message-signatures-directory" => (
            "200 OK",
            DIRECTORY_MEDIA_TYPE,
            json!({"keys": [mislabelled]}).to_string(),
        ),
        "/kid-lies/.well-known/http-message-signatures-directory" => (
            "200 OK",
            DIRECTORY_MEDIA_TYPE,
            // Claims the thumbprint of key 5 as kid, but holds key 6 (and a wrong-kid key 7).
            json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": jwk_thumbprint(&public(5)),
                "x": jwk(6)["x"].clone()}]})
            .to_string(),
        ),
        "/many/.well-known/http-message-signatures-directory" => (
            "200 OK",
            DIRECTORY_MEDIA_TYPE,
            json!({"keys": (0..=MAX_DIRECTORY_KEYS).map(|i| jwk(10 + (i % 50) as u8)).collect::<Vec<_>>()})
                .to_string(),
        ),
        "/big/.well-known/http-message-signatures-directory" => (
            "200 OK",
            DIRECTORY_MEDIA_TYPE,
            format!("{{\"keys\": [], \"pad\": \"{}\"}}", "x".repeat(200_000)),
        ),
        "/redirect/.well-known/http-message-signatures-directory" => {
            ("302 Found", DIRECTORY_MEDIA_TYPE, String::new())
        }
        "/gone/.well-known/http-message-signatures-directory" => {
            ("404 Not Found", DIRECTORY_MEDIA_TYPE, "{}".to_owned())
        }
        // Answers once, then fails: an outage.
        "/flaky/.well-known/http-message-signatures-directory" if hit == 0 => (
            "200 OK",
            DIRECTORY_MEDIA_TYPE,
            json!({"keys": [jwk(6)]}).to_string(),
        ),
        "/flaky/.well-known/http-message-signatures-directory" => {
            ("503 Service Unavailable", "text/plain", String::new())
        }
        // Lists key 6 once, then drops it: a removal.
        "/rotating/.well-known/http-message-signatures-directory" => (
            "200 OK",
            DIRECTORY_MEDIA_TYPE,
            json!({"keys": if hit == 0 { vec![jwk(6)] } else { vec![jwk(7)] }}).to_string(),
        ),
        "/jwks.json" => (
            "200 OK",
            "application/jwk-set+json",
            json!({"keys": [jwk(7)]}).to_string(),
        ),
        "/jwks-html" => ("200 OK", "text/html", json!({"keys": [jwk(7)]}).to_string()),
        _ => ("404 Not Found", "application/json", "{}".to_owned()),
    }
}

async fn serve() -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut n = 0;
                while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(m) => n += m,
                    }
                }
                let hit = counter.fetch_add(1, Ordering::SeqCst);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                let (status, content_type, body) = route(&path, hit);
                let reply = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nlocation: http://169.254.169.254/latest\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(reply.as_bytes()).await;
            });
        }
    });
    Server { base, hits }
}

fn loopback() -> DirectoryResolver {
    DirectoryResolver::new(HttpsConfig::loopback_testing(), CacheConfig::default()).unwrap()
}

fn directory(s: &Server, dir: &str) -> String {
    format!(
        "{}/{dir}/.well-known/http-message-signatures-directory",
        s.base
    )
}

fn thumb(seed: u8) -> String {
    jwk_thumbprint(&public(seed))
}

#[tokio::test]
async fn finds_the_key_by_thumbprint_and_caches_per_directory_and_keyid() {
    let s = serve().await;
    let r = loopback();
    let url = directory(&s, "ok");
    let key = r
        .resolve_url(AgentKind::Directory, &url, &thumb(6))
        .await
        .unwrap();
    assert_eq!(key.key().public_bytes(), public(6).as_bytes());
    assert_eq!(key.fingerprint(), thumb(6));
    // Cached: the same pair again fetches nothing.
    r.resolve_url(AgentKind::Directory, &url, &thumb(6))
        .await
        .unwrap();
    assert_eq!(s.hits.load(Ordering::SeqCst), 1);
    // A key the directory does not list.
    assert_eq!(
        r.resolve_url(AgentKind::Directory, &url, &thumb(9))
            .await
            .unwrap_err(),
        ResolveError::Unknown
    );
    // A keyid that is not a thumbprint: nothing fetched.
    let before = s.hits.load(Ordering::SeqCst);
    assert_eq!(
        r.resolve_url(AgentKind::Directory, &url, "agent-a")
            .await
            .unwrap_err(),
        ResolveError::Unknown
    );
    assert_eq!(s.hits.load(Ordering::SeqCst), before);
}

#[tokio::test]
async fn the_same_key_under_another_directory_is_another_lookup() {
    let s = serve().await;
    let r = loopback();
    r.resolve_url(AgentKind::Directory, &directory(&s, "ok"), &thumb(5))
        .await
        .unwrap();
    // Key 5 was learned from /ok; /json is asked on its own (and refused for its media type).
    assert!(
        r.resolve_url(AgentKind::Directory, &directory(&s, "json"), &thumb(5))
            .await
            .is_err()
    );
    assert_eq!(s.hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn refuses_the_wrong_media_type() {
    let s = serve().await;
    let r = loopback();
    let err = r
        .resolve_url(AgentKind::Directory, &directory(&s, "json"), &thumb(5))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ResolveError::Fetch(why) if why.contains("media type")),
        "{err:?}"
    );
    let err = r
        .resolve_url(
            AgentKind::JwksUri,
            &format!("{}/jwks-html", s.base),
            &thumb(7),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ResolveError::Fetch(why) if why.contains("media type")),
        "{err:?}"
    );
    // jwks_uri accepts a JWK Set media type.
    let key = r
        .resolve_url(
            AgentKind::JwksUri,
            &format!("{}/jwks.json", s.base),
            &thumb(7),
        )
        .await
        .unwrap();
    assert_eq!(key.key().public_bytes(), public(7).as_bytes());
}

#[tokio::test]
async fn refuses_redirects_errors_oversized_and_crowded_directories() {
    let s = serve().await;
    let r = loopback();
    let err = r
        .resolve_url(AgentKind::Directory, &directory(&s, "redirect"), &thumb(5))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ResolveError::Refused(why) if why.contains("redirect")),
        "{err:?}"
    );
    let err = r
        .resolve_url(AgentKind::Directory, &directory(&s, "gone"), &thumb(5))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ResolveError::Fetch(why) if why.contains("404")),
        "{err:?}"
    );
    let err = r
        .resolve_url(AgentKind::Directory, &directory(&s, "big"), &thumb(5))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ResolveError::Fetch(why) if why.contains("larger")),
        "{err:?}"
    );
    let err = r
        .resolve_url(AgentKind::Directory, &directory(&s, "many"), &thumb(10))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ResolveError::Fetch(why) if why.contains("more than")),
        "{err:?}"
    );
}

#[tokio::test]
async fn refuses_a_key_whose_thumbprint_differs_from_its_kid() {
    let s = serve().await;
    let r = loopback();
    // The directory says kid = thumbprint(5) but holds key 6: key 5 is not there.
    assert_eq!(
        r.resolve_url(AgentKind::Directory, &directory(&s, "kid-lies"), &thumb(5))
            .await
            .unwrap_err(),
        ResolveError::Unknown
    );
    // Asked for key 6 itself, its mislabelled kid is refused.
    assert!(matches!(
        r.resolve_url(AgentKind::Directory, &directory(&s, "kid-lies"), &thumb(6))
            .await
            .unwrap_err(),
        ResolveError::Refused(_)
    ));
    assert!(matches!(
        r.resolve_url(
            AgentKind::Directory,
            &directory(&s, "mislabelled"),
            &thumb(6)
        )
        .await
        .unwrap_err(),
        ResolveError::Refused(_)
    ));
}

#[tokio::test]
async fn default_guards_refuse_private_agents_before_fetching() {
    let s = serve().await;
    let strict = DirectoryResolver::new(HttpsConfig::default(), CacheConfig::default()).unwrap();
    let port = s.base.rsplit(':').next().unwrap().to_owned();
    for origin in [
        format!("https://127.0.0.1:{port}"),
        "https://10.0.0.1".to_owned(),
        "https://169.254.169.254".to_owned(),
        "https://[::1]".to_owned(),
        "https://localhost".to_owned(),
    ] {
        let agent = SignatureAgent::parse("sig1", &origin, AgentKind::Directory).unwrap();
        let err = strict.resolve_agent(&agent, &thumb(5)).await.unwrap_err();
        assert!(matches!(err, ResolveError::Refused(_)), "{origin}: {err:?}");
    }
    // Plain http is refused too, even on loopback.
    let err = strict
        .resolve_url(AgentKind::Directory, &directory(&s, "ok"), &thumb(5))
        .await
        .unwrap_err();
    assert!(matches!(err, ResolveError::Refused(_)), "{err:?}");
    assert_eq!(s.hits.load(Ordering::SeqCst), 0);
}

/// A Web Bot Auth request signed with key `seed`, naming https://agent.example.
fn signed_request(seed: u8, cover_agent: bool) -> http::Request<Vec<u8>> {
    use vouch_httpsig::{Component, RequestView, SigningKey, sign, web_bot_auth_spec};
    let key = SigningKey::ed25519_from_seed(&[seed; 32]).unwrap();
    let mut request = http::Request::get("https://origin.example/page")
        .header("signature-agent", "sig1=\"https://agent.example\"")
        .body(Vec::new())
        .unwrap();
    let now = 1_800_000_000;
    let mut spec = web_bot_auth_spec(
        &RequestView::of(&request),
        &key,
        Some("sig1"),
        now,
        now + 60,
    )
    .unwrap();
    if !cover_agent {
        // The same parameters over @authority and @method only.
        let keep: Vec<Component> = spec
            .components()
            .iter()
            .filter(|c| c.name() != "signature-agent")
            .cloned()
            .collect();
        spec = keep
            .into_iter()
            .fold(vouch_httpsig::SignatureSpec::new("sig1"), |s, c| s.cover(c))
            .created(now)
            .expires(now + 60)
            .keyid(thumb(seed))
            .tag(vouch_httpsig::WEB_BOT_AUTH_TAG);
    }
    sign(RequestView::of(&request), &spec, &key)
        .unwrap()
        .apply(request.headers_mut())
        .unwrap();
    request
}

#[tokio::test]
async fn a_signed_request_resolves_its_key_and_verifies() {
    use vouch_httpsig::{RequestView, Verifier, VerifyPolicy};
    let s = serve().await;
    let r = loopback();
    let request = signed_request(6, true);
    let prepared = Verifier::new(VerifyPolicy::web_bot_auth())
        .prepare(RequestView::of(&request), 1_800_000_001)
        .unwrap();
    let agent = prepared.signature_agent().unwrap().clone();
    assert_eq!(prepared.keyid(), Some(thumb(6).as_str()));
    // The test server stands in for https://agent.example (plain http on loopback).
    let key = r
        .resolve_url(
            agent.kind(),
            &directory(&s, "ok"),
            prepared.keyid().unwrap(),
        )
        .await
        .unwrap();
    prepared.verify(key.key()).unwrap();
}

#[tokio::test]
async fn nothing_is_fetched_for_a_signature_agent_the_signature_does_not_cover() {
    use vouch_httpsig::{Error, RequestView, Verifier, VerifyPolicy};
    let s = serve().await;
    let request = signed_request(6, false);
    let err = Verifier::new(VerifyPolicy::web_bot_auth())
        .prepare(RequestView::of(&request), 1_800_000_001)
        .unwrap_err();
    assert!(matches!(err, Error::MissingComponent(_)), "{err:?}");
    // prepare failed, so the verifier has no agent to fetch: the server saw nothing.
    assert_eq!(s.hits.load(Ordering::SeqCst), 0);
}

fn uncached() -> DirectoryResolver {
    DirectoryResolver::new(
        HttpsConfig::loopback_testing(),
        CacheConfig::default().ttls(std::time::Duration::ZERO, std::time::Duration::ZERO),
    )
    .unwrap()
}

#[tokio::test]
async fn an_outage_does_not_revoke_a_key_that_resolved() {
    let s = serve().await;
    let r = uncached();
    let url = directory(&s, "flaky");
    r.resolve_url(AgentKind::Directory, &url, &thumb(6))
        .await
        .unwrap();
    // The directory now answers 503: the key that resolved stays usable.
    let key = r
        .resolve_url(AgentKind::Directory, &url, &thumb(6))
        .await
        .unwrap();
    assert_eq!(key.key().public_bytes(), public(6).as_bytes());
    assert_eq!(s.hits.load(Ordering::SeqCst), 2);
    // A key never resolved gets no such grace.
    assert!(matches!(
        r.resolve_url(AgentKind::Directory, &url, &thumb(5))
            .await
            .unwrap_err(),
        ResolveError::Fetch(_)
    ));
}

#[tokio::test]
async fn a_key_removed_from_the_directory_stops_resolving() {
    let s = serve().await;
    let r = uncached();
    let url = directory(&s, "rotating");
    r.resolve_url(AgentKind::Directory, &url, &thumb(6))
        .await
        .unwrap();
    // The directory now lists key 7 only: that is evidence, not an outage.
    assert_eq!(
        r.resolve_url(AgentKind::Directory, &url, &thumb(6))
            .await
            .unwrap_err(),
        ResolveError::Unknown
    );
}
