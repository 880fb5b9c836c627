//! The MCP 2026-07-28 request metadata headers (SEP-2243): which body field each mirrors, and
//! the `=?base64?…?=` form of values that cannot travel as plain header text.
//!
//! Every POST of the 2026-07-28 Streamable HTTP transport carries `Mcp-Method` (the JSON-RPC
//! `method`) and, for the methods in [`name_source`], `Mcp-Name` (the field that names what is
//! called). Tools may mark arguments with `x-mcp-header`, which clients mirror into
//! `Mcp-Param-{name}` headers. vouch's MCP signature profile covers all of them when present
//! (see [`VerifyPolicy::mcp`](crate::VerifyPolicy::mcp)), so that an authorizer that does not
//! see the body can still decide on them; the server that reads the body must check that they
//! agree with it.
//!
//! ```
//! use vouch_httpsig::mcp;
//!
//! assert_eq!(mcp::name_source("tools/call"), Some("name"));
//! assert_eq!(mcp::name_source("resources/read"), Some("uri"));
//! assert_eq!(mcp::name_source("tools/list"), None);
//! assert_eq!(mcp::encode_value("search"), "search");
//! assert_eq!(mcp::encode_value("Hello, 世界"), "=?base64?SGVsbG8sIOS4lueVjA==?=");
//! assert_eq!(mcp::decode_value("=?base64?SGVsbG8sIOS4lueVjA==?=").as_deref(), Some("Hello, 世界"));
//! ```

use base64ct::{Base64, Encoding};

pub use crate::policy::{MCP_METHOD, MCP_NAME, MCP_PARAM_PREFIX};

/// The first protocol version whose POSTs carry these headers.
pub const STANDARD_HEADERS_VERSION: &str = "2026-07-28";

/// The start of a Base64-wrapped value.
const PREFIX: &str = "=?base64?";
/// The end of a Base64-wrapped value.
const SUFFIX: &str = "?=";

/// The `params` field `Mcp-Name` mirrors for `method`, or `None` if the method carries no
/// `Mcp-Name`: `name` for `tools/call` and `prompts/get`, `uri` for `resources/read`,
/// `resources/subscribe` and `resources/unsubscribe`, `taskId` for `tasks/get`,
/// `tasks/update` and `tasks/cancel` (the spec requires the first three; rmcp 3.11 also sends
/// the others, and vouch checks every one it sends).
pub fn name_source(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => Some("uri"),
        "tasks/get" | "tasks/update" | "tasks/cancel" => Some("taskId"),
        _ => None,
    }
}

/// The MCP 2026-07-28 request headers (SEP-2243) a JSON-RPC `body` mirrors: `Mcp-Method`
/// for any message with a string `method`, and `Mcp-Name` (Base64-wrapped by [`encode_value`]
/// when it cannot travel as plain header text) for the methods in [`name_source`] whose body
/// has that field as a string. Nothing for a body that is not such a message (not JSON, a
/// response, a batch), or whose method is not a header value.
///
/// A signing client adds those the request lacks to a JSON-RPC `POST` before signing it
/// (vouch-reqwest's `SigningMiddleware`, the Python `vouch.Signer`).
///
/// ```
/// use vouch_httpsig::mcp;
///
/// let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add"}}"#;
/// let headers = mcp::request_headers(body);
/// assert_eq!(headers[0].0, "mcp-method");
/// assert_eq!(headers[0].1, "tools/call");
/// assert_eq!(headers[1].0, "mcp-name");
/// assert_eq!(headers[1].1, "add");
/// assert!(mcp::request_headers(b"not json").is_empty());
/// ```
pub fn request_headers(body: &[u8]) -> Vec<(http::HeaderName, http::HeaderValue)> {
    let Ok(message) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Vec::new();
    };
    let Some(method) = message.get("method").and_then(serde_json::Value::as_str) else {
        return Vec::new();
    };
    let Ok(method_value) = http::HeaderValue::from_str(method) else {
        return Vec::new();
    };
    let mut out = vec![(http::HeaderName::from_static(MCP_METHOD), method_value)];
    let name = name_source(method).and_then(|field| message.get("params")?.get(field)?.as_str());
    if let Some(name) = name
        && let Ok(value) = http::HeaderValue::from_str(&encode_value(name))
    {
        out.push((http::HeaderName::from_static(MCP_NAME), value));
    }
    out
}

/// Whether `version` (an `MCP-Protocol-Version` value, `YYYY-MM-DD`) is one whose POSTs must
/// carry `Mcp-Method` (2026-07-28 or later). Anything that is not a date in that form is not.
pub fn requires_standard_headers(version: &str) -> bool {
    let b = version.as_bytes();
    let shaped = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        });
    // Dates of one shape order as strings.
    shaped && version >= STANDARD_HEADERS_VERSION
}

/// Whether `value` must be Base64-wrapped: empty values pass as they are; values with a
/// leading or trailing space or tab, a character outside visible ASCII and space, or that look
/// like a wrapped value already, are wrapped.
fn needs_wrapping(value: &str) -> bool {
    let b = value.as_bytes();
    let edge = |c: Option<&u8>| matches!(c, Some(b' ' | b'\t'));
    edge(b.first())
        || edge(b.last())
        || b.iter().any(|c| !(0x20..=0x7e).contains(c))
        || (value.starts_with(PREFIX) && value.ends_with(SUFFIX))
}

/// The header value that carries `value`: as it is, or `=?base64?{standard Base64 of its
/// UTF-8}?=` when it cannot travel as plain header text.
pub fn encode_value(value: &str) -> String {
    if needs_wrapping(value) {
        format!(
            "{PREFIX}{}{SUFFIX}",
            Base64::encode_string(value.as_bytes())
        )
    } else {
        value.to_owned()
    }
}

/// The value a header carries: unwrapped from `=?base64?…?=` (strict, padded standard Base64
/// of UTF-8), or as it is. `None` for a wrapped value that does not decode, and for a header
/// value that is not visible ASCII, space and tab.
pub fn decode_value(header: &str) -> Option<String> {
    if !header
        .bytes()
        .all(|c| c == b'\t' || (0x20..=0x7e).contains(&c))
    {
        return None;
    }
    match header
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.strip_suffix(SUFFIX))
    {
        Some(inner) => {
            let bytes = Base64::decode_vec(inner).ok()?;
            String::from_utf8(bytes).ok()
        }
        None => Some(header.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The encoding examples of the 2026-07-28 Streamable HTTP transport ("Value Encoding").
    #[test]
    fn spec_encoding_examples() {
        let examples = [
            ("us-west1", "us-west1"),
            ("Hello, 世界", "=?base64?SGVsbG8sIOS4lueVjA==?="),
            (" padded ", "=?base64?IHBhZGRlZCA=?="),
            ("line1\nline2", "=?base64?bGluZTEKbGluZTI=?="),
            ("=?base64?literal?=", "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?="),
        ];
        for (i, (value, header)) in examples.into_iter().enumerate() {
            assert_eq!(encode_value(value), header, "example {i}");
            assert_eq!(decode_value(header).as_deref(), Some(value), "example {i}");
        }
    }

    #[test]
    fn decoding_is_strict() {
        // Unpadded, non-canonical trailing bits, not Base64, not UTF-8, not header text.
        for bad in [
            "=?base64?SGk?=",
            "=?base64?SGl=?=",
            "=?base64?!!!!?=",
            "=?base64?/w==?=",
            "caf\u{e9}",
            "a\nb",
        ] {
            assert_eq!(decode_value(bad), None, "{bad:?}");
        }
        assert_eq!(decode_value("=?base64?SGk=?=").as_deref(), Some("Hi"));
    }

    proptest::proptest! {
        #[test]
        fn every_value_round_trips(value in "\\PC*|[ \t=?a-z0-9\u{80}-\u{10ffff}]{0,12}") {
            crate::internal::fuzz_mcp_header_value(value.as_bytes());
            let encoded = encode_value(&value);
            proptest::prop_assert!(http::HeaderValue::from_str(&encoded).is_ok());
        }
    }

    #[test]
    fn versions() {
        assert!(requires_standard_headers("2026-07-28"));
        assert!(requires_standard_headers("2027-01-01"));
        for old in [
            "2025-06-18",
            "2025-11-25",
            "",
            "2026-7-28",
            "9999-99-9x",
            "2026-07-28 ",
        ] {
            assert!(!requires_standard_headers(old), "{old:?}");
        }
    }
}
