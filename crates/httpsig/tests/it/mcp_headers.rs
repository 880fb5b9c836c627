//! The MCP 2026-07-28 request metadata headers (`Mcp-Method`, `Mcp-Name`, `Mcp-Param-*`): the
//! MCP profile signs them when present and the MCP policy refuses a signature that leaves one
//! out, or one added after signing.

use http::{HeaderValue, Request};
use vouch_httpsig::*;

const NOW: u64 = 1_700_000_000;
const KEYID: &str = "agent-a";
const BODY: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"execute_sql","arguments":{"region":"us-west1"}}}"#;

fn key() -> SigningKey {
    SigningKey::ed25519_from_seed(&[9; 32]).unwrap()
}

fn unsigned() -> Request<Vec<u8>> {
    Request::post("https://mcp.example/mcp")
        .header("content-digest", mcp_content_digest(BODY))
        .header("mcp-protocol-version", "2026-07-28")
        .header("Mcp-Method", "tools/call")
        .header("Mcp-Name", "execute_sql")
        .header("Mcp-Param-Region", "us-west1")
        .header("mcp-param-b", "=?base64?IHBhZGRlZCA=?=")
        .body(BODY.to_vec())
        .unwrap()
}

fn sign_with(
    mut req: Request<Vec<u8>>,
    edit: impl FnOnce(SignatureSpec) -> SignatureSpec,
) -> Request<Vec<u8>> {
    let spec = edit(mcp_spec(&RequestView::of(&req), &key(), KEYID, None, NOW).unwrap());
    sign(RequestView::of(&req), &spec, &key())
        .unwrap()
        .apply(req.headers_mut())
        .unwrap();
    req
}

fn verify(req: &Request<Vec<u8>>) -> Result<Verified, Error> {
    Verifier::new(VerifyPolicy::mcp())
        .prepare(RequestView::of(req), NOW)?
        .verify(&key().verifying_key()?)
}

#[test]
fn the_profile_covers_every_mcp_header_present() {
    let spec = mcp_spec(&RequestView::of(&unsigned()), &key(), KEYID, None, NOW).unwrap();
    let names: Vec<String> = spec.components().iter().map(ToString::to_string).collect();
    for h in ["mcp-method", "mcp-name", "mcp-param-b", "mcp-param-region"] {
        assert!(names.contains(&format!("\"{h}\"")), "{h} in {names:?}");
    }
    // Param headers come in name order, whatever order they were added in.
    let b = names.iter().position(|n| n == "\"mcp-param-b\"");
    let region = names.iter().position(|n| n == "\"mcp-param-region\"");
    assert!(b < region);
    verify(&sign_with(unsigned(), |s| s)).unwrap();
}

#[test]
fn the_profile_covers_none_when_absent() {
    let mut req = unsigned();
    for h in ["mcp-method", "mcp-name", "mcp-param-region", "mcp-param-b"] {
        req.headers_mut().remove(h);
    }
    let spec = mcp_spec(&RequestView::of(&req), &key(), KEYID, None, NOW).unwrap();
    assert!(
        spec.components()
            .iter()
            .all(|c| !c.to_string().starts_with("\"mcp-param") && c.to_string() != "\"mcp-method\"")
    );
    verify(&sign_with(req, |s| s)).unwrap();
}

/// A signature that leaves out one of the headers, built by hand.
fn leaving_out(header: &str) -> Request<Vec<u8>> {
    let req = unsigned();
    let keep: Vec<String> = mcp_spec(&RequestView::of(&req), &key(), KEYID, None, NOW)
        .unwrap()
        .components()
        .iter()
        .map(|c| c.to_string().trim_matches('"').to_owned())
        .filter(|c| c != header)
        .collect();
    let names: Vec<&str> = keep.iter().map(String::as_str).collect();
    sign_with(req, |_| {
        SignatureSpec::new("sig1")
            .cover_names(&names)
            .unwrap()
            .created(NOW)
            .nonce("n")
            .keyid(KEYID)
    })
}

#[test]
fn a_signature_leaving_one_out_is_refused() {
    for h in ["mcp-method", "mcp-name", "mcp-param-region", "mcp-param-b"] {
        assert_eq!(
            verify(&leaving_out(h)).unwrap_err(),
            Error::MissingComponent(format!("\"{h}\"")),
            "{h}"
        );
    }
}

#[test]
fn a_header_added_or_changed_after_signing_is_refused() {
    let signed = sign_with(unsigned(), |s| s);
    let mut added = signed.clone();
    added
        .headers_mut()
        .insert("mcp-param-tenant", HeaderValue::from_static("other"));
    assert_eq!(
        verify(&added).unwrap_err(),
        Error::MissingComponent("\"mcp-param-tenant\"".into())
    );
    for (h, v) in [
        ("mcp-name", "drop_table"),
        ("mcp-method", "prompts/get"),
        ("mcp-param-region", "eu-west1"),
    ] {
        let mut changed = signed.clone();
        changed.headers_mut().insert(h, HeaderValue::from_static(v));
        assert_eq!(verify(&changed).unwrap_err(), Error::BadSignature, "{h}");
    }
    // A second line of a covered header changes its covered value.
    let mut doubled = signed;
    doubled
        .headers_mut()
        .append("mcp-name", HeaderValue::from_static("drop_table"));
    assert_eq!(verify(&doubled).unwrap_err(), Error::BadSignature);
}

#[test]
fn the_prefix_rule_is_configurable() {
    let mut req = sign_with(unsigned(), |s| s);
    req.headers_mut()
        .insert("x-tenant-a", HeaderValue::from_static("1"));
    let policy = VerifyPolicy::mcp().require_prefix_if_present("X-Tenant-");
    let err = Verifier::new(policy)
        .prepare(RequestView::of(&req), NOW)
        .unwrap_err();
    assert_eq!(err, Error::MissingComponent("\"x-tenant-a\"".into()));
    // `require_exactly` drops the profile's prefixes with its when-present headers.
    let bare = VerifyPolicy::mcp().require_exactly(vec![Component::new("@method").unwrap()]);
    let mut extra = sign_with(unsigned(), |s| s);
    extra
        .headers_mut()
        .insert("mcp-param-late", HeaderValue::from_static("1"));
    Verifier::new(bare)
        .prepare(RequestView::of(&extra), NOW)
        .unwrap()
        .verify(&key().verifying_key().unwrap())
        .unwrap();
}
