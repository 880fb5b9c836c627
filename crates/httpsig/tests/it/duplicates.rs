//! Repeated dictionary keys: a Content-Digest algorithm or a signature label named twice (across
//! field lines or within one) is refused, never resolved by "the last one wins".

use http::{HeaderValue, Request};
use vouch_httpsig::*;

const NOW: u64 = 1_700_000_000;
const KEYID: &str = "https://agents.example/agents/a@example.com";
const BODY: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add"}}"#;

fn key() -> SigningKey {
    SigningKey::ed25519_from_seed(&[7; 32]).unwrap()
}

/// A request whose Content-Digest field lines are `lines`, signed by the MCP profile (which
/// covers `content-digest`, so the signer vouches for every line).
fn signed_with_digest_lines(lines: &[&str]) -> Request<Vec<u8>> {
    let mut req = Request::post("https://mcp.example/mcp")
        .header("content-type", "application/json")
        .body(BODY.to_vec())
        .unwrap();
    for line in lines {
        req.headers_mut()
            .append("content-digest", HeaderValue::from_str(line).unwrap());
    }
    let spec = mcp_spec(&RequestView::of(&req), &key(), KEYID, None, NOW).unwrap();
    sign(RequestView::of(&req), &spec, &key())
        .unwrap()
        .apply(req.headers_mut())
        .unwrap();
    req
}

fn verify(req: &Request<Vec<u8>>) -> Result<Verified, Error> {
    Verifier::new(VerifyPolicy::mcp())
        .prepare(RequestView::of(req), NOW)?
        .verify(&key().verifying_key()?)
}

fn right() -> String {
    content_digest(BODY, &[DigestAlgorithm::Sha256])
}

fn wrong() -> String {
    content_digest(b"something else", &[DigestAlgorithm::Sha256])
}

const DIGEST_TWICE: Error = Error::Malformed("content-digest names an algorithm twice");
const INPUT_TWICE: Error = Error::Malformed("signature-input names a label twice");
const SIGNATURE_TWICE: Error = Error::Malformed("signature names a label twice");

#[test]
fn the_right_digest_alone_verifies() {
    verify(&signed_with_digest_lines(&[&right()])).unwrap();
}

#[test]
fn digest_wrong_then_right_on_two_field_lines_is_refused() {
    let req = signed_with_digest_lines(&[&wrong(), &right()]);
    assert_eq!(verify(&req).unwrap_err(), DIGEST_TWICE);
    // The other order, and the same value twice, are refused as well.
    let req = signed_with_digest_lines(&[&right(), &wrong()]);
    assert_eq!(verify(&req).unwrap_err(), DIGEST_TWICE);
    let req = signed_with_digest_lines(&[&right(), &right()]);
    assert_eq!(verify(&req).unwrap_err(), DIGEST_TWICE);
}

#[test]
fn digest_wrong_then_right_in_one_field_line_is_refused() {
    let line = format!("{}, {}", wrong(), right());
    assert_eq!(
        verify(&signed_with_digest_lines(&[&line])).unwrap_err(),
        DIGEST_TWICE
    );
    // sha-512 named twice, around a correct sha-256.
    let (w, r) = (
        content_digest(b"x", &[DigestAlgorithm::Sha512]),
        content_digest(BODY, &[DigestAlgorithm::Sha512]),
    );
    let line = format!("{w}, {}, {r}", right());
    assert_eq!(
        verify(&signed_with_digest_lines(&[&line])).unwrap_err(),
        DIGEST_TWICE
    );
}

#[test]
fn an_unsupported_algorithm_named_twice_is_refused() {
    for lines in [
        vec![
            "md5=:AAAAAAAAAAAAAAAAAAAAAA==:, md5=:AQEBAQEBAQEBAQEBAQEBAQ==:".to_owned(),
            right(),
        ],
        vec![
            "md5=:AAAAAAAAAAAAAAAAAAAAAA==:".to_owned(),
            right(),
            "md5=?1".to_owned(),
        ],
        vec![
            format!("{}, unixsum=:AA==:", right()),
            "unixsum=:AQ==:".to_owned(),
        ],
    ] {
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        assert_eq!(
            verify(&signed_with_digest_lines(&lines)).unwrap_err(),
            DIGEST_TWICE,
            "{lines:?}"
        );
    }
}

#[test]
fn verify_content_digest_refuses_repeated_members() {
    let all = [DigestAlgorithm::Sha256, DigestAlgorithm::Sha512];
    let twice = format!("{}, {}", wrong(), right());
    assert_eq!(
        verify_content_digest(twice.as_bytes(), BODY, &all),
        Err(DIGEST_TWICE)
    );
    // Even when the repeated name is one the caller does not accept.
    let sha512 = content_digest(BODY, &[DigestAlgorithm::Sha512]);
    let value = format!("{}, {sha512}, {sha512}", right());
    assert_eq!(
        verify_content_digest(value.as_bytes(), BODY, &[DigestAlgorithm::Sha256]),
        Err(DIGEST_TWICE)
    );
    // Distinct members still verify, and every accepted one must match.
    let both = content_digest(BODY, &all);
    verify_content_digest(both.as_bytes(), BODY, &all).unwrap();
    let mixed = format!(
        "{}, {}",
        right(),
        content_digest(b"x", &[DigestAlgorithm::Sha512])
    );
    assert_eq!(
        verify_content_digest(mixed.as_bytes(), BODY, &all),
        Err(Error::DigestMismatch)
    );
    assert_eq!(
        verify_content_digest(b"md5=:AAAA:", BODY, &all),
        Err(Error::DigestUnsupported)
    );
}

/// A correctly signed request, and its Signature-Input and Signature values.
fn signed() -> (Request<Vec<u8>>, String, String) {
    let req = signed_with_digest_lines(&[&right()]);
    let input = req.headers()["signature-input"]
        .to_str()
        .unwrap()
        .to_owned();
    let sig = req.headers()["signature"].to_str().unwrap().to_owned();
    (req, input, sig)
}

/// `req` with its `name` field replaced by `lines`.
fn with_lines(req: &Request<Vec<u8>>, name: &'static str, lines: &[&str]) -> Request<Vec<u8>> {
    let mut out = req.clone();
    out.headers_mut().remove(name);
    for line in lines {
        out.headers_mut()
            .append(name, HeaderValue::from_str(line).unwrap());
    }
    out
}

#[test]
fn a_label_twice_across_signature_input_lines_is_refused() {
    let (req, input, _) = signed();
    let decoy = "sig1=(\"@method\");created=1700000000;keyid=\"k\";nonce=\"n\"";
    let twice = with_lines(&req, "signature-input", &[decoy, &input]);
    assert_eq!(verify(&twice).unwrap_err(), INPUT_TWICE);
    let twice = with_lines(&req, "signature-input", &[&input, decoy]);
    assert_eq!(verify(&twice).unwrap_err(), INPUT_TWICE);
    let same = with_lines(&req, "signature-input", &[&input, &input]);
    assert_eq!(verify(&same).unwrap_err(), INPUT_TWICE);
    // Within one line too.
    let one_line = format!("{decoy}, {input}");
    let twice = with_lines(&req, "signature-input", &[&one_line]);
    assert_eq!(verify(&twice).unwrap_err(), INPUT_TWICE);
}

#[test]
fn a_label_twice_in_signature_is_refused() {
    let (req, _, sig) = signed();
    let decoy = "sig1=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==:";
    let one_line = format!("{decoy}, {sig}");
    let twice = with_lines(&req, "signature", &[&one_line]);
    assert_eq!(verify(&twice).unwrap_err(), SIGNATURE_TWICE);
    let twice = with_lines(&req, "signature", &[decoy, &sig]);
    assert_eq!(verify(&twice).unwrap_err(), SIGNATURE_TWICE);
    let same = with_lines(&req, "signature", &[&sig, &sig]);
    assert_eq!(verify(&same).unwrap_err(), SIGNATURE_TWICE);
    // A label the verifier does not look at, repeated, is refused all the same.
    let other = format!("{sig}, other=:AA==:, other=:AQ==:");
    let twice = with_lines(&req, "signature", &[&other]);
    assert_eq!(verify(&twice).unwrap_err(), SIGNATURE_TWICE);
}

#[test]
fn distinct_labels_on_separate_lines_still_verify() {
    let (req, input, sig) = signed();
    let extra_input = input.replacen("sig1", "sig2", 1);
    let extra_sig = sig.replacen("sig1", "sig2", 1);
    let both = with_lines(&req, "signature-input", &[&input, &extra_input]);
    let both = with_lines(&both, "signature", &[&sig, &extra_sig]);
    let v = verify(&both).unwrap();
    assert_eq!(v.label, "sig1");
}
