//! vouch's response profile (RFC 9421 §2.4): a response bound to the request it answers, and
//! what an attacker on the path may try against it.

use http::response::Parts;
use http::{Request, Response, StatusCode};
use vouch_httpsig::*;

const NOW: u64 = 1_700_000_000;
const JSON: &[u8] = br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}"#;

fn client() -> SigningKey {
    SigningKey::ed25519_from_seed(&[7; 32]).unwrap()
}

fn server() -> SigningKey {
    SigningKey::ed25519_from_seed(&[9; 32]).unwrap()
}

/// A request signed by the client, as sent.
fn signed_request(uri: &str, body: &[u8]) -> Request<Vec<u8>> {
    let mut request = Request::post(uri)
        .header("content-digest", mcp_content_digest(body))
        .body(body.to_vec())
        .unwrap();
    let spec = mcp_spec(&RequestView::of(&request), &client(), "agent-a", None, NOW).unwrap();
    sign(RequestView::of(&request), &spec, &client())
        .unwrap()
        .apply(request.headers_mut())
        .unwrap();
    request
}

fn response_parts(content_type: &str, body: Option<&[u8]>) -> Parts {
    let mut builder = Response::builder()
        .status(StatusCode::OK)
        .header("content-type", content_type);
    if let Some(body) = body {
        builder = builder.header("content-digest", mcp_content_digest(body));
    }
    builder.body(()).unwrap().into_parts().0
}

/// The server's signature on `parts` (with `body`), answering `request`, created at `created`.
fn sign_response(parts: &mut Parts, body: &[u8], request: &Request<Vec<u8>>, created: u64) {
    let view = ResponseView::new(parts, body).with_request(RequestView::of(request));
    let spec = mcp_response_spec(&view, &server(), "mcp.example", "sig1", created).unwrap();
    let signature = sign(view, &spec, &server()).unwrap();
    signature.apply(&mut parts.headers).unwrap();
}

fn check(
    parts: &Parts,
    body: &[u8],
    request: &Request<Vec<u8>>,
    now: u64,
) -> Result<Verified, Error> {
    let view = ResponseView::new(parts, body).with_request(RequestView::of(request));
    Verifier::new(VerifyPolicy::mcp_response("sig1"))
        .prepare(view, now)?
        .verify(&server().verifying_key()?)
}

#[test]
fn a_signed_response_verifies_and_covers_the_profile() {
    let request = signed_request("https://mcp.example/mcp", b"{}");
    let mut parts = response_parts("application/json", Some(JSON));
    sign_response(&mut parts, JSON, &request, NOW);
    let verified = check(&parts, JSON, &request, NOW).unwrap();
    assert_eq!(verified.label, RESPONSE_LABEL);
    let covered: Vec<String> = verified
        .components()
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(
        covered,
        [
            r#""@status""#,
            r#""content-type""#,
            r#""content-digest""#,
            r#""@method";req"#,
            r#""@target-uri";req"#,
            r#""signature";req;key="sig1""#,
        ]
    );
    assert_eq!(verified.params.keyid.as_deref(), Some("mcp.example"));
    assert_eq!(verified.params.created, Some(NOW));
}

#[test]
fn a_response_replayed_onto_another_request_fails() {
    // Same method, same URL, same body: only the request's signature differs (a new nonce).
    let first = signed_request("https://mcp.example/mcp", b"{}");
    let second = signed_request("https://mcp.example/mcp", b"{}");
    let mut parts = response_parts("application/json", Some(JSON));
    sign_response(&mut parts, JSON, &first, NOW);
    check(&parts, JSON, &first, NOW).unwrap();
    assert_eq!(
        check(&parts, JSON, &second, NOW).unwrap_err(),
        Error::BadSignature
    );
}

#[test]
fn a_response_for_another_method_or_target_fails() {
    let request = signed_request("https://mcp.example/mcp", b"{}");
    let mut parts = response_parts("application/json", Some(JSON));
    sign_response(&mut parts, JSON, &request, NOW);
    // The same request headers (its signature included) seen with another target or method.
    let mut moved = request.clone();
    *moved.uri_mut() = "https://mcp.example/other".parse().unwrap();
    assert_eq!(
        check(&parts, JSON, &moved, NOW).unwrap_err(),
        Error::BadSignature
    );
    let mut put = request.clone();
    *put.method_mut() = http::Method::PUT;
    assert_eq!(
        check(&parts, JSON, &put, NOW).unwrap_err(),
        Error::BadSignature
    );
}

#[test]
fn a_swapped_body_fails() {
    let request = signed_request("https://mcp.example/mcp", b"{}");
    let mut parts = response_parts("application/json", Some(JSON));
    sign_response(&mut parts, JSON, &request, NOW);
    let other = br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"rm"}]}}"#;
    assert_eq!(
        check(&parts, other, &request, NOW).unwrap_err(),
        Error::DigestMismatch
    );
    // Swapping the Content-Digest with the body breaks the signature instead.
    parts
        .headers
        .insert("content-digest", mcp_content_digest(other).parse().unwrap());
    assert_eq!(
        check(&parts, other, &request, NOW).unwrap_err(),
        Error::BadSignature
    );
}

#[test]
fn an_unsigned_response_is_refused() {
    let request = signed_request("https://mcp.example/mcp", b"{}");
    let parts = response_parts("application/json", Some(JSON));
    assert_eq!(
        check(&parts, JSON, &request, NOW).unwrap_err(),
        Error::NoSignature
    );
}

#[test]
fn a_response_signature_not_bound_to_the_request_signature_is_refused() {
    let request = signed_request("https://mcp.example/mcp", b"{}");
    let mut parts = response_parts("application/json", Some(JSON));
    let view = ResponseView::new(&parts, JSON).with_request(RequestView::of(&request));
    let spec = SignatureSpec::new(RESPONSE_LABEL)
        .cover_names(&["@status", "content-type", "content-digest"])
        .unwrap()
        .cover(Component::of_request("@method").unwrap())
        .cover(Component::of_request("@target-uri").unwrap())
        .created(NOW)
        .keyid("mcp.example");
    sign(view, &spec, &server())
        .unwrap()
        .apply(&mut parts.headers)
        .unwrap();
    assert!(matches!(
        check(&parts, JSON, &request, NOW),
        Err(Error::MissingComponent(c)) if c == r#""signature";req;key="sig1""#
    ));
    // Bound to another label of the request (one the client did not send): unavailable.
    let mut parts = response_parts("application/json", Some(JSON));
    let view = ResponseView::new(&parts, JSON).with_request(RequestView::of(&request));
    let spec = mcp_response_spec(&view, &server(), "mcp.example", "sig2", NOW);
    assert!(sign(view, &spec.unwrap(), &server()).is_err());
    sign_response(&mut parts, JSON, &request, NOW);
    let view = ResponseView::new(&parts, JSON).with_request(RequestView::of(&request));
    assert!(matches!(
        Verifier::new(VerifyPolicy::mcp_response("sig2")).prepare(view, NOW),
        Err(Error::MissingComponent(_))
    ));
}

#[test]
fn the_response_freshness_window_applies() {
    let request = signed_request("https://mcp.example/mcp", b"{}");
    let mut parts = response_parts("application/json", Some(JSON));
    sign_response(&mut parts, JSON, &request, NOW);
    assert_eq!(
        check(&parts, JSON, &request, NOW + 301).unwrap_err(),
        Error::TooOld
    );
    check(&parts, JSON, &request, NOW + 300).unwrap();
    assert_eq!(
        check(&parts, JSON, &request, NOW - 31).unwrap_err(),
        Error::CreatedInFuture
    );
}

#[test]
fn an_event_stream_is_signed_over_its_head_only() {
    let request = signed_request("https://mcp.example/mcp", b"{}");
    let mut parts = response_parts("text/event-stream", None);
    sign_response(&mut parts, b"", &request, NOW);
    // The body is not bound: any stream passes the signature check.
    check(&parts, b"data: anything\n\n", &request, NOW).unwrap();
    // A JSON answer without a Content-Digest is refused.
    let mut json = response_parts("application/json", None);
    sign_response(&mut json, b"", &request, NOW);
    assert_eq!(
        check(&json, JSON, &request, NOW).unwrap_err(),
        Error::DigestMissing
    );
    // Relabelling a signed JSON answer as a stream (to drop the body binding) breaks it.
    let mut relabelled = response_parts("application/json", None);
    sign_response(&mut relabelled, b"", &request, NOW);
    relabelled
        .headers
        .insert("content-type", "text/event-stream".parse().unwrap());
    assert_eq!(
        check(&relabelled, JSON, &request, NOW).unwrap_err(),
        Error::BadSignature
    );
}

#[test]
fn an_event_stream_whose_content_type_is_not_covered_needs_a_digest() {
    let request = signed_request("https://mcp.example/mcp", b"{}");
    let mut parts = response_parts("text/event-stream", None);
    let view = ResponseView::new(&parts, b"").with_request(RequestView::of(&request));
    let spec = SignatureSpec::new(RESPONSE_LABEL)
        .cover_names(&["@status"])
        .unwrap()
        .cover(Component::of_request("@method").unwrap())
        .cover(Component::of_request("@target-uri").unwrap())
        .cover(Component::request_dictionary_member("signature", "sig1").unwrap())
        .created(NOW)
        .keyid("mcp.example");
    sign(view, &spec, &server())
        .unwrap()
        .apply(&mut parts.headers)
        .unwrap();
    // The policy requires content-type when present, and without that rule the digest rule
    // would refuse an uncovered stream.
    assert!(matches!(
        check(&parts, b"", &request, NOW),
        Err(Error::MissingComponent(_))
    ));
    // Even under a policy that does not ask for content-type, the digest rule refuses a
    // stream whose Content-Type the signature does not cover.
    let lax = VerifyPolicy::mcp_response("sig1")
        .require_exactly(vec![Component::new("@status").unwrap()]);
    let view = ResponseView::new(&parts, b"").with_request(RequestView::of(&request));
    assert_eq!(
        Verifier::new(lax).prepare(view, NOW).unwrap_err(),
        Error::DigestMissing
    );
}

#[test]
fn req_components_need_the_request_and_a_response() {
    let request = signed_request("https://mcp.example/mcp", b"{}");
    let parts = response_parts("application/json", Some(JSON));
    let spec = SignatureSpec::new("r")
        .cover(Component::of_request("@method").unwrap())
        .created(NOW);
    // No request given.
    assert!(matches!(
        sign(ResponseView::new(&parts, JSON), &spec, &server()),
        Err(Error::Unsupported(_))
    ));
    // `;req` on a request.
    assert!(matches!(
        sign(RequestView::of(&request), &spec, &server()),
        Err(Error::Malformed(_))
    ));
    // `@status` of a request does not exist.
    let status = SignatureSpec::new("r").cover(Component::of_request("@status").unwrap());
    let view = ResponseView::new(&parts, JSON).with_request(RequestView::of(&request));
    assert!(matches!(
        sign(view, &status, &server()),
        Err(Error::ComponentUnavailable(_))
    ));
}

#[test]
fn an_event_stream_is_one_content_type_line_of_that_media_type() {
    let headers = |lines: &[&str]| {
        let mut map = http::HeaderMap::new();
        for line in lines {
            map.append(http::header::CONTENT_TYPE, line.parse().unwrap());
        }
        map
    };
    assert!(is_event_stream(&headers(&["text/event-stream"])));
    assert!(is_event_stream(&headers(&[
        " Text/Event-Stream ; charset=utf-8"
    ])));
    assert!(!is_event_stream(&headers(&[])));
    assert!(!is_event_stream(&headers(&["application/json"])));
    assert!(!is_event_stream(&headers(&["text/event-streams"])));
    // Two lines are never an event stream, whichever comes first.
    assert!(!is_event_stream(&headers(&[
        "text/event-stream",
        "application/json"
    ])));
    assert!(!is_event_stream(&headers(&[
        "application/json",
        "text/event-stream"
    ])));
    assert!(media_type_is(
        &headers(&["application/json; charset=utf-8"]),
        "application/json"
    ));
}
