//! vouch-tower: the capability check on a cached token (goal: a cache hit ≤ 2 µs) next to the
//! same check on a cold token, and an insert into a full token cache (the cost a flood of
//! distinct tokens pays, which must not grow with the cache).

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use vouch_token::{KeyPair, Restriction, Token, Verifier};
use vouch_tower::{CapabilityPipeline, TokenCache};

fn bench(c: &mut Criterion) {
    let root = KeyPair::from_seed(&[11; 32]).unwrap();
    let base = Token::mint(
        &root,
        "auth-server",
        "agent-a",
        Restriction::new()
            .tools(["db_query", "file_read", "search"])
            .operations("db_query", ["read", "write"])
            .limit("db_query", "max_rows", 100)
            .ttl(3600),
    )
    .unwrap();
    // The three-block reference token.
    let token = base
        .attenuate(
            Restriction::new()
                .tools(["db_query"])
                .operations("db_query", ["read"])
                .limit("db_query", "max_rows", 50),
        )
        .unwrap()
        .attenuate(Restriction::new().limit("db_query", "max_rows", 10))
        .unwrap()
        .to_base64();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // An empty body (an SSE GET, say): the check is token-only, no JSON parsing measured.
    let parts = http::Request::get("/mcp")
        .header("x-mcpvault-token", &token)
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let pipeline = CapabilityPipeline::new(Verifier::new(root.public_key()));
    pipeline.authorize(&parts, b"", None, now).unwrap();

    let mut g = c.benchmark_group("capability");
    g.bench_function("cached_token_hit", |b| {
        b.iter(|| {
            pipeline
                .authorize(black_box(&parts), b"", None, now)
                .unwrap()
        })
    });
    g.bench_function("cold_token", |b| {
        b.iter_batched(
            || CapabilityPipeline::new(Verifier::new(root.public_key())),
            |p| p.authorize(black_box(&parts), b"", None, now).unwrap(),
            BatchSize::SmallInput,
        )
    });

    // A tools/call: the JSON-RPC message is read for the tool (token in the header), or for the
    // tool and the token (in params._meta.token).
    let call = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"db_query","arguments":{"sql":"select * from t","limit":10}}}"#;
    let in_meta = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"db_query","arguments":{{"sql":"select * from t","limit":10}},"_meta":{{"token":"{token}"}}}}}}"#
    );
    let post = http::Request::post("/mcp")
        .header("x-mcpvault-token", &token)
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let bare = http::Request::post("/mcp").body(()).unwrap().into_parts().0;
    let reader =
        CapabilityPipeline::new(Verifier::new(root.public_key())).operation("db_query", "read");
    reader.authorize(&post, call, None, now).unwrap();
    reader
        .authorize(&bare, in_meta.as_bytes(), None, now)
        .unwrap();
    g.bench_function("cached_token_tools_call", |b| {
        b.iter(|| {
            reader
                .authorize(black_box(&post), black_box(call), None, now)
                .unwrap()
        })
    });
    g.bench_function("cached_token_tools_call_meta", |b| {
        b.iter(|| {
            reader
                .authorize(black_box(&bare), black_box(in_meta.as_bytes()), None, now)
                .unwrap()
        })
    });

    // The flood's cost: one insert into a cache full of others' live tokens (100 identities
    // holding 100 each), which must evict. Every entry shares one verified token: only the
    // cache's bookkeeping is measured.
    let verified = Arc::new(
        Verifier::new(root.public_key())
            .check(&Token::from_base64(&token).unwrap())
            .unwrap(),
    );
    let cache = TokenCache::new(10_000);
    let identities: Vec<String> = (0..100)
        .map(|i| format!("agent-{i}@agents.example"))
        .collect();
    // Twice over: every shard full.
    for i in 0..20_000usize {
        let who = identities[i % identities.len()].as_str();
        cache.insert_unchecked(Some(who), &format!("{token}.{i}"), verified.clone(), now);
    }
    assert_eq!(cache.len(), 10_000);
    let mut next = 20_000usize;
    g.bench_function("token_cache_insert_full", |b| {
        b.iter_batched(
            || {
                next += 1;
                (
                    identities[next % identities.len()].as_str(),
                    format!("{token}.{next}"),
                )
            },
            |(who, text)| {
                cache.insert_unchecked(Some(who), black_box(&text), verified.clone(), now)
            },
            BatchSize::SmallInput,
        )
    });
    assert_eq!(cache.len(), 10_000);
    g.finish();

    full_request(c, &root);
}

/// A tools/call through the signature and capability layers (cached token, and a new token each
/// time), next to the same router without layers. Requests are signed in untimed setup.
fn full_request(c: &mut Criterion, root: &KeyPair) {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::post;
    use tower::{ServiceBuilder, ServiceExt as _};
    use vouch_httpsig::{RequestView, SigningKey, mcp_content_digest, mcp_spec, sign};
    use vouch_keys::{ShardedReplayStore, StaticResolver};
    use vouch_tower::{CapabilityLayer, SignatureLayer, SignaturePipeline};

    const AGENT: &str = "https://agents.example/agents/worker@agents.example";
    // The signature layer times body reads: the runtime needs its timer, as any server's has.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let key = SigningKey::ed25519_from_seed(&[1; 32]).unwrap();
    let agent_pk = KeyPair::from_seed(&[1; 32]).unwrap().public_key();
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":2}}}"#.to_vec();
    let router = Router::new().route("/mcp", post(|| async { "3" }));
    let protected = ServiceBuilder::new()
        .layer(SignatureLayer::new(SignaturePipeline::new(
            "http://mcp.example".parse().unwrap(),
            StaticResolver::new().with_ed25519(AGENT, &agent_pk),
            ShardedReplayStore::new(10_000_000),
        )))
        .layer(CapabilityLayer::new(CapabilityPipeline::new(
            Verifier::new(root.public_key()),
        )))
        .service(router.clone());
    let mint = || {
        Token::mint(
            root,
            "auth-server",
            "agent-a",
            Restriction::new().tools(["add"]).ttl(3600),
        )
        .unwrap()
        .to_base64()
    };
    let cached_token = mint();
    let request = |token: &str| {
        let mut req = http::Request::post("http://mcp.example/mcp")
            .header("host", "mcp.example")
            .header("x-mcpvault-token", token)
            .header("content-digest", mcp_content_digest(&body))
            .body(body.clone())
            .unwrap();
        let spec = mcp_spec(&RequestView::of(&req), &key, AGENT, None, now_secs()).unwrap();
        sign(RequestView::of(&req), &spec, &key)
            .unwrap()
            .apply(req.headers_mut())
            .unwrap();
        let (mut parts, b) = req.into_parts();
        parts.uri = "/mcp".parse().unwrap();
        http::Request::from_parts(parts, Body::from(b))
    };
    let mut g = c.benchmark_group("full_request");
    // The floor: one bare ring Ed25519 verify over a signature base of this request's size,
    // measured in the same run so that the ratio holds on any machine.
    {
        use ring::signature::{ED25519, Ed25519KeyPair, UnparsedPublicKey};
        let pair = Ed25519KeyPair::from_seed_unchecked(&[1; 32]).unwrap();
        let sample = request(&cached_token);
        let base_len: usize = sample
            .headers()
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum();
        let message = vec![b'b'; base_len];
        let signature = pair.sign(&message);
        let public = UnparsedPublicKey::new(
            &ED25519,
            ring::signature::KeyPair::public_key(&pair)
                .as_ref()
                .to_vec(),
        );
        g.bench_function("bare_ed25519_verify_same_signature", |b| {
            b.iter(|| {
                public
                    .verify(black_box(&message), black_box(signature.as_ref()))
                    .unwrap()
            })
        });
        // What a server sees: a different signature on every request. Ed25519 verification is
        // variable-time in the (public) scalars, so verifying one signature over and over trains
        // the branch predictor and measures less than any real request costs.
        let varied: Vec<(Vec<u8>, Vec<u8>)> = (0..4096u32)
            .map(|i| {
                let mut m = message.clone();
                m[..4].copy_from_slice(&i.to_be_bytes());
                let sig = pair.sign(&m).as_ref().to_vec();
                (m, sig)
            })
            .collect();
        let mut next = 0usize;
        g.bench_function("bare_ed25519_verify", |b| {
            b.iter(|| {
                let (m, sig) = &varied[next % varied.len()];
                next = next.wrapping_add(1);
                public.verify(black_box(m), black_box(sig)).unwrap()
            })
        });
    }
    g.bench_function("router_unprotected", |b| {
        b.iter_batched(
            || {
                http::Request::post("/mcp")
                    .body(Body::from(body.clone()))
                    .unwrap()
            },
            |req| {
                assert!(
                    rt.block_on(router.clone().oneshot(req))
                        .unwrap()
                        .status()
                        .is_success()
                )
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("vouch_cached_token", |b| {
        b.iter_batched(
            || request(&cached_token),
            |req| {
                assert!(
                    rt.block_on(protected.clone().oneshot(req))
                        .unwrap()
                        .status()
                        .is_success()
                )
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("vouch_cold_token", |b| {
        b.iter_batched(
            || request(&mint()),
            |req| {
                assert!(
                    rt.block_on(protected.clone().oneshot(req))
                        .unwrap()
                        .status()
                        .is_success()
                )
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(2)).sample_size(40);
    targets = bench
}
criterion_main!(benches);
