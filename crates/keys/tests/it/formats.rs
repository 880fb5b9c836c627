//! Key formats: known answers, round trips, file handling and every kind of bad input.

use ring::signature::KeyPair as _;
use vouch_keys::*;
use vouch_token::{KeyPair, PublicKey};

/// RFC 8032 test 1 (also RFC 8037's example key).
const RFC8032_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const RFC8032_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

/// RFC 9421 B.1.4 `test-key-ed25519`.
const B14_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n-----END PRIVATE KEY-----\n";
const B14_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=\n-----END PUBLIC KEY-----\n";
const B14_PUBLIC_HEX: &str = "26b40b8f93fff3d897112f7ebc582b232dbd72517d082fe83cfb30ddce43d1bb";

fn rfc8032() -> KeyPair {
    parse_private(&format!(r#"{{"private_key": "{RFC8032_SEED}"}}"#)).unwrap()
}

#[test]
fn known_answers() {
    assert_eq!(rfc8032().public_key().to_hex(), RFC8032_PUBLIC);
    // RFC 8037 Appendix A.3: the JWK thumbprint of this key.
    assert_eq!(
        jwk_thumbprint(&rfc8032().public_key()),
        "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    );
    assert_eq!(
        public_jwk(&rfc8032().public_key())["x"],
        "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    );
    // RFC 9421 B.1.4: PKCS#8 v1 private key and SPKI public key.
    let b14 = parse_private(B14_PRIVATE).unwrap();
    assert_eq!(b14.public_key().to_hex(), B14_PUBLIC_HEX);
    assert_eq!(parse_public(B14_PUBLIC).unwrap().to_hex(), B14_PUBLIC_HEX);
    assert_eq!(encode_private(&b14, KeyFormat::Pem).as_str(), B14_PRIVATE);
    assert_eq!(encode_public(&b14.public_key(), KeyFormat::Pem), B14_PUBLIC);
    // Every Ed25519 did:key starts with z6Mk.
    assert!(did_key(&b14.public_key()).starts_with("did:key:z6Mk"));
}

#[test]
fn ring_pkcs8_v2_documents_load() {
    let doc =
        ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    let ring_key = ring::signature::Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
    let ours = from_pkcs8_der(doc.as_ref()).unwrap();
    assert_eq!(ours.public_key().as_bytes(), ring_key.public_key().as_ref());
    // Ours, written as v2, is read back by ring's strict parser.
    let v2 = pkcs8_v2_der(&ours);
    let again = ring::signature::Ed25519KeyPair::from_pkcs8(&v2).unwrap();
    assert_eq!(again.public_key().as_ref(), ours.public_key().as_bytes());
}

#[test]
fn every_format_round_trips() {
    let key = KeyPair::from_seed(&[42; 32]).unwrap();
    for format in [
        KeyFormat::Pem,
        KeyFormat::PemV2,
        KeyFormat::Jwk,
        KeyFormat::Hex,
    ] {
        let private = encode_private(&key, format);
        assert_eq!(
            parse_private(&private).unwrap().seed(),
            key.seed(),
            "{format:?}"
        );
        assert_eq!(
            parse_public(&private).unwrap(),
            key.public_key(),
            "{format:?} private as public"
        );
        let public = encode_public(&key.public_key(), format);
        assert_eq!(
            parse_public(&public).unwrap(),
            key.public_key(),
            "{format:?} public"
        );
        assert!(
            parse_private(&public).is_err(),
            "{format:?}: a public key is not a private key"
        );
    }
    assert_eq!(
        from_did_key(&did_key(&key.public_key())).unwrap(),
        key.public_key()
    );
    assert_eq!(
        parse_public(&format!("{}#key-1", did_key(&key.public_key()))).unwrap(),
        key.public_key()
    );
}

#[test]
fn the_mcpvault_key_file_loads_as_is() {
    let file = format!(r#"{{"private_key": "{RFC8032_SEED}", "public_key": "{RFC8032_PUBLIC}"}}"#);
    assert_eq!(
        parse_private(&file).unwrap().public_key().to_hex(),
        RFC8032_PUBLIC
    );
    assert_eq!(parse_public(&file).unwrap().to_hex(), RFC8032_PUBLIC);
    assert_eq!(
        parse_public(&format!(r#"{{"public_key": "{RFC8032_PUBLIC}"}}"#))
            .unwrap()
            .to_hex(),
        RFC8032_PUBLIC
    );
}

#[test]
fn bad_keys_say_what_is_wrong() {
    let other_public = "00".repeat(32);
    let cases: Vec<(String, &str)> = vec![
        ("not a key".into(), "not a PEM or JSON private key"),
        (RFC8032_SEED.into(), "bare hex is ambiguous"),
        (
            "-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----".into(),
            "malformed PEM",
        ),
        (B14_PUBLIC.into(), "not PRIVATE KEY"),
        (
            "-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----".into(),
            "not an Ed25519 PKCS#8 key",
        ),
        ("{".into(), "invalid JSON"),
        ("{}".into(), "neither a JWK"),
        (r#"{"kty":"RSA","d":"AAAA"}"#.into(), "not kty OKP"),
        (
            r#"{"kty":"OKP","crv":"Ed25519","d":"AAAA"}"#.into(),
            "JWK d is not 32 bytes",
        ),
        (
            format!(r#"{{"private_key":"{RFC8032_SEED}","public_key":"{other_public}"}}"#),
            "does not match",
        ),
        (r#"{"private_key":"xyz"}"#.into(), "not 64 hex digits"),
    ];
    for (text, expected) in cases {
        let err = parse_private(&text).unwrap_err().to_string();
        assert!(err.contains(expected), "{text:?}: {err}");
    }
    for (text, expected) in [
        ("did:key:zQ3s", "not an Ed25519 key"),
        ("did:key:y123", "not a did:key in base58btc"),
        (
            "-----BEGIN RSA PUBLIC KEY-----\nMAA=\n-----END RSA PUBLIC KEY-----",
            "not PUBLIC KEY",
        ),
        (
            "abcd",
            "not a PEM, JSON, did:key or 64-digit hex public key",
        ),
        (
            r#"{"kty":"OKP","crv":"Ed25519","x":"AAAA"}"#,
            "JWK x is not 32 bytes",
        ),
    ] {
        let err = parse_public(text).unwrap_err().to_string();
        assert!(err.contains(expected), "{text:?}: {err}");
    }
}

#[test]
fn private_key_files_are_owner_only_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.pem");
    let key = KeyPair::from_seed(&[5; 32]).unwrap();
    save_private(&path, &key, KeyFormat::Pem).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    assert_eq!(load_private(&path).unwrap().seed(), key.seed());
    assert_eq!(load_public(&path).unwrap(), key.public_key());
    let err = save_private(
        &path,
        &KeyPair::from_seed(&[6; 32]).unwrap(),
        KeyFormat::Pem,
    )
    .unwrap_err();
    assert!(err.to_string().contains("agent.pem"), "{err}");
    assert_eq!(
        load_private(&path).unwrap().seed(),
        key.seed(),
        "the first key is intact"
    );
}

#[test]
fn file_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let err = load_private(&missing).unwrap_err();
    assert!(
        matches!(&err, Error::File { path, .. } if *path == missing),
        "{err}"
    );
    let corrupt = dir.path().join("corrupt.json");
    std::fs::write(&corrupt, "{\"private_key\": 12}").unwrap();
    let err = load_private(&corrupt).unwrap_err().to_string();
    assert!(
        err.starts_with(&corrupt.display().to_string()) && err.contains("neither a JWK"),
        "{err}"
    );
    let err = load_public(&corrupt).unwrap_err().to_string();
    assert!(err.contains("corrupt.json"), "{err}");
    let _ = PublicKey::from_bytes([0; 32]);
}
