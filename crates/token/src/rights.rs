//! Restrictions (what a block says) and rights (what a chain of blocks adds up to).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::block::{Body, Caveats, MAX_DEPTH};
use crate::codec::MAX_STR;
use crate::error::{Error, Malformed, Refusal};
use crate::op::Op;

/// Delegation depth of a root token unless [`Restriction::max_depth`] says otherwise.
pub const DEFAULT_MAX_DEPTH: u8 = 5;

/// The restrictions of one block: used to mint a root token and to attenuate one.
///
/// Every dimension left unset does not restrict. In a root token that means: no tool list grants
/// every tool, no operation entry for a tool grants every operation on it, no limit is unlimited,
/// no audience and no holder mean any. A root token must have an expiry ([`Restriction::ttl`] or
/// [`Restriction::expires_at`]).
///
/// Inputs are checked when the token is built; the first bad one is reported then.
#[derive(Debug, Clone, Default)]
pub struct Restriction {
    caveats: Caveats,
    ttl: Option<u64>,
    invalid: Option<&'static str>,
}

impl Restriction {
    /// A restriction that restricts nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Grants only these tools (for a root token) or narrows to them (for an attenuation).
    /// An empty list grants no tool at all.
    #[must_use]
    pub fn tools<I, S>(mut self, tools: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut set = self.caveats.tools.take().unwrap_or_default();
        for t in tools {
            let t = t.into();
            self.check_str(&t);
            set.insert(t);
        }
        self.caveats.tools = Some(set);
        self
    }

    /// Allows only these operations on `tool`.
    #[must_use]
    pub fn operations<I, O>(mut self, tool: impl Into<String>, ops: I) -> Self
    where
        I: IntoIterator<Item = O>,
        O: Into<Op>,
    {
        let tool = tool.into();
        self.check_str(&tool);
        let entry = self.caveats.operations.entry(tool).or_default();
        let mut bad = false;
        for op in ops {
            let op = op.into();
            bad |= op.as_str().is_empty() || op.as_str().len() > MAX_STR;
            entry.insert(op);
        }
        if bad {
            self.invalid
                .get_or_insert("operation names must be 1 to 1024 bytes");
        }
        self
    }

    /// Caps the resource `key` of `tool` at `value` (for example `db_query`, `max_rows`, 100).
    #[must_use]
    pub fn limit(mut self, tool: impl Into<String>, key: impl Into<String>, value: u64) -> Self {
        let (tool, key) = (tool.into(), key.into());
        self.check_str(&tool);
        self.check_str(&key);
        self.caveats.limits.insert((tool, key), value);
        self
    }

    /// Expires `seconds` after the time the token is built.
    #[must_use]
    pub fn ttl(mut self, seconds: u64) -> Self {
        self.ttl = Some(seconds);
        self
    }

    /// Expires at this Unix time (seconds). Combined with [`Restriction::ttl`], the earlier wins.
    #[must_use]
    pub fn expires_at(mut self, unix_secs: u64) -> Self {
        self.caveats.expires_at = Some(unix_secs);
        self
    }

    /// Not valid before this Unix time (seconds).
    #[must_use]
    pub fn not_before(mut self, unix_secs: u64) -> Self {
        self.caveats.not_before = Some(unix_secs);
        self
    }

    /// Valid only at verifiers whose audience is one of these.
    #[must_use]
    pub fn audience<I, S>(mut self, audiences: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut set = self.caveats.audience.take().unwrap_or_default();
        for a in audiences {
            let a = a.into();
            self.check_str(&a);
            set.insert(a);
        }
        self.caveats.audience = Some(set);
        self
    }

    /// Binds the token to a holder: the RFC 9421 `keyid` that must sign each request carrying it.
    #[must_use]
    pub fn holder(mut self, keyid: impl Into<String>) -> Self {
        let keyid = keyid.into();
        self.check_str(&keyid);
        self.caveats.holder = Some(keyid);
        self
    }

    /// At most `depth` further attenuation blocks after this one (0 to 15).
    #[must_use]
    pub fn max_depth(mut self, depth: u8) -> Self {
        if depth > MAX_DEPTH {
            self.invalid.get_or_insert("max depth must be at most 15");
        }
        self.caveats.max_depth = Some(depth);
        self
    }

    fn check_str(&mut self, s: &str) {
        if s.is_empty() || s.len() > MAX_STR {
            self.invalid
                .get_or_insert("names must be 1 to 1024 bytes of UTF-8");
        }
    }

    /// Resolves the TTL against `now` and returns the caveats, or the first input error.
    pub(crate) fn resolve(self, now: u64) -> Result<Caveats, Error> {
        if let Some(why) = self.invalid {
            return Err(Error::InvalidInput(why));
        }
        let mut c = self.caveats;
        if let Some(ttl) = self.ttl {
            let at = now
                .checked_add(ttl)
                .ok_or(Error::InvalidInput("ttl overflows"))?;
            c.expires_at = Some(c.expires_at.map_or(at, |e| e.min(at)));
        }
        Ok(c)
    }
}

/// Which tools, and which operations on them, a chain grants.
///
/// [`Grants::decide`] is the one place that answers "may this tool, this operation, be used":
/// the verifier asks it for each request, and [`Facts`](crate::Facts) for `grants_tool` and
/// `allows`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Grants {
    /// `None` grants every tool.
    pub(crate) tools: Option<BTreeSet<String>>,
    /// Tools without an entry allow every operation. An empty entry (the lists of two blocks
    /// with nothing in common; only a hand-signed block makes one) allows none, so the tool is
    /// not granted at all.
    pub(crate) operations: BTreeMap<String, BTreeSet<Op>>,
}

/// Why [`Grants::decide`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Denied {
    /// The tool is not granted.
    Tool,
    /// The tool is granted, the operation on it is not.
    Operation,
}

impl Grants {
    /// Whether `tool` (and, if given, `operation` on it) is granted.
    pub(crate) fn decide(&self, tool: &str, operation: Option<&str>) -> Result<(), Denied> {
        if self.tools.as_ref().is_some_and(|t| !t.contains(tool)) {
            return Err(Denied::Tool);
        }
        match self.operations.get(tool) {
            Some(ops) if ops.is_empty() => Err(Denied::Tool),
            Some(ops) if operation.is_some_and(|op| !ops.iter().any(|o| o.as_str() == op)) => {
                Err(Denied::Operation)
            }
            _ => Ok(()),
        }
    }

    /// Whether `tool` is granted (with at least one operation).
    pub(crate) fn grants_tool(&self, tool: &str) -> bool {
        self.decide(tool, None).is_ok()
    }

    /// True if the operations on some tool intersect to nothing.
    pub(crate) fn has_empty_operations(&self) -> bool {
        self.operations.values().any(BTreeSet::is_empty)
    }

    /// These grants as the facts shape can state them: a tool list (or every tool) and
    /// operations per listed tool. A tool whose operations are empty is dropped from a tool
    /// list; under a wildcard it cannot be (the shape has no "every tool but this one"), so
    /// then no tool is granted. Either way the result grants nothing these grants do not.
    pub(crate) fn expressible(self: &Arc<Self>) -> Arc<Self> {
        if !self.has_empty_operations() {
            return Arc::clone(self);
        }
        let tools = match &self.tools {
            None => BTreeSet::new(),
            Some(listed) => listed
                .iter()
                .filter(|t| self.grants_tool(t))
                .cloned()
                .collect(),
        };
        Arc::new(Self {
            tools: Some(tools),
            operations: self.operations.clone(),
        })
    }
}

/// The effective rights of a chain of blocks: the intersection of what every block allows.
#[derive(Debug, Clone)]
pub(crate) struct Rights {
    pub(crate) issuer: String,
    pub(crate) subject: String,
    /// Tools and operations; shared with the [`Facts`](crate::Facts) made from these rights.
    pub(crate) grants: Arc<Grants>,
    pub(crate) limits: BTreeMap<(String, String), u64>,
    pub(crate) expires_at: u64,
    pub(crate) not_before: Option<u64>,
    pub(crate) audience: Option<BTreeSet<String>>,
    /// Every holder any block binds to; more than one can never be satisfied.
    pub(crate) holders: BTreeSet<String>,
    /// The most attenuation blocks the chain allows in total.
    pub(crate) depth_limit: u64,
    /// Attenuation blocks present.
    pub(crate) depth: u64,
}

impl Rights {
    /// Folds the blocks of a token, authority first.
    pub(crate) fn of<'a>(mut bodies: impl Iterator<Item = &'a Body>) -> Result<Self, Malformed> {
        let root = bodies.next().ok_or(Malformed("no blocks"))?;
        let c = &root.caveats;
        let (Some(issuer), Some(subject), Some(expires_at), Some(max_depth)) = (
            root.issuer.clone(),
            root.subject.clone(),
            c.expires_at,
            c.max_depth,
        ) else {
            return Err(Malformed("authority block lacks a required field"));
        };
        let mut rights = Self {
            issuer,
            subject,
            grants: Arc::new(Grants {
                tools: c.tools.clone(),
                operations: c.operations.clone(),
            }),
            limits: c.limits.clone(),
            expires_at,
            not_before: c.not_before,
            audience: c.audience.clone(),
            holders: c.holder.iter().cloned().collect(),
            depth_limit: u64::from(max_depth),
            depth: 0,
        };
        for body in bodies {
            rights.depth += 1;
            rights.narrow(&body.caveats);
        }
        Ok(rights)
    }

    /// Intersects these rights with one more block's caveats.
    fn narrow(&mut self, c: &Caveats) {
        // While the chain is folded, nothing else holds the grants: this does not copy.
        let grants = Arc::make_mut(&mut self.grants);
        if let Some(tools) = &c.tools {
            grants.tools = Some(match grants.tools.take() {
                None => tools.clone(),
                Some(prev) => prev.intersection(tools).cloned().collect(),
            });
        }
        for (tool, ops) in &c.operations {
            match grants.operations.get_mut(tool) {
                Some(prev) => prev.retain(|op| ops.contains(op)),
                None => {
                    grants.operations.insert(tool.clone(), ops.clone());
                }
            }
        }
        for (key, &value) in &c.limits {
            let slot = self.limits.entry(key.clone()).or_insert(value);
            *slot = (*slot).min(value);
        }
        if let Some(e) = c.expires_at {
            self.expires_at = self.expires_at.min(e);
        }
        if let Some(n) = c.not_before {
            self.not_before = Some(self.not_before.map_or(n, |p| p.max(n)));
        }
        if let Some(aud) = &c.audience {
            self.audience = Some(match self.audience.take() {
                None => aud.clone(),
                Some(prev) => prev.intersection(aud).cloned().collect(),
            });
        }
        if let Some(h) = &c.holder {
            self.holders.insert(h.clone());
        }
        if let Some(d) = c.max_depth {
            self.depth_limit = self
                .depth_limit
                .min(self.depth.saturating_add(u64::from(d)));
        }
    }

    pub(crate) fn grants_tool(&self, tool: &str) -> bool {
        self.grants.grants_tool(tool)
    }

    /// Checks that `c`, added as the next block, only narrows these rights and can be satisfied.
    pub(crate) fn check_attenuation(&self, c: &Caveats) -> Result<(), Refusal> {
        if self.depth >= self.depth_limit {
            return Err(Refusal::DepthExhausted);
        }
        if let Some(d) = c.max_depth {
            // After this block, `depth_limit - depth - 1` further blocks remain.
            let remaining = self.depth_limit - self.depth - 1;
            if u64::from(d) > remaining {
                return Err(Refusal::DepthAboveParent {
                    remaining,
                    requested: d,
                });
            }
        }
        if let Some(tools) = &c.tools
            && let Some(t) = tools.iter().find(|t| !self.grants_tool(t))
        {
            return Err(Refusal::ToolNotInParent(t.clone()));
        }
        let in_block = |tool: &str| c.tools.as_ref().is_none_or(|t| t.contains(tool));
        for (tool, ops) in &c.operations {
            if !self.grants_tool(tool) || !in_block(tool) {
                return Err(Refusal::ToolNotInParent(tool.clone()));
            }
            if ops.is_empty() {
                return Err(Refusal::EmptyOperations(tool.clone()));
            }
            if let Some(parent_ops) = self.grants.operations.get(tool)
                && let Some(op) = ops.iter().find(|op| !parent_ops.contains(op))
            {
                return Err(Refusal::OperationNotInParent {
                    tool: tool.clone(),
                    operation: op.as_str().to_owned(),
                });
            }
        }
        for ((tool, key), &value) in &c.limits {
            if !self.grants_tool(tool) || !in_block(tool) {
                return Err(Refusal::ToolNotInParent(tool.clone()));
            }
            if let Some(&parent) = self.limits.get(&(tool.clone(), key.clone()))
                && value > parent
            {
                return Err(Refusal::LimitAboveParent {
                    tool: tool.clone(),
                    key: key.clone(),
                    parent,
                    requested: value,
                });
            }
        }
        if let Some(e) = c.expires_at
            && e > self.expires_at
        {
            return Err(Refusal::LaterExpiry {
                parent: self.expires_at,
                requested: e,
            });
        }
        if let (Some(n), Some(parent)) = (c.not_before, self.not_before)
            && n < parent
        {
            return Err(Refusal::EarlierNotBefore {
                parent,
                requested: n,
            });
        }
        let not_before = match (c.not_before, self.not_before) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let expires_at = c.expires_at.unwrap_or(self.expires_at).min(self.expires_at);
        if not_before.is_some_and(|n| n >= expires_at) {
            return Err(Refusal::EmptyValidity);
        }
        if let Some(aud) = &c.audience {
            if aud.is_empty() {
                return Err(Refusal::EmptyAudience);
            }
            if let Some(parent) = &self.audience
                && let Some(a) = aud.iter().find(|a| !parent.contains(*a))
            {
                return Err(Refusal::AudienceNotInParent(a.clone()));
            }
        }
        if let Some(h) = &c.holder
            && let Some(parent) = self.holders.iter().find(|p| *p != h)
        {
            return Err(Refusal::HolderConflict {
                parent: parent.clone(),
                requested: h.clone(),
            });
        }
        Ok(())
    }
}

/// Checks the caveats of a root token: required expiry, consistent tool lists, satisfiable window.
pub(crate) fn check_authority(c: &Caveats) -> Result<(), Error> {
    let expires_at = c.expires_at.ok_or(Error::InvalidInput(
        "a root token needs an expiry (ttl or expires_at)",
    ))?;
    let in_tools = |tool: &str| c.tools.as_ref().is_none_or(|t| t.contains(tool));
    for (tool, ops) in &c.operations {
        if !in_tools(tool) {
            return Err(Refusal::ToolNotInParent(tool.clone()).into());
        }
        if ops.is_empty() {
            return Err(Refusal::EmptyOperations(tool.clone()).into());
        }
    }
    if let Some((tool, _)) = c.limits.keys().find(|(tool, _)| !in_tools(tool)) {
        return Err(Refusal::ToolNotInParent(tool.clone()).into());
    }
    if c.not_before.is_some_and(|n| n >= expires_at) {
        return Err(Refusal::EmptyValidity.into());
    }
    if c.audience.as_ref().is_some_and(BTreeSet::is_empty) {
        return Err(Refusal::EmptyAudience.into());
    }
    Ok(())
}
