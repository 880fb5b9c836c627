//! `tools/list` results narrowed to the tools a token grants, in a JSON body or in an SSE
//! stream, without I/O: the gateway and the Python middleware feed it the upstream's bytes.
//!
//! [`listing_id`] says whether a request is a listing; a [`ToolsListFilter`] made for that
//! request then rewrites the answer: [`filter_json`](ToolsListFilter::filter_json) a JSON body,
//! or, for `text/event-stream`, [`push`](ToolsListFilter::push) each chunk as it arrives and
//! [`finish`](ToolsListFilter::finish) at the end. Each SSE event is handed on as soon as it is
//! complete; only the event carrying the listing's result is rewritten.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use serde_json::Value;
use vouch_token::Facts;

/// The id of a `tools/list` request, if `body` is one.
pub fn listing_id(body: &[u8]) -> Option<Value> {
    // The strict parse builds no tree: most messages are not listings, and only a listing is
    // parsed again for its id.
    let method = crate::jsonrpc::parse(body).ok()?;
    if method.method()? != "tools/list" {
        return None;
    }
    let message: Value = serde_json::from_slice(body).ok()?;
    if message.get("method")?.as_str()? != "tools/list" {
        return None;
    }
    message.get("id").cloned()
}

/// An SSE event longer than the filter's bound: the stream must end there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventTooLarge;

impl std::fmt::Display for EventTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("upstream sent an event larger than the bound")
    }
}

impl std::error::Error for EventTooLarge {}

/// Narrows the answer to one `tools/list` request to the tools the token grants.
///
/// A tool stays when the token grants the operation a call to it performs: the one set with
/// `operations` (as the capability layer's `operation(tool, op)`), `execute` otherwise.
#[derive(Clone, Debug)]
pub struct ToolsListFilter {
    id: Value,
    facts: Facts,
    operations: Arc<BTreeMap<String, String>>,
    buf: BytesMut,
    max_event_bytes: usize,
}

impl ToolsListFilter {
    /// A filter for the answer to the listing with this `id` (from [`listing_id`]), keeping
    /// what `facts` grant; no SSE event may exceed `max_event_bytes`.
    pub fn new(
        id: Value,
        facts: Facts,
        operations: Arc<BTreeMap<String, String>>,
        max_event_bytes: usize,
    ) -> Self {
        Self {
            id,
            facts,
            operations,
            buf: BytesMut::new(),
            max_event_bytes,
        }
    }

    fn keeps(&self, tool: &Value) -> bool {
        let Some(name) = tool.get("name").and_then(Value::as_str) else {
            return false;
        };
        let operation = self.operations.get(name).map_or("execute", String::as_str);
        self.facts.allows(name, operation)
    }

    /// Filters `message` if it carries a tools list result; true if it does.
    ///
    /// Any result with a `tools` array is filtered, whatever its id: an upstream that echoed
    /// the id in another form (`"7"` for `7`) must not get an unfiltered list through.
    fn filter(&self, message: &mut Value) -> bool {
        if message.get("id") != Some(&self.id) {
            tracing::debug!("tools list result under another id: filtered all the same");
        }
        let Some(tools) = message
            .get_mut("result")
            .and_then(|r| r.get_mut("tools"))
            .and_then(Value::as_array_mut)
        else {
            return false;
        };
        tools.retain(|tool| self.keeps(tool));
        true
    }

    /// A whole JSON body, filtered.
    ///
    /// # Errors
    ///
    /// The body is not JSON: nothing can be filtered, so nothing may be passed on.
    pub fn filter_json(&self, body: &[u8]) -> Result<Bytes, serde_json::Error> {
        let mut message: Value = serde_json::from_slice(body)?;
        if self.filter(&mut message) {
            Ok(Bytes::from(serde_json::to_vec(&message)?))
        } else {
            Ok(Bytes::copy_from_slice(body))
        }
    }

    /// Takes the next chunk of an SSE body and returns the events it completed, filtered, in
    /// order (empty while an event is still incomplete).
    ///
    /// # Errors
    ///
    /// An incomplete event grew over the bound; the filter holds nothing after that.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Bytes>, EventTooLarge> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(end) = event_end(&self.buf, false) {
            let event = self.buf.split_to(end).freeze();
            out.push(self.filter_event(event));
        }
        if self.buf.len() > self.max_event_bytes {
            tracing::warn!("upstream event over the bound: stream ended");
            self.buf.clear();
            return Err(EventTooLarge);
        }
        Ok(out)
    }

    /// The end of an SSE body: what is left, filtered (an unterminated last event is filtered
    /// too, since a lenient client might use it).
    pub fn finish(&mut self) -> Vec<Bytes> {
        let mut out = Vec::new();
        while let Some(end) = event_end(&self.buf, true) {
            let event = self.buf.split_to(end).freeze();
            out.push(self.filter_event(event));
        }
        if !self.buf.is_empty() {
            let rest = self.buf.split().freeze();
            out.push(self.filter_event(rest));
        }
        out
    }

    /// True while part of an event is held.
    pub fn is_holding(&self) -> bool {
        !self.buf.is_empty()
    }

    /// One SSE event (its lines and the blank line that ends it), filtered if its data is the
    /// listing's result; any other event is handed back unchanged.
    pub fn filter_event(&self, event: Bytes) -> Bytes {
        let Ok(text) = std::str::from_utf8(&event) else {
            return event;
        };
        let lines: Vec<&str> = lines(text).collect();
        let data: Vec<&str> = lines.iter().filter_map(|l| data_value(l)).collect();
        if data.is_empty() {
            return event;
        }
        let Ok(mut message) = serde_json::from_str::<Value>(&data.join("\n")) else {
            return event;
        };
        if !self.filter(&mut message) {
            return event;
        }
        let mut out = String::with_capacity(text.len());
        let mut written = false;
        for line in lines {
            if data_value(line).is_some() {
                if !written {
                    out.push_str("data: ");
                    out.push_str(&message.to_string());
                    out.push('\n');
                    written = true;
                }
            } else if !line.is_empty() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out.push('\n');
        Bytes::from(out)
    }
}

/// The lines of an event, without their terminators (`\r\n`, `\n` or `\r`).
fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.split('\n')
        .flat_map(|l| l.strip_suffix('\r').unwrap_or(l).split('\r'))
}

/// The value of a `data` field line (`data`, `data:x`, `data: x`), if it is one.
fn data_value(line: &str) -> Option<&str> {
    if line == "data" {
        return Some("");
    }
    let value = line.strip_prefix("data:")?;
    Some(value.strip_prefix(' ').unwrap_or(value))
}

/// Where the first complete event in `buf` ends (after the blank line that ends it), if one is
/// complete. A `\r` at the end of the buffer may be the start of `\r\n`, so it waits for more
/// unless the stream has ended.
fn event_end(buf: &[u8], eof: bool) -> Option<usize> {
    let mut line_start = 0;
    let mut i = 0;
    while let Some(&b) = buf.get(i) {
        if b != b'\n' && b != b'\r' {
            i += 1;
            continue;
        }
        let mut end = i + 1;
        if b == b'\r' {
            match buf.get(i + 1) {
                Some(b'\n') => end = i + 2,
                Some(_) => {}
                None if eof => {}
                None => return None,
            }
        }
        if i == line_start {
            return Some(end);
        }
        line_start = end;
        i = end;
    }
    None
}

#[cfg(test)]
mod tests;
