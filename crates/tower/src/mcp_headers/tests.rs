//! Every way the MCP headers can disagree with the body.

#![allow(clippy::unwrap_used)]

use http::{HeaderMap, HeaderName, HeaderValue};

use super::*;
use crate::jsonrpc;

/// Header lines, a body, and the refusal expected.
type Case<'a> = (&'a [(&'a str, &'a str)], &'a [u8], HeaderMismatch);

const CALL: &[u8] =
    br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"search","arguments":{}}}"#;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

fn check_body(pairs: &[(&str, &str)], body: &[u8]) -> Result<(), HeaderMismatch> {
    let message = if body.is_empty() {
        None
    } else {
        Some(jsonrpc::parse(body).unwrap())
    };
    check(&headers(pairs), message.as_ref())
}

#[test]
fn matching_headers_pass() {
    check_body(
        &[("Mcp-Method", "tools/call"), ("Mcp-Name", "search")],
        CALL,
    )
    .unwrap();
    check_body(
        &[("mcp-method", "tools/list")],
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
    )
    .unwrap();
    check_body(
        &[
            ("mcp-method", "resources/read"),
            ("mcp-name", "file:///a b"),
        ],
        br#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a b"}}"#,
    )
    .unwrap();
    check_body(
        &[
            ("mcp-method", "prompts/get"),
            ("mcp-name", "=?base64?SGVsbG8sIOS4lueVjA==?="),
        ],
        r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"Hello, 世界"}}"#
            .as_bytes(),
    )
    .unwrap();
    check_body(
        &[("mcp-method", "notifications/initialized")],
        br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .unwrap();
}

#[test]
fn legacy_requests_without_headers_pass() {
    check_body(&[], CALL).unwrap();
    check_body(&[("mcp-protocol-version", "2025-06-18")], CALL).unwrap();
    check_body(&[], b"").unwrap();
}

#[test]
fn every_disagreement_is_refused() {
    let cases: &[Case<'_>] = &[
        (
            &[("mcp-method", "tools/list")],
            CALL,
            HeaderMismatch::Differs("Mcp-Method"),
        ),
        // Values are case-sensitive.
        (
            &[("mcp-method", "Tools/Call"), ("mcp-name", "search")],
            CALL,
            HeaderMismatch::Differs("Mcp-Method"),
        ),
        (
            &[("mcp-method", "tools/call"), ("mcp-name", "drop_table")],
            CALL,
            HeaderMismatch::Differs("Mcp-Name"),
        ),
        (
            &[
                ("mcp-method", "tools/call"),
                ("mcp-name", "=?base64?ZHJvcF90YWJsZQ==?="),
            ],
            CALL,
            HeaderMismatch::Differs("Mcp-Name"),
        ),
        (
            &[("mcp-method", "tools/call")],
            CALL,
            HeaderMismatch::Missing("Mcp-Name"),
        ),
        (
            &[("mcp-name", "search")],
            CALL,
            HeaderMismatch::Missing("Mcp-Method"),
        ),
        (
            &[("mcp-protocol-version", "2026-07-28")],
            CALL,
            HeaderMismatch::Missing("Mcp-Method"),
        ),
        (
            &[("mcp-method", "tools/list"), ("mcp-name", "search")],
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
            HeaderMismatch::Unexpected("Mcp-Name"),
        ),
        // A method that carries a name, whose body lacks the field.
        (
            &[("mcp-method", "resources/read"), ("mcp-name", "file:///x")],
            br#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{}}"#,
            HeaderMismatch::Unexpected("Mcp-Name"),
        ),
        // The field is there but is not a string.
        (
            &[("mcp-method", "resources/read"), ("mcp-name", "1")],
            br#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":1}}"#,
            HeaderMismatch::Unexpected("Mcp-Name"),
        ),
        (
            &[("mcp-method", "tools/call")],
            b"",
            HeaderMismatch::Unexpected("Mcp-Method"),
        ),
        (
            &[("mcp-method", "tools/call")],
            br#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
            HeaderMismatch::Unexpected("Mcp-Method"),
        ),
        // Duplicated lines, even with equal values.
        (
            &[
                ("mcp-method", "tools/call"),
                ("mcp-method", "tools/call"),
                ("mcp-name", "search"),
            ],
            CALL,
            HeaderMismatch::Duplicate("Mcp-Method"),
        ),
        (
            &[
                ("mcp-method", "tools/call"),
                ("mcp-name", "search"),
                ("Mcp-Name", "search"),
            ],
            CALL,
            HeaderMismatch::Duplicate("Mcp-Name"),
        ),
        // A wrapped value that is not strict Base64.
        (
            &[
                ("mcp-method", "tools/call"),
                ("mcp-name", "=?base64?c2VhcmNo?"),
            ],
            CALL,
            HeaderMismatch::Differs("Mcp-Name"),
        ),
        (
            &[
                ("mcp-method", "tools/call"),
                ("mcp-name", "=?base64?c2VhcmNo=?="),
            ],
            CALL,
            HeaderMismatch::Malformed("Mcp-Name"),
        ),
    ];
    for (i, (pairs, body, expected)) in cases.iter().enumerate() {
        assert_eq!(
            check_body(pairs, body),
            Err(*expected),
            "case {i}: {pairs:?}"
        );
    }
}

#[test]
fn a_header_that_is_not_text_is_malformed() {
    let mut map = headers(&[("mcp-method", "tools/call")]);
    map.insert("mcp-name", HeaderValue::from_bytes(b"s\xffarch").unwrap());
    let message = jsonrpc::parse(CALL).unwrap();
    assert_eq!(
        check(&map, Some(&message)),
        Err(HeaderMismatch::Malformed("Mcp-Name"))
    );
}

#[test]
fn the_answer_is_the_spec_error_with_the_request_id() {
    let message = jsonrpc::parse(CALL).unwrap();
    let err = check(&headers(&[("mcp-method", "tools/list")]), Some(&message)).unwrap_err();
    assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
    let body = err.body(message.id());
    assert_eq!(body["jsonrpc"], "2.0");
    assert_eq!(body["id"], 7);
    assert_eq!(body["error"]["code"], -32020);
    assert_eq!(err.body(None)["id"], serde_json::Value::Null);
}

#[test]
fn the_head_alone() {
    let head = read_head(&headers(&[
        ("mcp-method", "tools/call"),
        ("mcp-name", "=?base64?IHBhZGRlZCA=?="),
    ]))
    .unwrap();
    assert_eq!(
        (head.method.as_str(), head.name.as_deref()),
        ("tools/call", Some(" padded "))
    );
    let list = read_head(&headers(&[("mcp-method", "tools/list")])).unwrap();
    assert_eq!(list.name, None);
    let cases: &[(&[(&str, &str)], HeaderMismatch)] = &[
        (&[], HeaderMismatch::Missing("Mcp-Method")),
        (
            &[("mcp-name", "search")],
            HeaderMismatch::Missing("Mcp-Method"),
        ),
        (
            &[("mcp-method", "tools/call")],
            HeaderMismatch::Missing("Mcp-Name"),
        ),
        (
            &[("mcp-method", "tools/list"), ("mcp-name", "x")],
            HeaderMismatch::Unexpected("Mcp-Name"),
        ),
        (
            &[
                ("mcp-method", "tools/call"),
                ("mcp-method", "tools/list"),
                ("mcp-name", "x"),
            ],
            HeaderMismatch::Duplicate("Mcp-Method"),
        ),
        (
            &[
                ("mcp-method", "tools/call"),
                ("mcp-name", "a"),
                ("mcp-name", "b"),
            ],
            HeaderMismatch::Duplicate("Mcp-Name"),
        ),
        (
            &[("mcp-method", "tools/call"), ("mcp-name", "=?base64?!?=")],
            HeaderMismatch::Malformed("Mcp-Name"),
        ),
    ];
    for (i, (pairs, expected)) in cases.iter().enumerate() {
        assert_eq!(read_head(&headers(pairs)), Err(*expected), "case {i}");
    }
}

#[test]
fn the_parser_reads_what_the_headers_mirror() {
    let m = jsonrpc::parse(
        br#"{"jsonrpc":"2.0","id":"a","method":"tasks/get","params":{"taskId":"t-1"}}"#,
    )
    .unwrap();
    assert_eq!(
        (m.id(), m.mcp_name()),
        (Some(&serde_json::json!("a")), Some("t-1"))
    );
    // A duplicated uri is refused like a duplicated name.
    assert_eq!(
        jsonrpc::parse(
            br#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"a","uri":"b"}}"#
        ),
        Err(jsonrpc::Error::DuplicateKey(jsonrpc::Location::Params))
    );
    let no_id = jsonrpc::parse(br#"{"jsonrpc":"2.0","id":null,"method":"tools/list"}"#).unwrap();
    assert_eq!(no_id.id(), None);
}
