//! What a verifier demands of a signature, configured once per server.

use crate::alg::Algorithm;
use crate::component::Component;
use crate::digest::DigestAlgorithm;

/// The header vouch's MCP profile carries a capability token in.
pub const DEFAULT_TOKEN_HEADER: &str = "x-mcpvault-token";

/// The label of the signature vouch's response profile puts on a response.
pub const RESPONSE_LABEL: &str = "reqres";

pub(crate) const CONTENT_DIGEST: http::HeaderName = http::HeaderName::from_static("content-digest");
pub(crate) const SIGNATURE: http::HeaderName = http::HeaderName::from_static("signature");
pub(crate) const SIGNATURE_INPUT: http::HeaderName =
    http::HeaderName::from_static("signature-input");

fn field(name: &str) -> Option<http::HeaderName> {
    http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).ok()
}

/// When the signature must cover a verified `Content-Digest`.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestRule {
    /// Whenever the message has a body (and whenever a covered Content-Digest is present).
    WithBody,
    /// On every message, empty bodies included (the envoys profile).
    Always,
    /// Only when the signature covers a Content-Digest (then it must match the body). For
    /// checking third-party examples; a server should not accept unbound bodies.
    WhenCovered,
    /// On every message, empty bodies included, except a response whose signature covers a
    /// `Content-Type` of `text/event-stream`: an event stream is signed over its head only,
    /// and its body is not bound by the signature (vouch's response profile).
    UnlessEventStream,
}

/// A verification policy.
///
/// [`VerifyPolicy::mcp`] is the default profile for MCP servers; [`VerifyPolicy::envoys`] accepts
/// clients of the Python `envoys` package, whose profile covers less (see the threat model).
/// Every setter narrows or widens one rule; the defaults are the careful choice.
#[derive(Debug, Clone)]
pub struct VerifyPolicy {
    pub(crate) label: Option<String>,
    pub(crate) required_tag: Option<String>,
    pub(crate) required: Vec<Component>,
    pub(crate) required_if_present: Vec<http::HeaderName>,
    pub(crate) digest_rule: DigestRule,
    pub(crate) digest_algorithms: Vec<DigestAlgorithm>,
    pub(crate) require_created: bool,
    pub(crate) require_keyid: bool,
    pub(crate) require_nonce: bool,
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) max_age: u64,
    pub(crate) future_skew: u64,
    pub(crate) max_header_bytes: usize,
    pub(crate) max_signatures: usize,
}

impl Default for VerifyPolicy {
    fn default() -> Self {
        Self::mcp()
    }
}

fn components(names: &[&str]) -> Vec<Component> {
    names
        .iter()
        .filter_map(|n| Component::new(n).ok())
        .collect()
}

impl VerifyPolicy {
    /// vouch's MCP profile: covers `@method` and `@target-uri` (authority, path and query),
    /// `content-digest` whenever there is a body, and, when present in the request,
    /// `authorization`, `mcp-session-id`, `mcp-protocol-version` and the token header; requires
    /// `created`, `keyid` and `nonce`; allows the asymmetric algorithms; max age 300 s, future
    /// skew 30 s; signature headers up to 8 KiB; at most 4 signatures examined.
    pub fn mcp() -> Self {
        Self {
            label: None,
            required_tag: None,
            required: components(&["@method", "@target-uri"]),
            required_if_present: [
                "authorization",
                "mcp-session-id",
                "mcp-protocol-version",
                DEFAULT_TOKEN_HEADER,
            ]
            .into_iter()
            .map(http::HeaderName::from_static)
            .collect(),
            digest_rule: DigestRule::WithBody,
            digest_algorithms: vec![DigestAlgorithm::Sha256, DigestAlgorithm::Sha512],
            require_created: true,
            require_keyid: true,
            require_nonce: true,
            algorithms: vec![
                Algorithm::Ed25519,
                Algorithm::EcdsaP256Sha256,
                Algorithm::EcdsaP384Sha384,
                Algorithm::RsaPssSha512,
                Algorithm::RsaV15Sha256,
            ],
            max_age: 300,
            future_skew: 30,
            max_header_bytes: 8 * 1024,
            max_signatures: 4,
        }
    }

    /// The profile of the Python `envoys` 0.3.0 client: label `sig1`, covering `@method`,
    /// `@path` and `content-digest` (on every request), with `keyid`, `created` and `nonce`,
    /// Ed25519 only. It does not cover the authority or the query: a server that accepts it
    /// accepts that a signed request can be relayed to another server of the same identity, or
    /// given another query string.
    pub fn envoys() -> Self {
        Self {
            label: Some("sig1".to_owned()),
            required: components(&["@method", "@path"]),
            required_if_present: Vec::new(),
            digest_rule: DigestRule::Always,
            algorithms: vec![Algorithm::Ed25519],
            ..Self::mcp()
        }
    }

    /// vouch's response profile ([`mcp_response_spec`](crate::mcp_response_spec)), for a client
    /// that sent a request signed under `request_label` and reads the answer: the response
    /// signature labelled [`RESPONSE_LABEL`] must cover `@status`, the request's `@method;req`
    /// and `@target-uri;req`, the request's own signature (`"signature";req;key="<label>"`, so
    /// that the answer is bound to this request and no other), and `content-type` and
    /// `mcp-session-id` when the response carries them; `content-digest` over the body on
    /// every response but an event stream ([`DigestRule::UnlessEventStream`]); `created` and
    /// `keyid` required (no nonce: the binding to the request's signature, itself fresh and
    /// unique, is what makes an answer single-use); the asymmetric algorithms; max age 300 s,
    /// future skew 30 s.
    ///
    /// Verify with [`ResponseView::with_request`](crate::ResponseView::with_request) giving the
    /// request exactly as it was sent (its URL, method and signature headers).
    pub fn mcp_response(request_label: &str) -> Self {
        let mut required = components(&["@status"]);
        required.extend(Component::of_request("@method").ok());
        required.extend(Component::of_request("@target-uri").ok());
        required.extend(Component::request_dictionary_member("signature", request_label).ok());
        Self {
            label: Some(RESPONSE_LABEL.to_owned()),
            required,
            required_if_present: ["content-type", "mcp-session-id"]
                .into_iter()
                .map(http::HeaderName::from_static)
                .collect(),
            digest_rule: DigestRule::UnlessEventStream,
            require_nonce: false,
            ..Self::mcp()
        }
    }

    /// Only consider the signature with this label.
    #[must_use]
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Only consider signatures whose `tag` parameter is this value.
    #[must_use]
    pub fn required_tag(mut self, tag: impl Into<String>) -> Self {
        self.required_tag = Some(tag.into());
        self
    }

    /// Also require this component in every signature.
    #[must_use]
    pub fn require(mut self, component: Component) -> Self {
        self.required.push(component);
        self
    }

    /// Require exactly these components (replacing the profile's list and its
    /// when-present headers).
    #[must_use]
    pub fn require_exactly(mut self, components: Vec<Component>) -> Self {
        self.required = components;
        self.required_if_present.clear();
        self
    }

    /// Require this header field to be covered whenever the request carries it (an invalid
    /// field name is ignored).
    #[must_use]
    pub fn require_if_present(mut self, header: &str) -> Self {
        self.required_if_present.extend(field(header));
        self
    }

    /// The header carrying the capability token (default `x-mcpvault-token`), covered when present.
    #[must_use]
    pub fn token_header(mut self, header: &str) -> Self {
        self.required_if_present
            .retain(|h| h.as_str() != DEFAULT_TOKEN_HEADER);
        self.required_if_present.extend(field(header));
        self
    }

    /// When a covered Content-Digest is required.
    #[must_use]
    pub fn digest_rule(mut self, rule: DigestRule) -> Self {
        self.digest_rule = rule;
        self
    }

    /// Whether `created`, `keyid` and `nonce` are required (all three by default).
    #[must_use]
    pub fn required_params(mut self, created: bool, keyid: bool, nonce: bool) -> Self {
        self.require_created = created;
        self.require_keyid = keyid;
        self.require_nonce = nonce;
        self
    }

    /// The algorithms accepted.
    #[must_use]
    pub fn algorithms(mut self, algorithms: &[Algorithm]) -> Self {
        self.algorithms = algorithms.to_vec();
        self
    }

    /// Maximum age of `created`, and how far in the future it may be, in seconds.
    #[must_use]
    pub fn window(mut self, max_age: u64, future_skew: u64) -> Self {
        self.max_age = max_age;
        self.future_skew = future_skew;
        self
    }

    /// Caps: bytes of each signature header, and signatures examined.
    #[must_use]
    pub fn limits(mut self, max_header_bytes: usize, max_signatures: usize) -> Self {
        self.max_header_bytes = max_header_bytes;
        self.max_signatures = max_signatures;
        self
    }

    /// The last Unix second at which a signature created at `created` (and expiring at
    /// `expires`) can still pass this policy's window. A replay entry must live until then.
    pub fn last_valid_second(&self, created: Option<u64>, expires: Option<u64>) -> u64 {
        let by_age = created.map_or(u64::MAX, |c| c.saturating_add(self.max_age));
        let by_expiry = expires.map_or(u64::MAX, |e| e.saturating_sub(1));
        by_age.min(by_expiry)
    }
}
