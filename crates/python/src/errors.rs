//! The exceptions, and the mapping of [`vouch_token::Error`] onto the seed's error table.

use pyo3::exceptions::{PyException, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use vouch_token::Error;

pyo3::create_exception!(
    _vouch,
    VouchError,
    PyException,
    "Base of vouch's token errors; `.code` is the HTTP status, `.error` the coarse reason."
);
pyo3::create_exception!(
    _vouch,
    MissingToken,
    VouchError,
    "No token was presented (401, `missing_token`)."
);
pyo3::create_exception!(
    _vouch,
    InvalidToken,
    VouchError,
    "The token itself is unacceptable: malformed, forged, expired, revoked, for another audience \
     or holder, or delegated too deep (401, `invalid_token`)."
);
pyo3::create_exception!(
    _vouch,
    Forbidden,
    VouchError,
    "The token is sound but does not grant the tool or operation (403, `forbidden`)."
);

/// Sets each class's `code` (HTTP status) and `error` (the seed's coarse reason), and a default
/// `reason` (vouch's detailed code, set per instance).
pub(crate) fn init(py: Python<'_>) -> PyResult<()> {
    let table: [(Bound<'_, pyo3::types::PyType>, u16, &str); 4] = [
        (py.get_type::<VouchError>(), 401, "invalid_token"),
        (py.get_type::<MissingToken>(), 401, "missing_token"),
        (py.get_type::<InvalidToken>(), 401, "invalid_token"),
        (py.get_type::<Forbidden>(), 403, "forbidden"),
    ];
    for (class, code, error) in table {
        class.setattr("code", code)?;
        class.setattr("error", error)?;
        class.setattr("reason", error)?;
    }
    Ok(())
}

/// Maps a token error: failures of the token to `InvalidToken`, refusals of the request to
/// `Forbidden`, the caller's own mistakes to `ValueError`. The message is vouch's detailed one
/// (for logs, not for the peer); `.reason` is its stable code (`expired`, `tool_not_granted`, ...).
pub(crate) fn to_py(e: &Error) -> PyErr {
    let err = if e.is_forbidden() {
        Forbidden::new_err(e.to_string())
    } else if e.is_invalid_token() {
        InvalidToken::new_err(e.to_string())
    } else if matches!(e, Error::Random) {
        return PyRuntimeError::new_err(e.to_string());
    } else {
        return PyValueError::new_err(format!("{e} ({})", e.code()));
    };
    Python::attach(|py| {
        // Setting an attribute on a fresh exception instance does not fail in practice; if it
        // did, the class default `reason` still holds.
        let _ = err.value(py).setattr("reason", e.code());
    });
    err
}
