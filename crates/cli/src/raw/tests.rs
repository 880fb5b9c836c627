//! Unit tests of the raw request parser.

use proptest::prelude::*;

use super::*;

const B2: &[u8] = b"POST /foo?param=Value&Pet=dog HTTP/1.1\r\nHost: example.com\r\nContent-Type: application/json\r\nContent-Length: 18\r\n\r\n{\"hello\": \"world\"}";

#[test]
fn parses_and_writes_back_unchanged() {
    let r = RawRequest::parse(B2).unwrap();
    assert_eq!(r.method(), Method::POST);
    assert_eq!(r.target().path(), "/foo");
    assert_eq!(r.target().query(), Some("param=Value&Pet=dog"));
    assert_eq!(r.host(), "example.com");
    assert_eq!(r.body(), b"{\"hello\": \"world\"}");
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.to_bytes(), B2);
}

#[test]
fn keeps_the_line_endings_and_the_names_as_written() {
    let lf = b"GET /x HTTP/1.0\nHOST:   a.example:80  \nx-Thing:y\n\n";
    let mut r = RawRequest::parse(lf).unwrap();
    assert_eq!(r.host(), "a.example:80");
    assert_eq!(r.headers()["x-thing"], "y");
    r.append("Signature", "s=:AA==:").unwrap();
    assert_eq!(
        r.to_bytes(),
        b"GET /x HTTP/1.0\nHOST:   a.example:80  \nx-Thing:y\nSignature: s=:AA==:\n\n"
    );
    let mut r = RawRequest::parse(B2).unwrap();
    r.remove(&HeaderName::from_static("content-type"));
    r.append("Content-Digest", "sha-256=:x:").unwrap();
    let text = String::from_utf8(r.to_bytes()).unwrap();
    assert!(!text.contains("Content-Type"));
    assert!(text.contains("\r\nContent-Length: 18\r\nContent-Digest: sha-256=:x:\r\n\r\n{"));
    assert!(r.headers().get("content-type").is_none());
}

#[test]
fn a_single_line_ending_after_the_body_is_kept() {
    for tail in [&b"\r\n"[..], b""] {
        let mut input = B2.to_vec();
        input.extend_from_slice(tail);
        let r = RawRequest::parse(&input).unwrap();
        assert_eq!(r.body().len(), 18);
        assert_eq!(r.to_bytes(), input);
    }
    // LF after a CRLF request is not its line ending.
    let mut input = B2.to_vec();
    input.push(b'\n');
    assert!(RawRequest::parse(&input).is_err());
}

#[test]
fn refuses_what_is_not_strict_http() {
    let cases: &[(&[u8], &str)] = &[
        (b"GET /x HTTP/1.1\r\nHost: a\r\n\tfolded\r\n\r\n", "folding"),
        (b"GET /x HTTP/1.1\nHost: a\r\n\n", "mixed"),
        (b"GET /x HTTP/1.1\nHost\t: a\n\n", "not a token"),
        (b"GET /x HTTP/1.1\nHost: a\nNo colon\n\n", "without a colon"),
        (
            b"GET /x HTTP/1.1\nHost: a\nX: \x01\n\n",
            "control character",
        ),
        (b"GET /x HTTP/1.1\nHost: a\nX: caf\xc3\xa9\n\n", "not ASCII"),
        (b"GET /x HTTP/1.1\nHost: user@a\n\n", "host[:port]"),
        (
            b"GET /x HTTP/1.1\nHost: a\nContent-Length: +1\n\nx",
            "single decimal",
        ),
        (
            b"GET /x HTTP/1.1\nHost: a\nContent-Length: 1\nContent-Length: 2\n\nx",
            "two different",
        ),
        (
            b"GET /x HTTP/1.1\nHost: a\nContent-Length: 99999999999999999999\n\n",
            "single decimal",
        ),
        (
            b"GET /x HTTP/1.1\nHost: a\nContent-Length: 9999999999999999999\n\n",
            "Content-Length says",
        ),
        (b"G@T /x HTTP/1.1\nHost: a\n\n", "method"),
        (b"GET * HTTP/1.1\nHost: a\n\n", "origin-form"),
        (b"GET /x\nHost: a\n\n", "request line"),
        (b"GET /x HTTP/1.1", "no request line"),
    ];
    for (input, why) in cases {
        let e = RawRequest::parse(input).unwrap_err();
        assert!(
            e.0.contains(why),
            "{:?}: {e}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn bounds_the_head() {
    let mut many = b"GET /x HTTP/1.1\nHost: a\n".to_vec();
    for i in 0..=MAX_FIELDS {
        many.extend_from_slice(format!("x-{i}: 1\n").as_bytes());
    }
    many.push(b'\n');
    assert!(
        RawRequest::parse(&many)
            .unwrap_err()
            .0
            .contains("header fields")
    );
    let mut big = b"GET /x HTTP/1.1\nHost: a\nx: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES));
    big.extend_from_slice(b"\nz: 1\n\n");
    assert!(
        RawRequest::parse(&big)
            .unwrap_err()
            .0
            .contains("larger than")
    );
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}"
}

proptest! {
    #[test]
    fn written_requests_parse_back(
        method in "[A-Z]{1,8}",
        path in "/[a-z0-9/._~%-]{0,20}(\\?[a-z0-9=&]{0,12})?",
        fields in proptest::collection::vec((token(), "[ -~]{0,20}"), 0..8),
        body in proptest::collection::vec(any::<u8>(), 0..64),
        crlf in any::<bool>(),
        tail in any::<bool>(),
    ) {
        let eol = if crlf { "\r\n" } else { "\n" };
        let mut text = format!("{method} {path} HTTP/1.1{eol}Host: h.example:8443{eol}");
        for (name, value) in &fields {
            let name = name.to_ascii_lowercase();
            prop_assume!(!["host", "content-length", "transfer-encoding"].contains(&name.as_str()));
            let value = value.trim_matches([' ', '\t']);
            text.push_str(&format!("{name}: {value}{eol}"));
        }
        text.push_str(&format!("Content-Length: {}{eol}{eol}", body.len()));
        let mut input = text.into_bytes();
        input.extend_from_slice(&body);
        if tail {
            input.extend_from_slice(eol.as_bytes());
        }
        let r = RawRequest::parse(&input).unwrap();
        prop_assert_eq!(r.body(), &body[..]);
        prop_assert_eq!(r.method().as_str(), method.as_str());
        prop_assert_eq!(r.to_bytes(), input);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        crate::internal::fuzz_raw_request(&data);
    }
}
