//! The strict JSON-RPC reading: every message whose meaning could depend on the parser is
//! refused, and on every other message it agrees with `serde_json::Value`.

use std::borrow::Cow;

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use vouch_tower::jsonrpc::{self, Error, INVALID_REQUEST, Location, PARSE_ERROR};

/// The method, the tool and the token, owned.
type Read = (Option<String>, Option<String>, Option<String>);

fn parse(body: &str) -> Result<Read, Error> {
    jsonrpc::parse(body.as_bytes()).map(|m| {
        (
            m.method().map(str::to_owned),
            m.tool().map(str::to_owned),
            m.token().map(str::to_owned),
        )
    })
}

#[test]
fn duplicate_keys_are_refused_where_the_decision_reads() {
    use Location::{Envelope, Meta, Params};
    for (body, at) in [
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"x"}}"#,
            Envelope,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"tools/list","params":{"name":"x"}}"#,
            Envelope,
        ),
        (
            r#"{"jsonrpc":"2.0","jsonrpc":"2.0","id":1,"method":"ping"}"#,
            Envelope,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#,
            Envelope,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search"},"params":{"name":"drop_table"}}"#,
            Envelope,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","name":"drop_table"}}"#,
            Params,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{},"arguments":{}}}"#,
            Params,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","_meta":{"token":"a"},"_meta":{"token":"b"}}}"#,
            Params,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","_meta":{"token":"a","token":"b"}}}"#,
            Meta,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"progressToken":1,"progressToken":2}}}"#,
            Meta,
        ),
        // Keys are compared after unescaping.
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","na\u006de":"drop_table"}}"#,
            Params,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"n\u0061me":"search","name":"drop_table"}}"#,
            Params,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"\u006dethod":"tools/list","method":"tools/call","params":{"name":"x"}}"#,
            Envelope,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":{"token":"a","\u0074oken":"b"}}}"#,
            Meta,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{},"\u005fmeta":{}}}"#,
            Params,
        ),
    ] {
        assert_eq!(parse(body), Err(Error::DuplicateKey(at)), "{body}");
        assert_eq!(Error::DuplicateKey(at).code(), INVALID_REQUEST);
    }
}

#[test]
fn duplicates_deeper_down_are_the_tools_business() {
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"q":1,"q":2,"deep":{"a":1,"a":2}},"_meta":{"token":"t","other":{"x":1,"x":1}}}}"#;
    assert_eq!(
        parse(body),
        Ok((
            Some("tools/call".into()),
            Some("search".into()),
            Some("t".into())
        ))
    );
}

#[test]
fn batches_and_other_top_levels_are_refused() {
    for (body, error) in [
        (
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
            Error::Batch,
        ),
        ("[]", Error::Batch),
        ("[1,2]", Error::Batch),
        (r#""{\"jsonrpc\":\"2.0\"}""#, Error::NotObject),
        ("1", Error::NotObject),
        ("-0.5e3", Error::NotObject),
        ("null", Error::NotObject),
        ("true", Error::NotObject),
    ] {
        assert_eq!(parse(body), Err(error), "{body}");
        assert_eq!(error.code(), INVALID_REQUEST);
    }
}

#[test]
fn bodies_that_are_not_utf8_json_are_parse_errors() {
    let inside_a_string = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"x\",\"arguments\":{\"q\":\"\xff\xfe\"}}}";
    let inside_a_key = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"\xc3\x28\":1}";
    let outside = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\xff";
    let overlong_slash = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools\xc0\xafcall\"}";
    for body in [&inside_a_string[..], inside_a_key, outside, overlong_slash] {
        assert_eq!(
            jsonrpc::parse(body),
            Err(Error::NotUtf8),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    assert_eq!(Error::NotUtf8.code(), PARSE_ERROR);

    for body in [
        "",
        "   ",
        "not json",
        "{",
        r#"{"jsonrpc":"2.0","method":"ping""#,
        r#"{"jsonrpc":"2.0","method":"ping",}"#,
        r#"{"jsonrpc":"2.0","method":'ping'}"#,
        r#"{"jsonrpc":"2.0","method":"ping","id":01}"#,
        r#"{"jsonrpc":"2.0","method":"ping","id":NaN}"#,
        "{\"jsonrpc\":\"2.0\",\"method\":\"ping\",\"x\":\"a\u{1}b\"}",
        r#"{"jsonrpc":"2.0","method":"ping","x":"\q"}"#,
        r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"\ud800"}}"#,
        // Two messages in one body: a streaming parser behind us could act on the second.
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"x"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"} x"#,
        "\u{feff}{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}",
    ] {
        assert_eq!(parse(body), Err(Error::NotJson), "{body:?}");
    }
    assert_eq!(Error::NotJson.code(), PARSE_ERROR);
}

#[test]
fn a_syntax_error_wins_over_a_shape_problem() {
    for body in [
        r#"{"jsonrpc":"2.0","jsonrpc":"2.0","method":"#,
        r#"[{"jsonrpc":"2.0"},"#,
        r#"{"jsonrpc":"1.0","method":"ping","x":[}"#,
        r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"a","name":"b"},"x":tru}"#,
    ] {
        assert_eq!(parse(body), Err(Error::NotJson), "{body}");
    }
}

#[test]
fn the_shape_is_checked() {
    for (body, error) in [
        (r#"{"id":1,"method":"ping"}"#, Error::Version),
        (r#"{"jsonrpc":"2","id":1,"method":"ping"}"#, Error::Version),
        (r#"{"jsonrpc":2.0,"id":1,"method":"ping"}"#, Error::Version),
        (
            r#"{"jsonrpc":"2.0 ","id":1,"method":"ping"}"#,
            Error::Version,
        ),
        (r#"{"jsonrpc":null,"id":1,"method":"ping"}"#, Error::Version),
        (r#"{"jsonrpc":"2.0","id":1,"method":1}"#, Error::Method),
        (r#"{"jsonrpc":"2.0","id":1,"method":null}"#, Error::Method),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":["tools/call"]}"#,
            Error::Method,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
            Error::ToolName,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#,
            Error::ToolName,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["search"]}"#,
            Error::ToolName,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":["search"]}}"#,
            Error::ToolName,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":null}}"#,
            Error::ToolName,
        ),
    ] {
        assert_eq!(parse(body), Err(error), "{body}");
        assert_eq!(error.code(), INVALID_REQUEST);
    }
}

#[test]
fn what_the_decision_reads() {
    // Escapes anywhere, the version included, are decoded before comparing.
    assert_eq!(
        parse(
            r#" {"params":{"_meta":{"token":"to\/ken"},"name":"se\u0061rch"},"method":"tools\/call","jsonrpc":"2\u002e0","id":"x"} "#
        ),
        Ok((
            Some("tools/call".into()),
            Some("search".into()),
            Some("to/ken".into())
        ))
    );
    // A response has no method; positional params carry no token.
    assert_eq!(
        parse(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#),
        Ok((None, None, None))
    );
    assert_eq!(
        parse(r#"{"jsonrpc":"2.0","id":1,"method":"sum","params":[1,2,{"_meta":{"token":"t"}}]}"#),
        Ok((Some("sum".into()), None, None))
    );
    // params.name is a tool only in tools/call; a token that is not a string is no token.
    assert_eq!(
        parse(
            r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":7,"_meta":{"token":7}}}"#
        ),
        Ok((Some("prompts/get".into()), None, None))
    );
    assert_eq!(
        parse(r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":"token"}}"#),
        Ok((Some("ping".into()), None, None))
    );
    // Strings borrow from the body unless they had escapes.
    let plain = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search"}}"#;
    assert!(matches!(
        jsonrpc::parse(plain).unwrap().into_tool(),
        Some(Cow::Borrowed("search"))
    ));
    let escaped =
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"s\u0065arch"}}"#;
    assert!(matches!(
        jsonrpc::parse(escaped).unwrap().into_tool(),
        Some(Cow::Owned(t)) if t == "search"
    ));
}

#[test]
fn skipped_values_may_nest_deeply_and_objects_may_be_wide() {
    let depth = 100_000;
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"x","arguments":{}{}}}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    assert_eq!(
        parse(&deep).map(|m| m.1),
        Ok(Some("x".into())),
        "skipping does not recurse"
    );

    let keys: String = (0..50_000).map(|i| format!(r#","k{i}":{i}"#)).collect();
    let wide = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"a":0{keys}}}}}"#);
    assert_eq!(parse(&wide).map(|m| m.0), Ok(Some("ping".into())));
    let start = std::time::Instant::now();
    let wide_dup =
        format!(r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"a":0{keys},"k7":0}}}}"#);
    assert_eq!(parse(&wide_dup), Err(Error::DuplicateKey(Location::Params)));
    assert!(
        start.elapsed() < std::time::Duration::from_secs(5),
        "no quadratic key check"
    );
}

#[test]
fn debug_output_leaves_the_token_out() {
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","_meta":{"token":"secret-bearer"}}}"#;
    let shown = format!("{:?}", jsonrpc::parse(body).unwrap());
    assert!(
        shown.contains("search") && !shown.contains("secret-bearer"),
        "{shown}"
    );
}

#[test]
fn error_messages_are_lowercase_and_say_what_happened() {
    assert_eq!(
        Error::DuplicateKey(Location::Params).to_string(),
        "invalid request: duplicate key in params"
    );
    assert_eq!(Error::NotUtf8.to_string(), "parse error: body is not UTF-8");
}

// --- the differential test against serde_json::Value ---

/// What serde_json::Value makes of a message without duplicate keys.
fn reference(v: &Value) -> Result<Read, Error> {
    let Some(obj) = v.as_object() else {
        return Err(Error::NotObject);
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(Error::Version);
    }
    let method = match obj.get("method") {
        None => None,
        Some(Value::String(m)) => Some(m.clone()),
        Some(_) => return Err(Error::Method),
    };
    let tool = if method.as_deref() == Some("tools/call") {
        Some(
            v.pointer("/params/name")
                .and_then(Value::as_str)
                .ok_or(Error::ToolName)?
                .to_owned(),
        )
    } else {
        None
    };
    let token = v
        .pointer("/params/_meta/token")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok((method, tool, token))
}

fn any_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_/]{0,12}",
        any::<String>(),
        Just("tools/call".to_owned()),
        Just("name".to_owned()),
        Just("token".to_owned()),
        Just("_meta".to_owned()),
    ]
}

fn any_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        any_string().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(any_string(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// `Some(value)` under a key, or the key left out.
fn maybe<T: std::fmt::Debug + Clone>(
    s: impl Strategy<Value = T>,
) -> impl Strategy<Value = Option<T>> {
    prop::option::weighted(0.8, s)
}

fn string_or_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => any_string().prop_map(Value::from),
        1 => any_value(),
    ]
}

fn extra_keys() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map("[a-z]{1,6}", any_value(), 0..4)
        .prop_map(|m| m.into_iter().collect())
}

fn meta() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => (maybe(string_or_value()), extra_keys()).prop_map(|(token, mut m)| {
            if let Some(t) = token {
                m.insert("token".into(), t);
            }
            Value::Object(m)
        }),
        1 => any_value(),
    ]
}

fn params() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => (maybe(string_or_value()), maybe(any_value()), maybe(meta()), extra_keys()).prop_map(
            |(name, arguments, meta, mut m)| {
                if let Some(n) = name {
                    m.insert("name".into(), n);
                }
                if let Some(a) = arguments {
                    m.insert("arguments".into(), a);
                }
                if let Some(x) = meta {
                    m.insert("_meta".into(), x);
                }
                Value::Object(m)
            }
        ),
        1 => any_value(),
    ]
}

fn message() -> impl Strategy<Value = Value> {
    let version = prop_oneof![
        8 => Just(json!("2.0")),
        1 => Just(json!("2")),
        1 => any_value(),
    ];
    let method = prop_oneof![
        4 => Just(json!("tools/call")),
        1 => Just(json!("tools/list")),
        1 => Just(json!("ping")),
        1 => string_or_value(),
    ];
    (
        maybe(version),
        maybe(method),
        maybe(params()),
        maybe(any_value()),
        extra_keys(),
    )
        .prop_map(|(version, method, params, id, mut m)| {
            for (k, v) in [
                ("jsonrpc", version),
                ("method", method),
                ("params", params),
                ("id", id),
            ] {
                if let Some(v) = v {
                    m.insert(k.into(), v);
                }
            }
            Value::Object(m)
        })
}

/// Escapes every occurrence of each chosen character as `\uXXXX`. None of them appears in a
/// literal, a number (but see '2' and '.'), or an escape serde_json writes, so each occurrence
/// is a character of a key or a string.
fn escape(text: &str, chars: &[char]) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if chars.contains(&c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn agrees_with_serde_json_value_without_duplicates(
        v in message(),
        pretty in any::<bool>(),
        escaped in prop::sample::subsequence(vec!['m', 'o', 'k', 'h', 'p', 'i', '_', '/', '2', '.'], 0..=10),
    ) {
        let text = if pretty {
            serde_json::to_string_pretty(&v).unwrap()
        } else {
            serde_json::to_string(&v).unwrap()
        };
        // '2' and '.' also occur in numbers: escape them only where the text has no number.
        let numbers = text.bytes().any(|b| b.is_ascii_digit());
        let escaped: Vec<char> = escaped
            .into_iter()
            .filter(|c| !(numbers && matches!(c, '2' | '.')))
            .collect();
        let text = escape(&text, &escaped);
        let value: Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(parse(&text), reference(&value), "{}", text);
    }

    #[test]
    fn never_panics_on_mangled_messages(
        v in message(),
        cut in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut bytes = serde_json::to_vec(&v).unwrap();
        let i = cut.index(bytes.len());
        bytes[i] = byte;
        let _ = jsonrpc::parse(&bytes);
        let _ = jsonrpc::parse(&bytes[..i]);
    }

    #[test]
    fn any_duplicate_the_decision_reads_is_refused(
        v in message(),
        first in any::<bool>(),
        escape_key in any::<bool>(),
    ) {
        // Duplicate the envelope's first key by appending it again (possibly escaped).
        let text = serde_json::to_string(&v).unwrap();
        let obj = v.as_object().unwrap();
        if let Some((key, value)) = obj.iter().next() {
            let key_text = if escape_key {
                key.encode_utf16().map(|u| format!("\\u{u:04x}")).collect::<String>()
            } else {
                let quoted = serde_json::to_string(key).unwrap();
                quoted[1..quoted.len() - 1].to_owned()
            };
            let pair = format!("\"{key_text}\":{}", serde_json::to_string(value).unwrap());
            let body = if first {
                format!("{{{pair},{}", &text[1..])
            } else {
                format!("{},{pair}}}", &text[..text.len() - 1])
            };
            prop_assert_eq!(parse(&body), Err(Error::DuplicateKey(Location::Envelope)), "{}", body);
        }
    }
}

#[tokio::test]
async fn the_strict_message_layer_answers_as_the_capability_layer_without_a_token() {
    use axum::body::Body;
    use http::{Request, StatusCode};
    use http_body_util::BodyExt as _;
    use tower::{ServiceBuilder, ServiceExt as _};

    let svc = ServiceBuilder::new()
        .layer(vouch_tower::StrictMessageLayer::default())
        .service(tower::service_fn(|_req: Request<Body>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty()))
        }));
    let post = |body: &'static str| Request::post("/mcp").body(Body::from(body)).unwrap();
    let one = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search"}}"#;
    for (body, status) in [
        ("", StatusCode::OK),
        (one, StatusCode::OK),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","name":"drop_table"}}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"}]"#,
            StatusCode::BAD_REQUEST,
        ),
        ("not json", StatusCode::BAD_REQUEST),
    ] {
        let response = svc.clone().oneshot(post(body)).await.unwrap();
        assert_eq!(response.status(), status, "{body}");
        if status == StatusCode::BAD_REQUEST {
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            let answer: Value = serde_json::from_slice(&bytes).unwrap();
            assert!(answer["error"]["code"].is_i64(), "{answer}");
        }
    }
}
