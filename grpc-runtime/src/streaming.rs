//! [`Streaming`]: the incoming message stream of a call over an
//! `h2::RecvStream`, used by the server for requests and by the client for
//! responses. It decodes framed messages as they are consumed (releasing
//! HTTP/2 flow-control capacity as it pulls data), and on the client side
//! reads the trailers and turns `grpc-status` into the stream's end.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use futures_core::Stream;
use tokio::time::{Instant, Sleep};

use crate::codec::{decode_message, FrameDecoder};
use crate::metadata::MetadataMap;
use crate::request::CancelHandle;
use crate::status::Status;

/// Server side: told when the request stream's END_STREAM arrives (the call's context
/// implements it; this module does not know the server).
pub(crate) trait EndOfStream: Send + Sync {
    /// The client finished sending.
    fn end_of_stream(&self);
}

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

/// Request bytes that do not come from an h2 stream (gRPC-Web: an HTTP/1.1 body, or a
/// base64-decoded one). In a `Mutex` only to be `Sync`: reached through `&mut self`
/// (`get_mut`), never locked.
pub(crate) type ChunkSource =
    std::sync::Mutex<Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>>;

/// Where a stream of incoming messages reads its bytes: an h2 stream, or the chunks of a
/// body that is not one (gRPC-Web's decoded request body). The server's request body is
/// one of these (`server::CallBody`), so this module need not know the server.
pub(crate) enum RecvBody {
    /// The h2 stream itself (native gRPC).
    H2(h2::RecvStream),
    /// The (decoded) body chunks.
    #[cfg_attr(not(feature = "grpc-web"), allow(dead_code))]
    Chunks(ChunkSource),
}

struct Inner {
    body: Option<h2::RecvStream>,
    /// Server side, gRPC-Web: the request's chunks (then `body` is `None`).
    chunks: Option<ChunkSource>,
    decoder: FrameDecoder,
    role: Role,
    state: State,
    /// Status to yield once before ending (Trailers-Only responses).
    pending_error: Option<Status>,
    final_status: Option<Status>,
    trailers: Option<MetadataMap>,
    /// Server side: told when END_STREAM arrives (the call's context).
    eos_flag: Option<Arc<dyn EndOfStream>>,
    deadline: Option<Pin<Box<Sleep>>>,
    guard: Option<Box<dyn Send + Sync>>,
    /// Client side: sees (and may settle) the final status once; see `set_observer`.
    observer: Option<Observer>,
    /// The compressed flag of the message returned last.
    last_compressed: Option<bool>,
    /// Client side: resolves when the call's [`CancelHandle`] is cancelled.
    cancel_wait: Option<Pin<Box<dyn Future<Output = ()> + Send + Sync>>>,
    /// An error to yield once after the stream was ended locally ([`Streaming::cancel`]).
    yield_once: Option<Status>,
    /// Client side: the response head of a call that returned before it arrived (bidi
    /// calls); the stream adopts it when it resolves. In a `Mutex` only to be `Sync`:
    /// it is reached through `&mut self` (`get_mut`), never locked.
    head: Option<std::sync::Mutex<HeadFuture>>,
    /// Client side: the response headers' metadata once [`Inner::head`] resolved.
    headers: MetadataMap,
    /// Client side: the call failed before any response headers (Trailers-Only with an
    /// error, or no response at all): what [`Streaming::headers`] returns.
    head_status: Option<Status>,
}

/// The pending response head of a client call: the header metadata and the stream of the
/// response (Trailers-Only: already ended), or the call's failure before any response.
pub(crate) type HeadFuture =
    Pin<Box<dyn Future<Output = Result<(MetadataMap, Streaming<()>), Status>> + Send>>;

/// Final-status hook of a client call (interceptors, tracing, local send errors).
pub(crate) type Observer = Box<dyn FnOnce(Status) -> Status + Send + Sync>;

impl Inner {
    fn finish(&mut self, status: Status) -> Poll<Option<Result<Bytes, Status>>> {
        let status = match self.observer.take() {
            Some(observe) => observe(status),
            None => status,
        };
        self.state = State::Done;
        self.head = None;
        self.body = None;
        self.chunks = None;
        self.deadline = None;
        self.cancel_wait = None;
        // Dropping the guard (client: the request half) lets h2 reset the stream.
        self.guard = None;
        self.final_status = Some(status.clone());
        if status.is_ok() {
            Poll::Ready(None)
        } else {
            Poll::Ready(Some(Err(status)))
        }
    }

    /// The cancellation or deadline that ends a client call now, if one fired.
    fn poll_stop(&mut self, cx: &mut Context<'_>) -> Option<Status> {
        if let Some(c) = self.cancel_wait.as_mut() {
            if c.as_mut().poll(cx).is_ready() {
                return Some(Status::cancelled("call cancelled by the client"));
            }
        }
        if let Some(d) = self.deadline.as_mut() {
            if d.as_mut().poll(cx).is_ready() {
                return Some(Status::deadline_exceeded(
                    "deadline exceeded while receiving messages",
                ));
            }
        }
        None
    }

    /// Waits for the pending response head (if any) and adopts it: its headers, body
    /// and decoder; a Trailers-Only answer or a failure becomes the status to end with.
    fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(head) = self.head.as_mut() else {
            return Poll::Ready(());
        };
        let head = head
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let r = ready!(head.as_mut().poll(cx));
        self.head = None;
        match r {
            Err(status) => {
                self.head_status = Some(status.clone());
                self.pending_error = Some(status);
            }
            Ok((headers, response)) => {
                let mut r = response.inner;
                self.headers = headers;
                self.head_status = r.head_status.take();
                self.body = r.body.take();
                self.chunks = r.chunks.take();
                self.decoder = std::mem::replace(&mut r.decoder, FrameDecoder::new(0, None));
                self.trailers = r.trailers.take();
                // Trailers-Only: the stream ends with that status (OK included).
                self.pending_error = r.pending_error.take().or(r.final_status.take());
                // What the head kept alive (the request sender) lives as long as this.
                self.guard = match (self.guard.take(), r.guard.take()) {
                    (Some(a), Some(b)) => Some(Box::new((a, b))),
                    (a, b) => a.or(b),
                };
            }
        }
        Poll::Ready(())
    }

    fn poll_payload(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Status>>> {
        loop {
            match self.state {
                State::Done => return Poll::Ready(self.yield_once.take().map(Err)),
                State::Data => {
                    if let Some(err) = self.pending_error.take() {
                        return self.finish(err);
                    }
                    if let Some(stop) = self.poll_stop(cx) {
                        return self.finish(stop);
                    }
                    if self.head.is_some() {
                        ready!(self.poll_head(cx));
                        continue;
                    }
                    match self.decoder.next_frame() {
                        Err(e) => return self.finish(e),
                        Ok(Some((compressed, p))) => {
                            self.last_compressed = Some(compressed);
                            return Poll::Ready(Some(Ok(p)));
                        }
                        Ok(None) => {}
                    }
                    let Some(body) = self.body.as_mut() else {
                        if let Some(chunks) = self.chunks.as_mut() {
                            let chunks = chunks
                                .get_mut()
                                .unwrap_or_else(std::sync::PoisonError::into_inner);
                            match ready!(chunks.as_mut().poll_next(cx)) {
                                Some(Ok(data)) => self.decoder.push(data),
                                Some(Err(e)) if self.role == Role::Client => {
                                    // A client's chunk source ends with the trailers'
                                    // status (see `Streaming::from_chunks`).
                                    if e.is_ok() {
                                        if let Err(e) = self.decoder.finish() {
                                            return self.finish(e);
                                        }
                                    }
                                    self.trailers = Some(e.metadata().clone());
                                    return self.finish(e);
                                }
                                Some(Err(e)) => return self.finish(e),
                                None => {
                                    self.chunks = None;
                                    if let Some(ctx) = &self.eos_flag {
                                        ctx.end_of_stream();
                                    }
                                    if let Err(e) = self.decoder.finish() {
                                        return self.finish(e);
                                    }
                                    self.state = State::Trailers;
                                }
                            }
                            continue;
                        }
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
                            if let Some(ctx) = &self.eos_flag {
                                ctx.end_of_stream();
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
                        Ok(None) => {
                            Status::internal("server closed the stream without sending trailers")
                        }
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
                chunks: None,
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
                last_compressed: None,
                cancel_wait: None,
                yield_once: None,
                head: None,
                headers: MetadataMap::new(),
                head_status: None,
            },
            _t: PhantomData,
        }
    }

    /// Server side: the request messages of a call.
    pub(crate) fn new_request(body: RecvBody, decoder: FrameDecoder) -> Streaming<T> {
        match body {
            RecvBody::H2(body) => Streaming::build(Some(body), decoder, Role::Server),
            RecvBody::Chunks(chunks) => {
                let mut s = Streaming::build(None, decoder, Role::Server);
                s.inner.chunks = Some(chunks);
                s
            }
        }
    }

    /// Client side: the response messages of a call whose response headers
    /// (not Trailers-Only) were received. The stream ends with the status in
    /// the trailers.
    pub(crate) fn new_response(body: h2::RecvStream, decoder: FrameDecoder) -> Streaming<T> {
        Streaming::build(Some(body), decoder, Role::Client)
    }

    /// Client side: the response messages of a call whose body is not an h2 stream (a
    /// tower service's response body): `chunks` yields the body's data, then the
    /// trailers' status as an `Err` (OK included; its metadata are the trailers).
    #[cfg(feature = "tower")]
    pub(crate) fn from_chunks(chunks: ChunkSource, decoder: FrameDecoder) -> Streaming<T> {
        let mut s = Streaming::build(None, decoder, Role::Client);
        s.inner.chunks = Some(chunks);
        s
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
            s.inner.head_status = Some(status.clone());
            s.inner.pending_error = Some(status);
        }
        s
    }

    /// Client side: the response of a call that returns before its response head
    /// arrived; reading the stream (or [`Streaming::headers`]) waits for `head` first.
    pub(crate) fn pending_head(head: HeadFuture) -> Streaming<T> {
        let mut s = Streaming::build(None, FrameDecoder::new(0, None), Role::Client);
        s.inner.head = Some(std::sync::Mutex::new(head));
        s
    }

    /// The same stream, read as messages of type `U` (the type is only a marker).
    pub(crate) fn retype<U>(self) -> Streaming<U> {
        Streaming {
            inner: self.inner,
            _t: PhantomData,
        }
    }

    /// Client side: the metadata of the response headers, waiting for them if the call
    /// returned before they arrived (a bidi call returns as soon as its request is
    /// under way, so that a server which answers only after the first request cannot
    /// deadlock a caller that sends after the call returned). Empty for a Trailers-Only
    /// response; `Err` with the call's status if it failed before any response (the
    /// stream then yields the same error). Waiting is bounded by the call's deadline
    /// and ends if it is cancelled.
    ///
    /// ```no_run
    /// # async fn f(mut responses: grpc_runtime::Streaming<()>) -> Result<(), grpc_runtime::Status> {
    /// let headers = responses.headers().await?;
    /// println!("server said {:?}", headers.get("x-server-id"));
    /// # Ok(()) }
    /// ```
    pub async fn headers(&mut self) -> Result<&MetadataMap, Status> {
        let inner = &mut self.inner;
        std::future::poll_fn(|cx| {
            if inner.head.is_none() {
                return Poll::Ready(());
            }
            if let Some(stop) = inner.poll_stop(cx) {
                if let Poll::Ready(Some(Err(e))) = inner.finish(stop) {
                    inner.head_status = Some(e.clone());
                    inner.yield_once = Some(e);
                }
                return Poll::Ready(());
            }
            inner.poll_head(cx)
        })
        .await;
        match &inner.head_status {
            Some(e) if !e.is_ok() => Err(e.clone()),
            _ => Ok(&inner.headers),
        }
    }

    /// Client side: the response headers' metadata of a call that had them before it
    /// returned (what [`Streaming::headers`] returns at once).
    pub(crate) fn set_headers(&mut self, headers: MetadataMap) {
        self.inner.headers = headers;
    }

    /// Client side: fail with DEADLINE_EXCEEDED (and drop the stream, which
    /// resets it once the guard is gone too) when `deadline` passes.
    pub(crate) fn set_deadline(&mut self, deadline: Instant) {
        self.inner.deadline = Some(Box::pin(tokio::time::sleep_until(deadline)));
    }

    /// Keeps `guard` alive until the stream ends or is dropped (e.g. the
    /// request-sending half, so dropping the `Streaming` cancels the call).
    pub(crate) fn set_guard(&mut self, guard: Box<dyn Send + Sync>) {
        // A guard already set (the request sender a response head brought along) is
        // kept too: replacing it would abort the sender mid-request.
        self.inner.guard = Some(match self.inner.guard.take() {
            Some(existing) => Box::new((existing, guard)),
            None => guard,
        });
    }

    /// Client side: `observer` receives the final status when the stream ends and
    /// returns the status the caller sees (it may replace it, e.g. with a local send
    /// error that caused the reset). Not called if the stream is dropped unfinished.
    pub(crate) fn set_observer(&mut self, observer: Observer) {
        self.inner.observer = Some(observer);
    }

    /// Client side: end the stream with CANCELLED when `handle` is cancelled.
    pub(crate) fn set_cancel_handle(&mut self, handle: CancelHandle) {
        self.inner.cancel_wait = Some(Box::pin(async move { handle.cancelled().await }));
    }

    /// Server side: `flag` is told when END_STREAM is received.
    pub(crate) fn set_eos_flag(&mut self, flag: Arc<dyn EndOfStream>) {
        self.inner.eos_flag = Some(flag);
    }

    /// Trailing metadata, available once the stream has ended (client side).
    pub fn trailers(&self) -> Option<&MetadataMap> {
        self.inner.trailers.as_ref()
    }

    /// The final status once the stream has ended (OK on a clean end;
    /// CANCELLED after [`Streaming::cancel`]).
    pub fn status(&self) -> Option<&Status> {
        self.inner.final_status.as_ref()
    }

    /// Whether the message returned last (by `message()` or `next()`) arrived
    /// compressed: its frame's compressed flag was 1. `None` before the first
    /// message.
    pub fn last_message_compressed(&self) -> Option<bool> {
        self.inner.last_compressed
    }

    /// The encoding these messages arrive in, from the stream's `grpc-encoding`
    /// header: on the client the response's encoding, on the server the request's.
    /// `None` for identity (no header), for an encoding this runtime does not
    /// implement (a compressed message in it fails the call) and for a
    /// Trailers-Only response. Messages may still arrive uncompressed one by one:
    /// see [`Streaming::last_message_compressed`].
    pub fn encoding(&self) -> Option<crate::CompressionEncoding> {
        self.inner.decoder.encoding()
    }

    /// Client side: cancels the call now if it is still running. The stream is
    /// reset with RST_STREAM(CANCEL) (the request half stops too), interceptors
    /// see CANCELLED, [`Streaming::status`] is CANCELLED and the next
    /// `message()` returns `Err(CANCELLED)` once, then `Ok(None)`. No effect on
    /// a stream that already ended. (Dropping the `Streaming` also cancels, without
    /// a status to read.) On a server's request stream it only stops reading;
    /// the handler ends the call by returning.
    pub fn cancel(&mut self) {
        // Already over (or over with a status not yet yielded, e.g. Trailers-Only).
        if self.inner.state == State::Done || self.inner.pending_error.is_some() {
            return;
        }
        let status = Status::cancelled("call cancelled by the client");
        if let Poll::Ready(Some(Err(e))) = self.inner.finish(status) {
            self.inner.yield_once = Some(e);
        }
    }

    /// Polls for the next raw (decompressed) payload.
    pub(crate) fn poll_payload(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Status>>> {
        self.inner.poll_payload(cx)
    }
}

impl<T: prost::Message + Default> Streaming<T> {
    /// The next message: `Ok(Some(m))`, `Ok(None)` at a clean end, or the
    /// error status that ended the stream.
    pub async fn message(&mut self) -> Result<Option<T>, Status> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx))
            .await
            .transpose()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode_message;
    use crate::status::Code;
    use bytes::BytesMut;
    use std::time::Duration;

    #[derive(Clone, PartialEq, prost::Message)]
    struct M {
        #[prost(string, tag = "1")]
        s: String,
    }

    /// Raw h2 server answering one request with `chunks` and then `trailers`
    /// (None = END_STREAM on the last DATA frame, no trailers).
    async fn serve_once(
        chunks: Vec<Bytes>,
        trailers: Option<http::HeaderMap>,
        hold: Duration,
    ) -> std::net::SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (io, _) = l.accept().await.unwrap();
            let mut conn = h2::server::handshake(io).await.unwrap();
            let (_req, mut respond) = conn.accept().await.unwrap().unwrap();
            tokio::spawn(async move {
                let resp = http::Response::builder()
                    .header("content-type", "application/grpc")
                    .body(())
                    .unwrap();
                let mut send = respond.send_response(resp, false).unwrap();
                tokio::time::sleep(hold).await;
                let n = chunks.len();
                for (i, c) in chunks.into_iter().enumerate() {
                    send.send_data(c, trailers.is_none() && i + 1 == n).unwrap();
                }
                if let Some(t) = trailers {
                    send.send_trailers(t).unwrap();
                }
                // keep the stream alive until the client is done
                let _ = std::future::poll_fn(|cx| send.poll_reset(cx)).await;
            });
            while let Some(Ok(_)) = conn.accept().await {}
        });
        addr
    }

    async fn open(addr: std::net::SocketAddr) -> (h2::RecvStream, h2::SendStream<Bytes>) {
        let io = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (c, conn) = h2::client::handshake(io).await.unwrap();
        tokio::spawn(conn);
        let mut c = c.ready().await.unwrap();
        let req = http::Request::builder()
            .method("POST")
            .uri(format!("http://{addr}/a.B/C"))
            .body(())
            .unwrap();
        let (resp, send) = c.send_request(req, false).unwrap();
        (resp.await.unwrap().into_body(), send)
    }

    fn msgs(n: usize) -> Bytes {
        let mut b = BytesMut::new();
        for i in 0..n {
            encode_message(&M { s: format!("m{i}") }, None, usize::MAX, &mut b).unwrap();
        }
        b.freeze()
    }

    fn status_trailers(code: &str, msg: Option<&str>) -> http::HeaderMap {
        let mut t = http::HeaderMap::new();
        t.insert("grpc-status", code.parse().unwrap());
        if let Some(m) = msg {
            t.insert("grpc-message", m.parse().unwrap());
        }
        t.insert("x-t", "v".parse().unwrap());
        t
    }

    #[tokio::test]
    async fn client_role_ok_with_split_frames_and_trailers() {
        let all = msgs(3);
        let chunks = all.chunks(4).map(Bytes::copy_from_slice).collect();
        let addr = serve_once(chunks, Some(status_trailers("0", None)), Duration::ZERO).await;
        let (body, send) = open(addr).await;
        let mut s: Streaming<M> = Streaming::new_response(body, FrameDecoder::new(1 << 20, None));
        s.set_guard(Box::new(send));
        for i in 0..3 {
            assert_eq!(s.message().await.unwrap().unwrap().s, format!("m{i}"));
        }
        assert_eq!(s.message().await.unwrap(), None);
        assert_eq!(s.trailers().unwrap().get("x-t"), Some("v"));
        assert_eq!(s.status().unwrap().code(), Code::Ok);
        assert_eq!(s.message().await.unwrap(), None);
    }

    #[tokio::test]
    async fn client_role_error_status_after_messages() {
        let addr = serve_once(
            vec![msgs(1)],
            Some(status_trailers("9", Some("no%20way"))),
            Duration::ZERO,
        )
        .await;
        let (body, _send) = open(addr).await;
        let mut s: Streaming<M> = Streaming::new_response(body, FrameDecoder::new(1 << 20, None));
        assert_eq!(s.message().await.unwrap().unwrap().s, "m0");
        let e = s.message().await.unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition);
        assert_eq!(e.message(), "no way");
        assert_eq!(s.message().await.unwrap(), None);
    }

    #[tokio::test]
    async fn client_role_missing_trailers_is_internal() {
        let addr = serve_once(vec![msgs(1)], None, Duration::ZERO).await;
        let (body, _send) = open(addr).await;
        let mut s: Streaming<M> = Streaming::new_response(body, FrameDecoder::new(1 << 20, None));
        assert!(s.message().await.unwrap().is_some());
        assert_eq!(s.message().await.unwrap_err().code(), Code::Internal);
    }

    #[tokio::test]
    async fn client_role_limit_and_deadline() {
        let addr = serve_once(
            vec![msgs(1)],
            Some(status_trailers("0", None)),
            Duration::ZERO,
        )
        .await;
        let (body, _send) = open(addr).await;
        let mut s: Streaming<M> = Streaming::new_response(body, FrameDecoder::new(2, None));
        assert_eq!(
            s.message().await.unwrap_err().code(),
            Code::ResourceExhausted
        );

        let addr = serve_once(
            vec![msgs(1)],
            Some(status_trailers("0", None)),
            Duration::from_secs(5),
        )
        .await;
        let (body, _send) = open(addr).await;
        let mut s: Streaming<M> = Streaming::new_response(body, FrameDecoder::new(1 << 20, None));
        s.set_deadline(Instant::now() + Duration::from_millis(100));
        let t = std::time::Instant::now();
        assert_eq!(
            s.message().await.unwrap_err().code(),
            Code::DeadlineExceeded
        );
        assert!(t.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn from_status() {
        let mut s: Streaming<M> = Streaming::from_status(Status::unavailable("x"));
        assert_eq!(s.message().await.unwrap_err().code(), Code::Unavailable);
        assert_eq!(s.message().await.unwrap(), None);
        let mut s: Streaming<M> = Streaming::from_status(Status::new(Code::Ok, ""));
        assert_eq!(s.message().await.unwrap(), None);
    }

    /// A guard set while another is already there (a response head that brought the
    /// request sender along, then the call's own guard) keeps both alive until the stream
    /// is dropped: replacing the first aborted a request mid-body (38ab81d).
    #[tokio::test]
    async fn a_second_guard_keeps_the_first() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        struct Flag(Arc<AtomicUsize>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(AtomicUsize::new(0));
        let addr = serve_once(
            vec![msgs(1)],
            Some(status_trailers("0", None)),
            Duration::ZERO,
        )
        .await;
        let (body, _send) = open(addr).await;
        let mut s: Streaming<M> = Streaming::new_response(body, FrameDecoder::new(1 << 20, None));
        s.set_guard(Box::new(Flag(dropped.clone())));
        s.set_guard(Box::new(Flag(dropped.clone())));
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            0,
            "setting a guard dropped another"
        );
        assert_eq!(s.message().await.unwrap().unwrap().s, "m0");
        assert_eq!(dropped.load(Ordering::SeqCst), 0);
        drop(s);
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            2,
            "both guards end with the stream"
        );
    }
}
