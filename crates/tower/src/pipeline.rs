//! The framework-agnostic decision: from request parts and body bytes to a verified caller or a
//! rejection. The tower layer, the CLI, the rmcp adapter and a gateway all call this.

use std::sync::Arc;

use http::request::Parts;
use vouch_httpsig::{
    Algorithm, Error as SigError, ReplayGuard, RequestView, Verifier, VerifyPolicy,
};
use vouch_keys::{KeyResolver, PinCheckError, PinStore, StoreError, address_claim, verify_and_pin};

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
    /// 413: the body is larger than the layer reads.
    PayloadTooLarge,
    /// 503: a store the decision needs failed (replay store full, Redis down). Never a pass.
    Unavailable,
}

impl Rejection {
    /// The HTTP status to answer with.
    pub fn status(&self) -> http::StatusCode {
        match self {
            Self::Unauthorized { .. } => http::StatusCode::UNAUTHORIZED,
            Self::PayloadTooLarge => http::StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unavailable => http::StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The short reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unauthorized { reason } => reason,
            Self::PayloadTooLarge => "body_too_large",
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
    scheme: String,
}

impl SignaturePipeline {
    /// A pipeline with the MCP policy, the given key resolver and replay store, no pinning, every
    /// verified identity admitted, and `https` as the scheme clients use.
    pub fn new(resolver: impl KeyResolver + 'static, replay: impl ReplayGuard + 'static) -> Self {
        Self {
            verifier: Verifier::new(VerifyPolicy::mcp()),
            resolver: Arc::new(resolver),
            replay: Arc::new(replay),
            pins: None,
            allowlist: Arc::new(AllowAll),
            scheme: "https".to_owned(),
        }
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

    /// The scheme clients use to reach this server (`https` behind TLS, `http` on loopback).
    #[must_use]
    pub fn scheme(mut self, scheme: impl Into<String>) -> Self {
        self.scheme = scheme.into();
        self
    }

    /// The components a client must cover, for the `WWW-Authenticate: Signature` challenge.
    pub fn challenge(&self) -> String {
        "Signature realm=\"vouch\", components=\"@method @target-uri content-digest\", params=\"created keyid nonce\"".to_owned()
    }

    /// Decides on one request: parse and policy, allowlist pre-check on the claimed identity
    /// (before any key fetch), key resolution, signature, allowlist and pin, replay.
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
        // hyper hands over a relative URI: the authority comes from Host (or the URI, for HTTP/2).
        let host = parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
            .or_else(|| parts.uri.authority().map(|a| a.as_str().to_owned()));
        let mut view = RequestView::new(parts, body).with_scheme(&self.scheme);
        if let Some(host) = host.as_deref() {
            view = view.with_authority(host);
        }
        let prepared = self.verifier.prepare(view, now).map_err(|e| {
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
        verified
            .check_replay(self.replay.as_ref(), &identity, now)
            .await
            .map_err(|e| {
                if e.is_unavailable() {
                    tracing::error!(detail = %e, "replay store failed: refusing");
                    Rejection::Unavailable
                } else {
                    tracing::warn!(%identity, "replayed signature");
                    unauthorized("replayed")
                }
            })?;
        tracing::debug!(%identity, "signature verified");
        Ok(VerifiedCaller {
            identity,
            keyid,
            thumbprint: key.fingerprint().to_owned(),
            algorithm: verified.algorithm(),
            created: verified.params.created,
        })
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
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}
