//! Golden samples: committed tokens that must keep decoding and verifying the same way, and that
//! the generator must reproduce byte for byte (so any format change shows up in review).

use serde_json::{Value, json};
use vouch_token::{Access, PublicKey, Token, Verifier};

#[allow(dead_code, unreachable_pub)]
#[path = "../../examples/generate_samples.rs"]
mod generator;

const COMMITTED: &str = include_str!("../samples/samples.json");

fn committed() -> Value {
    serde_json::from_str(COMMITTED).unwrap()
}

#[test]
fn committed_samples_decode_and_verify_as_recorded() {
    let all = committed();
    let samples = all["samples"].as_array().unwrap();
    assert!(samples.len() >= 8);
    for s in samples {
        let name = s["name"].as_str().unwrap();
        let token = Token::from_base64(s["token"].as_str().unwrap())
            .unwrap_or_else(|e| panic!("sample {name}: {e}"));
        assert_eq!(
            token.to_bytes().len() as u64,
            s["bytes"].as_u64().unwrap(),
            "sample {name}"
        );
        let root = PublicKey::from_hex(s["root_public_key"].as_str().unwrap()).unwrap();
        let check = &s["verify"];
        let mut verifier = Verifier::new(root);
        if let Some(a) = check["audience"].as_str() {
            verifier = verifier.with_audience(a);
        }
        let mut access = Access::at(check["at"].as_u64().unwrap());
        if let Some(c) = check["caller"].as_str() {
            access = access.caller(c);
        }
        if let Some(t) = check["tool"].as_str() {
            access = access.tool(t);
        }
        if let Some(o) = check["operation"].as_str() {
            access = access.operation(o);
        }
        let got = match verifier.verify(&token, &access) {
            Ok(facts) => json!({ "facts": facts }),
            Err(e) => json!({ "error": e.code() }),
        };
        assert_eq!(got, s["expect"], "sample {name}");
    }
}

#[test]
fn generator_reproduces_the_committed_samples() {
    let fresh = generator::build_samples().unwrap();
    assert!(
        fresh == committed(),
        "the token format changed: review it, then run \
         `cargo run -p vouch-token --example generate_samples` and commit the result"
    );
}

#[test]
fn samples_cover_acceptance_and_each_kind_of_rejection() {
    let all = committed();
    let codes: Vec<&str> = all["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["expect"]["error"].as_str())
        .collect();
    for code in [
        "operation_not_granted",
        "holder_mismatch",
        "expired",
        "wrong_audience",
        "unknown_root_key",
    ] {
        assert!(codes.contains(&code), "no sample for {code}");
    }
}
