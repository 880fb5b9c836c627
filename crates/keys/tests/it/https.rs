//! The HTTPS resolver against a local HTTP server (plain http and loopback explicitly allowed),
//! counting the requests the server sees.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use vouch_keys::*;
use vouch_token::{KeyPair, PublicKey};

fn public(seed: u8) -> PublicKey {
    KeyPair::from_seed(&[seed; 32]).unwrap().public_key()
}

struct Server {
    base: String,
    hits: Arc<AtomicUsize>,
}

/// Serves the key documents under test; `/slow` never answers in time, `/redirect` redirects,
/// `/big` is 200 KB.
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
                counter.fetch_add(1, Ordering::SeqCst);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                let (status, body) = route(&path).await;
                let reply = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nlocation: http://169.254.169.254/latest\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(reply.as_bytes()).await;
            });
        }
    });
    Server { base, hits }
}

async fn route(path: &str) -> (&'static str, String) {
    let jwk = |seed: u8| public_jwk(&public(seed));
    match path {
        "/keys/pem" => ("200 OK", json!({"public_key": encode_public(&public(1), KeyFormat::Pem)}).to_string()),
        "/keys/jwk" => ("200 OK", jwk(2).to_string()),
        "/keys/jwks" => ("200 OK", json!({"keys": [jwk(3)]}).to_string()),
        "/keys/jwks-many" => ("200 OK", json!({"keys": [jwk(3), jwk(4)]}).to_string()),
        "/.well-known/http-message-signatures-directory" => ("200 OK", json!({"keys": [jwk(5), jwk(6)]}).to_string()),
        "/did.json" => ("200 OK", json!({
            "id": "did:web:agents.example",
            "verificationMethod": [
                {"id": "did:web:agents.example#key-1", "type": "JsonWebKey2020", "publicKeyJwk": jwk(7)},
                {"id": "did:web:agents.example#key-2", "type": "JsonWebKey2020", "publicKeyJwk": jwk(8)}
            ]
        }).to_string()),
        "/agents/bot@localhost" => ("200 OK", jwk(9).to_string()),
        "/weak/jwk" => ("200 OK", public_jwk(&weak_key()).to_string()),
        "/weak/.well-known/http-message-signatures-directory" => (
            "200 OK",
            json!({"keys": [public_jwk(&weak_key()), jwk(5)]}).to_string(),
        ),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(10)).await;
            ("200 OK", jwk(1).to_string())
        }
        "/redirect" => ("302 Found", String::new()),
        "/big" => ("200 OK", format!("{{\"pad\": \"{}\"}}", "x".repeat(200_000))),
        "/rsa" => ("200 OK", json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"}).to_string()),
        _ => ("404 Not Found", "{}".to_owned()),
    }
}

/// The identity point: a key under which `R = identity, S = 0` verifies for any message.
fn weak_key() -> PublicKey {
    crate::weak_keys::weak()[0].0
}

fn resolver(config: HttpsConfig) -> HttpsResolver {
    HttpsResolver::new(config).unwrap()
}

#[tokio::test]
async fn every_document_shape_resolves() {
    let s = serve().await;
    let r = resolver(HttpsConfig::loopback_testing());
    let key = |k: ResolvedKey| k.key().public_bytes().to_vec();
    assert_eq!(
        key(r.resolve(&format!("{}/keys/pem", s.base)).await.unwrap()),
        public(1).as_bytes()
    );
    assert_eq!(
        key(r.resolve(&format!("{}/keys/jwk", s.base)).await.unwrap()),
        public(2).as_bytes()
    );
    assert_eq!(
        key(r.resolve(&format!("{}/keys/jwks", s.base)).await.unwrap()),
        public(3).as_bytes()
    );
    let pick = format!("{}/keys/jwks-many#{}", s.base, jwk_thumbprint(&public(4)));
    assert_eq!(key(r.resolve(&pick).await.unwrap()), public(4).as_bytes());
    assert!(
        matches!(
            r.resolve(&format!("{}/keys/jwks-many", s.base)).await,
            Err(ResolveError::Fetch(_))
        ),
        "ambiguous"
    );
    assert_eq!(
        key(r
            .resolve(&format!("{}/did.json#key-2", s.base))
            .await
            .unwrap()),
        public(8).as_bytes()
    );
    assert!(matches!(
        r.resolve(&format!("{}/rsa", s.base)).await,
        Err(ResolveError::Fetch(_))
    ));
    assert!(matches!(
        r.resolve(&format!("{}/missing", s.base)).await,
        Err(ResolveError::Fetch(_))
    ));

    // The web-bot-auth directory: keyids are JWK thumbprints.
    let dir = resolver(HttpsConfig::loopback_testing())
        .with_directory(&format!(
            "{}/.well-known/http-message-signatures-directory",
            s.base
        ))
        .unwrap();
    let thumb = jwk_thumbprint(&public(6));
    assert_eq!(
        key(dir.resolve(&thumb).await.unwrap()),
        public(6).as_bytes()
    );
    assert_eq!(
        dir.resolve(&jwk_thumbprint(&public(1))).await.unwrap_err(),
        ResolveError::Unknown
    );
    assert_eq!(
        dir.resolve("not-a-url-or-thumbprint").await.unwrap_err(),
        ResolveError::Unknown
    );
}

#[tokio::test]
async fn weak_keys_in_fetched_documents_and_directories_are_refused() {
    let s = serve().await;
    let r = resolver(HttpsConfig::loopback_testing());
    let refused = |r: Result<ResolvedKey, ResolveError>| match r {
        Err(ResolveError::Refused(why)) => assert!(why.contains("of small order"), "{why}"),
        other => panic!("{other:?}"),
    };
    refused(r.resolve(&format!("{}/weak/jwk", s.base)).await);
    refused(r.resolve(&did_key(&weak_key())).await);

    let dir = resolver(HttpsConfig::loopback_testing())
        .with_directory(&format!(
            "{}/weak/.well-known/http-message-signatures-directory",
            s.base
        ))
        .unwrap();
    refused(dir.resolve(&jwk_thumbprint(&weak_key())).await);
    // The good key next to it still resolves.
    assert_eq!(
        dir.resolve(&jwk_thumbprint(&public(5)))
            .await
            .unwrap()
            .key()
            .public_bytes(),
        public(5).as_bytes()
    );
}

#[tokio::test]
async fn guards_refuse_before_fetching() {
    let s = serve().await;
    // Default config: https only and no private addresses.
    let strict = resolver(HttpsConfig::default());
    for keyid in [
        format!("{}/keys/jwk", s.base),
        "https://127.0.0.1/keys/jwk".to_owned(),
        "https://[::1]/k".to_owned(),
        "https://169.254.169.254/latest".to_owned(),
        "https://10.0.0.7/k".to_owned(),
        "https://localhost/k".to_owned(),
    ] {
        assert!(
            matches!(strict.resolve(&keyid).await, Err(ResolveError::Refused(_))),
            "{keyid}"
        );
    }
    assert_eq!(
        strict.resolve("ftp://example.com/k").await.unwrap_err(),
        ResolveError::Unknown,
        "not a key URL"
    );
    let did = did_key(&public(4));
    assert_eq!(
        strict.resolve(&did).await.unwrap().key().public_bytes(),
        public(4).as_bytes(),
        "did:key needs no fetch"
    );
    // A spoofed address: this host may not speak for example.com.
    let open = resolver(HttpsConfig::loopback_testing());
    let spoof = format!("{}/agents/victim@example.com", s.base);
    assert!(matches!(
        open.resolve(&spoof).await,
        Err(ResolveError::Refused(_))
    ));
    assert_eq!(s.hits.load(Ordering::SeqCst), 0, "nothing was fetched");
    // With a rule that lets this host speak for localhost, the address keyid resolves.
    let rule = IdentityRule::Custom(Arc::new(|host: &str, domain: &str| {
        host == "127.0.0.1" && domain == "localhost"
    }));
    let allowed = resolver(HttpsConfig::loopback_testing().identity_rule(rule));
    let k = allowed
        .resolve(&format!("{}/agents/bot@localhost", s.base))
        .await
        .unwrap();
    assert_eq!(k.key().public_bytes(), public(9).as_bytes());
    assert_eq!(s.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn redirects_oversize_and_slow_servers_are_refused() {
    let s = serve().await;
    let r = resolver(HttpsConfig::loopback_testing().limits(Duration::from_millis(500), 64 * 1024));
    let redirect = r
        .resolve(&format!("{}/redirect", s.base))
        .await
        .unwrap_err();
    assert!(
        matches!(&redirect, ResolveError::Refused(why) if why.contains("redirect")),
        "{redirect}"
    );
    let big = r.resolve(&format!("{}/big", s.base)).await.unwrap_err();
    assert!(
        matches!(&big, ResolveError::Fetch(why) if why.contains("larger")),
        "{big}"
    );
    let started = std::time::Instant::now();
    let slow = r.resolve(&format!("{}/slow", s.base)).await.unwrap_err();
    assert!(matches!(slow, ResolveError::Fetch(_)), "{slow}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the timeout cut the request short"
    );
    assert_eq!(
        s.hits.load(Ordering::SeqCst),
        3,
        "the redirect target was never fetched"
    );
}

#[tokio::test]
async fn cached_https_resolution_fetches_once_per_keyid() {
    let s = serve().await;
    let cache = Arc::new(CachingResolver::new(
        resolver(HttpsConfig::loopback_testing()),
        CacheConfig::default(),
    ));
    let keyid = format!("{}/keys/jwk", s.base);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (c, k) = (cache.clone(), keyid.clone());
            tokio::spawn(async move { c.resolve(&k).await.is_ok() })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap());
    }
    assert_eq!(s.hits.load(Ordering::SeqCst), 1);
}

#[test]
fn non_public_ranges() {
    for ip in [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "255.255.255.255",
        "::1",
        "fe80::1",
        "fd00:ec2::254",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "2001:db8::1",
    ] {
        assert!(is_non_public(ip.parse().unwrap()), "{ip}");
    }
    for ip in ["1.1.1.1", "93.184.216.34", "2606:4700:4700::1111"] {
        assert!(!is_non_public(ip.parse().unwrap()), "{ip}");
    }
}
