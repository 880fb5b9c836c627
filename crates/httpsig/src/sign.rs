//! Signing: what to cover, with which parameters, and the header values that result.

use base64ct::{Base64, Base64UrlUnpadded, Encoding};
use http::{HeaderMap, HeaderValue};
use ring::rand::{SecureRandom, SystemRandom};

use crate::alg::SigningKey;
use crate::base::signature_base;
use crate::component::Component;
use crate::digest::{DigestAlgorithm, content_digest};
use crate::error::Error;
use crate::message::{Message, RequestView, ResponseView};
use crate::params::{ParamValue, params_value};
use crate::policy::{DEFAULT_TOKEN_HEADER, MCP_METHOD, MCP_NAME, MCP_PARAM_PREFIX, RESPONSE_LABEL};

/// What one signature covers and which parameters it carries, in order.
///
/// Parameters appear in the order they are set; the profiles use `created`, `expires`, `nonce`,
/// `alg`, `keyid`, `tag`.
#[derive(Debug, Clone)]
pub struct SignatureSpec {
    label: String,
    components: Vec<Component>,
    params: Vec<(&'static str, ParamValue)>,
}

impl SignatureSpec {
    /// A signature under `label` covering nothing yet.
    pub fn new(label: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            components: Vec::new(),
            params: Vec::new(),
        }
    }

    /// Covers a component.
    #[must_use]
    pub fn cover(mut self, component: Component) -> Self {
        self.components.push(component);
        self
    }

    /// Covers components by name (derived components or header fields, no parameters).
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] for a name that is not lowercase visible ASCII.
    pub fn cover_names(mut self, names: &[&str]) -> Result<Self, Error> {
        for n in names {
            self.components.push(Component::new(n)?);
        }
        Ok(self)
    }

    fn param(mut self, name: &'static str, value: ParamValue) -> Self {
        self.params.retain(|(n, _)| *n != name);
        self.params.push((name, value));
        self
    }

    /// `created`, Unix seconds.
    #[must_use]
    pub fn created(self, unix_secs: u64) -> Self {
        self.param("created", ParamValue::Int(unix_secs))
    }

    /// `expires`, Unix seconds.
    #[must_use]
    pub fn expires(self, unix_secs: u64) -> Self {
        self.param("expires", ParamValue::Int(unix_secs))
    }

    /// `nonce`.
    #[must_use]
    pub fn nonce(self, nonce: impl Into<String>) -> Self {
        self.param("nonce", ParamValue::Str(nonce.into()))
    }

    /// `alg`, from the key that will sign.
    #[must_use]
    pub fn alg(self, key: &SigningKey) -> Self {
        self.param("alg", ParamValue::Str(key.algorithm().name().to_owned()))
    }

    /// `keyid`.
    #[must_use]
    pub fn keyid(self, keyid: impl Into<String>) -> Self {
        self.param("keyid", ParamValue::Str(keyid.into()))
    }

    /// `tag`.
    #[must_use]
    pub fn tag(self, tag: impl Into<String>) -> Self {
        self.param("tag", ParamValue::Str(tag.into()))
    }

    /// The label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The covered components.
    pub fn components(&self) -> &[Component] {
        &self.components
    }
}

/// A signature made over a message, ready to be added to it.
#[derive(Debug, Clone)]
pub struct Signature {
    label: String,
    params_value: String,
    value: Vec<u8>,
    base: Vec<u8>,
}

impl Signature {
    /// The `Signature-Input` dictionary member: `label=("@method" ...);created=...`.
    pub fn input_member(&self) -> String {
        format!("{}={}", self.label, self.params_value)
    }

    /// The `Signature` dictionary member: `label=:base64:`.
    pub fn signature_member(&self) -> String {
        format!("{}=:{}:", self.label, Base64::encode_string(&self.value))
    }

    /// The raw signature bytes.
    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// The signature base that was signed.
    pub fn base(&self) -> &[u8] {
        &self.base
    }

    /// Adds the signature to `headers`, as new `Signature-Input` and `Signature` field lines
    /// (which join any existing ones as dictionary members).
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] if a value is not a valid header value (it always is).
    pub fn apply(&self, headers: &mut HeaderMap) -> Result<(), Error> {
        let input = HeaderValue::from_str(&self.input_member())
            .map_err(|_| Error::Malformed("signature-input is not a header value"))?;
        let sig = HeaderValue::from_str(&self.signature_member())
            .map_err(|_| Error::Malformed("signature is not a header value"))?;
        headers.append("signature-input", input);
        headers.append("signature", sig);
        Ok(())
    }
}

/// Signs `message` as `spec` says, with `key`.
///
/// ```
/// use vouch_httpsig::{RequestView, SignatureSpec, SigningKey, sign};
/// # fn main() -> Result<(), vouch_httpsig::Error> {
/// let key = SigningKey::ed25519_from_seed(&[7; 32])?;
/// let request = http::Request::post("https://mcp.example/mcp").body(b"{}".to_vec()).unwrap();
/// let spec = SignatureSpec::new("sig1")
///     .cover_names(&["@method", "@target-uri"])?
///     .created(1_700_000_000)
///     .keyid("agent-a");
/// let signature = sign(RequestView::of(&request), &spec, &key)?;
/// assert!(signature.input_member().starts_with("sig1=(\"@method\" \"@target-uri\")"));
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// [`Error::ComponentUnavailable`] if a covered component is absent, [`Error::Key`] if signing
/// fails, [`Error::Malformed`] for an invalid parameter value, or for a field covered with `;key`
/// or `;sf` that names the covered member (or a parameter in it) twice: the verifier would read
/// the last one, and another reader may read the first.
pub fn sign<'a>(
    message: impl Into<Message<'a>>,
    spec: &SignatureSpec,
    key: &SigningKey,
) -> Result<Signature, Error> {
    let message = message.into();
    let params_value = params_value(&spec.components, &spec.params)?;
    let base = signature_base(&message, &spec.components, &params_value)?;
    let value = key.sign(&base)?;
    Ok(Signature {
        label: spec.label.clone(),
        params_value,
        value,
        base,
    })
}

/// A fresh random nonce: 16 bytes, base64url without padding.
///
/// # Errors
///
/// [`Error::Key`] if the system random number generator fails.
pub fn random_nonce() -> Result<String, Error> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Key("random number generator failed"))?;
    Ok(Base64UrlUnpadded::encode_string(&bytes))
}

/// The `Content-Digest` vouch's profiles send for `body` (sha-256).
pub fn mcp_content_digest(body: &[u8]) -> String {
    content_digest(body, &[DigestAlgorithm::Sha256])
}

/// The [`SignatureSpec`] of vouch's MCP profile for `request`: label `sig1`, covering `@method`,
/// `@target-uri`, `content-digest` when the request has a body, and `authorization`,
/// `mcp-session-id`, `mcp-protocol-version`, the token header, `mcp-method`, `mcp-name` and
/// every `mcp-param-*` header (in name order) when present; parameters `created`, `nonce`,
/// `alg`, `keyid`.
///
/// The request must already carry its `Content-Digest` if it has a body (see
/// [`mcp_content_digest`]).
///
/// # Errors
///
/// As [`random_nonce`].
pub fn mcp_spec(
    request: &RequestView<'_>,
    key: &SigningKey,
    keyid: &str,
    token_header: Option<&str>,
    created: u64,
) -> Result<SignatureSpec, Error> {
    let mut spec = SignatureSpec::new("sig1").cover_names(&["@method", "@target-uri"])?;
    if !request.body().is_empty() || request.headers().contains_key("content-digest") {
        spec = spec.cover(Component::new("content-digest")?);
    }
    let token = token_header.unwrap_or(DEFAULT_TOKEN_HEADER);
    for h in [
        "authorization",
        "mcp-session-id",
        "mcp-protocol-version",
        token,
        MCP_METHOD,
        MCP_NAME,
    ] {
        if request.headers().contains_key(h) {
            spec = spec.cover(Component::new(&h.to_ascii_lowercase())?);
        }
    }
    let mut params: Vec<&str> = request
        .headers()
        .keys()
        .map(http::HeaderName::as_str)
        .filter(|h| h.starts_with(MCP_PARAM_PREFIX))
        .collect();
    params.sort_unstable();
    for h in params {
        spec = spec.cover(Component::new(h)?);
    }
    Ok(spec
        .created(created)
        .nonce(random_nonce()?)
        .alg(key)
        .keyid(keyid))
}

/// The [`SignatureSpec`] of vouch's response profile for `response`, which answers a request
/// signed under `request_label` (RFC 9421 §2.4): label [`RESPONSE_LABEL`], covering `@status`,
/// `content-type`, `content-digest` and `mcp-session-id` when the response carries them, and
/// the request's `@method;req`, `@target-uri;req` and `"signature";req;key="<request_label>"`;
/// parameters `created`, `alg`, `keyid`.
///
/// The response must already carry its `Content-Digest` ([`mcp_content_digest`] of the body),
/// unless it is an event stream (`Content-Type: text/event-stream`), which is signed over its
/// head only: [`VerifyPolicy::mcp_response`](crate::VerifyPolicy::mcp_response) refuses any
/// other response without one. Sign it with [`ResponseView::with_request`] giving the request
/// as verified (with the scheme and authority the client used).
///
/// ```
/// use vouch_httpsig::*;
/// # fn main() -> Result<(), Error> {
/// # let client = SigningKey::ed25519_from_seed(&[7; 32])?;
/// # let now = 1_700_000_000;
/// # let mut request = http::Request::post("https://mcp.example/mcp").body(Vec::new()).unwrap();
/// # let spec = mcp_spec(&RequestView::of(&request), &client, "agent-a", None, now)?;
/// # sign(RequestView::of(&request), &spec, &client)?.apply(request.headers_mut())?;
/// let server = SigningKey::ed25519_from_seed(&[9; 32])?;
/// let body = br#"{"jsonrpc":"2.0","id":1,"result":{}}"#;
/// let mut response = http::Response::builder()
///     .header("content-type", "application/json")
///     .header("content-digest", mcp_content_digest(body))
///     .body(())
///     .unwrap()
///     .into_parts()
///     .0;
/// let view = ResponseView::new(&response, body).with_request(RequestView::of(&request));
/// let spec = mcp_response_spec(&view, &server, "mcp.example", "sig1", now)?;
/// sign(view, &spec, &server)?.apply(&mut response.headers)?;
///
/// // The client, with the request it sent:
/// let view = ResponseView::new(&response, body).with_request(RequestView::of(&request));
/// Verifier::new(VerifyPolicy::mcp_response("sig1"))
///     .prepare(view, now)?
///     .verify(&server.verifying_key()?)?;
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// [`Error::Malformed`] if `request_label` is not a valid sf-string.
pub fn mcp_response_spec(
    response: &ResponseView<'_>,
    key: &SigningKey,
    keyid: &str,
    request_label: &str,
    created: u64,
) -> Result<SignatureSpec, Error> {
    let mut spec = SignatureSpec::new(RESPONSE_LABEL).cover(Component::new("@status")?);
    for h in ["content-type", "content-digest", "mcp-session-id"] {
        if response.headers.contains_key(h) {
            spec = spec.cover(Component::new(h)?);
        }
    }
    Ok(spec
        .cover(Component::of_request("@method")?)
        .cover(Component::of_request("@target-uri")?)
        .cover(Component::request_dictionary_member(
            "signature",
            request_label,
        )?)
        .created(created)
        .alg(key)
        .keyid(keyid))
}

/// The [`SignatureSpec`] the Python `envoys` 0.3.0 client uses: label `sig1`, covering `@method`,
/// `@path` and `content-digest`, parameters `keyid`, `created`, `nonce`.
///
/// # Errors
///
/// As [`random_nonce`].
pub fn envoys_spec(keyid: &str, created: u64) -> Result<SignatureSpec, Error> {
    Ok(SignatureSpec::new("sig1")
        .cover_names(&["@method", "@path", "content-digest"])?
        .keyid(keyid)
        .created(created)
        .nonce(random_nonce()?))
}

/// The [`SignatureSpec`] of SEP-2752 (RFC 9421 proof-of-possession client authentication for
/// MCP) for `request`: label `sig1`, covering `@method`, `@target-uri`, `content-digest` (on
/// every request, empty bodies included), and `mcp-protocol-version`, `mcp-session-id` and
/// the token header (`x-mcpvault-token`, which [`VerifyPolicy::sep2752`](crate::VerifyPolicy::sep2752) requires covered) when
/// present (an `initialize` request has no session yet, so it covers none); parameters
/// `created`, `nonce` (16 random bytes), `keyid` (the key's RFC 7638 JWK thumbprint) and `tag`
/// (the client's stable identifier: on first contact, SEP-2752 §2.2 has it equal the keyid).
/// No `alg`: SEP-2752 forbids it.
///
/// The request must already carry its `Content-Digest` (see [`mcp_content_digest`]), even for
/// an empty body.
///
/// ```
/// use vouch_httpsig::*;
/// # fn main() -> Result<(), Error> {
/// let key = SigningKey::ed25519_from_seed(&[7; 32])?;
/// let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#.to_vec();
/// let mut request = http::Request::post("https://mcp.example/mcp")
///     .header("content-digest", mcp_content_digest(&body))
///     .header("mcp-protocol-version", "2026-03-26")
///     .body(body)
///     .unwrap();
/// let now = 1_700_000_000;
/// let spec = sep2752_spec(&RequestView::of(&request), &key, None, now)?;
/// sign(RequestView::of(&request), &spec, &key)?.apply(request.headers_mut())?;
///
/// let prepared = Verifier::new(VerifyPolicy::sep2752()).prepare(RequestView::of(&request), now)?;
/// let thumbprint = key.verifying_key()?.jwk_thumbprint();
/// assert_eq!(prepared.keyid(), thumbprint.as_deref());
/// prepared.verify(&key.verifying_key()?)?;
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// [`Error::Key`] for a key without a JWK thumbprint here (RSA, HMAC: SEP-2752 allows neither),
/// or as [`random_nonce`].
pub fn sep2752_spec(
    request: &RequestView<'_>,
    key: &SigningKey,
    tag: Option<&str>,
    created: u64,
) -> Result<SignatureSpec, Error> {
    let keyid = key
        .verifying_key()?
        .jwk_thumbprint()
        .ok_or(Error::Key("SEP-2752 needs an ed25519 or ECDSA key"))?;
    let mut spec =
        SignatureSpec::new("sig1").cover_names(&["@method", "@target-uri", "content-digest"])?;
    // The token header too: VerifyPolicy::sep2752 requires a capability token bound to the
    // request it rides on (SEP-2752 clients send none; vouch clients may).
    for h in [
        "mcp-protocol-version",
        "mcp-session-id",
        crate::policy::DEFAULT_TOKEN_HEADER,
    ] {
        if request.headers().contains_key(h) {
            spec = spec.cover(Component::new(h)?);
        }
    }
    let tag = tag.map_or_else(|| keyid.clone(), str::to_owned);
    Ok(spec
        .created(created)
        .nonce(random_nonce()?)
        .keyid(keyid)
        .tag(tag))
}
