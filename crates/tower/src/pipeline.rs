//! The framework-agnostic decision: from request parts and body bytes to a verified caller or a
//! rejection. The tower layer, the CLI, the rmcp adapter and a gateway all call this.

use std::sync::Arc;

use http::request::Parts;
use vouch_httpsig::KeyidRule;
use vouch_httpsig::coalesce::Coalescer;
use vouch_httpsig::{
    Algorithm, BodyCheck, Error as SigError, ReplayGuard, RequestView, Verifier, VerifyPolicy, mcp,
};
use vouch_keys::{
    KeyResolver, PinStore, ResolvedKey, StoreError, address_claim, signature_agent_key,
};

/// The field SEP-2752 §2.6.1 carries a client's key in.
const SIGNATURE_AGENT: http::HeaderName = http::HeaderName::from_static("signature-agent");

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

/// Admits the identities matching one of its patterns, where `*` matches any run of
/// characters (`https://agents.example/*`, `*@agents.example`); a pattern without `*` matches
/// exactly that identity.
#[derive(Debug, Clone, Default)]
pub struct Patterns(Vec<String>);

impl Patterns {
    /// An allowlist of these patterns (none: nobody is admitted).
    pub fn new<I, S>(patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self(patterns.into_iter().map(Into::into).collect())
    }
}

impl Allowlist for Patterns {
    fn admits(&self, identity: &str) -> bool {
        self.0.iter().any(|p| glob(p, identity))
    }
}

/// True if `identity` matches `pattern`, where `*` matches any run of characters.
fn glob(pattern: &str, identity: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return identity.is_empty();
    };
    let Some(mut rest) = identity.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        // No `*`: an exact match.
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = rest.get(at + part.len()..).unwrap_or(""),
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
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
    /// The signature's `tag` (SEP-2752: the client's stable identifier across key rotations;
    /// claimed by the client, not proven: the identity is the keyid's).
    pub tag: Option<String>,
}

/// How the signature layer answers a refused request.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RefusalStyle {
    /// vouch's: `{"detail": {"error": kind, "detail": reason}}`, and on 401 the
    /// `WWW-Authenticate: Signature` challenge.
    #[default]
    Vouch,
    /// SEP-2752 §3.2-3.3: a 401 also carries `Accept-Signature` (RFC 9421 §5.1) naming what the
    /// policy requires of this request (components, `created`, `nonce`, a required tag), and
    /// its body is a JSON-RPC error: `{"jsonrpc": "2.0", "id": null, "error": {"code": -32001,
    /// "message": "invalid_signature", "data": {"reason": reason}}}`. Other statuses (408, 413,
    /// 421, 429, 503) are answered as [`RefusalStyle::Vouch`] does.
    Sep2752,
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
    style: RefusalStyle,
    signature_agent_keys: bool,
    coalescer: Option<Arc<Coalescer>>,
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
            style: RefusalStyle::Vouch,
            signature_agent_keys: false,
            coalescer: Some(Arc::new(
                Coalescer::new().yield_with(|| Box::pin(tokio::task::yield_now())),
            )),
        }
    }

    /// How Ed25519 signatures are verified: by this [`Coalescer`], in batches with the
    /// signatures other requests are verifying at the same moment (the default: each pipeline
    /// has its own, shared by its clones), or with `None`, one at a time. The verdicts are the
    /// same either way (vouch's one Ed25519 rule, ZIP-215); under load a batch costs less than
    /// its signatures one by one, and at low load a request waits one trip through the
    /// runtime's run queue (see [`vouch_httpsig::coalesce`]). Share one coalescer between
    /// pipelines that serve on the same runtime to batch across them. The default's leaders
    /// yield with `tokio::task::yield_now`, which lets requests whose sockets became readable
    /// join the round; a coalescer given here yields as it was built, so on tokio build it
    /// `Coalescer::new().yield_with(|| Box::pin(tokio::task::yield_now()))`.
    #[must_use]
    pub fn coalescer(mut self, coalescer: Option<Arc<Coalescer>>) -> Self {
        self.coalescer = coalescer;
        self
    }

    /// The coalescer Ed25519 signatures are verified by, if any.
    pub fn coalescing(&self) -> Option<&Arc<Coalescer>> {
        self.coalescer.as_ref()
    }

    /// The SEP-2752 profile: [`VerifyPolicy::sep2752`] and [`RefusalStyle::Sep2752`]. Keyids
    /// are JWK thumbprints, so the resolver must know keys by thumbprint (a fixed map, or an
    /// HTTP Message Signatures Directory); the identity is the thumbprint, and the client's
    /// `tag` is in [`VerifiedCaller::tag`].
    #[must_use]
    pub fn sep2752(self) -> Self {
        self.policy(VerifyPolicy::sep2752())
            .refusal_style(RefusalStyle::Sep2752)
    }

    /// SEP-2752 §3.1's capability advertisement for this pipeline: the value of the
    /// `authentication` member of the server's `ServerCapabilities` (in its `initialize`
    /// result), listing the policy's algorithms in its order of preference:
    /// `{"httpMessageSignatures": {"algorithms": [...], "requiresSignature": true}}`.
    ///
    /// vouch does not write it into `initialize` results itself (the gateway forwards the
    /// upstream's untouched): an MCP server behind the signature layer merges it into its
    /// capabilities. `requires_signature` is `true` for a server that, like one behind
    /// [`SignatureLayer`](crate::SignatureLayer), refuses unsigned requests.
    pub fn sep2752_capability(&self, requires_signature: bool) -> serde_json::Value {
        let algorithms: Vec<&str> = self
            .verifier
            .policy()
            .allowed_algorithms()
            .iter()
            .map(|a| a.name())
            .collect();
        serde_json::json!({
            "httpMessageSignatures": {
                "algorithms": algorithms,
                "requiresSignature": requires_signature,
            }
        })
    }

    /// Also accepts the key a request presents inline in `Signature-Agent` (SEP-2752 §2.6.1,
    /// the `data:` form; a URL is never fetched): the JWKS key whose thumbprint is the keyid is
    /// used instead of the resolver's. Off by default. Such a key is self-asserted, so only use
    /// this with a policy whose keyid is the key's thumbprint ([`VerifyPolicy::sep2752`]: any
    /// other policy is refused here, fail closed), and decide who may call with the allowlist
    /// (it sees the thumbprint before any key is read) and pins: with it on, anyone can make a
    /// key whose signatures verify.
    #[must_use]
    pub fn signature_agent_keys(mut self, accept: bool) -> Self {
        self.signature_agent_keys = accept;
        self
    }

    /// The key for `keyid`: from `Signature-Agent` when enabled and present in the `data:`
    /// form, else from the resolver.
    async fn key_for(&self, parts: &Parts, keyid: &str) -> Result<ResolvedKey, Rejection> {
        let thumbprint_policy = self
            .verifier
            .policy()
            .keyid_rule_is(KeyidRule::JwkThumbprint);
        let mut agents = parts.headers.get_all(SIGNATURE_AGENT).iter();
        if self.signature_agent_keys
            && thumbprint_policy
            && let Some(value) = agents.next()
        {
            if agents.next().is_some() {
                tracing::info!(%keyid, "several signature-agent fields: refused");
                return Err(unauthorized("unknown_key"));
            }
            match signature_agent_key(value.as_bytes(), keyid) {
                Ok(Some(key)) => return Ok(key),
                Ok(None) => {}
                Err(e) => {
                    tracing::info!(%keyid, detail = %e, "signature-agent key refused");
                    return Err(unauthorized("unknown_key"));
                }
            }
        }
        self.resolver.resolve(keyid).await.map_err(|e| {
            tracing::info!(%keyid, detail = %e, "key resolution failed");
            unauthorized("unknown_key")
        })
    }

    /// How refusals are answered.
    #[must_use]
    pub fn refusal_style(mut self, style: RefusalStyle) -> Self {
        self.style = style;
        self
    }

    /// The refusal style.
    pub fn style(&self) -> RefusalStyle {
        self.style
    }

    /// The `Accept-Signature` value for a refused request with these `headers`
    /// ([`VerifyPolicy::accept_signature`] of this pipeline's policy, label `sig1`).
    pub fn accept_signature(&self, headers: &http::HeaderMap, has_body: bool) -> String {
        self.verifier
            .policy()
            .accept_signature("sig1", headers, has_body)
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
        let key = self.key_for(parts, &keyid).await?;
        let verified = match &self.coalescer {
            Some(coalescer) => prepared.verify_coalesced(key.key(), coalescer).await,
            None => prepared.verify(key.key()),
        }
        .map_err(|e| {
            tracing::info!(%identity, detail = %e, "signature rejected");
            unauthorized(sig_reason(&e))
        })?;
        if let Some(pins) = &self.pins {
            if !self.allowlist.admits(&identity) {
                return Err(unauthorized("not_allowed"));
            }
            match pins.check_and_pin(&identity, key.fingerprint()).await {
                Ok(_) => {}
                Err(StoreError::PinMismatch { .. }) => {
                    tracing::warn!(%identity, "key differs from the pinned key");
                    return Err(unauthorized("key_not_pinned"));
                }
                Err(e) => {
                    tracing::error!(detail = %e, "pin store failed: refusing");
                    return Err(Rejection::Unavailable);
                }
            }
        }
        let caller = VerifiedCaller {
            identity,
            keyid,
            thumbprint: key.fingerprint().to_owned(),
            algorithm: verified.algorithm(),
            created: verified.params.created,
            tag: verified.params.tag.clone(),
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
        let Self {
            caller,
            verified,
            body,
            replay,
            signed: _,
        } = self;
        body.finish().map_err(|e| {
            tracing::info!(identity = %caller.identity, detail = %e, "body does not match the signed digest");
            unauthorized(sig_reason(&e))
        })?;
        record(caller, verified, replay.as_ref(), now).await
    }

    /// Finishes without the body, for an authorizer that never sees it (headers-only mode):
    /// the signature must cover `content-digest` unless the request is a `GET`, `HEAD` or
    /// `DELETE` without a `Content-Digest` field, and so must every `Mcp-Method`, `Mcp-Name`
    /// and `Mcp-Param-*` header present (whatever the policy: the decision rests on them); the
    /// digest is *not* compared. It is only
    /// "to be checked by the upstream", which must run a
    /// [`DigestCheckLayer`](crate::DigestCheckLayer); then the signature is recorded in the
    /// replay store.
    ///
    /// # Errors
    ///
    /// 401 `incomplete_signature` when the digest is not covered; as [`finish`](Self::finish)
    /// for the replay store.
    pub async fn finish_headers_only(
        self,
        parts: &Parts,
        now: u64,
    ) -> Result<VerifiedCaller, Rejection> {
        let bodiless = matches!(
            parts.method,
            http::Method::GET | http::Method::HEAD | http::Method::DELETE
        ) && !parts.headers.contains_key("content-digest");
        let covers = |name: &str| {
            let quoted = format!("\"{name}\"");
            self.verified
                .components()
                .iter()
                .any(|c| c.to_string() == quoted)
        };
        if !bodiless && !covers("content-digest") {
            tracing::info!(
                identity = %self.caller.identity,
                "headers-only check of a request whose signature does not cover content-digest"
            );
            return Err(unauthorized("incomplete_signature"));
        }
        // The decision rests on these: whatever the policy, they must be signed.
        let uncovered = parts
            .headers
            .keys()
            .map(http::HeaderName::as_str)
            .find(|h| {
                (*h == mcp::MCP_METHOD
                    || *h == mcp::MCP_NAME
                    || h.starts_with(mcp::MCP_PARAM_PREFIX))
                    && !covers(h)
            });
        if let Some(header) = uncovered {
            tracing::info!(
                identity = %self.caller.identity,
                header,
                "headers-only check of a request whose signature does not cover an MCP header"
            );
            return Err(unauthorized("incomplete_signature"));
        }
        record(self.caller, self.verified, self.replay.as_ref(), now).await
    }
}

/// Records the signature in the replay store.
async fn record(
    caller: VerifiedCaller,
    verified: vouch_httpsig::Verified,
    replay: &dyn ReplayGuard,
    now: u64,
) -> Result<VerifiedCaller, Rejection> {
    {
        let identity = &caller.identity;
        verified
            .check_replay(replay, identity, now)
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
    }
    Ok(caller)
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
        SigError::KeyidMismatch => "keyid_mismatch",
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
