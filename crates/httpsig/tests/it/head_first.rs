//! Head-first verification: `Verifier::prepare_head`, then the body through `BodyCheck`.

use base64ct::{Base64, Encoding};
use http::Request;
use proptest::prelude::*;
use proptest::sample::Index;
use vouch_httpsig::*;

const NOW: u64 = 1_700_000_000;
const KEYID: &str = "https://agents.example/agents/a@example.com";
const BODY: &[u8] = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}"#;

fn key() -> SigningKey {
    SigningKey::ed25519_from_seed(&[7; 32]).unwrap()
}

/// A signed request head (no body) carrying `digest` as its Content-Digest when given; the
/// signature covers `@method`, `@target-uri` and, when present, `content-digest`.
fn head(digest: Option<&str>) -> http::request::Parts {
    let mut builder = Request::post("https://mcp.example/mcp?session=1");
    if let Some(d) = digest {
        builder = builder.header("content-digest", d);
    }
    let mut parts = builder.body(()).unwrap().into_parts().0;
    let spec = if digest.is_some() {
        mcp_spec(&RequestView::new(&parts, &[]), &key(), KEYID, None, NOW).unwrap()
    } else {
        SignatureSpec::new("sig1")
            .cover_names(&["@method", "@target-uri"])
            .unwrap()
            .created(NOW)
            .nonce("n")
            .keyid(KEYID)
    };
    sign(RequestView::new(&parts, &[]), &spec, &key())
        .unwrap()
        .apply(&mut parts.headers)
        .unwrap();
    parts
}

/// `prepare_head` and the signature, as a server does before reading the body.
fn head_check(parts: &http::request::Parts, policy: VerifyPolicy) -> Result<BodyCheck, Error> {
    let (prepared, check) =
        Verifier::new(policy).prepare_head(RequestView::new(parts, &[]), NOW)?;
    prepared.verify(&key().verifying_key()?)?;
    Ok(check)
}

/// The body check's verdict on `body` fed in `chunks`.
fn feed<'a>(mut check: BodyCheck, chunks: impl IntoIterator<Item = &'a [u8]>) -> Result<(), Error> {
    for chunk in chunks {
        check.update(chunk);
    }
    check.finish()
}

/// Body lengths around the SHA block sizes (64, 128) and a few larger bodies.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        0usize..260,
        (0usize..4, 0usize..3).prop_map(|(blocks, extra)| 128 * blocks + extra),
        0usize..5000,
    ]
    .prop_flat_map(|len| prop::collection::vec(any::<u8>(), len))
}

/// Up to 7 cut points, anywhere in a body.
fn cuts() -> impl Strategy<Value = Vec<Index>> {
    prop::collection::vec(any::<Index>(), 0..8)
}

/// `body` cut at `cuts` (empty pieces included).
fn split<'a>(body: &'a [u8], cuts: &[Index]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(body.len() + 1)).collect();
    at.push(0);
    at.push(body.len());
    at.sort_unstable();
    at.windows(2).map(|w| &body[w[0]..w[1]]).collect()
}

const ALGORITHMS: [&[DigestAlgorithm]; 3] = [
    &[DigestAlgorithm::Sha256],
    &[DigestAlgorithm::Sha512],
    &[DigestAlgorithm::Sha256, DigestAlgorithm::Sha512],
];

proptest! {
    // Each case signs once and verifies six times: keep the count low.
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn chunked_updates_in_random_splits_equal_one_shot(
        body in body(),
        algs in prop::sample::select(ALGORITHMS.to_vec()),
        cuts in cuts(),
        tampered_cuts in cuts(),
        flip in any::<Index>(),
        bit in 0u8..8,
    ) {
        let digest = content_digest(&body, algs);
        let parts = head(Some(&digest));
        let policy = VerifyPolicy::mcp;

        // One shot, both ways: the public digest check and the whole-message `prepare`.
        let one_shot = verify_content_digest(digest.as_bytes(), &body, algs);
        prop_assert_eq!(&one_shot, &Ok(()));
        let whole = Verifier::new(policy())
            .prepare(RequestView::new(&parts, &body), NOW)
            .map(|_| ());
        prop_assert_eq!(&whole, &one_shot, "prepare");

        let chunks = split(&body, &cuts);
        let streamed = feed(
            head_check(&parts, policy()).unwrap(),
            chunks.iter().copied(),
        );
        prop_assert_eq!(&streamed, &one_shot, "{} chunks", chunks.len());

        // The same body with one bit flipped, or one byte short, fails both ways alike.
        let mut tampered = body.clone();
        if tampered.is_empty() {
            tampered.push(0);
        } else {
            let i = flip.index(tampered.len());
            tampered[i] ^= 1 << bit;
        }
        for other in [tampered, body[..body.len().saturating_sub(1)].to_vec()] {
            if other == body {
                continue;
            }
            let one_shot = verify_content_digest(digest.as_bytes(), &other, algs);
            prop_assert_eq!(&one_shot, &Err(Error::DigestMismatch));
            let streamed = feed(
                head_check(&parts, policy()).unwrap(),
                split(&other, &tampered_cuts).iter().copied(),
            );
            prop_assert_eq!(&streamed, &one_shot, "tampered, streamed");
            let whole = Verifier::new(policy())
                .prepare(RequestView::new(&parts, &other), NOW)
                .map(|_| ());
            prop_assert_eq!(&whole, &one_shot, "tampered, prepare");
        }
    }
}

#[test]
fn a_mismatch_is_detected_at_finish() {
    let parts = head(Some(&mcp_content_digest(BODY)));
    // The head alone verifies: key and signature, before any body byte.
    let check = head_check(&parts, VerifyPolicy::mcp()).unwrap();
    assert!(!check.expects_empty_body());
    let mut other = BODY.to_vec();
    other[20] ^= 0x20;
    assert_eq!(
        feed(check, other.chunks(7)).unwrap_err(),
        Error::DigestMismatch
    );
    // Too little, too much, and nothing at all.
    for body in [&BODY[..BODY.len() - 1], &[BODY, b" "].concat()[..], b""] {
        let check = head_check(&parts, VerifyPolicy::mcp()).unwrap();
        assert_eq!(
            feed(check, [body]).unwrap_err(),
            Error::DigestMismatch,
            "{} bytes",
            body.len()
        );
    }
    let check = head_check(&parts, VerifyPolicy::mcp()).unwrap();
    feed(check, BODY.chunks(5)).unwrap();
}

#[test]
fn prepare_head_ignores_the_body_of_the_message() {
    let parts = head(Some(&mcp_content_digest(BODY)));
    let verifier = Verifier::new(VerifyPolicy::mcp());
    // The body in the view is not looked at: a wrong one does not fail the head...
    let (_, check) = verifier
        .prepare_head(RequestView::new(&parts, b"not the body"), NOW)
        .unwrap();
    // ...and the right one is not hashed for the caller.
    let (_, unfed) = verifier
        .prepare_head(RequestView::new(&parts, BODY), NOW)
        .unwrap();
    assert_eq!(unfed.finish().unwrap_err(), Error::DigestMismatch);
    feed(check, [BODY]).unwrap();
}

#[test]
fn a_non_empty_body_without_a_covered_digest_fails_under_with_body() {
    let parts = head(None);
    let check = head_check(&parts, VerifyPolicy::mcp()).unwrap();
    assert!(check.expects_empty_body());
    assert_eq!(
        feed(check, [&b""[..], b"x"]).unwrap_err(),
        Error::DigestMissing
    );
    // The same as `prepare` with the body in memory.
    assert_eq!(
        Verifier::new(VerifyPolicy::mcp())
            .prepare(RequestView::new(&parts, b"x"), NOW)
            .unwrap_err(),
        Error::DigestMissing
    );
    // A present but uncovered Content-Digest binds nothing either.
    let mut uncovered = parts.clone();
    uncovered
        .headers
        .insert("content-digest", mcp_content_digest(b"x").parse().unwrap());
    let check = head_check(&uncovered, VerifyPolicy::mcp()).unwrap();
    assert!(check.expects_empty_body());
    assert_eq!(feed(check, [&b"x"[..]]).unwrap_err(), Error::DigestMissing);
}

#[test]
fn an_empty_body_is_ok() {
    let parts = head(None);
    // No update at all, or empty chunks only.
    head_check(&parts, VerifyPolicy::mcp())
        .unwrap()
        .finish()
        .unwrap();
    let check = head_check(&parts, VerifyPolicy::mcp()).unwrap();
    feed(check, [&b""[..], b""]).unwrap();
    // With a covered digest of the empty body, too.
    let parts = head(Some(&mcp_content_digest(b"")));
    let check = head_check(&parts, VerifyPolicy::mcp()).unwrap();
    assert!(!check.expects_empty_body());
    feed(check, []).unwrap();
}

#[test]
fn when_covered_without_a_digest_leaves_the_body_unconstrained() {
    let parts = head(None);
    let policy = VerifyPolicy::mcp().digest_rule(DigestRule::WhenCovered);
    let check = head_check(&parts, policy.clone()).unwrap();
    assert!(!check.expects_empty_body());
    feed(check, [BODY]).unwrap();
    // A covered digest is still checked under WhenCovered.
    let parts = head(Some(&mcp_content_digest(BODY)));
    let check = head_check(&parts, policy).unwrap();
    assert_eq!(feed(check, [&b"x"[..]]).unwrap_err(), Error::DigestMismatch);
}

#[test]
fn always_without_a_covered_digest_fails_at_prepare_head() {
    let always = || VerifyPolicy::mcp().digest_rule(DigestRule::Always);
    let parts = head(None);
    assert_eq!(
        head_check(&parts, always()).unwrap_err(),
        Error::DigestMissing
    );
    // Present but not covered.
    let mut uncovered = parts.clone();
    uncovered
        .headers
        .insert("content-digest", mcp_content_digest(b"").parse().unwrap());
    assert_eq!(
        head_check(&uncovered, always()).unwrap_err(),
        Error::DigestMissing
    );
    // Covered: passes the head, and the body is checked.
    let parts = head(Some(&mcp_content_digest(b"")));
    feed(head_check(&parts, always()).unwrap(), []).unwrap();
}

#[test]
fn sha256_and_sha512_members_are_both_checked() {
    let both = [DigestAlgorithm::Sha256, DigestAlgorithm::Sha512];
    let good = content_digest(BODY, &both);
    feed(
        head_check(&head(Some(&good)), VerifyPolicy::mcp()).unwrap(),
        BODY.chunks(3),
    )
    .unwrap();
    // Either member wrong, in either order, fails at finish.
    let s256 = |b: &[u8]| content_digest(b, &[DigestAlgorithm::Sha256]);
    let s512 = |b: &[u8]| content_digest(b, &[DigestAlgorithm::Sha512]);
    for value in [
        format!("{}, {}", s256(BODY), s512(b"x")),
        format!("{}, {}", s256(b"x"), s512(BODY)),
        format!("{}, {}", s512(BODY), s256(b"x")),
        format!("{}, {}", s512(b"x"), s256(BODY)),
    ] {
        let check = head_check(&head(Some(&value)), VerifyPolicy::mcp()).unwrap();
        assert_eq!(
            feed(check, BODY.chunks(11)).unwrap_err(),
            Error::DigestMismatch,
            "{value}"
        );
    }
    // A member for an algorithm we do not accept is ignored next to an accepted one.
    let value = format!("md5=:AAAAAAAAAAAAAAAAAAAAAA==:, {}", s512(BODY));
    feed(
        head_check(&head(Some(&value)), VerifyPolicy::mcp()).unwrap(),
        [BODY],
    )
    .unwrap();
}

#[test]
fn digest_field_faults_are_found_in_the_head() {
    let right = mcp_content_digest(BODY);
    let short = format!("sha-256=:{}:", Base64::encode_string(&[0; 31]));
    let cases: [(String, Error); 5] = [
        (
            format!("{right}, {right}"),
            Error::Malformed("content-digest names an algorithm twice"),
        ),
        (
            "sha-256=(:AAAA:)".to_owned(),
            Error::Malformed("content-digest member is not an item"),
        ),
        (
            "sha-256=\"x\"".to_owned(),
            Error::Malformed("content-digest member is not a byte sequence"),
        ),
        ("md5=:AAAA:".to_owned(), Error::DigestUnsupported),
        // No body can match a sha-256 of 31 bytes.
        (short, Error::DigestMismatch),
    ];
    for (value, expected) in cases {
        let parts = head(Some(&value));
        assert_eq!(
            Verifier::new(VerifyPolicy::mcp())
                .prepare_head(RequestView::new(&parts, &[]), NOW)
                .unwrap_err(),
            expected,
            "{value}"
        );
        // `prepare` reports the same.
        assert_eq!(
            Verifier::new(VerifyPolicy::mcp())
                .prepare(RequestView::new(&parts, BODY), NOW)
                .unwrap_err(),
            expected,
            "{value}"
        );
    }
}

#[test]
fn body_check_can_cross_threads() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<BodyCheck>();
    let check = head_check(&head(Some(&mcp_content_digest(BODY))), VerifyPolicy::mcp()).unwrap();
    assert!(format!("{check:?}").contains("sha-256"));
    let done = std::thread::spawn(move || feed(check, [BODY]))
        .join()
        .unwrap();
    done.unwrap();
}
