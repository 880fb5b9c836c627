//! Strict decoding: every non-canonical or unsupported input is refused.

use vouch_token::{Error, Token};

use crate::support::{NOW, key, mint, reference_root};

/// Assembles raw token bytes around the given block payloads, with a real next key and zero
/// signatures. Decoding never checks signatures, so these exercise the structural rules alone.
/// (A zero key would not do: it is a point of small order, which decoding refuses.)
fn raw(version: u8, payloads: &[&[u8]], proof: &[u8]) -> Vec<u8> {
    let mut out = vec![version];
    out.extend_from_slice(&[0u8; 8]);
    out.push(u8::try_from(payloads.len()).unwrap());
    for p in payloads {
        assert!(p.len() < 128);
        out.push(u8::try_from(p.len()).unwrap());
        out.extend_from_slice(p);
        out.extend_from_slice(key(2).public_key().as_bytes());
        out.extend_from_slice(&[0u8; 64]);
    }
    out.extend_from_slice(proof);
    out
}

const SECRET_PROOF: &[u8] = &[0u8; 33];

/// A minimal valid authority payload: issuer "i", subject "s", expiry 1, max depth 5.
const AUTHORITY: &[u8] = &[0x01, 1, b'i', 0x02, 1, b's', 0x03, 1, 0x0a, 5];

fn malformed(bytes: &[u8]) -> &'static str {
    match Token::from_bytes(bytes) {
        Err(Error::Malformed(m)) => m.reason(),
        other => panic!("expected malformed, got {other:?}"),
    }
}

#[test]
fn the_raw_builder_makes_a_decodable_token() {
    Token::from_bytes(&raw(1, &[AUTHORITY], SECRET_PROOF)).unwrap();
    Token::from_bytes(&raw(1, &[AUTHORITY, &[0x05, 0]], SECRET_PROOF)).unwrap();
}

#[test]
fn structural_defects_are_malformed() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "version 0",
            raw(0, &[AUTHORITY], SECRET_PROOF),
            "unsupported version",
        ),
        (
            "version 2",
            raw(2, &[AUTHORITY], SECRET_PROOF),
            "unsupported version",
        ),
        ("no blocks", raw(1, &[], SECRET_PROOF), "no blocks"),
        (
            "17 blocks",
            raw(1, &[AUTHORITY; 17], SECRET_PROOF),
            "too many blocks",
        ),
        (
            "trailing byte",
            {
                let mut t = raw(1, &[AUTHORITY], SECRET_PROOF);
                t.push(0);
                t
            },
            "trailing bytes",
        ),
        (
            "truncated proof",
            raw(1, &[AUTHORITY], &[0u8; 32]),
            "truncated",
        ),
        (
            "unknown proof kind",
            raw(1, &[AUTHORITY], &[2u8; 65]),
            "unknown proof kind",
        ),
        (
            "sealed proof too short",
            raw(1, &[AUTHORITY], &[1u8; 33]),
            "truncated",
        ),
        ("empty input", vec![], "truncated"),
        (
            "unknown field",
            raw(
                1,
                &[&[0x01, 1, b'i', 0x02, 1, b's', 0x03, 1, 0x0a, 5, 0x0b, 0]],
                SECRET_PROOF,
            ),
            "unknown field",
        ),
        (
            "repeated field",
            raw(
                1,
                &[&[
                    0x01, 1, b'i', 0x01, 1, b'j', 0x02, 1, b's', 0x03, 1, 0x0a, 5,
                ]],
                SECRET_PROOF,
            ),
            "fields out of order or repeated",
        ),
        (
            "fields out of order",
            raw(
                1,
                &[&[0x02, 1, b's', 0x01, 1, b'i', 0x03, 1, 0x0a, 5]],
                SECRET_PROOF,
            ),
            "fields out of order or repeated",
        ),
        (
            "authority without issuer",
            raw(1, &[&[0x02, 1, b's', 0x03, 1, 0x0a, 5]], SECRET_PROOF),
            "authority block lacks issuer or subject",
        ),
        (
            "authority without expiry",
            raw(1, &[&[0x01, 1, b'i', 0x02, 1, b's', 0x0a, 5]], SECRET_PROOF),
            "authority block lacks expiry or max depth",
        ),
        (
            "authority without max depth",
            raw(1, &[&[0x01, 1, b'i', 0x02, 1, b's', 0x03, 1]], SECRET_PROOF),
            "authority block lacks expiry or max depth",
        ),
        (
            "issuer in attenuation block",
            raw(1, &[AUTHORITY, &[0x01, 1, b'x']], SECRET_PROOF),
            "issuer or subject outside the authority block",
        ),
        (
            "duplicate tool",
            raw(1, &[AUTHORITY, &[0x05, 2, 1, b'a', 1, b'a']], SECRET_PROOF),
            "set not in canonical order",
        ),
        (
            "unsorted tools",
            raw(1, &[AUTHORITY, &[0x05, 2, 1, b'b', 1, b'a']], SECRET_PROOF),
            "set not in canonical order",
        ),
        (
            "empty tool name",
            raw(1, &[AUTHORITY, &[0x05, 1, 0]], SECRET_PROOF),
            "empty string",
        ),
        (
            "unsorted operations",
            raw(1, &[AUTHORITY, &[0x06, 1, 1, b'a', 2, 2, 1]], SECRET_PROOF),
            "set not in canonical order",
        ),
        (
            "named op as string",
            raw(
                1,
                &[
                    AUTHORITY,
                    &[0x06, 1, 1, b'a', 1, 0, 4, b'r', b'e', b'a', b'd'],
                ],
                SECRET_PROOF,
            ),
            "named operation spelled as a string",
        ),
        (
            "unknown op code",
            raw(1, &[AUTHORITY, &[0x06, 1, 1, b'a', 1, 9]], SECRET_PROOF),
            "unknown operation code",
        ),
        (
            "empty op list",
            raw(1, &[AUTHORITY, &[0x06, 1, 1, b'a', 0]], SECRET_PROOF),
            "empty operation list",
        ),
        (
            "empty operations field",
            raw(1, &[AUTHORITY, &[0x06, 0]], SECRET_PROOF),
            "empty operations field",
        ),
        (
            "empty limits field",
            raw(1, &[AUTHORITY, &[0x07, 0]], SECRET_PROOF),
            "empty limits field",
        ),
        (
            "duplicate limit",
            raw(
                1,
                &[
                    AUTHORITY,
                    &[0x07, 2, 1, b'a', 1, b'k', 1, 1, b'a', 1, b'k', 2],
                ],
                SECRET_PROOF,
            ),
            "set not in canonical order",
        ),
        (
            "empty audience",
            raw(1, &[AUTHORITY, &[0x08, 0]], SECRET_PROOF),
            "empty audience",
        ),
        (
            "max depth 16",
            raw(1, &[AUTHORITY, &[0x0a, 16]], SECRET_PROOF),
            "max depth out of range",
        ),
        (
            "non-minimal expiry",
            raw(
                1,
                &[&[0x01, 1, b'i', 0x02, 1, b's', 0x03, 0x81, 0x00, 0x0a, 5]],
                SECRET_PROOF,
            ),
            "non-minimal integer",
        ),
        (
            "payload length past the end",
            {
                let mut t = raw(1, &[AUTHORITY], &[]);
                t[10] = 120;
                t
            },
            "length exceeds input",
        ),
        (
            "invalid utf-8",
            raw(1, &[AUTHORITY, &[0x09, 1, 0xff]], SECRET_PROOF),
            "string is not utf-8",
        ),
    ];
    for (name, bytes, reason) in cases {
        let got = malformed(&bytes);
        assert_eq!(got, reason, "case {name:?}");
    }
}

#[test]
fn size_cap_is_enforced_before_decoding() {
    let token = mint(&key(1), reference_root());
    let bytes = token.to_bytes();
    assert!(matches!(
        Token::from_bytes_with_cap(&bytes, bytes.len() - 1),
        Err(Error::Malformed(m)) if m.reason() == "token too large"
    ));
    Token::from_bytes_with_cap(&bytes, bytes.len()).unwrap();
    let over = vec![1u8; 8 * 1024 + 1];
    assert_eq!(malformed(&over), "token too large");
    let text = "A".repeat(20_000);
    assert!(
        matches!(Token::from_base64(&text), Err(Error::Malformed(m)) if m.reason() == "token too large")
    );
}

#[test]
fn base64_is_strict() {
    let token = mint(&key(1), reference_root());
    let text = token.to_base64();
    assert!(!text.contains('='));
    assert!(Token::from_base64(&text).is_ok());
    for (name, bad) in [
        ("padding", format!("{text}=")),
        (
            "standard alphabet",
            text.replace('-', "+").replace('_', "/")
                + if text.contains(['-', '_']) { "" } else { "+" },
        ),
        ("whitespace", format!(" {text}")),
        ("inner newline", format!("{}\n{}", &text[..10], &text[10..])),
        ("truncated by one char", text[..text.len() - 1].to_owned()),
    ] {
        assert!(
            matches!(Token::from_base64(&bad), Err(Error::Malformed(_))),
            "{name} accepted"
        );
    }
}

#[test]
fn base64_with_non_zero_trailing_bits_is_refused() {
    // Pick a token whose length leaves spare bits in the last character, then set them.
    let mut now = NOW;
    let (token, text) = loop {
        let t = Token::mint_at(&key(1), "auth-server", "agent-a", reference_root(), now).unwrap();
        let s = t.to_base64();
        if !s.len().is_multiple_of(4) {
            break (t, s);
        }
        now += 200;
    };
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let last = *text.as_bytes().last().unwrap();
    let pos = alphabet.iter().position(|&c| c == last).unwrap();
    let spare_bits = if text.len() % 4 == 2 { 4 } else { 2 };
    assert_eq!(
        pos % (1 << spare_bits),
        0,
        "canonical encoding has zero spare bits"
    );
    let mut bad = text.clone().into_bytes();
    *bad.last_mut().unwrap() = alphabet[pos + 1];
    let bad = String::from_utf8(bad).unwrap();
    assert!(
        Token::from_base64(&bad).is_err(),
        "re-encoding with spare bits set accepted"
    );
    assert_eq!(
        Token::from_base64(&text).unwrap().to_bytes(),
        token.to_bytes()
    );
}
