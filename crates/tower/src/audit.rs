//! The audit hook (one call per decision) and signing statistics.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// One decision a layer made about one request.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Decision<'a> {
    /// Which layer decided: `"signature"`, `"session"`, `"rate_limit"` or `"capability"`.
    pub layer: &'static str,
    /// True if the request was let through.
    pub accepted: bool,
    /// The verified identity, when known.
    pub identity: Option<&'a str>,
    /// A short reason code (`ok` when accepted).
    pub reason: &'a str,
    /// The HTTP method.
    pub method: &'a str,
    /// The MCP tool, when the request calls one.
    pub tool: Option<&'a str>,
}

/// Receives every decision. Called inline on the request path: keep it cheap and non-blocking
/// (hand the record to a channel or a counter).
pub trait AuditHook: Send + Sync {
    /// Records one decision.
    fn record(&self, decision: &Decision<'_>);
}

impl<F: Fn(&Decision<'_>) + Send + Sync> AuditHook for F {
    fn record(&self, decision: &Decision<'_>) {
        self(decision);
    }
}

/// Identities tracked individually before the rest are counted together.
const MAX_TRACKED_IDENTITIES: usize = 10_000;

/// Counts signature decisions, safe under concurrency. Plug it in as the signature layer's
/// audit hook and read [`SigningStats::snapshot`].
#[derive(Debug, Default)]
pub struct SigningStats {
    verified: AtomicU64,
    rejected: AtomicU64,
    by_address: Mutex<BTreeMap<String, u64>>,
    untracked: AtomicU64,
}

/// A point-in-time copy of [`SigningStats`], in the seed's shape.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// Requests whose signature verified.
    pub verified_requests: u64,
    /// Requests refused by the signature layer.
    pub rejected_requests: u64,
    /// Distinct verified identities seen (tracked ones).
    pub distinct_identities: u64,
    /// Verified requests per identity.
    pub by_address: BTreeMap<String, u64>,
}

impl SigningStats {
    /// Empty statistics.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of the counts.
    pub fn snapshot(&self) -> StatsSnapshot {
        let by_address = self
            .by_address
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default();
        StatsSnapshot {
            verified_requests: self.verified.load(Ordering::Relaxed),
            rejected_requests: self.rejected.load(Ordering::Relaxed),
            distinct_identities: by_address.len() as u64,
            by_address,
        }
    }

    /// Verified requests from identities past the tracking bound.
    pub fn untracked(&self) -> u64 {
        self.untracked.load(Ordering::Relaxed)
    }
}

impl AuditHook for SigningStats {
    fn record(&self, d: &Decision<'_>) {
        if d.layer != "signature" {
            return;
        }
        if !d.accepted {
            self.rejected.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.verified.fetch_add(1, Ordering::Relaxed);
        if let (Some(id), Ok(mut map)) = (d.identity, self.by_address.lock()) {
            if let Some(n) = map.get_mut(id) {
                *n += 1;
            } else if map.len() < MAX_TRACKED_IDENTITIES {
                map.insert(id.to_owned(), 1);
            } else {
                self.untracked.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl<T: AuditHook + ?Sized> AuditHook for std::sync::Arc<T> {
    fn record(&self, decision: &Decision<'_>) {
        (**self).record(decision);
    }
}
