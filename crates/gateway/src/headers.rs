//! The header contract between the gateway and its upstream: what is removed, what is added.

use http::header::{CONNECTION, HOST};
use http::{HeaderMap, HeaderName};

/// The verified signer's identity, as the signature layer resolved it.
pub const IDENTITY_HEADER: HeaderName = HeaderName::from_static("x-vouch-identity");

/// The verified signature's `keyid`.
pub const KEYID_HEADER: HeaderName = HeaderName::from_static("x-vouch-keyid");

/// The verified token's facts: base64url without padding of their JSON (vouch-token's
/// [`Facts`](vouch_token::Facts) serialization, the MCPVault facts shape).
pub const GRANTS_HEADER: HeaderName = HeaderName::from_static("x-vouch-grants");

/// The prefix of every header the gateway owns; client-sent ones never reach the upstream.
const VOUCH_PREFIX: &str = "x-vouch-";

/// Hop-by-hop fields (RFC 9110 §7.6.1, plus the legacy `Keep-Alive` and `Proxy-Connection`);
/// every other `Proxy-*` field goes too.
const HOP_BY_HOP: [HeaderName; 6] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    http::header::TE,
    http::header::TRAILER,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
];

/// Removes the hop-by-hop fields: `Connection` and every field it names, `Keep-Alive`,
/// `Proxy-*`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    remove_prefixed(headers, "proxy-");
}

/// Removes every field whose (lowercase) name starts with `prefix`.
fn remove_prefixed(headers: &mut HeaderMap, prefix: &str) {
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with(prefix))
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
}

/// Fields by which a proxy tells the next hop who the client was: whatever a client writes in
/// them is a claim, and an upstream that trusts its proxy's address (uvicorn trusts 127.0.0.1
/// by default) would take it as fact.
const FORWARDING: [HeaderName; 3] = [
    http::header::FORWARDED,
    HeaderName::from_static("x-real-ip"),
    HeaderName::from_static("x-client-ip"),
];

/// The request fields the upstream must not see: hop-by-hop fields, `Host` (the gateway sets
/// the upstream's), `Signature`, `Signature-Input`, the token header unless `keep_token`, every
/// `X-Vouch-*` field the client sent (names are compared lowercase, so in any case), and the
/// client's forwarding claims (`Forwarded`, `X-Forwarded-*`, `X-Real-IP`, `X-Client-IP`).
pub(crate) fn scrub_request(headers: &mut HeaderMap, token_header: &HeaderName, keep_token: bool) {
    strip_hop_by_hop(headers);
    headers.remove(HOST);
    for name in FORWARDING {
        headers.remove(name);
    }
    remove_prefixed(headers, "x-forwarded-");
    headers.remove("signature");
    headers.remove("signature-input");
    if !keep_token {
        headers.remove(token_header);
    }
    remove_prefixed(headers, VOUCH_PREFIX);
}
