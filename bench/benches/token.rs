//! vouch-token against biscuit-auth 6 on the same MCP-shaped content.
//!
//! Reference content: authority = issuer "auth-server", subject "agent-a", tools db_query (read,
//! write; max_rows 100), file_read (read), search; TTL 1 h. Block 2 = db_query read only,
//! max_rows 50, TTL 30 min. Block 3 = bound to a holder, max_rows 10. Blocks 4 and 5 shorten the
//! TTL. Each library expresses that in its own terms: vouch as typed fields, Biscuit as Datalog
//! facts in the authority block and checks in the attenuation blocks, authorized by a policy.
//!
//! Besides the timings, the run writes the encoded sizes to `target/criterion/token-sizes.json`
//! for `cargo xtask bench` to report.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::hint::black_box;
use std::time::Duration;

use biscuit_auth::{AuthorizerBuilder, Biscuit, BlockBuilder, KeyPair as BKeyPair};
use criterion::{Criterion, criterion_group, criterion_main};
use ring::signature::KeyPair as _;
use vouch_token::{Access, KeyPair, Restriction, Token, Verifier};

/// 2023-11-14T22:13:20Z, the mint time of every token here.
const NOW: u64 = 1_700_000_000;
const HOLDER: &str = "https://agents.example/agents/worker@example.com";

fn rfc3339(unix: u64) -> String {
    // Days from civil (Howard Hinnant's algorithm), enough for dates after 1970.
    let days = unix / 86_400;
    let secs = unix % 86_400;
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn vouch_root(root: &KeyPair) -> Token {
    Token::mint_at(
        root,
        "auth-server",
        "agent-a",
        Restriction::new()
            .tools(["db_query", "file_read", "search"])
            .operations("db_query", ["read", "write"])
            .operations("file_read", ["read"])
            .limit("db_query", "max_rows", 100)
            .ttl(3600),
        NOW,
    )
    .unwrap()
}

fn vouch_block(i: usize) -> Restriction {
    match i {
        1 => Restriction::new()
            .tools(["db_query"])
            .operations("db_query", ["read"])
            .limit("db_query", "max_rows", 50)
            .ttl(1800),
        2 => Restriction::new()
            .holder(HOLDER)
            .limit("db_query", "max_rows", 10),
        n => Restriction::new().ttl(1800 - 60 * n as u64),
    }
}

fn vouch_chain(root: &KeyPair, blocks: usize) -> Token {
    let mut t = vouch_root(root);
    for i in 1..blocks {
        t = t.attenuate_at(vouch_block(i), NOW).unwrap();
    }
    t
}

fn biscuit_root(root: &BKeyPair) -> Biscuit {
    let src = format!(
        r#"issuer("auth-server");
subject("agent-a");
tool("db_query");
tool("file_read");
tool("search");
operation("db_query", "read");
operation("db_query", "write");
operation("file_read", "read");
limit("db_query", "max_rows", 100);
check if time($t), $t < {};"#,
        rfc3339(NOW + 3600)
    );
    Biscuit::builder().code(src).unwrap().build(root).unwrap()
}

fn biscuit_block(i: usize) -> BlockBuilder {
    let src = match i {
        1 => format!(
            r#"check if requested_tool("db_query"), requested_operation("read");
check if requested_limit("db_query", "max_rows", $n), $n <= 50;
check if time($t), $t < {};"#,
            rfc3339(NOW + 1800)
        ),
        2 => format!(
            r#"check if holder("{HOLDER}");
check if requested_limit("db_query", "max_rows", $n), $n <= 10;"#
        ),
        n => format!(
            "check if time($t), $t < {};",
            rfc3339(NOW + 1800 - 60 * n as u64)
        ),
    };
    BlockBuilder::new().code(src).unwrap()
}

fn biscuit_chain(root: &BKeyPair, blocks: usize) -> Biscuit {
    let mut t = biscuit_root(root);
    for i in 1..blocks {
        t = t.append(biscuit_block(i)).unwrap();
    }
    t
}

/// What the server knows about the request, and its policy: the tool and operation must be
/// granted by the authority facts, and the requested limit within the granted one.
fn biscuit_authorizer_source() -> String {
    format!(
        r#"time({});
holder("{HOLDER}");
requested_tool("db_query");
requested_operation("read");
requested_limit("db_query", "max_rows", 10);
allow if tool($tool), requested_tool($tool), operation($tool, $op), requested_operation($op),
  limit($tool, "max_rows", $max), requested_limit($tool, "max_rows", $n), $n <= $max;"#,
        rfc3339(NOW + 60)
    )
}

fn vouch_verify(verifier: &Verifier, bytes: &[u8]) {
    let token = Token::from_bytes(bytes).unwrap();
    let access = Access::at(NOW + 60)
        .caller(HOLDER)
        .tool("db_query")
        .operation("read");
    let facts = verifier.verify(&token, &access).unwrap();
    assert!(facts.limit("db_query", "max_rows").unwrap() >= 10);
}

fn biscuit_verify(root: &BKeyPair, bytes: &[u8], authorizer_src: &str) {
    let token = Biscuit::from(bytes, root.public()).unwrap();
    let mut authorizer = AuthorizerBuilder::new()
        .code(authorizer_src)
        .unwrap()
        .build(&token)
        .unwrap();
    authorizer.authorize().unwrap();
}

fn sizes() {
    let root = KeyPair::from_seed(&[1; 32]).unwrap();
    let broot = BKeyPair::new();
    let mut rows = Vec::new();
    for blocks in [1, 3, 5] {
        let v = vouch_chain(&root, blocks).to_bytes().len();
        let b = biscuit_chain(&broot, blocks).to_vec().unwrap().len();
        rows.push(serde_json::json!({ "blocks": blocks, "vouch": v, "biscuit": b }));
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/criterion");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("token-sizes.json"),
        serde_json::to_string_pretty(&rows).unwrap(),
    )
    .unwrap();
}

fn bench(c: &mut Criterion) {
    sizes();
    let root = KeyPair::from_seed(&[1; 32]).unwrap();
    let broot = BKeyPair::new();
    let verifier = Verifier::new(root.public_key());
    let authorizer_src = biscuit_authorizer_source();

    // Sanity: both sides accept the request being benchmarked and refuse a write.
    for blocks in [1, 3, 5] {
        vouch_verify(&verifier, &vouch_chain(&root, blocks).to_bytes());
        biscuit_verify(
            &broot,
            &biscuit_chain(&broot, blocks).to_vec().unwrap(),
            &authorizer_src,
        );
    }
    let write = authorizer_src.replace(
        r#"requested_operation("read")"#,
        r#"requested_operation("write")"#,
    );
    let b3 = biscuit_chain(&broot, 3);
    let mut denied = AuthorizerBuilder::new()
        .code(&write)
        .unwrap()
        .build(&b3)
        .unwrap();
    assert!(
        denied.authorize().is_err(),
        "biscuit policy must refuse a write"
    );

    // The primitives a verify is made of, for reading the figures above.
    let msg = vec![7u8; 200];
    let kp = ring::signature::Ed25519KeyPair::from_seed_unchecked(&[3; 32]).unwrap();
    let sig = kp.sign(&msg);
    let pk = *kp.public_key().as_ref().first_chunk::<32>().unwrap();
    let mut g = c.benchmark_group("primitives");
    g.bench_function("ring_ed25519_verify", |b| {
        b.iter(|| {
            ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &pk)
                .verify(black_box(&msg), sig.as_ref())
                .unwrap()
        })
    });
    // vouch's rule (ZIP-215, ed25519-zebra), one signature and a token's worth in one batch.
    g.bench_function("zip215_ed25519_verify", |b| {
        b.iter(|| {
            assert!(vouch_token::ed25519::verify(
                &pk,
                black_box(&msg),
                sig.as_ref()
            ))
        })
    });
    let three: Vec<([u8; 32], [u8; 64])> = (1..=3u8)
        .map(|i| {
            let k = ring::signature::Ed25519KeyPair::from_seed_unchecked(&[i; 32]).unwrap();
            let s = k.sign(&msg).as_ref().try_into().unwrap();
            (k.public_key().as_ref().try_into().unwrap(), s)
        })
        .collect();
    g.bench_function("zip215_ed25519_batch_3", |b| {
        b.iter(|| {
            let mut batch = vouch_token::ed25519::Batch::new();
            for (p, s) in &three {
                batch.add(p, black_box(&msg), s);
            }
            assert!(batch.verify())
        })
    });
    // The subgroup check on a next key: vouch's (variable time) and curve25519-dalek's
    // constant-time `is_torsion_free` that it replaced.
    let public = vouch_token::PublicKey::from_bytes(pk);
    g.bench_function("key_check_vartime", |b| {
        b.iter(|| assert!(black_box(&public).weakness().is_none()))
    });
    g.bench_function("key_check_dalek_constant_time", |b| {
        b.iter(|| {
            let p = curve25519_dalek::edwards::CompressedEdwardsY(*black_box(&pk))
                .decompress()
                .unwrap();
            assert!(p.compress().0 == pk && !p.is_small_order() && p.is_torsion_free())
        })
    });
    g.bench_function("ring_ed25519_key_from_seed", |b| {
        b.iter(|| {
            ring::signature::Ed25519KeyPair::from_seed_and_public_key(black_box(&[3; 32]), &pk)
                .unwrap()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("mint");
    g.bench_function("vouch", |b| b.iter(|| black_box(vouch_root(&root))));
    g.bench_function("biscuit", |b| b.iter(|| black_box(biscuit_root(&broot))));
    g.finish();

    let vroot = vouch_root(&root);
    let broot_token = biscuit_root(&broot);
    let mut g = c.benchmark_group("attenuate");
    g.bench_function("vouch", |b| {
        b.iter(|| black_box(vroot.attenuate_at(vouch_block(1), NOW).unwrap()))
    });
    g.bench_function("biscuit", |b| {
        b.iter(|| black_box(broot_token.append(biscuit_block(1)).unwrap()))
    });
    g.finish();

    for blocks in [1, 3, 5] {
        let vbytes = vouch_chain(&root, blocks).to_bytes();
        let bbytes = biscuit_chain(&broot, blocks).to_vec().unwrap();
        let mut g = c.benchmark_group(format!("verify_cold_{blocks}"));
        g.bench_function("vouch", |b| {
            b.iter(|| vouch_verify(&verifier, black_box(&vbytes)))
        });
        g.bench_function("biscuit", |b| {
            b.iter(|| biscuit_verify(&broot, black_box(&bbytes), &authorizer_src))
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(40);
    targets = bench
}
criterion_main!(benches);
