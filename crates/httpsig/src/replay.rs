//! Replay protection: one atomic check-and-insert per verified signature.

use core::fmt;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use crate::error::Error;

/// What identifies a signature for replay purposes.
///
/// With a nonce: SHA-256 over (keyid, nonce). Without: SHA-256 over (keyid, signature base). Never
/// the base64 text, so re-encodings of one signature are the same replay; and not the signature
/// bytes either, since ECDSA and PSS signatures can be re-randomized over the same base.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplayKey(pub(crate) [u8; 32]);

impl ReplayKey {
    pub(crate) fn derive(keyid: &str, nonce: Option<&str>, base: &[u8]) -> Self {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        match nonce {
            Some(n) => {
                ctx.update(b"vouch-httpsig/replay/nonce\0");
                ctx.update(&(keyid.len() as u64).to_be_bytes());
                ctx.update(keyid.as_bytes());
                ctx.update(n.as_bytes());
            }
            None => {
                ctx.update(b"vouch-httpsig/replay/base\0");
                ctx.update(&(keyid.len() as u64).to_be_bytes());
                ctx.update(keyid.as_bytes());
                ctx.update(base);
            }
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        Self(out)
    }

    /// The raw 32 bytes (for a store's key).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for ReplayKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReplayKey(")?;
        for b in self.0.iter().take(8) {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// The future a [`ReplayGuard`] returns.
pub type ReplayFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Error>> + Send + 'a>>;

/// A replay store: records each verified signature until it can no longer pass the time window.
///
/// `check_and_insert` must be atomic: of several concurrent calls with one key, exactly one
/// succeeds. It returns [`Error::Replayed`] for a key already present,
/// [`Error::ReplayShareExceeded`] when `owner` already holds its share of the store (answer 429:
/// one identity must not be able to fill the store and lock everyone else out), and
/// [`Error::ReplayStoreUnavailable`] when it cannot record the key (full, unreachable): the
/// request must then be refused, never let through.
pub trait ReplayGuard: Send + Sync {
    /// Records `key`, signed by `owner` (the verified identity), until Unix second `keep_until`
    /// (inclusive), or refuses it. `now` is the verifier's clock, for expiring old entries.
    fn check_and_insert<'a>(
        &'a self,
        key: ReplayKey,
        owner: &'a str,
        keep_until: u64,
        now: u64,
    ) -> ReplayFuture<'a>;
}

/// A simple bounded in-memory replay store (one lock). For tests and single small processes;
/// vouch-keys has the sharded and Redis stores.
///
/// When full of live entries it refuses new ones ([`Error::ReplayStoreUnavailable`]) rather
/// than evicting a live entry, which would let that signature replay.
#[derive(Debug)]
pub struct MemoryReplayGuard {
    capacity: usize,
    entries: Mutex<BTreeMap<ReplayKey, u64>>,
}

impl MemoryReplayGuard {
    /// A store holding at most `capacity` live entries.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Mutex::new(BTreeMap::new()),
        }
    }

    fn check_now(&self, key: ReplayKey, keep_until: u64, now: u64) -> Result<(), Error> {
        let mut entries = self
            .entries
            .lock()
            .map_err(|_| Error::ReplayStoreUnavailable("lock poisoned"))?;
        if let Some(&until) = entries.get(&key)
            && until >= now
        {
            return Err(Error::Replayed);
        }
        if entries.len() >= self.capacity {
            entries.retain(|_, until| *until >= now);
            if entries.len() >= self.capacity {
                return Err(Error::ReplayStoreUnavailable("replay store full"));
            }
        }
        entries.insert(key, keep_until);
        Ok(())
    }
}

impl ReplayGuard for MemoryReplayGuard {
    fn check_and_insert<'a>(
        &'a self,
        key: ReplayKey,
        _owner: &'a str,
        keep_until: u64,
        now: u64,
    ) -> ReplayFuture<'a> {
        Box::pin(std::future::ready(self.check_now(key, keep_until, now)))
    }
}
