//! Response bodies: a single prebuilt buffer, or a planned sequence of SSE frames yielded one
//! body frame at a time (so hyper flushes each as it is produced). The stream's drop guard is
//! what tells a completed stream from one the client abandoned.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::state::Shared;

/// The body of every response the mock sends.
pub(crate) enum MockBody {
    Full(Option<Bytes>),
    Stream(EventStream),
}

impl MockBody {
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Self {
        Self::Full(Some(bytes.into()))
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            Self::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Self::Stream(stream) => stream.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Self::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Self::Full(None) => SizeHint::with_exact(0),
            Self::Stream(_) => SizeHint::default(),
        }
    }
}

/// One step of a planned stream.
enum Step {
    Data(Bytes),
    /// Wait `stream_interval` before the next step.
    Pause,
    /// Fail the body so hyper drops the connection mid-stream.
    Abort,
}

/// Builds the step list of a stream, applying `stream_interval` and `stream_fail_after` to the
/// content chunks only, so framing events (role chunk, `message_start`, `[DONE]`…) never pause.
pub(crate) struct StreamPlan {
    steps: Vec<Step>,
    content_sent: usize,
    pause: bool,
    fail_after: Option<usize>,
    aborted: bool,
}

impl StreamPlan {
    pub(crate) fn new(capacity: usize, interval: Duration, fail_after: Option<usize>) -> Self {
        Self {
            steps: Vec::with_capacity(capacity + capacity / 2),
            content_sent: 0,
            pause: !interval.is_zero(),
            fail_after,
            aborted: false,
        }
    }

    /// A framing event, sent as is.
    pub(crate) fn event(&mut self, frame: impl Into<Bytes>) {
        if !self.aborted {
            self.steps.push(Step::Data(frame.into()));
        }
    }

    /// A content chunk: paced by the interval and counted towards `stream_fail_after`.
    pub(crate) fn content(&mut self, frame: impl Into<Bytes>) {
        if self.abort_if_due() {
            return;
        }
        if self.pause && self.content_sent > 0 {
            self.steps.push(Step::Pause);
        }
        self.steps.push(Step::Data(frame.into()));
        self.content_sent += 1;
    }

    /// Marks the end of the content chunks; aborts here when `stream_fail_after` equals their count.
    pub(crate) fn content_done(&mut self) {
        self.abort_if_due();
    }

    fn abort_if_due(&mut self) -> bool {
        if !self.aborted && self.fail_after == Some(self.content_sent) {
            self.steps.push(Step::Abort);
            self.aborted = true;
        }
        self.aborted
    }

    pub(crate) fn into_stream(self, interval: Duration, shared: Arc<Shared>) -> EventStream {
        shared.streams.on_start();
        EventStream {
            steps: self.steps.into_iter(),
            interval,
            sleep: None,
            sleeping: false,
            outcome: Outcome::Running,
            shared,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Running,
    Completed,
    Aborted,
}

/// A stream body in flight. Dropping it while still `Running` means hyper gave up on it, which
/// only happens when the client went away (or the server shut down): that is a cancellation.
pub(crate) struct EventStream {
    steps: std::vec::IntoIter<Step>,
    interval: Duration,
    // Allocated on the first pause and then reset, so pacing costs one allocation per stream.
    sleep: Option<Pin<Box<Sleep>>>,
    sleeping: bool,
    outcome: Outcome,
    shared: Arc<Shared>,
}

impl EventStream {
    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.outcome == Outcome::Aborted {
            return Poll::Ready(Some(Err(std::io::Error::other(
                "mock-provider: stream_fail_after reached, aborting the stream",
            ))));
        }
        loop {
            if self.sleeping {
                if let Some(sleep) = self.sleep.as_mut() {
                    ready!(sleep.as_mut().poll(cx));
                }
                self.sleeping = false;
            }
            match self.steps.next() {
                Some(Step::Data(bytes)) => return Poll::Ready(Some(Ok(Frame::data(bytes)))),
                Some(Step::Pause) => {
                    let deadline = Instant::now() + self.interval;
                    match self.sleep.as_mut() {
                        Some(sleep) => sleep.as_mut().reset(deadline),
                        None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
                    }
                    self.sleeping = true;
                }
                Some(Step::Abort) => {
                    // hyper drops its write buffer when a body fails, so first yield once: on
                    // `Pending` it flushes the head and the chunks so far, which the client must
                    // see before the break.
                    self.outcome = Outcome::Aborted;
                    self.shared.streams.on_abort();
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                None => {
                    if self.outcome == Outcome::Running {
                        self.outcome = Outcome::Completed;
                        self.shared.streams.on_complete();
                    }
                    return Poll::Ready(None);
                }
            }
        }
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        if self.outcome == Outcome::Running {
            self.shared.streams.on_cancel();
        }
    }
}
