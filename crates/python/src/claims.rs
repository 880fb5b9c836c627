//! The claims dict (the seed's keys plus vouch's), read strictly into a [`Restriction`].
//!
//! Unknown keys, wrong types (a bare string where a list is expected, a bool where an integer is
//! expected) and negative numbers raise `ValueError`: a misspelt claim must not silently grant
//! more than intended.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyList, PyString, PyTuple};
use vouch_token::Restriction;

/// Lifetime of a minted token when the claims give neither `ttl` nor `expires_at` (as the CLI).
pub(crate) const DEFAULT_TTL: u64 = 3600;
/// Issuer of a minted token when the claims do not name one (as the CLI).
pub(crate) const DEFAULT_ISSUER: &str = "vouch";
/// Subject of a minted token when the claims do not name one (as the CLI).
pub(crate) const DEFAULT_SUBJECT: &str = "agent";

/// Which call the claims are for: only a root token has an issuer and a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Mint,
    Attenuate,
}

/// The claims, read and type-checked.
#[derive(Debug, Default)]
pub(crate) struct Claims {
    pub(crate) issuer: Option<String>,
    pub(crate) subject: Option<String>,
    tools: Option<Vec<String>>,
    ttl: Option<u64>,
    expires_at: Option<u64>,
    not_before: Option<u64>,
    operations: Vec<(String, Vec<String>)>,
    resource_limits: Vec<(String, String, u64)>,
    max_depth: Option<u8>,
    audience: Option<Vec<String>>,
    holder: Option<String>,
}

fn bad(key: &str, why: &str) -> PyErr {
    PyValueError::new_err(format!("{key}: {why}"))
}

fn string(v: &Bound<'_, PyAny>, key: &str) -> PyResult<String> {
    v.cast::<PyString>()
        .map_err(|_| bad(key, "expected a str"))?
        .to_str()
        .map(str::to_owned)
}

/// A list or tuple of str; a bare str is refused (it would be read as its characters).
fn strings(v: &Bound<'_, PyAny>, key: &str) -> PyResult<Vec<String>> {
    if !(v.is_instance_of::<PyList>() || v.is_instance_of::<PyTuple>()) {
        return Err(bad(key, "expected a list of str"));
    }
    v.try_iter()?
        .map(|item| string(&item?, key))
        .collect::<PyResult<Vec<_>>>()
}

/// A non-negative int that fits 64 bits; a bool is refused.
pub(crate) fn unsigned(v: &Bound<'_, PyAny>, key: &str) -> PyResult<u64> {
    if v.is_instance_of::<PyBool>() {
        return Err(bad(key, "expected an int, not a bool"));
    }
    if !v.is_instance_of::<pyo3::types::PyInt>() {
        return Err(bad(key, "expected an int"));
    }
    v.extract::<u64>()
        .map_err(|_| bad(key, "expected an int from 0 to 2**64-1"))
}

fn dict<'py>(v: &Bound<'py, PyAny>, key: &str) -> PyResult<Bound<'py, PyDict>> {
    v.cast::<PyDict>()
        .cloned()
        .map_err(|_| bad(key, "expected a dict"))
}

impl Claims {
    /// Reads the claims dict for `kind`.
    pub(crate) fn parse(claims: &Bound<'_, PyDict>, kind: Kind) -> PyResult<Self> {
        let mut c = Self::default();
        for (k, v) in claims.iter() {
            let key = k
                .cast::<PyString>()
                .map_err(|_| PyValueError::new_err("claims keys must be str"))?
                .to_str()?
                .to_owned();
            let key = key.as_str();
            match key {
                "issuer" | "subject" if kind == Kind::Attenuate => {
                    return Err(bad(key, "only a root token (mint) has one"));
                }
                "issuer" => c.issuer = Some(string(&v, key)?),
                "subject" => c.subject = Some(string(&v, key)?),
                "tools" => c.tools = Some(strings(&v, key)?),
                "ttl" => c.ttl = Some(unsigned(&v, key)?),
                "expires_at" => c.expires_at = Some(unsigned(&v, key)?),
                "not_before" => c.not_before = Some(unsigned(&v, key)?),
                "operations" => {
                    for (tool, ops) in dict(&v, key)?.iter() {
                        let tool = string(&tool, key)?;
                        let ops = strings(&ops, key)?;
                        if ops.is_empty() {
                            return Err(bad(key, "an operation list must not be empty"));
                        }
                        c.operations.push((tool, ops));
                    }
                }
                "resource_limits" => {
                    for (tool, limits) in dict(&v, key)?.iter() {
                        let tool = string(&tool, key)?;
                        for (name, value) in dict(&limits, key)?.iter() {
                            let name = string(&name, key)?;
                            let value = unsigned(&value, key)?;
                            c.resource_limits.push((tool.clone(), name, value));
                        }
                    }
                }
                "max_depth" => {
                    let depth = unsigned(&v, key)?;
                    let depth = u8::try_from(depth)
                        .ok()
                        .filter(|d| *d <= 15)
                        .ok_or_else(|| bad(key, "expected 0 to 15"))?;
                    c.max_depth = Some(depth);
                }
                "audience" => {
                    c.audience = Some(if v.is_instance_of::<PyString>() {
                        vec![string(&v, key)?]
                    } else {
                        strings(&v, key)?
                    });
                }
                "holder" => c.holder = Some(string(&v, key)?),
                other => {
                    return Err(PyValueError::new_err(format!(
                        "unknown claim {other:?} (known: tools, ttl, issuer, subject, \
                         operations, resource_limits, max_depth, audience, holder, expires_at, \
                         not_before)"
                    )));
                }
            }
        }
        Ok(c)
    }

    /// The restriction these claims state; `default_ttl` applies when neither `ttl` nor
    /// `expires_at` is given.
    pub(crate) fn restriction(self, default_ttl: Option<u64>) -> Restriction {
        let mut r = Restriction::new();
        if let Some(tools) = self.tools {
            r = r.tools(tools);
        }
        for (tool, ops) in self.operations {
            r = r.operations(tool, ops);
        }
        for (tool, key, value) in self.resource_limits {
            r = r.limit(tool, key, value);
        }
        match (self.ttl, self.expires_at, default_ttl) {
            (None, None, Some(ttl)) => r = r.ttl(ttl),
            (ttl, at, _) => {
                if let Some(ttl) = ttl {
                    r = r.ttl(ttl);
                }
                if let Some(at) = at {
                    r = r.expires_at(at);
                }
            }
        }
        if let Some(nb) = self.not_before {
            r = r.not_before(nb);
        }
        if let Some(depth) = self.max_depth {
            r = r.max_depth(depth);
        }
        if let Some(audience) = self.audience {
            r = r.audience(audience);
        }
        if let Some(holder) = self.holder {
            r = r.holder(holder);
        }
        r
    }
}
