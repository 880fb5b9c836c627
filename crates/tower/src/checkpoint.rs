//! The layers' whole decision as one framework-agnostic entry point, for hosts that are not a
//! tower stack: an external authorizer, or a server in another language that reads the body
//! itself.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http::request::Parts;

use crate::audit::AuditHook;
use crate::capability::CapabilityPipeline;
use crate::capability_layer::{CapabilityLayer, Grants, StrictMessageLayer};
use crate::checked::Check as _;
use crate::pipeline::{HeadVerified, Rejection, SignaturePipeline, SignedRequest, VerifiedCaller};
use crate::rate_limit::RateLimitLayer;
use crate::response::Denial;
use crate::session::{SessionBindingLayer, SessionTicket};
use crate::signature::{BoxError, DEFAULT_BODY_TIMEOUT, DEFAULT_MAX_BODY_BYTES, SignatureLayer};

/// Every check vouch's layers make on a request, in the gateway's order, callable without
/// tower: [`SignatureLayer`] → [`RateLimitLayer`] → (optionally) [`SessionBindingLayer`] →
/// [`CapabilityLayer`] (or, without token roots, [`StrictMessageLayer`]). It runs the layers' own code, so it refuses exactly what they
/// refuse and answers with the same [`Denial`]s (status, fields, JSON body), and reports the
/// same decisions to the audit hook.
///
/// Two steps, for hosts that read the body themselves:
///
/// 1. [`Checkpoint::head`] on the request head only: a declared `Content-Length` over the cap
///    (413), the origin (421, before any key lookup), the signature policy, allowlist, key and
///    pin (401, 503). No body byte is needed and nothing is recorded in the replay store.
/// 2. [`Pending::finish`] with the whole body: the signed digest and the replay store (401,
///    429, 503), the per-identity rate limit (429), with [session
///    binding](CheckpointBuilder::sessions) the MCP session (403, 404, 429, 503), the JSON-RPC
///    message and MCP headers (400), the token and its grants (401, 403). A host that cannot
///    get the body answers with [`Pending::too_large`] (413) or [`Pending::timed_out`] (408)
///    instead.
///
/// [`Checkpoint::check`] runs both over a whole [`http::Request`], reading its body up to the
/// cap within the body timeout.
///
/// ```
/// use vouch_keys::{ShardedReplayStore, StaticResolver};
/// use vouch_tower::{Checkpoint, Origin, SignaturePipeline};
///
/// # async fn run(parts: http::request::Parts, body: bytes::Bytes) -> Result<(), Box<dyn std::error::Error>> {
/// let origin: Origin = "https://mcp.example".parse()?;
/// let pipeline =
///     SignaturePipeline::new(origin, StaticResolver::new(), ShardedReplayStore::new(100_000));
/// // Identity only: no token roots, so no capability check (messages are still parsed strictly).
/// let checkpoint = Checkpoint::builder(pipeline).build();
/// let admitted = match checkpoint.head(parts).await {
///     Ok(pending) => pending.finish(body).await,
///     Err(denial) => Err(denial),
/// };
/// match admitted {
///     Ok(admitted) => println!("{} may call", admitted.caller().identity),
///     Err(denial) => println!("answer {} {:?}", denial.status(), denial.body()),
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Checkpoint {
    inner: Arc<Inner>,
}

struct Inner {
    signature: SignatureLayer,
    rate_limit: RateLimitLayer,
    sessions: Option<SessionBindingLayer>,
    message: Message,
}

/// What the checkpoint makes of the JSON-RPC message.
enum Message {
    /// Token and grants (and the strict reading).
    Capability(CapabilityLayer),
    /// The strict reading alone (identity-only).
    Strict(StrictMessageLayer),
    /// Nothing (identity-only, headers-only: the body is never seen).
    Unread,
}

impl core::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("signature", &self.inner.signature)
            .field("identity_only", &self.identity_only())
            .finish_non_exhaustive()
    }
}

/// Configures a [`Checkpoint`]; made by [`Checkpoint::builder`].
#[must_use = "build() makes the checkpoint"]
pub struct CheckpointBuilder {
    signature: SignaturePipeline,
    capability: Option<CapabilityPipeline>,
    rate_limit: RateLimitLayer,
    sessions: Option<SessionBindingLayer>,
    max_body_bytes: usize,
    body_timeout: Duration,
    headers_only: bool,
    audit: Option<Arc<dyn AuditHook>>,
}

impl core::fmt::Debug for CheckpointBuilder {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CheckpointBuilder")
            .field("signature", &self.signature)
            .field("identity_only", &self.capability.is_none())
            .field("max_body_bytes", &self.max_body_bytes)
            .field("body_timeout", &self.body_timeout)
            .field("headers_only", &self.headers_only)
            .finish_non_exhaustive()
    }
}

impl CheckpointBuilder {
    /// Also checks capability tokens with `pipeline` (its token header, operations, audiences
    /// and cache). Without it the checkpoint is identity-only: no token is asked for, but a
    /// message is still read strictly (400 otherwise).
    pub fn tokens(mut self, pipeline: CapabilityPipeline) -> Self {
        self.capability = Some(pipeline);
        self
    }

    /// The per-identity rate limit (default [`RateLimitLayer::default`]).
    pub fn rate_limit(mut self, layer: RateLimitLayer) -> Self {
        self.rate_limit = layer;
        self
    }

    /// Binds each MCP session to the caller whose request created it, after the rate limit
    /// (the gateway's order): the host hands the server's answer to the [`SessionTicket`] of
    /// each admitted request ([`Admitted::take_session`]). Off by default (an external
    /// authorizer never sees answers).
    pub fn sessions(mut self, layer: SessionBindingLayer) -> Self {
        self.sessions = Some(layer);
        self
    }

    /// The largest body (default [`DEFAULT_MAX_BODY_BYTES`]; larger: 413).
    pub fn max_body_bytes(mut self, max: usize) -> Self {
        self.max_body_bytes = max;
        self
    }

    /// How long [`Checkpoint::check`] waits for the whole body (default
    /// [`DEFAULT_BODY_TIMEOUT`]; slower: 408). Hosts that read the body themselves read it as
    /// [`Checkpoint::body_timeout`] says.
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// Decides on the head alone ([`SignatureLayer::headers_only`],
    /// [`CapabilityLayer::headers_only`]): [`Pending::finish`] ignores the body. Only for an
    /// authorizer whose upstream runs a [`DigestCheckLayer`](crate::DigestCheckLayer).
    pub fn headers_only(mut self) -> Self {
        self.headers_only = true;
        self
    }

    /// Reports every decision of every step to `hook` (for example a
    /// [`SigningStats`](crate::SigningStats)).
    pub fn audit(mut self, hook: impl AuditHook + 'static) -> Self {
        self.audit = Some(Arc::new(hook));
        self
    }

    /// The checkpoint. Clones share everything (one rate limiter, one replay store).
    pub fn build(self) -> Checkpoint {
        let hook = self.audit;
        let message = match self.capability {
            Some(pipeline) => {
                let mut layer = CapabilityLayer::new(pipeline).max_body_bytes(self.max_body_bytes);
                if self.headers_only {
                    layer = layer.headers_only();
                }
                if let Some(hook) = &hook {
                    layer = layer.audit(hook.clone());
                }
                Message::Capability(layer)
            }
            None if self.headers_only => Message::Unread,
            None => {
                Message::Strict(StrictMessageLayer::default().max_body_bytes(self.max_body_bytes))
            }
        };
        let rate_limit = match &hook {
            Some(hook) => self.rate_limit.audit(hook.clone()),
            None => self.rate_limit,
        };
        let sessions = match (&hook, self.sessions) {
            (Some(hook), Some(layer)) => Some(layer.audit(hook.clone())),
            (_, sessions) => sessions,
        };
        let mut signature = SignatureLayer::new(self.signature)
            .max_body_bytes(self.max_body_bytes)
            .body_timeout(self.body_timeout);
        if self.headers_only {
            signature = signature.headers_only();
        }
        if let Some(hook) = hook {
            signature = signature.audit(hook);
        }
        Checkpoint {
            inner: Arc::new(Inner {
                signature,
                rate_limit,
                sessions,
                message,
            }),
        }
    }
}

impl Checkpoint {
    /// A checkpoint verifying signatures with `signature`: identity-only unless given
    /// [`tokens`](CheckpointBuilder::tokens); the default rate limit, body cap and timeout.
    pub fn builder(signature: SignaturePipeline) -> CheckpointBuilder {
        CheckpointBuilder {
            signature,
            capability: None,
            rate_limit: RateLimitLayer::default(),
            sessions: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            headers_only: false,
            audit: None,
        }
    }

    /// True if no token is checked.
    pub fn identity_only(&self) -> bool {
        !matches!(self.inner.message, Message::Capability(_))
    }

    /// The largest body accepted.
    pub fn max_body_bytes(&self) -> usize {
        self.inner.signature.body_cap()
    }

    /// How long the whole body may take to arrive.
    pub fn body_timeout(&self) -> Duration {
        self.inner.signature.body_deadline()
    }

    /// Step 1: decides on the request head (`Host` included: the origin is checked against
    /// it, never trusted), before any body byte is read. A head that declares a body by
    /// `Content-Length` or `Transfer-Encoding` is taken to have one (a refusal then says
    /// `Connection: close`, as the body stays unread).
    ///
    /// # Errors
    ///
    /// The [`Denial`] to answer with: 413 (declared length over the cap), 421, 401, 503.
    pub async fn head(&self, parts: Parts) -> Result<Pending, Denial> {
        let has_body = declares_body(&parts);
        self.head_with(parts, has_body).await
    }

    async fn head_with(&self, parts: Parts, has_body: bool) -> Result<Pending, Denial> {
        let head = self.inner.signature.head(&parts, has_body).await?;
        Ok(Pending {
            checkpoint: self.clone(),
            parts,
            head,
            has_body,
        })
    }

    /// Both steps over a whole request: the head, then its body read up to the cap within the
    /// body timeout (in headers-only mode the body is not read).
    ///
    /// # Errors
    ///
    /// The [`Denial`] to answer with.
    pub async fn check<B>(&self, request: Request<B>) -> Result<Admitted, Denial>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = request.into_parts();
        let has_body = http_body::Body::size_hint(&body).exact() != Some(0);
        let mut pending = self.head_with(parts, has_body).await?;
        if self.inner.signature.is_headers_only() {
            return pending.finish(Bytes::new()).await;
        }
        let signature = &self.inner.signature;
        let bytes = signature
            .read(&pending.parts, body, &mut pending.head, has_body)
            .await?;
        pending.finish_hashed(bytes).await
    }

    /// The answer to a request whose body is known to be over the cap before anything is
    /// checked (a proxy that cut it, and sent what it kept): 413, as for a declared length
    /// over the cap, reported to the audit hook. The host has read what it was sent, so the
    /// answer does not close the connection.
    pub fn too_large(&self, parts: &Parts) -> Denial {
        self.inner.signature.refuse_too_large(parts, false)
    }
}

/// True if the head announces a body.
fn declares_body(parts: &Parts) -> bool {
    parts.headers.contains_key(http::header::TRANSFER_ENCODING)
        || parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

/// A request whose head passed [`Checkpoint::head`], waiting for its body.
#[must_use = "the body, the replay store, the rate limit and the token are checked by finish"]
pub struct Pending {
    checkpoint: Checkpoint,
    parts: Parts,
    head: HeadVerified,
    has_body: bool,
}

impl core::fmt::Debug for Pending {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Pending")
            .field("caller", self.head.caller())
            .finish_non_exhaustive()
    }
}

impl Pending {
    /// The caller the head's signature proves (the body and freshness are not yet checked).
    pub fn caller(&self) -> &VerifiedCaller {
        self.head.caller()
    }

    /// The request head.
    pub fn parts(&self) -> &Parts {
        &self.parts
    }

    /// Step 2, with the whole body (ignored in headers-only mode).
    ///
    /// # Errors
    ///
    /// The [`Denial`] to answer with: 401 (digest, replayed, token), 429 (replay share, rate
    /// limit), 503 (a store failed), 400 (the message or its MCP headers), 403 (not granted).
    pub async fn finish(mut self, body: Bytes) -> Result<Admitted, Denial> {
        if !self.checkpoint.inner.signature.is_headers_only() {
            self.head.update(&body);
        }
        self.finish_hashed(body).await
    }

    /// The answer when the body is larger than [`Checkpoint::max_body_bytes`] (413; the rest
    /// of it is left unread, so the answer says `Connection: close`).
    pub fn too_large(self) -> Denial {
        let signature = &self.checkpoint.inner.signature;
        signature.body_failed(&self.parts, &self.head, &Rejection::PayloadTooLarge, true)
    }

    /// The answer when the body did not arrive within [`Checkpoint::body_timeout`] (408,
    /// `Connection: close`).
    pub fn timed_out(self) -> Denial {
        let signature = &self.checkpoint.inner.signature;
        signature.body_failed(&self.parts, &self.head, &Rejection::Timeout, self.has_body)
    }

    /// Step 2 once the body went through the digest.
    async fn finish_hashed(self, body: Bytes) -> Result<Admitted, Denial> {
        let Self {
            checkpoint,
            mut parts,
            head,
            has_body,
        } = self;
        let inner = &checkpoint.inner;
        let (caller, signed) = if inner.signature.is_headers_only() {
            let caller = inner
                .signature
                .finish_headers_only(&parts, head, has_body)
                .await?;
            (caller, None)
        } else {
            let (caller, signed) = inner.signature.finish(&parts, head, has_body).await?;
            (caller, Some(signed))
        };
        inner
            .rate_limit
            .admit(&caller.identity, parts.method.as_str())?;
        let session = match &inner.sessions {
            Some(layer) => Some(
                layer
                    .enter(Some(&caller), &parts.method, &parts.headers)
                    .await?,
            ),
            None => None,
        };
        parts.extensions.insert(caller.clone());
        match &inner.message {
            Message::Capability(layer) => layer.decide(&mut parts, &body).await?,
            Message::Strict(layer) => layer.decide(&mut parts, &body).await?,
            Message::Unread => {}
        }
        let grants = parts.extensions.remove::<Grants>();
        Ok(Admitted {
            caller,
            signed,
            grants,
            session,
        })
    }
}

/// A request every check let through.
#[derive(Debug)]
pub struct Admitted {
    caller: VerifiedCaller,
    signed: Option<SignedRequest>,
    grants: Option<Grants>,
    session: Option<SessionTicket>,
}

impl Admitted {
    /// The verified signer.
    pub fn caller(&self) -> &VerifiedCaller {
        &self.caller
    }

    /// What the verified token grants; `None` when identity-only.
    pub fn grants(&self) -> Option<&Grants> {
        self.grants.as_ref()
    }

    /// The verified request signature, for binding a signed response to it; `None` in
    /// headers-only mode.
    pub fn signed_request(&self) -> Option<&SignedRequest> {
        self.signed.as_ref()
    }

    /// With [session binding](CheckpointBuilder::sessions): the ticket to hand the server's
    /// answer to ([`SessionTicket::answered`]), once.
    pub fn take_session(&mut self) -> Option<SessionTicket> {
        self.session.take()
    }

    /// The caller, the grants and the signature.
    pub fn into_parts(self) -> (VerifiedCaller, Option<Grants>, Option<SignedRequest>) {
        (self.caller, self.grants, self.signed)
    }
}
