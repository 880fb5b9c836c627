//! Repeated names: a Content-Digest algorithm or a signature label named twice (across field
//! lines or within one), a signature or component parameter named twice, and a covered
//! dictionary member (or one of its parameters) named twice are refused, never resolved by "the
//! last one wins".

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

const PARAM_TWICE: Error = Error::Malformed("signature-input repeats a signature parameter");
const COMPONENT_PARAM_TWICE: Error =
    Error::Malformed("signature-input repeats a component parameter");
const KEY_MEMBER_TWICE: Error = Error::Malformed("field names the covered dictionary member twice");
const KEY_MEMBER_PARAM_TWICE: Error =
    Error::Malformed("covered dictionary member repeats a parameter");
const SF_MEMBER_TWICE: Error = Error::Malformed("dictionary field names a member twice");
const SF_PARAM_TWICE: Error = Error::Malformed("structured field repeats a parameter");

#[test]
fn a_signature_parameter_twice_is_refused() {
    let (req, input, _) = signed();
    // Each forgery re-serializes (last one wins) to the signed `@signature-params`, so the
    // signature would still verify; a reader that takes the first value sees the decoy.
    let forgeries = [
        input.replacen(";keyid=", ";keyid=\"https://evil.example/\";keyid=", 1),
        input.replacen(";created=", ";created=1;created=", 1),
        input.replacen(";nonce=", ";nonce=\"replayed\";nonce=", 1),
        format!("{input};keyid=\"{KEYID}\""),
        format!("{input};x=1;x=2"),
        format!("{input};flag;flag"),
    ];
    for forged in &forgeries {
        let req = with_lines(&req, "signature-input", &[forged]);
        assert_eq!(verify(&req).unwrap_err(), PARAM_TWICE, "{forged}");
    }
    // In a signature the verifier does not look at, as for a repeated label.
    let other = format!("{input}, sig2=(\"@method\");created=1;x;x");
    let req = with_lines(&req, "signature-input", &[&other]);
    assert_eq!(verify(&req).unwrap_err(), PARAM_TWICE);
}

/// A GET request with `headers`, signed (MCP parameters) over `@method`, `@target-uri` and
/// `extra`, or the signer's error.
fn signed_covering(headers: &[(&str, &str)], extra: &str) -> Result<Request<Vec<u8>>, Error> {
    let mut req = Request::get("https://mcp.example/mcp?a=1&b=2")
        .body(Vec::new())
        .unwrap();
    for (name, value) in headers {
        req.headers_mut().append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    let mut spec = SignatureSpec::new("sig1")
        .cover_names(&["@method", "@target-uri"])
        .unwrap();
    for c in Component::parse_list(extra).unwrap() {
        spec = spec.cover(c);
    }
    let spec = spec.created(NOW).nonce("n1").alg(&key()).keyid(KEYID);
    sign(RequestView::of(&req), &spec, &key())?.apply(req.headers_mut())?;
    Ok(req)
}

/// `req` with `from` replaced by `to` in its Signature-Input.
fn rewrite_input(req: &Request<Vec<u8>>, from: &str, to: &str) -> Request<Vec<u8>> {
    let input = req.headers()["signature-input"].to_str().unwrap();
    assert!(input.contains(from), "{input} lacks {from}");
    let forged = input.replacen(from, to, 1);
    with_lines(req, "signature-input", &[&forged])
}

#[test]
fn a_component_parameter_twice_is_refused() {
    let dict = [("example-dict", "a=1, b=2")];
    let cases = [
        (
            r#""@query-param";name="a""#,
            r#""@query-param";name="b";name="a""#,
        ),
        (r#""example-dict";sf"#, r#""example-dict";sf;sf"#),
        (
            r#""example-dict";key="a""#,
            r#""example-dict";key="b";key="a""#,
        ),
        (
            r#""example-dict";key="a""#,
            r#""example-dict";key="a";key="a""#,
        ),
    ];
    for (covered, forged) in cases {
        let req = signed_covering(&dict, covered).unwrap();
        verify(&req).unwrap();
        let req = rewrite_input(&req, covered, forged);
        assert_eq!(verify(&req).unwrap_err(), COMPONENT_PARAM_TWICE, "{forged}");
    }
    // Component lists given to the signer are held to the same rule.
    for text in [
        r#""example-dict";key="a";key="b""#,
        r#""@method" "content-digest";sf;sf"#,
    ] {
        assert_eq!(
            Component::parse_list(text).unwrap_err(),
            Error::Malformed("a component repeats a parameter"),
            "{text}"
        );
    }
}

/// Field lines, as `(name, value)`.
type Fields = &'static [(&'static str, &'static str)];

#[test]
fn the_signer_refuses_a_repeated_covered_member() {
    let key_a = r#""example-dict";key="a""#;
    let sf = r#""example-dict";sf"#;
    let cases: [(Fields, &str, Error); 9] = [
        (&[("example-dict", "a=1, a=2")], key_a, KEY_MEMBER_TWICE),
        (
            &[("example-dict", "a=1"), ("example-dict", "a=2")],
            key_a,
            KEY_MEMBER_TWICE,
        ),
        (
            &[("example-dict", "a=1, b=2"), ("example-dict", "a=1")],
            key_a,
            KEY_MEMBER_TWICE,
        ),
        (
            &[("example-dict", "a=1;p=1;p=2")],
            key_a,
            KEY_MEMBER_PARAM_TWICE,
        ),
        (
            &[("example-dict", "a=(x;p;p y)")],
            key_a,
            KEY_MEMBER_PARAM_TWICE,
        ),
        (
            &[("example-dict", "a=(x y);q;q")],
            key_a,
            KEY_MEMBER_PARAM_TWICE,
        ),
        (&[("example-dict", "a=1, b=2, a=3")], sf, SF_MEMBER_TWICE),
        (
            &[("example-dict", "a=1"), ("example-dict", "b=2, a=1")],
            sf,
            SF_MEMBER_TWICE,
        ),
        (&[("example-dict", "a=1, b=(x;p;p)")], sf, SF_PARAM_TWICE),
    ];
    for (headers, covered, expected) in cases {
        assert_eq!(
            signed_covering(headers, covered).unwrap_err(),
            expected,
            "{headers:?} {covered}"
        );
    }
}

#[test]
fn the_verifier_refuses_a_repeated_covered_member() {
    let key_a = r#""example-dict";key="a""#;
    let sf = r#""example-dict";sf"#;
    // Signed over one value; the attacker adds a decoy that a first-wins reader (a proxy, a
    // logger, the application's own parser) would take, while the base stays the signed one.
    let cases: [(&str, &str, &[&str], Error); 6] = [
        (key_a, "a=2", &["a=1", "a=2"], KEY_MEMBER_TWICE),
        (key_a, "a=2", &["a=1, a=2"], KEY_MEMBER_TWICE),
        (key_a, "a=2, b=1", &["a=9, b=1", "a=2"], KEY_MEMBER_TWICE),
        (key_a, "a=1;p=2", &["a=1;p=9;p=2"], KEY_MEMBER_PARAM_TWICE),
        (sf, "a=1, b=2", &["a=9, b=2", "a=1"], SF_MEMBER_TWICE),
        (sf, "a=1, b=2;p", &["a=1, b=2;p=?0;p"], SF_PARAM_TWICE),
    ];
    for (covered, signed_value, forged, expected) in cases {
        let req = signed_covering(&[("example-dict", signed_value)], covered).unwrap();
        verify(&req).unwrap();
        let req = with_lines(&req, "example-dict", forged);
        assert_eq!(verify(&req).unwrap_err(), expected, "{forged:?} {covered}");
    }
}

#[test]
fn repeats_outside_the_covered_member_still_verify() {
    // `;key="a"` vouches for member `a` alone: other members may repeat (RFC 9651 allows it).
    let fields = [("example-dict", "a=1, b=1, b=2;p;p")];
    verify(&signed_covering(&fields, r#""example-dict";key="a""#).unwrap()).unwrap();
    // Covered as raw bytes (no `;sf` or `;key`), the value is signed exactly as sent.
    verify(&signed_covering(&fields, r#""example-dict""#).unwrap()).unwrap();
    // `;sf` on a list field: distinct parameters verify, a repeated one is refused.
    let list = r#""example-list";sf"#;
    verify(&signed_covering(&[("example-list", "a;p;q, (b c);p")], list).unwrap()).unwrap();
    assert_eq!(
        signed_covering(&[("example-list", "a, (b;p;p c)")], list).unwrap_err(),
        SF_PARAM_TWICE
    );
}
