//! Keys and trust state for vouch: key files, key resolution, key pinning and replay stores.
//!
//! Today it holds the Ed25519 key formats, key resolution (static keys, the address identity
//! rule, an HTTPS resolver with address guards, a caching wrapper, the Web Bot Auth
//! `DirectoryResolver`), the pin store (memory and
//! file, and Redis with the `redis` feature) and replay stores (sharded memory, Redis: one
//! server or a Redis Cluster).
//!
//!
//! ```
//! use vouch_keys::{KeyFormat, encode_private, parse_private, parse_public, did_key, jwk_thumbprint};
//! use vouch_token::KeyPair;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let key = KeyPair::from_seed(&[7; 32])?;
//! let pem = encode_private(&key, KeyFormat::Pem);
//! assert_eq!(parse_private(&pem)?.public_key(), key.public_key());
//! let did = did_key(&key.public_key());
//! assert_eq!(parse_public(&did)?, key.public_key());
//! assert_eq!(jwk_thumbprint(&key.public_key()).len(), 43);
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod agent;
mod cache;
mod directory;
mod error;
mod format;
mod https;
mod pin;
#[cfg(feature = "redis")]
mod redis;
mod replay;
mod resolve;
mod store;

pub use agent::{MAX_SIGNATURE_AGENT_BYTES, signature_agent_key, signature_agent_value};
pub use cache::{CacheConfig, CachingResolver};
pub use directory::{DirectoryResolver, MAX_DIRECTORY_KEYS, STALE_IF_ERROR};
pub use error::Error;
pub use format::{
    KeyFormat, did_key, encode_private, encode_public, from_did_key, from_pkcs8_der,
    jwk_thumbprint, load_private, load_public, parse_private, parse_public, pkcs8_v1_der,
    pkcs8_v2_der, public_jwk, save_private,
};
pub use https::{HttpsConfig, HttpsResolver, is_non_public, key_from_document};
pub use pin::{FilePinStore, MemoryPinStore, PinCheckError, PinStore, Pinned, verify_and_pin};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::{RedisOptions, RedisPinStore, RedisReplayStore, RedisUrl, is_redis_url};
pub use replay::{ReplayConfig, ShardedReplayStore};
pub use resolve::{
    AddressClaim, Fallback, HostRule, IdentityRule, KeyResolver, ResolveError, ResolveFuture,
    ResolvedKey, StaticResolver, address_claim,
};
pub use store::{StoreError, StoreFuture};
