//! The committed fuzz seed corpus, replayed through the fuzz entry points on every test run.

use std::path::PathBuf;

use vouch_token::internal::{fuzz_decode, fuzz_decode_verify};

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .filter(|(name, _)| name.starts_with("seed-"))
        .collect();
    out.sort();
    out
}

#[test]
fn decode_seeds_round_trip() {
    let seeds = seeds("token_decode");
    assert!(seeds.len() >= 4, "seed corpus missing");
    for (name, bytes) in seeds {
        assert!(
            vouch_token::Token::from_bytes(&bytes).is_ok(),
            "{name} does not decode"
        );
        fuzz_decode(&bytes);
    }
}

#[test]
fn decode_verify_seeds_reach_verification() {
    let seeds = seeds("token_decode_verify");
    let verified: Vec<&str> = seeds
        .iter()
        .filter(|(_, bytes)| fuzz_decode_verify(bytes))
        .map(|(name, _)| name.as_str())
        .collect();
    // The root and two-block samples grant db_query read to anyone; the others are bound to a
    // holder or an audience, and exercise those rejections.
    assert_eq!(verified, ["seed-authority", "seed-two-blocks"]);
}
