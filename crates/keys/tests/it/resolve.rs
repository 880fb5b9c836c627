//! Static resolution, the address identity rule, and the cache: bounds, TTLs, single-flight.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use vouch_keys::*;
use vouch_token::KeyPair;

fn public(seed: u8) -> vouch_token::PublicKey {
    KeyPair::from_seed(&[seed; 32]).unwrap().public_key()
}

#[tokio::test]
async fn static_resolver_from_map_and_file() {
    let r = StaticResolver::new().with_ed25519("agent-a", &public(1));
    let k = r.resolve("agent-a").await.unwrap();
    assert_eq!(k.key().public_bytes(), public(1).as_bytes());
    assert_eq!(k.fingerprint(), jwk_thumbprint(&public(1)));
    assert_eq!(
        r.resolve("agent-b").await.unwrap_err(),
        ResolveError::Unknown
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    let jwk = public_jwk(&public(3));
    std::fs::write(
        &path,
        serde_json::json!({"a": public(2).to_hex(), "b": jwk, "c": did_key(&public(4))})
            .to_string(),
    )
    .unwrap();
    let r = StaticResolver::from_file(&path).unwrap();
    assert_eq!(r.len(), 3);
    assert_eq!(
        r.resolve("b").await.unwrap().key().public_bytes(),
        public(3).as_bytes()
    );
    assert_eq!(
        r.resolve("c").await.unwrap().key().public_bytes(),
        public(4).as_bytes()
    );

    std::fs::write(&path, r#"{"a": "not a key"}"#).unwrap();
    let err = StaticResolver::from_file(&path).unwrap_err().to_string();
    assert!(err.contains("keys.json") && err.contains("\"a\""), "{err}");
}

#[test]
fn address_claims_and_the_identity_rule() {
    let c = address_claim("https://keys.example.com:8443/agents/bot@example.com").unwrap();
    assert_eq!(
        (c.host.as_str(), c.address.as_str(), c.domain.as_str()),
        ("keys.example.com", "bot@example.com", "example.com")
    );
    assert_eq!(address_claim("https://example.com/keys/1"), None);
    assert_eq!(address_claim("agent-a"), None);

    let rule = IdentityRule::default();
    rule.check("https://keys.example.com/agents/bot@example.com")
        .unwrap();
    rule.check("https://example.co.uk/agents/bot@mail.example.co.uk")
        .unwrap();
    for spoof in [
        "https://evil.net/agents/victim@example.com",
        "https://example.com.evil.net/agents/victim@example.com",
        "https://other.co.uk/agents/victim@example.co.uk",
    ] {
        assert!(
            matches!(rule.check(spoof), Err(ResolveError::Refused(_))),
            "{spoof}"
        );
    }
    // Keyids that claim no address are not this rule's business.
    rule.check("did:key:z6Mk").unwrap();
    assert!(
        IdentityRule::SameHost
            .check("https://keys.example.com/agents/bot@example.com")
            .is_err()
    );
    IdentityRule::SameHost
        .check("https://example.com/agents/bot@example.com")
        .unwrap();
    let custom = IdentityRule::Custom(Arc::new(|host: &str, _: &str| host == "registry.example"));
    custom
        .check("https://registry.example/agents/x@anywhere.org")
        .unwrap();
}

/// A resolver that counts its calls and waits a little, so that concurrent callers overlap.
struct Counting {
    calls: AtomicUsize,
}

impl KeyResolver for Counting {
    fn resolve<'a>(&'a self, keyid: &'a str) -> ResolveFuture<'a> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            if keyid.starts_with("bad") {
                Err(ResolveError::Fetch("no such document".into()))
            } else {
                ResolvedKey::ed25519(&KeyPair::from_seed(&[9; 32]).unwrap().public_key())
            }
        })
    }
}

fn counting() -> Arc<Counting> {
    Arc::new(Counting {
        calls: AtomicUsize::new(0),
    })
}

#[tokio::test(start_paused = true)]
async fn a_burst_for_one_keyid_makes_one_fetch() {
    let inner = counting();
    let cache = Arc::new(CachingResolver::new(inner.clone(), CacheConfig::default()));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let c = cache.clone();
            tokio::spawn(async move {
                c.resolve("https://keys.example/agents/a@example")
                    .await
                    .is_ok()
            })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap());
    }
    assert_eq!(inner.calls.load(Ordering::SeqCst), 1);
    // Failures are cached too, for the negative TTL.
    for _ in 0..5 {
        assert!(cache.resolve("bad").await.is_err());
    }
    assert_eq!(inner.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn entries_expire_with_their_ttls() {
    let inner = counting();
    let config = CacheConfig::default().ttls(Duration::from_secs(60), Duration::from_secs(5));
    let cache = CachingResolver::new(inner.clone(), config);
    cache.resolve("good").await.unwrap();
    cache.resolve("bad").await.unwrap_err();
    assert_eq!(inner.calls.load(Ordering::SeqCst), 2);
    tokio::time::advance(Duration::from_secs(6)).await;
    cache.resolve("good").await.unwrap();
    cache.resolve("bad").await.unwrap_err();
    assert_eq!(
        inner.calls.load(Ordering::SeqCst),
        3,
        "only the failure was fetched again"
    );
    tokio::time::advance(Duration::from_secs(60)).await;
    cache.resolve("good").await.unwrap();
    assert_eq!(inner.calls.load(Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn the_cache_stays_within_its_bounds() {
    let inner = counting();
    let cache = CachingResolver::new(inner.clone(), CacheConfig::default().bounds(8, 1 << 20));
    for i in 0..100 {
        cache.resolve(&format!("key-{i}")).await.unwrap();
        assert!(cache.len() <= 8);
    }
    // The newest are kept, the oldest went.
    let before = inner.calls.load(Ordering::SeqCst);
    cache.resolve("key-99").await.unwrap();
    assert_eq!(inner.calls.load(Ordering::SeqCst), before);
    cache.resolve("key-0").await.unwrap();
    assert_eq!(inner.calls.load(Ordering::SeqCst), before + 1);
    // A byte bound: long keyids take more room.
    let small = CachingResolver::new(counting(), CacheConfig::default().bounds(1000, 4096));
    for i in 0..50 {
        small
            .resolve(&format!("{i}-{}", "x".repeat(1000)))
            .await
            .unwrap();
    }
    assert!(
        small.len() <= 4,
        "{} entries of ~1.3 KB in 4 KB",
        small.len()
    );
}

/// Counts lookups and answers with a fixed result.
struct Scripted {
    answer: Result<(), ResolveError>,
    key: StaticResolver,
    calls: AtomicUsize,
}

impl KeyResolver for Scripted {
    fn resolve<'a>(&'a self, keyid: &'a str) -> ResolveFuture<'a> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let answer = self.answer.clone();
        Box::pin(async move {
            answer?;
            self.key.resolve(keyid).await
        })
    }
}

fn scripted(answer: Result<(), ResolveError>, seed: u8) -> Arc<Scripted> {
    Arc::new(Scripted {
        answer,
        key: StaticResolver::new().with_ed25519("k", &public(seed)),
        calls: AtomicUsize::new(0),
    })
}

#[tokio::test]
async fn fallback_asks_the_second_only_for_keyids_the_first_does_not_know() {
    let first = StaticResolver::new().with_ed25519("k", &public(1));
    let then = scripted(Ok(()), 2);
    let r = Fallback::new(first, Some(then.clone()));
    // Known locally: the local key, and the second is never asked.
    let k = r.resolve("k").await.unwrap();
    assert_eq!(k.key().public_bytes(), public(1).as_bytes());
    assert_eq!(then.calls.load(Ordering::SeqCst), 0);

    // Unknown locally: the second answers.
    let r = Fallback::new(StaticResolver::new(), Some(then.clone()));
    let k = r.resolve("k").await.unwrap();
    assert_eq!(k.key().public_bytes(), public(2).as_bytes());
    assert_eq!(then.calls.load(Ordering::SeqCst), 1);

    // No second: unknown stays unknown.
    let r = Fallback::new(StaticResolver::new(), None::<StaticResolver>);
    assert_eq!(r.resolve("k").await.unwrap_err(), ResolveError::Unknown);
}

#[tokio::test]
async fn a_failure_of_the_first_is_final() {
    // A failing first resolver (a store down) must not hand the keyid to another source.
    let first = scripted(Err(ResolveError::Fetch("down".into())), 1);
    let then = scripted(Ok(()), 2);
    let r = Fallback::new(first.clone(), Some(then.clone()));
    assert!(matches!(r.resolve("k").await, Err(ResolveError::Fetch(_))));
    assert_eq!(first.calls.load(Ordering::SeqCst), 1);
    assert_eq!(then.calls.load(Ordering::SeqCst), 0);
}
