//! Python bindings for vouch's capability tokens: the native half of the `vouch` package.
//!
//! Every decode, signature check and attenuation rule runs in [`vouch_token`]; this crate only
//! converts Python values to its builders and its results back to Python. The Python package
//! (`python/vouch/__init__.py`) re-exports these functions and the exceptions.
//!
//! Errors follow the seed's (MCPVault's) table: a missing token is `MissingToken` (401,
//! `missing_token`), any failure of the token itself `InvalidToken` (401, `invalid_token`), a
//! sound token that does not grant the request `Forbidden` (403, `forbidden`). Mistakes in the
//! caller's own inputs (a bad key, an unknown claim, a refused attenuation) are `ValueError`.

#![forbid(unsafe_code)]

mod claims;
mod errors;
mod gate;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use vouch_token::{Access, Error, KeyPair, PublicKey, Token, Verifier};
use zeroize::Zeroizing;

use crate::errors::{Forbidden, InvalidToken, MissingToken, VouchError, to_py};

/// Length of an Ed25519 seed or public key in hex.
const KEY_HEX_LEN: usize = 64;

/// Decodes exactly 64 hex digits (either case) into 32 bytes, or says what is wrong.
fn key_bytes(s: &str, what: &str) -> PyResult<Zeroizing<[u8; 32]>> {
    let bad = || pyo3::exceptions::PyValueError::new_err(format!("{what}: expected 64 hex digits"));
    if s.len() != KEY_HEX_LEN {
        return Err(bad());
    }
    let mut out = Zeroizing::new([0u8; 32]);
    for (byte, pair) in out.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
        let [hi, lo] = pair else { return Err(bad()) };
        let hi = char::from(*hi).to_digit(16).ok_or_else(bad)?;
        let lo = char::from(*lo).to_digit(16).ok_or_else(bad)?;
        // Both digits are below 16, so the value fits a byte.
        *byte = u8::try_from(hi * 16 + lo).map_err(|_| bad())?;
    }
    Ok(out)
}

fn private_key(s: &str) -> PyResult<KeyPair> {
    let seed = key_bytes(s, "private key")?;
    KeyPair::from_seed(&seed).map_err(|e| to_py(&e))
}

fn public_key(s: &str) -> PyResult<PublicKey> {
    let bytes = key_bytes(s, "public key")?;
    let key = PublicKey::from_bytes(*bytes);
    if let Some(why) = key.weakness() {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "public key: {why}"
        )));
    }
    Ok(key)
}

/// Decodes a token for a verifier: a missing or empty one is `MissingToken`, anything else that
/// does not decode is `InvalidToken`.
fn received_token(token: Option<&str>) -> PyResult<Token> {
    match token {
        None | Some("") => Err(MissingToken::new_err("no token")),
        Some(text) => Token::from_base64(text).map_err(|e| to_py(&e)),
    }
}

/// Decodes a token handed in by its holder (to attenuate, seal or inspect).
fn held_token(token: &str) -> PyResult<Token> {
    Token::from_base64(token).map_err(|e| to_py(&e))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Turns a serializable result into Python objects through JSON (`json.loads`).
fn to_python<T: serde::Serialize>(py: Python<'_>, value: &T) -> PyResult<Py<PyAny>> {
    let text = serde_json::to_string(value)
        .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))?;
    let loads = py.import("json")?.getattr("loads")?;
    Ok(loads.call1((text,))?.unbind())
}

/// A fresh Ed25519 root key pair: `(private_hex, public_hex)`, the private half as its 32-byte
/// seed. Keep the private half secret; Python strings cannot be wiped from memory.
#[pyfunction]
fn generate_keypair(py: Python<'_>) -> PyResult<Bound<'_, PyTuple>> {
    let key = KeyPair::generate().map_err(|e| to_py(&e))?;
    let seed = Zeroizing::new(
        key.seed()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
    );
    PyTuple::new(py, [seed.as_str(), key.public_key().to_hex().as_str()])
}

/// Mints a root token with the private key (hex seed) and the claims; returns it in its
/// transport form (base64url).
#[pyfunction]
fn mint(private: &str, claims: &Bound<'_, PyDict>) -> PyResult<String> {
    let root = private_key(private)?;
    let c = claims::Claims::parse(claims, claims::Kind::Mint)?;
    let (issuer, subject) = (c.issuer.clone(), c.subject.clone());
    let restriction = c.restriction(Some(claims::DEFAULT_TTL));
    let token = Token::mint(
        &root,
        issuer.unwrap_or_else(|| claims::DEFAULT_ISSUER.into()),
        subject.unwrap_or_else(|| claims::DEFAULT_SUBJECT.into()),
        restriction,
    )
    .map_err(|e| to_py(&e))?;
    Ok(token.to_base64())
}

/// Narrows a token for a sub-agent. The token must verify under the root public key (hex) and
/// still be valid; the claims can only narrow it (a widening claim raises `ValueError`).
#[pyfunction]
fn attenuate(
    py: Python<'_>,
    token: &str,
    public: &str,
    claims: &Bound<'_, PyDict>,
) -> PyResult<String> {
    let parent = held_token(token)?;
    let root = public_key(public)?;
    let restriction = claims::Claims::parse(claims, claims::Kind::Attenuate)?.restriction(None);
    py.detach(move || {
        let verified = Verifier::new(root).check(&parent)?;
        if unix_now() >= verified.expires_at() {
            return Err(Error::Expired);
        }
        parent.attenuate(restriction)
    })
    .map(|t| t.to_base64())
    .map_err(|e| to_py(&e))
}

/// Seals a token: nobody can attenuate it further. No key is needed.
#[pyfunction]
fn seal(token: &str) -> PyResult<String> {
    let sealed = held_token(token)?.seal().map_err(|e| to_py(&e))?;
    Ok(sealed.to_base64())
}

/// Verifies a token against the root public key (hex) for one request, and returns the facts in
/// the seed's shape. The GIL is released while the signatures are checked.
#[pyfunction]
#[pyo3(signature = (token, public, *, tool=None, op=None, caller=None, audience=None, now=None))]
#[allow(
    clippy::too_many_arguments,
    reason = "Python keyword arguments, not a Rust API"
)]
fn verify(
    py: Python<'_>,
    token: Option<&str>,
    public: &str,
    tool: Option<String>,
    op: Option<String>,
    caller: Option<String>,
    audience: Option<String>,
    now: Option<&Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    let token = received_token(token)?;
    let root = public_key(public)?;
    let now = now.map(|n| claims::unsigned(n, "now")).transpose()?;
    if op.is_some() && tool.is_none() {
        return Err(pyo3::exceptions::PyValueError::new_err("op needs a tool"));
    }
    let facts = py
        .detach(move || {
            let mut verifier = Verifier::new(root);
            if let Some(audience) = audience {
                verifier = verifier.with_audience(audience);
            }
            let mut access = Access::at(now.unwrap_or_else(unix_now));
            if let Some(caller) = caller.as_deref() {
                access = access.caller(caller);
            }
            if let Some(tool) = tool.as_deref() {
                access = access.tool(tool);
            }
            if let Some(op) = op.as_deref() {
                access = access.operation(op);
            }
            verifier.verify(&token, &access)
        })
        .map_err(|e| to_py(&e))?;
    to_python(py, &facts)
}

/// What a token claims, block by block, with NO signature checked: for logs and debugging, never
/// for authorization.
#[pyfunction]
fn inspect(py: Python<'_>, token: &str) -> PyResult<Py<PyAny>> {
    let inspection = held_token(token)?.inspect().map_err(|e| to_py(&e))?;
    to_python(py, &inspection)
}

/// The native module, `vouch._vouch`.
#[pymodule]
fn _vouch(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_function(wrap_pyfunction!(generate_keypair, m)?)?;
    m.add_function(wrap_pyfunction!(mint, m)?)?;
    m.add_function(wrap_pyfunction!(attenuate, m)?)?;
    m.add_function(wrap_pyfunction!(seal, m)?)?;
    m.add_function(wrap_pyfunction!(verify, m)?)?;
    m.add_function(wrap_pyfunction!(inspect, m)?)?;
    m.add_class::<gate::Gate>()?;
    m.add_class::<gate::Pending>()?;
    m.add_class::<gate::Denied>()?;
    m.add_class::<gate::SigningStats>()?;
    m.add("VouchError", py.get_type::<VouchError>())?;
    m.add("MissingToken", py.get_type::<MissingToken>())?;
    m.add("InvalidToken", py.get_type::<InvalidToken>())?;
    m.add("Forbidden", py.get_type::<Forbidden>())?;
    errors::init(py)?;
    Ok(())
}
