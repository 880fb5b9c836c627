//! `vouch.Signer`: signs HTTP requests (RFC 9421) the way vouch's Rust clients do.
//!
//! The key is parsed by `vouch-keys` (PKCS#8 PEM, JWK with `d`, MCPVault's JSON key file) or
//! read as MCPVault's 64 hex digits of the Ed25519 seed; the components and parameters come
//! from `vouch-httpsig`'s profile specs, assembled in the order `vouch sign` uses, so a request
//! signed here with a fixed `created` and `nonce` carries the very bytes `vouch sign` would add.
//! The `Mcp-Method` / `Mcp-Name` headers of a JSON-RPC POST come from
//! [`vouch_httpsig::mcp::request_headers`], as vouch-reqwest's middleware adds them.

use base64ct::{Base64UrlUnpadded, Encoding};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};
use ring::rand::{SecureRandom, SystemRandom};
use vouch_httpsig::{
    Component, DEFAULT_TOKEN_HEADER, DigestAlgorithm, RequestView, SignatureSpec, SigningKey,
    envoys_spec, mcp, mcp_content_digest, mcp_spec, sep2752_spec, sign, verify_content_digest,
};
use vouch_token::KeyPair;
use zeroize::Zeroizing;

use crate::claims::unsigned;

/// The label of every signature made here (the envoys verifier requires it).
const LABEL: &str = "sig1";
/// Bounds of the random nonce, in bytes (SEP-2752 requires at least 96 bits).
const NONCE_BYTES: std::ops::RangeInclusive<u64> = 12..=64;
/// The default nonce size, as `vouch sign` and vouch-reqwest.
const DEFAULT_NONCE_BYTES: u64 = 16;

/// The signing profiles a Python client may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Profile {
    /// vouch's MCP profile (`VerifyPolicy::mcp`).
    Mcp,
    /// The Python envoys 0.3.0 client's profile (`VerifyPolicy::envoys`).
    Envoys,
    /// SEP-2752 (`VerifyPolicy::sep2752`).
    Sep2752,
}

impl Profile {
    fn parse(name: &str) -> PyResult<Self> {
        match name {
            "mcp" => Ok(Self::Mcp),
            "envoys" => Ok(Self::Envoys),
            "sep2752" => Ok(Self::Sep2752),
            "web-bot-auth" => Err(PyValueError::new_err(
                "profile: web-bot-auth is not offered by Signer (it signs for a published key \
                 directory, not an MCP server); use \"mcp\", \"envoys\" or \"sep2752\"",
            )),
            other => Err(PyValueError::new_err(format!(
                "profile: unknown {other:?}; use \"mcp\", \"envoys\" or \"sep2752\""
            ))),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Mcp => "mcp",
            Self::Envoys => "envoys",
            Self::Sep2752 => "sep2752",
        }
    }

    /// Whether every request carries a Content-Digest, empty bodies included.
    fn digest_always(self) -> bool {
        !matches!(self, Self::Mcp)
    }
}

fn value_error(what: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(what.to_string())
}

/// 32 bytes from exactly 64 hex digits (either case), or `None`.
fn hex_seed(s: &str) -> Option<Zeroizing<[u8; 32]>> {
    if s.len() != 64 {
        return None;
    }
    let mut out = Zeroizing::new([0u8; 32]);
    for (byte, pair) in out.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
        let [hi, lo] = pair else { return None };
        let hi = char::from(*hi).to_digit(16)?;
        let lo = char::from(*lo).to_digit(16)?;
        *byte = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

/// A private key from PEM, JWK (JSON text) or the MCPVault forms (64 hex digits of the seed, or
/// the JSON key file). Surrounding whitespace is ignored; anything else that is not one of
/// these is refused, with what is wrong.
fn parse_key_text(text: &str) -> PyResult<KeyPair> {
    let trimmed = text.trim();
    if trimmed.starts_with('{') {
        // Say plainly when a JWK has no private half; vouch-keys' message is about any JSON.
        let value: serde_json::Value = serde_json::from_str(trimmed)
            .map_err(|_| value_error("key: not valid JSON (expected a JWK with \"d\")"))?;
        if value.get("d").is_none() && value.get("private_key").is_none() {
            return Err(value_error(
                "key: the JWK has no \"d\": it is a public key, which cannot sign",
            ));
        }
    }
    if trimmed.starts_with("-----BEGIN") || trimmed.starts_with('{') {
        return vouch_keys::parse_private(trimmed).map_err(|e| match e {
            vouch_keys::Error::Format(why) => value_error(format!("key: {why}")),
            other => value_error(format!("key: {other}")),
        });
    }
    if let Some(seed) = hex_seed(trimmed) {
        return KeyPair::from_seed(&seed).map_err(|e| value_error(format!("key: {e}")));
    }
    if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(value_error(format!(
            "key: hex must be exactly 64 digits (the 32-byte Ed25519 seed), not {}",
            trimmed.len()
        )));
    }
    Err(value_error(
        "key: not a PKCS#8 PEM, a JWK with \"d\", or 64 hex digits of an Ed25519 seed",
    ))
}

fn parse_key(key: &Bound<'_, PyAny>) -> PyResult<KeyPair> {
    if let Ok(dict) = key.cast::<PyDict>() {
        let json = key.py().import("json")?.getattr("dumps")?;
        let text: Zeroizing<String> = Zeroizing::new(json.call1((dict,))?.extract()?);
        return parse_key_text(&text);
    }
    let text = key.cast::<PyString>().map_err(|_| {
        PyTypeError::new_err("key must be a str (PEM, JWK JSON or 64 hex digits) or a dict (JWK)")
    })?;
    parse_key_text(text.to_str()?)
}

/// A signature parameter string (keyid, tag): non-empty visible ASCII and spaces, as an
/// RFC 9651 sf-string allows.
fn param_string(value: &str, what: &str) -> PyResult<()> {
    if value.is_empty() || !value.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(value_error(format!(
            "{what}: must be non-empty printable ASCII"
        )));
    }
    Ok(())
}

/// `str` or `bytes` as bytes.
fn text_or_bytes(v: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<u8>> {
    if let Ok(b) = v.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(s.to_str()?.as_bytes().to_vec());
    }
    Err(PyTypeError::new_err(format!("{what} must be str or bytes")))
}

/// The header fields as given: a mapping (its `items()`), or an iterable of `(name, value)`
/// pairs such as `httpx.Headers.raw`.
fn header_pairs(headers: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<(Vec<u8>, Vec<u8>)>> {
    let Some(headers) = headers else {
        return Ok(Vec::new());
    };
    let items = if headers.hasattr("items")? {
        headers.call_method0("items")?
    } else {
        headers.clone()
    };
    let mut out = Vec::new();
    for pair in items.try_iter()? {
        let pair = pair?;
        let (name, value): (Bound<'_, PyAny>, Bound<'_, PyAny>) = pair
            .extract()
            .map_err(|_| PyTypeError::new_err("headers: each item must be a (name, value) pair"))?;
        out.push((
            text_or_bytes(&name, "a header name")?,
            text_or_bytes(&value, "a header value")?,
        ));
    }
    Ok(out)
}

/// Why a request was not signed.
enum Refused {
    /// The caller's request or arguments (ValueError).
    Usage(String),
    /// The system random number generator failed (RuntimeError).
    Random,
}

impl From<Refused> for PyErr {
    fn from(r: Refused) -> Self {
        match r {
            Refused::Usage(why) => PyValueError::new_err(why),
            Refused::Random => PyRuntimeError::new_err("the system random number generator failed"),
        }
    }
}

fn usage(what: impl std::fmt::Display) -> Refused {
    Refused::Usage(what.to_string())
}

fn signing_error(e: vouch_httpsig::Error) -> Refused {
    usage(format!("cannot sign: {e}"))
}

/// What one call to `sign` was given, owned, so that the signing runs without the GIL.
struct Request<'a> {
    method: String,
    url: String,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: &'a [u8],
    created: u64,
    nonce: Option<String>,
    token_header: Option<String>,
}

/// Signs HTTP requests with one Ed25519 key under one profile (RFC 9421).
///
/// `Signer(key, keyid=None, profile="mcp", *, tag=None, expires_in=None, nonce_bytes=16)`. The
/// key is a PKCS#8 PEM, a JWK with `d` (JSON text or a dict), MCPVault's JSON key file, or 64
/// hex digits of the Ed25519 seed. The seed is wiped from Rust memory when the signer is
/// dropped; the Python string you passed cannot be.
#[pyclass(frozen, module = "vouch._vouch", name = "Signer")]
pub(crate) struct Signer {
    key: SigningKey,
    keyid: String,
    profile: Profile,
    tag: Option<String>,
    expires_in: Option<u64>,
    nonce_bytes: usize,
    public_hex: String,
    thumbprint: String,
}

#[pymethods]
impl Signer {
    #[new]
    #[pyo3(signature = (key, keyid=None, profile="mcp", *, tag=None, expires_in=None, nonce_bytes=None))]
    fn new(
        key: &Bound<'_, PyAny>,
        keyid: Option<String>,
        profile: &str,
        tag: Option<String>,
        expires_in: Option<&Bound<'_, PyAny>>,
        nonce_bytes: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let profile = Profile::parse(profile)?;
        let pair = parse_key(key)?;
        let public = pair.public_key();
        let thumbprint = vouch_keys::jwk_thumbprint(&public);
        let keyid = match (profile, keyid) {
            (Profile::Sep2752, None) => thumbprint.clone(),
            (Profile::Sep2752, Some(k)) if k != thumbprint => {
                return Err(value_error(format!(
                    "keyid: SEP-2752 requires the key's JWK thumbprint {thumbprint:?}, not {k:?}"
                )));
            }
            (_, Some(k)) => k,
            (p, None) => {
                return Err(value_error(format!(
                    "keyid: required for profile {:?}",
                    p.name()
                )));
            }
        };
        param_string(&keyid, "keyid")?;
        if let Some(t) = &tag {
            param_string(t, "tag")?;
        }
        let expires_in = expires_in.map(|e| unsigned(e, "expires_in")).transpose()?;
        if expires_in == Some(0) {
            return Err(value_error("expires_in: must be at least 1 second"));
        }
        let nonce_bytes = nonce_bytes
            .map(|n| unsigned(n, "nonce_bytes"))
            .transpose()?
            .unwrap_or(DEFAULT_NONCE_BYTES);
        if !NONCE_BYTES.contains(&nonce_bytes) {
            return Err(value_error(format!(
                "nonce_bytes: must be from {} to {}",
                NONCE_BYTES.start(),
                NONCE_BYTES.end()
            )));
        }
        let key = SigningKey::ed25519_from_seed(pair.seed()).map_err(value_error)?;
        Ok(Self {
            key,
            keyid,
            profile,
            tag,
            expires_in,
            nonce_bytes: usize::try_from(nonce_bytes).map_err(value_error)?,
            public_hex: public.to_hex(),
            thumbprint,
        })
    }

    /// The `keyid` every signature carries.
    #[getter]
    fn keyid(&self) -> &str {
        &self.keyid
    }

    /// The profile: `"mcp"`, `"envoys"` or `"sep2752"`.
    #[getter]
    fn profile(&self) -> &'static str {
        self.profile.name()
    }

    /// The Ed25519 public key, 64 hex digits: what a server is told for this keyid.
    #[getter]
    fn public_key(&self) -> &str {
        &self.public_hex
    }

    /// The RFC 7638 JWK thumbprint of the public key (SEP-2752's keyid).
    #[getter]
    fn jwk_thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// Signs one request and returns the header fields to add to it, in order: `Content-Digest`
    /// (over the exact `body` bytes, when the profile wants one and the request has none),
    /// `Mcp-Method` / `Mcp-Name` (mcp profile, a JSON-RPC POST that lacks them), then
    /// `Signature-Input` and `Signature`. `created` (Unix seconds) and `nonce` default to now
    /// and a fresh random value; set them only to reproduce a signature. `token_header` names
    /// the header the capability token travels in (default `X-MCPVault-Token`), covered when
    /// present. The GIL is released while signing.
    #[pyo3(signature = (method, url, headers=None, body=None, *, created=None, nonce=None, token_header=None))]
    #[allow(
        clippy::too_many_arguments,
        reason = "Python keyword arguments, not a Rust API"
    )]
    fn sign(
        &self,
        py: Python<'_>,
        method: String,
        url: String,
        headers: Option<&Bound<'_, PyAny>>,
        body: Option<&[u8]>,
        created: Option<&Bound<'_, PyAny>>,
        nonce: Option<String>,
        token_header: Option<String>,
    ) -> PyResult<Vec<(String, String)>> {
        if let Some(n) = &nonce {
            param_string(n, "nonce")?;
        }
        let request = Request {
            method,
            url,
            headers: header_pairs(headers)?,
            body: body.unwrap_or_default(),
            created: match created {
                Some(c) => unsigned(c, "created")?,
                None => crate::unix_now(),
            },
            nonce,
            token_header,
        };
        Ok(py.detach(|| self.sign_request(request))?)
    }

    fn __repr__(&self) -> String {
        format!(
            "Signer(keyid={:?}, profile={:?})",
            self.keyid,
            self.profile.name()
        )
    }
}

impl Signer {
    fn fresh_nonce(&self) -> Result<String, Refused> {
        let mut bytes = Zeroizing::new(vec![0u8; self.nonce_bytes]);
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| Refused::Random)?;
        Ok(Base64UrlUnpadded::encode_string(&bytes))
    }

    fn sign_request(&self, r: Request<'_>) -> Result<Vec<(String, String)>, Refused> {
        let method = Method::from_bytes(r.method.as_bytes())
            .map_err(|_| usage(format!("method: {:?} is not an HTTP method", r.method)))?;
        let uri: Uri = r
            .url
            .parse()
            .map_err(|_| usage(format!("url: {:?} is not a valid URL", r.url)))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
            return Err(usage(format!(
                "url: {:?} is not an absolute http(s) URL",
                r.url
            )));
        }
        let token_header = match &r.token_header {
            None => HeaderName::from_static(DEFAULT_TOKEN_HEADER),
            Some(h) => HeaderName::from_bytes(h.as_bytes())
                .map_err(|_| usage(format!("token_header: {h:?} is not a header name")))?,
        };
        let mut headers = HeaderMap::new();
        for (name, value) in &r.headers {
            let n = HeaderName::from_bytes(name).map_err(|_| {
                usage(format!(
                    "headers: {:?} is not a header name",
                    String::from_utf8_lossy(name)
                ))
            })?;
            let v = HeaderValue::from_bytes(value)
                .map_err(|_| usage(format!("headers: the value of {n} is not a header value")))?;
            headers.append(n, v);
        }
        if label_taken(&headers) {
            return Err(usage(
                "headers: the request is already signed (a Signature-Input member sig1); \
                 remove Signature and Signature-Input to sign it again",
            ));
        }
        let mut added: Vec<(String, String)> = Vec::new();
        self.content_digest(&mut headers, r.body, &mut added)?;
        if self.profile == Profile::Mcp && method == Method::POST {
            for (name, value) in mcp::request_headers(r.body) {
                if !headers.contains_key(&name) {
                    added.push((display_name(&name), text(&value)));
                    headers.insert(name, value);
                }
            }
        }
        let view = RequestView::from_parts(&method, &uri, &headers, r.body);
        let covered: Vec<Component> = match self.profile {
            Profile::Mcp => {
                let spec = mcp_spec(
                    &view,
                    &self.key,
                    &self.keyid,
                    Some(token_header.as_str()),
                    r.created,
                )
                .map_err(signing_error)?;
                let mut covered = spec.components().to_vec();
                // A token in the default header must be covered too when another one is named:
                // the MCP policy requires it whenever present.
                if token_header != DEFAULT_TOKEN_HEADER
                    && headers.contains_key(DEFAULT_TOKEN_HEADER)
                {
                    covered.push(Component::new(DEFAULT_TOKEN_HEADER).map_err(signing_error)?);
                }
                covered
            }
            Profile::Envoys => envoys_spec(&self.keyid, r.created)
                .map_err(signing_error)?
                .components()
                .to_vec(),
            Profile::Sep2752 => {
                let spec = sep2752_spec(&view, &self.key, self.tag.as_deref(), r.created)
                    .map_err(signing_error)?;
                let mut covered = spec.components().to_vec();
                // vouch's SEP-2752 policy binds a capability token whenever one is sent.
                for h in [DEFAULT_TOKEN_HEADER, token_header.as_str()] {
                    if headers.contains_key(h) && !covered.iter().any(|c| c.name() == h) {
                        covered.push(Component::new(h).map_err(signing_error)?);
                    }
                }
                covered
            }
        };
        let nonce = match r.nonce {
            Some(n) => n,
            None => self.fresh_nonce()?,
        };
        // The parameters in `vouch sign`'s order: envoys puts keyid first; SEP-2752 has no alg
        // and a tag (by default the keyid).
        let envoys = self.profile == Profile::Envoys;
        let mut spec = covered
            .into_iter()
            .fold(SignatureSpec::new(LABEL), SignatureSpec::cover);
        if envoys {
            spec = spec.keyid(&self.keyid);
        }
        spec = spec.created(r.created);
        if let Some(e) = self.expires_in {
            spec = spec.expires(r.created.saturating_add(e));
        }
        spec = spec.nonce(nonce);
        if self.profile == Profile::Mcp {
            spec = spec.alg(&self.key);
        }
        if !envoys {
            spec = spec.keyid(&self.keyid);
        }
        match (&self.tag, self.profile) {
            (Some(t), _) => spec = spec.tag(t),
            (None, Profile::Sep2752) => spec = spec.tag(&self.keyid),
            (None, _) => {}
        }
        let signature = sign(view, &spec, &self.key).map_err(signing_error)?;
        added.push(("Signature-Input".to_owned(), signature.input_member()));
        added.push(("Signature".to_owned(), signature.signature_member()));
        Ok(added)
    }

    /// Adds the Content-Digest the profile wants, or checks the one the request has.
    fn content_digest(
        &self,
        headers: &mut HeaderMap,
        body: &[u8],
        added: &mut Vec<(String, String)>,
    ) -> Result<(), Refused> {
        let mut lines = headers.get_all("content-digest").iter();
        match (lines.next(), lines.next()) {
            (Some(_), Some(_)) => Err(usage(
                "headers: more than one Content-Digest line; give one, or none to have it made",
            )),
            (Some(value), None) => verify_content_digest(
                value.as_bytes(),
                body,
                &[DigestAlgorithm::Sha256, DigestAlgorithm::Sha512],
            )
            .map_err(|e| {
                usage(format!(
                    "headers: the request's Content-Digest does not fit the body ({e}); \
                     remove it to have it made"
                ))
            }),
            (None, _) if self.profile.digest_always() || !body.is_empty() => {
                let digest = mcp_content_digest(body);
                let value = HeaderValue::from_str(&digest).map_err(|_| usage("digest"))?;
                headers.insert("content-digest", value);
                added.push(("Content-Digest".to_owned(), digest));
                Ok(())
            }
            (None, _) => Ok(()),
        }
    }
}

/// True when a `Signature-Input` of the request already has a member labelled [`LABEL`].
fn label_taken(headers: &HeaderMap) -> bool {
    headers
        .get_all("signature-input")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|member| member.trim_start().split('=').next() == Some(LABEL))
}

/// `Mcp-Method` for `mcp-method`: the capitalization the MCP specification writes.
fn display_name(name: &HeaderName) -> String {
    match name.as_str() {
        mcp::MCP_METHOD => "Mcp-Method".to_owned(),
        mcp::MCP_NAME => "Mcp-Name".to_owned(),
        other => other.to_owned(),
    }
}

/// A header value this module made (always visible ASCII) as text.
fn text(value: &HeaderValue) -> String {
    String::from_utf8_lossy(value.as_bytes()).into_owned()
}
