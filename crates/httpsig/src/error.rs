//! Errors of signing and verifying.

use core::fmt;

/// Why a message could not be signed or did not verify.
///
/// The detail is for logs. A server should answer the peer with one coarse reason (see
/// [`Error::code`]) and, for [`Error::is_unavailable`], with 503 rather than 401.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A header or parameter is not well-formed.
    Malformed(&'static str),
    /// A feature this implementation does not support (trailers, an unknown derived component).
    Unsupported(&'static str),
    /// A covered component is absent from the message.
    ComponentUnavailable(String),
    /// The message has no signature, or none with the label or tag the policy asks for.
    NoSignature,
    /// More signatures than the policy examines.
    TooManySignatures,
    /// A signature header is larger than the policy allows.
    HeaderTooLarge,
    /// The policy requires this component and the signature does not cover it.
    MissingComponent(String),
    /// The policy requires this signature parameter and it is absent.
    MissingParameter(&'static str),
    /// The algorithm is not allowed by the policy.
    AlgorithmNotAllowed(String),
    /// The `alg` parameter does not match the key.
    AlgorithmMismatch,
    /// The `tag` parameter is not the one the policy requires.
    TagMismatch,
    /// The `keyid` is not of the form the policy requires, or does not name the key that
    /// verified (SEP-2752: the key's JWK thumbprint).
    KeyidMismatch,
    /// The `expires` time has passed.
    Expired,
    /// `created` is older than the policy's maximum age.
    TooOld,
    /// `created` is further in the future than the policy's allowed skew.
    CreatedInFuture,
    /// The message has a body (or the policy requires a digest) and no covered Content-Digest.
    DigestMissing,
    /// The Content-Digest does not match the body bytes.
    DigestMismatch,
    /// The Content-Digest names no algorithm this implementation accepts.
    DigestUnsupported,
    /// The signature does not verify with the key.
    BadSignature,
    /// The signature was seen before.
    Replayed,
    /// The replay store could not record the signature (full, or unreachable): fail closed.
    ReplayStoreUnavailable(&'static str),
    /// The signer already holds its share of the replay store: refuse this signer alone (429)
    /// until some of its entries expire.
    ReplayShareExceeded {
        /// Seconds until the signer's oldest entry expires (a `Retry-After` hint).
        retry_after: u64,
    },
    /// A key could not be parsed or used.
    Key(&'static str),
    /// `expires` is further after `created` than the policy allows (Web Bot Auth: 24 hours), or
    /// before it.
    LifetimeTooLong,
}

impl Error {
    /// A stable snake_case reason for logs, metrics and the coarse peer-facing error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::Unsupported(_) => "unsupported",
            Self::ComponentUnavailable(_) => "component_unavailable",
            Self::NoSignature => "no_signature",
            Self::TooManySignatures => "too_many_signatures",
            Self::HeaderTooLarge => "header_too_large",
            Self::MissingComponent(_) => "missing_component",
            Self::MissingParameter(_) => "missing_parameter",
            Self::AlgorithmNotAllowed(_) => "algorithm_not_allowed",
            Self::AlgorithmMismatch => "algorithm_mismatch",
            Self::TagMismatch => "tag_mismatch",
            Self::KeyidMismatch => "keyid_mismatch",
            Self::Expired => "expired",
            Self::TooOld => "too_old",
            Self::CreatedInFuture => "created_in_future",
            Self::DigestMissing => "digest_missing",
            Self::DigestMismatch => "digest_mismatch",
            Self::DigestUnsupported => "digest_unsupported",
            Self::BadSignature => "bad_signature",
            Self::Replayed => "replayed",
            Self::ReplayStoreUnavailable(_) => "replay_store_unavailable",
            Self::ReplayShareExceeded { .. } => "replay_share_exceeded",
            Self::Key(_) => "key",
            Self::LifetimeTooLong => "lifetime_too_long",
        }
    }

    /// True when the failure is the verifier's own (a store), not the peer's: answer 503.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::ReplayStoreUnavailable(_))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(why) => write!(f, "malformed: {why}"),
            Self::Unsupported(what) => write!(f, "unsupported: {what}"),
            Self::ComponentUnavailable(c) => {
                write!(f, "covered component {c} is not in the message")
            }
            Self::NoSignature => f.write_str("no acceptable signature"),
            Self::TooManySignatures => f.write_str("too many signatures"),
            Self::HeaderTooLarge => f.write_str("signature header too large"),
            Self::MissingComponent(c) => {
                write!(f, "signature does not cover required component {c}")
            }
            Self::MissingParameter(p) => write!(f, "signature lacks required parameter {p}"),
            Self::AlgorithmNotAllowed(a) => write!(f, "algorithm {a} not allowed"),
            Self::AlgorithmMismatch => f.write_str("alg parameter does not match the key"),
            Self::TagMismatch => f.write_str("tag parameter does not match"),
            Self::KeyidMismatch => f.write_str("keyid is not the form or the key required"),
            Self::Expired => f.write_str("signature expired"),
            Self::TooOld => f.write_str("signature too old"),
            Self::CreatedInFuture => f.write_str("signature created in the future"),
            Self::DigestMissing => f.write_str("content-digest missing or not covered"),
            Self::DigestMismatch => f.write_str("content-digest does not match the body"),
            Self::DigestUnsupported => f.write_str("content-digest has no supported algorithm"),
            Self::BadSignature => f.write_str("signature does not verify"),
            Self::Replayed => f.write_str("signature replayed"),
            Self::ReplayStoreUnavailable(why) => write!(f, "replay store unavailable: {why}"),
            Self::ReplayShareExceeded { retry_after } => write!(
                f,
                "signer holds its share of the replay store (retry after {retry_after} s)"
            ),
            Self::Key(why) => write!(f, "key error: {why}"),
            Self::LifetimeTooLong => f.write_str("expires is too far after created"),
        }
    }
}

impl std::error::Error for Error {}
