//! Shared fixtures: a minimal executor for the stores' futures (which never wait) and signed,
//! verified requests.

use std::future::Future;
use std::task::{Context, Poll, Waker};

pub(crate) fn ready<T>(f: impl Future<Output = T>) -> T {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("store future was not ready"),
    }
}

/// The time every fixture is signed and verified at.
pub(crate) const NOW: u64 = 1_700_000_000;

/// A freshly signed and verified request by the key with seed `[seed; 32]` (a new nonce each
/// call).
pub(crate) fn verified(seed: u8) -> vouch_httpsig::Verified {
    use vouch_httpsig::{RequestView, SigningKey, Verifier, VerifyPolicy, mcp_spec, sign};
    let key = SigningKey::ed25519_from_seed(&[seed; 32]).unwrap();
    let mut req = http::Request::get("https://mcp.example/mcp")
        .body(Vec::new())
        .unwrap();
    let spec = mcp_spec(&RequestView::of(&req), &key, "agent", None, NOW).unwrap();
    sign(RequestView::of(&req), &spec, &key)
        .unwrap()
        .apply(req.headers_mut())
        .unwrap();
    Verifier::new(VerifyPolicy::mcp())
        .prepare(RequestView::of(&req), NOW)
        .unwrap()
        .verify(&key.verifying_key().unwrap())
        .unwrap()
}

/// `n` distinct replay keys, each from a really signed and verified request. HMAC-signed, which
/// is much faster than Ed25519 when a test needs thousands.
pub(crate) fn replay_keys(n: usize) -> Vec<vouch_httpsig::ReplayKey> {
    use vouch_httpsig::{
        Algorithm, RequestView, SigningKey, Verifier, VerifyPolicy, mcp_spec, sign,
    };
    let key = SigningKey::hmac_sha256(b"replay test secret");
    let verifying = key.verifying_key().unwrap();
    let verifier = Verifier::new(VerifyPolicy::mcp().algorithms(&[Algorithm::HmacSha256]));
    let req = http::Request::get("https://mcp.example/mcp")
        .body(Vec::new())
        .unwrap();
    (0..n)
        .map(|_| {
            let mut req = req.clone();
            let spec = mcp_spec(&RequestView::of(&req), &key, "agent", None, NOW).unwrap();
            sign(RequestView::of(&req), &spec, &key)
                .unwrap()
                .apply(req.headers_mut())
                .unwrap();
            verifier
                .prepare(RequestView::of(&req), NOW)
                .unwrap()
                .verify(&verifying)
                .unwrap()
                .replay_key()
        })
        .collect()
}
