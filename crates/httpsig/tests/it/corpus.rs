//! The committed fuzz seeds, replayed through the fuzz entry points on every test run.

use std::path::PathBuf;

use vouch_httpsig::internal::{fuzz_content_digest, fuzz_signature_headers, fuzz_verify_request};

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("seed-")
        })
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds for {target}");
    out
}

#[test]
fn verify_seed_is_a_valid_signed_request_and_its_mutations_are_not() {
    let seeds = seeds("httpsig_verify_request");
    let (name, bytes) = &seeds[0];
    assert!(fuzz_verify_request(bytes), "{name} must verify");
    // Any byte change in the request line (method, target URI) or in the body breaks it.
    // (Header names are case-insensitive and content-type is not covered, so those can change.)
    let line_end = bytes.iter().position(|&b| b == b'\n').unwrap();
    let body_start = bytes.windows(2).position(|w| w == b"\n\n").unwrap() + 2;
    for i in (0..line_end).chain(body_start..bytes.len()) {
        let mut m = bytes.clone();
        m[i] ^= 0x01;
        assert!(!fuzz_verify_request(&m), "{name} mutated at {i} verified");
    }
}

#[test]
fn header_and_digest_seeds_run() {
    for (_, s) in seeds("httpsig_signature_headers") {
        fuzz_signature_headers(&s);
    }
    for (_, s) in seeds("httpsig_content_digest") {
        fuzz_content_digest(&s);
    }
}
