//! Every rejection path of signing policy and verification, each asserting its precise error.

use base64ct::{Base64, Encoding};
use http::{HeaderValue, Request};
use vouch_httpsig::*;

use crate::support::ready;

const NOW: u64 = 1_700_000_000;
const KEYID: &str = "https://agents.example/agents/a@example.com";
const BODY: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":2}}}"#;

fn key() -> SigningKey {
    SigningKey::ed25519_from_seed(&[7; 32]).unwrap()
}

fn unsigned(body: &[u8]) -> Request<Vec<u8>> {
    Request::post("https://mcp.example/mcp?x=1")
        .header("content-type", "application/json")
        .header("content-digest", mcp_content_digest(body))
        .header("mcp-session-id", "session-1")
        .body(body.to_vec())
        .unwrap()
}

/// A request signed with the MCP profile, after `edit` adjusts the spec.
fn signed_with(
    body: &[u8],
    created: u64,
    edit: impl FnOnce(SignatureSpec) -> SignatureSpec,
) -> Request<Vec<u8>> {
    let mut req = unsigned(body);
    let spec = edit(mcp_spec(&RequestView::of(&req), &key(), KEYID, None, created).unwrap());
    sign(RequestView::of(&req), &spec, &key())
        .unwrap()
        .apply(req.headers_mut())
        .unwrap();
    req
}

fn signed() -> Request<Vec<u8>> {
    signed_with(BODY, NOW, |s| s)
}

fn verify_with(req: &Request<Vec<u8>>, policy: VerifyPolicy, now: u64) -> Result<Verified, Error> {
    Verifier::new(policy)
        .prepare(RequestView::of(req), now)?
        .verify(&key().verifying_key()?)
}

fn verify(req: &Request<Vec<u8>>) -> Result<Verified, Error> {
    verify_with(req, VerifyPolicy::mcp(), NOW)
}

#[test]
fn the_untouched_request_verifies() {
    let v = verify(&signed()).unwrap();
    assert_eq!(v.params.keyid.as_deref(), Some(KEYID));
    assert_eq!(v.algorithm(), Algorithm::Ed25519);
}

#[test]
fn tampering_with_any_covered_part_is_rejected() {
    let base = signed();
    let mut body = base.clone();
    body.body_mut()[10] ^= 1;
    assert_eq!(verify(&body).unwrap_err(), Error::DigestMismatch, "body");

    let mut redigested = body.clone();
    let fresh = mcp_content_digest(redigested.body());
    redigested
        .headers_mut()
        .insert("content-digest", fresh.parse().unwrap());
    assert_eq!(
        verify(&redigested).unwrap_err(),
        Error::BadSignature,
        "body with a fresh digest"
    );

    let mut method = base.clone();
    *method.method_mut() = http::Method::PUT;
    assert_eq!(verify(&method).unwrap_err(), Error::BadSignature, "method");

    for uri in [
        "https://mcp.example/other?x=1",
        "https://mcp.example/mcp?x=2",
        "https://evil.example/mcp?x=1",
        "http://mcp.example/mcp?x=1",
    ] {
        let mut moved = base.clone();
        *moved.uri_mut() = uri.parse().unwrap();
        assert_eq!(verify(&moved).unwrap_err(), Error::BadSignature, "{uri}");
    }

    let mut header = base.clone();
    header
        .headers_mut()
        .insert("mcp-session-id", HeaderValue::from_static("session-2"));
    assert_eq!(
        verify(&header).unwrap_err(),
        Error::BadSignature,
        "covered header"
    );
}

#[test]
fn server_side_authority_and_scheme_are_what_counts() {
    // A server sees a relative URI; it supplies the authority and scheme it serves.
    let req = signed();
    let (parts, body) = req.into_parts();
    let mut relative = parts.clone();
    relative.uri = "/mcp?x=1".parse().unwrap();
    let verifier = Verifier::new(VerifyPolicy::mcp());
    let vk = key().verifying_key().unwrap();
    let ok = RequestView::new(&relative, &body)
        .with_scheme("https")
        .with_authority("mcp.example");
    verifier.prepare(ok, NOW).unwrap().verify(&vk).unwrap();
    let other = RequestView::new(&relative, &body)
        .with_scheme("https")
        .with_authority("other.example");
    assert_eq!(
        verifier
            .prepare(other, NOW)
            .unwrap()
            .verify(&vk)
            .unwrap_err(),
        Error::BadSignature
    );
    let unknown = RequestView::new(&relative, &body).with_authority("mcp.example");
    assert!(matches!(
        verifier.prepare(unknown, NOW),
        Err(Error::ComponentUnavailable(_))
    ));
}

#[test]
fn missing_components_are_rejected() {
    let no_target = signed_with(BODY, NOW, |_| {
        SignatureSpec::new("sig1")
            .cover_names(&["@method", "content-digest", "mcp-session-id"])
            .unwrap()
            .created(NOW)
            .nonce("n1")
            .keyid(KEYID)
    });
    assert_eq!(
        verify(&no_target).unwrap_err(),
        Error::MissingComponent("\"@target-uri\"".into())
    );

    let no_digest = signed_with(BODY, NOW, |_| {
        SignatureSpec::new("sig1")
            .cover_names(&["@method", "@target-uri", "mcp-session-id"])
            .unwrap()
            .created(NOW)
            .nonce("n2")
            .keyid(KEYID)
    });
    assert_eq!(verify(&no_digest).unwrap_err(), Error::DigestMissing);

    let mut added = signed();
    added
        .headers_mut()
        .insert("authorization", HeaderValue::from_static("Bearer x"));
    assert_eq!(
        verify(&added).unwrap_err(),
        Error::MissingComponent("\"authorization\"".into())
    );

    let mut token = signed();
    token
        .headers_mut()
        .insert(DEFAULT_TOKEN_HEADER, HeaderValue::from_static("AQ"));
    assert!(matches!(verify(&token), Err(Error::MissingComponent(_))));

    let empty = signed_with(BODY, NOW, |_| {
        SignatureSpec::new("sig1")
            .created(NOW)
            .nonce("n3")
            .keyid(KEYID)
    });
    assert!(
        matches!(verify(&empty), Err(Error::MissingComponent(_))),
        "a signature over nothing"
    );
}

#[test]
fn a_body_without_covered_digest_is_rejected_even_null_or_odd_json() {
    for body in [&b"null"[..], b"{\"a\":1,\"a\":2}", b"not json at all"] {
        let mut req = Request::post("https://mcp.example/mcp")
            .body(body.to_vec())
            .unwrap();
        let spec = SignatureSpec::new("sig1")
            .cover_names(&["@method", "@target-uri"])
            .unwrap()
            .created(NOW)
            .nonce("n")
            .keyid(KEYID);
        sign(RequestView::of(&req), &spec, &key())
            .unwrap()
            .apply(req.headers_mut())
            .unwrap();
        assert_eq!(
            verify(&req).unwrap_err(),
            Error::DigestMissing,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    // The digest is over the exact bytes: a duplicate-key body verifies as sent, and a
    // re-serialization of it does not.
    let dup = signed_with(b"{\"a\":1,\"a\":2}", NOW, |s| s);
    verify(&dup).unwrap();
    let mut reserialized = dup.clone();
    *reserialized.body_mut() = b"{\"a\":2}".to_vec();
    assert_eq!(verify(&reserialized).unwrap_err(), Error::DigestMismatch);
}

#[test]
fn time_window_edges() {
    let p = VerifyPolicy::mcp();
    let req = signed();
    verify_with(&req, p.clone(), NOW + 300).unwrap();
    assert_eq!(
        verify_with(&req, p.clone(), NOW + 301).unwrap_err(),
        Error::TooOld
    );
    verify_with(&req, p.clone(), NOW - 30).unwrap();
    assert_eq!(
        verify_with(&req, p.clone(), NOW - 31).unwrap_err(),
        Error::CreatedInFuture
    );

    let expiring = signed_with(BODY, NOW, |s| s.expires(NOW + 10));
    verify_with(&expiring, p.clone(), NOW + 9).unwrap();
    assert_eq!(
        verify_with(&expiring, p, NOW + 10).unwrap_err(),
        Error::Expired
    );
}

#[test]
fn replay_entries_outlive_the_window_even_for_future_created() {
    let p = VerifyPolicy::mcp();
    // Created 30 s ahead of the verifier's clock: valid until created + 300.
    let future = signed_with(BODY, NOW + 30, |s| s);
    let v = verify_with(&future, p.clone(), NOW).unwrap();
    assert_eq!(v.keep_until(), NOW + 30 + 300);
    verify_with(&future, p.clone(), v.keep_until()).unwrap();
    assert_eq!(
        verify_with(&future, p.clone(), v.keep_until() + 1).unwrap_err(),
        Error::TooOld
    );
    let guard = MemoryReplayGuard::new(16);
    ready(v.check_replay(&guard, "agent", NOW)).unwrap();
    // Still refused at the last second it could pass.
    let again = verify_with(&future, p, v.keep_until()).unwrap();
    assert_eq!(
        ready(again.check_replay(&guard, "agent", v.keep_until())),
        Err(Error::Replayed)
    );
}

#[test]
fn parameters_and_algorithms_are_enforced() {
    let no_nonce = signed_with(BODY, NOW, |_| {
        SignatureSpec::new("sig1")
            .cover_names(&["@method", "@target-uri", "content-digest", "mcp-session-id"])
            .unwrap()
            .created(NOW)
            .keyid(KEYID)
    });
    assert_eq!(
        verify(&no_nonce).unwrap_err(),
        Error::MissingParameter("nonce")
    );
    // Without the nonce requirement it passes (the CLI's check mode).
    verify_with(
        &no_nonce,
        VerifyPolicy::mcp().required_params(true, true, false),
        NOW,
    )
    .unwrap();

    let ecdsa_doc = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &ring::rand::SystemRandom::new(),
    )
    .unwrap();
    let ecdsa = SigningKey::from_pkcs8_der(ecdsa_doc.as_ref(), None).unwrap();
    let mismatched = signed_with(BODY, NOW, |s| s.alg(&ecdsa));
    assert_eq!(verify(&mismatched).unwrap_err(), Error::AlgorithmMismatch);

    let mut unknown = signed();
    let input = unknown.headers()["signature-input"]
        .to_str()
        .unwrap()
        .replace("alg=\"ed25519\"", "alg=\"rot13\"");
    unknown
        .headers_mut()
        .insert("signature-input", input.parse().unwrap());
    assert_eq!(
        verify(&unknown).unwrap_err(),
        Error::AlgorithmNotAllowed("rot13".into())
    );

    let ed_only = VerifyPolicy::mcp().algorithms(&[Algorithm::EcdsaP256Sha256]);
    assert_eq!(
        verify_with(&signed(), ed_only, NOW).unwrap_err(),
        Error::AlgorithmNotAllowed("ed25519".into())
    );

    // HMAC is not in the MCP profile's list.
    let secret = SigningKey::hmac_sha256(b"shared secret");
    let mut req = unsigned(BODY);
    let spec = mcp_spec(&RequestView::of(&req), &secret, KEYID, None, NOW).unwrap();
    sign(RequestView::of(&req), &spec, &secret)
        .unwrap()
        .apply(req.headers_mut())
        .unwrap();
    assert_eq!(
        Verifier::new(VerifyPolicy::mcp())
            .prepare(RequestView::of(&req), NOW)
            .unwrap_err(),
        Error::AlgorithmNotAllowed("hmac-sha256".into())
    );
}

#[test]
fn wrong_key_is_rejected() {
    let other = SigningKey::ed25519_from_seed(&[8; 32])
        .unwrap()
        .verifying_key()
        .unwrap();
    let prepared = Verifier::new(VerifyPolicy::mcp())
        .prepare(RequestView::of(&signed()), NOW)
        .unwrap();
    assert_eq!(prepared.verify(&other).unwrap_err(), Error::BadSignature);
}

#[test]
fn replays_and_re_encodings_are_refused() {
    let guard = MemoryReplayGuard::new(1024);
    let req = signed();
    ready(verify(&req).unwrap().check_replay(&guard, "agent", NOW)).unwrap();
    assert_eq!(
        ready(verify(&req).unwrap().check_replay(&guard, "agent", NOW)),
        Err(Error::Replayed)
    );

    // The same signature bytes in base64 with non-zero padding bits: if the parser accepts the
    // text at all, it is the same replay.
    let sig = req.headers()["signature"].to_str().unwrap().to_owned();
    let b64 = sig.trim_start_matches("sig1=:").trim_end_matches(':');
    let raw = Base64::decode_vec(b64).unwrap();
    assert_eq!(raw.len(), 64);
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let last = b64.as_bytes()[b64.len() - 3];
    let pos = alphabet.iter().position(|&c| c == last).unwrap();
    let mut accepted = 0;
    for bits in 1..16 {
        let mut variant = b64.as_bytes().to_vec();
        variant[b64.len() - 3] = alphabet[(pos & !0x0f) | bits];
        let mut copy = req.clone();
        let value = format!("sig1=:{}:", String::from_utf8(variant).unwrap());
        copy.headers_mut()
            .insert("signature", value.parse().unwrap());
        if let Ok(v) = verify(&copy) {
            assert_eq!(
                ready(v.check_replay(&guard, "agent", NOW)),
                Err(Error::Replayed),
                "re-encoding {bits} replayed"
            );
            accepted += 1;
        }
    }
    // Whatever the parser does with them, none got through as new.
    assert!(accepted <= 15);
}

#[test]
fn concurrent_copies_are_accepted_once() {
    let guard = std::sync::Arc::new(MemoryReplayGuard::new(1024));
    let req = signed();
    let verified = verify(&req).unwrap();
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let g = guard.clone();
            let v = verified.clone();
            std::thread::spawn(move || ready(v.check_replay(&*g, "agent", NOW)).is_ok())
        })
        .collect();
    let passed = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|ok| *ok)
        .count();
    assert_eq!(passed, 1);
}

#[test]
fn a_full_replay_store_fails_closed() {
    let guard = MemoryReplayGuard::new(2);
    for n in ["n1", "n2"] {
        let req = signed_with(BODY, NOW, |s| s.nonce(n));
        ready(verify(&req).unwrap().check_replay(&guard, "agent", NOW)).unwrap();
    }
    let third = signed_with(BODY, NOW, |s| s.nonce("n3"));
    let err = ready(verify(&third).unwrap().check_replay(&guard, "agent", NOW)).unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    // Once the first entries can no longer pass the window, they make room.
    ready(
        verify_with(&third, VerifyPolicy::mcp(), NOW)
            .unwrap()
            .check_replay(&guard, "agent", NOW + 301),
    )
    .unwrap();
}

#[test]
fn oversize_and_malformed_headers_are_rejected() {
    let mut big = signed();
    let huge = format!(
        "{}, pad=(\"{}\")",
        big.headers()["signature-input"].to_str().unwrap(),
        "x".repeat(9000)
    );
    big.headers_mut()
        .insert("signature-input", huge.parse().unwrap());
    assert_eq!(verify(&big).unwrap_err(), Error::HeaderTooLarge);

    let mut many = signed();
    let input = many.headers()["signature-input"]
        .to_str()
        .unwrap()
        .to_owned();
    let sig = many.headers()["signature"].to_str().unwrap().to_owned();
    for i in 0..5 {
        many.headers_mut().append(
            "signature-input",
            input.replacen("sig1", &format!("s{i}"), 1).parse().unwrap(),
        );
        many.headers_mut().append(
            "signature",
            sig.replacen("sig1", &format!("s{i}"), 1).parse().unwrap(),
        );
    }
    assert_eq!(verify(&many).unwrap_err(), Error::TooManySignatures);

    let cases: [(&str, &str, Error); 6] = [
        (
            "sig1=(\"@method\"",
            "sig1=:AAAA:",
            Error::Malformed("signature-input is not a structured dictionary"),
        ),
        (
            "sig1=\"@method\"",
            "sig1=:AAAA:",
            Error::Malformed("signature-input member is not an inner list"),
        ),
        (
            "sig1=(\"@method\");created=1700000000;keyid=\"k\";nonce=\"n\"",
            "sig1=\"AAAA\"",
            Error::Malformed("signature member is not a byte sequence"),
        ),
        (
            "sig1=(\"@method\");created=1700000000;keyid=\"k\";nonce=\"n\"",
            "sig1=:!!!:",
            Error::Malformed("signature is not a structured dictionary"),
        ),
        (
            "sig1=(\"@METHOD\");created=1700000000;keyid=\"k\";nonce=\"n\"",
            "sig1=:AAAA:",
            Error::Malformed("component names are lowercase visible ASCII"),
        ),
        (
            "sig1=(\"@method\");created=-5;keyid=\"k\";nonce=\"n\"",
            "sig1=:AAAA:",
            Error::Malformed("negative time parameter"),
        ),
    ];
    for (input, sig, expected) in cases {
        let mut req = unsigned(BODY);
        req.headers_mut()
            .insert("signature-input", input.parse().unwrap());
        req.headers_mut().insert("signature", sig.parse().unwrap());
        assert_eq!(
            Verifier::new(VerifyPolicy::mcp())
                .prepare(RequestView::of(&req), NOW)
                .unwrap_err(),
            expected,
            "{input}"
        );
    }
    assert_eq!(verify(&unsigned(BODY)).unwrap_err(), Error::NoSignature);
}

#[test]
fn labels_tags_and_unsupported_components() {
    let req = signed_with(BODY, NOW, |s| s.tag("mcp"));
    assert_eq!(
        verify_with(&req, VerifyPolicy::mcp().label("other"), NOW).unwrap_err(),
        Error::NoSignature
    );
    assert_eq!(
        verify_with(&req, VerifyPolicy::mcp().required_tag("web-bot-auth"), NOW).unwrap_err(),
        Error::TagMismatch
    );
    verify_with(
        &req,
        VerifyPolicy::mcp().required_tag("mcp").label("sig1"),
        NOW,
    )
    .unwrap();

    let mut trailer = unsigned(BODY);
    trailer.headers_mut().insert(
        "signature-input",
        "sig1=(\"@method\" \"x\";tr);created=1700000000;keyid=\"k\";nonce=\"n\""
            .parse()
            .unwrap(),
    );
    trailer
        .headers_mut()
        .insert("signature", "sig1=:AAAA:".parse().unwrap());
    let p = VerifyPolicy::mcp()
        .require_exactly(Vec::new())
        .digest_rule(DigestRule::WhenCovered);
    assert_eq!(
        Verifier::new(p)
            .prepare(RequestView::of(&trailer), NOW)
            .unwrap_err(),
        Error::Unsupported("trailer fields (;tr)")
    );

    let spec = SignatureSpec::new("r").cover(Component::new("@method").unwrap());
    let headers = http::HeaderMap::new();
    let response = ResponseView::from_parts(http::StatusCode::OK, &headers, b"");
    assert!(matches!(
        sign(response, &spec, &key()),
        Err(Error::ComponentUnavailable(_))
    ));
}

#[test]
fn several_signatures_choose_by_label() {
    // A second signature by another key under another label: the policy picks by label.
    let mut req = signed();
    let other = SigningKey::ed25519_from_seed(&[9; 32]).unwrap();
    let spec = SignatureSpec::new("sig2")
        .cover_names(&["@method", "@target-uri", "content-digest", "mcp-session-id"])
        .unwrap()
        .created(NOW)
        .nonce("other")
        .alg(&other)
        .keyid("https://agents.example/b");
    assert_eq!(spec.label(), "sig2");
    sign(RequestView::of(&req), &spec, &other)
        .unwrap()
        .apply(req.headers_mut())
        .unwrap();
    let prepared = Verifier::new(VerifyPolicy::mcp().label("sig2"))
        .prepare(RequestView::of(&req), NOW)
        .unwrap();
    assert_eq!(prepared.keyid(), Some("https://agents.example/b"));
    prepared.verify(&other.verifying_key().unwrap()).unwrap();
    // Without a label, the first acceptable one (sig1) is chosen.
    verify(&req).unwrap();
}
