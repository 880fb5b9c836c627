//! Component values from RFC 9421 §2 examples (derived components, `sf`, `key`, `bs`, `req`),
//! parameters kept as received, and every signing algorithm ring can sign with.

use base64ct::Encoding as _;
use http::{HeaderMap, HeaderName, Method, StatusCode, Uri};
use vouch_httpsig::*;

fn loose() -> VerifyPolicy {
    VerifyPolicy::mcp()
        .require_exactly(Vec::new())
        .required_params(false, false, false)
        .digest_rule(DigestRule::WhenCovered)
        .window(u64::MAX / 4, 0)
}

fn header_map(headers: &[(&str, &str)], covered: &str) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (n, v) in headers {
        map.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    map.insert(
        "signature-input",
        format!("s=({covered});created=1").parse().unwrap(),
    );
    map.insert("signature", "s=:AAAA:".parse().unwrap());
    map
}

fn component_lines(base: &[u8]) -> String {
    let text = String::from_utf8(base.to_vec()).unwrap();
    text.lines()
        .filter(|l| !l.starts_with("\"@signature-params\""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The base lines for `covered` over a POST to `uri` with `headers`.
fn request_lines(uri: &str, headers: &[(&str, &str)], covered: &str) -> Result<String, Error> {
    let map = header_map(headers, covered);
    let method = Method::POST;
    let uri: Uri = uri.parse().unwrap();
    let view = RequestView::from_parts(&method, &uri, &map, b"").with_scheme("https");
    Ok(component_lines(
        Verifier::new(loose()).prepare(view, 1)?.base(),
    ))
}

#[test]
fn derived_components() {
    let uri = "https://www.example.com/path?param=value";
    let cases = [
        ("\"@method\"", "\"@method\": POST"),
        (
            "\"@target-uri\"",
            "\"@target-uri\": https://www.example.com/path?param=value",
        ),
        ("\"@authority\"", "\"@authority\": www.example.com"),
        ("\"@scheme\"", "\"@scheme\": https"),
        (
            "\"@request-target\"",
            "\"@request-target\": /path?param=value",
        ),
        ("\"@path\"", "\"@path\": /path"),
        ("\"@query\"", "\"@query\": ?param=value"),
    ];
    for (covered, expected) in cases {
        assert_eq!(
            request_lines(uri, &[], covered).unwrap(),
            expected,
            "{covered}"
        );
    }
    // An absent query is `?`; the default port is dropped from the authority; host lowercased.
    assert_eq!(
        request_lines(
            "https://WWW.Example.com:443/p",
            &[],
            "\"@query\" \"@authority\""
        )
        .unwrap(),
        "\"@query\": ?\n\"@authority\": www.example.com"
    );
}

#[test]
fn query_parameters_as_rfc_9421_section_2_2_8() {
    let uri = "https://example.com/parameters?var=this%20is%20a%20big%0Amultiline%20value&bar=with+plus+whitespace&fa%C3%A7ade%22%3A%20=something";
    let cases = [
        (
            "\"@query-param\";name=\"var\"",
            "\"@query-param\";name=\"var\": this%20is%20a%20big%0Amultiline%20value",
        ),
        (
            "\"@query-param\";name=\"bar\"",
            "\"@query-param\";name=\"bar\": with%20plus%20whitespace",
        ),
        (
            "\"@query-param\";name=\"fa%C3%A7ade%22%3A%20\"",
            "\"@query-param\";name=\"fa%C3%A7ade%22%3A%20\": something",
        ),
    ];
    for (covered, expected) in cases {
        assert_eq!(
            request_lines(uri, &[], covered).unwrap(),
            expected,
            "{covered}"
        );
    }
    // A repeated name gives one line per occurrence, in order; an absent one is an error.
    assert_eq!(
        request_lines(
            "https://e.com/?a=1&b=2&a=3",
            &[],
            "\"@query-param\";name=\"a\""
        )
        .unwrap(),
        "\"@query-param\";name=\"a\": 1\n\"@query-param\";name=\"a\": 3"
    );
    assert!(matches!(
        request_lines("https://e.com/?a=1", &[], "\"@query-param\";name=\"z\""),
        Err(Error::ComponentUnavailable(_))
    ));
}

#[test]
fn header_fields_sf_key_bs_as_rfc_9421_section_2_1() {
    let dict = [("example-dict", " a=1,    b=2;x=1;y=2,   c=(a   b   c)")];
    assert_eq!(
        request_lines("https://e.com/", &dict, "\"example-dict\"").unwrap(),
        "\"example-dict\": a=1,    b=2;x=1;y=2,   c=(a   b   c)"
    );
    assert_eq!(
        request_lines("https://e.com/", &dict, "\"example-dict\";sf").unwrap(),
        "\"example-dict\";sf: a=1, b=2;x=1;y=2, c=(a b c)"
    );

    let dict = [("example-dict", "a=1, b=2;x=1;y=2, c=(a b c), d")];
    for (key, value) in [
        ("a", "1"),
        ("d", "?1"),
        ("b", "2;x=1;y=2"),
        ("c", "(a b c)"),
    ] {
        let covered = format!("\"example-dict\";key=\"{key}\"");
        assert_eq!(
            request_lines("https://e.com/", &dict, &covered).unwrap(),
            format!("{covered}: {value}")
        );
    }
    assert!(matches!(
        request_lines("https://e.com/", &dict, "\"example-dict\";key=\"zz\""),
        Err(Error::ComponentUnavailable(_))
    ));

    let multi = [
        ("example-header", "value, with, lots"),
        ("example-header", "of, commas"),
    ];
    assert_eq!(
        request_lines("https://e.com/", &multi, "\"example-header\"").unwrap(),
        "\"example-header\": value, with, lots, of, commas"
    );
    assert_eq!(
        request_lines("https://e.com/", &multi, "\"example-header\";bs").unwrap(),
        "\"example-header\";bs: :dmFsdWUsIHdpdGgsIGxvdHM=:, :b2YsIGNvbW1hcw==:"
    );
    assert!(matches!(
        request_lines("https://e.com/", &multi, "\"example-header\";bs;sf"),
        Err(Error::Malformed(_))
    ));
    assert!(matches!(
        request_lines("https://e.com/", &[], "\"absent\""),
        Err(Error::ComponentUnavailable(_))
    ));
    assert!(matches!(
        request_lines("https://e.com/", &multi, "\"example-header\";sf"),
        Err(Error::Unsupported(_))
    ));
    assert!(matches!(
        request_lines("https://e.com/", &[], "\"@signature-params\""),
        Err(Error::Malformed(_))
    ));
    assert!(matches!(
        request_lines("https://e.com/", &[], "\"@nonsense\""),
        Err(Error::Unsupported(_))
    ));
    assert!(matches!(
        request_lines("https://e.com/", &[], "\"@method\" \"@method\""),
        Err(Error::Malformed(_))
    ));
}

#[test]
fn response_components_with_req() {
    let req_headers = HeaderMap::new();
    let method = Method::POST;
    let uri: Uri = "https://origin.host.internal.example/foo".parse().unwrap();
    let request = RequestView::from_parts(&method, &uri, &req_headers, b"").with_scheme("https");
    let covered = "\"@status\" \"@authority\";req \"@method\";req";
    let resp_headers = header_map(&[], covered);
    let response = ResponseView::from_parts(StatusCode::SERVICE_UNAVAILABLE, &resp_headers, b"")
        .with_request(request);
    let prepared = Verifier::new(loose()).prepare(response, 1).unwrap();
    assert_eq!(
        component_lines(prepared.base()),
        "\"@status\": 503\n\"@authority\";req: origin.host.internal.example\n\"@method\";req: POST"
    );
    // Without the request, `;req` cannot be computed; request-only components need it too.
    let alone = ResponseView::from_parts(StatusCode::OK, &resp_headers, b"");
    assert!(Verifier::new(loose()).prepare(alone, 1).is_err());
}

#[test]
fn received_parameters_keep_their_order_and_unknown_ones() {
    // A signer that orders parameters its own way and adds one vouch does not know.
    let key = SigningKey::ed25519_from_seed(&[3; 32]).unwrap();
    let input = "s=(\"@method\" \"@authority\");keyid=\"k\";zzz=\"future\";created=1700000000;nonce=\"n\";x-flag";
    let mut headers = HeaderMap::new();
    headers.insert("signature-input", input.parse().unwrap());
    headers.insert("signature", "s=:AAAA:".parse().unwrap());
    let method = Method::GET;
    let uri: Uri = "https://mcp.example/".parse().unwrap();
    let view = RequestView::from_parts(&method, &uri, &headers, b"");
    let base = Verifier::new(loose())
        .prepare(view, 1_700_000_000)
        .unwrap()
        .base()
        .to_vec();
    assert!(String::from_utf8_lossy(&base).ends_with(
        "\"@signature-params\": (\"@method\" \"@authority\");keyid=\"k\";zzz=\"future\";created=1700000000;nonce=\"n\";x-flag"
    ));
    // Signed over exactly that base, it verifies.
    let sig = base64ct::Base64::encode_string(&key.sign(&base).unwrap());
    headers.insert("signature", format!("s=:{sig}:").parse().unwrap());
    let view = RequestView::from_parts(&method, &uri, &headers, b"");
    Verifier::new(loose())
        .prepare(view, 1_700_000_000)
        .unwrap()
        .verify(&key.verifying_key().unwrap())
        .unwrap();
}

#[test]
fn every_algorithm_ring_can_sign_round_trips() {
    let rng = ring::rand::SystemRandom::new();
    let p256 = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &rng,
    )
    .unwrap();
    let p384 = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P384_SHA384_FIXED_SIGNING,
        &rng,
    )
    .unwrap();
    let keys = [
        SigningKey::ed25519_from_seed(&[1; 32]).unwrap(),
        SigningKey::from_pkcs8_der(p256.as_ref(), None).unwrap(),
        SigningKey::from_pkcs8_der(p384.as_ref(), None).unwrap(),
        SigningKey::hmac_sha256(b"a shared secret of some length"),
    ];
    let expected = [
        Algorithm::Ed25519,
        Algorithm::EcdsaP256Sha256,
        Algorithm::EcdsaP384Sha384,
        Algorithm::HmacSha256,
    ];
    for (key, alg) in keys.iter().zip(expected) {
        assert_eq!(key.algorithm(), alg);
        let body = b"{}".to_vec();
        let mut req = http::Request::post("https://mcp.example/mcp")
            .header("content-digest", mcp_content_digest(&body))
            .body(body)
            .unwrap();
        let spec = mcp_spec(&RequestView::of(&req), key, "k", None, 1_700_000_000).unwrap();
        sign(RequestView::of(&req), &spec, key)
            .unwrap()
            .apply(req.headers_mut())
            .unwrap();
        let policy = VerifyPolicy::mcp().algorithms(&Algorithm::ALL);
        let prepared = Verifier::new(policy)
            .prepare(RequestView::of(&req), 1_700_000_000)
            .unwrap();
        let vk = key.verifying_key().unwrap();
        assert_eq!(
            prepared.clone().verify(&vk).unwrap().algorithm(),
            alg,
            "{alg}"
        );
        // A key of another algorithm never verifies it.
        let other = SigningKey::ed25519_from_seed(&[2; 32])
            .unwrap()
            .verifying_key()
            .unwrap();
        assert!(prepared.verify(&other).is_err(), "{alg} with a foreign key");
    }
}

#[test]
fn component_lists_parse_as_signature_input_writes_them() {
    let list =
        Component::parse_list(r#" "@method" "@query-param";name="Pet" "content-digest" "#).unwrap();
    let names: Vec<String> = list.iter().map(ToString::to_string).collect();
    assert_eq!(
        names,
        [
            r#""@method""#,
            r#""@query-param";name="Pet""#,
            r#""content-digest""#
        ]
    );
    assert!(Component::parse_list("").unwrap().is_empty());
    // A parameter is part of the identifier, kept as written.
    assert_eq!(
        Component::parse_list(r#""@method";x=1"#).unwrap()[0].to_string(),
        r#""@method";x=1"#
    );
    for bad in [
        "@method",
        r#""@method" @path"#,
        r#"("@method")"#,
        r#""@method" "@method""#,
        r#""Content-Type""#,
        r#""@method");created=1;("#,
        r#""@method" 1"#,
    ] {
        let got = Component::parse_list(bad);
        assert!(
            matches!(got, Err(Error::Malformed(_))),
            "{bad} should be refused, got {got:?}"
        );
    }
}

#[test]
fn verified_signatures_report_what_they_cover() {
    let key = SigningKey::ed25519_from_seed(&[3; 32]).unwrap();
    let mut request = http::Request::get("https://mcp.example/mcp?x=1")
        .body(Vec::new())
        .unwrap();
    let spec = SignatureSpec::new("s")
        .cover_names(&["@method", "@target-uri"])
        .unwrap()
        .created(1_700_000_000)
        .keyid("a");
    sign(RequestView::of(&request), &spec, &key)
        .unwrap()
        .apply(request.headers_mut())
        .unwrap();
    let prepared = Verifier::new(loose())
        .prepare(RequestView::of(&request), 1_700_000_000)
        .unwrap();
    assert_eq!(prepared.components(), spec.components());
    let verified = prepared.verify(&key.verifying_key().unwrap()).unwrap();
    let names: Vec<&str> = verified.components().iter().map(Component::name).collect();
    assert_eq!(names, ["@method", "@target-uri"]);
}
