//! What a verifier demands of a signature, configured once per server.

use crate::alg::Algorithm;
use crate::component::Component;
use crate::digest::DigestAlgorithm;
use crate::params::{ParamValue, params_value};

/// The header vouch's MCP profile carries a capability token in.
pub const DEFAULT_TOKEN_HEADER: &str = "x-mcpvault-token";

/// The MCP 2026-07-28 header mirroring the JSON-RPC `method` (SEP-2243).
pub const MCP_METHOD: &str = "mcp-method";

/// The MCP 2026-07-28 header mirroring `params.name` or `params.uri` (SEP-2243).
pub const MCP_NAME: &str = "mcp-name";

/// The prefix of the MCP 2026-07-28 headers mirroring tool arguments a tool's input schema
/// marks with `x-mcp-header` (SEP-2243).
pub const MCP_PARAM_PREFIX: &str = "mcp-param-";

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

/// What the `keyid` parameter must be.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyidRule {
    /// Any string: the key resolver decides what it names (vouch's profiles: a URL, an address,
    /// a DID or a local name).
    Any,
    /// The RFC 7638 JWK thumbprint (SHA-256, base64url without padding) of the key that
    /// verifies the signature (SEP-2752 §2.2, §2.4). A keyid that cannot be one (not 43
    /// base64url characters) is refused before any key is resolved, and after verification the
    /// resolved key's thumbprint must equal it.
    JwkThumbprint,
}

/// What the verifier does with an `alg` signature parameter.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlgParam {
    /// When present it must name an allowed algorithm and the key's own (RFC 9421 §3.2,
    /// vouch's profiles).
    Checked,
    /// Not read at all: the algorithm is the key's (SEP-2752 §2.2: `alg` "MUST be ignored if
    /// present"). It is still part of the signed `@signature-params`, so it cannot be changed.
    Ignored,
}

/// True if `headers` hold exactly one `Content-Type` whose media type (parameters ignored, case
/// insensitive) is `media`. Two `Content-Type` lines are never a match.
pub fn media_type_is(headers: &http::HeaderMap, media: &str) -> bool {
    let mut lines = headers.get_all(http::header::CONTENT_TYPE).iter();
    let (Some(only), None) = (lines.next(), lines.next()) else {
        return false;
    };
    only.as_bytes()
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii()
        .eq_ignore_ascii_case(media.as_bytes())
}

/// True for an event stream: a single `Content-Type` of `text/event-stream`. Such responses are
/// signed over their head only ([`DigestRule::UnlessEventStream`]).
pub fn is_event_stream(headers: &http::HeaderMap) -> bool {
    media_type_is(headers, "text/event-stream")
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
    pub(crate) required_prefix_if_present: Vec<String>,
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
    pub(crate) require_expires: bool,
    pub(crate) max_lifetime: Option<u64>,
    pub(crate) signature_agent: bool,
    pub(crate) legacy_signature_agent: bool,
    pub(crate) require_tag: bool,
    pub(crate) keyid_rule: KeyidRule,
    pub(crate) alg_param: AlgParam,
    pub(crate) min_nonce_bytes: usize,
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
    /// `authorization`, `mcp-session-id`, `mcp-protocol-version`, the token header, and the
    /// MCP 2026-07-28 request metadata headers `mcp-method`, `mcp-name` and every
    /// `mcp-param-*` ([`MCP_PARAM_PREFIX`]); requires
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
                MCP_METHOD,
                MCP_NAME,
                DEFAULT_TOKEN_HEADER,
            ]
            .into_iter()
            .map(http::HeaderName::from_static)
            .collect(),
            required_prefix_if_present: vec![MCP_PARAM_PREFIX.to_owned()],
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
            require_expires: false,
            max_lifetime: None,
            signature_agent: false,
            legacy_signature_agent: false,
            require_tag: false,
            keyid_rule: KeyidRule::Any,
            alg_param: AlgParam::Checked,
            min_nonce_bytes: 0,
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
            required_prefix_if_present: Vec::new(),
            digest_rule: DigestRule::Always,
            algorithms: vec![Algorithm::Ed25519],
            ..Self::mcp()
        }
    }

    /// The Web Bot Auth profile (draft-ietf-webbotauth-httpsig-protocol): only signatures tagged
    /// `web-bot-auth`; covering `@authority` and one member of the `Signature-Agent` dictionary
    /// (`"signature-agent";key="<member>"`, whose value is an `https` URL of type `directory` or
    /// `jwks_uri`, checked here before any key is fetched: see [`Prepared::signature_agent`]);
    /// `created`, `expires` and `keyid` required, `nonce` not; `expires - created` at most
    /// 86 400 s (the draft's recommended maximum) and `created` at most that old, 30 s future
    /// skew; a covered Content-Digest when there is a body; the asymmetric algorithms.
    ///
    /// The `keyid` is the JWK SHA-256 thumbprint of the key, which the caller looks up in the
    /// directory the Signature-Agent member names (vouch-keys' `DirectoryResolver`).
    ///
    /// [`Prepared::signature_agent`]: crate::Prepared::signature_agent
    pub fn web_bot_auth() -> Self {
        Self {
            required_tag: Some(crate::web_bot_auth::WEB_BOT_AUTH_TAG.to_owned()),
            required: components(&["@authority"]),
            required_if_present: Vec::new(),
            required_prefix_if_present: Vec::new(),
            require_nonce: false,
            max_age: crate::web_bot_auth::MAX_LIFETIME,
            require_expires: true,
            max_lifetime: Some(crate::web_bot_auth::MAX_LIFETIME),
            signature_agent: true,
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
            required_prefix_if_present: Vec::new(),
            digest_rule: DigestRule::UnlessEventStream,
            require_nonce: false,
            ..Self::mcp()
        }
    }

    /// The policy for the signature a key directory puts on its own response (the draft's
    /// "Possession Proof on the Directory Response"): tag `http-message-signatures-directory`,
    /// covering `"@authority";req` and `content-digest` (which must match the body), with
    /// `created`, `expires` and `keyid`; `created` may not be in the future (30 s skew) and has
    /// no maximum age, the proof being meant to outlive the fetch until `expires`.
    pub fn directory_response() -> Self {
        Self {
            required_tag: Some(crate::web_bot_auth::DIRECTORY_TAG.to_owned()),
            required: Component::parse_list("\"@authority\";req \"content-digest\"")
                .unwrap_or_default(),
            required_if_present: Vec::new(),
            required_prefix_if_present: Vec::new(),
            digest_rule: DigestRule::Always,
            require_nonce: false,
            max_age: u64::MAX,
            require_expires: true,
            ..Self::mcp()
        }
    }

    /// The SEP-2752 profile (RFC 9421 proof-of-possession client authentication for MCP, draft
    /// of 2026-05-19): covers `@method`, `@target-uri` and `content-digest` on every request
    /// (empty bodies included), and `mcp-protocol-version` and `mcp-session-id` whenever the
    /// request carries them; requires `created`, `nonce` (base64url, at least 96 bits),
    /// `keyid` (the JWK thumbprint of the verifying key) and `tag` (the client's stable
    /// identifier); ignores `alg`; allows ed25519, ecdsa-p256-sha256 and ecdsa-p384-sha384;
    /// max age 300 s, future skew 60 s. The token header stays covered when present (a vouch
    /// capability token must be bound to the request; SEP-2752 clients do not send one).
    ///
    /// How it differs from [`VerifyPolicy::mcp`], and why, is in `docs/signature-profile.md`.
    pub fn sep2752() -> Self {
        Self {
            required: components(&["@method", "@target-uri"]),
            required_if_present: [
                "mcp-protocol-version",
                "mcp-session-id",
                DEFAULT_TOKEN_HEADER,
            ]
            .into_iter()
            .map(http::HeaderName::from_static)
            .collect(),
            // The SEP names no Mcp-Param-* rule; a SEP client need not cover them.
            required_prefix_if_present: Vec::new(),
            digest_rule: DigestRule::Always,
            digest_algorithms: vec![DigestAlgorithm::Sha256, DigestAlgorithm::Sha512],
            algorithms: vec![
                Algorithm::Ed25519,
                Algorithm::EcdsaP256Sha256,
                Algorithm::EcdsaP384Sha384,
            ],
            future_skew: 60,
            require_tag: true,
            keyid_rule: KeyidRule::JwkThumbprint,
            alg_param: AlgParam::Ignored,
            min_nonce_bytes: 12,
            ..Self::mcp()
        }
    }

    /// Whether `expires` is required, and the longest `expires - created` accepted (`None`: no
    /// bound). The Web Bot Auth profile requires it and bounds it to 86 400 s.
    #[must_use]
    pub fn lifetime(mut self, require_expires: bool, max_lifetime: Option<u64>) -> Self {
        self.require_expires = require_expires;
        self.max_lifetime = max_lifetime;
        self
    }

    /// Whether the signature must cover one member of a well-formed `Signature-Agent` dictionary
    /// (the Web Bot Auth profile's rule).
    #[must_use]
    pub fn require_signature_agent(mut self, required: bool) -> Self {
        self.signature_agent = required;
        self
    }

    /// Web Bot Auth: also accept the legacy `Signature-Agent` of earlier drafts, one String item
    /// (`Signature-Agent: "https://agent.example"`) covered as the whole field, which the
    /// draft lets a verifier accept as a dictionary whose one member is keyed by the signature's
    /// label. Off by default: signers must send the dictionary form. Cloudflare's
    /// `web-bot-auth` 0.1.3 npm package sends only the legacy form.
    #[must_use]
    pub fn legacy_signature_agent(mut self, accept: bool) -> Self {
        self.legacy_signature_agent = accept;
        self
    }

    /// Whether a `tag` parameter is required (SEP-2752: yes; vouch's profiles: no).
    #[must_use]
    pub fn require_tag(mut self, required: bool) -> Self {
        self.require_tag = required;
        self
    }

    /// What the `keyid` must be.
    #[must_use]
    pub fn keyid_rule(mut self, rule: KeyidRule) -> Self {
        self.keyid_rule = rule;
        self
    }

    /// What is done with an `alg` parameter.
    #[must_use]
    pub fn alg_param(mut self, rule: AlgParam) -> Self {
        self.alg_param = rule;
        self
    }

    /// The fewest bytes of randomness a `nonce` must carry, as base64url (0: any string).
    #[must_use]
    pub fn min_nonce_bytes(mut self, bytes: usize) -> Self {
        self.min_nonce_bytes = bytes;
        self
    }

    /// True if the policy's keyid rule is `rule`.
    pub fn keyid_rule_is(&self, rule: KeyidRule) -> bool {
        self.keyid_rule == rule
    }

    /// The algorithms accepted, in the policy's order of preference (for a capability
    /// advertisement such as SEP-2752's `httpMessageSignatures.algorithms`).
    pub fn allowed_algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    /// An `Accept-Signature` member (RFC 9421 §5.1) asking for what this policy demands of a
    /// request with these `headers`: the required components, `content-digest` when the digest
    /// rule asks for it (for [`DigestRule::WithBody`], when `has_body`), each when-present
    /// header the request carries, then `created`, `nonce` when required, and `tag="…"` when
    /// the policy requires one tag value ([`VerifyPolicy::required_tag`]). `keyid` is not
    /// requested: in `Accept-Signature` it names the key to use, which the server does not
    /// choose. For SEP-2752 §3.3:
    ///
    /// ```
    /// use vouch_httpsig::VerifyPolicy;
    /// let mut headers = http::HeaderMap::new();
    /// headers.insert("mcp-protocol-version", "2026-03-26".parse().unwrap());
    /// assert_eq!(
    ///     VerifyPolicy::sep2752().accept_signature("sig1", &headers, true),
    ///     r#"sig1=("@method" "@target-uri" "content-digest" "mcp-protocol-version");created;nonce"#,
    /// );
    /// ```
    pub fn accept_signature(
        &self,
        label: &str,
        headers: &http::HeaderMap,
        has_body: bool,
    ) -> String {
        let mut covered = self.required.clone();
        let digest = match self.digest_rule {
            DigestRule::Always | DigestRule::UnlessEventStream => true,
            DigestRule::WithBody => has_body,
            DigestRule::WhenCovered => false,
        };
        if digest {
            covered.extend(Component::new("content-digest").ok());
        }
        for h in &self.required_if_present {
            if headers.contains_key(h) {
                covered.extend(Component::new(h.as_str()).ok());
            }
        }
        for prefix in &self.required_prefix_if_present {
            let mut names: Vec<&str> = headers
                .keys()
                .map(http::HeaderName::as_str)
                .filter(|n| n.starts_with(prefix.as_str()))
                .collect();
            names.sort_unstable();
            covered.extend(names.into_iter().filter_map(|n| Component::new(n).ok()));
        }
        let mut params = Vec::new();
        if self.require_created {
            params.push(("created", ParamValue::True));
        }
        if self.require_nonce {
            params.push(("nonce", ParamValue::True));
        }
        if let Some(tag) = &self.required_tag {
            params.push(("tag", ParamValue::Str(tag.clone())));
        }
        match params_value(&covered, &params) {
            Ok(value) => format!("{label}={value}"),
            // Only a required tag that is not a structured-field string gets here: ask
            // without it rather than not at all.
            Err(_) => {
                params.retain(|(n, _)| *n != "tag");
                let value = params_value(&covered, &params).unwrap_or_default();
                format!("{label}={value}")
            }
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
    /// when-present headers and prefixes).
    #[must_use]
    pub fn require_exactly(mut self, components: Vec<Component>) -> Self {
        self.required = components;
        self.required_if_present.clear();
        self.required_prefix_if_present.clear();
        self
    }

    /// Require every header field whose name starts with `prefix` (compared in lowercase) to
    /// be covered whenever the request carries one, as the MCP profile does for
    /// `mcp-param-`. An empty prefix is ignored (it would demand every header).
    #[must_use]
    pub fn require_prefix_if_present(mut self, prefix: &str) -> Self {
        if !prefix.is_empty() {
            self.required_prefix_if_present
                .push(prefix.to_ascii_lowercase());
        }
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
