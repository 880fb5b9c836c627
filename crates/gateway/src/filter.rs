//! `tools/list` results narrowed as they stream back: an SSE body adapter over vouch-tower's
//! sans-I/O [`ToolsListFilter`] (which the Python middleware drives too).

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use vouch_tower::tools_list::ToolsListFilter;

/// A boxed error of a body stream.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An SSE body whose `tools/list` result events are filtered as they pass; every event is
/// handed on as soon as it is complete.
pub(crate) struct SseFilter<B> {
    inner: B,
    filter: ToolsListFilter,
    ready: VecDeque<Bytes>,
    done: bool,
}

impl<B> SseFilter<B> {
    pub(crate) fn new(inner: B, filter: ToolsListFilter) -> Self {
        Self {
            inner,
            filter,
            ready: VecDeque::new(),
            done: false,
        }
    }
}

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
            if let Some(event) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(event))));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    this.done = true;
                    this.ready.extend(this.filter.finish());
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(Some(Ok(frame))) => {
                    // Trailers are hop-by-hop as far as the gateway is concerned: dropped.
                    if let Ok(data) = frame.into_data() {
                        match this.filter.push(&data) {
                            Ok(events) => this.ready.extend(events),
                            Err(e) => {
                                this.done = true;
                                return Poll::Ready(Some(Err(Box::new(e))));
                            }
                        }
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.ready.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
