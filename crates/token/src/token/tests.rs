//! A holder can sign any block it likes with the proof key. These tests sign blocks by hand,
//! bypassing `attenuate`'s refusals, and check that the verifier still only ever intersects.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::block::Caveats;
use crate::op::Op;
use crate::verify::{Access, Verifier};

const NOW: u64 = 1_700_000_000;

/// The refusal of a chain whose operations on a tool intersect to nothing.
const EMPTY_OPERATIONS: &str = "the operations on a tool intersect to nothing";

fn key(b: u8) -> KeyPair {
    KeyPair::from_seed(&[b; 32]).unwrap()
}

fn root_token() -> Token {
    let r = Restriction::new()
        .tools(["db_query", "search"])
        .operations("db_query", ["read"])
        .limit("db_query", "max_rows", 10)
        .audience(["https://mcp.example"])
        .holder("agent-a")
        .max_depth(1)
        .ttl(60);
    Token::mint_with(&key(1), "iss".into(), "sub".into(), r, NOW, &key(2)).unwrap()
}

/// Appends a block with arbitrary caveats, signed with the proof key, skipping every check.
fn forge(token: &Token, caveats: Caveats) -> Token {
    let signer = token.proof_key().unwrap();
    let next = key(3);
    let body = Body {
        issuer: None,
        subject: None,
        caveats,
    };
    let prev = token.blocks.last().map(|b| &b.signature);
    let block = Block::sign(
        &signer,
        token.root_key_id,
        token.blocks.len(),
        prev,
        body,
        next.public_key(),
    );
    let mut blocks = token.blocks.clone();
    blocks.push(block);
    // Round-trip through bytes, as a server would receive it.
    let forged = Token {
        root_key_id: token.root_key_id,
        blocks,
        proof: Proof::Secret(Zeroizing::new(*next.seed())),
    };
    Token::from_bytes(&forged.to_bytes()).unwrap()
}

fn verifier() -> Verifier {
    Verifier::new(key(1).public_key()).with_audience("https://mcp.example")
}

#[test]
fn hand_signed_widening_block_gains_nothing() {
    let widening = Caveats {
        expires_at: Some(NOW + 1_000_000),
        not_before: Some(0),
        tools: Some(["db_query", "search", "shell"].map(String::from).into()),
        operations: BTreeMap::from([(
            "db_query".to_owned(),
            BTreeSet::from([Op::Read, Op::Write]),
        )]),
        limits: BTreeMap::from([(("db_query".to_owned(), "max_rows".to_owned()), 1_000)]),
        audience: Some(BTreeSet::from([
            "https://mcp.example".to_owned(),
            "https://evil.example".to_owned(),
        ])),
        holder: None,
        max_depth: Some(15),
    };
    let forged = forge(&root_token(), widening);
    let v = verifier();
    let at = |t| Access::at(t).caller("agent-a");
    let facts = v
        .verify(&forged, &at(NOW).tool("db_query").operation("read"))
        .unwrap();
    assert_eq!(facts.limit("db_query", "max_rows"), Some(10));
    assert_eq!(facts.expires_at(), NOW + 60);
    assert_eq!(facts.tools(), ["db_query", "search"]);
    assert_eq!(
        facts.audience(),
        Some(&["https://mcp.example".to_owned()][..])
    );
    assert_eq!(
        v.verify(&forged, &at(NOW).tool("shell")),
        Err(Error::ToolNotGranted("shell".into()))
    );
    assert!(
        v.verify(&forged, &at(NOW).tool("db_query").operation("write"))
            .unwrap_err()
            .is_forbidden()
    );
    assert_eq!(v.verify(&forged, &at(NOW + 60)), Err(Error::Expired));
    let evil = Verifier::new(key(1).public_key()).with_audience("https://evil.example");
    assert_eq!(evil.verify(&forged, &at(NOW)), Err(Error::WrongAudience));
    // The raised max depth does not allow a second delegation beyond the root's limit of one.
    let deeper = forge(&forged, Caveats::default());
    assert_eq!(v.verify(&deeper, &at(NOW)), Err(Error::DelegationTooDeep));
}

#[test]
fn hand_signed_holder_rebinding_locks_everyone_out() {
    let rebound = forge(
        &root_token(),
        Caveats {
            holder: Some("thief".into()),
            ..Caveats::default()
        },
    );
    let v = verifier();
    for caller in ["agent-a", "thief"] {
        assert_eq!(
            v.verify(&rebound, &Access::at(NOW).caller(caller)),
            Err(Error::HolderMismatch),
            "{caller}"
        );
    }
}

/// Block 0 allows `db_query: {read}`, a hand-signed block 1 `db_query: {write}`: the operations on
/// `db_query` intersect to nothing. Only a hand-signed block makes such a chain (`attenuate`
/// refuses it), and a verifier refuses the whole token rather than report facts whose shape
/// cannot say "every tool but this one".
#[test]
fn hand_signed_disjoint_operations_grant_none() {
    let ops = BTreeMap::from([("db_query".to_owned(), BTreeSet::from([Op::Write]))]);
    let forged = forge(
        &root_token(),
        Caveats {
            operations: ops,
            ..Caveats::default()
        },
    );
    let v = verifier();
    let empty = Err(Error::Malformed(crate::error::Malformed(EMPTY_OPERATIONS)));
    assert_eq!(v.check(&forged).map(|_| ()), empty);
    for (tool, op) in [
        ("db_query", "read"),
        ("db_query", "write"),
        ("search", "write"),
    ] {
        let access = Access::at(NOW).caller("agent-a").tool(tool).operation(op);
        assert_eq!(v.verify(&forged, &access).map(|_| ()), empty, "{tool}.{op}");
    }
    // What the blocks add up to, unverified: db_query is not granted, search still is.
    let facts = forged.inspect().unwrap().effective;
    for op in ["read", "write", "other"] {
        assert!(!facts.allows("db_query", op), "{op}");
        assert!(facts.allows("search", op), "{op}");
    }
    assert!(!facts.grants_tool("db_query"));
    assert_eq!(facts.tools(), ["search"]);
    assert!(facts.operations().is_empty());
    let json = serde_json::to_value(&facts).unwrap();
    assert_eq!(json["tools"], serde_json::json!(["search"]));
    assert_eq!(json["operations"], serde_json::json!([]));
    assert_eq!(json["resource_limits"], serde_json::json!([]));
}

/// The same under a wildcard root: the facts shape has no way to say "every tool but db_query",
/// so the inspection reports no tool at all rather than every tool.
#[test]
fn hand_signed_disjoint_operations_under_a_wildcard_grant_nothing() {
    let r = Restriction::new().operations("db_query", ["read"]).ttl(60);
    let root = Token::mint_with(&key(1), "iss".into(), "sub".into(), r, NOW, &key(2)).unwrap();
    let forged = forge(
        &root,
        Caveats {
            operations: BTreeMap::from([("db_query".to_owned(), BTreeSet::from([Op::Write]))]),
            ..Caveats::default()
        },
    );
    let empty = Err(Error::Malformed(crate::error::Malformed(EMPTY_OPERATIONS)));
    let v = Verifier::new(key(1).public_key());
    assert_eq!(v.check(&forged).map(|_| ()), empty);
    let access = Access::at(NOW).tool("search").operation("read");
    assert_eq!(v.verify(&forged, &access).map(|_| ()), empty);
    let facts = forged.inspect().unwrap().effective;
    assert!(!facts.tool_wildcard());
    assert!(facts.tools().is_empty());
    for tool in ["db_query", "search"] {
        assert!(!facts.grants_tool(tool), "{tool}");
        for op in ["read", "write"] {
            assert!(!facts.allows(tool, op), "{tool}.{op}");
        }
    }
    let json = serde_json::to_value(&facts).unwrap();
    assert_eq!(json["tool_wildcard"], serde_json::json!(false));
    assert_eq!(json["tools"], serde_json::json!([]));
    assert_eq!(json["operations"], serde_json::json!([]));
    // Without the hand-signed block, the same root is a plain wildcard.
    let facts = root.inspect().unwrap().effective;
    assert!(facts.tool_wildcard() && facts.grants_tool("search"));
    assert!(facts.allows("db_query", "read") && !facts.allows("db_query", "write"));
}

#[test]
fn proof_that_does_not_match_the_last_key_is_refused() {
    let token = root_token();
    let wrong = Token {
        proof: Proof::Secret(Zeroizing::new([9u8; 32])),
        ..token.clone()
    };
    assert_eq!(
        verifier().verify(&wrong, &Access::at(NOW).caller("agent-a")),
        Err(Error::BadSignature)
    );
    assert_eq!(
        wrong.attenuate_at(Restriction::new(), NOW).unwrap_err(),
        Error::BadSignature
    );
    assert_eq!(wrong.seal().unwrap_err(), Error::BadSignature);
}

#[test]
fn the_chain_is_verified_as_one_batch_when_it_has_two_signatures_or_more() {
    let root = key(1).public_key();
    let r = Restriction::new().tools(["search"]).ttl(60);
    let one = Token::mint_with(&key(1), "iss".into(), "sub".into(), r, NOW, &key(2)).unwrap();
    let two = one
        .attenuate_at(Restriction::new().tools(["search"]), NOW)
        .unwrap();
    let three = two
        .attenuate_at(Restriction::new().tools(["search"]), NOW)
        .unwrap();
    assert_eq!(one.signature_count(), 1);
    assert_eq!(one.seal().unwrap().signature_count(), 2);
    assert_eq!(three.seal().unwrap().signature_count(), 4);
    for t in [
        two.clone(),
        three.clone(),
        three.seal().unwrap(),
        one.seal().unwrap(),
    ] {
        assert!(t.batch_verifies(&root));
        assert_eq!(t.check_signatures(&root), Ok(()));
    }
    // A wrong root fails the batch; so does a changed block.
    assert!(!three.batch_verifies(&key(9).public_key()));
    let mut changed = three.clone();
    changed.blocks[1].signature[10] ^= 1;
    assert!(!changed.batch_verifies(&root));
    assert_eq!(changed.check_signatures(&root), Err(Error::BadSignature));
}
