//! Property tests: round trips, the narrowing guarantee, tamper and splice resistance.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use serde_json::Value;
use vouch_token::internal::hand_sign;
use vouch_token::{Access, Error, Facts, KeyPair, Restriction, Token, Verifier};

use crate::support::{NOW, flip, key};

const TOOLS: [&str; 4] = ["db_query", "file_read", "search", "shell"];
const OPS: [&str; 4] = ["read", "write", "execute", "admin"];
const KEYS: [&str; 2] = ["max_rows", "max_bytes"];
const AUDS: [&str; 3] = [
    "https://a.example",
    "https://b.example",
    "https://c.example",
];
const HOLDERS: [&str; 2] = ["holder-1", "holder-2"];

fn subset(all: &'static [&'static str]) -> impl Strategy<Value = Vec<&'static str>> {
    proptest::sample::subsequence(all.to_vec(), 0..=all.len())
}

/// An arbitrary restriction over a small vocabulary, so that overlaps are likely. It may widen or
/// be unsatisfiable; attenuate has to refuse those. Each dimension is left out more often than
/// not, so that a good share of the attenuations asked for are acceptable.
fn restriction() -> impl Strategy<Value = Restriction> {
    use proptest::option::weighted;
    (
        weighted(0.3, subset(&TOOLS)),
        proptest::collection::vec((0..TOOLS.len(), subset(&OPS)), 0..2),
        proptest::collection::vec((0..TOOLS.len(), 0..KEYS.len(), 0u64..200), 0..2),
        weighted(0.4, 0u64..4000),
        weighted(0.2, 0u64..100),
        weighted(
            0.2,
            proptest::sample::subsequence(AUDS.to_vec(), 1..=AUDS.len()),
        ),
        weighted(0.2, 0..HOLDERS.len()),
        weighted(0.2, 0u8..6),
    )
        .prop_map(|(tools, ops, limits, ttl, nbf, aud, holder, depth)| {
            let mut r = Restriction::new();
            if let Some(t) = tools {
                r = r.tools(t);
            }
            for (t, o) in ops {
                r = r.operations(TOOLS[t], o);
            }
            for (t, k, v) in limits {
                r = r.limit(TOOLS[t], KEYS[k], v);
            }
            if let Some(ttl) = ttl {
                r = r.ttl(ttl);
            }
            if let Some(n) = nbf {
                r = r.not_before(NOW - 100 + n);
            }
            if let Some(a) = aud {
                r = r.audience(a);
            }
            if let Some(h) = holder {
                r = r.holder(HOLDERS[h]);
            }
            if let Some(d) = depth {
                r = r.max_depth(d);
            }
            r
        })
}

/// A root restriction: no tool list (every tool), or a list that covers the tools its operations
/// and limits name; always an expiry.
fn root_restriction() -> impl Strategy<Value = Restriction> {
    (
        proptest::collection::vec(
            (
                0..TOOLS.len(),
                proptest::sample::subsequence(OPS.to_vec(), 1..=OPS.len()),
            ),
            0..4,
        ),
        proptest::collection::vec((0..TOOLS.len(), 0..KEYS.len(), 0u64..200), 0..4),
        any::<bool>(),
        weighted_audience(),
    )
        .prop_map(|(ops, limits, listed, aud)| {
            let mut r = Restriction::new().expires_at(NOW + 5000);
            if listed {
                let named = ops
                    .iter()
                    .map(|(t, _)| *t)
                    .chain(limits.iter().map(|(t, _, _)| *t));
                r = r.tools(named.chain([2]).map(|t| TOOLS[t]));
            }
            for (t, o) in ops {
                r = r.operations(TOOLS[t], o);
            }
            for (t, k, v) in limits {
                r = r.limit(TOOLS[t], KEYS[k], v);
            }
            if let Some(a) = aud {
                r = r.audience(a);
            }
            r
        })
}

fn weighted_audience() -> impl Strategy<Value = Option<Vec<&'static str>>> {
    proptest::option::weighted(
        0.3,
        proptest::sample::subsequence(AUDS.to_vec(), 1..=AUDS.len()),
    )
}

fn effective(t: &Token) -> Facts {
    t.inspect().unwrap().effective
}

/// Every right the child has, the parent has too.
fn assert_narrower(child: &Facts, parent: &Facts) {
    for tool in TOOLS.iter().chain(&["unknown"]) {
        if child.grants_tool(tool) {
            assert!(parent.grants_tool(tool), "tool {tool} widened");
        }
        for op in OPS.iter().chain(&["other"]) {
            if child.allows(tool, op) {
                assert!(parent.allows(tool, op), "{tool}.{op} widened");
            }
        }
        // A limit matters only while the child still has the tool.
        for key in KEYS.iter().filter(|_| child.grants_tool(tool)) {
            if let Some(p) = parent.limit(tool, key) {
                let c = child.limit(tool, key);
                assert!(
                    c.is_some_and(|c| c <= p),
                    "limit {tool}.{key} widened: {c:?} > {p}"
                );
            }
        }
    }
    assert!(child.expires_at() <= parent.expires_at());
    if let Some(p) = parent.not_before() {
        assert!(child.not_before().is_some_and(|c| c >= p));
    }
    if let Some(p) = parent.audience() {
        let c = child.audience().expect("audience dropped");
        assert!(c.iter().all(|a| p.contains(a)), "audience widened");
    }
    if let Some(p) = parent.holder() {
        assert_eq!(child.holder(), Some(p), "holder changed");
    }
    assert_eq!(child.delegation_depth(), parent.delegation_depth() + 1);
    assert_eq!(child.issuer(), parent.issuer());
    assert_eq!(child.subject(), parent.subject());
}

/// The accesses a verifier could be asked for, over the whole vocabulary.
/// (tool, operation, caller, time) asked of a verifier.
type Probe = (
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
    u64,
);

fn probes() -> Vec<Probe> {
    let mut out = Vec::new();
    for tool in TOOLS {
        for op in ["read", "write", "admin"] {
            out.push((Some(tool), Some(op), Some(HOLDERS[0]), NOW));
        }
    }
    out.push((None, None, None, NOW));
    out.push((None, None, Some(HOLDERS[1]), NOW + 3000));
    out
}

fn verify_probe(v: &Verifier, t: &Token, (tool, op, caller, now): Probe) -> Result<Facts, Error> {
    let mut a = Access::at(now);
    if let Some(c) = caller {
        a = a.caller(c);
    }
    if let Some(t) = tool {
        a = a.tool(t);
    }
    if let Some(o) = op {
        a = a.operation(o);
    }
    v.verify(t, &a)
}

fn mint(root: &KeyPair, r: Restriction) -> Token {
    Token::mint_at(root, "auth-server", "agent-a", r, NOW)
        .expect("root restrictions are generated valid")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Encoding round-trips, in binary and base64, sealed or not.
    #[test]
    fn encode_decode_round_trip(root_r in root_restriction(), steps in proptest::collection::vec(restriction(), 0..3), seal in any::<bool>()) {
        let mut token = mint(&key(1), root_r);
        for step in steps {
            if let Ok(child) = token.attenuate_at(step, NOW) {
                token = child;
            }
        }
        if seal {
            token = token.seal().unwrap();
        }
        let bytes = token.to_bytes();
        let decoded = Token::from_bytes(&bytes).unwrap();
        prop_assert_eq!(decoded.to_bytes(), bytes.clone());
        let text = token.to_base64();
        prop_assert_eq!(Token::from_base64(&text).unwrap().to_bytes(), bytes);
        prop_assert_eq!(decoded.revocation_ids(), token.revocation_ids());
        prop_assert_eq!(decoded.is_sealed(), seal);
        let facts = effective(&decoded);
        prop_assert_eq!(facts, effective(&token));
    }

    /// Flipping any bit of a valid token makes it fail to decode or fail to verify.
    #[test]
    fn any_bit_flip_is_rejected(index in any::<proptest::sample::Index>(), bit in 0u8..8, seal in any::<bool>()) {
        let root = key(1);
        let mut token = crate::support::mint(&root, crate::support::reference_root())
            .attenuate_at(Restriction::new().tools(["db_query"]).limit("db_query", "max_rows", 50), NOW)
            .unwrap();
        if seal {
            token = token.seal().unwrap();
        }
        let bytes = token.to_bytes();
        let tampered = flip(&bytes, index.index(bytes.len()), bit);
        let verifier = Verifier::new(root.public_key());
        if let Ok(t) = Token::from_bytes(&tampered) {
            prop_assert!(verifier.verify(&t, &Access::at(NOW)).is_err());
        }
    }

    /// The validity window is [not_before, expires_at), exactly.
    #[test]
    fn validity_edges(nbf in 1_000u64..2_000_000_000, len in 1u64..1_000_000) {
        let root = key(1);
        let token = Token::mint_at(&root, "i", "s", Restriction::new().not_before(nbf).expires_at(nbf + len), 0).unwrap();
        let v = Verifier::new(root.public_key());
        prop_assert_eq!(v.verify(&token, &Access::at(nbf - 1)).unwrap_err(), Error::NotYetValid);
        prop_assert!(v.verify(&token, &Access::at(nbf)).is_ok());
        prop_assert!(v.verify(&token, &Access::at(nbf + len - 1)).is_ok());
        prop_assert_eq!(v.verify(&token, &Access::at(nbf + len)).unwrap_err(), Error::Expired);
    }

    /// Nobody can add a block to a sealed token, whatever the restriction.
    #[test]
    fn sealed_tokens_cannot_be_attenuated(r in restriction()) {
        let token = crate::support::mint(&key(1), crate::support::reference_root()).seal().unwrap();
        let sealed = vouch_token::Refusal::Sealed;
        prop_assert_eq!(token.attenuate_at(r, NOW).unwrap_err(), Error::Refused(sealed));
    }
}

/// The core safety property: whatever attenuations are asked for, every token that comes out is
/// narrower than its parent, and a verifier never accepts for the child what it refuses for the
/// parent. The run must exercise enough accepted attenuations to mean something.
#[test]
fn attenuation_never_widens() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let accepted = AtomicUsize::new(0);
    let root = key(1);
    let verifiers = [
        Verifier::new(root.public_key()),
        Verifier::new(root.public_key()).with_audience(AUDS[0]),
    ];
    let strategy = (
        root_restriction(),
        proptest::collection::vec(restriction(), 1..6),
    );
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 96,
        ..ProptestConfig::default()
    });
    runner
        .run(&strategy, |(root_r, steps)| {
            let mut token = Token::mint_at(&root, "auth-server", "agent-a", root_r, NOW)
                .expect("root restrictions are generated valid");
            for step in steps {
                let Ok(child) = token.attenuate_at(step, NOW) else {
                    continue;
                };
                accepted.fetch_add(1, Ordering::Relaxed);
                assert_narrower(&effective(&child), &effective(&token));
                for v in &verifiers {
                    for probe in probes() {
                        if verify_probe(v, &child, probe).is_ok() {
                            prop_assert!(
                                verify_probe(v, &token, probe).is_ok(),
                                "probe {probe:?} widened"
                            );
                        }
                    }
                }
                token = child;
            }
            Ok(())
        })
        .unwrap();
    let accepted = accepted.into_inner();
    assert!(
        accepted >= 100,
        "only {accepted} attenuations were accepted; the generator is too strict"
    );
}

/// The byte layout of a token, cut into its parts so blocks can be moved around.
struct Parts {
    header: Vec<u8>,
    blocks: Vec<Vec<u8>>,
    proof: Vec<u8>,
}

fn split(bytes: &[u8]) -> Parts {
    let n = usize::from(bytes[9]);
    let mut pos = 10;
    let mut blocks = Vec::new();
    for _ in 0..n {
        // Payloads in these tests are shorter than 128 bytes: a one-byte length.
        let len = usize::from(bytes[pos]);
        assert!(len < 128);
        let end = pos + 1 + len + 96;
        blocks.push(bytes[pos..end].to_vec());
        pos = end;
    }
    Parts {
        header: bytes[..9].to_vec(),
        blocks,
        proof: bytes[pos..].to_vec(),
    }
}

fn join(header: &[u8], blocks: &[Vec<u8>], proof: &[u8]) -> Vec<u8> {
    let mut out = header.to_vec();
    out.push(u8::try_from(blocks.len()).unwrap());
    for b in blocks {
        out.extend_from_slice(b);
    }
    out.extend_from_slice(proof);
    out
}

fn rejected(verifier: &Verifier, bytes: &[u8]) -> bool {
    match Token::from_bytes(bytes) {
        Err(_) => true,
        Ok(t) => verifier.verify(&t, &Access::at(NOW)).is_err(),
    }
}

#[test]
fn dropping_reordering_and_splicing_blocks_is_rejected() {
    let root = key(1);
    let verifier = Verifier::new(root.public_key());
    // Each chain has its own authority block, minted from the same root key.
    let chain = |tag: u64| {
        crate::support::mint(&root, crate::support::reference_root())
            .attenuate_at(Restriction::new().limit("db_query", "max_rows", tag), NOW)
            .unwrap()
            .attenuate_at(Restriction::new().tools(["db_query", "search"]), NOW)
            .unwrap()
            .attenuate_at(Restriction::new().tools(["db_query"]), NOW)
            .unwrap()
    };
    let a = chain(10);
    let b = chain(20);
    for t in [&a, &b] {
        assert!(!rejected(&verifier, &t.to_bytes()), "the originals verify");
    }
    let pa = split(&a.to_bytes());
    let pb = split(&b.to_bytes());
    let sealed = split(&a.seal().unwrap().to_bytes());
    let mut forgeries: Vec<(String, Vec<u8>)> = Vec::new();
    for drop in 0..4 {
        let mut blocks = pa.blocks.clone();
        blocks.remove(drop);
        forgeries.push((
            format!("drop block {drop}"),
            join(&pa.header, &blocks, &pa.proof),
        ));
        forgeries.push((
            format!("drop block {drop}, sealed"),
            join(&sealed.header, &blocks, &sealed.proof),
        ));
    }
    for (i, j) in [(1, 2), (2, 3), (1, 3), (0, 1)] {
        let mut blocks = pa.blocks.clone();
        blocks.swap(i, j);
        forgeries.push((
            format!("swap {i} and {j}"),
            join(&pa.header, &blocks, &pa.proof),
        ));
    }
    for i in 0..4 {
        let mut blocks = pa.blocks.clone();
        blocks[i] = pb.blocks[i].clone();
        forgeries.push((
            format!("splice block {i} from b"),
            join(&pa.header, &blocks, &pa.proof),
        ));
        forgeries.push((
            format!("splice block {i} from b, b's proof"),
            join(&pa.header, &blocks, &pb.proof),
        ));
    }
    let mut doubled = pa.blocks.clone();
    doubled.push(pa.blocks[3].clone());
    forgeries.push((
        "repeat the last block".into(),
        join(&pa.header, &doubled, &pa.proof),
    ));
    forgeries.push((
        "a's blocks, b's proof".into(),
        join(&pa.header, &pa.blocks, &pb.proof),
    ));
    forgeries.push((
        "a's blocks, seal of another token".into(),
        join(
            &pa.header,
            &pa.blocks,
            &split(&b.seal().unwrap().to_bytes()).proof,
        ),
    ));
    for (name, bytes) in forgeries {
        assert!(rejected(&verifier, &bytes), "{name} accepted");
    }
}

/// The tool and operation restrictions of one block, as generated.
#[derive(Debug, Clone)]
struct GrantBlock {
    tools: Option<Vec<&'static str>>,
    operations: Vec<(usize, Vec<&'static str>)>,
}

impl GrantBlock {
    fn restriction(&self) -> Restriction {
        let mut r = Restriction::new();
        if let Some(t) = &self.tools {
            r = r.tools(t.iter().copied());
        }
        for (t, ops) in &self.operations {
            r = r.operations(TOOLS[*t], ops.iter().copied());
        }
        r
    }

    /// This block's operations per tool (entries for the same tool add up, as in `Restriction`).
    fn operations(&self) -> BTreeMap<&'static str, BTreeSet<&'static str>> {
        let mut out: BTreeMap<_, BTreeSet<_>> = BTreeMap::new();
        for (t, ops) in &self.operations {
            out.entry(TOOLS[*t])
                .or_default()
                .extend(ops.iter().copied());
        }
        out
    }
}

fn grant_block() -> impl Strategy<Value = GrantBlock> {
    (
        proptest::option::weighted(0.3, subset(&TOOLS)),
        proptest::collection::vec(
            (
                0..TOOLS.len(),
                proptest::sample::subsequence(OPS.to_vec(), 1..=2),
            ),
            0..3,
        ),
    )
        .prop_map(|(tools, operations)| GrantBlock { tools, operations })
}

/// The tool and operation rights of a chain, computed here from the blocks alone: a tool is
/// granted if every tool list names it and, on every block that lists operations for it, at least
/// one operation is common to all those lists; an operation is allowed if every such list has it.
struct Model(Vec<GrantBlock>);

impl Model {
    fn operations(&self, tool: &str) -> Option<BTreeSet<&'static str>> {
        let mut lists = self.0.iter().filter_map(|b| b.operations().remove(tool));
        let first = lists.next()?;
        Some(lists.fold(first, |acc, l| acc.intersection(&l).copied().collect()))
    }

    /// Some tool's operations intersect to nothing: a verifier refuses such a chain.
    fn unsatisfiable(&self) -> bool {
        TOOLS
            .iter()
            .any(|t| self.operations(t).is_some_and(|ops| ops.is_empty()))
    }

    fn grants_tool(&self, tool: &str) -> bool {
        let listed = self
            .0
            .iter()
            .all(|b| b.tools.as_ref().is_none_or(|t| t.contains(&tool)));
        listed && self.operations(tool).is_none_or(|ops| !ops.is_empty())
    }

    fn allows(&self, tool: &str, op: &str) -> bool {
        self.grants_tool(tool) && self.operations(tool).is_none_or(|ops| ops.contains(op))
    }
}

/// What a reader of the facts JSON (the seed's shape) concludes: granted tools are `tools`, or
/// all of them when `tool_wildcard`; a granted tool with no `operations` pair is unrestricted.
fn json_allows(json: &Value, tool: &str, op: Option<&str>) -> bool {
    let listed = json["tool_wildcard"] == Value::Bool(true)
        || json["tools"].as_array().unwrap().iter().any(|t| t == tool);
    let pairs: Vec<&str> = json["operations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p[0] == tool)
        .map(|p| p[1].as_str().unwrap())
        .collect();
    listed && op.is_none_or(|op| pairs.is_empty() || pairs.contains(&op))
}

/// A chain can hold hand-signed blocks (any holder can sign one with the proof key, bypassing
/// `attenuate`). Whatever the blocks, the facts a verifier reports (their methods and their JSON)
/// answer every (tool, operation) question exactly as `Verifier::authorize` does, and as the
/// intersection of the blocks says; a chain whose operations on a tool intersect to nothing is
/// refused, and its inspection never shows a right the blocks do not give.
#[test]
fn facts_agree_with_authorize_on_hand_signed_chains() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (verified, refused) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let root = key(1);
    let verifier = Verifier::new(root.public_key());
    let strategy = (
        grant_block(),
        proptest::collection::vec((any::<bool>(), grant_block()), 1..5),
    );
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 128,
        ..ProptestConfig::default()
    });
    runner
        .run(&strategy, |(authority, steps)| {
            let Ok(mut token) = Token::mint_at(
                &root,
                "auth-server",
                "agent-a",
                authority.restriction().max_depth(15).expires_at(NOW + 60),
                NOW,
            ) else {
                // Operations on a tool outside the root's own tool list.
                return Ok(());
            };
            let mut blocks = vec![authority];
            for (i, (by_hand, block)) in steps.into_iter().enumerate() {
                let next = if by_hand {
                    hand_sign(&token, block.restriction(), NOW, &key(20 + i as u8))
                } else {
                    token.attenuate_at(block.restriction(), NOW)
                };
                if let Ok(next) = next {
                    token = next;
                    blocks.push(block);
                }
            }
            let model = Model(blocks);
            let inspected = token.inspect().unwrap().effective;
            let inspected_json = serde_json::to_value(&inspected).unwrap();
            let probe_tools = TOOLS.iter().chain(&["unknown"]);
            let checked = match verifier.check(&token) {
                Ok(checked) => checked,
                Err(e) => {
                    refused.fetch_add(1, Ordering::Relaxed);
                    prop_assert!(model.unsatisfiable(), "refused: {e}");
                    prop_assert!(e.is_invalid_token());
                    for tool in probe_tools {
                        prop_assert!(!inspected.grants_tool(tool) || model.grants_tool(tool));
                        prop_assert!(
                            !json_allows(&inspected_json, tool, None) || model.grants_tool(tool)
                        );
                        for op in OPS.iter().chain(&["other"]) {
                            prop_assert!(!inspected.allows(tool, op) || model.allows(tool, op));
                            prop_assert!(
                                !json_allows(&inspected_json, tool, Some(op))
                                    || model.allows(tool, op),
                                "inspection shows {tool}.{op}"
                            );
                        }
                    }
                    return Ok(());
                }
            };
            verified.fetch_add(1, Ordering::Relaxed);
            prop_assert!(!model.unsatisfiable(), "accepted an unsatisfiable chain");
            let facts = verifier.authorize(&checked, &Access::at(NOW)).unwrap();
            prop_assert_eq!(&facts, &inspected);
            let json = serde_json::to_value(&facts).unwrap();
            for tool in probe_tools {
                let granted = verifier
                    .authorize(&checked, &Access::at(NOW).tool(tool))
                    .is_ok();
                prop_assert_eq!(granted, facts.grants_tool(tool), "grants_tool({})", tool);
                prop_assert_eq!(granted, json_allows(&json, tool, None), "JSON {}", tool);
                prop_assert_eq!(granted, model.grants_tool(tool), "model {}", tool);
                for op in OPS.iter().chain(&["other"]) {
                    let access = Access::at(NOW).tool(tool).operation(op);
                    let ok = verifier.authorize(&checked, &access).is_ok();
                    prop_assert_eq!(ok, facts.allows(tool, op), "allows({}, {})", tool, op);
                    prop_assert_eq!(
                        ok,
                        json_allows(&json, tool, Some(op)),
                        "JSON {}.{}",
                        tool,
                        op
                    );
                    prop_assert_eq!(ok, model.allows(tool, op), "model {}.{}", tool, op);
                }
            }
            Ok(())
        })
        .unwrap();
    let (verified, refused) = (verified.into_inner(), refused.into_inner());
    assert!(
        verified >= 30 && refused >= 10,
        "verified {verified}, refused {refused}: the generator misses a branch"
    );
}
