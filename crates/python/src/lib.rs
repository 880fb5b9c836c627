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
mod signer;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use vouch_token::{Access, Error, Facts, KeyPair, PublicKey, Token, VerifiedToken, Verifier};
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

/// How many root keys' verifiers [`verifier`] keeps.
const VERIFIER_CACHE: usize = 16;

/// Verifiers of the root keys used last, most recent last: checking a key's point (decompression
/// and a torsion check, a scalar multiplication) costs more than verifying a block's signature,
/// and a server verifies every request under the same one or two keys. Only keys that passed
/// [`public_key`]'s checks are kept, so a hit needs none.
static VERIFIERS: Mutex<Vec<([u8; 32], Verifier)>> = Mutex::new(Vec::new());

/// The verifier for a root public key (hex): from the cache, or checked and added to it.
fn verifier(s: &str) -> PyResult<Verifier> {
    let bytes = key_bytes(s, "public key")?;
    // A panic elsewhere while holding the lock leaves the list whole (push and remove only).
    let mut cache = VERIFIERS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(at) = cache.iter().position(|(k, _)| *k == *bytes) {
        let entry = cache.remove(at);
        let found = entry.1.clone();
        cache.push(entry);
        return Ok(found);
    }
    drop(cache);
    let fresh = Verifier::new(public_key(s)?);
    let mut cache = VERIFIERS.lock().unwrap_or_else(PoisonError::into_inner);
    if cache.len() >= VERIFIER_CACHE {
        cache.remove(0);
    }
    cache.push((*bytes, fresh.clone()));
    Ok(fresh)
}

/// How many checked tokens [`CHECKED`] keeps.
const CHECKED_ENTRIES: usize = 512;
/// The longest token text [`CHECKED`] keeps (a typical token is 200 to 900 characters), so that
/// the cache stays under `CHECKED_ENTRIES` × 2 × 2 KiB of text.
const CHECKED_MAX_TEXT: usize = 2048;

/// Tokens whose signatures were checked, by root key and text, oldest first: as vouch-tower's
/// capability layer, `verify` does the crypto ([`Verifier::check`], which depends only on the
/// token's bytes and the root key) once per token and decides each request
/// ([`Verifier::authorize`]: expiry, audience, holder, tool, operation) every time.
#[derive(Default)]
struct Checked {
    tokens: BTreeMap<([u8; 32], String), Arc<VerifiedToken>>,
    order: VecDeque<([u8; 32], String)>,
}

impl Checked {
    fn get(&self, key: &[u8; 32], text: &str) -> Option<Arc<VerifiedToken>> {
        // The map is keyed by owned text; a lookup by (key, &str) would need a custom Borrow.
        self.tokens.get(&(*key, text.to_owned())).cloned()
    }

    fn insert(&mut self, key: [u8; 32], text: String, token: Arc<VerifiedToken>) {
        if text.len() > CHECKED_MAX_TEXT || self.tokens.contains_key(&(key, text.clone())) {
            return;
        }
        while self.order.len() >= CHECKED_ENTRIES {
            if let Some(old) = self.order.pop_front() {
                self.tokens.remove(&old);
            }
        }
        self.order.push_back((key, text.clone()));
        self.tokens.insert((key, text), token);
    }
}

static CHECKED: LazyLock<Mutex<Checked>> = LazyLock::new(Mutex::default);

/// A verifier's token: a missing or empty one is `MissingToken`.
fn received_text(token: Option<&str>) -> PyResult<&str> {
    match token {
        None | Some("") => Err(MissingToken::new_err("no token")),
        Some(text) => Ok(text),
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
    let verifier = verifier(public)?;
    let restriction = claims::Claims::parse(claims, claims::Kind::Attenuate)?.restriction(None);
    py.detach(move || {
        let verified = verifier.check(&parent)?;
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
fn verify<'py>(
    py: Python<'py>,
    token: Option<&str>,
    public: &str,
    tool: Option<String>,
    op: Option<String>,
    caller: Option<String>,
    audience: Option<String>,
    now: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let text = received_text(token)?;
    let key = key_bytes(public, "public key")?;
    let mut verifier = verifier(public)?;
    let now = now.map(|n| claims::unsigned(n, "now")).transpose()?;
    if op.is_some() && tool.is_none() {
        return Err(pyo3::exceptions::PyValueError::new_err("op needs a tool"));
    }
    let cached = CHECKED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key, text);
    let text = cached.is_none().then(|| text.to_owned());
    let facts = py
        .detach(move || {
            let checked = match (cached, text) {
                (Some(checked), _) => checked,
                (None, text) => {
                    let text = text.unwrap_or_default();
                    let checked = Arc::new(verifier.check(&Token::from_base64(&text)?)?);
                    CHECKED
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(*key, text, checked.clone());
                    checked
                }
            };
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
            verifier.authorize(&checked, &access)
        })
        .map_err(|e| to_py(&e))?;
    facts_dict(py, &facts)
}

/// The facts as a dict in the seed's shape, built directly (the same keys, order and values as
/// their JSON form, docs/token-format.md section 8, without a JSON round trip).
fn facts_dict<'py>(py: Python<'py>, facts: &Facts) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("tools", PyList::new(py, facts.tools())?)?;
    d.set_item("tool_wildcard", facts.tool_wildcard())?;
    let operations = facts
        .operations()
        .iter()
        .map(|(tool, op)| PyList::new(py, [tool.as_str(), op.as_str()]))
        .collect::<PyResult<Vec<_>>>()?;
    d.set_item("operations", PyList::new(py, operations)?)?;
    let limits = facts
        .resource_limits()
        .iter()
        .map(|(tool, key, value)| {
            PyList::new(
                py,
                [
                    tool.into_pyobject(py)?.into_any(),
                    key.into_pyobject(py)?.into_any(),
                    value.into_pyobject(py)?.into_any(),
                ],
            )
        })
        .collect::<PyResult<Vec<_>>>()?;
    d.set_item("resource_limits", PyList::new(py, limits)?)?;
    d.set_item("delegation_depth", facts.delegation_depth())?;
    d.set_item("issuer", facts.issuer())?;
    d.set_item("subject", facts.subject())?;
    d.set_item("expires_at", facts.expires_at())?;
    d.set_item("not_before", facts.not_before())?;
    d.set_item(
        "audience",
        facts.audience().map(|a| PyList::new(py, a)).transpose()?,
    )?;
    d.set_item("holder", facts.holder())?;
    let ids = facts.revocation_ids().iter().map(ToString::to_string);
    d.set_item("revocation_ids", PyList::new(py, ids)?)?;
    Ok(d)
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
    m.add_class::<signer::Signer>()?;
    m.add_class::<gate::Gate>()?;
    m.add_class::<gate::Pending>()?;
    m.add_class::<gate::Denied>()?;
    m.add_class::<gate::ToolsList>()?;
    m.add_class::<gate::SigningStats>()?;
    m.add("VouchError", py.get_type::<VouchError>())?;
    m.add("MissingToken", py.get_type::<MissingToken>())?;
    m.add("InvalidToken", py.get_type::<InvalidToken>())?;
    m.add("Forbidden", py.get_type::<Forbidden>())?;
    errors::init(py)?;
    Ok(())
}
