//! Weak Ed25519 public keys: small-order, mixed-order (outside the prime-order subgroup) and
//! non-canonical encodings are refused when a verifying key is built from them, whatever the
//! format. ring accepts them, and with the identity point as the key, `R = identity, S = 0`
//! verifies for any message.

use base64ct::{Base64, Encoding};
use http::Request;
use ring::signature::{ED25519, UnparsedPublicKey};
use vouch_httpsig::*;

const NOW: u64 = 1_700_000_000;
const KEYID: &str = "https://agents.example/agents/a@example.com";

fn hex32(s: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

/// The eight points of order 1, 2, 4 and 8, canonically encoded.
pub(crate) const SMALL_ORDER: [&str; 8] = [
    // The identity (order 1).
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

/// Non-canonical encodings of small-order points: y = p and y = p + 1 (p = 2^255 - 19), and the
/// identity with the sign bit of x = 0 set.
pub(crate) const SMALL_ORDER_NON_CANONICAL: [&str; 4] = [
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    "0100000000000000000000000000000000000000000000000000000000000080",
];

/// The base point plus a point of order 8: on the curve, not of small order, outside the
/// prime-order subgroup.
pub(crate) const MIXED_ORDER: &str =
    "98519eadf35b995233b51b5cd23e9cc5a28b639b5a4af0ec903cb960d81b7819";

/// y = p + 3: decodes (as y = 3) but is not the canonical encoding of that point.
pub(crate) const NON_CANONICAL: &str =
    "f0ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f";

/// Not a point at all: y = 2 has no x on the curve.
const NOT_A_POINT: &str = "0200000000000000000000000000000000000000000000000000000000000000";

fn spki_der(raw: &[u8; 32]) -> Vec<u8> {
    let mut der = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    der.extend_from_slice(raw);
    der
}

fn spki_pem(raw: &[u8; 32]) -> String {
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        Base64::encode_string(&spki_der(raw))
    )
}

fn refusal(raw: &[u8; 32]) -> Error {
    let err = VerifyingKey::try_ed25519(*raw).unwrap_err();
    assert_eq!(
        VerifyingKey::from_spki_der(&spki_der(raw), None).unwrap_err(),
        err,
        "SPKI DER"
    );
    assert_eq!(
        VerifyingKey::from_pem(&spki_pem(raw), None).unwrap_err(),
        err,
        "SPKI PEM"
    );
    err
}

#[test]
fn small_order_keys_are_refused_raw_and_in_spki() {
    for (i, hex) in SMALL_ORDER.iter().enumerate() {
        assert_eq!(
            refusal(&hex32(hex)),
            Error::Key("ed25519 public key is of small order"),
            "small-order point {i}"
        );
    }
}

#[test]
fn non_canonical_encodings_are_refused_even_of_small_order_points() {
    for (i, hex) in SMALL_ORDER_NON_CANONICAL
        .iter()
        .chain([&NON_CANONICAL])
        .enumerate()
    {
        assert_eq!(
            refusal(&hex32(hex)),
            Error::Key("ed25519 public key is not canonically encoded"),
            "non-canonical encoding {i}"
        );
    }
}

#[test]
fn a_mixed_order_key_is_refused() {
    assert_eq!(
        refusal(&hex32(MIXED_ORDER)),
        Error::Key("ed25519 public key is not in the prime-order subgroup")
    );
}

#[test]
fn bytes_that_are_no_curve_point_are_refused() {
    assert_eq!(
        refusal(&hex32(NOT_A_POINT)),
        Error::Key("ed25519 public key is not a curve point")
    );
}

#[test]
fn real_keys_still_load_in_every_form() {
    for seed in 0..16u8 {
        let public = SigningKey::ed25519_from_seed(&[seed; 32])
            .unwrap()
            .verifying_key()
            .unwrap();
        let raw: [u8; 32] = public.public_bytes().try_into().unwrap();
        for key in [
            VerifyingKey::try_ed25519(raw).unwrap(),
            VerifyingKey::from_spki_der(&spki_der(&raw), None).unwrap(),
            VerifyingKey::from_pem(&spki_pem(&raw), None).unwrap(),
        ] {
            assert_eq!(key.algorithm(), Algorithm::Ed25519);
            assert_eq!(key.public_bytes(), raw, "seed {seed}");
        }
    }
}

/// A request "signed" by the identity key: `R = identity, S = 0`, which verifies under that key
/// for any message.
fn forged() -> Request<Vec<u8>> {
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"drop_table"}}"#;
    let mut req = Request::post("https://mcp.example/mcp")
        .header("content-type", "application/json")
        .header("content-digest", mcp_content_digest(body))
        .body(body.to_vec())
        .unwrap();
    // Any key makes the Signature-Input; the signature itself is then replaced.
    let any = SigningKey::ed25519_from_seed(&[1; 32]).unwrap();
    let spec = mcp_spec(&RequestView::of(&req), &any, KEYID, None, NOW).unwrap();
    sign(RequestView::of(&req), &spec, &any)
        .unwrap()
        .apply(req.headers_mut())
        .unwrap();
    let mut forged_signature = [0u8; 64];
    forged_signature[0] = 1;
    let label = spec.label().to_owned();
    req.headers_mut().insert(
        "signature",
        format!("{label}=:{}:", Base64::encode_string(&forged_signature))
            .parse()
            .unwrap(),
    );
    req
}

#[test]
fn the_identity_key_forgery_is_refused_before_verification() {
    let identity = hex32(SMALL_ORDER[0]);
    let req = forged();
    let prepared = Verifier::new(VerifyPolicy::mcp())
        .prepare(RequestView::of(&req), NOW)
        .unwrap();
    let mut forged_signature = [0u8; 64];
    forged_signature[0] = 1;

    // The premise: ring alone accepts it.
    assert!(
        UnparsedPublicKey::new(&ED25519, identity)
            .verify(prepared.base(), &forged_signature)
            .is_ok(),
        "ring accepts R = identity, S = 0 under the identity key"
    );

    // The key never loads, so nothing is verified with it.
    assert_eq!(
        VerifyingKey::try_ed25519(identity).unwrap_err(),
        Error::Key("ed25519 public key is of small order")
    );
    assert!(VerifyingKey::from_pem(&spki_pem(&identity), None).is_err());

    // The infallible constructor builds a key that verifies nothing.
    let inert = VerifyingKey::ed25519(identity);
    assert!(!inert.verify(prepared.base(), &forged_signature));
    assert_eq!(prepared.verify(&inert).unwrap_err(), Error::BadSignature);
}

#[test]
fn every_weak_key_verifies_nothing_through_the_infallible_constructor() {
    let message = b"any message at all";
    let mut forged_signature = [0u8; 64];
    forged_signature[0] = 1;
    for hex in SMALL_ORDER.iter().chain(&SMALL_ORDER_NON_CANONICAL).chain([
        &MIXED_ORDER,
        &NON_CANONICAL,
        &NOT_A_POINT,
    ]) {
        let key = VerifyingKey::ed25519(hex32(hex));
        assert!(!key.verify(message, &forged_signature), "{hex}");
        assert_eq!(key.public_bytes(), hex32(hex));
    }
}
