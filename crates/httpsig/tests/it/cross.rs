//! Cross-checks with the independent `httpsig` crate (0.0.26): vouch signs and httpsig verifies,
//! httpsig signs and vouch verifies.
//!
//! httpsig re-serializes parameters in its own fixed order (created, expires, nonce, alg, keyid,
//! tag), which vouch's MCP profile also uses, so its rebuilt base matches ours.

use base64ct::{Base64, Encoding};
use httpsig::prelude::message_component::{HttpMessageComponent, HttpMessageComponentId};
use httpsig::prelude::*;
use vouch_httpsig::{
    RequestView, SigningKey as VouchKey, Verifier, VerifyPolicy, mcp_content_digest, mcp_spec, sign,
};

const SEED: [u8; 32] = [
    0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c, 0xc4,
    0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60,
];
const NOW: u64 = 1_700_000_000;
const BODY: &[u8] = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"add"}}"#;

fn request() -> http::Request<Vec<u8>> {
    http::Request::post("https://mcp.example/mcp?x=1")
        .header("content-digest", mcp_content_digest(BODY))
        .header("mcp-protocol-version", "2025-06-18")
        .body(BODY.to_vec())
        .unwrap()
}

/// httpsig's verification of a base another implementation built, from the header values.
fn httpsig_verify(
    base: &str,
    input: &str,
    signature: &str,
    label: &str,
    public: &[u8],
) -> HttpSigResult<()> {
    let pk = PublicKey::from_bytes(&AlgorithmName::Ed25519, public)?;
    let map = HttpSignatureHeaders::try_parse(signature, input)?;
    let headers = map.get(label).expect("label present");
    let lines = base
        .lines()
        .filter(|l| !l.starts_with("\"@signature-params\""))
        .map(HttpMessageComponent::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    let rebuilt = HttpSignatureBase::try_new(&lines, headers.signature_params())?;
    assert_eq!(rebuilt.to_string(), base, "httpsig rebuilds the same base");
    // Only the cryptographic check: httpsig would also compare `expires` with its own clock.
    let sig = Base64::decode_vec(
        signature
            .trim_start_matches(&format!("{label}=:"))
            .trim_end_matches(':'),
    )
    .unwrap();
    pk.verify(base.as_bytes(), &sig)
}

#[test]
fn vouch_signs_httpsig_verifies() {
    let key = VouchKey::ed25519_from_seed(&SEED).unwrap();
    let mut req = request();
    let spec = mcp_spec(&RequestView::of(&req), &key, "agent-a", None, NOW).unwrap();
    let signature = sign(RequestView::of(&req), &spec, &key).unwrap();
    signature.apply(req.headers_mut()).unwrap();
    let base = String::from_utf8(signature.base().to_vec()).unwrap();
    let public = key.verifying_key().unwrap().public_bytes().to_vec();
    httpsig_verify(
        &base,
        &signature.input_member(),
        &signature.signature_member(),
        "sig1",
        &public,
    )
    .expect("httpsig accepts vouch's signature");
    // And it refuses the same signature over a changed base.
    let changed = base.replace("POST", "PUT");
    assert!(
        httpsig_verify(
            &changed,
            &signature.input_member(),
            &signature.signature_member(),
            "sig1",
            &public
        )
        .is_err()
    );
}

#[test]
fn httpsig_signs_vouch_verifies() {
    let req = request();
    let secret = SecretKey::from_bytes(&AlgorithmName::Ed25519, &SEED).unwrap();
    let names = [
        "@method",
        "@target-uri",
        "content-digest",
        "mcp-protocol-version",
    ];
    let ids: Vec<HttpMessageComponentId> = names
        .iter()
        .map(|c| HttpMessageComponentId::try_from(*c).unwrap())
        .collect();
    let mut params = HttpSignatureParams::try_new(&ids).unwrap();
    params
        .set_created(NOW)
        .set_keyid("agent-a")
        .set_nonce("httpsig-nonce-1")
        .set_alg(&AlgorithmName::Ed25519);
    let values = [
        "POST".to_owned(),
        "https://mcp.example/mcp?x=1".to_owned(),
        mcp_content_digest(BODY),
        "2025-06-18".to_owned(),
    ];
    let lines = ids
        .iter()
        .zip(values)
        .map(|(id, v)| HttpMessageComponent::try_from((id, &[v][..])))
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let base = HttpSignatureBase::try_new(&lines, &params).unwrap();
    let headers = base.build_signature_headers(&secret, Some("sig1")).unwrap();

    let mut signed = req.clone();
    signed.headers_mut().insert(
        "signature-input",
        headers.signature_input_header_value().parse().unwrap(),
    );
    signed.headers_mut().insert(
        "signature",
        headers.signature_header_value().parse().unwrap(),
    );
    let vk = VouchKey::ed25519_from_seed(&SEED)
        .unwrap()
        .verifying_key()
        .unwrap();
    let prepared = Verifier::new(VerifyPolicy::mcp())
        .prepare(RequestView::of(&signed), NOW)
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(prepared.base()),
        base.to_string(),
        "same base both sides"
    );
    let verified = prepared
        .verify(&vk)
        .expect("vouch accepts httpsig's signature");
    assert_eq!(verified.params.keyid.as_deref(), Some("agent-a"));

    // The same signature on a request to another authority is refused by vouch.
    let mut moved = signed.clone();
    *moved.uri_mut() = "https://evil.example/mcp?x=1".parse().unwrap();
    let p = Verifier::new(VerifyPolicy::mcp())
        .prepare(RequestView::of(&moved), NOW)
        .unwrap();
    assert_eq!(
        p.verify(&vk).unwrap_err(),
        vouch_httpsig::Error::BadSignature
    );
}
