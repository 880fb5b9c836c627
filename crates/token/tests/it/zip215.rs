//! vouch's one Ed25519 rule (ZIP-215) on the edge cases other verifiers disagree on: the 12
//! "Taming the many EdDSAs" cases (ed25519-speccheck) and ZIP-215's 196 small-order vectors
//! (ed25519-zebra). For every case, single verification, a batch of it alone and a batch of it
//! among honest signatures give the verdict ZIP-215 specifies. Sources and commits are in
//! `tests/vectors/README.md` and in each file.

use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use serde_json::Value;
use vouch_token::ed25519::{Batch, DecodedKey, Weakness, verify, weakness};

const SPECCHECK: &str = include_str!("../vectors/ed25519-speccheck.json");
const SMALL_ORDER: &str = include_str!("../vectors/zip215-small-order.json");

struct Case {
    name: String,
    public: [u8; 32],
    message: Vec<u8>,
    signature: [u8; 64],
    zip215: bool,
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex: {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn cases(json: &str, name: &str) -> Vec<Case> {
    let v: Value = serde_json::from_str(json).unwrap();
    assert!(
        v["commit"].as_str().unwrap().len() == 40,
        "{name}: the file names its commit"
    );
    let shared_message = v["message"].as_str().map(unhex);
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, c)| Case {
            name: format!("{name} case {i}"),
            public: unhex(c["pub_key"].as_str().unwrap()).try_into().unwrap(),
            message: c["message"]
                .as_str()
                .map(unhex)
                .or_else(|| shared_message.clone())
                .unwrap(),
            signature: unhex(c["signature"].as_str().unwrap()).try_into().unwrap(),
            zip215: c["zip215"].as_bool().unwrap(),
        })
        .collect()
}

/// Honest signatures to batch the edge cases with: three keys, three messages.
fn honest() -> Vec<([u8; 32], Vec<u8>, [u8; 64])> {
    (1..=3u8)
        .map(|i| {
            let k = Ed25519KeyPair::from_seed_unchecked(&[i; 32]).unwrap();
            let msg = vec![i; 50];
            let sig = k.sign(&msg).as_ref().try_into().unwrap();
            (k.public_key().as_ref().try_into().unwrap(), msg, sig)
        })
        .collect()
}

/// The verdicts of single verification, a batch of the case alone, and batches of the case
/// first and last among honest signatures.
fn verdicts(c: &Case) -> [bool; 5] {
    let single = verify(&c.public, &c.message, &c.signature);
    let decoded = DecodedKey::decode(&c.public).is_some_and(|k| k.verify(&c.message, &c.signature));
    let mut alone = Batch::new();
    alone.add(&c.public, &c.message, &c.signature);
    let among = |first: bool| {
        let mut b = Batch::new();
        if first {
            b.add(&c.public, &c.message, &c.signature);
        }
        for (p, m, s) in honest() {
            b.add(&p, &m, &s);
        }
        if !first {
            b.add(&c.public, &c.message, &c.signature);
        }
        b.verify()
    };
    [single, decoded, alone.verify(), among(true), among(false)]
}

#[test]
fn the_honest_signatures_verify_alone_and_together() {
    let mut b = Batch::new();
    for (p, m, s) in honest() {
        assert!(verify(&p, &m, &s));
        b.add(&p, &m, &s);
    }
    assert!(b.verify());
}

#[test]
fn speccheck_cases_single_and_batch_agree_with_zip215() {
    let all = cases(SPECCHECK, "speccheck");
    assert_eq!(all.len(), 12);
    for c in &all {
        assert_eq!(verdicts(c), [c.zip215; 5], "{}", c.name);
    }
    // ZIP-215 accepts 0–5 and 9–11: S ≥ ℓ (6, 7) and a non-canonical R re-encoded before
    // hashing (8) are refused.
    let accepted: Vec<bool> = all.iter().map(|c| c.zip215).collect();
    assert_eq!(
        accepted,
        [
            true, true, true, true, true, true, false, false, false, true, true, true
        ]
    );
}

#[test]
fn zip215_small_order_vectors_single_and_batch_all_accept() {
    let all = cases(SMALL_ORDER, "zip215");
    assert_eq!(all.len(), 196);
    for c in &all {
        assert!(c.zip215, "{}", c.name);
        assert_eq!(verdicts(c), [true; 5], "{}", c.name);
    }
}

/// What changed from ring's rule, and why it cannot matter in vouch: every case ring refuses
/// and ZIP-215 accepts has a weak public key, which vouch refuses before verifying anything.
#[test]
fn where_ring_differs_the_key_is_refused_at_load() {
    let ring = |c: &Case| {
        UnparsedPublicKey::new(&ED25519, &c.public)
            .verify(&c.message, &c.signature)
            .is_ok()
    };
    let spec = cases(SPECCHECK, "speccheck");
    let ring_row: Vec<bool> = spec.iter().map(ring).collect();
    // ring's row is BoringSSL's in the speccheck results: cofactorless, canonical R only.
    assert_eq!(
        ring_row,
        [
            true, true, true, true, false, false, false, false, false, false, false, true
        ]
    );
    let mut differ = 0;
    for c in spec.iter().chain(&cases(SMALL_ORDER, "zip215")) {
        if ring(c) != c.zip215 {
            differ += 1;
            // ZIP-215 is only ever the more accepting one here...
            assert!(c.zip215 && !ring(c), "{}", c.name);
            // ... and only under keys vouch never trusts.
            assert!(weakness(&c.public).is_some(), "{}", c.name);
        }
    }
    assert!(differ >= 4, "{differ}");
}

#[test]
fn every_small_order_encoding_in_the_vectors_is_refused_as_a_key() {
    let v: Value = serde_json::from_str(SMALL_ORDER).unwrap();
    let encodings = v["encodings"].as_array().unwrap();
    assert_eq!(encodings.len(), 14);
    for (i, e) in encodings.iter().enumerate() {
        let key: [u8; 32] = unhex(e.as_str().unwrap()).try_into().unwrap();
        let expected = if i < 8 {
            Weakness::SmallOrder
        } else {
            Weakness::NonCanonical
        };
        assert_eq!(weakness(&key), Some(expected), "encoding {i}");
    }
    // And every speccheck key is weak (small order, mixed order, non-canonical) but the
    // order-ℓ key of cases 6 and 7 (the S ≥ ℓ cases).
    for c in cases(SPECCHECK, "speccheck") {
        let fit = weakness(&c.public).is_none();
        assert_eq!(
            fit,
            c.name.ends_with(" 6") || c.name.ends_with(" 7"),
            "{}",
            c.name
        );
    }
}
