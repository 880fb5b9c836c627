//! Weak Ed25519 public keys: the eight points of small order, points outside the prime-order
//! subgroup, non-canonical encodings and non-points. ring accepts them; with the identity point as
//! the key, the signature `R = identity, S = 0` verifies for every message. A token may name none
//! as a block's next key, and no verifier trusts one as a root.

use std::sync::Arc;

use vouch_token::internal::hand_signed_bytes;
use vouch_token::{Access, Error, PublicKey, Restriction, RootKeySet, Token, Verifier};

use crate::support::{NOW, key, mint, reference_root};

/// The eight points of order 1, 2, 4 and 8, canonically encoded (checked against
/// curve25519-dalek's own list in the unit tests).
const SMALL_ORDER: [&str; 8] = [
    // The identity (0, 1), order 1.
    "0100000000000000000000000000000000000000000000000000000000000000",
    // (0, -1), order 2.
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    // (±sqrt(-1), 0), order 4.
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    // Order 8.
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
];

/// Other encodings of small-order points: y = p (the order-4 points), y = p + 1 (the identity),
/// each with either sign bit, and x = 0 with the sign bit set (the identity and (0, -1)).
const SMALL_ORDER_NON_CANONICAL: [&str; 6] = [
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    "0100000000000000000000000000000000000000000000000000000000000080",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
];

/// y = p + 3: the point with y = 3 (of large order), not canonically encoded.
const NON_CANONICAL: &str = "f0ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f";

/// The base point plus a point of order 8: on the curve, canonical, not of small order, but
/// outside the prime-order subgroup (checked against curve25519-dalek in the unit tests).
const MIXED_ORDER: &str = "98519eadf35b995233b51b5cd23e9cc5a28b639b5a4af0ec903cb960d81b7819";

/// y = 2 has no x on the curve.
const NOT_A_POINT: &str = "0200000000000000000000000000000000000000000000000000000000000000";

/// The signature `R = identity, S = 0`: under a small-order key it verifies for many messages,
/// under the identity for all.
const TRIVIAL_SIGNATURE: [u8; 64] = {
    let mut s = [0u8; 64];
    s[0] = 1;
    s
};

fn bytes(hex: &str) -> [u8; 32] {
    *PublicKey::from_hex(hex).unwrap().as_bytes()
}

fn malformed(r: Result<impl std::fmt::Debug, Error>) -> &'static str {
    match r {
        Err(Error::Malformed(m)) => m.reason(),
        other => panic!("expected malformed, got {other:?}"),
    }
}

/// A token whose last block names `next_key`, sealed with `seal` (hand-signed: `attenuate`
/// only ever names the public half of a fresh key pair).
fn naming(next_key: &str, seal: [u8; 64]) -> Vec<u8> {
    let root = mint(&key(1), reference_root());
    hand_signed_bytes(&root, Restriction::new(), NOW, bytes(next_key), seal).unwrap()
}

/// Appends a block with an empty payload, signed `R = identity, S = 0`, naming the identity, and
/// seals it the same way: what anyone can do once a block names a small-order next key.
fn extend_by_anyone(token: &[u8]) -> Vec<u8> {
    let mut out = token[..token.len() - 65].to_vec();
    out[9] += 1;
    out.push(0);
    out.extend_from_slice(&bytes(SMALL_ORDER[0]));
    out.extend_from_slice(&TRIVIAL_SIGNATURE);
    out.push(1);
    out.extend_from_slice(&TRIVIAL_SIGNATURE);
    out
}

#[test]
fn ring_accepts_the_trivial_signature_under_the_identity() {
    use ring::signature::{ED25519, UnparsedPublicKey};
    let identity = bytes(SMALL_ORDER[0]);
    for msg in [&b""[..], b"any message", &[7; 300]] {
        assert!(
            UnparsedPublicKey::new(&ED25519, &identity)
                .verify(msg, &TRIVIAL_SIGNATURE)
                .is_ok()
        );
    }
}

#[test]
fn a_small_order_next_key_is_refused_when_decoding() {
    let identity = naming(SMALL_ORDER[0], TRIVIAL_SIGNATURE);
    // Nobody signed the seal, nor the block anyone can append: they are refused all the same.
    for (what, forged) in [
        ("seal", identity.clone()),
        ("appended block", extend_by_anyone(&identity)),
    ] {
        assert_eq!(
            malformed(Token::from_bytes(&forged)),
            "next key is of small order",
            "{what}"
        );
    }
    for (i, hex) in SMALL_ORDER.iter().enumerate() {
        assert_eq!(
            malformed(Token::from_bytes(&naming(hex, TRIVIAL_SIGNATURE))),
            "next key is of small order",
            "small-order point {i}"
        );
    }
    for (i, hex) in SMALL_ORDER_NON_CANONICAL
        .iter()
        .chain(&[NON_CANONICAL])
        .enumerate()
    {
        assert_eq!(
            malformed(Token::from_bytes(&naming(hex, TRIVIAL_SIGNATURE))),
            "next key is not canonically encoded",
            "non-canonical encoding {i}"
        );
    }
}

#[test]
fn a_next_key_outside_the_prime_order_subgroup_is_refused_at_check() {
    let verifier = Verifier::new(key(1).public_key());
    for (hex, why) in [
        (MIXED_ORDER, "next key is not in the prime-order subgroup"),
        (NOT_A_POINT, "next key is not a curve point"),
    ] {
        // Not visible in the bytes: decoding accepts it, the verifier refuses it once the block
        // that names it has verified, before using it.
        let token = Token::from_bytes(&naming(hex, TRIVIAL_SIGNATURE)).unwrap();
        assert_eq!(malformed(verifier.check(&token)), why);
        let access = Access::at(NOW).tool("search");
        assert_eq!(malformed(verifier.verify(&token, &access)), why);
    }
}

/// A root token "signed" by the identity point with `R = identity, S = 0`: the authority block
/// and proof of a real token, the identity's root key id and the trivial signature.
fn signed_by_identity() -> Token {
    let real = mint(&key(1), reference_root()).to_bytes();
    let mut forged = real.clone();
    let identity = PublicKey::from_hex(SMALL_ORDER[0]).unwrap();
    forged[1..9].copy_from_slice(identity.root_key_id().as_bytes());
    let payload_len = usize::from(real[10]);
    assert!(payload_len < 128);
    let sig = 11 + payload_len + 32;
    forged[sig..sig + 64].copy_from_slice(&TRIVIAL_SIGNATURE);
    Token::from_bytes(&forged).unwrap()
}

#[test]
fn a_weak_root_key_is_never_trusted() {
    let token = signed_by_identity();
    let access = Access::at(NOW).tool("search");
    let identity = PublicKey::from_hex(SMALL_ORDER[0]).unwrap();
    // A single key, a shared provider, a set: the token forged under the identity is refused.
    assert_eq!(
        Verifier::new(identity).verify(&token, &access).unwrap_err(),
        Error::UnknownRootKey
    );
    assert_eq!(
        Verifier::new(Arc::new(identity))
            .verify(&token, &access)
            .unwrap_err(),
        Error::UnknownRootKey
    );
    let weak = SMALL_ORDER
        .iter()
        .chain(&SMALL_ORDER_NON_CANONICAL)
        .chain(&[NON_CANONICAL, MIXED_ORDER, NOT_A_POINT]);
    for (i, hex) in weak.enumerate() {
        let key = PublicKey::from_hex(hex).unwrap();
        assert_eq!(
            RootKeySet::new().insert(key).map(|_| ()),
            Err(Error::InvalidInput("root key is a weak ed25519 public key")),
            "weak key {i}"
        );
    }
    // Real keys are fit.
    for seed in 0..8 {
        RootKeySet::new().insert(key(seed).public_key()).unwrap();
    }
}

#[test]
fn weakness_says_what_is_wrong() {
    let cases = SMALL_ORDER
        .iter()
        .map(|h| (*h, "of small order"))
        .chain(
            SMALL_ORDER_NON_CANONICAL
                .iter()
                .chain(&[NON_CANONICAL])
                .map(|h| (*h, "not canonically encoded")),
        )
        .chain([
            (MIXED_ORDER, "not in the prime-order subgroup"),
            (NOT_A_POINT, "not a curve point"),
        ]);
    for (hex, why) in cases {
        assert_eq!(
            PublicKey::from_hex(hex).unwrap().weakness(),
            Some(why),
            "{hex}"
        );
    }
    for seed in 0..8 {
        assert_eq!(key(seed).public_key().weakness(), None, "seed {seed}");
    }
}
