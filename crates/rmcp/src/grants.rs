//! Who is calling and what they may do, inside a tool; and which operation each tool is.

use std::collections::BTreeMap;

use rmcp::RoleServer;
use rmcp::model::Tool;
use rmcp::service::RequestContext;
use vouch_tower::{Grants, VerifiedCaller};

/// The caller whose signature the [`SignatureLayer`](vouch_tower::SignatureLayer) verified for
/// this request, or `None` (no signature layer ran, or the transport is stdio).
///
/// ```no_run
/// # use rmcp::{RoleServer, service::RequestContext};
/// fn whoami(ctx: &RequestContext<RoleServer>) -> String {
///     match vouch_rmcp::caller_identity(ctx) {
///         Some(caller) => caller.identity,
///         None => "anonymous".to_owned(),
///     }
/// }
/// ```
pub fn caller_identity(ctx: &RequestContext<RoleServer>) -> Option<VerifiedCaller> {
    ctx.extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<VerifiedCaller>())
        .cloned()
}

/// What the caller's verified capability token grants: tools, operations, resource limits,
/// expiry, issuer, subject. `None` if no token was verified for this request.
///
/// Over HTTP the [`CapabilityLayer`](vouch_tower::CapabilityLayer) puts the grants in the request
/// parts; over stdio the [`GrantGuard`](crate::GrantGuard) puts them in the context. A tool uses
/// them to authorize per call:
///
/// ```no_run
/// # use rmcp::{RoleServer, service::RequestContext};
/// fn max_rows(ctx: &RequestContext<RoleServer>) -> u64 {
///     vouch_rmcp::grants(ctx)
///         .and_then(|g| g.limit("db_query", "max_rows"))
///         .unwrap_or(0)
/// }
/// ```
pub fn grants(ctx: &RequestContext<RoleServer>) -> Option<Grants> {
    ctx.extensions.get::<Grants>().cloned().or_else(|| {
        ctx.extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Grants>())
            .cloned()
    })
}

/// The operation each tool needs in the token: by default from the tool's MCP annotations
/// (`readOnlyHint` → `read`, `destructiveHint` → `write`, otherwise `execute`), overridable per
/// tool. Tools it does not know are `execute`.
///
/// The HTTP layer and the [`GrantGuard`](crate::GrantGuard) read the same map, so a call is
/// judged the same way on both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OperationMap {
    by_tool: BTreeMap<String, String>,
}

/// The operation for a tool whose annotations say nothing more specific.
pub const DEFAULT_OPERATION: &str = "execute";

impl OperationMap {
    /// An empty map: every tool is `execute`.
    pub fn new() -> Self {
        Self::default()
    }

    /// The map the tools' annotations give.
    pub fn from_tools<'a>(tools: impl IntoIterator<Item = &'a Tool>) -> Self {
        let mut map = Self::new();
        for tool in tools {
            map.by_tool
                .insert(tool.name.to_string(), annotated_operation(tool).to_owned());
        }
        map
    }

    /// Overrides the operation of `tool`.
    #[must_use]
    pub fn with(mut self, tool: impl Into<String>, operation: impl Into<String>) -> Self {
        self.by_tool.insert(tool.into(), operation.into());
        self
    }

    /// The operation `tool` needs.
    pub fn operation(&self, tool: &str) -> &str {
        self.by_tool
            .get(tool)
            .map_or(DEFAULT_OPERATION, String::as_str)
    }

    /// Every tool with an entry, and its operation.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.by_tool.iter().map(|(t, o)| (t.as_str(), o.as_str()))
    }
}

/// `read` for a read-only tool, `write` for a destructive one, `execute` otherwise. A tool
/// annotated both read-only and destructive is contradictory; it is taken as `write`, the
/// stricter reading.
fn annotated_operation(tool: &Tool) -> &'static str {
    let Some(a) = tool.annotations.as_ref() else {
        return DEFAULT_OPERATION;
    };
    if a.destructive_hint == Some(true) {
        "write"
    } else if a.read_only_hint == Some(true) {
        "read"
    } else {
        DEFAULT_OPERATION
    }
}
