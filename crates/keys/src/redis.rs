//! Redis-backed pin and replay stores, shared by several server replicas.
//!
//! Every operation is one atomic Redis command; any Redis error (down, timeout) is reported as
//! unavailable, and callers fail closed. The connection manager reconnects on its own when Redis
//! comes back.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands as _, SetExpiry, SetOptions};
use vouch_httpsig::{Error, ReplayFuture, ReplayGuard, ReplayKey};

use crate::pin::{PinStore, Pinned};
use crate::store::{StoreError, StoreFuture};

/// How long one Redis command may take before the store reports itself unavailable.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

async fn connect(url: &str) -> Result<ConnectionManager, StoreError> {
    let client =
        redis::Client::open(url).map_err(|e| StoreError::Unavailable(format!("redis url: {e}")))?;
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(RESPONSE_TIMEOUT)
        .set_connection_timeout(CONNECT_TIMEOUT)
        .set_number_of_retries(1);
    ConnectionManager::new_with_config(client, config)
        .await
        .map_err(|e| StoreError::Unavailable(format!("redis: {e}")))
}

fn unavailable(e: &redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("redis: {e}"))
}

/// Pins in Redis under `prefix` + identity.
#[derive(Clone)]
pub struct RedisPinStore {
    conn: ConnectionManager,
    prefix: String,
}

impl RedisPinStore {
    /// Connects to `url` (`redis://host:port/db`), keys prefixed with `prefix`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if Redis cannot be reached.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        Ok(Self {
            conn: connect(url).await?,
            prefix: prefix.to_owned(),
        })
    }

    fn key(&self, identity: &str) -> String {
        format!("{}pin:{identity}", self.prefix)
    }

    async fn check(&self, identity: &str, fingerprint: &str) -> Result<Pinned, StoreError> {
        let mut conn = self.conn.clone();
        let key = self.key(identity);
        // SET NX pins atomically; if it did not, the pinned value decides. A reset racing in
        // between leaves nothing to compare with: try once more.
        for _ in 0..2 {
            let set: Option<String> = conn
                .set_options(
                    &key,
                    fingerprint,
                    SetOptions::default().conditional_set(redis::ExistenceCheck::NX),
                )
                .await
                .map_err(|e| unavailable(&e))?;
            if set.is_some() {
                return Ok(Pinned::New);
            }
            let pinned: Option<String> = conn.get(&key).await.map_err(|e| unavailable(&e))?;
            match pinned {
                Some(p) if p == fingerprint => return Ok(Pinned::Matched),
                Some(_) => {
                    return Err(StoreError::PinMismatch {
                        identity: identity.to_owned(),
                    });
                }
                None => continue,
            }
        }
        Err(StoreError::Unavailable("pin changed concurrently".into()))
    }
}

impl PinStore for RedisPinStore {
    fn get(&self, identity: &str) -> StoreFuture<'_, Option<String>> {
        let key = self.key(identity);
        let mut conn = self.conn.clone();
        Box::pin(async move { conn.get(&key).await.map_err(|e| unavailable(&e)) })
    }

    fn check_and_pin(&self, identity: &str, fingerprint: &str) -> StoreFuture<'_, Pinned> {
        let (identity, fingerprint) = (identity.to_owned(), fingerprint.to_owned());
        Box::pin(async move { self.check(&identity, &fingerprint).await })
    }

    fn reset(&self, identity: &str) -> StoreFuture<'_, bool> {
        let key = self.key(identity);
        let mut conn = self.conn.clone();
        Box::pin(async move {
            let removed: u64 = conn.del(&key).await.map_err(|e| unavailable(&e))?;
            Ok(removed > 0)
        })
    }
}

impl core::fmt::Debug for RedisPinStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RedisPinStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// A replay store in Redis: one atomic `SET key 1 NX PX ttl` per check. If Redis cannot be
/// reached the check fails closed ([`Error::ReplayStoreUnavailable`]).
#[derive(Clone)]
pub struct RedisReplayStore {
    conn: ConnectionManager,
    prefix: String,
}

impl RedisReplayStore {
    /// Connects to `url`, keys prefixed with `prefix`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if Redis cannot be reached.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        Ok(Self {
            conn: connect(url).await?,
            prefix: prefix.to_owned(),
        })
    }

    async fn check(&self, key: ReplayKey, keep_until: u64, now: u64) -> Result<(), Error> {
        let mut name = format!("{}replay:", self.prefix);
        for b in key.as_bytes() {
            name.push_str(&format!("{b:02x}"));
        }
        // Keep the entry through its last valid second.
        let ttl_ms = keep_until
            .saturating_sub(now)
            .saturating_add(1)
            .saturating_mul(1000);
        let options = SetOptions::default()
            .conditional_set(redis::ExistenceCheck::NX)
            .with_expiration(SetExpiry::PX(ttl_ms));
        let mut conn = self.conn.clone();
        let set: Option<String> = conn
            .set_options(&name, 1u8, options)
            .await
            .map_err(|_| Error::ReplayStoreUnavailable("redis unreachable"))?;
        if set.is_some() {
            Ok(())
        } else {
            Err(Error::Replayed)
        }
    }
}

impl ReplayGuard for RedisReplayStore {
    fn check_and_insert<'a>(
        &'a self,
        key: ReplayKey,
        _owner: &'a str,
        keep_until: u64,
        now: u64,
    ) -> ReplayFuture<'a> {
        Box::pin(self.check(key, keep_until, now))
    }
}

impl core::fmt::Debug for RedisReplayStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RedisReplayStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}
