//! `tools/list` results narrowed to the tools the token grants, in a JSON body or in an SSE
//! stream (each event that carries the result is rewritten; every other event passes as is).

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use serde_json::Value;
use vouch_token::Facts;

/// A boxed error of a body stream.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What decides whether a listed tool stays: the token's grant of the operation a call to it
/// performs (the same operation the capability layer asks for).
#[derive(Clone, Debug)]
pub(crate) struct Lister {
    /// The id of the `tools/list` request (for the logs: every tools list result in its
    /// response is filtered).
    pub(crate) id: Value,
    pub(crate) facts: Facts,
    pub(crate) operations: Arc<BTreeMap<String, String>>,
}

impl Lister {
    fn keeps(&self, tool: &Value) -> bool {
        let Some(name) = tool.get("name").and_then(Value::as_str) else {
            return false;
        };
        let operation = self.operations.get(name).map_or("execute", String::as_str);
        self.facts.allows(name, operation)
    }

    /// Filters `message` if it carries a tools list result; true if it does.
    ///
    /// Any result with a `tools` array in the response to a `tools/list` request is filtered,
    /// whatever its id: an upstream that echoed the id in another form (`"7"` for `7`) must
    /// not get an unfiltered list past the gateway.
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

    /// A JSON body, filtered.
    ///
    /// # Errors
    ///
    /// The body is not JSON (nothing can be filtered, so nothing is passed on).
    pub(crate) fn filter_json(&self, body: &[u8]) -> Result<Bytes, serde_json::Error> {
        let mut message: Value = serde_json::from_slice(body)?;
        if self.filter(&mut message) {
            Ok(Bytes::from(serde_json::to_vec(&message)?))
        } else {
            Ok(Bytes::copy_from_slice(body))
        }
    }

    /// One SSE event (its lines and the blank line that ends it), filtered if its data is the
    /// listing's result; any other event is handed back unchanged.
    fn filter_event(&self, event: Bytes) -> Bytes {
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

/// An SSE body whose `tools/list` result events are filtered as they pass; every event is
/// handed on as soon as it is complete.
pub(crate) struct SseFilter<B> {
    inner: B,
    lister: Lister,
    buf: BytesMut,
    max_event_bytes: usize,
    done: bool,
}

impl<B> SseFilter<B> {
    pub(crate) fn new(inner: B, lister: Lister, max_event_bytes: usize) -> Self {
        Self {
            inner,
            lister,
            buf: BytesMut::new(),
            max_event_bytes,
            done: false,
        }
    }
}

/// An event longer than the gateway's bound.
#[derive(Debug)]
struct EventTooLarge;

impl std::fmt::Display for EventTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("upstream sent an event larger than the bound")
    }
}

impl std::error::Error for EventTooLarge {}

impl<B> Body for SseFilter<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if let Some(end) = event_end(&this.buf, this.done) {
                let event = this.buf.split_to(end).freeze();
                return Poll::Ready(Some(Ok(Frame::data(this.lister.filter_event(event)))));
            }
            if this.done {
                if this.buf.is_empty() {
                    return Poll::Ready(None);
                }
                // An unterminated last event is filtered too: a lenient client might use it.
                let rest = this.buf.split().freeze();
                return Poll::Ready(Some(Ok(Frame::data(this.lister.filter_event(rest)))));
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => this.done = true,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(Some(Ok(frame))) => {
                    // Trailers are hop-by-hop as far as the gateway is concerned: dropped.
                    if let Ok(data) = frame.into_data() {
                        this.buf.extend_from_slice(&data);
                        if this.buf.len() > this.max_event_bytes {
                            tracing::warn!("upstream event over the bound: stream ended");
                            this.done = true;
                            this.buf.clear();
                            return Poll::Ready(Some(Err(Box::new(EventTooLarge))));
                        }
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.buf.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests;
