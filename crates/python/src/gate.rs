//! The server side: a [`Gate`] runs vouch-tower's [`Checkpoint`] for a Python ASGI middleware.
//!
//! Every check and every error answer is vouch-tower's: this module only builds the checkpoint
//! from Python arguments, turns an ASGI request head into [`http::request::Parts`], and hands
//! the results back (the allowed request's state as a dict, a denial as status, fields and
//! body). Verification runs with the GIL released, on a tokio runtime the module owns (the
//! Redis stores and the HTTPS key resolver are asynchronous).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use pyo3::exceptions::{PyConnectionError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyList, PyString, PyTuple};
use serde_json::Value;
use vouch_httpsig::VerifyPolicy;
use vouch_keys::{
    CacheConfig, CachingResolver, Fallback, HttpsConfig, HttpsResolver, MemoryPinStore,
    RedisOptions, RedisPinStore, RedisReplayStore, ResolvedKey, ShardedReplayStore, StaticResolver,
    is_redis_url,
};
use vouch_token::{RootKeySet, Verifier};
use vouch_tower::{
    AuditHook, CapabilityPipeline, Checkpoint, DEFAULT_BODY_TIMEOUT, DEFAULT_MAX_BODY_BYTES,
    Decision, Denial, Origin, Patterns, RateLimitLayer, SessionBindingLayer, SessionTicket,
    SignaturePipeline, TOKEN_HEADER,
    tools_list::{ToolsListFilter, listing_id},
};

/// Signatures the in-memory replay store holds (as `vouch serve`'s default).
const REPLAY_CAPACITY: usize = 100_000;
/// Identities the in-memory pin store holds.
const PIN_CAPACITY: usize = 100_000;
/// Key prefixes in Redis (as `vouch serve`'s, so that both can share one Redis).
const REDIS_REPLAY_PREFIX: &str = "vouch:replay:";
const REDIS_PINS_PREFIX: &str = "vouch:pins:";
/// The most header fields a request head may carry here.
const MAX_FIELDS: usize = 256;

/// The runtime that drives the asynchronous stores (Redis) and resolvers (HTTPS).
fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("vouch-io")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start the async runtime: {e}")))
}

fn value_error(what: &str, e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(format!("{what}: {e}"))
}

/// One decision, owned, for the Python audit callable.
struct Record {
    layer: &'static str,
    accepted: bool,
    identity: Option<String>,
    reason: String,
    method: String,
    tool: Option<String>,
}

thread_local! {
    /// The decisions of the step running on this thread (the checkpoint runs inline in
    /// `block_on`, on the calling thread), for the Python audit callable.
    static RECORDS: std::cell::RefCell<Vec<Record>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Feeds the statistics, and (when there is a Python audit callable) this thread's records.
struct Hook {
    stats: Arc<vouch_tower::SigningStats>,
    collect: bool,
}

impl AuditHook for Hook {
    fn record(&self, d: &Decision<'_>) {
        self.stats.record(d);
        if self.collect {
            RECORDS.with_borrow_mut(|records| {
                records.push(Record {
                    layer: d.layer,
                    accepted: d.accepted,
                    identity: d.identity.map(str::to_owned),
                    reason: d.reason.to_owned(),
                    method: d.method.to_owned(),
                    tool: d.tool.map(str::to_owned),
                });
            });
        }
    }
}

/// Signing statistics in the seed's shape: verified and rejected requests, distinct
/// identities, verified requests per identity. Safe to share between threads.
#[pyclass(module = "vouch._vouch", frozen)]
pub(crate) struct SigningStats {
    inner: Arc<vouch_tower::SigningStats>,
}

#[pymethods]
impl SigningStats {
    #[new]
    fn new() -> Self {
        Self {
            inner: Arc::new(vouch_tower::SigningStats::new()),
        }
    }

    /// `{"verified_requests", "rejected_requests", "distinct_identities", "by_address"}`.
    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.snapshot();
        let d = PyDict::new(py);
        d.set_item("verified_requests", s.verified_requests)?;
        d.set_item("rejected_requests", s.rejected_requests)?;
        d.set_item("distinct_identities", s.distinct_identities)?;
        let by = PyDict::new(py);
        for (k, v) in &s.by_address {
            by.set_item(k, v)?;
        }
        d.set_item("by_address", by)?;
        Ok(d)
    }

    /// Verified requests from identities past the tracking bound (10 000 identities).
    fn untracked(&self) -> u64 {
        self.inner.untracked()
    }
}

/// A refusal: answer with exactly this status, these fields and this body.
#[pyclass(module = "vouch._vouch", frozen)]
pub(crate) struct Denied {
    /// The HTTP status.
    #[pyo3(get)]
    status: u16,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: Bytes,
}

#[pymethods]
impl Denied {
    /// The fields, as ASGI wants them: `[(name, value), ...]` in bytes, lower-case names,
    /// `content-length` included.
    #[getter]
    fn headers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for (k, v) in &self.headers {
            list.append(PyTuple::new(
                py,
                [PyBytes::new(py, k), PyBytes::new(py, v)],
            )?)?;
        }
        Ok(list)
    }

    /// The JSON body.
    #[getter]
    fn body<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.body)
    }

    fn __repr__(&self) -> String {
        format!(
            "Denied(status={}, body={})",
            self.status,
            String::from_utf8_lossy(&self.body)
        )
    }
}

impl Denied {
    fn from_denial(denial: Denial) -> Self {
        let (status, headers, body) = denial.into_parts();
        let mut fields: Vec<(Vec<u8>, Vec<u8>)> = headers
            .iter()
            .map(|(k, v)| (k.as_str().as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
        fields.push((
            b"content-length".to_vec(),
            body.len().to_string().into_bytes(),
        ));
        Self {
            status: status.as_u16(),
            headers: fields,
            body,
        }
    }

    /// An answer of this module's own, for a head no HTTP server would have passed on.
    fn malformed() -> Self {
        let body = Bytes::from_static(br#"{"detail":{"error":"bad_request"}}"#);
        Self {
            status: 400,
            headers: vec![
                (b"content-type".to_vec(), b"application/json".to_vec()),
                (b"connection".to_vec(), b"close".to_vec()),
                (
                    b"content-length".to_vec(),
                    body.len().to_string().into_bytes(),
                ),
            ],
            body,
        }
    }
}

/// A request whose head passed [`Gate::head`], waiting for its body.
#[pyclass(module = "vouch._vouch", frozen)]
pub(crate) struct Pending {
    gate: Py<Gate>,
    step: Mutex<Option<vouch_tower::Pending>>,
    ticket: Mutex<Option<SessionTicket>>,
    /// For an admitted `tools/list` with grants: the filter its answer goes through.
    listing: Mutex<Option<ToolsListFilter>>,
    /// The identity the head's signature proves.
    #[pyo3(get)]
    identity: String,
}

impl Pending {
    fn take(&self) -> PyResult<vouch_tower::Pending> {
        self.step
            .lock()
            .ok()
            .and_then(|mut s| s.take())
            .ok_or_else(|| PyRuntimeError::new_err("this request was already finished"))
    }
}

#[pymethods]
impl Pending {
    /// Step 2 with the whole body: the allowed request's state dict
    /// `{"identity", "keyid", "facts"}` (`facts` None when identity-only), or a `Denied`.
    fn finish<'py>(&self, py: Python<'py>, body: &[u8]) -> PyResult<Bound<'py, PyAny>> {
        let step = self.take()?;
        let body = Bytes::copy_from_slice(body);
        let gate = self.gate.get();
        let result = py.detach(|| gate.run(step.finish(body.clone())))?;
        gate.flush_audit(py);
        match result {
            Ok(mut admitted) => {
                if let Some(grants) = admitted.grants()
                    && is_listing(&body)
                    && let Some(id) = listing_id(&body)
                    && let Ok(mut held) = self.listing.lock()
                {
                    *held = Some(ToolsListFilter::new(
                        id,
                        grants.facts().clone(),
                        gate.operations.clone(),
                        MAX_FILTERED_BYTES,
                    ));
                }
                if let (Some(ticket), Ok(mut held)) = (admitted.take_session(), self.ticket.lock())
                {
                    *held = Some(ticket);
                }
                Ok(state(py, &admitted)?.into_any())
            }
            Err(denial) => Ok(Bound::new(py, Denied::from_denial(denial))?.into_any()),
        }
    }

    /// With session binding: the app answered this (allowed) request with `status` and these
    /// fields (ASGI's `http.response.start`): a session it names in `mcp-session-id` is bound
    /// to the caller, one it ended or no longer knows is unbound. Once; a no-op otherwise.
    fn answered(&self, status: u16, headers: &Bound<'_, PyAny>) -> PyResult<()> {
        let Some(ticket) = self.ticket.lock().ok().and_then(|mut t| t.take()) else {
            return Ok(());
        };
        let status = http::StatusCode::from_u16(status)
            .map_err(|_| value_error("status", "not an HTTP status"))?;
        let mut fields = HeaderMap::new();
        let session = http::HeaderName::from_static("mcp-session-id");
        let mut seen = 0usize;
        pairs(headers, |name, value| {
            if name.eq_ignore_ascii_case(b"mcp-session-id") {
                seen += 1;
                if let Ok(v) = HeaderValue::from_bytes(value) {
                    fields.insert(session.clone(), v);
                }
            }
            true
        })?;
        if seen > 1 {
            // Two session ids in one answer: bind neither.
            fields.clear();
        }
        ticket.answered(status, &fields);
        Ok(())
    }

    /// For an admitted `tools/list` request with a token: the filter its answer must go through
    /// (the tools the grants allow, as the gateway narrows them); None for anything else. Once.
    fn listing(&self) -> Option<ToolsList> {
        let filter = self.listing.lock().ok().and_then(|mut l| l.take())?;
        Some(ToolsList {
            filter: Mutex::new(filter),
        })
    }

    /// The answer to a body larger than the gate's `max_body_bytes` (413).
    fn too_large<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, Denied>> {
        let denial = self.take()?.too_large();
        self.gate.get().flush_audit(py);
        Bound::new(py, Denied::from_denial(denial))
    }

    /// The answer to a body that did not arrive within the gate's `body_timeout` (408).
    fn timed_out<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, Denied>> {
        let denial = self.take()?.timed_out();
        self.gate.get().flush_audit(py);
        Bound::new(py, Denied::from_denial(denial))
    }
}

/// The largest `tools/list` JSON answer or SSE event held to be filtered: 8 MiB, the gateway's.
const MAX_FILTERED_BYTES: usize = 8 << 20;

/// A cheap first look: only a body naming `tools/list` is parsed for a listing.
fn is_listing(body: &[u8]) -> bool {
    body.windows(b"tools/list".len())
        .any(|w| w == b"tools/list")
}

/// vouch-tower's `tools/list` narrowing for one answer: the tools the token grants stay.
#[pyclass(module = "vouch._vouch", frozen)]
pub(crate) struct ToolsList {
    filter: Mutex<ToolsListFilter>,
}

impl ToolsList {
    fn with<T>(&self, f: impl FnOnce(&mut ToolsListFilter) -> T) -> PyResult<T> {
        let mut filter = self
            .filter
            .lock()
            .map_err(|_| PyRuntimeError::new_err("tools list filter poisoned"))?;
        Ok(f(&mut filter))
    }
}

#[pymethods]
impl ToolsList {
    /// A whole `application/json` answer, filtered. ValueError if it is not JSON (then nothing
    /// of it may reach the client).
    fn json<'py>(&self, py: Python<'py>, body: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        let out = self
            .with(|f| f.filter_json(body))?
            .map_err(|_| PyValueError::new_err("tools/list answer is not JSON"))?;
        Ok(PyBytes::new(py, &out))
    }

    /// The next chunk of a `text/event-stream` answer: the events it completes, filtered
    /// (empty while an event is incomplete). ValueError once an event grows past 8 MiB.
    fn push<'py>(&self, py: Python<'py>, chunk: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        let events = self
            .with(|f| f.push(chunk))?
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(PyBytes::new(py, &events.concat()))
    }

    /// The end of the event stream: what is left, filtered.
    fn finish<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let events = self.with(ToolsListFilter::finish)?;
        Ok(PyBytes::new(py, &events.concat()))
    }
}

/// `{"identity", "keyid", "facts"}` for an admitted request.
fn state<'py>(py: Python<'py>, admitted: &vouch_tower::Admitted) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let caller = admitted.caller();
    d.set_item("identity", &caller.identity)?;
    d.set_item("keyid", &caller.keyid)?;
    match admitted.grants() {
        Some(grants) => {
            let value = serde_json::to_value(grants.facts())
                .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
            d.set_item("facts", to_py(py, &value)?)?;
        }
        None => d.set_item("facts", py.None())?,
    }
    Ok(d)
}

/// A JSON value as Python objects, directly (no JSON text in between).
fn to_py<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => {
            if let Some(i) = n.as_u64() {
                i.into_pyobject(py)?.into_any()
            } else if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else {
                PyFloat::new(py, n.as_f64().unwrap_or(f64::NAN)).into_any()
            }
        }
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => {
            let d = PyDict::new(py);
            for (k, v) in map {
                d.set_item(k, to_py(py, v)?)?;
            }
            d.into_any()
        }
    })
}

/// Calls `each(name, value)` for each pair of bytes of an ASGI field list (tuples, or lists as
/// the spec allows) until it returns false; false if an item is not a pair of bytes.
fn pairs(headers: &Bound<'_, PyAny>, mut each: impl FnMut(&[u8], &[u8]) -> bool) -> PyResult<bool> {
    for item in headers.try_iter()? {
        let item = item?;
        let (name, value) = if let Ok(pair) = item.cast::<PyTuple>() {
            if pair.len() != 2 {
                return Ok(false);
            }
            (pair.get_item(0)?, pair.get_item(1)?)
        } else if let Ok(pair) = item.cast::<PyList>() {
            if pair.len() != 2 {
                return Ok(false);
            }
            (pair.get_item(0)?, pair.get_item(1)?)
        } else {
            return Ok(false);
        };
        let (Ok(name), Ok(value)) = (name.cast::<PyBytes>(), value.cast::<PyBytes>()) else {
            return Ok(false);
        };
        if !each(name.as_bytes(), value.as_bytes()) {
            return Ok(true);
        }
    }
    Ok(true)
}

/// The request head as the checkpoint reads it, or `None` if no HTTP server would have passed
/// it on (a malformed method, target or field).
fn head_parts(
    method: &str,
    path: &[u8],
    query: &[u8],
    headers: &Bound<'_, PyAny>,
) -> PyResult<Option<http::request::Parts>> {
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Ok(None);
    };
    let mut target = Vec::with_capacity(path.len() + query.len() + 1);
    target.extend_from_slice(path);
    if !query.is_empty() {
        target.push(b'?');
        target.extend_from_slice(query);
    }
    if target.first() != Some(&b'/') {
        return Ok(None);
    }
    let Ok(uri) = Uri::from_maybe_shared(Bytes::from(target)) else {
        return Ok(None);
    };
    let mut map = HeaderMap::new();
    let mut sound = true;
    let complete = pairs(headers, |name, value| {
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        else {
            sound = false;
            return false;
        };
        if map.len() >= MAX_FIELDS {
            sound = false;
            return false;
        }
        map.append(name, value);
        true
    })?;
    if !(complete && sound) {
        return Ok(None);
    }
    let Ok(request) = http::Request::builder().method(method).uri(uri).body(()) else {
        return Ok(None);
    };
    let (mut parts, ()) = request.into_parts();
    parts.headers = map;
    Ok(Some(parts))
}

/// vouch's server-side checks, configured once: build it with the server's origin(s) and keys,
/// then run [`Gate::head`] on each request head and [`Pending::finish`] on its body.
#[pyclass(module = "vouch._vouch", frozen)]
pub(crate) struct Gate {
    checkpoint: Checkpoint,
    /// Tool → the operation a call performs (for narrowing `tools/list`).
    operations: Arc<BTreeMap<String, String>>,
    exempt: BTreeSet<String>,
    blocking: bool,
    sessions: bool,
    stats: Py<SigningStats>,
    audit: Option<Py<PyAny>>,
}

impl Gate {
    /// Runs a step of the checkpoint to completion on this thread (GIL released by the caller).
    fn run<T>(&self, step: impl std::future::Future<Output = T>) -> PyResult<T> {
        Ok(runtime()?.block_on(step))
    }

    /// Hands this thread's decisions to the Python audit callable.
    fn flush_audit(&self, py: Python<'_>) {
        let Some(audit) = &self.audit else { return };
        let records = RECORDS.with_borrow_mut(std::mem::take);
        for r in records {
            let d = PyDict::new(py);
            let filled = (|| -> PyResult<()> {
                d.set_item("layer", r.layer)?;
                d.set_item("accepted", r.accepted)?;
                d.set_item("identity", r.identity)?;
                d.set_item("reason", r.reason)?;
                d.set_item("method", r.method)?;
                d.set_item("tool", r.tool)?;
                Ok(())
            })();
            if let Err(e) = filled.and_then(|()| audit.call1(py, (d,)).map(drop)) {
                // An audit callable that fails does not change the decision.
                e.write_unraisable(py, Some(audit.bind(py)));
            }
        }
    }
}

/// The first argument as one string or a list of strings.
fn strings(value: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<String>> {
    if let Ok(s) = value.extract::<String>() {
        return Ok(vec![s]);
    }
    value
        .extract::<Vec<String>>()
        .map_err(|_| value_error(what, "expected a string or a list of strings"))
}

#[pymethods]
impl Gate {
    #[new]
    #[pyo3(signature = (
        *,
        origin,
        agents = None,
        resolve_https = false,
        allowlist = None,
        roots = None,
        audience = None,
        replay = "memory",
        replay_share = None,
        pins = Some("memory"),
        profile = "mcp",
        exempt_paths = Vec::new(),
        max_body_bytes = DEFAULT_MAX_BODY_BYTES,
        body_timeout = DEFAULT_BODY_TIMEOUT.as_secs_f64(),
        rate_limit = None,
        token_header = None,
        operations = None,
        stats = None,
        audit = None,
        sessions = None,
    ))]
    #[allow(
        clippy::too_many_arguments,
        reason = "Python keyword arguments, not a Rust API"
    )]
    fn new(
        py: Python<'_>,
        origin: &Bound<'_, PyAny>,
        agents: Option<std::collections::BTreeMap<String, String>>,
        resolve_https: bool,
        allowlist: Option<Vec<String>>,
        roots: Option<Vec<String>>,
        audience: Option<&Bound<'_, PyAny>>,
        replay: &str,
        replay_share: Option<u64>,
        pins: Option<&str>,
        profile: &str,
        exempt_paths: Vec<String>,
        max_body_bytes: usize,
        body_timeout: f64,
        rate_limit: Option<(u32, u32)>,
        token_header: Option<&str>,
        operations: Option<BTreeMap<String, String>>,
        stats: Option<Py<SigningStats>>,
        audit: Option<Py<PyAny>>,
        sessions: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let origins = strings(origin, "origin")?
            .iter()
            .map(|o| {
                o.parse::<Origin>()
                    .map_err(|e| value_error(&format!("origin {o:?}"), e))
            })
            .collect::<PyResult<Vec<_>>>()?;
        let Some((first, more)) = origins.split_first() else {
            return Err(value_error("origin", "at least one is required"));
        };
        let mut fixed = StaticResolver::new();
        for (keyid, text) in agents.unwrap_or_default() {
            if keyid.is_empty() {
                return Err(value_error("agents", "empty keyid"));
            }
            let key = vouch_keys::parse_public(&text)
                .map_err(|e| value_error(&format!("agents[{keyid:?}]"), e))?;
            let resolved = ResolvedKey::ed25519(&key)
                .map_err(|e| value_error(&format!("agents[{keyid:?}]"), e))?;
            fixed = fixed.with_key(keyid, resolved);
        }
        let https = if resolve_https {
            let resolver = HttpsResolver::new(HttpsConfig::default())
                .map_err(|e| value_error("resolve_https", e))?;
            Some(CachingResolver::new(resolver, CacheConfig::default()))
        } else {
            None
        };
        let resolver = Fallback::new(fixed, https);
        let policy = match profile {
            "mcp" => VerifyPolicy::mcp(),
            "envoys" => VerifyPolicy::envoys(),
            other => {
                return Err(value_error(
                    "profile",
                    format!("{other:?}: expected \"mcp\" or \"envoys\""),
                ));
            }
        };
        if !(body_timeout.is_finite() && body_timeout > 0.0) {
            return Err(value_error(
                "body_timeout",
                "expected a positive number of seconds",
            ));
        }
        if max_body_bytes == 0 {
            return Err(value_error("max_body_bytes", "expected at least 1"));
        }
        let redis_replay = is_redis_url(replay);
        let redis_pins = pins.is_some_and(is_redis_url);
        let rt = runtime()?;
        let mut signature = if redis_replay {
            let mut options = RedisOptions::new();
            if let Some(share) = replay_share {
                options = options.identity_share(share);
            }
            let store = py
                .detach(|| {
                    rt.block_on(RedisReplayStore::connect_with(
                        replay,
                        REDIS_REPLAY_PREFIX,
                        &options,
                    ))
                })
                .map_err(|e| PyConnectionError::new_err(format!("replay: {e}")))?;
            SignaturePipeline::new(first.clone(), resolver, store)
        } else if replay == "memory" {
            let mut config = vouch_keys::ReplayConfig::new(REPLAY_CAPACITY);
            if let Some(share) = replay_share {
                config = config.identity_share(usize::try_from(share).unwrap_or(usize::MAX));
            }
            SignaturePipeline::new(
                first.clone(),
                resolver,
                ShardedReplayStore::with_config(config),
            )
        } else {
            return Err(value_error(
                "replay",
                format!("{replay:?}: expected \"memory\" or a redis:// URL"),
            ));
        }
        .policy(policy);
        for origin in more {
            signature = signature.origin(origin.clone());
        }
        if let Some(allows) = allowlist {
            signature = signature.allowlist(Patterns::new(allows));
        }
        signature = match pins {
            None => signature,
            Some("memory") => signature.pins(MemoryPinStore::new(PIN_CAPACITY)),
            Some(url) if redis_pins => {
                let store = py
                    .detach(|| rt.block_on(RedisPinStore::connect(url, REDIS_PINS_PREFIX)))
                    .map_err(|e| PyConnectionError::new_err(format!("pins: {e}")))?;
                signature.pins(store)
            }
            Some(other) => {
                return Err(value_error(
                    "pins",
                    format!("{other:?}: expected \"memory\", a redis:// URL or None"),
                ));
            }
        };
        let stats = match stats {
            Some(stats) => stats,
            None => Py::new(py, SigningStats::new())?,
        };
        let hook = Hook {
            stats: stats.get().inner.clone(),
            collect: audit.is_some(),
        };
        let mut builder = Checkpoint::builder(signature)
            .max_body_bytes(max_body_bytes)
            .body_timeout(Duration::from_secs_f64(body_timeout))
            .audit(hook);
        if let Some((per_second, burst)) = rate_limit {
            let (Some(per_second), Some(burst)) = (
                std::num::NonZeroU32::new(per_second),
                std::num::NonZeroU32::new(burst),
            ) else {
                return Err(value_error(
                    "rate_limit",
                    "expected (per_second, burst), both at least 1",
                ));
            };
            builder = builder.rate_limit(RateLimitLayer::per_second(per_second, burst));
        }
        let binding = match sessions {
            None => None,
            Some(s) if s.is_instance_of::<PyBool>() => {
                s.extract::<bool>()?.then(SessionBindingLayer::default)
            }
            Some(s) => {
                let (capacity, per_identity, idle) =
                    s.extract::<(usize, usize, f64)>().map_err(|_| {
                        value_error(
                            "sessions",
                            "expected a bool or (capacity, per_identity, idle_seconds)",
                        )
                    })?;
                if !(idle.is_finite() && idle > 0.0) {
                    return Err(value_error("sessions", "idle_seconds must be positive"));
                }
                Some(
                    SessionBindingLayer::new(capacity, Duration::from_secs_f64(idle))
                        .max_per_identity(per_identity),
                )
            }
        };
        let binds_sessions = binding.is_some();
        if let Some(layer) = binding {
            builder = builder.sessions(layer);
        }
        let audiences = audience.map(|a| strings(a, "audience")).transpose()?;
        let operations = operations.unwrap_or_default();
        let header = match token_header {
            Some(h) => HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes())
                .map_err(|e| value_error("token_header", e))?,
            None => TOKEN_HEADER,
        };
        match roots {
            Some(roots) => {
                let keys = roots
                    .iter()
                    .map(|r| vouch_keys::parse_public(r).map_err(|e| value_error("roots", e)))
                    .collect::<PyResult<Vec<_>>>()?;
                let set = RootKeySet::from_keys(keys).map_err(|e| value_error("roots", e))?;
                let verifier = audiences
                    .unwrap_or_default()
                    .into_iter()
                    .fold(Verifier::new(set), Verifier::with_audience);
                let mut tokens = CapabilityPipeline::new(verifier).header(header);
                for (tool, op) in &operations {
                    tokens = tokens.operation(tool.clone(), op.clone());
                }
                builder = builder.tokens(tokens);
            }
            None => {
                if audiences.is_some() {
                    return Err(value_error(
                        "audience",
                        "needs roots: without them no token is checked",
                    ));
                }
            }
        }
        Ok(Self {
            checkpoint: builder.build(),
            operations: Arc::new(operations),
            exempt: exempt_paths.into_iter().collect(),
            blocking: resolve_https || redis_replay || redis_pins,
            sessions: binds_sessions,
            stats,
            audit,
        })
    }

    /// True if a step may wait on the network (Redis, HTTPS key resolution): run it in a
    /// thread (`asyncio.to_thread`) rather than on the event loop.
    #[getter]
    fn blocking(&self) -> bool {
        self.blocking
    }

    /// True if MCP sessions are bound to their signer: hand the app's answer to
    /// `Pending.answered`.
    #[getter]
    fn binds_sessions(&self) -> bool {
        self.sessions
    }

    /// The largest body accepted, in bytes.
    #[getter]
    fn max_body_bytes(&self) -> usize {
        self.checkpoint.max_body_bytes()
    }

    /// How long the whole body may take to arrive, in seconds.
    #[getter]
    fn body_timeout(&self) -> f64 {
        self.checkpoint.body_timeout().as_secs_f64()
    }

    /// True if no token is checked (no roots).
    #[getter]
    fn identity_only(&self) -> bool {
        self.checkpoint.identity_only()
    }

    /// The statistics every decision feeds.
    #[getter]
    fn stats(&self, py: Python<'_>) -> Py<SigningStats> {
        self.stats.clone_ref(py)
    }

    /// True if `path` is served without any check.
    fn is_exempt(&self, path: &str) -> bool {
        self.exempt.contains(path)
    }

    /// Step 1 on the request head: `method`, the raw path and query string as received, and
    /// the fields as ASGI lists them (`[(name, value), ...]`, bytes). A `Pending` (call
    /// `finish` with the body), or a `Denied` to answer with before reading any body.
    fn head<'py>(
        slf: &Bound<'py, Self>,
        method: &str,
        path: &[u8],
        query: &[u8],
        headers: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let Some(parts) = head_parts(method, path, query, headers)? else {
            return Ok(Bound::new(py, Denied::malformed())?.into_any());
        };
        let gate = slf.get();
        let result = py.detach(|| gate.run(gate.checkpoint.head(parts)))?;
        gate.flush_audit(py);
        match result {
            Ok(step) => {
                let identity = step.caller().identity.clone();
                let pending = Pending {
                    gate: slf.clone().unbind(),
                    step: Mutex::new(Some(step)),
                    ticket: Mutex::new(None),
                    listing: Mutex::new(None),
                    identity,
                };
                Ok(Bound::new(py, pending)?.into_any())
            }
            Err(denial) => Ok(Bound::new(py, Denied::from_denial(denial))?.into_any()),
        }
    }
}
