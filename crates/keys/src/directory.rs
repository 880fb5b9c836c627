//! Web Bot Auth key discovery: from a covered `Signature-Agent` member and a thumbprint `keyid`
//! to the key, through the HTTPS resolver's guards and a bounded cache.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use reqwest::Url;
use serde_json::Value;
use vouch_httpsig::{AgentKind, DIRECTORY_MEDIA_TYPE, SignatureAgent};

use crate::cache::{CacheConfig, CachingResolver};
use crate::format::jwk_thumbprint;
use crate::https::{HttpsConfig, HttpsResolver, is_thumbprint, jwk_key};
use crate::resolve::{KeyResolver, ResolveError, ResolveFuture, ResolvedKey};

/// Most keys a directory may list; a larger one is refused (the draft's "Key count" guard).
pub const MAX_DIRECTORY_KEYS: usize = 64;

/// How long a key that resolved stays usable while its directory cannot be fetched.
pub const STALE_IF_ERROR: Duration = Duration::from_secs(24 * 60 * 60);

/// Resolves the key of a Web Bot Auth signature from the key set its `Signature-Agent` member
/// names (draft-ietf-webbotauth-httpsig-protocol, "Key Distribution and Discovery").
///
/// For `type=directory` it fetches `<origin>/.well-known/http-message-signatures-directory` and
/// requires the media type `application/http-message-signatures-directory+json`; for
/// `type=jwks_uri` the URL itself, as `application/jwk-set+json` or `application/json`. Every
/// fetch goes through [`HttpsResolver`]'s guards: https only, no private, loopback or link-local
/// address (checked on the addresses the connection uses), no redirect followed, a timeout and
/// a body cap ([`HttpsConfig`]); any status but 200 fails. The set may list at most
/// [`MAX_DIRECTORY_KEYS`] keys. The key is the Ed25519 key whose RFC 7638 thumbprint, computed
/// here, equals the `keyid`; a directory key whose `kid` differs from its own thumbprint is
/// refused (the draft requires the `kid`, when present, to be the thumbprint). Weak keys are
/// refused.
///
/// Results are cached per (key-set URL, keyid) pair, never per keyid alone, so a key learned
/// from one agent never verifies a request naming another ([`CacheConfig`]: bounded, with a
/// negative TTL well under the draft's five-minute ceiling, and one fetch for a burst).
///
/// A fetch that fails (network, status, redirect, media type, size, a malformed or mislabelled
/// set) is not evidence (the draft's "Discovery Failure"): the key last resolved for the same
/// pair stays usable for [`STALE_IF_ERROR`], so an operator's outage does not revoke its keys
/// everywhere. A directory that resolves and does not hold the key is evidence: the pair is
/// forgotten at once, which is how a removed key stops verifying.
///
/// Only ask it for the member of a signature the policy has checked
/// ([`Prepared::signature_agent`](vouch_httpsig::Prepared::signature_agent)): the member is
/// then covered by the signature, so nothing is fetched for a URL the signer did not sign.
///
/// ```no_run
/// use vouch_httpsig::{RequestView, Verifier, VerifyPolicy};
/// use vouch_keys::{CacheConfig, DirectoryResolver, HttpsConfig};
/// # async fn f(request: http::Request<Vec<u8>>, now: u64) -> Result<(), Box<dyn std::error::Error>> {
/// let resolver = DirectoryResolver::new(HttpsConfig::default(), CacheConfig::default())?;
/// let prepared = Verifier::new(VerifyPolicy::web_bot_auth()).prepare(RequestView::of(&request), now)?;
/// let agent = prepared.signature_agent().ok_or("no signature agent")?.clone();
/// let key = resolver.resolve_agent(&agent, prepared.keyid().unwrap_or_default()).await?;
/// let verified = prepared.verify(key.key())?;
/// println!("verified request from {}", agent.identifier());
/// # let _ = verified; Ok(()) }
/// ```
pub struct DirectoryResolver {
    cache: CachingResolver<Fetcher>,
    /// The last key each (kind, url, keyid) resolved to, and when; bounded like the cache.
    last_good: Mutex<BTreeMap<String, (ResolvedKey, Instant)>>,
    max_last_good: usize,
}

impl core::fmt::Debug for DirectoryResolver {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DirectoryResolver")
            .field("cached", &self.cache.len())
            .finish_non_exhaustive()
    }
}

/// Fetches one key set and picks a key from it; the cache key is `"<kind> <url> <keyid>"`.
struct Fetcher {
    https: Arc<HttpsResolver>,
}

impl DirectoryResolver {
    /// A resolver fetching under `https` and caching under `cache`.
    ///
    /// # Errors
    ///
    /// As [`HttpsResolver::new`].
    pub fn new(https: HttpsConfig, cache: CacheConfig) -> Result<Self, ResolveError> {
        Ok(Self {
            max_last_good: cache.max_entries,
            cache: CachingResolver::new(
                Fetcher {
                    https: Arc::new(HttpsResolver::new(https)?),
                },
                cache,
            ),
            last_good: Mutex::new(BTreeMap::new()),
        })
    }

    /// The key `keyid` names in the key set `agent` points to.
    ///
    /// # Errors
    ///
    /// [`ResolveError::Refused`] for a target the guards refuse (address, scheme, redirect) or a
    /// weak or mislabelled key; [`ResolveError::Fetch`] for a failed fetch, another status than
    /// 200, a wrong media type, an oversized or malformed set; [`ResolveError::Unknown`] when
    /// `keyid` is not a thumbprint or no key in the set has it.
    pub async fn resolve_agent(
        &self,
        agent: &SignatureAgent,
        keyid: &str,
    ) -> Result<ResolvedKey, ResolveError> {
        self.resolve_url(agent.kind(), agent.fetch_url(), keyid)
            .await
    }

    /// As [`DirectoryResolver::resolve_agent`], with the kind and the key-set URL given
    /// directly (`http://` URLs only when [`HttpsConfig::allow_http`] is set, for tests).
    ///
    /// # Errors
    ///
    /// As [`DirectoryResolver::resolve_agent`].
    pub async fn resolve_url(
        &self,
        kind: AgentKind,
        url: &str,
        keyid: &str,
    ) -> Result<ResolvedKey, ResolveError> {
        if !is_thumbprint(keyid) {
            return Err(ResolveError::Unknown);
        }
        if url.contains(' ') {
            return Err(ResolveError::Refused("key set url has a space".into()));
        }
        let id = format!("{} {url} {keyid}", kind.name());
        let outcome = self.cache.resolve(&id).await;
        let Ok(mut last_good) = self.last_good.lock() else {
            return outcome;
        };
        let now = Instant::now();
        match outcome {
            Ok(key) => {
                if !last_good.contains_key(&id) && last_good.len() >= self.max_last_good {
                    // Make room: the entry resolved longest ago goes.
                    let oldest = last_good
                        .iter()
                        .min_by_key(|(_, (_, at))| *at)
                        .map(|(k, _)| k.clone());
                    if let Some(oldest) = oldest {
                        last_good.remove(&oldest);
                    }
                }
                if self.max_last_good > 0 {
                    last_good.insert(id, (key.clone(), now));
                }
                Ok(key)
            }
            Err(ResolveError::Unknown) => {
                // The set resolved and does not hold the key: evidence, the pair is forgotten.
                last_good.remove(&id);
                Err(ResolveError::Unknown)
            }
            Err(failure) => match last_good.get(&id) {
                Some((key, at)) if now.duration_since(*at) <= STALE_IF_ERROR => Ok(key.clone()),
                _ => Err(failure),
            },
        }
    }

    /// Entries cached (resolved, failed or in flight).
    pub fn cached(&self) -> usize {
        self.cache.len()
    }
}

impl KeyResolver for Fetcher {
    fn resolve<'a>(&'a self, id: &'a str) -> ResolveFuture<'a> {
        Box::pin(async move {
            let mut parts = id.splitn(3, ' ');
            let (Some(kind), Some(url), Some(keyid)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(ResolveError::Unknown);
            };
            let kind = match kind {
                "directory" => AgentKind::Directory,
                "jwks_uri" => AgentKind::JwksUri,
                _ => return Err(ResolveError::Unknown),
            };
            let url =
                Url::parse(url).map_err(|e| ResolveError::Refused(format!("key set url: {e}")))?;
            let accept = match kind {
                AgentKind::Directory => DIRECTORY_MEDIA_TYPE,
                _ => "application/jwk-set+json, application/json",
            };
            let (content_type, body) = self.https.fetch_bytes(&url, accept).await?;
            let essence = content_type
                .as_deref()
                .and_then(|c| c.split(';').next())
                .map(|c| c.trim().to_ascii_lowercase())
                .unwrap_or_default();
            let media_ok = match kind {
                AgentKind::Directory => essence == DIRECTORY_MEDIA_TYPE,
                _ => matches!(
                    essence.as_str(),
                    "application/jwk-set+json" | "application/json"
                ),
            };
            if !media_ok {
                return Err(ResolveError::Fetch(format!(
                    "{url}: media type {essence:?} is not a key set's"
                )));
            }
            let doc: Value = serde_json::from_slice(&body)
                .map_err(|e| ResolveError::Fetch(format!("{url}: not JSON: {e}")))?;
            pick(&doc, keyid, kind).map_err(|e| match e {
                ResolveError::Fetch(why) => ResolveError::Fetch(format!("{url}: {why}")),
                other => other,
            })
        })
    }
}

/// The key with thumbprint `keyid` in the JWK Set `doc`.
fn pick(doc: &Value, keyid: &str, kind: AgentKind) -> Result<ResolvedKey, ResolveError> {
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| ResolveError::Fetch("not a JWK Set".into()))?;
    if keys.len() > MAX_DIRECTORY_KEYS {
        return Err(ResolveError::Fetch(format!(
            "more than {MAX_DIRECTORY_KEYS} keys"
        )));
    }
    for jwk in keys {
        let Some(public) = jwk_key(jwk) else {
            continue;
        };
        if jwk_thumbprint(&public) != keyid {
            continue;
        }
        let kid = jwk.get("kid").and_then(Value::as_str);
        if kind == AgentKind::Directory && kid.is_some_and(|k| k != keyid) {
            return Err(ResolveError::Refused(
                "the directory labels the key with another kid than its thumbprint".into(),
            ));
        }
        return ResolvedKey::ed25519(&public);
    }
    Err(ResolveError::Unknown)
}
