//! The signature layer with the SEP-2752 profile: a signed request passes with its thumbprint
//! identity and tag; refusals carry Accept-Signature and a JSON-RPC error; the capability
//! advertisement.

use crate::support::now;
use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use tower::{ServiceBuilder, ServiceExt as _};
use vouch_httpsig::{
    RequestView, SignatureSpec, SigningKey, mcp_content_digest, mcp_spec, random_nonce,
    sep2752_spec, sign,
};
use vouch_keys::{ShardedReplayStore, StaticResolver};
use vouch_token::KeyPair;
use vouch_tower::*;

fn key(seed: u8) -> SigningKey {
    SigningKey::ed25519_from_seed(&[seed; 32]).unwrap()
}

fn thumbprint(seed: u8) -> String {
    key(seed).verifying_key().unwrap().jwk_thumbprint().unwrap()
}

fn pipeline() -> SignaturePipeline {
    let public = KeyPair::from_seed(&[1; 32]).unwrap().public_key();
    SignaturePipeline::new(
        crate::origin(),
        StaticResolver::new().with_ed25519(thumbprint(1), &public),
        ShardedReplayStore::new(1000),
    )
    .sep2752()
}

/// A request carrying `headers`, signed by `spec` (made from the request and key seed 1), as
/// the server sees it.
fn signed(
    headers: &[(&str, &str)],
    body: &str,
    spec: impl Fn(&RequestView<'_>, &SigningKey) -> SignatureSpec,
) -> Request<Body> {
    let body = body.as_bytes().to_vec();
    let mut builder = http::Request::post("http://mcp.example/mcp")
        .header("host", "mcp.example")
        .header("content-digest", mcp_content_digest(&body));
    for (n, v) in headers {
        builder = builder.header(*n, *v);
    }
    let mut req = builder.body(body.clone()).unwrap();
    let key = key(1);
    let spec = spec(&RequestView::of(&req), &key);
    sign(RequestView::of(&req), &spec, &key)
        .unwrap()
        .apply(req.headers_mut())
        .unwrap();
    let (mut parts, body) = req.into_parts();
    parts.uri = "/mcp".parse().unwrap();
    Request::from_parts(parts, Body::from(body))
}

async fn call(req: Request<Body>) -> (StatusCode, http::HeaderMap, serde_json::Value) {
    let svc = ServiceBuilder::new()
        .layer(SignatureLayer::new(pipeline()))
        .service(tower::service_fn(|req: Request<Body>| async move {
            let caller = req.extensions().get::<VerifiedCaller>().cloned().unwrap();
            let json = serde_json::json!({"identity": caller.identity, "tag": caller.tag});
            Ok::<_, std::convert::Infallible>(http::Response::new(Body::from(json.to_string())))
        }));
    let (parts, body) = svc.oneshot(req).await.unwrap().into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        serde_json::from_slice(&bytes).unwrap(),
    )
}

const MCP: [(&str, &str); 2] = [
    ("mcp-protocol-version", "2026-03-26"),
    ("mcp-session-id", "sess_abc123"),
];

#[tokio::test]
async fn a_sep2752_request_passes_with_the_thumbprint_as_identity_and_the_tag() {
    let (status, _, body) = call(signed(&MCP, "{}", |view, key| {
        sep2752_spec(view, key, Some("agent-instance-9f3e"), now()).unwrap()
    }))
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["identity"], thumbprint(1));
    assert_eq!(body["tag"], "agent-instance-9f3e");
}

#[tokio::test]
async fn an_unsigned_request_gets_accept_signature_and_a_json_rpc_error() {
    let req = Request::post("/mcp")
        .header("host", "mcp.example")
        .header("mcp-protocol-version", "2026-03-26")
        .body(Body::from("{}"))
        .unwrap();
    let (status, headers, body) = call(req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Only the MCP header this request carries is asked for (an initialize request has no
    // session yet, and must not sign one).
    assert_eq!(
        headers["accept-signature"],
        r#"sig1=("@method" "@target-uri" "content-digest" "mcp-protocol-version");created;nonce"#
    );
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Signature")
    );
    assert_eq!(
        body,
        serde_json::json!({
            "jsonrpc": "2.0",
            "id": null,
            "error": {"code": -32001, "message": "invalid_signature", "data": {"reason": "missing_signature"}}
        })
    );
}

#[tokio::test]
async fn each_profile_violation_is_refused_with_its_reason_and_accept_signature() {
    let t = now();
    const FULL: &[&str] = &[
        "@method",
        "@target-uri",
        "content-digest",
        "mcp-protocol-version",
        "mcp-session-id",
    ];
    type Spec = Box<dyn Fn(&RequestView<'_>, &SigningKey) -> SignatureSpec>;
    let by_hand = |covered: &'static [&'static str],
                   keyid: Option<String>,
                   tag: bool,
                   created: u64|
     -> Spec {
        Box::new(move |_, key| {
            let mut s = SignatureSpec::new("sig1")
                .cover_names(covered)
                .unwrap()
                .created(created)
                .nonce(random_nonce().unwrap())
                .keyid(
                    keyid
                        .clone()
                        .unwrap_or_else(|| key.verifying_key().unwrap().jwk_thumbprint().unwrap()),
                );
            if tag {
                s = s.tag("t");
            }
            s
        })
    };
    let cases: Vec<(&str, Spec, &str)> = vec![
        (
            "session id not covered",
            by_hand(
                &[
                    "@method",
                    "@target-uri",
                    "content-digest",
                    "mcp-protocol-version",
                ],
                None,
                true,
                t,
            ),
            "incomplete_signature",
        ),
        (
            "no tag",
            by_hand(FULL, None, false, t),
            "incomplete_signature",
        ),
        (
            "keyid not a thumbprint",
            by_hand(FULL, Some("https://agents.example/a".into()), true, t),
            "keyid_mismatch",
        ),
        ("too old", by_hand(FULL, None, true, t - 301), "expired"),
        (
            "too far ahead",
            by_hand(FULL, None, true, t + 120),
            "expired",
        ),
        (
            "vouch's MCP spec (alg, no tag, keyid not a thumbprint)",
            Box::new(|view, key| mcp_spec(view, key, "agent-a", None, now()).unwrap()),
            "incomplete_signature",
        ),
    ];
    for (name, spec, reason) in cases {
        let (status, headers, body) = call(signed(&MCP, "{}", spec)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}");
        assert_eq!(body["error"]["data"]["reason"], reason, "{name}");
        assert_eq!(
            headers["accept-signature"],
            r#"sig1=("@method" "@target-uri" "content-digest" "mcp-protocol-version" "mcp-session-id");created;nonce"#,
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_replay_is_refused_in_the_seps_form() {
    let req = signed(&MCP, "{}", |view, key| {
        sep2752_spec(view, key, None, now()).unwrap()
    });
    let (parts, body) = req.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let svc = ServiceBuilder::new()
        .layer(SignatureLayer::new(pipeline()))
        .service(tower::service_fn(|_: Request<Body>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty()))
        }));
    let first = svc
        .clone()
        .oneshot(Request::from_parts(
            parts.clone(),
            Body::from(bytes.clone()),
        ))
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let again = svc
        .oneshot(Request::from_parts(parts, Body::from(bytes)))
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED);
    assert!(again.headers().contains_key("accept-signature"));
    let body: serde_json::Value =
        serde_json::from_slice(&again.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["error"]["data"]["reason"], "replayed");
}

#[tokio::test]
async fn the_vouch_style_has_no_accept_signature() {
    let svc = ServiceBuilder::new()
        .layer(SignatureLayer::new(
            pipeline().refusal_style(RefusalStyle::Vouch),
        ))
        .service(tower::service_fn(|_: Request<Body>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty()))
        }));
    let req = Request::post("/mcp")
        .header("host", "mcp.example")
        .body(Body::from("{}"))
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(!res.headers().contains_key("accept-signature"));
}

#[test]
fn the_capability_lists_the_policys_algorithms() {
    assert_eq!(
        pipeline().sep2752_capability(true),
        serde_json::json!({"httpMessageSignatures": {
            "algorithms": ["ed25519", "ecdsa-p256-sha256", "ecdsa-p384-sha384"],
            "requiresSignature": true
        }})
    );
}

/// base64url without padding (the test's own, to build `Signature-Agent` values).
fn b64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// `Signature-Agent` carrying a JWKS of the keys of `seeds`, in the `data:` form.
fn agent_header(jwks: &serde_json::Value) -> String {
    format!(
        "\"data:application/http-message-signatures-directory+json;base64,{}\"",
        b64url(jwks.to_string().as_bytes())
    )
}

fn jwk(seed: u8) -> serde_json::Value {
    vouch_keys::public_jwk(&KeyPair::from_seed(&[seed; 32]).unwrap().public_key())
}

/// A pipeline that knows no key and takes keys from `Signature-Agent` when `accept`.
async fn call_agent(accept: bool, req: Request<Body>) -> (StatusCode, serde_json::Value) {
    let pipeline = SignaturePipeline::new(
        crate::origin(),
        StaticResolver::new(),
        ShardedReplayStore::new(1000),
    )
    .sep2752()
    .signature_agent_keys(accept);
    let svc = ServiceBuilder::new()
        .layer(SignatureLayer::new(pipeline))
        .service(tower::service_fn(|req: Request<Body>| async move {
            let caller = req.extensions().get::<VerifiedCaller>().cloned().unwrap();
            let json = serde_json::json!({"identity": caller.identity});
            Ok::<_, std::convert::Infallible>(http::Response::new(Body::from(json.to_string())))
        }));
    let (parts, body) = svc.oneshot(req).await.unwrap().into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (parts.status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn a_key_presented_in_signature_agent_is_used_only_when_enabled() {
    let jwks = serde_json::json!({"keys": [jwk(5), jwk(1)]});
    let request = || {
        signed(
            &[("signature-agent", agent_header(&jwks).as_str())],
            "{}",
            |view, key| sep2752_spec(view, key, None, now()).unwrap(),
        )
    };
    let (status, body) = call_agent(true, request()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["identity"], thumbprint(1));
    // Off (the default): the resolver knows no key.
    let (status, body) = call_agent(false, request()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["data"]["reason"], "unknown_key");
}

#[tokio::test]
async fn signature_agent_attacks_are_refused() {
    let t = now();
    // Another key's JWKS: no key for the keyid.
    let other = agent_header(&serde_json::json!({"keys": [jwk(2)]}));
    // A JWK of another key under the signer's thumbprint as kid: found by kid, and then the
    // signature (made by key 1) does not verify with key 2.
    let mut forged = jwk(2);
    forged["kid"] = thumbprint(1).into();
    let forged = agent_header(&serde_json::json!({"keys": [forged]}));
    let url = "\"https://client.example/.well-known/http-message-signatures-directory\"".to_owned();
    let own = agent_header(&serde_json::json!({"keys": [jwk(1)]}));
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            "another key",
            vec![("signature-agent", &other)],
            "unknown_key",
        ),
        (
            "a forged kid",
            vec![("signature-agent", &forged)],
            "bad_signature",
        ),
        (
            "a URL (never fetched)",
            vec![("signature-agent", &url)],
            "unknown_key",
        ),
        (
            "not a string",
            vec![("signature-agent", "data:x")],
            "unknown_key",
        ),
        (
            "two fields",
            vec![("signature-agent", &own), ("signature-agent", &own)],
            "unknown_key",
        ),
    ];
    for (name, headers, reason) in cases {
        let req = signed(&headers, "{}", |view, key| {
            sep2752_spec(view, key, None, t).unwrap()
        });
        let (status, body) = call_agent(true, req).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}");
        assert_eq!(body["error"]["data"]["reason"], reason, "{name}");
    }
}

#[tokio::test]
async fn signature_agent_keys_are_never_used_under_a_policy_without_thumbprint_keyids() {
    let own = agent_header(&serde_json::json!({"keys": [jwk(1)]}));
    let pipeline = SignaturePipeline::new(
        crate::origin(),
        StaticResolver::new(),
        ShardedReplayStore::new(1000),
    )
    .signature_agent_keys(true);
    let svc = ServiceBuilder::new()
        .layer(SignatureLayer::new(pipeline))
        .service(tower::service_fn(|_: Request<Body>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty()))
        }));
    // vouch's MCP policy, the keyid being the thumbprint all the same.
    let req = signed(&[("signature-agent", &own)], "{}", |view, key| {
        mcp_spec(view, key, &thumbprint(1), None, now()).unwrap()
    });
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value =
        serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["detail"]["detail"], "unknown_key");
}
