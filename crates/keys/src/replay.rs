//! A sharded, bounded in-memory replay store for vouch-httpsig's `ReplayGuard`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use vouch_httpsig::{Error, ReplayFuture, ReplayGuard, ReplayKey};

/// Number of shards (independent locks).
const SHARDS: usize = 16;

/// A replay store in memory, split in 16 locked shards so that concurrent requests rarely wait
/// on each other.
///
/// Bounded by a total entry count (spread evenly over the shards; keys are SHA-256 outputs, so
/// they spread evenly too). An entry expires when its signature can no longer pass the time
/// window. When a shard is full of live entries, a new signature is refused with
/// [`Error::ReplayStoreUnavailable`] (answer 503): evicting a live entry would let that
/// signature replay.
#[derive(Debug)]
pub struct ShardedReplayStore {
    per_shard: usize,
    shards: Vec<Mutex<BTreeMap<ReplayKey, u64>>>,
}

impl ShardedReplayStore {
    /// A store holding about `capacity` live entries.
    pub fn new(capacity: usize) -> Self {
        Self {
            per_shard: capacity.div_ceil(SHARDS).max(1),
            shards: (0..SHARDS).map(|_| Mutex::new(BTreeMap::new())).collect(),
        }
    }

    /// Live and expired entries currently held (for metrics and tests).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |m| m.len()))
            .sum()
    }

    /// True if the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn check(&self, key: ReplayKey, keep_until: u64, now: u64) -> Result<(), Error> {
        let index = usize::from(key.as_bytes()[0]) % SHARDS;
        let shard = self
            .shards
            .get(index)
            .ok_or(Error::ReplayStoreUnavailable("no shard"))?;
        let mut entries = shard
            .lock()
            .map_err(|_| Error::ReplayStoreUnavailable("lock poisoned"))?;
        if entries.get(&key).is_some_and(|&until| until >= now) {
            return Err(Error::Replayed);
        }
        if entries.len() >= self.per_shard {
            entries.retain(|_, until| *until >= now);
            if entries.len() >= self.per_shard {
                return Err(Error::ReplayStoreUnavailable("replay store full"));
            }
        }
        entries.insert(key, keep_until);
        Ok(())
    }
}

impl ReplayGuard for ShardedReplayStore {
    fn check_and_insert<'a>(
        &'a self,
        key: ReplayKey,
        _owner: &'a str,
        keep_until: u64,
        now: u64,
    ) -> ReplayFuture<'a> {
        Box::pin(std::future::ready(self.check(key, keep_until, now)))
    }
}
