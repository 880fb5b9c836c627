//! Raw HTTP/1.1 messages for tests, a minimal executor for the replay future, and fixtures.

use std::future::Future;
use std::task::{Context, Poll, Waker};

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};

/// A parsed raw message: start line pieces, headers, body.
pub(crate) struct Raw {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

/// Parses `METHOD target HTTP/1.1` or `HTTP/1.1 200 OK`, LF line ends, `Name: value` headers.
pub(crate) fn parse(text: &str) -> Raw {
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let start: Vec<&str> = lines.next().unwrap().split(' ').collect();
    let mut headers = HeaderMap::new();
    for l in lines {
        let (n, v) = l.split_once(':').unwrap();
        headers.append(
            HeaderName::from_bytes(n.trim().as_bytes()).unwrap(),
            HeaderValue::from_str(v.trim()).unwrap(),
        );
    }
    let (method, uri, status) = if start[0].starts_with("HTTP/") {
        (
            Method::GET,
            Uri::from_static("/"),
            StatusCode::from_u16(start[1].parse().unwrap()).unwrap(),
        )
    } else {
        (
            Method::from_bytes(start[0].as_bytes()).unwrap(),
            start[1].parse().unwrap(),
            StatusCode::OK,
        )
    };
    Raw {
        method,
        uri,
        status,
        headers,
        body: body.as_bytes().to_vec(),
    }
}

/// Drives a future that never waits (the in-memory replay store's).
pub(crate) fn ready<T>(f: impl Future<Output = T>) -> T {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("future was not ready"),
    }
}

pub(crate) fn json(path: &str) -> serde_json::Value {
    let full = format!("{}/tests/vectors/{path}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&full).unwrap()).unwrap()
}
