//! Minting, attenuating, sealing and verifying: every acceptance and every rejection.

use std::collections::BTreeSet;

use vouch_token::{Access, Error, Refusal, Restriction, RevocationId, RootKeySet, Token, Verifier};

use crate::support::{NOW, key, mint, reference_root};

fn verifier() -> Verifier {
    Verifier::new(key(1).public_key())
}

#[test]
fn root_token_grants_exactly_what_it_names() {
    let token = mint(&key(1), reference_root());
    let v = verifier();
    let facts = v
        .verify(&token, &Access::at(NOW).tool("db_query").operation("write"))
        .unwrap();
    assert_eq!(facts.tools(), ["db_query", "file_read", "search"]);
    assert!(!facts.tool_wildcard());
    assert_eq!(facts.limit("db_query", "max_rows"), Some(100));
    assert_eq!(facts.delegation_depth(), 0);
    assert_eq!(facts.expires_at(), NOW + 3600);
    // A tool with no operation entry allows every operation.
    v.verify(
        &token,
        &Access::at(NOW).tool("search").operation("anything"),
    )
    .unwrap();
    assert_eq!(
        v.verify(
            &token,
            &Access::at(NOW).tool("file_read").operation("write")
        ),
        Err(Error::OperationNotGranted {
            tool: "file_read".into(),
            operation: "write".into()
        })
    );
    assert_eq!(
        v.verify(&token, &Access::at(NOW).tool("shell")),
        Err(Error::ToolNotGranted("shell".into()))
    );
}

#[test]
fn facts_serialize_to_the_seed_shape() {
    let token = mint(&key(1), reference_root());
    let facts = verifier().verify(&token, &Access::at(NOW)).unwrap();
    let json = serde_json::to_value(&facts).unwrap();
    let ids: Vec<String> = token
        .revocation_ids()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        json,
        serde_json::json!({
            "tools": ["db_query", "file_read", "search"],
            "tool_wildcard": false,
            "operations": [["db_query", "read"], ["db_query", "write"], ["file_read", "read"]],
            "resource_limits": [["db_query", "max_rows", 100]],
            "delegation_depth": 0,
            "issuer": "auth-server",
            "subject": "agent-a",
            "expires_at": NOW + 3600,
            "not_before": null,
            "audience": null,
            "holder": null,
            "revocation_ids": ids,
        })
    );
    // The seed's keys come first, in the seed's order.
    let text = serde_json::to_string(&facts).unwrap();
    let order = [
        "\"tools\"",
        "\"tool_wildcard\"",
        "\"operations\"",
        "\"resource_limits\"",
        "\"delegation_depth\"",
        "\"issuer\"",
        "\"subject\"",
    ];
    let positions: Vec<usize> = order.iter().map(|k| text.find(k).unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
}

#[test]
fn wildcard_root_grants_every_tool() {
    let token = mint(&key(1), Restriction::new().ttl(60));
    let facts = verifier()
        .verify(&token, &Access::at(NOW).tool("anything").operation("write"))
        .unwrap();
    assert!(facts.tool_wildcard());
    assert!(facts.tools().is_empty());
}

#[test]
fn attenuation_narrows_and_intersects() {
    let root = mint(&key(1), reference_root());
    let child = root
        .attenuate_at(
            Restriction::new()
                .tools(["db_query", "search"])
                .operations("db_query", ["read"])
                .limit("db_query", "max_rows", 50)
                .ttl(1800),
            NOW,
        )
        .unwrap();
    let grandchild = child
        .attenuate_at(
            Restriction::new()
                .limit("db_query", "max_rows", 10)
                .holder("worker"),
            NOW,
        )
        .unwrap();
    let v = verifier();
    let facts = v
        .verify(
            &grandchild,
            &Access::at(NOW)
                .caller("worker")
                .tool("db_query")
                .operation("read"),
        )
        .unwrap();
    assert_eq!(facts.tools(), ["db_query", "search"]);
    assert_eq!(
        facts.operations(),
        [("db_query".to_owned(), "read".to_owned())]
    );
    assert_eq!(facts.limit("db_query", "max_rows"), Some(10));
    assert_eq!(facts.expires_at(), NOW + 1800);
    assert_eq!(facts.delegation_depth(), 2);
    assert_eq!(facts.holder(), Some("worker"));
    assert_eq!(facts.revocation_ids().len(), 3);
    for denied in [
        Access::at(NOW)
            .caller("worker")
            .tool("db_query")
            .operation("write"),
        Access::at(NOW).caller("worker").tool("file_read"),
    ] {
        assert!(v.verify(&grandchild, &denied).unwrap_err().is_forbidden());
    }
    // The parent still has what it had.
    v.verify(&root, &Access::at(NOW).tool("db_query").operation("write"))
        .unwrap();
}

#[test]
fn attenuate_refuses_every_widening() {
    let root = mint(
        &key(1),
        reference_root()
            .audience(["https://a.example", "https://b.example"])
            .not_before(NOW - 10),
    );
    let cases: Vec<(Restriction, Refusal)> = vec![
        (
            Restriction::new().tools(["shell"]),
            Refusal::ToolNotInParent("shell".into()),
        ),
        (
            Restriction::new().operations("db_query", ["execute"]),
            Refusal::OperationNotInParent {
                tool: "db_query".into(),
                operation: "execute".into(),
            },
        ),
        (
            Restriction::new().operations("shell", ["read"]),
            Refusal::ToolNotInParent("shell".into()),
        ),
        (
            Restriction::new()
                .tools(["search"])
                .operations("db_query", ["read"]),
            Refusal::ToolNotInParent("db_query".into()),
        ),
        (
            Restriction::new().operations("db_query", Vec::<&str>::new()),
            Refusal::EmptyOperations("db_query".into()),
        ),
        (
            Restriction::new().limit("db_query", "max_rows", 101),
            Refusal::LimitAboveParent {
                tool: "db_query".into(),
                key: "max_rows".into(),
                parent: 100,
                requested: 101,
            },
        ),
        (
            Restriction::new().limit("shell", "cpu", 1),
            Refusal::ToolNotInParent("shell".into()),
        ),
        (
            Restriction::new().expires_at(NOW + 3601),
            Refusal::LaterExpiry {
                parent: NOW + 3600,
                requested: NOW + 3601,
            },
        ),
        (
            Restriction::new().not_before(NOW - 11),
            Refusal::EarlierNotBefore {
                parent: NOW - 10,
                requested: NOW - 11,
            },
        ),
        (
            Restriction::new().not_before(NOW + 3600),
            Refusal::EmptyValidity,
        ),
        (
            Restriction::new().audience(["https://c.example"]),
            Refusal::AudienceNotInParent("https://c.example".into()),
        ),
        (
            Restriction::new().audience(Vec::<String>::new()),
            Refusal::EmptyAudience,
        ),
        (
            Restriction::new().max_depth(5),
            Refusal::DepthAboveParent {
                remaining: 4,
                requested: 5,
            },
        ),
    ];
    for (i, (restriction, expected)) in cases.into_iter().enumerate() {
        assert_eq!(
            root.attenuate_at(restriction, NOW).unwrap_err(),
            Error::Refused(expected),
            "case {i}"
        );
    }
    // A TTL that would outlive the parent is a later expiry too.
    assert!(matches!(
        root.attenuate_at(Restriction::new().ttl(3601), NOW),
        Err(Error::Refused(Refusal::LaterExpiry { .. }))
    ));
}

#[test]
fn holder_binding_cannot_be_moved() {
    let bound = mint(&key(1), reference_root().holder("agent-a-key"));
    assert_eq!(
        bound
            .attenuate_at(Restriction::new().holder("thief"), NOW)
            .unwrap_err(),
        Error::Refused(Refusal::HolderConflict {
            parent: "agent-a-key".into(),
            requested: "thief".into()
        })
    );
    // Restating the same holder is allowed.
    bound
        .attenuate_at(Restriction::new().holder("agent-a-key"), NOW)
        .unwrap();
}

#[test]
fn holder_bound_token_needs_its_holder() {
    let token = mint(&key(1), reference_root())
        .attenuate_at(Restriction::new().holder("agent-b"), NOW)
        .unwrap();
    let v = verifier();
    assert_eq!(
        v.verify(&token, &Access::at(NOW)),
        Err(Error::HolderMismatch)
    );
    assert_eq!(
        v.verify(&token, &Access::at(NOW).caller("agent-c")),
        Err(Error::HolderMismatch)
    );
    v.verify(&token, &Access::at(NOW).caller("agent-b"))
        .unwrap();
}

#[test]
fn delegation_depth_is_enforced() {
    let mut token = mint(&key(1), reference_root().max_depth(2));
    for _ in 0..2 {
        token = token.attenuate_at(Restriction::new(), NOW).unwrap();
    }
    assert_eq!(token.depth(), 2);
    assert_eq!(
        token.attenuate_at(Restriction::new(), NOW).unwrap_err(),
        Error::Refused(Refusal::DepthExhausted)
    );
    // A block may lower the remaining depth.
    let root = mint(&key(1), reference_root());
    let shallow = root
        .attenuate_at(Restriction::new().max_depth(0), NOW)
        .unwrap();
    assert_eq!(
        shallow.attenuate_at(Restriction::new(), NOW).unwrap_err(),
        Error::Refused(Refusal::DepthExhausted)
    );
    // The default allows five delegations.
    let mut token = mint(&key(1), reference_root());
    for _ in 0..5 {
        token = token.attenuate_at(Restriction::new(), NOW).unwrap();
    }
    assert!(token.attenuate_at(Restriction::new(), NOW).is_err());
    verifier().verify(&token, &Access::at(NOW)).unwrap();
}

#[test]
fn sealed_token_verifies_but_cannot_be_attenuated() {
    let token = mint(&key(1), reference_root()).seal().unwrap();
    assert!(token.is_sealed());
    verifier()
        .verify(&token, &Access::at(NOW).tool("search"))
        .unwrap();
    assert_eq!(
        token.attenuate_at(Restriction::new(), NOW).unwrap_err(),
        Error::Refused(Refusal::Sealed)
    );
    assert_eq!(token.seal().unwrap_err(), Error::Refused(Refusal::Sealed));
    let decoded = Token::from_base64(&token.to_base64()).unwrap();
    assert!(decoded.is_sealed());
    assert_eq!(
        decoded.attenuate_at(Restriction::new(), NOW).unwrap_err(),
        Error::Refused(Refusal::Sealed)
    );
}

#[test]
fn validity_window_edges() {
    let token = mint(&key(1), reference_root().not_before(NOW + 10));
    let v = verifier();
    assert_eq!(
        v.verify(&token, &Access::at(NOW + 9)),
        Err(Error::NotYetValid)
    );
    v.verify(&token, &Access::at(NOW + 10)).unwrap();
    v.verify(&token, &Access::at(NOW + 3599)).unwrap();
    assert_eq!(
        v.verify(&token, &Access::at(NOW + 3600)),
        Err(Error::Expired)
    );
}

#[test]
fn unknown_root_and_rotation() {
    let token = mint(&key(1), reference_root());
    assert_eq!(
        Verifier::new(key(2).public_key()).verify(&token, &Access::at(NOW)),
        Err(Error::UnknownRootKey)
    );
    let rotated = RootKeySet::from_keys([key(2).public_key(), key(1).public_key()]).unwrap();
    Verifier::new(rotated)
        .verify(&token, &Access::at(NOW))
        .unwrap();
}

#[test]
fn revocation_of_any_block_revokes_the_token() {
    let root = mint(&key(1), reference_root());
    let child = root
        .attenuate_at(Restriction::new().tools(["search"]), NOW)
        .unwrap();
    let ids = child.revocation_ids();
    assert_eq!(ids[0], root.revocation_ids()[0]);
    for id in &ids {
        let revoked: BTreeSet<RevocationId> = [*id].into_iter().collect();
        let v = verifier().with_revocations(revoked);
        assert_eq!(
            v.verify(&child, &Access::at(NOW)),
            Err(Error::Revoked),
            "{id}"
        );
    }
    // Revoking the child's block leaves the parent valid.
    let only_child = ids[1];
    let v = verifier().with_revocations(move |id: &RevocationId| *id == only_child);
    v.verify(&root, &Access::at(NOW)).unwrap();
    // Ids round-trip through hex.
    assert_eq!(RevocationId::from_hex(&ids[1].to_string()).unwrap(), ids[1]);
}

#[test]
fn audience_rules() {
    let token = mint(&key(1), reference_root().audience(["https://mcp.example"]));
    let v = verifier();
    assert_eq!(
        v.verify(&token, &Access::at(NOW)),
        Err(Error::WrongAudience),
        "no verifier audience"
    );
    let other = verifier().with_audience("https://evil.example");
    assert_eq!(
        other.verify(&token, &Access::at(NOW)),
        Err(Error::WrongAudience)
    );
    let mine = verifier().with_audience("https://mcp.example");
    mine.verify(&token, &Access::at(NOW)).unwrap();
    // A token without an audience is accepted by a verifier with one.
    let open = mint(&key(1), reference_root());
    mine.verify(&open, &Access::at(NOW)).unwrap();
}

#[test]
fn a_verifier_with_several_audiences_accepts_a_token_for_any_of_them_and_no_other() {
    let both = verifier()
        .with_audience("https://mcp.example")
        .with_audience("https://gateway.example");
    for aud in ["https://mcp.example", "https://gateway.example"] {
        let token = mint(&key(1), reference_root().audience([aud]));
        both.verify(&token, &Access::at(NOW)).unwrap();
    }
    let elsewhere = mint(&key(1), reference_root().audience(["https://evil.example"]));
    assert_eq!(
        both.verify(&elsewhere, &Access::at(NOW)),
        Err(Error::WrongAudience)
    );
    // A token for two audiences, one of them this verifier's, is accepted.
    let shared = mint(
        &key(1),
        reference_root().audience(["https://evil.example", "https://gateway.example"]),
    );
    both.verify(&shared, &Access::at(NOW)).unwrap();
}

#[test]
fn mint_refuses_bad_inputs() {
    let root = key(1);
    let no_expiry = Token::mint_at(&root, "iss", "sub", Restriction::new(), NOW);
    assert!(matches!(no_expiry, Err(Error::InvalidInput(_))));
    let empty_name = Token::mint_at(
        &root,
        "iss",
        "sub",
        Restriction::new().tools([""]).ttl(1),
        NOW,
    );
    assert!(matches!(empty_name, Err(Error::InvalidInput(_))));
    let empty_issuer = Token::mint_at(&root, "", "sub", Restriction::new().ttl(1), NOW);
    assert!(matches!(empty_issuer, Err(Error::InvalidInput(_))));
    let ops_outside = Token::mint_at(
        &root,
        "iss",
        "sub",
        Restriction::new()
            .tools(["a"])
            .operations("b", ["read"])
            .ttl(1),
        NOW,
    );
    assert_eq!(
        ops_outside.unwrap_err(),
        Error::Refused(Refusal::ToolNotInParent("b".into()))
    );
    let depth = Token::mint_at(
        &root,
        "iss",
        "sub",
        Restriction::new().max_depth(16).ttl(1),
        NOW,
    );
    assert!(matches!(depth, Err(Error::InvalidInput(_))));
    let overflow = Token::mint_at(&root, "iss", "sub", Restriction::new().ttl(u64::MAX), NOW);
    assert!(matches!(overflow, Err(Error::InvalidInput(_))));
    let huge = Token::mint_at(
        &root,
        "iss",
        "sub",
        Restriction::new()
            .tools((0..20).map(|i| format!("{i}{}", "x".repeat(1000))))
            .ttl(1),
        NOW,
    );
    assert!(matches!(huge, Err(Error::InvalidInput(_))));
}

#[test]
fn error_groups_map_to_statuses() {
    assert!(Error::ToolNotGranted("x".into()).is_forbidden());
    assert!(!Error::ToolNotGranted("x".into()).is_invalid_token());
    for e in [
        Error::BadSignature,
        Error::UnknownRootKey,
        Error::Expired,
        Error::NotYetValid,
        Error::Revoked,
        Error::WrongAudience,
        Error::HolderMismatch,
        Error::DelegationTooDeep,
    ] {
        assert!(e.is_invalid_token() && !e.is_forbidden(), "{e}");
    }
    assert!(!Error::Refused(Refusal::Sealed).is_invalid_token());
}

#[test]
fn debug_output_hides_the_proof() {
    let token = mint(&key(1), reference_root());
    let seed_hex: String = key(1).seed().iter().map(|b| format!("{b:02x}")).collect();
    let debug = format!("{token:?} {:?}", key(1));
    assert!(!debug.contains(&seed_hex));
    assert!(!debug.contains(&token.to_base64()));
}

#[test]
fn a_checked_token_is_authorized_per_request_and_revocation_still_applies() {
    let token = mint(&key(1), reference_root());
    let revoked = std::sync::Arc::new(std::sync::Mutex::new(BTreeSet::<RevocationId>::new()));
    let list = revoked.clone();
    let v = verifier().with_revocations(move |id: &RevocationId| list.lock().unwrap().contains(id));
    let checked = v.check(&token).unwrap();
    assert_eq!(checked.expires_at(), NOW + 3600);
    v.authorize(&checked, &Access::at(NOW).tool("search"))
        .unwrap();
    assert!(
        v.authorize(&checked, &Access::at(NOW).tool("shell"))
            .unwrap_err()
            .is_forbidden()
    );
    // Revoked after the check: the next authorization sees it.
    revoked.lock().unwrap().insert(token.revocation_ids()[0]);
    assert_eq!(
        v.authorize(&checked, &Access::at(NOW).tool("search")),
        Err(Error::Revoked)
    );
    // A verifier that no longer trusts the root refuses the checked token too.
    let other = Verifier::new(key(2).public_key());
    assert_eq!(
        other.authorize(&checked, &Access::at(NOW)),
        Err(Error::UnknownRootKey)
    );
    // Forged tokens never get a checked form.
    // Flip a bit inside the block signature (just before the 33-byte proof).
    let bytes = token.to_bytes();
    let forged = Token::from_bytes(&crate::support::flip(&bytes, bytes.len() - 40, 1)).unwrap();
    assert_eq!(v.check(&forged).unwrap_err(), Error::BadSignature);
}
