//! The server's own public origins, and the check that a request was addressed to one of them.
//!
//! A signature covers `@authority` (inside `@target-uri`). If a server took the authority from
//! the request's `Host`, a request signed for server A and sent unchanged to server B (which
//! trusts the same agent key) would verify at B: B rebuilds the base with A's authority, and B's
//! replay store has never seen the signature. So the server is told, at construction, which
//! origins (scheme, host, port) clients address it by; a request whose `Host` / `:authority`
//! (or absolute-form target) names anything else is refused with 421 before any key lookup, and
//! the signature base is built from the configured origin, never from what the client sent.

use core::fmt;
use core::str::FromStr;

use http::request::Parts;

/// One public origin of this server: scheme, host and port, as clients address it (RFC 6454).
///
/// ```
/// use vouch_tower::Origin;
/// let origin: Origin = "https://MCP.example:443".parse()?;
/// assert_eq!(origin.to_string(), "https://mcp.example");
/// assert_eq!(origin.authority(), "mcp.example");
/// let local = Origin::http("127.0.0.1:8080".parse()?);
/// assert_eq!(local.to_string(), "http://127.0.0.1:8080");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Origin {
    scheme: Scheme,
    /// Lowercased host (IPv6 literals keep their brackets).
    host: String,
    port: u16,
    /// `host[:port]`, the port left out when it is the scheme's default.
    authority: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn name(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Self::Http => 80,
            Self::Https => 443,
        }
    }
}

/// Why a string is not an origin.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OriginError {
    /// The scheme is not `http` or `https`.
    Scheme,
    /// The host or port is missing or malformed, or user information is present.
    Authority,
    /// An origin has no path (other than `/`), query or fragment.
    Path,
}

impl fmt::Display for OriginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Scheme => "origin scheme must be http or https",
            Self::Authority => "origin needs a host (and optional port), without user information",
            Self::Path => "an origin has no path, query or fragment",
        })
    }
}

impl std::error::Error for OriginError {}

impl Origin {
    /// Parses `scheme://host[:port]` (a trailing `/` is allowed).
    ///
    /// # Errors
    ///
    /// [`OriginError`] when the scheme is not http(s), the authority is malformed or carries
    /// user information, or a path, query or fragment follows.
    pub fn parse(text: &str) -> Result<Self, OriginError> {
        let (scheme, rest) = text.split_once("://").ok_or(OriginError::Scheme)?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            _ => return Err(OriginError::Scheme),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#']) {
            return Err(OriginError::Path);
        }
        let (host, port) = split_authority(rest, scheme).ok_or(OriginError::Authority)?;
        Ok(Self::from_pieces(scheme, host, port))
    }

    /// `http://addr`: for a server on a socket address (loopback, tests, behind nothing).
    pub fn http(addr: std::net::SocketAddr) -> Self {
        Self::from_socket(Scheme::Http, addr)
    }

    /// `https://addr`.
    pub fn https(addr: std::net::SocketAddr) -> Self {
        Self::from_socket(Scheme::Https, addr)
    }

    fn from_socket(scheme: Scheme, addr: std::net::SocketAddr) -> Self {
        let host = match addr.ip() {
            std::net::IpAddr::V4(ip) => ip.to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        };
        Self::from_pieces(scheme, host, addr.port())
    }

    fn from_pieces(scheme: Scheme, host: String, port: u16) -> Self {
        let authority = if port == scheme.default_port() {
            host.clone()
        } else {
            format!("{host}:{port}")
        };
        Self {
            scheme,
            host,
            port,
            authority,
        }
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &str {
        self.scheme.name()
    }

    /// The host, lowercased.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port (the scheme's default when none was written).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host[:port]` as the signature base's `@authority` has it: lowercased, without the
    /// scheme's default port.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// True if `authority` (a `Host` value or a URI's authority), normalized, is this origin's.
    fn matches_authority(&self, authority: &str) -> bool {
        split_authority(authority, self.scheme)
            .is_some_and(|(host, port)| host == self.host && port == self.port)
    }
}

impl FromStr for Origin {
    type Err = OriginError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme.name(), self.authority)
    }
}

/// `host[:port]` → (lowercased host, port), strictly: no user information, no empty host, a
/// port of digits only, IPv6 literals bracketed.
fn split_authority(text: &str, scheme: Scheme) -> Option<(String, u16)> {
    if text.is_empty() || text.contains(['@', ' ', '\t', '/', '?', '#', '\\']) {
        return None;
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        inside.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (format!("[{}]", inside.to_ascii_lowercase()), port)
    } else {
        match text.rsplit_once(':') {
            Some((h, p)) => (h.to_ascii_lowercase(), Some(p)),
            None => (text.to_ascii_lowercase(), None),
        }
    };
    if host.is_empty()
        || host.contains(':') && !host.starts_with('[')
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~[]:".contains(&b))
    {
        return None;
    }
    let port = match port {
        None => scheme.default_port(),
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            p.parse().ok()?
        }
        Some(_) => return None,
    };
    Some((host, port))
}

/// The configured origin a request was addressed to, or `None` (answer 421).
///
/// The request must carry exactly one `Host` (HTTP/1.1) or an authority in its URI (HTTP/2
/// `:authority`, or an absolute-form target); when both are present they must name the same
/// origin, and an absolute-form target's scheme must be the origin's.
pub(crate) fn addressed<'o>(origins: &'o [Origin], parts: &Parts) -> Option<&'o Origin> {
    let mut hosts = parts.headers.get_all(http::header::HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (None, _) => None,
        (Some(h), None) => Some(h.to_str().ok()?),
        (Some(_), Some(_)) => return None,
    };
    let uri_authority = parts.uri.authority().map(http::uri::Authority::as_str);
    let uri_scheme = parts.uri.scheme_str();
    origins.iter().find(|o| {
        let host_ok = host.is_none_or(|h| o.matches_authority(h));
        let uri_ok = uri_authority.is_none_or(|a| o.matches_authority(a));
        let scheme_ok = uri_scheme.is_none_or(|s| s.eq_ignore_ascii_case(o.scheme()));
        (host.is_some() || uri_authority.is_some()) && host_ok && uri_ok && scheme_ok
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn parts(uri: &str, hosts: &[&str]) -> Parts {
        let mut b = http::Request::post(uri);
        for h in hosts {
            b = b.header(http::header::HOST, *h);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn parses_and_normalizes() {
        let o = Origin::parse("HTTPS://Mcp.Example:443/").unwrap();
        assert_eq!(
            (o.scheme(), o.host(), o.port()),
            ("https", "mcp.example", 443)
        );
        assert_eq!(o.authority(), "mcp.example");
        let o = Origin::parse("http://[::1]:8080").unwrap();
        assert_eq!(o.authority(), "[::1]:8080");
        for bad in [
            "mcp.example",
            "ftp://mcp.example",
            "https://",
            "https://user@mcp.example",
            "https://mcp.example/mcp",
            "https://mcp.example?x",
            "https://mcp.example:",
            "https://mcp.example:99999",
            "https://mcp.example:8x",
            "https://[zz]:1",
            "https://a:b:c",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_a_configured_authority_is_addressed() {
        let origins = [
            Origin::parse("https://mcp.example").unwrap(),
            Origin::parse("http://127.0.0.1:8080").unwrap(),
        ];
        let ok = |uri: &str, hosts: &[&str]| addressed(&origins, &parts(uri, hosts)).cloned();
        assert_eq!(ok("/mcp", &["MCP.example"]), Some(origins[0].clone()));
        assert_eq!(ok("/mcp", &["mcp.example:443"]), Some(origins[0].clone()));
        assert_eq!(ok("/mcp", &["127.0.0.1:8080"]), Some(origins[1].clone()));
        assert_eq!(
            ok("https://mcp.example/mcp", &["mcp.example"]),
            Some(origins[0].clone())
        );
        assert_eq!(ok("https://mcp.example/mcp", &[]), Some(origins[0].clone()));
        // Everything else is misdirected.
        assert_eq!(ok("/mcp", &[]), None, "no authority at all");
        assert_eq!(ok("/mcp", &["evil.example"]), None);
        assert_eq!(ok("/mcp", &["127.0.0.1"]), None, "wrong port");
        assert_eq!(
            ok("/mcp", &["mcp.example", "mcp.example"]),
            None,
            "two Host fields"
        );
        assert_eq!(ok("/mcp", &["mcp.example:8443"]), None);
        assert_eq!(ok("/mcp", &["user@mcp.example"]), None);
        assert_eq!(
            ok("http://evil.example/mcp", &["mcp.example"]),
            None,
            "absolute form"
        );
        assert_eq!(
            ok("http://mcp.example/mcp", &["mcp.example"]),
            None,
            "scheme differs"
        );
        assert_eq!(
            ok("https://mcp.example/mcp", &["127.0.0.1:8080"]),
            None,
            "Host differs"
        );
    }
}
