//! The MCP 2026-07-28 request headers (`Mcp-Method`, `Mcp-Name`; SEP-2243) checked against
//! the JSON-RPC message, and read alone when the body is out of reach.
//!
//! A server that reads the body must refuse a request whose headers disagree with it, with
//! HTTP `400 Bad Request` and the JSON-RPC error `HeaderMismatch`, code [`HEADER_MISMATCH`]
//! (`-32020`, schema `schema/draft/schema.ts` of the MCP specification; the Streamable HTTP
//! transport's "Server Validation" section gives the status). Otherwise a load balancer or an
//! authorizer that routes or decides on the header, and the server that runs the body, would
//! act on two different requests.
//!
//! [`check`] compares strictly:
//!
//! - each header appears at most once (a second line is a mismatch, whatever its value), and
//!   is visible ASCII text;
//! - `Mcp-Method` equals the message's `method`, byte for byte; a message without a method (or
//!   no message at all) has none to match;
//! - `Mcp-Name`, decoded from `=?base64?…?=` if wrapped (strict Base64), equals the field
//!   [`vouch_httpsig::mcp::name_source`] names for the method; it is present
//!   exactly when that field is a string in the body;
//! - `Mcp-Name` without `Mcp-Method` is a mismatch, and so is a request whose
//!   `MCP-Protocol-Version` is 2026-07-28 or later but that carries no `Mcp-Method`.
//!
//! A request without any of these headers (protocol 2025-06-18 and earlier) passes unchecked.
//! `Mcp-Param-*` headers mirror tool arguments named by the tool's input schema, which only
//! the MCP server knows: they are covered by the signature but not compared here; rmcp's
//! server compares them.

use http::HeaderMap;
use serde_json::{Value, json};
use vouch_httpsig::mcp::{
    MCP_METHOD, MCP_NAME, decode_value, name_source, requires_standard_headers,
};

use crate::jsonrpc::Message;

/// The JSON-RPC error code of `HeaderMismatch` in MCP 2026-07-28 (HTTP status 400).
pub const HEADER_MISMATCH: i32 = -32020;

/// What is wrong with the MCP request headers. Each says which header, none its value.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderMismatch {
    /// A header appears on more than one line.
    Duplicate(&'static str),
    /// A header is not visible ASCII text, or its `=?base64?…?=` form does not decode.
    Malformed(&'static str),
    /// A header the request must carry is missing.
    Missing(&'static str),
    /// A header is present that the body has no value for.
    Unexpected(&'static str),
    /// A header's value differs from the body's.
    Differs(&'static str),
}

impl HeaderMismatch {
    /// The HTTP status: 400.
    pub fn status(&self) -> http::StatusCode {
        http::StatusCode::BAD_REQUEST
    }

    /// The JSON-RPC error answer: `{"jsonrpc": "2.0", "id": id, "error": {"code": -32020,
    /// "message": …}}`, with the request's `id` if it had one (else `null`).
    pub fn body(&self, id: Option<&Value>) -> Value {
        json!({
            "jsonrpc": "2.0",
            "id": id.cloned().unwrap_or(Value::Null),
            "error": {"code": HEADER_MISMATCH, "message": self.to_string()},
        })
    }
}

impl std::fmt::Display for HeaderMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Duplicate(h) => write!(f, "header mismatch: {h} appears more than once"),
            Self::Malformed(h) => write!(f, "header mismatch: {h} is malformed"),
            Self::Missing(h) => write!(f, "header mismatch: {h} is missing"),
            Self::Unexpected(h) => write!(f, "header mismatch: {h} has no value in the body"),
            Self::Differs(h) => write!(f, "header mismatch: {h} does not match the body"),
        }
    }
}

impl std::error::Error for HeaderMismatch {}

/// Display names of the headers.
const METHOD: &str = "Mcp-Method";
const NAME: &str = "Mcp-Name";

/// The one value of `name`, as text; `Ok(None)` when absent.
fn single<'h>(
    headers: &'h HeaderMap,
    name: &str,
    display: &'static str,
) -> Result<Option<&'h str>, HeaderMismatch> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(HeaderMismatch::Duplicate(display));
    }
    let text = value
        .to_str()
        .map_err(|_| HeaderMismatch::Malformed(display))?;
    Ok(Some(text))
}

fn protocol_requires_headers(headers: &HeaderMap) -> bool {
    headers
        .get_all("mcp-protocol-version")
        .iter()
        .any(|v| v.to_str().is_ok_and(requires_standard_headers))
}

/// Checks the `Mcp-Method` and `Mcp-Name` headers against `message` (`None`: an empty body),
/// as the [module docs](self) say.
///
/// # Errors
///
/// The first [`HeaderMismatch`] found.
pub fn check(headers: &HeaderMap, message: Option<&Message<'_>>) -> Result<(), HeaderMismatch> {
    let method = single(headers, MCP_METHOD, METHOD)?;
    let name = single(headers, MCP_NAME, NAME)?;
    let body_method = message.and_then(Message::method);
    let Some(method) = method else {
        if name.is_some() {
            return Err(HeaderMismatch::Missing(METHOD));
        }
        if body_method.is_some() && protocol_requires_headers(headers) {
            return Err(HeaderMismatch::Missing(METHOD));
        }
        return Ok(());
    };
    match body_method {
        None => return Err(HeaderMismatch::Unexpected(METHOD)),
        Some(m) if m != method => return Err(HeaderMismatch::Differs(METHOD)),
        Some(_) => {}
    }
    let body_name = message.and_then(Message::mcp_name);
    match (name, body_name) {
        (None, None) => Ok(()),
        (Some(_), None) => Err(HeaderMismatch::Unexpected(NAME)),
        (None, Some(_)) => Err(HeaderMismatch::Missing(NAME)),
        (Some(header), Some(body)) => {
            let decoded = decode_value(header).ok_or(HeaderMismatch::Malformed(NAME))?;
            if decoded == body {
                Ok(())
            } else {
                Err(HeaderMismatch::Differs(NAME))
            }
        }
    }
}

/// What the headers alone say a request is, for a decision without the body.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadMessage {
    /// The `Mcp-Method`.
    pub method: String,
    /// The decoded `Mcp-Name`, for a method that carries one.
    pub name: Option<String>,
}

/// Reads the request from its headers alone: `Mcp-Method` is required; `Mcp-Name` is required
/// for the methods that carry one and refused for the others. What is read must still be
/// compared with the body by whoever reads it ([`check`], as
/// [`DigestCheckLayer`](crate::DigestCheckLayer) does).
///
/// # Errors
///
/// [`HeaderMismatch`]: a missing, duplicated or malformed header, or an `Mcp-Name` on a
/// method that carries none.
pub fn read_head(headers: &HeaderMap) -> Result<HeadMessage, HeaderMismatch> {
    let method = single(headers, MCP_METHOD, METHOD)?.ok_or(HeaderMismatch::Missing(METHOD))?;
    let name = single(headers, MCP_NAME, NAME)?;
    let name = match (name_source(method), name) {
        (Some(_), None) => return Err(HeaderMismatch::Missing(NAME)),
        (None, Some(_)) => return Err(HeaderMismatch::Unexpected(NAME)),
        (None, None) => None,
        (Some(_), Some(raw)) => Some(decode_value(raw).ok_or(HeaderMismatch::Malformed(NAME))?),
    };
    Ok(HeadMessage {
        method: method.to_owned(),
        name,
    })
}

#[cfg(test)]
mod tests;
