#![allow(clippy::unwrap_used, reason = "tests")]

use super::*;
use vouch_token::{Access, KeyPair, Restriction, Token, Verifier};

fn lister() -> ToolsListFilter {
    let root = KeyPair::from_seed(&[7; 32]).unwrap();
    let token = Token::mint(
        &root,
        "auth",
        "agent",
        Restriction::new().tools(["search"]).ttl(600),
    )
    .unwrap();
    let facts = Verifier::new(root.public_key())
        .verify(&token, &Access::now())
        .unwrap();
    ToolsListFilter::new(Value::from(3), facts, Arc::new(BTreeMap::new()), 1024)
}

const LIST: &str =
    r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"search"},{"name":"drop"}]}}"#;

#[test]
fn events_end_at_a_blank_line_in_every_line_ending() {
    assert_eq!(event_end(b"data: x\n\nrest", false), Some(9));
    assert_eq!(event_end(b"data: x\r\n\r\nrest", false), Some(11));
    assert_eq!(event_end(b"data: x\r\rrest", false), Some(9));
    assert_eq!(event_end(b"data: x\r\n", false), None);
    assert_eq!(event_end(b"data: x\r", false), None);
    assert_eq!(event_end(b"data: x\r\r", false), None);
    assert_eq!(event_end(b"data: x\r\r", true), Some(9));
}

#[test]
fn the_listing_event_is_filtered_and_others_pass_unchanged() {
    let l = lister();
    let event = Bytes::from(format!("event: message\r\nid: 7\r\ndata: {LIST}\r\n\r\n"));
    let out = l.filter_event(event);
    let text = std::str::from_utf8(&out).unwrap();
    assert!(text.starts_with("event: message\nid: 7\ndata: "), "{text}");
    assert!(text.ends_with("\n\n"));
    assert!(text.contains("search") && !text.contains("drop"), "{text}");

    let other = Bytes::from_static(
        b"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n",
    );
    assert_eq!(l.filter_event(other.clone()), other);
    // A result under another id (a string for a number) is filtered all the same.
    let renamed = Bytes::from_static(
        b"data: {\"jsonrpc\":\"2.0\",\"id\":\"3\",\"result\":{\"tools\":[{\"name\":\"drop\"}]}}\n\n",
    );
    let out = l.filter_event(renamed);
    assert!(!std::str::from_utf8(&out).unwrap().contains("drop"));
    let comment = Bytes::from_static(b": keep-alive\n\n");
    assert_eq!(l.filter_event(comment.clone()), comment);
}

#[test]
fn json_bodies_are_filtered() {
    let out = lister().filter_json(LIST.as_bytes()).unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        v["result"]["tools"],
        serde_json::json!([{"name": "search"}])
    );
    assert!(lister().filter_json(b"not json").is_err());
}

#[test]
fn chunks_are_split_into_events_wherever_they_break() {
    let stream = format!(
        ": keep-alive\r\n\r\ndata: {LIST}\r\n\r\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"x\"}}\n\n"
    );
    let whole: Vec<Bytes> = {
        let mut l = lister();
        let mut out = l.push(stream.as_bytes()).unwrap();
        out.extend(l.finish());
        out
    };
    assert_eq!(whole.len(), 3);
    assert!(std::str::from_utf8(&whole[1]).unwrap().contains("search"));
    assert!(!std::str::from_utf8(&whole[1]).unwrap().contains("drop"));
    // Byte by byte: the same events, none early, none lost.
    let mut l = lister();
    let mut out = Vec::new();
    for b in stream.as_bytes() {
        out.extend(l.push(std::slice::from_ref(b)).unwrap());
    }
    out.extend(l.finish());
    assert_eq!(out, whole);
    assert!(!l.is_holding());
}

#[test]
fn an_unterminated_last_event_is_filtered_too() {
    let mut l = lister();
    assert!(
        l.push(format!("data: {LIST}").as_bytes())
            .unwrap()
            .is_empty()
    );
    assert!(l.is_holding());
    let out = l.finish();
    assert_eq!(out.len(), 1);
    assert!(!std::str::from_utf8(&out[0]).unwrap().contains("drop"));
}

#[test]
fn an_event_over_the_bound_ends_the_stream() {
    let mut l = lister();
    let big = format!("data: {}", "x".repeat(2000));
    assert_eq!(l.push(big.as_bytes()), Err(EventTooLarge));
    assert!(!l.is_holding());
}

#[test]
fn only_listings_are_recognised() {
    assert_eq!(
        listing_id(br#"{"jsonrpc":"2.0","id":9,"method":"tools/list"}"#),
        Some(Value::from(9))
    );
    assert_eq!(
        listing_id(br#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"a"}}"#),
        None
    );
    assert_eq!(listing_id(b"not json"), None);
    // Duplicate keys are ambiguous: not a listing to filter (the capability layer refuses it).
    assert_eq!(
        listing_id(br#"{"jsonrpc":"2.0","id":9,"method":"x","method":"tools/list"}"#),
        None
    );
}
