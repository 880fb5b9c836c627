//! Views of the HTTP message being signed or verified, on `http` crate types.

use http::{HeaderMap, Method, StatusCode, Uri};

/// A request as the signature sees it: method, target URI, header fields and the exact body bytes.
///
/// On a server, hyper hands over a relative URI (`/mcp?x=1`); give the authority and scheme the
/// client used with [`RequestView::with_authority`] and [`RequestView::with_scheme`], otherwise the
/// authority falls back to the `Host` header and `@scheme` / `@target-uri` cannot be computed.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub(crate) method: &'a Method,
    pub(crate) uri: &'a Uri,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) body: &'a [u8],
    scheme: Option<&'a str>,
    authority: Option<&'a str>,
}

impl<'a> RequestView<'a> {
    /// A view of request parts and the body bytes as received (or about to be sent).
    pub fn new(parts: &'a http::request::Parts, body: &'a [u8]) -> Self {
        Self::from_parts(&parts.method, &parts.uri, &parts.headers, body)
    }

    /// A view of a whole request whose body is bytes.
    pub fn of<B: AsRef<[u8]>>(request: &'a http::Request<B>) -> Self {
        Self::from_parts(
            request.method(),
            request.uri(),
            request.headers(),
            request.body().as_ref(),
        )
    }

    /// A view of the pieces of a request.
    pub fn from_parts(
        method: &'a Method,
        uri: &'a Uri,
        headers: &'a HeaderMap,
        body: &'a [u8],
    ) -> Self {
        Self {
            method,
            uri,
            headers,
            body,
            scheme: None,
            authority: None,
        }
    }

    /// The scheme the client used (`https` or `http`), when the URI does not say.
    #[must_use]
    pub fn with_scheme(mut self, scheme: &'a str) -> Self {
        self.scheme = Some(scheme);
        self
    }

    /// The authority the client used (`host[:port]`), when the URI does not say.
    #[must_use]
    pub fn with_authority(mut self, authority: &'a str) -> Self {
        self.authority = Some(authority);
        self
    }

    /// The header fields.
    pub fn headers(&self) -> &'a HeaderMap {
        self.headers
    }

    /// The body bytes.
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    pub(crate) fn scheme(&self) -> Option<String> {
        self.scheme
            .or_else(|| self.uri.scheme_str())
            .map(str::to_ascii_lowercase)
    }

    /// `host[:port]` lowercased, without the scheme's default port.
    pub(crate) fn authority(&self) -> Option<String> {
        let raw = match (self.authority, self.uri.authority()) {
            (Some(a), _) => a.to_owned(),
            (None, Some(a)) => a.as_str().to_owned(),
            (None, None) => self
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())?
                .trim()
                .to_owned(),
        };
        let mut a = raw.to_ascii_lowercase();
        let default_port = match self.scheme().as_deref() {
            Some("https") => Some(":443"),
            Some("http") => Some(":80"),
            _ => None,
        };
        if let Some(port) = default_port
            && let Some(stripped) = a.strip_suffix(port)
        {
            a = stripped.to_owned();
        }
        Some(a)
    }

    pub(crate) fn path(&self) -> &str {
        match self.uri.path() {
            "" => "/",
            p => p,
        }
    }
}

/// A response as the signature sees it, optionally with the request it answers (for `;req`).
#[derive(Debug, Clone, Copy)]
pub struct ResponseView<'a> {
    pub(crate) status: StatusCode,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) body: &'a [u8],
    pub(crate) request: Option<RequestView<'a>>,
}

impl<'a> ResponseView<'a> {
    /// A view of response parts and the body bytes.
    pub fn new(parts: &'a http::response::Parts, body: &'a [u8]) -> Self {
        Self::from_parts(parts.status, &parts.headers, body)
    }

    /// A view of the pieces of a response.
    pub fn from_parts(status: StatusCode, headers: &'a HeaderMap, body: &'a [u8]) -> Self {
        Self {
            status,
            headers,
            body,
            request: None,
        }
    }

    /// The request this response answers, for components marked `;req`.
    #[must_use]
    pub fn with_request(mut self, request: RequestView<'a>) -> Self {
        self.request = Some(request);
        self
    }
}

/// A request or a response.
#[allow(
    clippy::exhaustive_enums,
    reason = "an HTTP message is a request or a response, nothing else"
)]
#[derive(Debug, Clone, Copy)]
pub enum Message<'a> {
    /// A request.
    Request(RequestView<'a>),
    /// A response.
    Response(ResponseView<'a>),
}

impl<'a> Message<'a> {
    pub(crate) fn headers(&self) -> &'a HeaderMap {
        match self {
            Self::Request(r) => r.headers,
            Self::Response(r) => r.headers,
        }
    }

    pub(crate) fn body(&self) -> &'a [u8] {
        match self {
            Self::Request(r) => r.body,
            Self::Response(r) => r.body,
        }
    }
}

impl<'a> From<RequestView<'a>> for Message<'a> {
    fn from(r: RequestView<'a>) -> Self {
        Self::Request(r)
    }
}

impl<'a> From<ResponseView<'a>> for Message<'a> {
    fn from(r: ResponseView<'a>) -> Self {
        Self::Response(r)
    }
}
