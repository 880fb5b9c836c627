//! The framework-agnostic decision: from request parts and body bytes to a verified caller or a
//! rejection. The tower layer, the CLI, the rmcp adapter and a gateway all call this.

use std::sync::Arc;

use http::request::Parts;
use vouch_httpsig::{
    Algorithm, BodyCheck, Error as SigError, ReplayGuard, RequestView, Verifier, VerifyPolicy,
};
use vouch_keys::{KeyResolver, PinCheckError, PinStore, StoreError, address_claim, verify_and_pin};

use crate::origin::{Origin, addressed};

/// Who may call: decides on the identity a keyid claims (its address, or the keyid itself).
///
/// Implemented for closures `Fn(&str) -> bool` and by [`AllowAll`].
pub trait Allowlist: Send + Sync {
    /// True if `identity` may call.
    fn admits(&self, identity: &str) -> bool;
}

impl<F: Fn(&str) -> bool + Send + Sync> Allowlist for F {
    fn admits(&self, identity: &str) -> bool {
        self(identity)
    }
}

/// Admits every identity whose signature verifies.
#[allow(
    clippy::exhaustive_structs,
    reason = "a unit marker, complete by definition"
)]
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Allowlist for AllowAll {
    fn admits(&self, _: &str) -> bool {
        true
    }
}

/// The caller a verified signature proves, inserted into the request extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifiedCaller {
    /// The identity: the address an address-style keyid claims (`name@domain`), else the keyid.
    pub identity: String,
    /// The signature's keyid.
    pub keyid: String,
    /// The key's fingerprint (RFC 7638 JWK thumbprint for Ed25519).
    pub thumbprint: String,
    /// The algorithm that verified.
    pub algorithm: Algorithm,
    /// The signature's `created` time, Unix seconds.
    pub created: Option<u64>,
}

/// The request signature the signature layer verified, put into the request extensions beside
/// the [`VerifiedCaller`]: what a signed response binds to (RFC 9421 §2.4, see
/// [`ResponseSigningLayer`](crate::ResponseSigningLayer)).
///
/// It keeps the request's method, its target URI as the client signed it (this server's origin,
/// path and query) and its `Signature` field lines, so that the response is bound to the request
/// as verified even if an inner layer rewrites the URI or the headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    label: String,
    method: http::Method,
    target: http::Uri,
    signature: http::HeaderMap,
}

impl SignedRequest {
    /// The label of the verified request signature.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The request's method.
    pub fn method(&self) -> &http::Method {
        &self.method
    }

    /// The target URI as verified: `scheme://authority/path?query`.
    pub fn target(&self) -> &http::Uri {
        &self.target
    }

    /// The request as a signature sees it, for `;req` components: method, target URI and the
    /// `Signature` field lines, no body.
    pub fn view(&self) -> RequestView<'_> {
        RequestView::from_parts(&self.method, &self.target, &self.signature, &[])
    }

    fn new(label: &str, parts: &Parts, origin: &Origin) -> Option<Self> {
        let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let target = http::Uri::builder()
            .scheme(origin.scheme())
            .authority(origin.authority())
            .path_and_query(path)
            .build()
            .ok()?;
        let mut signature = http::HeaderMap::new();
        for line in parts.headers.get_all("signature") {
            signature.append("signature", line.clone());
        }
        Some(Self {
            label: label.to_owned(),
            method: parts.method.clone(),
            target,
            signature,
        })
    }
}

/// Why a request was refused. The peer sees the status and a short reason; the detail goes to
/// `tracing`.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// 401: the signature is missing, invalid, replayed, or the caller is not admitted.
    Unauthorized {
        /// A short, stable reason for the peer (`expired`, `replayed`, `not_allowed`, …).
        reason: &'static str,
    },
    /// 421: the request was addressed (`Host`, `:authority`, absolute-form target) to an origin
    /// this server is not configured as. Refused before any key lookup.
    Misdirected,
    /// 408: the body did not arrive within the body timeout.
    Timeout,
    /// 413: the body is larger than the layer reads.
    PayloadTooLarge,
    /// 429: this caller (alone) is over a per-identity bound; retry after this many seconds.
    TooManyRequests {
        /// Seconds to wait (the `Retry-After` value).
        retry_after: u64,
    },
    /// 503: a store the decision needs failed (replay store full, Redis down). Never a pass.
    Unavailable,
}

impl Rejection {
    /// The HTTP status to answer with.
    pub fn status(&self) -> http::StatusCode {
        match self {
            Self::Unauthorized { .. } => http::StatusCode::UNAUTHORIZED,
            Self::Misdirected => http::StatusCode::MISDIRECTED_REQUEST,
            Self::Timeout => http::StatusCode::REQUEST_TIMEOUT,
            Self::PayloadTooLarge => http::StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooManyRequests { .. } => http::StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => http::StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The short reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unauthorized { reason } => reason,
            Self::Misdirected => "unknown_origin",
            Self::Timeout => "body_timeout",
            Self::PayloadTooLarge => "body_too_large",
            Self::TooManyRequests { .. } => "replay_share_exceeded",
            Self::Unavailable => "store_unavailable",
        }
    }
}

fn unauthorized(reason: &'static str) -> Rejection {
    Rejection::Unauthorized { reason }
}

/// Everything the signature check needs, configured once.
#[derive(Clone)]
pub struct SignaturePipeline {
    verifier: Verifier,
    resolver: Arc<dyn KeyResolver>,
    replay: Arc<dyn ReplayGuard>,
    pins: Option<Arc<dyn PinStore>>,
    allowlist: Arc<dyn Allowlist>,
    origins: Arc<[Origin]>,
}

impl SignaturePipeline {
    /// A pipeline for a server reached at `origin` (add more with
    /// [`SignaturePipeline::origin`]), with the MCP policy, the given key resolver and replay
    /// store, no pinning, and every verified identity admitted.
    ///
    /// There is no default origin: a server that took it from the request's `Host` would accept
    /// a request signed for another server that trusts the same agent (a relay).
    pub fn new(
        origin: Origin,
        resolver: impl KeyResolver + 'static,
        replay: impl ReplayGuard + 'static,
    ) -> Self {
        Self {
            verifier: Verifier::new(VerifyPolicy::mcp()),
            resolver: Arc::new(resolver),
            replay: Arc::new(replay),
            pins: None,
            allowlist: Arc::new(AllowAll),
            origins: Arc::from([origin]),
        }
    }

    /// Also accepts requests addressed to `origin` (another name or port of this server).
    #[must_use]
    pub fn origin(mut self, origin: Origin) -> Self {
        let mut all = self.origins.to_vec();
        if !all.contains(&origin) {
            all.push(origin);
        }
        self.origins = all.into();
        self
    }

    /// The origins this server accepts requests for, the first one given first.
    pub fn origins(&self) -> &[Origin] {
        &self.origins
    }

    /// The verification policy.
    #[must_use]
    pub fn policy(mut self, policy: VerifyPolicy) -> Self {
        self.verifier = Verifier::new(policy);
        self
    }

    /// Pins each identity's key on first verified, admitted use.
    #[must_use]
    pub fn pins(mut self, pins: impl PinStore + 'static) -> Self {
        self.pins = Some(Arc::new(pins));
        self
    }

    /// Who may call.
    #[must_use]
    pub fn allowlist(mut self, allowlist: impl Allowlist + 'static) -> Self {
        self.allowlist = Arc::new(allowlist);
        self
    }

    /// The components a client must cover, for the `WWW-Authenticate: Signature` challenge.
    pub fn challenge(&self) -> String {
        "Signature realm=\"vouch\", components=\"@method @target-uri content-digest\", params=\"created keyid nonce\"".to_owned()
    }

    /// Decides on one request whose body is already in memory: [`SignaturePipeline::verify_head`],
    /// then the body's digest and the replay store ([`HeadVerified::finish`]).
    ///
    /// # Errors
    ///
    /// The [`Rejection`] to answer with.
    pub async fn verify(
        &self,
        parts: &Parts,
        body: &[u8],
        now: u64,
    ) -> Result<VerifiedCaller, Rejection> {
        let mut head = self.verify_head(parts, now).await?;
        head.update(body);
        head.finish(now).await
    }

    /// Decides on everything the request head proves, before any body byte is read: the origin
    /// (421), the policy (parameters, time window, covered components, the Content-Digest
    /// field's form), the allowlist on the claimed identity (before any key fetch), key
    /// resolution, the signature, the allowlist and pin. The body is then fed to
    /// [`HeadVerified::update`] as it arrives, and [`HeadVerified::finish`] compares the digest
    /// and records the signature in the replay store.
    ///
    /// # Errors
    ///
    /// The [`Rejection`] to answer with.
    pub async fn verify_head(&self, parts: &Parts, now: u64) -> Result<HeadVerified, Rejection> {
        let Some(origin) = addressed(&self.origins, parts) else {
            tracing::info!(
                host = ?parts.headers.get(http::header::HOST),
                uri = %parts.uri,
                "request addressed to another origin: refused"
            );
            return Err(Rejection::Misdirected);
        };
        let view = RequestView::new(parts, &[])
            .with_scheme(origin.scheme())
            .with_authority(origin.authority());
        let (prepared, body) = self.verifier.prepare_head(view, now).map_err(|e| {
            tracing::info!(reason = e.code(), detail = %e, "signature rejected by policy");
            unauthorized(sig_reason(&e))
        })?;
        let keyid = prepared
            .keyid()
            .ok_or_else(|| unauthorized("missing_keyid"))?
            .to_owned();
        let identity = address_claim(&keyid).map_or_else(|| keyid.clone(), |c| c.address);
        if !self.allowlist.admits(&identity) {
            tracing::info!(%identity, "caller not on the allowlist (before any key fetch)");
            return Err(unauthorized("not_allowed"));
        }
        let key = self.resolver.resolve(&keyid).await.map_err(|e| {
            tracing::info!(%keyid, detail = %e, "key resolution failed");
            unauthorized("unknown_key")
        })?;
        let verified = match &self.pins {
            Some(pins) => {
                let admit = |_: &vouch_httpsig::Verified| self.allowlist.admits(&identity);
                match verify_and_pin(prepared, &key, &identity, admit, pins.as_ref()).await {
                    Ok((v, _)) => v,
                    Err(PinCheckError::Signature(e)) => {
                        tracing::info!(%identity, detail = %e, "signature rejected");
                        return Err(unauthorized(sig_reason(&e)));
                    }
                    Err(PinCheckError::NotAdmitted) => return Err(unauthorized("not_allowed")),
                    Err(PinCheckError::Pin(StoreError::PinMismatch { .. })) => {
                        tracing::warn!(%identity, "key differs from the pinned key");
                        return Err(unauthorized("key_not_pinned"));
                    }
                    Err(PinCheckError::Pin(e)) => {
                        tracing::error!(detail = %e, "pin store failed: refusing");
                        return Err(Rejection::Unavailable);
                    }
                    Err(_) => return Err(Rejection::Unavailable),
                }
            }
            None => prepared.verify(key.key()).map_err(|e| {
                tracing::info!(%identity, detail = %e, "signature rejected");
                unauthorized(sig_reason(&e))
            })?,
        };
        let caller = VerifiedCaller {
            identity,
            keyid,
            thumbprint: key.fingerprint().to_owned(),
            algorithm: verified.algorithm(),
            created: verified.params.created,
        };
        let Some(signed) = SignedRequest::new(&verified.label, parts, origin) else {
            tracing::info!(uri = %parts.uri, "request target is not a valid URI: refused");
            return Err(unauthorized("bad_signature"));
        };
        Ok(HeadVerified {
            caller,
            signed,
            verified,
            body,
            replay: self.replay.clone(),
        })
    }
}

/// A request whose head verified (origin, policy, key, signature, allowlist, pin), waiting for
/// its body: feed the body with [`HeadVerified::update`] as it arrives, then
/// [`HeadVerified::finish`]. Nothing is recorded in the replay store before `finish`, so a
/// request whose body never arrives (or does not match) leaves no trace there.
#[must_use = "the body digest and the replay store are checked by finish"]
pub struct HeadVerified {
    caller: VerifiedCaller,
    signed: SignedRequest,
    verified: vouch_httpsig::Verified,
    body: BodyCheck,
    replay: Arc<dyn ReplayGuard>,
}

impl HeadVerified {
    /// The caller the head proves (not yet the body, not yet fresh).
    pub fn caller(&self) -> &VerifiedCaller {
        &self.caller
    }

    /// The verified request signature, for binding the response to it.
    pub fn signed_request(&self) -> &SignedRequest {
        &self.signed
    }

    /// Hashes the next piece of the body.
    pub fn update(&mut self, chunk: &[u8]) {
        self.body.update(chunk);
    }

    /// Compares the body's digest with the signed Content-Digest, then records the signature
    /// in the replay store (under the caller's identity, whose share the store bounds).
    ///
    /// # Errors
    ///
    /// 401 `digest_mismatch` / `replayed`, 429 when the caller holds its share of the replay
    /// store, 503 when the store fails.
    pub async fn finish(self, now: u64) -> Result<VerifiedCaller, Rejection> {
        let identity = &self.caller.identity;
        self.body.finish().map_err(|e| {
            tracing::info!(%identity, detail = %e, "body does not match the signed digest");
            unauthorized(sig_reason(&e))
        })?;
        self.verified
            .check_replay(self.replay.as_ref(), identity, now)
            .await
            .map_err(|e| match e {
                SigError::Replayed => {
                    tracing::warn!(%identity, "replayed signature");
                    unauthorized("replayed")
                }
                SigError::ReplayShareExceeded { retry_after } => {
                    tracing::warn!(%identity, "caller holds its share of the replay store");
                    Rejection::TooManyRequests { retry_after }
                }
                e => {
                    tracing::error!(detail = %e, "replay store failed: refusing");
                    Rejection::Unavailable
                }
            })?;
        tracing::debug!(%identity, "signature verified");
        Ok(self.caller)
    }
}

impl core::fmt::Debug for HeadVerified {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HeadVerified")
            .field("caller", &self.caller)
            .finish_non_exhaustive()
    }
}

/// The coarse reason a signature error is reported with.
fn sig_reason(e: &SigError) -> &'static str {
    match e {
        SigError::NoSignature => "missing_signature",
        SigError::Expired | SigError::TooOld | SigError::CreatedInFuture => "expired",
        SigError::DigestMissing | SigError::DigestMismatch | SigError::DigestUnsupported => {
            "digest_mismatch"
        }
        SigError::MissingComponent(_) | SigError::MissingParameter(_) => "incomplete_signature",
        SigError::Replayed => "replayed",
        _ => "bad_signature",
    }
}

impl core::fmt::Debug for SignaturePipeline {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SignaturePipeline")
            .field("origins", &self.origins)
            .finish_non_exhaustive()
    }
}
