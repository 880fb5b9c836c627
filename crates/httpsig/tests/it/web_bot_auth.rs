//! Web Bot Auth: the draft's vectors (request signatures, the signed directory response, the
//! thumbprint), vouch's own signatures, and every refusal of the profile.

use http::{HeaderMap, Method, Request, Uri};
use vouch_httpsig::*;

use crate::support::{json, parse};

const NOW: u64 = 1_735_689_610;

fn rfc_keys() -> serde_json::Value {
    json("rfc9421-appendix-b.json")["keys"].clone()
}

fn draft_key(name: &str, alg: Algorithm) -> VerifyingKey {
    VerifyingKey::from_pem(rfc_keys()[name]["public_pem"].as_str().unwrap(), Some(alg)).unwrap()
}

fn ed25519_signer() -> SigningKey {
    SigningKey::from_pem(
        rfc_keys()["test-key-ed25519"]["private_pem"]
            .as_str()
            .unwrap(),
        None,
    )
    .unwrap()
}

/// The draft's request for `case`, with its signature headers.
fn draft_request(case: &serde_json::Value) -> (Method, Uri, HeaderMap) {
    let raw = parse(case["request"].as_str().unwrap());
    let mut headers = raw.headers;
    headers.insert(
        "signature-input",
        case["signature_input"].as_str().unwrap().parse().unwrap(),
    );
    headers.insert(
        "signature",
        case["signature"].as_str().unwrap().parse().unwrap(),
    );
    (raw.method, raw.uri, headers)
}

fn each_request_case(form: &str) -> Vec<serde_json::Value> {
    let v = json("web-bot-auth-draft.json");
    let cases: Vec<serde_json::Value> = v["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["signature_agent_form"] == form)
        .cloned()
        .collect();
    assert_eq!(cases.len(), 2, "{form} cases");
    cases
}

/// The draft's vectors expire in 2124: the profile with the 24-hour bound lifted.
fn profile_without_lifetime_bound() -> VerifyPolicy {
    VerifyPolicy::web_bot_auth().lifetime(true, None)
}

#[test]
fn draft_dictionary_vectors_verify_under_the_profile() {
    for case in each_request_case("dictionary") {
        let name = case["name"].as_str().unwrap();
        let (method, uri, headers) = draft_request(&case);
        let view = RequestView::from_parts(&method, &uri, &headers, b"").with_scheme("https");
        let prepared = Verifier::new(profile_without_lifetime_bound())
            .prepare(view, NOW)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            String::from_utf8_lossy(prepared.base()),
            case["base"].as_str().unwrap(),
            "{name}: signature base"
        );
        let agent = prepared.signature_agent().unwrap().clone();
        assert_eq!(agent.member(), "agent2");
        assert_eq!(agent.kind(), AgentKind::Directory);
        assert_eq!(
            agent.fetch_url(),
            "https://signature-agent.test/.well-known/http-message-signatures-directory"
        );
        let alg = Algorithm::from_name(case["alg"].as_str().unwrap()).unwrap();
        let verified = prepared
            .verify(&draft_key(case["key"].as_str().unwrap(), alg))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(verified.signature_agent(), Some(&agent));
        assert_eq!(verified.params.tag.as_deref(), Some(WEB_BOT_AUTH_TAG));
    }
}

#[test]
fn draft_vectors_outlive_the_24_hour_bound_and_are_refused_by_the_strict_profile() {
    for case in each_request_case("dictionary") {
        let (method, uri, headers) = draft_request(&case);
        let view = RequestView::from_parts(&method, &uri, &headers, b"").with_scheme("https");
        let err = Verifier::new(VerifyPolicy::web_bot_auth())
            .prepare(view, NOW)
            .unwrap_err();
        assert_eq!(err, Error::LifetimeTooLong, "{}", case["name"]);
    }
}

#[test]
fn draft_legacy_vectors_verify_as_signatures_but_the_profile_refuses_a_bare_string() {
    for case in each_request_case("legacy") {
        let name = case["name"].as_str().unwrap();
        let (method, uri, headers) = draft_request(&case);
        let view = RequestView::from_parts(&method, &uri, &headers, b"").with_scheme("https");
        // The legacy vectors live one hour: within the 24-hour bound.
        let err = Verifier::new(VerifyPolicy::web_bot_auth())
            .prepare(view, NOW)
            .unwrap_err();
        assert!(matches!(err, Error::Malformed(_)), "{name}: {err:?}");
        // Accepted as legacy when asked: the member is keyed by the signature's label.
        let prepared = Verifier::new(VerifyPolicy::web_bot_auth().legacy_signature_agent(true))
            .prepare(view, NOW)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let agent = prepared.signature_agent().unwrap().clone();
        assert_eq!(agent.member(), "sig2");
        assert_eq!(agent.value(), "https://signature-agent.test");
        let alg = Algorithm::from_name(case["alg"].as_str().unwrap()).unwrap();
        prepared
            .verify(&draft_key(case["key"].as_str().unwrap(), alg))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        // A second legacy line makes the field a list, not one string: refused.
        let mut doubled = headers.clone();
        doubled.append(
            SIGNATURE_AGENT_HEADER,
            "\"https://evil.example\"".parse().unwrap(),
        );
        let view2 = RequestView::from_parts(&method, &uri, &doubled, b"").with_scheme("https");
        assert!(matches!(
            Verifier::new(VerifyPolicy::web_bot_auth().legacy_signature_agent(true))
                .prepare(view2, NOW)
                .unwrap_err(),
            Error::Malformed(_)
        ));
        // The signature itself is sound: without the Signature-Agent rule, it verifies.
        let prepared = Verifier::new(VerifyPolicy::web_bot_auth().require_signature_agent(false))
            .prepare(view, NOW)
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(prepared.base()),
            case["base"].as_str().unwrap(),
            "{name}: signature base"
        );
        let alg = Algorithm::from_name(case["alg"].as_str().unwrap()).unwrap();
        prepared
            .verify(&draft_key(case["key"].as_str().unwrap(), alg))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn draft_thumbprint_is_the_keyid() {
    let v = json("web-bot-auth-draft.json");
    let t = &v["thumbprints"][0];
    let key = draft_key(t["key"].as_str().unwrap(), Algorithm::Ed25519);
    assert_eq!(
        ed25519_thumbprint(&key).unwrap(),
        t["thumbprint"].as_str().unwrap()
    );
    assert!(ed25519_thumbprint(&draft_key("test-key-rsa-pss", Algorithm::RsaPssSha512)).is_err());
}

fn draft_directory() -> (serde_json::Value, http::HeaderMap, Vec<u8>) {
    let v = json("web-bot-auth-draft.json");
    let d = v["directory_response"].clone();
    let mut headers = HeaderMap::new();
    for name in ["content_digest", "signature_input", "signature"] {
        headers.insert(
            name.replace('_', "-")
                .as_str()
                .parse::<http::HeaderName>()
                .unwrap(),
            d[name].as_str().unwrap().parse().unwrap(),
        );
    }
    headers.insert("content-type", DIRECTORY_MEDIA_TYPE.parse().unwrap());
    let body = d["body"].as_str().unwrap().as_bytes().to_vec();
    (d, headers, body)
}

#[test]
fn draft_signed_directory_response_verifies() {
    let (d, headers, body) = draft_directory();
    let request = parse(d["request"].as_str().unwrap());
    let req_view = RequestView::from_parts(&request.method, &request.uri, &request.headers, b"")
        .with_scheme("https");
    let response =
        ResponseView::from_parts(http::StatusCode::OK, &headers, &body).with_request(req_view);
    let prepared = Verifier::new(VerifyPolicy::directory_response())
        .prepare(response, NOW)
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(prepared.base()),
        d["base"].as_str().unwrap()
    );
    prepared
        .verify(&draft_key("test-key-ed25519", Algorithm::Ed25519))
        .unwrap();

    // vouch's directory_spec reproduces the proof byte for byte (Ed25519 is deterministic).
    let spec = directory_spec(&ed25519_signer(), 0, 1_735_689_600, 4_889_289_600).unwrap();
    let ours = sign(response, &spec, &ed25519_signer()).unwrap();
    assert_eq!(
        String::from_utf8_lossy(ours.base()),
        d["base"].as_str().unwrap()
    );
    assert_eq!(
        format!(
            "binding={}",
            ours.signature_member().split_once('=').unwrap().1
        ),
        d["signature"].as_str().unwrap()
    );

    // Another key set under the same signature: the digest no longer matches.
    let swapped = br#"{"keys":[]}"#;
    let response =
        ResponseView::from_parts(http::StatusCode::OK, &headers, swapped).with_request(req_view);
    assert_eq!(
        Verifier::new(VerifyPolicy::directory_response())
            .prepare(response, NOW)
            .unwrap_err(),
        Error::DigestMismatch
    );
    // Re-served under another authority: the signature no longer verifies.
    let elsewhere =
        Uri::from_static("https://mirror.example/.well-known/http-message-signatures-directory");
    let no_headers = HeaderMap::new();
    let moved = RequestView::from_parts(&request.method, &elsewhere, &no_headers, b"");
    let response =
        ResponseView::from_parts(http::StatusCode::OK, &headers, &body).with_request(moved);
    let prepared = Verifier::new(VerifyPolicy::directory_response())
        .prepare(response, NOW)
        .unwrap();
    assert_eq!(
        prepared
            .verify(&draft_key("test-key-ed25519", Algorithm::Ed25519))
            .unwrap_err(),
        Error::BadSignature
    );
}

#[test]
fn directory_response_policy_requires_both_components() {
    let (_, headers, body) = draft_directory();
    let request =
        Request::get("https://signature-agent.test/.well-known/http-message-signatures-directory")
            .body(())
            .unwrap();
    let (parts, ()) = request.into_parts();
    let req_view = RequestView::new(&parts, b"");
    let response =
        ResponseView::from_parts(http::StatusCode::OK, &headers, &body).with_request(req_view);
    let only_authority = VerifyPolicy::directory_response();
    assert!(Verifier::new(only_authority).prepare(response, NOW).is_ok());
    // A response signed over @authority;req alone is refused (no content-digest).
    let key = ed25519_signer();
    let spec = Component::parse_list("\"@authority\";req")
        .unwrap()
        .into_iter()
        .fold(SignatureSpec::new("binding0"), SignatureSpec::cover)
        .created(1_735_689_600)
        .expires(1_735_689_900)
        .keyid(ed25519_thumbprint(&key.verifying_key().unwrap()).unwrap())
        .tag(DIRECTORY_TAG);
    let mut h = headers.clone();
    h.remove("signature");
    h.remove("signature-input");
    let response = ResponseView::from_parts(http::StatusCode::OK, &h, &body).with_request(req_view);
    sign(response, &spec, &key).unwrap().apply(&mut h).unwrap();
    let response = ResponseView::from_parts(http::StatusCode::OK, &h, &body).with_request(req_view);
    assert!(matches!(
        Verifier::new(VerifyPolicy::directory_response())
            .prepare(response, NOW)
            .unwrap_err(),
        Error::MissingComponent(_)
    ));
}

// ---- vouch's own signatures, and the refusals ----

const AGENT: &str = "https://agent.example";

/// A GET to https://origin.example/page?q=1 with `agent_header` lines, signed as `spec` says.
fn signed(
    agent_header: &[&str],
    spec: impl FnOnce(&RequestView<'_>) -> SignatureSpec,
) -> Request<Vec<u8>> {
    let mut builder = Request::get("https://origin.example/page?q=1");
    for line in agent_header {
        builder = builder.header(SIGNATURE_AGENT_HEADER, *line);
    }
    let mut request = builder.body(Vec::new()).unwrap();
    let spec = spec(&RequestView::of(&request));
    let signature = sign(RequestView::of(&request), &spec, &ed25519_signer()).unwrap();
    signature.apply(request.headers_mut()).unwrap();
    request
}

fn standard(view: &RequestView<'_>) -> SignatureSpec {
    web_bot_auth_spec(view, &ed25519_signer(), Some("sig1"), NOW - 10, NOW + 290).unwrap()
}

fn agent_line() -> String {
    signature_agent_value("sig1", AGENT, AgentKind::Directory).unwrap()
}

fn check(request: &Request<Vec<u8>>) -> Result<Verified, Error> {
    Verifier::new(VerifyPolicy::web_bot_auth())
        .prepare(RequestView::of(request), NOW)?
        .verify(&ed25519_signer().verifying_key()?)
}

/// The same spec with its components replaced.
fn covering(list: &str, created: u64, expires: Option<u64>, tag: Option<&str>) -> SignatureSpec {
    let key = ed25519_signer();
    let mut spec = Component::parse_list(list)
        .unwrap()
        .into_iter()
        .fold(SignatureSpec::new("sig1"), SignatureSpec::cover)
        .created(created);
    if let Some(e) = expires {
        spec = spec.expires(e);
    }
    spec = spec.keyid(ed25519_thumbprint(&key.verifying_key().unwrap()).unwrap());
    if let Some(t) = tag {
        spec = spec.tag(t);
    }
    spec
}

const MINIMAL: &str = "\"@authority\" \"signature-agent\";key=\"sig1\"";

#[test]
fn vouch_signature_verifies_and_names_its_agent() {
    let line = agent_line();
    assert_eq!(line, "sig1=\"https://agent.example\"");
    let request = signed(&[&line], standard);
    let input = request.headers()["signature-input"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        input.starts_with(
            "sig1=(\"@authority\" \"@method\" \"@path\" \"@query\" \"signature-agent\";key=\"sig1\");"
        ),
        "{input}"
    );
    assert!(input.contains(";tag=\"web-bot-auth\""));
    let verified = check(&request).unwrap();
    let agent = verified.signature_agent().unwrap();
    assert_eq!(
        agent.identifier(),
        "https://agent.example/.well-known/http-message-signatures-directory"
    );
    assert_eq!(
        verified.params.keyid.as_deref(),
        Some("poqkLGiymh_W0uP6PZFw-dvez3QJT5SolqXBCW38r0U")
    );
}

#[test]
fn the_minimal_draft_coverage_verifies() {
    let line = agent_line();
    let request = signed(&[&line], |_| {
        covering(MINIMAL, NOW, Some(NOW + 60), Some(WEB_BOT_AUTH_TAG))
    });
    check(&request).unwrap();
}

#[test]
fn jwks_uri_members_keep_the_query_to_fetch_and_drop_it_from_the_identifier() {
    let line = signature_agent_value(
        "sig1",
        "https://Keys.Example:443/jwks.json?v=2",
        AgentKind::JwksUri,
    )
    .unwrap();
    assert_eq!(
        line,
        "sig1=\"https://Keys.Example:443/jwks.json?v=2\";type=jwks_uri"
    );
    let request = signed(&[&line], standard);
    let verified = check(&request).unwrap();
    let agent = verified.signature_agent().unwrap();
    assert_eq!(agent.kind(), AgentKind::JwksUri);
    assert_eq!(agent.fetch_url(), "https://keys.example/jwks.json?v=2");
    assert_eq!(agent.identifier(), "https://keys.example/jwks.json");
}

#[test]
fn refuses_a_missing_or_other_tag() {
    let line = agent_line();
    let none = signed(&[&line], |_| covering(MINIMAL, NOW, Some(NOW + 60), None));
    assert_eq!(check(&none).unwrap_err(), Error::TagMismatch);
    let other = signed(&[&line], |_| {
        covering(MINIMAL, NOW, Some(NOW + 60), Some(DIRECTORY_TAG))
    });
    assert_eq!(check(&other).unwrap_err(), Error::TagMismatch);
}

#[test]
fn refuses_an_empty_or_too_small_component_list() {
    let line = agent_line();
    let empty = signed(&[&line], |_| {
        covering("", NOW, Some(NOW + 60), Some(WEB_BOT_AUTH_TAG))
    });
    assert_eq!(
        check(&empty).unwrap_err(),
        Error::MissingComponent("\"@authority\"".into())
    );
    let no_authority = signed(&[&line], |_| {
        covering(
            "\"@method\" \"@path\" \"signature-agent\";key=\"sig1\"",
            NOW,
            Some(NOW + 60),
            Some(WEB_BOT_AUTH_TAG),
        )
    });
    assert_eq!(
        check(&no_authority).unwrap_err(),
        Error::MissingComponent("\"@authority\"".into())
    );
    let no_agent = signed(&[&line], |_| {
        covering(
            "\"@authority\" \"@method\"",
            NOW,
            Some(NOW + 60),
            Some(WEB_BOT_AUTH_TAG),
        )
    });
    assert!(matches!(
        check(&no_agent).unwrap_err(),
        Error::MissingComponent(_)
    ));
    // Covering the whole field instead of the member is refused too.
    let whole = signed(&[&line], |_| {
        covering(
            "\"@authority\" \"signature-agent\"",
            NOW,
            Some(NOW + 60),
            Some(WEB_BOT_AUTH_TAG),
        )
    });
    assert!(matches!(check(&whole).unwrap_err(), Error::Malformed(_)));
}

#[test]
fn refuses_expires_missing_too_long_backwards_or_past() {
    let line = agent_line();
    let no_expires = signed(&[&line], |_| {
        covering(MINIMAL, NOW, None, Some(WEB_BOT_AUTH_TAG))
    });
    assert_eq!(
        check(&no_expires).unwrap_err(),
        Error::MissingParameter("expires")
    );
    let exactly = signed(&[&line], |_| {
        covering(
            MINIMAL,
            NOW,
            Some(NOW + MAX_LIFETIME),
            Some(WEB_BOT_AUTH_TAG),
        )
    });
    check(&exactly).unwrap();
    let too_long = signed(&[&line], |_| {
        covering(
            MINIMAL,
            NOW,
            Some(NOW + MAX_LIFETIME + 1),
            Some(WEB_BOT_AUTH_TAG),
        )
    });
    assert_eq!(check(&too_long).unwrap_err(), Error::LifetimeTooLong);
    let backwards = signed(&[&line], |_| {
        covering(MINIMAL, NOW, Some(NOW - 1), Some(WEB_BOT_AUTH_TAG))
    });
    assert_eq!(check(&backwards).unwrap_err(), Error::Expired);
    let past = signed(&[&line], |_| {
        covering(MINIMAL, NOW - 100, Some(NOW - 50), Some(WEB_BOT_AUTH_TAG))
    });
    assert_eq!(check(&past).unwrap_err(), Error::Expired);
    let future = signed(&[&line], |_| {
        covering(MINIMAL, NOW + 31, Some(NOW + 60), Some(WEB_BOT_AUTH_TAG))
    });
    assert_eq!(check(&future).unwrap_err(), Error::CreatedInFuture);
    // The signer refuses to make what the verifier refuses.
    let request = Request::get("https://origin.example/")
        .body(Vec::<u8>::new())
        .unwrap();
    assert_eq!(
        web_bot_auth_spec(
            &RequestView::of(&request),
            &ed25519_signer(),
            None,
            NOW,
            NOW + MAX_LIFETIME + 1
        )
        .unwrap_err(),
        Error::LifetimeTooLong
    );
}

#[test]
fn refuses_a_signature_agent_that_is_not_a_dictionary() {
    for line in [
        // The legacy bare string.
        "\"https://agent.example\"",
        "sig1=(\"https://agent.example\")",
        "sig1=agent",
        "sig1=\"https://agent.example\",,",
    ] {
        let err = prepare_only(&swapped_agent(line)).unwrap_err();
        assert!(matches!(err, Error::Malformed(_)), "{line}: {err:?}");
    }
}

#[test]
fn refuses_a_covered_member_the_header_does_not_have() {
    let line = agent_line();
    let mut request = signed(&[&line], standard);
    request.headers_mut().insert(
        SIGNATURE_AGENT_HEADER,
        "other=\"https://agent.example\"".parse().unwrap(),
    );
    assert!(matches!(
        check(&request).unwrap_err(),
        Error::ComponentUnavailable(_)
    ));
    request.headers_mut().remove(SIGNATURE_AGENT_HEADER);
    assert!(matches!(
        check(&request).unwrap_err(),
        Error::ComponentUnavailable(_)
    ));
}

#[test]
fn refuses_two_signature_agent_lines_naming_the_member() {
    let line = agent_line();
    // Signed with one line; an attacker appends a second naming the same member.
    let mut request = signed(&[&line], standard);
    request.headers_mut().append(
        SIGNATURE_AGENT_HEADER,
        "sig1=\"https://evil.example\"".parse().unwrap(),
    );
    assert!(matches!(check(&request).unwrap_err(), Error::Malformed(_)));
    // A second line with another member is another signer's business: still verifies.
    let mut request = signed(&[&line], standard);
    request.headers_mut().append(
        SIGNATURE_AGENT_HEADER,
        "other=\"https://other.example\"".parse().unwrap(),
    );
    assert_eq!(
        check(&request).unwrap().signature_agent().unwrap().value(),
        AGENT
    );
    // The member named twice within one line.
    let mut request = signed(&[&line], standard);
    request.headers_mut().insert(
        SIGNATURE_AGENT_HEADER,
        "sig1=\"https://agent.example\", sig1=\"https://evil.example\""
            .parse()
            .unwrap(),
    );
    assert!(matches!(check(&request).unwrap_err(), Error::Malformed(_)));
}

/// A request signed with a good Signature-Agent, whose header is then replaced with `line`: the
/// profile must refuse it from the head, before any key is needed.
fn swapped_agent(line: &str) -> Request<Vec<u8>> {
    let mut request = signed(&[&agent_line()], |_| standard_min());
    request
        .headers_mut()
        .insert(SIGNATURE_AGENT_HEADER, line.parse().unwrap());
    request
}

fn prepare_only(request: &Request<Vec<u8>>) -> Result<Prepared, Error> {
    Verifier::new(VerifyPolicy::web_bot_auth()).prepare(RequestView::of(request), NOW)
}

fn standard_min() -> SignatureSpec {
    covering(MINIMAL, NOW, Some(NOW + 60), Some(WEB_BOT_AUTH_TAG))
}

#[test]
fn refuses_unsupported_types_and_urls_that_are_not_https_origins() {
    for (line, want) in [
        ("sig1=\"https://agent.example\";type=cimd", "unsupported"),
        (
            "sig1=\"https://agent.example\";type=\"directory\"",
            "malformed",
        ),
        (
            "sig1=\"https://agent.example\";type=directory;type=jwks_uri",
            "malformed",
        ),
        ("sig1=\"http://agent.example\"", "malformed"),
        ("sig1=\"https://agent.example/keys\"", "malformed"),
        ("sig1=\"https://agent.example/?x=1\"", "malformed"),
        ("sig1=\"https://user@agent.example\"", "malformed"),
        ("sig1=\"https://agent.example/#frag\"", "malformed"),
        ("sig1=\"agent.example\"", "malformed"),
        (
            "sig1=\"https://agent.example/jwks.json#k\";type=jwks_uri",
            "malformed",
        ),
    ] {
        let request = swapped_agent(line);
        let err = prepare_only(&request).unwrap_err();
        assert_eq!(err.code(), want, "{line}: {err:?}");
    }
    // The signer's helper refuses to write them.
    assert!(signature_agent_value("sig1", "http://agent.example", AgentKind::Directory).is_err());
    assert!(signature_agent_value("Sig1", AGENT, AgentKind::Directory).is_err());
}

#[test]
fn a_signature_covering_several_members_uses_the_one_keyed_to_its_label() {
    let header = "sig1=\"https://agent.example\", browser=\"https://browser.example\"";
    let two = "\"@authority\" \"signature-agent\";key=\"browser\" \"signature-agent\";key=\"sig1\"";
    let request = signed(&[header], |_| {
        covering(two, NOW, Some(NOW + 60), Some(WEB_BOT_AUTH_TAG))
    });
    assert_eq!(
        check(&request).unwrap().signature_agent().unwrap().value(),
        AGENT
    );
    let neither =
        "\"@authority\" \"signature-agent\";key=\"browser\" \"signature-agent\";key=\"other\"";
    let header = "other=\"https://agent.example\", browser=\"https://browser.example\"";
    let request = signed(&[header], |_| {
        covering(neither, NOW, Some(NOW + 60), Some(WEB_BOT_AUTH_TAG))
    });
    assert!(matches!(check(&request).unwrap_err(), Error::Malformed(_)));
}
