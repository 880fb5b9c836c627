//! Serving a protected app with the limits an exposed server needs.
//!
//! `axum::serve` reads request heads for as long as a client likes and accepts every connection
//! it is offered: one client holding thousands of half-sent heads holds thousands of sockets and
//! buffers. [`serve`] is the same loop with bounds: a header-read timeout (which also closes
//! idle keep-alive connections), a cap on the head's size, a global connection cap and a
//! per-peer-address connection cap. Over a cap, the new connection is closed at once; existing
//! ones are unaffected.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower_service::Service;

use crate::signature::BoxError;

/// The limits [`serve`] applies.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    header_read_timeout: Duration,
    max_connections: usize,
    max_connections_per_ip: usize,
    max_header_bytes: usize,
    max_headers: usize,
}

impl Default for ServeConfig {
    /// Heads within 10 s (idle keep-alive connections close after as long), at most 1 024
    /// connections, 64 per peer address, heads up to 64 KiB with at most 100 fields.
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_connections_per_ip: 64,
            max_header_bytes: 64 * 1024,
            max_headers: 100,
        }
    }
}

impl ServeConfig {
    /// How long a client may take to send a request head, and how long an idle keep-alive
    /// connection is kept.
    #[must_use]
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// Connections served at once, from everyone, and from one peer address.
    #[must_use]
    pub fn max_connections(mut self, total: usize, per_ip: usize) -> Self {
        self.max_connections = total;
        self.max_connections_per_ip = per_ip;
        self
    }

    /// The largest request head (request line and fields) and the most fields in it; a larger
    /// head is answered 431 and the connection closed.
    #[must_use]
    pub fn max_head(mut self, bytes: usize, fields: usize) -> Self {
        self.max_header_bytes = bytes;
        self.max_headers = fields;
        self
    }
}

/// Connections held per peer address; an entry goes when its count reaches zero.
type PerIp = Arc<Mutex<BTreeMap<IpAddr, usize>>>;

/// One admitted connection: its global permit and its place in the per-address count, both
/// given back when the connection ends.
struct Admitted {
    _permit: OwnedSemaphorePermit,
    ip: IpAddr,
    per_ip: PerIp,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Ok(mut map) = self.per_ip.lock()
            && let Some(n) = map.get_mut(&self.ip)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

fn admit(global: &Arc<Semaphore>, per_ip: &PerIp, ip: IpAddr, cap: usize) -> Option<Admitted> {
    let permit = global.clone().try_acquire_owned().ok()?;
    let mut map = per_ip.lock().ok()?;
    let n = map.entry(ip).or_insert(0);
    if *n >= cap {
        return None;
    }
    *n += 1;
    drop(map);
    Some(Admitted {
        _permit: permit,
        ip,
        per_ip: per_ip.clone(),
    })
}

/// Serves `service` (an axum `Router`, or any tower service of the same shape) on `listener`
/// over HTTP/1.1, with the bounds of `config`. Runs until the task is dropped.
///
/// ```no_run
/// # async fn run(app: axum::Router) -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// vouch_tower::serve(listener, app, vouch_tower::ServeConfig::default()).await
/// # }
/// ```
///
/// # Errors
///
/// Never returns while the listener works: failures to accept one connection (for example, the
/// process is out of file descriptors) are logged and retried after a short pause.
pub async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    config: ServeConfig,
) -> std::io::Result<()>
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let global = Arc::new(Semaphore::new(config.max_connections));
    let per_ip: PerIp = Arc::new(Mutex::new(BTreeMap::new()));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_header_size(config.max_header_bytes)
        .max_headers(config.max_headers);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(admitted) = admit(&global, &per_ip, peer.ip(), config.max_connections_per_ip)
        else {
            tracing::warn!(peer = %peer.ip(), "connection cap reached: closing a new connection");
            drop(stream);
            continue;
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "set_nodelay failed");
        }
        let connection = http.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(service.clone()),
        );
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(admitted);
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn caps_hold_and_are_given_back() {
        let global = Arc::new(Semaphore::new(3));
        let per_ip: PerIp = Arc::new(Mutex::new(BTreeMap::new()));
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let a1 = admit(&global, &per_ip, a, 2).unwrap();
        let a2 = admit(&global, &per_ip, a, 2).unwrap();
        assert!(admit(&global, &per_ip, a, 2).is_none(), "per-address cap");
        let b1 = admit(&global, &per_ip, b, 2).unwrap();
        assert!(admit(&global, &per_ip, b, 2).is_none(), "global cap");
        drop(a1);
        let a3 = admit(&global, &per_ip, a, 2).unwrap();
        drop((a2, a3, b1));
        assert!(
            per_ip.lock().unwrap().is_empty(),
            "no entry outlives its connections"
        );
        assert_eq!(global.available_permits(), 3);
    }
}
