//! Verification: policy over the head first, then the signature with the resolved key, then the
//! body against the signed Content-Digest, then replay.

use crate::alg::{Algorithm, VerifyingKey};
use crate::base::signature_base;
use crate::coalesce::Coalescer;
use crate::component::Component;
use crate::digest::BodyCheck;
use crate::error::Error;
use crate::message::Message;
use crate::params::{Params, ParseLimits, Received, combined, received};
use crate::policy::{AlgParam, CONTENT_DIGEST, DigestRule, KeyidRule, VerifyPolicy};
use crate::replay::{ReplayGuard, ReplayKey};
use crate::web_bot_auth::{SignatureAgent, covered_agent};

/// Verifies signed messages under one [`VerifyPolicy`].
///
/// Verification is split so that a server can decide things between the steps (allowlist the
/// claimed identity before fetching any key, resolve the key asynchronously, read the body only
/// from a caller whose signature verified):
///
/// 1. [`Verifier::prepare`] parses the signatures, picks one (by label or tag), applies the
///    policy (parameters, algorithm, time window, required components, Content-Digest over the
///    exact body bytes) and builds the signature base. No key is needed; the claimed `keyid` is
///    available afterwards. [`Verifier::prepare_head`] does the same from the head alone and
///    returns a [`BodyCheck`] that the body is fed to later.
/// 2. [`Prepared::verify`] checks the signature with the resolved key.
/// 3. With [`Verifier::prepare_head`]: [`BodyCheck::update`] with the body as it arrives, then
///    [`BodyCheck::finish`] compares it with the signed Content-Digest.
/// 4. [`Verified::check_replay`] records it in a [`ReplayGuard`], refusing a replay. Do this
///    after the body check, so that a request whose body does not match leaves no entry.
///
/// ```
/// use vouch_httpsig::*;
/// # fn main() -> Result<(), Error> {
/// let key = SigningKey::ed25519_from_seed(&[7; 32])?;
/// let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#.to_vec();
/// let mut request = http::Request::post("https://mcp.example/mcp")
///     .header("content-digest", mcp_content_digest(&body))
///     .body(body)
///     .unwrap();
/// let now = 1_700_000_000;
/// let spec = mcp_spec(&RequestView::of(&request), &key, "agent-a", None, now)?;
/// sign(RequestView::of(&request), &spec, &key)?.apply(request.headers_mut())?;
///
/// let verifier = Verifier::new(VerifyPolicy::mcp());
/// let prepared = verifier.prepare(RequestView::of(&request), now)?;
/// assert_eq!(prepared.keyid(), Some("agent-a"));
/// let verified = prepared.verify(&key.verifying_key()?)?;
/// assert_eq!(verified.algorithm(), Algorithm::Ed25519);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Verifier {
    policy: VerifyPolicy,
}

/// A signature that passed the policy, with its base built, waiting for its key.
#[derive(Debug, Clone)]
pub struct Prepared {
    label: String,
    components: Vec<Component>,
    params: Params,
    base: Vec<u8>,
    signature: Vec<u8>,
    algorithms: Vec<Algorithm>,
    keyid_rule: KeyidRule,
    alg_param: AlgParam,
    keep_until: u64,
    signature_agent: Option<SignatureAgent>,
}

/// A signature that verified.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Verified {
    /// The signature's label.
    pub label: String,
    /// Its parameters.
    pub params: Params,
    components: Vec<Component>,
    alg: Algorithm,
    replay_key: ReplayKey,
    keep_until: u64,
    signature_agent: Option<SignatureAgent>,
}

impl Verifier {
    /// A verifier applying `policy`.
    pub fn new(policy: VerifyPolicy) -> Self {
        Self { policy }
    }

    /// The policy.
    pub fn policy(&self) -> &VerifyPolicy {
        &self.policy
    }

    /// Picks the signature to verify and applies every policy check that needs no key,
    /// including the Content-Digest over the body of `message`.
    ///
    /// This is [`Verifier::prepare_head`] followed by [`BodyCheck::update`] with the whole body
    /// and [`BodyCheck::finish`], except that, the body being known, a signature whose body
    /// check fails is passed over for the next acceptable one.
    ///
    /// # Errors
    ///
    /// Any policy failure: [`Error::NoSignature`], [`Error::MissingParameter`],
    /// [`Error::AlgorithmNotAllowed`], [`Error::Expired`], [`Error::TooOld`],
    /// [`Error::CreatedInFuture`], [`Error::MissingComponent`], [`Error::DigestMissing`],
    /// [`Error::KeyidMismatch`] (a keyid not of the form the policy requires),
    /// [`Error::DigestMismatch`], [`Error::ComponentUnavailable`], [`Error::Malformed`] (which
    /// includes a label, a Content-Digest algorithm, a signature or component parameter, or a
    /// member of a dictionary field covered with `;key` or `;sf` named twice), ...
    /// When several signatures are examined and none passes, the first one's failure.
    pub fn prepare<'a>(
        &self,
        message: impl Into<Message<'a>>,
        now: u64,
    ) -> Result<Prepared, Error> {
        let message = message.into();
        self.select(&message, now, Some(message.body()))
            .map(|(prepared, _)| prepared)
    }

    /// Applies every policy check and builds the signature base from the head alone; the body
    /// of `message` is ignored.
    ///
    /// Everything a signature covers is in the head, the Content-Digest value included; only
    /// the comparison of that digest with the body needs the body. So a server can verify the
    /// signature ([`Prepared::verify`]) before it reads (or buffers) a single body byte, then
    /// feed the body to the returned [`BodyCheck`] as it arrives and call
    /// [`BodyCheck::finish`] before acting on the request or recording it as seen. Until
    /// `finish` succeeds, the body is unauthenticated.
    ///
    /// The Content-Digest is parsed here (a malformed value, an algorithm named twice, no
    /// accepted algorithm, or a member of the wrong length fail now); under
    /// [`DigestRule::Always`] a signature that does not cover a present Content-Digest fails
    /// now with [`Error::DigestMissing`]; under [`DigestRule::WithBody`] such a signature
    /// passes, and its [`BodyCheck`] refuses any body byte. When several signatures are
    /// examined, the first that passes the head checks is chosen.
    ///
    /// ```
    /// use vouch_httpsig::*;
    /// # fn main() -> Result<(), Error> {
    /// let key = SigningKey::ed25519_from_seed(&[7; 32])?;
    /// let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    /// let mut request = http::Request::post("https://mcp.example/mcp")
    ///     .header("content-digest", mcp_content_digest(body))
    ///     .body(())
    ///     .unwrap();
    /// let now = 1_700_000_000;
    /// let head = RequestView::from_parts(request.method(), request.uri(), request.headers(), b"");
    /// let spec = mcp_spec(&head, &key, "agent-a", None, now)?;
    /// let signature = sign(head, &spec, &key)?;
    /// signature.apply(request.headers_mut())?;
    ///
    /// // The server: the head first, then the body in chunks as it arrives.
    /// let (parts, ()) = request.into_parts();
    /// let verifier = Verifier::new(VerifyPolicy::mcp());
    /// let (prepared, mut body_check) = verifier.prepare_head(RequestView::new(&parts, &[]), now)?;
    /// let verified = prepared.verify(&key.verifying_key()?)?;
    /// for chunk in body.chunks(16) {
    ///     body_check.update(chunk);
    /// }
    /// body_check.finish()?;
    /// assert_eq!(verified.params.keyid.as_deref(), Some("agent-a"));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Verifier::prepare`], except that [`Error::DigestMismatch`] (but for a member of the
    /// wrong length) and the [`DigestRule::WithBody`] case of [`Error::DigestMissing`] come
    /// from [`BodyCheck::finish`].
    pub fn prepare_head<'a>(
        &self,
        message: impl Into<Message<'a>>,
        now: u64,
    ) -> Result<(Prepared, BodyCheck), Error> {
        self.select(&message.into(), now, None)
    }

    /// The first signature that passes; with `body`, that includes its body check (and the
    /// returned [`BodyCheck`] is spent: unconstrained).
    fn select(
        &self,
        message: &Message<'_>,
        now: u64,
        body: Option<&[u8]>,
    ) -> Result<(Prepared, BodyCheck), Error> {
        let p = &self.policy;
        let limits = ParseLimits {
            max_header_bytes: p.max_header_bytes,
            max_signatures: p.max_signatures,
        };
        let mut first_error = None;
        for candidate in received(message.headers(), &limits)? {
            if p.label.as_ref().is_some_and(|l| *l != candidate.label) {
                continue;
            }
            if p.required_tag.is_some() && candidate.params.tag != p.required_tag {
                first_error.get_or_insert(Error::TagMismatch);
                continue;
            }
            match self.check(message, candidate, now, body) {
                Ok(prepared) => return Ok(prepared),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or(Error::NoSignature))
    }

    fn check(
        &self,
        message: &Message<'_>,
        c: Received,
        now: u64,
        body: Option<&[u8]>,
    ) -> Result<(Prepared, BodyCheck), Error> {
        let p = &self.policy;
        let params = &c.params;
        if p.require_created && params.created.is_none() {
            return Err(Error::MissingParameter("created"));
        }
        if p.require_keyid && params.keyid.is_none() {
            return Err(Error::MissingParameter("keyid"));
        }
        if p.require_nonce && params.nonce.is_none() {
            return Err(Error::MissingParameter("nonce"));
        }
        if p.require_tag && params.tag.is_none() {
            return Err(Error::MissingParameter("tag"));
        }
        if p.min_nonce_bytes > 0
            && let Some(nonce) = &params.nonce
            && !nonce_has_bytes(nonce, p.min_nonce_bytes)
        {
            return Err(Error::Malformed(
                "nonce is not base64url of enough random bytes",
            ));
        }
        if p.keyid_rule == KeyidRule::JwkThumbprint
            && !params.keyid.as_deref().is_some_and(is_thumbprint_form)
        {
            return Err(Error::KeyidMismatch);
        }
        if p.alg_param == AlgParam::Checked
            && let Some(alg) = params.algorithm()?
            && !p.algorithms.contains(&alg)
        {
            return Err(Error::AlgorithmNotAllowed(alg.name().to_owned()));
        }
        if params.expires.is_some_and(|e| now >= e) {
            return Err(Error::Expired);
        }
        if p.require_expires && params.expires.is_none() {
            return Err(Error::MissingParameter("expires"));
        }
        if let (Some(max), Some(created), Some(expires)) =
            (p.max_lifetime, params.created, params.expires)
            && (expires < created || expires - created > max)
        {
            return Err(Error::LifetimeTooLong);
        }
        if let Some(created) = params.created {
            if created > now.saturating_add(p.future_skew) {
                return Err(Error::CreatedInFuture);
            }
            if now.saturating_sub(created) > p.max_age {
                return Err(Error::TooOld);
            }
        }
        for required in &p.required {
            if !c.components.contains(required) {
                return Err(Error::MissingComponent(required.to_string()));
            }
        }
        for header in &p.required_if_present {
            if message.headers().contains_key(header)
                && !covers_plain(&c.components, header.as_str())
            {
                return Err(Error::MissingComponent(format!("\"{header}\"")));
            }
        }
        for prefix in &p.required_prefix_if_present {
            for header in message.headers().keys() {
                if header.as_str().starts_with(prefix.as_str())
                    && !covers_plain(&c.components, header.as_str())
                {
                    return Err(Error::MissingComponent(format!("\"{header}\"")));
                }
            }
        }
        let signature_agent = if p.signature_agent {
            Some(covered_agent(
                message.headers(),
                &c.label,
                &c.components,
                p.max_header_bytes,
                p.legacy_signature_agent,
            )?)
        } else {
            None
        };
        let mut body_check = self.body_check(message, &c.components)?;
        if let Some(body) = body {
            body_check.update(body);
            body_check.finish()?;
            body_check = BodyCheck::unconstrained();
        }
        let base = signature_base(message, &c.components, &c.params_value)?;
        let prepared = Prepared {
            keep_until: p.last_valid_second(params.created, params.expires),
            label: c.label,
            components: c.components,
            params: c.params,
            base,
            signature: c.signature,
            algorithms: p.algorithms.clone(),
            signature_agent,
            keyid_rule: p.keyid_rule,
            alg_param: p.alg_param,
        };
        Ok((prepared, body_check))
    }

    /// What the body must satisfy, from the head: the covered Content-Digest if there is one
    /// (parsed, not yet compared), otherwise what the digest rule demands.
    fn body_check(
        &self,
        message: &Message<'_>,
        components: &[Component],
    ) -> Result<BodyCheck, Error> {
        let p = &self.policy;
        if covers_plain(components, "content-digest")
            && let Some(value) = combined(message.headers(), &CONTENT_DIGEST, p.max_header_bytes)?
        {
            return BodyCheck::digest(&value, &p.digest_algorithms);
        }
        match p.digest_rule {
            DigestRule::Always => Err(Error::DigestMissing),
            DigestRule::WithBody => Ok(BodyCheck::empty()),
            DigestRule::WhenCovered => Ok(BodyCheck::unconstrained()),
            DigestRule::UnlessEventStream if is_signed_event_stream(message, components) => {
                Ok(BodyCheck::unconstrained())
            }
            DigestRule::UnlessEventStream => Err(Error::DigestMissing),
        }
    }
}

/// True if `keyid` can be an RFC 7638 SHA-256 JWK thumbprint: 43 base64url characters that
/// decode (strictly) to 32 bytes.
fn is_thumbprint_form(keyid: &str) -> bool {
    use base64ct::Encoding as _;
    keyid.len() == 43 && base64ct::Base64UrlUnpadded::decode_vec(keyid).is_ok_and(|b| b.len() == 32)
}

/// True if `nonce` is base64url (unpadded or padded, strictly) of at least `min` bytes.
fn nonce_has_bytes(nonce: &str, min: usize) -> bool {
    use base64ct::{Base64Url, Base64UrlUnpadded, Encoding as _};
    Base64UrlUnpadded::decode_vec(nonce)
        .or_else(|_| Base64Url::decode_vec(nonce))
        .is_ok_and(|b| b.len() >= min)
}

/// True for a response whose signature covers a single `Content-Type` of `text/event-stream`
/// (parameters allowed). Only a covered Content-Type counts: otherwise anyone on the path could
/// relabel a signed JSON answer as a stream and drop the body binding.
fn is_signed_event_stream(message: &Message<'_>, components: &[Component]) -> bool {
    matches!(message, Message::Response(_))
        && covers_plain(components, "content-type")
        && crate::policy::is_event_stream(message.headers())
}

impl Prepared {
    /// The `keyid` the signature claims (not yet proven).
    pub fn keyid(&self) -> Option<&str> {
        self.params.keyid.as_deref()
    }

    /// The signature's label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The signature's parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The components the signature covers, in the order it lists them.
    pub fn components(&self) -> &[Component] {
        &self.components
    }

    /// The signature base that will be verified.
    pub fn base(&self) -> &[u8] {
        &self.base
    }

    /// The `Signature-Agent` member the signature covers, parsed, under a policy that requires
    /// one ([`VerifyPolicy::web_bot_auth`]); `None` otherwise. It is covered but not yet
    /// proven: fetch the key set it names, pick the key by `keyid`, then [`Prepared::verify`].
    ///
    /// [`VerifyPolicy::web_bot_auth`]: crate::VerifyPolicy::web_bot_auth
    pub fn signature_agent(&self) -> Option<&SignatureAgent> {
        self.signature_agent.as_ref()
    }

    /// Checks the signature with the resolved key.
    ///
    /// # Errors
    ///
    /// [`Error::AlgorithmNotAllowed`] if the key's algorithm is not allowed,
    /// [`Error::AlgorithmMismatch`] if the `alg` parameter names another algorithm (unless the
    /// policy ignores `alg`), [`Error::BadSignature`] if the signature does not verify,
    /// [`Error::KeyidMismatch`] if the policy requires the keyid to be the key's JWK thumbprint
    /// and it is not.
    pub fn verify(self, key: &VerifyingKey) -> Result<Verified, Error> {
        let alg = self.allowed(key)?;
        if !key.verify(&self.base, &self.signature) {
            return Err(Error::BadSignature);
        }
        let replay_key = self.replay_key();
        self.accept(key, alg, replay_key)
    }

    /// [`Prepared::verify`], with the signature verified by `coalescer` in a batch with the
    /// signatures other requests are verifying at the same moment (see [`crate::coalesce`]). The
    /// verdict and the errors are [`Prepared::verify`]'s.
    ///
    /// # Errors
    ///
    /// As [`Prepared::verify`].
    pub async fn verify_coalesced(
        mut self,
        key: &VerifyingKey,
        coalescer: &Coalescer,
    ) -> Result<Verified, Error> {
        let alg = self.allowed(key)?;
        let replay_key = self.replay_key();
        let base = std::mem::take(&mut self.base);
        if !coalescer.verify(key, base, &self.signature).await {
            return Err(Error::BadSignature);
        }
        self.accept(key, alg, replay_key)
    }

    /// The key's algorithm, if the policy and the `alg` parameter allow it.
    fn allowed(&self, key: &VerifyingKey) -> Result<Algorithm, Error> {
        let alg = key.algorithm();
        if !self.algorithms.contains(&alg) {
            return Err(Error::AlgorithmNotAllowed(alg.name().to_owned()));
        }
        if self.alg_param == AlgParam::Checked && self.params.algorithm()?.is_some_and(|a| a != alg)
        {
            return Err(Error::AlgorithmMismatch);
        }
        Ok(alg)
    }

    fn replay_key(&self) -> ReplayKey {
        let keyid = self.params.keyid.as_deref().unwrap_or("");
        ReplayKey::derive(keyid, self.params.nonce.as_deref(), &self.base)
    }

    /// The signature verified under `key`: the keyid rule, then the verified signature.
    fn accept(
        self,
        key: &VerifyingKey,
        alg: Algorithm,
        replay_key: ReplayKey,
    ) -> Result<Verified, Error> {
        if self.keyid_rule == KeyidRule::JwkThumbprint {
            let thumbprint = key.jwk_thumbprint().ok_or(Error::KeyidMismatch)?;
            if self.params.keyid.as_deref() != Some(thumbprint.as_str()) {
                return Err(Error::KeyidMismatch);
            }
        }
        Ok(Verified {
            label: self.label,
            params: self.params,
            components: self.components,
            alg,
            replay_key,
            keep_until: self.keep_until,
            signature_agent: self.signature_agent,
        })
    }
}

impl Verified {
    /// The algorithm that verified.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The components the signature covers, in the order it lists them.
    pub fn components(&self) -> &[Component] {
        &self.components
    }

    /// The covered `Signature-Agent` member, under a policy that requires one (see
    /// [`Prepared::signature_agent`]).
    pub fn signature_agent(&self) -> Option<&SignatureAgent> {
        self.signature_agent.as_ref()
    }

    /// The key this signature is recorded under in a replay store.
    pub fn replay_key(&self) -> ReplayKey {
        self.replay_key
    }

    /// The last Unix second at which this signature could pass the time window again: how long
    /// a replay store must remember it (computed from `created`, not from now, so that a
    /// signature created in the future is remembered for as long as it is valid).
    pub fn keep_until(&self) -> u64 {
        self.keep_until
    }

    /// Records the signature in `guard` under `owner` (the identity the server verified for
    /// it, which the store's per-identity share counts against), refusing a replay.
    ///
    /// # Errors
    ///
    /// [`Error::Replayed`], [`Error::ReplayShareExceeded`] (answer 429), or
    /// [`Error::ReplayStoreUnavailable`] (answer 503).
    pub async fn check_replay(
        &self,
        guard: &dyn ReplayGuard,
        owner: &str,
        now: u64,
    ) -> Result<(), Error> {
        guard
            .check_and_insert(self.replay_key, owner, self.keep_until, now)
            .await
    }
}

/// True if `components` covers the field `name` without parameters.
fn covers_plain(components: &[Component], name: &str) -> bool {
    components
        .iter()
        .any(|c| c.name() == name && c.params().is_empty())
}
