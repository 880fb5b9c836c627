//! Weak Ed25519 public keys (small-order, mixed-order, non-canonical) are refused in every format
//! vouch reads and by every resolver, so none is ever verified with or pinned.

use base64ct::{Base64, Encoding};
use serde_json::json;
use vouch_keys::*;
use vouch_token::PublicKey;

use crate::support::{NOW, ready};

/// The eight points of order 1, 2, 4 and 8 (canonical encodings).
const SMALL_ORDER: [&str; 8] = [
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
];
/// The base point plus a point of order 8.
const MIXED_ORDER: &str = "98519eadf35b995233b51b5cd23e9cc5a28b639b5a4af0ec903cb960d81b7819";
/// y = p + 3, a non-canonical encoding of the point with y = 3.
const NON_CANONICAL: &str = "f0ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f";
/// y = p + 1, a non-canonical encoding of the identity.
const NON_CANONICAL_IDENTITY: &str =
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f";

/// Every weak key, with the reason it is refused for.
pub(crate) fn weak() -> Vec<(PublicKey, &'static str)> {
    SMALL_ORDER
        .iter()
        .map(|h| (*h, "of small order"))
        .chain([
            (MIXED_ORDER, "not in the prime-order subgroup"),
            (NON_CANONICAL, "not canonically encoded"),
            (NON_CANONICAL_IDENTITY, "not canonically encoded"),
        ])
        .map(|(h, why)| (PublicKey::from_hex(h).unwrap(), why))
        .collect()
}

fn spki_pem(key: &PublicKey) -> String {
    let mut der = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    der.extend_from_slice(key.as_bytes());
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        Base64::encode_string(&der)
    )
}

/// The key in every public format vouch reads.
fn texts(key: &PublicKey) -> Vec<(&'static str, String)> {
    vec![
        ("hex", key.to_hex()),
        ("SPKI PEM", spki_pem(key)),
        ("JWK", public_jwk(key).to_string()),
        (
            "MCPVault JSON",
            json!({"public_key": key.to_hex()}).to_string(),
        ),
        ("did:key", did_key(key)),
    ]
}

#[test]
fn weak_keys_are_refused_in_every_format() {
    for (i, (key, why)) in weak().iter().enumerate() {
        for (format, text) in texts(key) {
            let err = parse_public(&text).unwrap_err().to_string();
            assert!(
                err.contains("ed25519 public key is") && err.contains(why),
                "key {i} as {format}: {err}"
            );
        }
        assert!(from_did_key(&did_key(key)).is_err(), "key {i}");
    }
}

#[test]
fn a_weak_key_file_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identity.pem");
    std::fs::write(&path, spki_pem(&weak()[0].0)).unwrap();
    let err = load_public(&path).unwrap_err().to_string();
    assert!(
        err.contains("identity.pem") && err.contains("of small order"),
        "{err}"
    );
}

#[test]
fn real_keys_still_parse_in_every_format() {
    for seed in 0..8 {
        let key = vouch_token::KeyPair::from_seed(&[seed; 32])
            .unwrap()
            .public_key();
        for (format, text) in texts(&key) {
            assert_eq!(parse_public(&text).unwrap(), key, "{format}");
        }
        assert!(ResolvedKey::ed25519(&key).is_ok());
    }
}

#[tokio::test]
async fn weak_keys_are_refused_by_every_resolver() {
    let dir = tempfile::tempdir().unwrap();
    for (i, (key, why)) in weak().iter().enumerate() {
        let refused = |r: Result<ResolvedKey, ResolveError>, path: &str| match r {
            Err(ResolveError::Refused(e)) => assert!(e.contains(why), "key {i}, {path}: {e}"),
            other => panic!("key {i}, {path}: {other:?}"),
        };
        // The one constructor every resolver goes through.
        refused(ResolvedKey::ed25519(key), "ResolvedKey::ed25519");

        // Static: added in code (refused when resolved), or from a file (refused on load).
        let r = StaticResolver::new().with_ed25519("weak", key);
        refused(r.resolve("weak").await, "StaticResolver::with_ed25519");
        let path = dir.path().join(format!("keys-{i}.json"));
        std::fs::write(&path, json!({"weak": key.to_hex()}).to_string()).unwrap();
        let err = StaticResolver::from_file(&path).unwrap_err().to_string();
        assert!(
            err.contains(why),
            "key {i}, StaticResolver::from_file: {err}"
        );

        // did:key needs no fetch: refused by the HTTPS resolver itself.
        let https = HttpsResolver::new(HttpsConfig::loopback_testing()).unwrap();
        refused(https.resolve(&did_key(key)).await, "did:key");

        // Fetched documents of every shape.
        let jwk = public_jwk(key);
        let thumbprint = jwk_thumbprint(key);
        for (shape, doc, selector) in [
            ("JWK", jwk.clone(), None),
            ("JWKS", json!({"keys": [jwk.clone()]}), None),
            (
                "JWKS by thumbprint",
                json!({"keys": [jwk.clone()]}),
                Some(thumbprint.as_str()),
            ),
            (
                "DID document",
                json!({"verificationMethod": [
                    {"id": "did:web:agents.example#key-1", "publicKeyJwk": jwk.clone()}
                ]}),
                Some("key-1"),
            ),
            (
                "{\"public_key\": PEM}",
                json!({"public_key": spki_pem(key)}),
                None,
            ),
        ] {
            refused(
                key_from_document(&doc, selector).and_then(|k| ResolvedKey::ed25519(&k)),
                shape,
            );
        }
    }
}

#[tokio::test]
async fn a_forged_request_under_the_identity_key_never_verifies_nor_pins() {
    use vouch_httpsig::{RequestView, SigningKey, Verifier, VerifyPolicy, mcp_spec, sign};
    const KEYID: &str = "https://agents.example/agents/forger@agents.example";
    let identity = &weak()[0].0;
    let resolver = StaticResolver::new().with_ed25519(KEYID, identity);

    // Signature-Input from any key, then the signature R = identity, S = 0.
    let any = SigningKey::ed25519_from_seed(&[1; 32]).unwrap();
    let mut req = http::Request::get("https://mcp.example/mcp")
        .body(Vec::new())
        .unwrap();
    let spec = mcp_spec(&RequestView::of(&req), &any, KEYID, None, NOW).unwrap();
    sign(RequestView::of(&req), &spec, &any)
        .unwrap()
        .apply(req.headers_mut())
        .unwrap();
    let mut forged = [0u8; 64];
    forged[0] = 1;
    req.headers_mut().insert(
        "signature",
        format!("{}=:{}:", spec.label(), Base64::encode_string(&forged))
            .parse()
            .unwrap(),
    );
    let prepared = Verifier::new(VerifyPolicy::mcp())
        .prepare(RequestView::of(&req), NOW)
        .unwrap();
    assert!(
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, identity.as_bytes())
            .verify(prepared.base(), &forged)
            .is_ok(),
        "ring alone accepts it"
    );

    // The key does not resolve, and no `ResolvedKey` (what `verify_and_pin` takes) can hold it:
    // there is nothing to verify with and nothing to pin.
    assert!(matches!(
        resolver.resolve(KEYID).await,
        Err(ResolveError::Refused(_))
    ));
    assert!(ResolvedKey::ed25519(identity).is_err());
    let pins = MemoryPinStore::new(8);
    assert_eq!(ready(pins.get(KEYID)).unwrap(), None);
}
