//! What the trust stores share: their future type and their errors.

use core::fmt;
use std::future::Future;
use std::pin::Pin;

/// The future a store operation returns (boxed, so the traits are object-safe and need no
/// runtime).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Why a store operation failed.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The identity is pinned to another key; only an operator reset changes that.
    PinMismatch {
        /// The identity.
        identity: String,
    },
    /// The store cannot be reached or cannot record (full, down, I/O error). Callers fail closed.
    Unavailable(String),
    /// The store's data is corrupt (names the file and what is wrong). Never silently reset.
    Corrupt(String),
    /// The store is set up so that it could lose what it must keep (a Redis `maxmemory-policy`
    /// that evicts keys), or cannot work as named (a malformed Redis URL, a node of a Redis
    /// Cluster named as a single server, a key prefix with a hash tag): refused at connect, with
    /// what to change.
    Misconfigured(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PinMismatch { identity } => write!(f, "{identity} is pinned to another key"),
            Self::Unavailable(why) => write!(f, "store unavailable: {why}"),
            Self::Corrupt(why) => write!(f, "store corrupt: {why}"),
            Self::Misconfigured(why) => write!(f, "store misconfigured: {why}"),
        }
    }
}

impl std::error::Error for StoreError {}

pub(crate) fn ready<'a, T: Send + 'a>(r: Result<T, StoreError>) -> StoreFuture<'a, T> {
    Box::pin(std::future::ready(r))
}
