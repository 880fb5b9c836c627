//! Errors of token building, decoding and verification.

use core::fmt;

/// Why a token could not be minted, attenuated, decoded or verified.
///
/// The variants fall into three groups. [`Error::is_forbidden`] is true for the authorization
/// failures ([`Error::ToolNotGranted`], [`Error::OperationNotGranted`]): the token is sound but
/// does not cover the request (an HTTP layer answers 403). [`Error::is_invalid_token`] is true for
/// every failure of the token itself (an HTTP layer answers 401). The rest are errors of the
/// caller's own request to this library, such as a refused attenuation.
///
/// The messages are detailed and meant for logs. Do not send them to the peer verbatim: say
/// "invalid token" or "forbidden" and keep the detail in your logs.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The bytes are not a well-formed token of a supported version.
    Malformed(Malformed),
    /// A block signature or the final proof does not verify.
    BadSignature,
    /// The token names a root key the verifier does not hold.
    UnknownRootKey,
    /// The token's expiry has passed.
    Expired,
    /// The token's not-before time has not come yet.
    NotYetValid,
    /// One of the token's revocation ids is on the revocation list.
    Revoked,
    /// The token is restricted to audiences that do not include this verifier.
    WrongAudience,
    /// The token is bound to a holder, and the request was not signed by that holder.
    HolderMismatch,
    /// The requested tool is not granted by the token.
    ToolNotGranted(String),
    /// The requested operation is not granted on the requested tool.
    OperationNotGranted {
        /// The tool that was requested.
        tool: String,
        /// The operation that was requested.
        operation: String,
    },
    /// The token has more attenuation blocks than its own delegation limit allows.
    DelegationTooDeep,
    /// An attenuation was refused: it would widen the parent's rights or could never be satisfied.
    Refused(Refusal),
    /// A builder input is not acceptable (empty name, string too long, missing expiry, ...).
    InvalidInput(&'static str),
    /// The system random number generator failed.
    Random,
}

impl Error {
    /// True when the token is valid but does not grant the requested tool or operation.
    pub fn is_forbidden(&self) -> bool {
        matches!(
            self,
            Self::ToolNotGranted(_) | Self::OperationNotGranted { .. }
        )
    }

    /// True when the token itself is unacceptable: malformed, forged, expired, revoked, for another
    /// audience or holder, or delegated too deep.
    pub fn is_invalid_token(&self) -> bool {
        matches!(
            self,
            Self::Malformed(_)
                | Self::BadSignature
                | Self::UnknownRootKey
                | Self::Expired
                | Self::NotYetValid
                | Self::Revoked
                | Self::WrongAudience
                | Self::HolderMismatch
                | Self::DelegationTooDeep
        )
    }

    /// A short, stable, snake_case code for logs, metrics and coarse peer-facing errors.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::BadSignature => "bad_signature",
            Self::UnknownRootKey => "unknown_root_key",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::Revoked => "revoked",
            Self::WrongAudience => "wrong_audience",
            Self::HolderMismatch => "holder_mismatch",
            Self::ToolNotGranted(_) => "tool_not_granted",
            Self::OperationNotGranted { .. } => "operation_not_granted",
            Self::DelegationTooDeep => "delegation_too_deep",
            Self::Refused(_) => "refused",
            Self::InvalidInput(_) => "invalid_input",
            Self::Random => "random",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(m) => write!(f, "malformed token: {}", m.0),
            Self::BadSignature => f.write_str("token signature does not verify"),
            Self::UnknownRootKey => f.write_str("token root key is not trusted"),
            Self::Expired => f.write_str("token expired"),
            Self::NotYetValid => f.write_str("token not yet valid"),
            Self::Revoked => f.write_str("token revoked"),
            Self::WrongAudience => f.write_str("token is not for this audience"),
            Self::HolderMismatch => f.write_str("token is bound to another holder"),
            Self::ToolNotGranted(tool) => write!(f, "tool {tool:?} not granted"),
            Self::OperationNotGranted { tool, operation } => {
                write!(f, "operation {operation:?} not granted on tool {tool:?}")
            }
            Self::DelegationTooDeep => f.write_str("token delegated beyond its depth limit"),
            Self::Refused(r) => write!(f, "attenuation refused: {r}"),
            Self::InvalidInput(why) => write!(f, "invalid input: {why}"),
            Self::Random => f.write_str("random number generator failed"),
        }
    }
}

impl std::error::Error for Error {}

impl From<Malformed> for Error {
    fn from(m: Malformed) -> Self {
        Self::Malformed(m)
    }
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Self {
        Self::Refused(r)
    }
}

/// What is wrong with a token's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub(crate) &'static str);

impl Malformed {
    /// A short description of the defect, for logs.
    pub fn reason(&self) -> &'static str {
        self.0
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Why an attenuation was refused.
///
/// Attenuation can only narrow. A restriction that would widen a right the parent holds, or that
/// could never be satisfied, is refused here instead of producing a token that silently fails.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The token is sealed; no further blocks can be added.
    Sealed,
    /// The parent's delegation depth is used up.
    DepthExhausted,
    /// The requested delegation depth exceeds what the parent has left.
    DepthAboveParent {
        /// Further delegations the parent allows.
        remaining: u64,
        /// Further delegations requested.
        requested: u8,
    },
    /// The tool is not granted by the parent (or not by this block's own tool list).
    ToolNotInParent(String),
    /// The operation is not granted on this tool by the parent.
    OperationNotInParent {
        /// The tool.
        tool: String,
        /// The operation.
        operation: String,
    },
    /// An operation list for a tool is empty, which would grant nothing on it.
    EmptyOperations(String),
    /// A resource limit is above the parent's limit for the same tool and key.
    LimitAboveParent {
        /// The tool.
        tool: String,
        /// The limit key.
        key: String,
        /// The parent's effective limit.
        parent: u64,
        /// The limit requested.
        requested: u64,
    },
    /// The expiry is later than the parent's.
    LaterExpiry {
        /// The parent's effective expiry, Unix seconds.
        parent: u64,
        /// The expiry requested, Unix seconds.
        requested: u64,
    },
    /// The not-before time is earlier than the parent's, which would have no effect.
    EarlierNotBefore {
        /// The parent's effective not-before, Unix seconds.
        parent: u64,
        /// The not-before requested, Unix seconds.
        requested: u64,
    },
    /// The validity window is empty: expiry at or before not-before.
    EmptyValidity,
    /// The audience is not among the parent's audiences.
    AudienceNotInParent(String),
    /// An audience list is empty, which no verifier could satisfy.
    EmptyAudience,
    /// The token is already bound to another holder; a holder binding cannot be changed.
    HolderConflict {
        /// The holder the parent is bound to.
        parent: String,
        /// The holder requested.
        requested: String,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sealed => f.write_str("token is sealed"),
            Self::DepthExhausted => f.write_str("delegation depth is used up"),
            Self::DepthAboveParent {
                remaining,
                requested,
            } => write!(
                f,
                "max depth {requested} exceeds the {remaining} further delegations the parent allows"
            ),
            Self::ToolNotInParent(t) => write!(f, "tool {t:?} is not granted by the parent"),
            Self::OperationNotInParent { tool, operation } => write!(
                f,
                "operation {operation:?} on tool {tool:?} is not granted by the parent"
            ),
            Self::EmptyOperations(t) => write!(f, "empty operation list for tool {t:?}"),
            Self::LimitAboveParent {
                tool,
                key,
                parent,
                requested,
            } => write!(
                f,
                "limit {tool}.{key} = {requested} is above the parent's {parent}"
            ),
            Self::LaterExpiry { parent, requested } => {
                write!(f, "expiry {requested} is later than the parent's {parent}")
            }
            Self::EarlierNotBefore { parent, requested } => write!(
                f,
                "not-before {requested} is earlier than the parent's {parent}"
            ),
            Self::EmptyValidity => f.write_str("expiry is not after not-before"),
            Self::AudienceNotInParent(a) => {
                write!(f, "audience {a:?} is not allowed by the parent")
            }
            Self::EmptyAudience => f.write_str("empty audience list"),
            Self::HolderConflict { parent, requested } => write!(
                f,
                "token is bound to holder {parent:?}; cannot bind it to {requested:?}"
            ),
        }
    }
}
