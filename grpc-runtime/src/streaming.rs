//! [`Streaming`]: the incoming message stream of a call over an
//! `h2::RecvStream`, used by the server for requests and by the client for
//! responses. It decodes framed messages as they are consumed (releasing
//! HTTP/2 flow-control capacity as it pulls data), and on the client side
//! reads the trailers and turns `grpc-status` into the stream's end.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use futures_core::Stream;
use tokio::time::{Instant, Sleep};

use crate::codec::{decode_message, FrameDecoder};
use crate::metadata::MetadataMap;
use crate::status::Status;

/// Which side of the call reads the stream.
#[allow(dead_code)] // Client is constructed by client/
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Server reading requests: the stream ends at END_STREAM; request
    /// trailers are ignored.
    Server,
    /// Client reading responses: the end is decided by the trailers'
    /// `grpc-status`.
    Client,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Data,
    Trailers,
    Done,
}

struct Inner {
    body: Option<h2::RecvStream>,
    decoder: FrameDecoder,
    role: Role,
    state: State,
    /// Status to yield once before ending (Trailers-Only responses).
    pending_error: Option<Status>,
    final_status: Option<Status>,
    trailers: Option<MetadataMap>,
    eos_flag: Option<Arc<AtomicBool>>,
    deadline: Option<Pin<Box<Sleep>>>,
    guard: Option<Box<dyn Send + Sync>>,
    /// Client side: sees (and may settle) the final status once; see `set_observer`.
    observer: Option<Observer>,
}

/// Final-status hook of a client call (interceptors, tracing, local send errors).
pub(crate) type Observer = Box<dyn FnOnce(Status) -> Status + Send + Sync>;

impl Inner {
    fn finish(&mut self, status: Status) -> Poll<Option<Result<Bytes, Status>>> {
        let status = match self.observer.take() {
            Some(observe) => observe(status),
            None => status,
        };
        self.state = State::Done;
        self.body = None;
        self.deadline = None;
        // Dropping the guard (client: the request half) lets h2 reset the stream.
        self.guard = None;
        self.final_status = Some(status.clone());
        if status.is_ok() {
            Poll::Ready(None)
        } else {
            Poll::Ready(Some(Err(status)))
        }
    }

    fn poll_payload(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Status>>> {
        loop {
            match self.state {
                State::Done => return Poll::Ready(None),
                State::Data => {
                    if let Some(err) = self.pending_error.take() {
                        return self.finish(err);
                    }
                    if let Some(d) = self.deadline.as_mut() {
                        if d.as_mut().poll(cx).is_ready() {
                            return self.finish(Status::deadline_exceeded("deadline exceeded while receiving messages"));
                        }
                    }
                    match self.decoder.next_message() {
                        Err(e) => return self.finish(e),
                        Ok(Some(p)) => return Poll::Ready(Some(Ok(p))),
                        Ok(None) => {}
                    }
                    let Some(body) = self.body.as_mut() else {
                        self.state = State::Trailers;
                        continue;
                    };
                    match ready!(body.poll_data(cx)) {
                        Some(Ok(data)) => {
                            let n = data.len();
                            if let Err(e) = body.flow_control().release_capacity(n) {
                                tracing::debug!("release_capacity failed: {e}");
                            }
                            self.decoder.push(data);
                        }
                        Some(Err(e)) => return self.finish(Status::from_h2_error(&e)),
                        None => {
                            if let Some(f) = &self.eos_flag {
                                f.store(true, Ordering::SeqCst);
                            }
                            if let Err(e) = self.decoder.finish() {
                                return self.finish(e);
                            }
                            self.state = State::Trailers;
                        }
                    }
                }
                State::Trailers => {
                    if self.role == Role::Server {
                        self.state = State::Done;
                        self.final_status = Some(Status::new(crate::Code::Ok, ""));
                        return Poll::Ready(None);
                    }
                    let Some(body) = self.body.as_mut() else {
                        return self.finish(Status::internal("response ended without trailers"));
                    };
                    let status = match ready!(body.poll_trailers(cx)) {
                        Ok(Some(trailers)) => {
                            let st = Status::from_header_map(&trailers)
                                .unwrap_or_else(|| Status::unknown("trailers without grpc-status"));
                            self.trailers = Some(st.metadata().clone());
                            st
                        }
                        Ok(None) => Status::internal("server closed the stream without sending trailers"),
                        Err(e) => Status::from_h2_error(&e),
                    };
                    return self.finish(status);
                }
            }
        }
    }
}

/// A stream of incoming messages of type `T`.
///
/// Implements `Stream<Item = Result<T, Status>>`; `message().await` is the
/// same as `next()` with the `Option` and `Result` swapped. After an error
/// the stream is over.
pub struct Streaming<T> {
    inner: Inner,
    _t: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Streaming<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streaming")
            .field("role", &self.inner.role)
            .field("state", &self.inner.state)
            .field("buffered", &self.inner.decoder.buffered())
            .finish()
    }
}

#[allow(dead_code)] // constructors used by server/ and client/
impl<T> Streaming<T> {
    fn build(body: Option<h2::RecvStream>, decoder: FrameDecoder, role: Role) -> Streaming<T> {
        Streaming {
            inner: Inner {
                body,
                decoder,
                role,
                state: State::Data,
                pending_error: None,
                final_status: None,
                trailers: None,
                eos_flag: None,
                deadline: None,
                guard: None,
                observer: None,
            },
            _t: PhantomData,
        }
    }

    /// Server side: the request messages of a call.
    pub(crate) fn new_request(body: h2::RecvStream, decoder: FrameDecoder) -> Streaming<T> {
        Streaming::build(Some(body), decoder, Role::Server)
    }

    /// Client side: the response messages of a call whose response headers
    /// (not Trailers-Only) were received. The stream ends with the status in
    /// the trailers.
    pub(crate) fn new_response(body: h2::RecvStream, decoder: FrameDecoder) -> Streaming<T> {
        Streaming::build(Some(body), decoder, Role::Client)
    }

    /// Client side: a response that was Trailers-Only (or failed before any
    /// message): yields `Err(status)` once unless `status` is OK, then ends.
    pub(crate) fn from_status(status: Status) -> Streaming<T> {
        let mut s = Streaming::build(None, FrameDecoder::new(0, None), Role::Client);
        s.inner.trailers = Some(status.metadata().clone());
        if status.is_ok() {
            s.inner.state = State::Done;
            s.inner.final_status = Some(status);
        } else {
            s.inner.pending_error = Some(status);
        }
        s
    }

    /// Client side: fail with DEADLINE_EXCEEDED (and drop the stream, which
    /// resets it once the guard is gone too) when `deadline` passes.
    pub(crate) fn set_deadline(&mut self, deadline: Instant) {
        self.inner.deadline = Some(Box::pin(tokio::time::sleep_until(deadline)));
    }

    /// Keeps `guard` alive until the stream ends or is dropped (e.g. the
    /// request-sending half, so dropping the `Streaming` cancels the call).
    pub(crate) fn set_guard(&mut self, guard: Box<dyn Send + Sync>) {
        self.inner.guard = Some(guard);
    }

    /// Client side: `observer` receives the final status when the stream ends and
    /// returns the status the caller sees (it may replace it, e.g. with a local send
    /// error that caused the reset). Not called if the stream is dropped unfinished.
    pub(crate) fn set_observer(&mut self, observer: Observer) {
        self.inner.observer = Some(observer);
    }

    /// Sets a flag to true when END_STREAM is received.
    pub(crate) fn set_eos_flag(&mut self, flag: Arc<AtomicBool>) {
        self.inner.eos_flag = Some(flag);
    }

    /// Trailing metadata, available once the stream has ended (client side).
    pub fn trailers(&self) -> Option<&MetadataMap> {
        self.inner.trailers.as_ref()
    }

    /// The final status once the stream has ended (OK on a clean end).
    pub fn status(&self) -> Option<&Status> {
        self.inner.final_status.as_ref()
    }

    /// Polls for the next raw (decompressed) payload.
    pub(crate) fn poll_payload(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Status>>> {
        self.inner.poll_payload(cx)
    }
}

impl<T: prost::Message + Default> Streaming<T> {
    /// The next message: `Ok(Some(m))`, `Ok(None)` at a clean end, or the
    /// error status that ended the stream.
    pub async fn message(&mut self) -> Result<Option<T>, Status> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await.transpose()
    }
}

impl<T: prost::Message + Default> Stream for Streaming<T> {
    type Item = Result<T, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match ready!(this.inner.poll_payload(cx)) {
            None => Poll::Ready(None),
            Some(Err(e)) => Poll::Ready(Some(Err(e))),
            Some(Ok(payload)) => match decode_message::<T>(payload) {
                Ok(m) => Poll::Ready(Some(Ok(m))),
                Err(e) => match this.inner.finish(e) {
                    Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                    _ => Poll::Ready(None),
                },
            },
        }
    }
}

impl<T> Unpin for Streaming<T> {}
