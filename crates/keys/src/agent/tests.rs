use base64ct::{Base64, Base64UrlUnpadded, Encoding};
use vouch_token::KeyPair;

use super::*;
use crate::format::{jwk_thumbprint, public_jwk};

fn value(doc: &serde_json::Value, b64: fn(&[u8]) -> String) -> Vec<u8> {
    format!("\"{DATA_PREFIX}{}\"", b64(doc.to_string().as_bytes())).into_bytes()
}

fn key(seed: u8) -> vouch_token::PublicKey {
    KeyPair::from_seed(&[seed; 32]).unwrap().public_key()
}

#[test]
fn the_key_for_the_keyid_is_found_in_either_alphabet() {
    let doc = serde_json::json!({"keys": [public_jwk(&key(2)), public_jwk(&key(1))]});
    let keyid = jwk_thumbprint(&key(1));
    for b64 in [Base64UrlUnpadded::encode_string, Base64::encode_string] {
        let found = signature_agent_key(&value(&doc, b64), &keyid)
            .unwrap()
            .unwrap();
        assert_eq!(found.fingerprint(), keyid);
    }
}

#[test]
fn signature_agent_value_round_trips() {
    let value = signature_agent_value(&[key(1), key(2)]);
    assert!(value.starts_with(&format!("\"{DATA_PREFIX}")));
    for seed in [1, 2] {
        let keyid = jwk_thumbprint(&key(seed));
        let found = signature_agent_key(value.as_bytes(), &keyid)
            .unwrap()
            .unwrap();
        assert_eq!(found.fingerprint(), keyid);
    }
}

#[test]
fn a_url_is_not_fetched() {
    let v = br#""https://client.example/.well-known/http-message-signatures-directory""#;
    assert!(signature_agent_key(v, "x").unwrap().is_none());
}

#[test]
fn malformed_values_and_missing_keys_are_refused() {
    let doc = serde_json::json!({"keys": [public_jwk(&key(1))]});
    let good = value(&doc, Base64UrlUnpadded::encode_string);
    let other = jwk_thumbprint(&key(3));
    let unquoted = good[1..good.len() - 1].to_vec();
    let not_jwks = value(&public_jwk(&key(1)), Base64UrlUnpadded::encode_string);
    let mut huge = b"\"".to_vec();
    huge.extend(std::iter::repeat_n(b'A', MAX_SIGNATURE_AGENT_BYTES));
    huge.push(b'"');
    for (name, v, keyid) in [
        ("another key's thumbprint", good.clone(), other.as_str()),
        ("unquoted", unquoted, ""),
        ("not a JWKS", not_jwks, ""),
        (
            "not base64",
            format!("\"{DATA_PREFIX}%%%\"").into_bytes(),
            "",
        ),
        ("too large", huge, ""),
    ] {
        let keyid = if keyid.is_empty() {
            jwk_thumbprint(&key(1))
        } else {
            keyid.to_owned()
        };
        assert!(
            matches!(
                signature_agent_key(&v, &keyid),
                Err(ResolveError::Refused(_))
            ),
            "{name}"
        );
    }
}
