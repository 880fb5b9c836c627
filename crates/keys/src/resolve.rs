//! Key resolution: from a signature's `keyid` to the key that verifies it.

use core::fmt;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use vouch_httpsig::VerifyingKey;
use vouch_token::PublicKey;

use crate::error::Error;
use crate::format::{check_public, jwk_thumbprint, parse_public};

/// A resolved key and its fingerprint (what a pin store pins).
#[derive(Debug, Clone)]
pub struct ResolvedKey {
    key: VerifyingKey,
    fingerprint: String,
}

impl ResolvedKey {
    /// An Ed25519 public key; its fingerprint is the RFC 7638 JWK thumbprint. Every resolver in
    /// this crate builds its keys here, so no resolved key, and no pin, is ever a weak one.
    ///
    /// # Errors
    ///
    /// [`ResolveError::Refused`] for a weak key: bytes that are not a curve point, a
    /// non-canonical encoding, a point of small order (under the identity point, `R = identity,
    /// S = 0` is a valid signature of any message) or a point outside the prime-order subgroup.
    pub fn ed25519(public: &PublicKey) -> Result<Self, ResolveError> {
        Ok(Self {
            key: check_public(public).map_err(ResolveError::Refused)?,
            fingerprint: jwk_thumbprint(public),
        })
    }

    /// The key to verify with.
    pub fn key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Its fingerprint.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

/// Why a keyid did not resolve.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveError {
    /// No key is known for this keyid.
    Unknown,
    /// Refused before any fetch: the keyid claims an identity its host may not speak for, or
    /// points where the resolver may not go (plain http, a private address, …).
    Refused(String),
    /// The key could not be fetched or understood (network, timeout, size, document).
    Fetch(String),
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown => f.write_str("unknown keyid"),
            Self::Refused(why) => write!(f, "keyid refused: {why}"),
            Self::Fetch(why) => write!(f, "key fetch failed: {why}"),
        }
    }
}

impl std::error::Error for ResolveError {}

/// The future a [`KeyResolver`] returns.
pub type ResolveFuture<'a> =
    Pin<Box<dyn Future<Output = Result<ResolvedKey, ResolveError>> + Send + 'a>>;

/// Looks a `keyid` up. Implemented by [`StaticResolver`], the caching wrapper and the HTTPS
/// resolver, and by `Arc<R>`.
pub trait KeyResolver: Send + Sync {
    /// Resolves `keyid` to its key.
    fn resolve<'a>(&'a self, keyid: &'a str) -> ResolveFuture<'a>;
}

impl<R: KeyResolver + ?Sized> KeyResolver for Arc<R> {
    fn resolve<'a>(&'a self, keyid: &'a str) -> ResolveFuture<'a> {
        (**self).resolve(keyid)
    }
}

/// A fixed map of keyid → key.
#[derive(Debug, Clone, Default)]
pub struct StaticResolver {
    /// A weak key added with [`StaticResolver::with_ed25519`] is kept as its refusal.
    keys: BTreeMap<String, Result<ResolvedKey, ResolveError>>,
}

impl StaticResolver {
    /// An empty resolver.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an Ed25519 key for `keyid`. A weak key (see [`ResolvedKey::ed25519`]) is not refused
    /// here, as this builder cannot fail: `keyid` then resolves to [`ResolveError::Refused`],
    /// never to the key. To refuse it while configuring, add
    /// `with_key(keyid, ResolvedKey::ed25519(public)?)` instead.
    #[must_use]
    pub fn with_ed25519(mut self, keyid: impl Into<String>, public: &PublicKey) -> Self {
        self.keys.insert(keyid.into(), ResolvedKey::ed25519(public));
        self
    }

    /// Adds any resolved key for `keyid`.
    #[must_use]
    pub fn with_key(mut self, keyid: impl Into<String>, key: ResolvedKey) -> Self {
        self.keys.insert(keyid.into(), Ok(key));
        self
    }

    /// Loads a JSON file `{"keyid": "<public key in any format vouch reads>", …}`.
    ///
    /// # Errors
    ///
    /// [`Error::File`] naming the file and the entry that is wrong (a weak key included).
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let file_error = |reason: String| Error::File {
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
        let map: BTreeMap<String, serde_json::Value> = serde_json::from_str(&text)
            .map_err(|e| file_error(format!("not a JSON object of keyid to key: {e}")))?;
        let mut out = Self::new();
        for (keyid, value) in map {
            let text = match &value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let key = parse_public(&text)
                .map_err(|e| e.to_string())
                .and_then(|public| ResolvedKey::ed25519(&public).map_err(|e| e.to_string()))
                .map_err(|e| file_error(format!("key for {keyid:?}: {e}")))?;
            out = out.with_key(keyid, key);
        }
        Ok(out)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True if no key is known.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl KeyResolver for StaticResolver {
    fn resolve<'a>(&'a self, keyid: &'a str) -> ResolveFuture<'a> {
        Box::pin(std::future::ready(
            self.keys
                .get(keyid)
                .cloned()
                .unwrap_or(Err(ResolveError::Unknown)),
        ))
    }
}

/// Two resolvers in turn: `first`, then, for a keyid `first` does not know
/// ([`ResolveError::Unknown`]), `then` (when there is one). Any other answer of `first`, a key
/// or a failure, is final: a keyid configured locally is never looked up elsewhere.
///
/// ```
/// use vouch_keys::{Fallback, HttpsConfig, HttpsResolver, StaticResolver};
/// # fn main() -> Result<(), vouch_keys::ResolveError> {
/// // Configured keys first; other URL keyids over HTTPS.
/// let https = HttpsResolver::new(HttpsConfig::default())?;
/// let resolver = Fallback::new(StaticResolver::new(), Some(https));
/// # let _ = resolver;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Fallback<A, B> {
    first: A,
    then: Option<B>,
}

impl<A, B> Fallback<A, B> {
    /// `first`, then `then` for the keyids `first` does not know.
    pub fn new(first: A, then: Option<B>) -> Self {
        Self { first, then }
    }
}

impl<A: KeyResolver, B: KeyResolver> KeyResolver for Fallback<A, B> {
    fn resolve<'a>(&'a self, keyid: &'a str) -> ResolveFuture<'a> {
        Box::pin(async move {
            match (self.first.resolve(keyid).await, &self.then) {
                (Err(ResolveError::Unknown), Some(then)) => then.resolve(keyid).await,
                (result, _) => result,
            }
        })
    }
}

/// The identity an address-style keyid claims: `https://host/agents/name@domain`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AddressClaim {
    /// The host serving the key.
    pub host: String,
    /// The claimed address, `name@domain`.
    pub address: String,
    /// The domain part of the address.
    pub domain: String,
}

/// Parses an address-style keyid; `None` for keyids of other shapes.
pub fn address_claim(keyid: &str) -> Option<AddressClaim> {
    let rest = keyid
        .strip_prefix("https://")
        .or_else(|| keyid.strip_prefix("http://"))?;
    let (authority, path) = rest.split_once('/')?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host.starts_with('[') {
        host.split_inclusive(']').next().unwrap_or(host)
    } else {
        match host.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        }
    };
    let address = path.rsplit_once("agents/").map(|(_, a)| a)?;
    let address = address
        .split(['?', '#'])
        .next()
        .unwrap_or(address)
        .trim_end_matches('/');
    let (name, domain) = address.split_once('@')?;
    if name.is_empty() || domain.is_empty() || domain.contains('/') {
        return None;
    }
    Some(AddressClaim {
        host: host.to_ascii_lowercase(),
        address: address.to_owned(),
        domain: domain.to_ascii_lowercase(),
    })
}

/// A custom identity rule: `(host, domain) -> allowed`.
pub type HostRule = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// Which hosts may speak for which address domains.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum IdentityRule {
    /// The keyid's host and the address domain have the same registrable domain (public suffix
    /// list): `keys.example.com` may speak for `bot@example.com`, `evil.net` may not.
    #[default]
    SameRegistrableDomain,
    /// The keyid's host must be the address domain itself.
    SameHost,
    /// A custom rule: `(host, domain) -> allowed`.
    Custom(HostRule),
}

impl fmt::Debug for IdentityRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SameRegistrableDomain => f.write_str("SameRegistrableDomain"),
            Self::SameHost => f.write_str("SameHost"),
            Self::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

impl IdentityRule {
    /// Whether `host` may speak for addresses at `domain`.
    pub fn allows(&self, host: &str, domain: &str) -> bool {
        match self {
            Self::SameHost => host.eq_ignore_ascii_case(domain),
            Self::SameRegistrableDomain => match (psl::domain_str(host), psl::domain_str(domain)) {
                (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                _ => false,
            },
            Self::Custom(f) => f(host, domain),
        }
    }

    /// Checks a keyid: an address-style keyid must have a host allowed to speak for its domain.
    /// Other keyids pass (they claim no address).
    ///
    /// # Errors
    ///
    /// [`ResolveError::Refused`] for a spoofed address.
    pub fn check(&self, keyid: &str) -> Result<(), ResolveError> {
        match address_claim(keyid) {
            Some(c) if !self.allows(&c.host, &c.domain) => Err(ResolveError::Refused(format!(
                "host {} may not speak for {}",
                c.host, c.address
            ))),
            _ => Ok(()),
        }
    }
}
