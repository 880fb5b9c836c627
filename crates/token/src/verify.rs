//! Verification: from a token and a request to verified facts or a precise error.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::Serialize;

use crate::error::{Error, Malformed};
use crate::key::{PublicKey, RootKeyId, RootKeys};
use crate::revocation::{RevocationId, Revocations};
use crate::rights::{Denied, Grants, Rights};
use crate::token::{Token, unix_now};

/// One root key with its id derived and its point checked once: `None` if the key is weak.
struct OneRoot {
    id: RootKeyId,
    key: Option<PublicKey>,
}

impl RootKeys for OneRoot {
    fn root_key(&self, id: &RootKeyId) -> Option<PublicKey> {
        self.key.filter(|_| self.id == *id)
    }
}

/// Verifies tokens against a set of root keys. Configure once, share, call per request.
///
/// ```
/// use vouch_token::{Access, KeyPair, Restriction, Token, Verifier};
/// # fn main() -> Result<(), vouch_token::Error> {
/// let root = KeyPair::generate()?;
/// let token = Token::mint(&root, "auth", "agent-a", Restriction::new().tools(["search"]).ttl(60))?;
/// let verifier = Verifier::new(root.public_key());
///
/// let facts = verifier.verify(&token, &Access::now().tool("search"))?;
/// assert_eq!(facts.subject(), "agent-a");
/// assert!(verifier.verify(&token, &Access::now().tool("db_query")).unwrap_err().is_forbidden());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Verifier {
    roots: Arc<dyn RootKeys>,
    /// True when `roots` never returns a weak key (checked when the keys were added), so that
    /// [`Verifier::check`] need not check the key it gets.
    roots_checked: bool,
    /// The audiences this verifier answers to; empty for none.
    audiences: BTreeSet<String>,
    revocations: Arc<dyn Revocations>,
}

impl Verifier {
    /// A verifier that trusts these root keys, has no audience and revokes nothing.
    ///
    /// A weak root key (see [`PublicKey::weakness`]) is never trusted, however it is given:
    /// tokens that name it fail with [`Error::UnknownRootKey`]. The check happens where the
    /// verifier looks a token's root key up ([`Verifier::check`]); for a single [`PublicKey`]
    /// it is done once, here, and a [`RootKeySet`](crate::RootKeySet) refuses weak keys when
    /// they are inserted.
    pub fn new(roots: impl RootKeys + 'static) -> Self {
        let any: &dyn core::any::Any = &roots;
        let (roots, roots_checked): (Arc<dyn RootKeys>, bool) =
            match any.downcast_ref::<PublicKey>() {
                // A single key is the common case: derive its id and check its point once, not
                // on every request.
                Some(key) => (
                    Arc::new(OneRoot {
                        id: key.root_key_id(),
                        key: key.weakness().is_none().then_some(*key),
                    }),
                    true,
                ),
                None => {
                    let set = any.is::<crate::RootKeySet>();
                    (Arc::new(roots), set)
                }
            };
        Self {
            roots,
            roots_checked,
            audiences: BTreeSet::new(),
            revocations: Arc::new(BTreeSet::<RevocationId>::new()),
        }
    }

    /// An audience of this verifier (for example the server's URL). A token restricted to
    /// audiences of which none is this verifier's is rejected.
    ///
    /// Call it again for a verifier that answers to several names (a server reached at two
    /// origins, say): a token is accepted if its audiences include any of them.
    ///
    /// Without an audience, a token that carries any audience restriction is rejected: the
    /// verifier cannot tell whether it is the one the token was meant for.
    #[must_use]
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.insert(audience.into());
        self
    }

    /// The revocation list consulted for every block.
    #[must_use]
    pub fn with_revocations(mut self, revocations: impl Revocations + 'static) -> Self {
        self.revocations = Arc::new(revocations);
        self
    }

    /// Verifies `token` for `access`: signatures and proof, revocation, delegation depth,
    /// validity window, audience, holder, and the requested tool and operation.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownRootKey`], [`Error::BadSignature`], [`Error::Revoked`],
    /// [`Error::DelegationTooDeep`], [`Error::NotYetValid`], [`Error::Expired`],
    /// [`Error::WrongAudience`], [`Error::HolderMismatch`] (checked in that order), then
    /// [`Error::ToolNotGranted`] or [`Error::OperationNotGranted`].
    pub fn verify(&self, token: &Token, access: &Access<'_>) -> Result<Facts, Error> {
        self.authorize(&self.check(token)?, access)
    }

    /// The cryptographic half of [`Verifier::verify`]: the root key, every block signature and
    /// the proof. The result can be cached (it depends only on the token's bytes and this
    /// verifier's root keys); [`Verifier::authorize`] then decides each request without crypto.
    ///
    /// A weak root key (see [`PublicKey::weakness`]) is not trusted ([`Error::UnknownRootKey`]),
    /// nor is a weak next key in any block ([`Error::Malformed`]).
    ///
    /// A chain whose operations on some tool intersect to nothing (two blocks name disjoint
    /// operation lists for it) is refused here as [`Error::Malformed`]: `attenuate` never makes
    /// one, only a block signed by hand does, and the facts a verifier reports could not state
    /// its rights under a tool wildcard.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownRootKey`], [`Error::BadSignature`], [`Error::Malformed`].
    pub fn check(&self, token: &Token) -> Result<VerifiedToken, Error> {
        // Every root key a token is verified with passes through here: a weak one is not
        // trusted (providers other than a single key or a `RootKeySet` are checked each time).
        let root = self
            .roots
            .root_key(&token.root_key_id)
            .filter(|key| self.roots_checked || key.weakness().is_none())
            .ok_or(Error::UnknownRootKey)?;
        token.check_signatures(&root)?;
        let rights = token.rights()?;
        if rights.grants.has_empty_operations() {
            return Err(Malformed("the operations on a tool intersect to nothing").into());
        }
        Ok(VerifiedToken {
            rights,
            revocation_ids: token.revocation_ids(),
            root_key_id: token.root_key_id,
        })
    }

    /// The per-request half of [`Verifier::verify`], on a token [`Verifier::check`] accepted:
    /// revocation (consulted every time), delegation depth, validity window, audience, holder,
    /// tool and operation.
    ///
    /// # Errors
    ///
    /// As [`Verifier::verify`], but for the cryptographic errors; [`Error::UnknownRootKey`] if
    /// the token's root key is no longer trusted by this verifier.
    pub fn authorize(&self, token: &VerifiedToken, access: &Access<'_>) -> Result<Facts, Error> {
        if self.roots.root_key(&token.root_key_id).is_none() {
            return Err(Error::UnknownRootKey);
        }
        if token
            .revocation_ids
            .iter()
            .any(|id| self.revocations.is_revoked(id))
        {
            return Err(Error::Revoked);
        }
        let rights = &token.rights;
        if rights.depth > rights.depth_limit {
            return Err(Error::DelegationTooDeep);
        }
        if rights.not_before.is_some_and(|n| access.now < n) {
            return Err(Error::NotYetValid);
        }
        if access.now >= rights.expires_at {
            return Err(Error::Expired);
        }
        if let Some(allowed) = &rights.audience
            && allowed.is_disjoint(&self.audiences)
        {
            return Err(Error::WrongAudience);
        }
        if !rights.holders.is_empty() {
            let ok = access
                .caller
                .is_some_and(|c| rights.holders.iter().all(|h| h == c));
            if !ok {
                return Err(Error::HolderMismatch);
            }
        }
        if let Some(tool) = access.tool {
            match rights.grants.decide(tool, access.operation) {
                Ok(()) => {}
                Err(Denied::Tool) => return Err(Error::ToolNotGranted(tool.to_owned())),
                Err(Denied::Operation) => {
                    return Err(Error::OperationNotGranted {
                        tool: tool.to_owned(),
                        operation: access.operation.unwrap_or_default().to_owned(),
                    });
                }
            }
        }
        Ok(Facts::new(rights, token.revocation_ids.clone()))
    }
}

/// A token whose signatures [`Verifier::check`] verified: its rights, ready to authorize requests
/// without crypto. Only a verifier makes one.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    rights: Rights,
    revocation_ids: Vec<RevocationId>,
    root_key_id: crate::key::RootKeyId,
}

impl VerifiedToken {
    /// The effective expiry, Unix seconds (a cache should not keep the token longer).
    pub fn expires_at(&self) -> u64 {
        self.rights.expires_at
    }
}

impl core::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Verifier")
            .field("audiences", &self.audiences)
            .finish_non_exhaustive()
    }
}

/// What a request asks of a token: when, by whom, and which tool and operation.
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    now: u64,
    caller: Option<&'a str>,
    tool: Option<&'a str>,
    operation: Option<&'a str>,
}

impl<'a> Access<'a> {
    /// Access at this Unix time (seconds), by an unknown caller, for no particular tool.
    pub fn at(unix_secs: u64) -> Self {
        Self {
            now: unix_secs,
            caller: None,
            tool: None,
            operation: None,
        }
    }

    /// Access at the current system time.
    pub fn now() -> Self {
        Self::at(unix_now())
    }

    /// The verified signer of the request (its RFC 9421 `keyid`), for holder-bound tokens.
    #[must_use]
    pub fn caller(mut self, keyid: &'a str) -> Self {
        self.caller = Some(keyid);
        self
    }

    /// The tool the request calls.
    #[must_use]
    pub fn tool(mut self, tool: &'a str) -> Self {
        self.tool = Some(tool);
        self
    }

    /// The operation the request performs on the tool (checked only with a tool).
    #[must_use]
    pub fn operation(mut self, operation: &'a str) -> Self {
        self.operation = Some(operation);
        self
    }
}

/// What a verified token grants.
///
/// Serializes to the MCPVault facts shape — `tools`, `tool_wildcard`, `operations` as
/// `[tool, op]` pairs, `resource_limits` as `[tool, key, value]` triples, `delegation_depth`,
/// `issuer`, `subject` — followed by `expires_at`, `not_before`, `audience`, `holder` and
/// `revocation_ids`.
///
/// [`Facts::grants_tool`] and [`Facts::allows`] answer exactly as [`Verifier::authorize`] does
/// (they ask the same function), and the serialized form says the same: a tool is granted when
/// `tool_wildcard` is true or `tools` names it, and an operation on it when `operations` has no
/// pair for the tool or has this pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Facts {
    tools: Vec<String>,
    tool_wildcard: bool,
    operations: Vec<(String, String)>,
    resource_limits: Vec<(String, String, u64)>,
    delegation_depth: u64,
    issuer: String,
    subject: String,
    expires_at: u64,
    not_before: Option<u64>,
    audience: Option<Vec<String>>,
    holder: Option<String>,
    revocation_ids: Vec<RevocationId>,
    /// What `grants_tool` and `allows` ask; the fields above are its serialized form.
    #[serde(skip)]
    grants: Arc<Grants>,
}

impl Facts {
    pub(crate) fn new(rights: &Rights, revocation_ids: Vec<RevocationId>) -> Self {
        // The same as the rights' grants for every token `Verifier::check` accepts; narrower
        // for a chain it refuses (an empty operation set), so that an inspection of one never
        // shows a right the chain does not give.
        let grants = rights.grants.expressible();
        let granted = |tool: &str| grants.grants_tool(tool);
        Self {
            tools: grants
                .tools
                .iter()
                .flatten()
                .filter(|t| granted(t))
                .cloned()
                .collect(),
            tool_wildcard: grants.tools.is_none(),
            operations: grants
                .operations
                .iter()
                .filter(|(tool, _)| granted(tool))
                .flat_map(|(tool, ops)| ops.iter().map(|op| (tool.clone(), op.as_str().to_owned())))
                .collect(),
            resource_limits: rights
                .limits
                .iter()
                .filter(|((tool, _), _)| granted(tool))
                .map(|((tool, key), v)| (tool.clone(), key.clone(), *v))
                .collect(),
            delegation_depth: rights.depth,
            issuer: rights.issuer.clone(),
            subject: rights.subject.clone(),
            expires_at: rights.expires_at,
            not_before: rights.not_before,
            audience: rights
                .audience
                .as_ref()
                .map(|a| a.iter().cloned().collect()),
            holder: (rights.holders.len() == 1)
                .then(|| rights.holders.first().cloned())
                .flatten(),
            revocation_ids,
            grants,
        }
    }

    /// The granted tools, sorted; empty when [`Facts::tool_wildcard`] is true. A tool whose
    /// operations intersect to nothing is not granted, so not listed.
    pub fn tools(&self) -> &[String] {
        &self.tools
    }

    /// True when every tool is granted.
    pub fn tool_wildcard(&self) -> bool {
        self.tool_wildcard
    }

    /// `(tool, operation)` pairs for the granted tools whose operations are restricted; a
    /// granted tool without a pair allows every operation.
    pub fn operations(&self) -> &[(String, String)] {
        &self.operations
    }

    /// `(tool, key, value)` resource limits: the minimum over the chain.
    pub fn resource_limits(&self) -> &[(String, String, u64)] {
        &self.resource_limits
    }

    /// Number of attenuation blocks.
    pub fn delegation_depth(&self) -> u64 {
        self.delegation_depth
    }

    /// Who minted the root token.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Whom the root token was minted for.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Effective expiry, Unix seconds.
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }

    /// Effective not-before, Unix seconds.
    pub fn not_before(&self) -> Option<u64> {
        self.not_before
    }

    /// The audiences the token is restricted to, if any.
    pub fn audience(&self) -> Option<&[String]> {
        self.audience.as_deref()
    }

    /// The holder (signer keyid) the token is bound to, if any.
    pub fn holder(&self) -> Option<&str> {
        self.holder.as_deref()
    }

    /// Revocation ids, authority block first.
    pub fn revocation_ids(&self) -> &[RevocationId] {
        &self.revocation_ids
    }

    /// True if the tool is granted: [`Verifier::authorize`] accepts a request for it that names
    /// no operation.
    pub fn grants_tool(&self, tool: &str) -> bool {
        self.grants.grants_tool(tool)
    }

    /// True if `operation` on `tool` is granted: [`Verifier::authorize`] accepts a request for
    /// it.
    pub fn allows(&self, tool: &str, operation: &str) -> bool {
        self.grants.decide(tool, Some(operation)).is_ok()
    }

    /// The resource limit `key` on `tool`, if the token sets one.
    pub fn limit(&self, tool: &str, key: &str) -> Option<u64> {
        self.resource_limits
            .iter()
            .find(|(t, k, _)| t == tool && k == key)
            .map(|(_, _, v)| *v)
    }
}
