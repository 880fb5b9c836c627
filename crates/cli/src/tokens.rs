//! Key and token commands: keygen, pubkey, mint, attenuate, seal, verify, inspect.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use vouch_keys::{KeyFormat, encode_private, encode_public, load_public};
use vouch_token::{Access, Error, Inspection, KeyPair, Restriction, Token, Verifier};

use crate::cli::{PrivateFormat, PublicFormat, RightsArgs};
use crate::failure::{Failure, Output};
use crate::input::{self, json, unix_now};

/// How long a minted token lives when `--ttl` is not given.
pub(crate) const DEFAULT_TTL: u64 = 3600;

/// Maps a token error to the exit status: the caller's own mistakes are usage errors, the rest
/// are rejections.
fn token_failure(e: &Error) -> Failure {
    match e {
        Error::InvalidInput(_) | Error::Random => Failure::usage(e),
        _ => Failure::rejected(format_args!("{e} ({})", e.code())),
    }
}

pub(crate) fn keygen(out: &Path, format: PrivateFormat) -> Output {
    let key = KeyPair::generate().map_err(Failure::usage)?;
    let format = match format {
        PrivateFormat::Pem => KeyFormat::Pem,
        PrivateFormat::Jwk => KeyFormat::Jwk,
        PrivateFormat::Hex => KeyFormat::Hex,
    };
    let public = format!("{}\n", key.public_key().to_hex());
    if out == Path::new("-") {
        // The key itself is the machine output; the public half goes to stderr for the reader.
        eprint!("{public}");
        return Ok(encode_private(&key, format).as_bytes().to_vec());
    }
    vouch_keys::save_private(out, &key, format).map_err(Failure::usage)?;
    Ok(public.into_bytes())
}

pub(crate) fn pubkey(path: &Path, format: PublicFormat) -> Output {
    let key = load_public(path).map_err(|e| Failure::usage(format!("key: {e}")))?;
    Ok(match format {
        PublicFormat::Hex => format!("{}\n", key.to_hex()),
        PublicFormat::Pem => encode_public(&key, KeyFormat::Pem),
        PublicFormat::Jwk => encode_public(&key, KeyFormat::Jwk),
    }
    .into_bytes())
}

/// Builds a restriction from the command line; `default_ttl` applies when `--ttl` is absent.
fn restriction(args: &RightsArgs, default_ttl: Option<u64>) -> Result<Restriction, Failure> {
    let mut r = Restriction::new();
    if let Some(tools) = &args.tools {
        r = r.tools(tools.iter().map(|t| t.trim().to_owned()));
    }
    let mut ops: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for spec in &args.ops {
        let (tool, op) = spec
            .split_once(':')
            .filter(|(t, o)| !t.is_empty() && !o.is_empty())
            .ok_or_else(|| Failure::usage(format!("--op {spec:?}: expected TOOL:OP")))?;
        ops.entry(tool).or_default().push(op);
    }
    for (tool, ops) in ops {
        r = r.operations(tool, ops);
    }
    for spec in &args.limits {
        let parsed = spec.split_once(':').and_then(|(tool, rest)| {
            let (key, n) = rest.rsplit_once('=')?;
            let n = n.parse::<u64>().ok()?;
            (!tool.is_empty() && !key.is_empty()).then_some((tool, key, n))
        });
        let (tool, key, n) = parsed
            .ok_or_else(|| Failure::usage(format!("--limit {spec:?}: expected TOOL:KEY=N")))?;
        r = r.limit(tool, key, n);
    }
    if let Some(ttl) = args.ttl.or(default_ttl) {
        r = r.ttl(ttl);
    }
    if !args.audiences.is_empty() {
        r = r.audience(args.audiences.iter().cloned());
    }
    if let Some(depth) = args.max_depth {
        r = r.max_depth(depth);
    }
    if let Some(holder) = &args.bind {
        r = r.holder(holder.clone());
    }
    Ok(r)
}

fn token_line(token: &Token) -> Vec<u8> {
    format!("{}\n", token.to_base64()).into_bytes()
}

pub(crate) fn mint(key: &Path, issuer: &str, subject: &str, rights: &RightsArgs) -> Output {
    let root = input::private_key(key)?;
    let restriction = restriction(rights, Some(DEFAULT_TTL))?;
    let token = Token::mint(&root, issuer, subject, restriction).map_err(|e| token_failure(&e))?;
    Ok(token_line(&token))
}

pub(crate) fn attenuate(token: &str, pubkey: &str, rights: &RightsArgs) -> Output {
    let token = input::token(token)?;
    let root = input::public_key(pubkey)?;
    // Only a token that verifies, and is still valid, is worth narrowing.
    let verified = Verifier::new(root)
        .check(&token)
        .map_err(|e| token_failure(&e))?;
    if unix_now() >= verified.expires_at() {
        return Err(token_failure(&Error::Expired));
    }
    let restriction = restriction(rights, None)?;
    let narrower = token
        .attenuate(restriction)
        .map_err(|e| token_failure(&e))?;
    Ok(token_line(&narrower))
}

pub(crate) fn seal(token: &str) -> Output {
    let token = input::token(token)?;
    let sealed = token.seal().map_err(|e| token_failure(&e))?;
    Ok(token_line(&sealed))
}

/// What `verify` was asked to check.
pub(crate) struct VerifyArgs<'a> {
    pub(crate) token: &'a str,
    pub(crate) pubkey: &'a str,
    pub(crate) tool: Option<&'a str>,
    pub(crate) op: Option<&'a str>,
    pub(crate) audience: Option<&'a str>,
    pub(crate) caller: Option<&'a str>,
    pub(crate) now: Option<u64>,
}

pub(crate) fn verify(args: &VerifyArgs<'_>) -> Output {
    let token = input::token(args.token)?;
    let root = input::public_key(args.pubkey)?;
    let mut verifier = Verifier::new(root);
    if let Some(audience) = args.audience {
        verifier = verifier.with_audience(audience);
    }
    let mut access = Access::at(args.now.unwrap_or_else(unix_now));
    if let Some(caller) = args.caller {
        access = access.caller(caller);
    }
    if let Some(tool) = args.tool {
        access = access.tool(tool);
    }
    if let Some(op) = args.op {
        access = access.operation(op);
    }
    let facts = verifier
        .verify(&token, &access)
        .map_err(|e| token_failure(&e))?;
    json(&facts)
}

pub(crate) fn inspect(token: &str, as_json: bool) -> Output {
    let token = input::token(token)?;
    let inspection = token.inspect().map_err(Failure::usage)?;
    if as_json {
        return json(&inspection);
    }
    Ok(render(&inspection).into_bytes())
}

fn list(items: &[String]) -> String {
    items.join(", ")
}

fn pairs(items: &[(String, String)]) -> String {
    items
        .iter()
        .map(|(tool, op)| format!("{tool}:{op}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn limits(items: &[(String, String, u64)]) -> String {
    items
        .iter()
        .map(|(tool, key, n)| format!("{tool}:{key}={n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The text form of an inspection: one line per fact.
fn render(i: &Inspection) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "unverified token: version {}, root key id {}, {} block(s), {}",
        i.version,
        i.root_key_id,
        i.blocks.len(),
        if i.sealed { "sealed" } else { "not sealed" }
    );
    for b in &i.blocks {
        let kind = if b.index == 0 {
            "authority"
        } else {
            "attenuation"
        };
        let _ = writeln!(out, "block {} ({kind})", b.index);
        let _ = writeln!(out, "  revocation id: {}", b.revocation_id);
        if let Some(v) = &b.issuer {
            let _ = writeln!(out, "  issuer: {v}");
        }
        if let Some(v) = &b.subject {
            let _ = writeln!(out, "  subject: {v}");
        }
        match &b.tools {
            Some(t) => {
                let _ = writeln!(out, "  tools: {}", list(t));
            }
            None if b.index == 0 => {
                let _ = writeln!(out, "  tools: all");
            }
            None => {}
        }
        if !b.operations.is_empty() {
            let _ = writeln!(out, "  operations: {}", pairs(&b.operations));
        }
        if !b.resource_limits.is_empty() {
            let _ = writeln!(out, "  limits: {}", limits(&b.resource_limits));
        }
        if let Some(v) = b.not_before {
            let _ = writeln!(out, "  not before: {v}");
        }
        if let Some(v) = b.expires_at {
            let _ = writeln!(out, "  expires at: {v}");
        }
        if let Some(v) = &b.audience {
            let _ = writeln!(out, "  audience: {}", list(v));
        }
        if let Some(v) = &b.holder {
            let _ = writeln!(out, "  holder: {v}");
        }
        if let Some(v) = b.max_depth {
            let _ = writeln!(out, "  max further delegations: {v}");
        }
    }
    let e = &i.effective;
    let _ = writeln!(out, "effective (if the signatures hold)");
    let tools = if e.tool_wildcard() {
        "all".to_owned()
    } else {
        list(e.tools())
    };
    let _ = writeln!(out, "  tools: {tools}");
    if !e.operations().is_empty() {
        let _ = writeln!(out, "  operations: {}", pairs(e.operations()));
    }
    if !e.resource_limits().is_empty() {
        let _ = writeln!(out, "  limits: {}", limits(e.resource_limits()));
    }
    let _ = writeln!(out, "  expires at: {}", e.expires_at());
    if let Some(v) = e.holder() {
        let _ = writeln!(out, "  holder: {v}");
    }
    let _ = writeln!(out, "  delegation depth: {}", e.delegation_depth());
    out
}
