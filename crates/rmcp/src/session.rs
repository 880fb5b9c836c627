//! rmcp's sessions behind vouch-tower's [`SessionBindingLayer`]: the layer closes the sessions
//! whose binding it drops in rmcp's [`LocalSessionManager`], asks it whether a session still
//! exists, and counts the sessions it holds.

use std::sync::Arc;

use rmcp::transport::streamable_http_server::session::SessionManager as _;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use vouch_tower::{SessionBindingLayer, SessionFuture, SessionStore};

/// rmcp's session manager as vouch-tower's [`SessionStore`].
struct RmcpSessions(Arc<LocalSessionManager>);

impl SessionStore for RmcpSessions {
    fn close<'a>(&'a self, session: &'a str) -> SessionFuture<'a, ()> {
        Box::pin(async move {
            let id: Arc<str> = Arc::from(session);
            if let Err(e) = self.0.close_session(&id).await {
                tracing::warn!(error = %e, "closing an unbound MCP session failed");
            }
        })
    }

    fn contains<'a>(&'a self, session: &'a str) -> SessionFuture<'a, bool> {
        Box::pin(async move {
            let id: Arc<str> = Arc::from(session);
            self.0.has_session(&id).await.unwrap_or(true)
        })
    }

    fn live(&self) -> SessionFuture<'_, Option<usize>> {
        Box::pin(async move { Some(self.0.sessions.read().await.len()) })
    }
}

mod sealed {
    #[expect(
        unnameable_types,
        reason = "sealed: implemented for SessionBindingLayer only"
    )]
    pub trait Sealed {}
    impl Sealed for vouch_tower::SessionBindingLayer {}
}

/// rmcp's session manager for the [`SessionBindingLayer`] (defined in vouch-tower, re-exported
/// here): `use vouch_rmcp::SessionBindingExt as _` and call
/// `layer.session_manager(manager.clone())`.
pub trait SessionBindingExt: sealed::Sealed + Sized {
    /// The session manager of the rmcp service behind this layer (the same `Arc`): the
    /// sessions whose binding is dropped are closed in it, sessions are checked against it at a
    /// limit, and the sessions it holds count against the total. Without it, a dropped
    /// binding's rmcp session stays until rmcp's own keep-alive closes it.
    /// [`Protected::serve`](crate::Protected::serve) does this with its own manager.
    #[must_use]
    fn session_manager(self, manager: Arc<LocalSessionManager>) -> Self;
}

impl SessionBindingExt for SessionBindingLayer {
    fn session_manager(self, manager: Arc<LocalSessionManager>) -> Self {
        self.session_store(Arc::new(RmcpSessions(manager)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[tokio::test]
    async fn the_adapter_answers_from_the_session_manager() {
        let manager = Arc::new(LocalSessionManager::default());
        let store = RmcpSessions(manager.clone());
        assert_eq!(store.live().await, Some(0));
        let (id, _transport) = manager.create_session().await.unwrap();
        assert_eq!(store.live().await, Some(1));
        assert!(store.contains(&id).await);
        store.close(&id).await;
        assert!(!store.contains(&id).await);
        assert_eq!(store.live().await, Some(0));
        // Closing a session rmcp does not know is logged, not a panic.
        store.close("unknown").await;
    }
}
