//! Inspection: what a token says, without checking that it is true.

use serde::Serialize;

use crate::error::Error;
use crate::revocation::RevocationId;
use crate::token::{Token, VERSION};
use crate::verify::Facts;

/// What a token claims, block by block, with no signature checked.
///
/// For debugging, logging and tooling only: never authorize anything on an inspection. Use
/// [`Verifier`](crate::Verifier) for that.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Inspection {
    /// Format version.
    pub version: u8,
    /// Id of the root key the token names (hex).
    pub root_key_id: String,
    /// True when the token can no longer be attenuated.
    pub sealed: bool,
    /// Each block's own restrictions, authority first.
    pub blocks: Vec<BlockView>,
    /// What the blocks add up to, as a verifier would report it if the signatures held.
    pub effective: Facts,
}

/// The restrictions one block states.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct BlockView {
    /// Position in the chain; 0 is the authority block.
    pub index: usize,
    /// This block's revocation id.
    pub revocation_id: RevocationId,
    /// Issuer (authority block only).
    pub issuer: Option<String>,
    /// Subject (authority block only).
    pub subject: Option<String>,
    /// Tool list, if this block restricts tools.
    pub tools: Option<Vec<String>>,
    /// `(tool, operation)` pairs this block allows.
    pub operations: Vec<(String, String)>,
    /// `(tool, key, value)` limits this block sets.
    pub resource_limits: Vec<(String, String, u64)>,
    /// Expiry this block sets, Unix seconds.
    pub expires_at: Option<u64>,
    /// Not-before this block sets, Unix seconds.
    pub not_before: Option<u64>,
    /// Audiences this block allows.
    pub audience: Option<Vec<String>>,
    /// Holder this block binds to.
    pub holder: Option<String>,
    /// Further delegations this block allows.
    pub max_depth: Option<u8>,
}

impl Token {
    /// Lists what the token claims, without any cryptographic check.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] only if the token was built inconsistently (never for a decoded one).
    pub fn inspect(&self) -> Result<Inspection, Error> {
        let rights = self.rights()?;
        let ids = self.revocation_ids();
        let blocks = self
            .blocks
            .iter()
            .zip(&ids)
            .enumerate()
            .map(|(index, (b, id))| {
                let c = &b.body.caveats;
                BlockView {
                    index,
                    revocation_id: *id,
                    issuer: b.body.issuer.clone(),
                    subject: b.body.subject.clone(),
                    tools: c.tools.as_ref().map(|t| t.iter().cloned().collect()),
                    operations: c
                        .operations
                        .iter()
                        .flat_map(|(t, ops)| ops.iter().map(|o| (t.clone(), o.as_str().to_owned())))
                        .collect(),
                    resource_limits: c
                        .limits
                        .iter()
                        .map(|((t, k), v)| (t.clone(), k.clone(), *v))
                        .collect(),
                    expires_at: c.expires_at,
                    not_before: c.not_before,
                    audience: c.audience.as_ref().map(|a| a.iter().cloned().collect()),
                    holder: c.holder.clone(),
                    max_depth: c.max_depth,
                }
            })
            .collect();
        Ok(Inspection {
            version: VERSION,
            root_key_id: self.root_key_id.to_string(),
            sealed: self.is_sealed(),
            blocks,
            effective: Facts::new(&rights, ids),
        })
    }
}
