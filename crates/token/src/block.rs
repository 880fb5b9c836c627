//! The content of one block: its fields, and their strict canonical encoding.
//!
//! A block payload is a sequence of `tag value` fields in strictly ascending tag order, each tag
//! at most once. Sets are written sorted and without duplicates. Together these rules give every
//! block content exactly one encoding; anything else is malformed.

use std::collections::{BTreeMap, BTreeSet};

use crate::codec::{Reader, Writer};
use crate::error::Malformed;
use crate::op::Op;

/// Deepest delegation the format allows: a token has at most `MAX_DEPTH + 1` blocks.
pub(crate) const MAX_DEPTH: u8 = 15;

mod tag {
    pub(super) const ISSUER: u8 = 0x01;
    pub(super) const SUBJECT: u8 = 0x02;
    pub(super) const EXPIRES_AT: u8 = 0x03;
    pub(super) const NOT_BEFORE: u8 = 0x04;
    pub(super) const TOOLS: u8 = 0x05;
    pub(super) const OPERATIONS: u8 = 0x06;
    pub(super) const LIMITS: u8 = 0x07;
    pub(super) const AUDIENCE: u8 = 0x08;
    pub(super) const HOLDER: u8 = 0x09;
    pub(super) const MAX_DEPTH: u8 = 0x0a;
}

/// The restrictions one block places on the token. `None` or empty means "no restriction here".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Caveats {
    pub(crate) expires_at: Option<u64>,
    pub(crate) not_before: Option<u64>,
    pub(crate) tools: Option<BTreeSet<String>>,
    pub(crate) operations: BTreeMap<String, BTreeSet<Op>>,
    pub(crate) limits: BTreeMap<(String, String), u64>,
    pub(crate) audience: Option<BTreeSet<String>>,
    pub(crate) holder: Option<String>,
    pub(crate) max_depth: Option<u8>,
}

/// A decoded block payload: the authority block carries issuer and subject, the others do not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Body {
    pub(crate) issuer: Option<String>,
    pub(crate) subject: Option<String>,
    pub(crate) caveats: Caveats,
}

impl Body {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        let c = &self.caveats;
        if let Some(v) = &self.issuer {
            w.u8(tag::ISSUER);
            w.str(v);
        }
        if let Some(v) = &self.subject {
            w.u8(tag::SUBJECT);
            w.str(v);
        }
        if let Some(v) = c.expires_at {
            w.u8(tag::EXPIRES_AT);
            w.varint(v);
        }
        if let Some(v) = c.not_before {
            w.u8(tag::NOT_BEFORE);
            w.varint(v);
        }
        if let Some(tools) = &c.tools {
            w.u8(tag::TOOLS);
            write_str_set(&mut w, tools);
        }
        if !c.operations.is_empty() {
            w.u8(tag::OPERATIONS);
            w.len(c.operations.len());
            for (tool, ops) in &c.operations {
                w.str(tool);
                w.len(ops.len());
                for op in ops {
                    op.encode(&mut w);
                }
            }
        }
        if !c.limits.is_empty() {
            w.u8(tag::LIMITS);
            w.len(c.limits.len());
            for ((tool, key), value) in &c.limits {
                w.str(tool);
                w.str(key);
                w.varint(*value);
            }
        }
        if let Some(aud) = &c.audience {
            w.u8(tag::AUDIENCE);
            write_str_set(&mut w, aud);
        }
        if let Some(v) = &c.holder {
            w.u8(tag::HOLDER);
            w.str(v);
        }
        if let Some(v) = c.max_depth {
            w.u8(tag::MAX_DEPTH);
            w.varint(u64::from(v));
        }
        w.into_inner()
    }

    /// Decodes a payload. `authority` selects the rules of block 0.
    pub(crate) fn decode(bytes: &[u8], authority: bool) -> Result<Self, Malformed> {
        let mut r = Reader::new(bytes);
        let mut body = Self {
            issuer: None,
            subject: None,
            caveats: Caveats::default(),
        };
        let mut last_tag = 0u8;
        while !r.is_empty() {
            let t = r.u8()?;
            if t <= last_tag {
                return Err(Malformed("fields out of order or repeated"));
            }
            last_tag = t;
            let c = &mut body.caveats;
            match t {
                tag::ISSUER => body.issuer = Some(r.str()?),
                tag::SUBJECT => body.subject = Some(r.str()?),
                tag::EXPIRES_AT => c.expires_at = Some(r.varint()?),
                tag::NOT_BEFORE => c.not_before = Some(r.varint()?),
                tag::TOOLS => c.tools = Some(read_str_set(&mut r)?),
                tag::OPERATIONS => c.operations = read_operations(&mut r)?,
                tag::LIMITS => c.limits = read_limits(&mut r)?,
                tag::AUDIENCE => {
                    let aud = read_str_set(&mut r)?;
                    if aud.is_empty() {
                        return Err(Malformed("empty audience"));
                    }
                    c.audience = Some(aud);
                }
                tag::HOLDER => c.holder = Some(r.str()?),
                tag::MAX_DEPTH => {
                    let d = r.varint()?;
                    match u8::try_from(d) {
                        Ok(d) if d <= MAX_DEPTH => c.max_depth = Some(d),
                        _ => return Err(Malformed("max depth out of range")),
                    }
                }
                _ => return Err(Malformed("unknown field")),
            }
        }
        if authority {
            if body.issuer.is_none() || body.subject.is_none() {
                return Err(Malformed("authority block lacks issuer or subject"));
            }
            if body.caveats.expires_at.is_none() || body.caveats.max_depth.is_none() {
                return Err(Malformed("authority block lacks expiry or max depth"));
            }
        } else if body.issuer.is_some() || body.subject.is_some() {
            return Err(Malformed("issuer or subject outside the authority block"));
        }
        Ok(body)
    }
}

fn write_str_set(w: &mut Writer, set: &BTreeSet<String>) {
    w.len(set.len());
    for s in set {
        w.str(s);
    }
}

fn read_str_set(r: &mut Reader<'_>) -> Result<BTreeSet<String>, Malformed> {
    let n = r.len()?;
    let mut out = BTreeSet::new();
    let mut prev: Option<String> = None;
    for _ in 0..n {
        let s = r.str()?;
        ascending(prev.as_ref(), &s)?;
        prev = Some(s.clone());
        out.insert(s);
    }
    Ok(out)
}

fn read_operations(r: &mut Reader<'_>) -> Result<BTreeMap<String, BTreeSet<Op>>, Malformed> {
    let n = r.len()?;
    if n == 0 {
        return Err(Malformed("empty operations field"));
    }
    let mut out = BTreeMap::new();
    let mut prev_tool: Option<String> = None;
    for _ in 0..n {
        let tool = r.str()?;
        ascending(prev_tool.as_ref(), &tool)?;
        prev_tool = Some(tool.clone());
        let m = r.len()?;
        if m == 0 {
            return Err(Malformed("empty operation list"));
        }
        let mut ops = BTreeSet::new();
        let mut prev_op: Option<Op> = None;
        for _ in 0..m {
            let op = Op::decode(r)?;
            ascending(prev_op.as_ref(), &op)?;
            prev_op = Some(op.clone());
            ops.insert(op);
        }
        out.insert(tool, ops);
    }
    Ok(out)
}

fn read_limits(r: &mut Reader<'_>) -> Result<BTreeMap<(String, String), u64>, Malformed> {
    let n = r.len()?;
    if n == 0 {
        return Err(Malformed("empty limits field"));
    }
    let mut out = BTreeMap::new();
    let mut prev: Option<(String, String)> = None;
    for _ in 0..n {
        let key = (r.str()?, r.str()?);
        ascending(prev.as_ref(), &key)?;
        prev = Some(key.clone());
        let value = r.varint()?;
        out.insert(key, value);
    }
    Ok(out)
}

/// Sets are encoded in strictly ascending order: no duplicates, one encoding per set.
fn ascending<T: Ord>(prev: Option<&T>, next: &T) -> Result<(), Malformed> {
    match prev {
        Some(p) if p >= next => Err(Malformed("set not in canonical order")),
        _ => Ok(()),
    }
}
