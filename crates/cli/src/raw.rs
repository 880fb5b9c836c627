//! Raw HTTP/1.1 requests as files: parsed strictly, written back with headers added.
//!
//! The grammar is RFC 9112's, narrowed to what a signing tool needs:
//!
//! - a request line `METHOD SP origin-form SP HTTP/1.1` (or `HTTP/1.0`);
//! - field lines `name: value`, with no whitespace before the colon and no obs-fold (a line that
//!   starts with a space or tab is refused, as RFC 9112 §5.2 allows);
//! - every line ending in CRLF, or every line in LF: a mix, or a bare CR, is refused;
//! - exactly one `Host` (the authority the signature covers);
//! - `Content-Length` sets the body length; without it there is no body. `Transfer-Encoding` is
//!   refused. One line ending after the body is tolerated (editors add one) and written back.

use http::{HeaderMap, HeaderName, HeaderValue, Method};

/// Bounds on what is parsed.
const MAX_HEAD_BYTES: usize = 64 * 1024;
const MAX_FIELDS: usize = 128;

/// Why a request file is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParseError(pub(crate) String);

impl core::fmt::Display for ParseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "not a raw HTTP/1.1 request: {}", self.0)
    }
}

fn err<T>(why: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(why.into()))
}

/// A parsed request that remembers its own text, so that it can be written back unchanged.
#[derive(Debug, Clone)]
pub(crate) struct RawRequest {
    request_line: String,
    method: Method,
    target: http::Uri,
    /// Field lines as written (the whole line, name case and spacing kept), in order.
    lines: Vec<(HeaderName, String)>,
    headers: HeaderMap,
    host: String,
    body: Vec<u8>,
    crlf: bool,
    /// The tolerated line ending after the body, if there was one.
    trailer: &'static [u8],
}

/// One line of the head: its text without the line ending, whether that ending was CRLF, and
/// what follows it.
struct Line<'a> {
    text: &'a [u8],
    crlf: bool,
    rest: &'a [u8],
}

fn next_line(input: &[u8]) -> Result<Option<Line<'_>>, ParseError> {
    let Some(lf) = input.iter().position(|&b| b == b'\n') else {
        return Ok(None);
    };
    let (line, rest) = input.split_at(lf);
    let rest = rest.get(1..).unwrap_or_default();
    let (line, crlf) = match line.strip_suffix(b"\r") {
        Some(l) => (l, true),
        None => (line, false),
    };
    if line.contains(&b'\r') {
        return err("a bare CR inside a line");
    }
    Ok(Some(Line {
        text: line,
        crlf,
        rest,
    }))
}

/// The field lines after the start line, up to the blank line: as written, as a map, and what
/// follows the blank line.
#[allow(clippy::type_complexity, reason = "a private helper's three results")]
fn fields<'a>(
    input: &[u8],
    mut rest: &'a [u8],
    crlf: bool,
) -> Result<(Vec<(HeaderName, String)>, HeaderMap, &'a [u8]), ParseError> {
    let mut lines = Vec::new();
    let mut headers = HeaderMap::new();
    loop {
        if input.len() - rest.len() > MAX_HEAD_BYTES {
            return err(format!("the head is larger than {MAX_HEAD_BYTES} bytes"));
        }
        let Some(Line {
            text: line,
            crlf: line_crlf,
            rest: after,
        }) = next_line(rest)?
        else {
            return err("no blank line after the header fields");
        };
        if line_crlf != crlf {
            return err("mixed line endings (use CRLF throughout, or LF throughout)");
        }
        rest = after;
        if line.is_empty() {
            break;
        }
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            return err("header folding (a line starting with whitespace) is refused");
        }
        if lines.len() == MAX_FIELDS {
            return err(format!("more than {MAX_FIELDS} header fields"));
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return err("a header line without a colon");
        };
        let (name, value) = line.split_at(colon);
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return err("a header name is not a token (no whitespace before the colon)");
        }
        let value = value
            .get(1..)
            .unwrap_or_default()
            .trim_ascii_start()
            .trim_ascii_end();
        let name = HeaderName::from_bytes(name)
            .map_err(|_| ParseError("a header name is not a token".into()))?;
        let value_text = std::str::from_utf8(value)
            .ok()
            .filter(|v| v.is_ascii())
            .ok_or_else(|| ParseError(format!("the value of {name} is not ASCII")))?;
        let header_value = HeaderValue::from_str(value_text)
            .map_err(|_| ParseError(format!("the value of {name} has a control character")))?;
        headers.append(name.clone(), header_value);
        // The line is ASCII: its name is a token and its value was checked above.
        lines.push((name, String::from_utf8_lossy(line).into_owned()));
    }

    if headers.contains_key(http::header::TRANSFER_ENCODING) {
        return err("Transfer-Encoding is not supported; give the body with a Content-Length");
    }
    Ok((lines, headers, rest))
}

/// The body `Content-Length` delimits in `rest`, and the one line ending tolerated after it.
fn body(
    headers: &HeaderMap,
    rest: &[u8],
    crlf: bool,
) -> Result<(Vec<u8>, &'static [u8]), ParseError> {
    let length = content_length(headers)?;
    let (body, leftover) = match length {
        Some(n) => {
            if n > rest.len() {
                return err(format!(
                    "the body has {} bytes, Content-Length says {n}",
                    rest.len()
                ));
            }
            rest.split_at(n)
        }
        None => (&[][..], rest),
    };
    let eol: &'static [u8] = if crlf { b"\r\n" } else { b"\n" };
    let trailer: &'static [u8] = match leftover {
        [] => b"",
        l if l == eol => eol,
        l if length.is_none() => {
            return err(format!(
                "{} bytes after the head, and no Content-Length to say they are the body",
                l.len()
            ));
        }
        l => {
            return err(format!(
                "{} bytes after the {}-byte body that Content-Length does not cover",
                l.len(),
                body.len()
            ));
        }
    };
    Ok((body.to_vec(), trailer))
}

/// A parsed raw HTTP/1.1 response, for checking its signature: `HTTP/1.1 200 OK`, field lines
/// and a body of `Content-Length` bytes, under the same grammar as requests.
#[derive(Debug, Clone)]
pub(crate) struct RawResponse {
    status: http::StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl RawResponse {
    /// Parses `input` strictly.
    pub(crate) fn parse(input: &[u8]) -> Result<Self, ParseError> {
        let Some(Line {
            text: line,
            crlf,
            rest,
        }) = next_line(input)?
        else {
            return err("no status line");
        };
        let line = std::str::from_utf8(line)
            .ok()
            .filter(|l| l.is_ascii())
            .ok_or_else(|| ParseError("the status line is not ASCII".into()))?;
        let mut parts = line.splitn(3, ' ');
        let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
            return err("the status line is not `HTTP/1.1 200 OK`");
        };
        if version != "HTTP/1.1" && version != "HTTP/1.0" {
            return err("the version must be HTTP/1.1 or HTTP/1.0");
        }
        let status = (code.len() == 3)
            .then(|| http::StatusCode::from_bytes(code.as_bytes()).ok())
            .flatten()
            .ok_or_else(|| ParseError("the status code is not three digits".into()))?;
        let (_, headers, rest) = fields(input, rest, crlf)?;
        let (body, _) = body(&headers, rest, crlf)?;
        Ok(Self {
            status,
            headers,
            body,
        })
    }

    /// The status code.
    pub(crate) fn status(&self) -> http::StatusCode {
        self.status
    }

    /// The header fields.
    pub(crate) fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The body.
    pub(crate) fn body(&self) -> &[u8] {
        &self.body
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

impl RawRequest {
    /// Parses `input` strictly.
    pub(crate) fn parse(input: &[u8]) -> Result<Self, ParseError> {
        let Some(Line {
            text: line,
            crlf,
            rest,
        }) = next_line(input)?
        else {
            return err("no request line");
        };
        let request_line = std::str::from_utf8(line)
            .ok()
            .filter(|l| l.is_ascii())
            .ok_or_else(|| ParseError("the request line is not ASCII".into()))?
            .to_owned();
        let mut parts = request_line.split(' ');
        let (Some(method), Some(target), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return err("the request line is not `METHOD /target HTTP/1.1`");
        };
        if method.is_empty() || !method.bytes().all(is_tchar) {
            return err("the method is not a token");
        }
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| ParseError("the method is not a token".into()))?;
        if !target.starts_with('/') {
            return err("the request target must be origin-form (/path?query)");
        }
        let target: http::Uri = target
            .parse()
            .map_err(|_| ParseError("the request target is not a valid path and query".into()))?;
        if version != "HTTP/1.1" && version != "HTTP/1.0" {
            return err("the version must be HTTP/1.1 or HTTP/1.0");
        }

        let (lines, headers, rest) = fields(input, rest, crlf)?;
        let mut hosts = headers.get_all(http::header::HOST).iter();
        let (Some(host), None) = (hosts.next(), hosts.next()) else {
            return err("the request needs exactly one Host header");
        };
        let host = host
            .to_str()
            .ok()
            .filter(|h| h.parse::<http::uri::Authority>().is_ok() && !h.contains('@'))
            .ok_or_else(|| ParseError("the Host header is not a host[:port]".into()))?
            .to_owned();

        let (body, trailer) = body(&headers, rest, crlf)?;
        Ok(Self {
            request_line,
            method,
            target,
            lines,
            headers,
            host,
            body,
            crlf,
            trailer,
        })
    }

    /// The method.
    pub(crate) fn method(&self) -> &Method {
        &self.method
    }

    /// The origin-form target.
    pub(crate) fn target(&self) -> &http::Uri {
        &self.target
    }

    /// The header fields.
    pub(crate) fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The `Host` value: the authority.
    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// The body bytes.
    pub(crate) fn body(&self) -> &[u8] {
        &self.body
    }

    /// Removes every field line named `name`.
    pub(crate) fn remove(&mut self, name: &HeaderName) {
        self.lines.retain(|(n, _)| n != name);
        self.headers.remove(name);
    }

    /// Appends a field line, written with `display_name`'s case.
    pub(crate) fn append(&mut self, display_name: &str, value: &str) -> Result<(), ParseError> {
        let name = HeaderName::from_bytes(display_name.as_bytes())
            .map_err(|_| ParseError(format!("{display_name} is not a header name")))?;
        let header_value = HeaderValue::from_str(value).map_err(|_| {
            ParseError(format!("the value of {display_name} is not a header value"))
        })?;
        self.headers.append(name.clone(), header_value);
        self.lines.push((name, format!("{display_name}: {value}")));
        Ok(())
    }

    /// The request as bytes, with the line endings it was written with.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let eol: &[u8] = if self.crlf { b"\r\n" } else { b"\n" };
        let mut out = Vec::with_capacity(self.body.len() + 1024);
        out.extend_from_slice(self.request_line.as_bytes());
        out.extend_from_slice(eol);
        for (_, line) in &self.lines {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(eol);
        }
        out.extend_from_slice(eol);
        out.extend_from_slice(&self.body);
        out.extend_from_slice(self.trailer);
        out
    }
}

fn content_length(headers: &HeaderMap) -> Result<Option<usize>, ParseError> {
    let mut found: Option<usize> = None;
    for value in headers.get_all(http::header::CONTENT_LENGTH) {
        let text = value.as_bytes();
        if text.is_empty() || text.len() > 19 || !text.iter().all(u8::is_ascii_digit) {
            return err("Content-Length is not a single decimal number");
        }
        let n = std::str::from_utf8(text)
            .ok()
            .and_then(|t| t.parse::<usize>().ok())
            .ok_or_else(|| ParseError("Content-Length is too large".into()))?;
        if found.is_some_and(|f| f != n) {
            return err("two different Content-Length values");
        }
        found = Some(n);
    }
    Ok(found)
}

#[cfg(test)]
mod tests;
