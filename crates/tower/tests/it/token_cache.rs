//! The verified-token cache under attack: a token holder can attenuate endless distinct valid
//! tokens offline. Its flood must stay within its own share of the cache, never evicting another
//! identity's tokens, and every insert must cost the same whatever the cache's size.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::support::{now, root};
use axum::body::Body;
use http::{Request, StatusCode};
use tower::{ServiceBuilder, ServiceExt as _};
use vouch_httpsig::{RequestView, SigningKey, mcp_content_digest, mcp_spec, sign};
use vouch_keys::{ShardedReplayStore, StaticResolver};
use vouch_token::{KeyPair, PublicKey, Restriction, RootKeyId, RootKeys, Token, Verifier};
use vouch_tower::*;

const WORKER: &str = "https://agents.example/agents/worker@agents.example";
const FLOODER: &str = "https://agents.example/agents/flooder@agents.example";

/// The root key, counting lookups: [`Verifier::check`] looks the root up once and
/// [`Verifier::authorize`] once more, so a request served from the cache costs one lookup and a
/// request whose token is verified again costs two.
#[derive(Clone)]
struct CountingRoot {
    key: PublicKey,
    lookups: Arc<AtomicUsize>,
}

impl RootKeys for CountingRoot {
    fn root_key(&self, id: &RootKeyId) -> Option<PublicKey> {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        (self.key.root_key_id() == *id).then_some(self.key)
    }
}

fn counting_pipeline(capacity: usize) -> (CapabilityPipeline, Arc<AtomicUsize>) {
    let lookups = Arc::new(AtomicUsize::new(0));
    let roots = CountingRoot {
        key: root().public_key(),
        lookups: lookups.clone(),
    };
    let pipeline = CapabilityPipeline::new(Verifier::new(roots)).cache_capacity(capacity);
    (pipeline, lookups)
}

fn call_body() -> String {
    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"db_query","arguments":{}}}"#
        .to_owned()
}

fn signed(seed: u8, keyid: &str, token: &str) -> Request<Body> {
    let body = call_body().into_bytes();
    let mut req = http::Request::post("http://mcp.example/mcp")
        .header("host", "mcp.example")
        .header("x-mcpvault-token", token)
        .header("content-digest", mcp_content_digest(&body))
        .body(body.clone())
        .unwrap();
    let key = SigningKey::ed25519_from_seed(&[seed; 32]).unwrap();
    let spec = mcp_spec(&RequestView::of(&req), &key, keyid, None, now()).unwrap();
    sign(RequestView::of(&req), &spec, &key)
        .unwrap()
        .apply(req.headers_mut())
        .unwrap();
    let (mut parts, body) = req.into_parts();
    parts.uri = "/mcp".parse().unwrap();
    Request::from_parts(parts, Body::from(body))
}

fn unsigned(token: &str) -> Request<Body> {
    Request::post("/mcp")
        .header("host", "mcp.example")
        .header("x-mcpvault-token", token)
        .body(Body::from(call_body()))
        .unwrap()
}

type Svc =
    tower::util::BoxCloneService<Request<Body>, http::Response<Body>, std::convert::Infallible>;

/// The signature layer (worker: seed 1, flooder: seed 2) in front of the capability layer.
fn signed_app(p: &CapabilityPipeline) -> Svc {
    let pk = |s: u8| KeyPair::from_seed(&[s; 32]).unwrap().public_key();
    let resolver = StaticResolver::new()
        .with_ed25519(WORKER, &pk(1))
        .with_ed25519(FLOODER, &pk(2));
    let sig = SignatureLayer::new(SignaturePipeline::new(
        crate::origin(),
        resolver,
        ShardedReplayStore::new(100_000),
    ));
    tower::util::BoxCloneService::new(
        ServiceBuilder::new()
            .layer(sig)
            .layer(CapabilityLayer::new(p.clone()))
            .service(tower::service_fn(|_: Request<Body>| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty()))
            })),
    )
}

/// The capability layer alone: requests without a verified caller.
fn unsigned_app(p: &CapabilityPipeline) -> Svc {
    tower::util::BoxCloneService::new(
        ServiceBuilder::new()
            .layer(CapabilityLayer::new(p.clone()))
            .service(tower::service_fn(|_: Request<Body>| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty()))
            })),
    )
}

async fn status(svc: &Svc, req: Request<Body>) -> StatusCode {
    svc.clone().oneshot(req).await.unwrap().status()
}

/// Root-key lookups one request costs: 1 when its token came from the cache, 2 when it was
/// verified again.
async fn lookups_for(svc: &Svc, lookups: &AtomicUsize, req: Request<Body>) -> usize {
    let before = lookups.load(Ordering::Relaxed);
    assert_eq!(status(svc, req).await, StatusCode::OK);
    lookups.load(Ordering::Relaxed) - before
}

fn grant(ttl: u64) -> Restriction {
    Restriction::new()
        .tools(["db_query"])
        .operations("db_query", ["execute"])
        .ttl(ttl)
}

/// Distinct valid tokens, attenuated offline from one: what any token holder can make.
fn flood(count: u64) -> Vec<String> {
    let base = Token::mint(&root(), "auth-server", "flooder", grant(3600)).unwrap();
    (0..count)
        .map(|i| {
            base.attenuate(Restriction::new().limit("db_query", "max_rows", i))
                .unwrap()
                .to_base64()
        })
        .collect()
}

#[tokio::test]
async fn a_flooding_identity_does_not_evict_another_identitys_token() {
    let (p, lookups) = counting_pipeline(64);
    let svc = signed_app(&p);
    // The worker's token expires before the flood's: an expiry-ordered eviction picks it first.
    let mine = Token::mint(&root(), "auth-server", "worker", grant(600))
        .unwrap()
        .to_base64();
    assert_eq!(
        lookups_for(&svc, &lookups, signed(1, WORKER, &mine)).await,
        2
    );
    assert_eq!(
        lookups_for(&svc, &lookups, signed(1, WORKER, &mine)).await,
        1,
        "cached"
    );

    for (i, t) in flood(1000).iter().enumerate() {
        assert_eq!(
            lookups_for(&svc, &lookups, signed(2, FLOODER, t)).await,
            2,
            "flood token {i} is new"
        );
        assert!(p.cache().len() <= 64, "{} entries", p.cache().len());
    }

    assert_eq!(
        lookups_for(&svc, &lookups, signed(1, WORKER, &mine)).await,
        1,
        "the worker's token is still cached after the flood"
    );
    let cache = p.cache();
    assert_eq!(
        cache.held_by(Some("worker@agents.example")),
        (1, mine.len())
    );
    assert_eq!(
        cache.held_by(Some("flooder@agents.example")).0,
        cache.share(),
        "the flood holds its share and no more"
    );
    assert_eq!(cache.len(), cache.share() + 1);
}

#[tokio::test]
async fn a_flood_without_a_caller_does_not_evict_a_signed_callers_token() {
    let (p, lookups) = counting_pipeline(64);
    let signed_svc = signed_app(&p);
    let open = unsigned_app(&p);
    let mine = Token::mint(&root(), "auth-server", "worker", grant(600))
        .unwrap()
        .to_base64();
    assert_eq!(
        lookups_for(&signed_svc, &lookups, signed(1, WORKER, &mine)).await,
        2
    );
    for t in &flood(300) {
        assert_eq!(lookups_for(&open, &lookups, unsigned(t)).await, 2);
        assert!(p.cache().len() <= 64);
    }
    assert_eq!(
        lookups_for(&signed_svc, &lookups, signed(1, WORKER, &mine)).await,
        1,
        "the signed caller's token is still cached"
    );
}

/// One verified token (valid for `ttl` seconds from now), shared by entries whose texts are
/// made up: the cache's bookkeeping alone is tested.
fn verified(ttl: u64) -> Arc<vouch_token::VerifiedToken> {
    let token = Token::mint(&root(), "auth-server", "agent", grant(ttl)).unwrap();
    Arc::new(Verifier::new(root().public_key()).check(&token).unwrap())
}

#[test]
fn a_flood_stays_within_its_share_and_evicts_only_its_own() {
    let cache = TokenCache::new(64);
    assert_eq!((cache.capacity(), cache.share()), (64, 16), "the floor");
    let v = verified(3600);
    let t = now();
    for who in ["b", "c", "d"] {
        for i in 0..5 {
            cache.insert_unchecked(Some(who), &format!("{who}-{i}"), v.clone(), t);
        }
    }
    cache.insert_unchecked(None, "anonymous", v.clone(), t);
    for i in 0..1000 {
        cache.insert_unchecked(Some("a"), &format!("a-{i}"), v.clone(), t);
        assert!(cache.held_by(Some("a")).0 <= cache.share());
        assert!(cache.len() <= 64);
    }
    assert_eq!(cache.held_by(Some("a")).0, 16, "a holds its share, no more");
    for who in ["b", "c", "d"] {
        assert_eq!(cache.held_by(Some(who)), (5, 15), "{who} lost nothing");
    }
    assert_eq!(cache.held_by(None), (1, "anonymous".len()));
    assert_eq!(cache.len(), 16 + 15 + 1);
    // The newest of a's tokens are the ones kept.
    assert_eq!(
        cache.bytes(),
        (984..1000).map(|i| format!("a-{i}").len()).sum::<usize>() + 3 * 15 + 9
    );
}

#[test]
fn when_full_the_largest_holder_gives_way() {
    // No share: one identity may take the whole cache, until others need room.
    let cache = TokenCache::new(64).with_share(64);
    let v = verified(3600);
    let t = now();
    for i in 0..63 {
        cache.insert_unchecked(Some("a"), &format!("a-{i}"), v.clone(), t);
    }
    cache.insert_unchecked(Some("b"), "b-0", v.clone(), t);
    assert_eq!(cache.len(), 64);
    for i in 0..10 {
        cache.insert_unchecked(Some("c"), &format!("c-{i}"), v.clone(), t);
        cache.insert_unchecked(Some("a"), &format!("a-more-{i}"), v.clone(), t);
    }
    assert_eq!(cache.len(), 64);
    assert_eq!(
        cache.held_by(Some("b")).0,
        1,
        "the smallest holder is never the one to go"
    );
    assert_eq!(cache.held_by(Some("c")).0, 10);
    assert_eq!(cache.held_by(Some("a")).0, 53);
}

#[test]
fn memory_is_bounded_in_tokens_and_in_bytes() {
    let cache = TokenCache::new(64).with_max_bytes(100_000);
    assert_eq!(cache.max_bytes(), 100_000);
    assert_eq!(
        cache.share_bytes(),
        25_000,
        "a share of the bytes as of the tokens"
    );
    let v = verified(3600);
    let t = now();
    // Tokens near the size cap (8 KiB decoded, about 11 KiB of text) from a few identities.
    let big = |who: &str, i: usize| format!("{who}-{i}-{}", "A".repeat(10_900));
    for i in 0..200 {
        for who in ["a", "b", "c", "d", "e", "f"] {
            cache.insert_unchecked(Some(who), &big(who, i), v.clone(), t);
            assert!(cache.bytes() <= cache.max_bytes(), "{}", cache.bytes());
            assert!(cache.len() <= cache.capacity());
            assert!(cache.held_by(Some(who)).1 <= cache.share_bytes());
        }
    }
    assert!(
        cache.bytes() > 80_000,
        "{}: the bytes bind, not the count",
        cache.bytes()
    );
    // Small tokens: now the count binds.
    for i in 0..200 {
        for who in ["g", "h", "i", "j", "k"] {
            cache.insert_unchecked(Some(who), &format!("{who}-{i}"), v.clone(), t);
            assert!(cache.len() <= cache.capacity());
            assert!(cache.held_by(Some(who)).0 <= cache.share());
        }
    }
    assert_eq!(cache.len(), 64);
    // A token over the whole cache's bytes is not cached (it is verified on each use).
    let tiny = TokenCache::new(4).with_max_bytes(100);
    tiny.insert_unchecked(Some("a"), &"x".repeat(101), v.clone(), t);
    assert!(tiny.is_empty());
}

#[test]
fn no_entry_outlives_its_token_and_the_expired_go_first() {
    let cache = TokenCache::new(64);
    let t = now();
    let (short, long) = (verified(60), verified(3600));
    for i in 0..8 {
        cache.insert_unchecked(Some("a"), &format!("long-{i}"), long.clone(), t);
    }
    for i in 0..8 {
        cache.insert_unchecked(Some("a"), &format!("short-{i}"), short.clone(), t);
    }
    cache.insert_unchecked(Some("b"), "b-short", short.clone(), t);
    assert_eq!(cache.held_by(Some("a")).0, 16, "a at its share");
    // A minute later: a's next token evicts its expired ones, not its oldest live one.
    cache.insert_unchecked(Some("a"), "long-new", long.clone(), t + 60);
    assert_eq!(cache.held_by(Some("a")), (9, 6 * 8 + 8));
    assert_eq!(cache.held_by(Some("b")).0, 0, "b's expired token went too");
    assert_eq!(cache.len(), 9);
    // A token already expired is never cached.
    cache.insert_unchecked(Some("c"), "dead", short.clone(), t + 61);
    assert_eq!(cache.held_by(Some("c")).0, 0);
    // Every token expires: a lookup alone empties the cache.
    cache.insert_unchecked(Some("c"), "probe", long.clone(), t + 3600);
    assert!(cache.is_empty());
}

#[test]
fn the_pipeline_never_serves_nor_keeps_an_expired_token() {
    let p = CapabilityPipeline::new(Verifier::new(root().public_key()))
        .token_cache(TokenCache::new(64));
    let t = now();
    let parts = |token: &str| {
        Request::post("/mcp")
            .header("x-mcpvault-token", token)
            .body(())
            .unwrap()
            .into_parts()
            .0
    };
    let short = Token::mint(&root(), "auth-server", "w", grant(60))
        .unwrap()
        .to_base64();
    let long = Token::mint(&root(), "auth-server", "w", grant(3600))
        .unwrap()
        .to_base64();
    let body = call_body();
    p.authorize(&parts(&short), body.as_bytes(), None, t)
        .unwrap();
    p.authorize(&parts(&long), body.as_bytes(), None, t)
        .unwrap();
    assert_eq!(p.cache().len(), 2);
    let refused = p
        .authorize(&parts(&short), body.as_bytes(), None, t + 60)
        .unwrap_err();
    assert_eq!(refused.code(), "invalid_token");
    assert_eq!(
        p.cache().len(),
        1,
        "the expired token is gone, the other kept"
    );
    assert_eq!(p.cache().held_by(None).0, 1, "cached in the shared bucket");
}

/// Fills a cache twice over from 100 identities (every shard full), then counts the entries
/// eviction looks at for `inserts` more: from rotating identities (the cache is full), and from
/// one identity (over its share).
fn eviction_steps_per_insert(capacity: usize, inserts: usize) -> (u64, u64) {
    let cache = TokenCache::new(capacity);
    let v = verified(3600);
    let t = now();
    let who = |i: usize| format!("agent-{}", i % 100);
    for i in 0..2 * capacity {
        cache.insert_unchecked(Some(&who(i)), &format!("fill-{i}"), v.clone(), t);
    }
    assert_eq!(cache.len(), capacity, "full");
    let before = cache.eviction_steps();
    for i in 0..inserts {
        cache.insert_unchecked(Some(&who(i)), &format!("more-{i}"), v.clone(), t);
    }
    let full = cache.eviction_steps() - before;
    let before = cache.eviction_steps();
    for i in 0..inserts {
        cache.insert_unchecked(Some("flooder"), &format!("flood-{i}"), v.clone(), t);
    }
    let flood = cache.eviction_steps() - before;
    assert_eq!(cache.len(), capacity);
    assert!(cache.held_by(Some("flooder")).0 <= cache.share());
    (full, flood)
}

#[test]
fn an_insert_into_a_full_cache_costs_the_same_whatever_its_capacity() {
    // One entry looked at (popped from an ordered index) per insert, for 1 000 entries as for
    // 100 000: no scan. A scan would look at every entry.
    for capacity in [1_000, 100_000] {
        let (full, flood) = eviction_steps_per_insert(capacity, 2_000);
        assert_eq!((full, flood), (2_000, 2_000), "capacity {capacity}");
    }
}
