//! The four call kinds on a [`Channel`]: request headers, request bodies (one message or
//! a duplex stream with flow control), response headers / Trailers-Only, messages via
//! [`Streaming`], trailers -> [`Status`], deadlines, cancellation, compression and limits.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use h2::client::ResponseFuture;
use h2::SendStream;
use http::{HeaderValue, Method};
use tokio::time::Instant;
use tracing::{debug, Instrument, Span};

use super::body;
use super::channel::Channel;
use super::connectivity::ConnectivityState;
use super::control::{Shared, Snapshot};
use super::credentials::{self, CallCredentials, RequestInfo, SecurityLevel};
use super::interceptor::{CallInfo, CallKind, ClientCallContext, Interceptors};
use super::lb::{OnDone, PickInfo, PickResult};
use super::replay::{Commit, Mode, SenderArgs};
use super::retry::{
    is_fatal, Pushback, RetryState, Throttle, PREVIOUS_ATTEMPTS_HEADER, PUSHBACK_HEADER,
};
use super::service_config::MethodConfig;
use super::subchannel::Subchannel;
use crate::codec::{encode_message, next_batch, BatchEnd, FrameDecoder};
use crate::compression::{
    encoding_from_headers, CompressionEncoding, EncodingSet, HeaderEncoding,
    GRPC_ACCEPT_ENCODING_NAME, GRPC_ENCODING_NAME,
};
use crate::metadata::MetadataMap;
use crate::request::{CancelHandle, MessageCompressionSlot, RemoteAddr, ResponseEncoding};
use crate::stats::{Attempt, ClientCallStats};
use crate::status::{Code, Status};
use crate::streaming::Streaming;
use crate::timeout::{current_deadline, encode_timeout, Deadline, GRPC_TIMEOUT_NAME};
use crate::transport::frame_tap::CallGuard;
use crate::transport::Address;
use crate::transport::Connection;
use crate::{Request, Response};

/// Per-call bookkeeping shared by the call future, the request sender task and the
/// response stream: reports the final status exactly once (interceptors, tracing).
pub(crate) struct CallState {
    /// What the interceptors' `finish_call` gets (`None` without interceptors).
    info: Mutex<Option<CallInfo>>,
    interceptors: Interceptors,
    pub(crate) span: Span,
    started: Instant,
    finished: AtomicBool,
    /// A failure noticed while sending (e.g. a message over the send limit): it is the
    /// call's real status, even though the peer only sees our RST_STREAM(CANCEL).
    send_error: Mutex<Option<Status>>,
    /// The call's deadline: a failure after it passed is DEADLINE_EXCEEDED.
    deadline: Option<Deadline>,
    /// The LB policy's callback for the final status (from the pick).
    on_done: Mutex<Option<OnDone>>,
    /// Counts the call as in flight for the channel's idle timeout.
    _active: ActiveCall,
    /// Counts a streaming-response call open on the connection of its committed attempt
    /// until the call finishes ([`CallState::keep_counted`]). (An attempt counts itself
    /// while it runs, [`AttemptConn`]; a single-response call's committed attempt lives
    /// until the call's end.)
    conn_call: Mutex<Option<CallGuard>>,
    /// Whether `conn_call` was set: a call that never sets it takes no lock for it.
    conn_call_set: AtomicBool,
    /// The channel's retry throttle, for calls under a retry or hedging policy.
    throttle: Option<Arc<Throttle>>,
    /// Stats (OpenTelemetry) of this call, when the channel has a plugin.
    pub(crate) stats: Option<Arc<ClientCallStats>>,
}

/// Marks a call in flight on its channel (idleness) from creation to drop.
pub(crate) struct ActiveCall(Arc<Shared>);

impl ActiveCall {
    pub(crate) fn new(shared: &Arc<Shared>) -> Self {
        shared.call_started();
        ActiveCall(Arc::clone(shared))
    }
}

impl Drop for ActiveCall {
    fn drop(&mut self) {
        self.0.call_ended();
    }
}

impl CallState {
    /// Counts `n` message bytes encoded by a streaming call's request sender (stats).
    pub(crate) fn add_stream_sent(&self, n: usize) {
        if let Some(s) = &self.stats {
            s.add_stream_sent(n);
        }
    }

    pub(crate) fn set_send_error(&self, status: Status) {
        if let Ok(mut slot) = self.send_error.lock() {
            slot.get_or_insert(status);
        }
    }

    /// Records the server address the call went to (for the interceptors' [`CallInfo`]).
    fn set_peer(&self, peer: Option<std::net::SocketAddr>) {
        if let Ok(mut info) = self.info.lock() {
            if let Some(info) = info.as_mut() {
                info.peer = peer;
            }
        }
    }

    /// The call's committed attempt opened its stream on the connection of `guard`: the
    /// call counts open there until it finishes, whenever its response stream is dropped.
    fn keep_counted(&self, guard: CallGuard) {
        let old = match self.conn_call.lock() {
            Ok(mut slot) => slot.replace(guard),
            Err(_) => None,
        };
        self.conn_call_set.store(true, Ordering::Release);
        drop(old);
    }

    /// Sets the pick's callback; one left from an earlier (transparently retried) pick
    /// hears that its attempt ended with `UNAVAILABLE`.
    fn set_on_done(&self, on_done: Option<OnDone>) {
        let old = match self.on_done.lock() {
            Ok(mut slot) => std::mem::replace(&mut *slot, on_done),
            Err(_) => None,
        };
        if let Some(f) = old {
            f(&Status::unavailable("attempt not processed; call retried"));
        }
    }

    /// Settles the final status: a local send failure or an expired deadline take
    /// precedence over the reset they caused. Runs the interceptors' `finish_call` once.
    pub(crate) fn finish(&self, status: Status) -> Status {
        let mut status = status;
        if !status.is_ok() {
            if let Some(e) = self.send_error.lock().ok().and_then(|s| s.clone()) {
                status = e;
            } else if status.code() == Code::Cancelled
                && self.deadline.is_some_and(|d| d.is_expired())
            {
                status = Status::deadline_exceeded("deadline exceeded");
            }
        }
        if !self.finished.swap(true, Ordering::SeqCst) {
            // The call no longer counts on its connection.
            if self.conn_call_set.load(Ordering::Acquire) {
                let conn_call = self.conn_call.lock().ok().and_then(|mut c| c.take());
                drop(conn_call);
            }
            if let (true, Some(t)) = (status.is_ok(), &self.throttle) {
                t.success();
            }
            let elapsed = self.started.elapsed();
            self.span
                .record("code", tracing::field::display(status.code()));
            if let Some(s) = &self.stats {
                s.finish(&status);
            }
            self.span.in_scope(|| {
                debug!(code = ?status.code(), message = status.message(), duration = ?elapsed, "call finished")
            });
            if let Some(info) = self.info.lock().ok().and_then(|mut i| i.take()) {
                self.interceptors.finish(&info, &status);
            }
            if let Some(f) = self.on_done.lock().ok().and_then(|mut f| f.take()) {
                f(&status);
            }
        }
        status
    }
}

impl Drop for CallState {
    fn drop(&mut self) {
        if !self.finished.load(Ordering::SeqCst) {
            self.finish(Status::cancelled(
                "call dropped by the client before it finished",
            ));
        }
    }
}

/// Aborts the request sender task when the call (or its response stream) is dropped, so
/// that h2 resets the stream with CANCEL.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The call's response-side guard: keeps the call state (final status reporting) and the
/// request sender alive as long as the response stream.
struct StreamGuard {
    state: Arc<CallState>,
    _sender: Option<AbortOnDrop>,
}

impl Drop for StreamGuard {
    /// A response stream dropped unfinished ends the call (CANCELLED) now, not when the
    /// last task holding the call state (e.g. an aborted sender) is gone.
    fn drop(&mut self) {
        if !self.state.finished.load(Ordering::SeqCst) {
            self.state.finish(Status::cancelled(
                "call dropped by the client before it finished",
            ));
        }
    }
}

/// Fires once when a streaming call's first attempt is under way (request headers handed
/// to h2, the sender task running), with the address of its connection.
type OpenedSignal = Mutex<Option<tokio::sync::oneshot::Sender<Option<std::net::SocketAddr>>>>;

fn fire_opened(signal: Option<&OpenedSignal>, conn: &Connection) {
    if let Some(tx) = signal.and_then(|s| s.lock().ok().and_then(|mut s| s.take())) {
        let _ = tx.send(remote_addr(conn));
    }
}

/// Everything decided before the stream is opened.
struct Prepared {
    state: Arc<CallState>,
    metadata: MetadataMap,
    deadline: Option<Deadline>,
    compression: Option<CompressionEncoding>,
    /// The request's [`CancelHandle`], if it asked for one.
    cancel: Option<CancelHandle>,
    /// Wait through TRANSIENT_FAILURE for a READY connection (bounded by the deadline).
    wait_for_ready: bool,
    /// The channel snapshot the call started with (first pick, method config).
    snapshot: Arc<Snapshot>,
    /// Message size limits after the method config.
    max_send: usize,
    max_recv: usize,
    /// The method config's retry or hedging policy (gRFC A6), if any.
    policy: CallPolicy,
    /// Call credentials: the channel's, then the call's own (empty: none).
    credentials: Vec<Arc<dyn CallCredentials>>,
}

/// How a single-request call's attempts are made.
enum CallPolicy {
    /// One attempt (plus the transparent retry of an unprocessed stream).
    Once,
    /// `retryPolicy`: another attempt after a retryable failure, with backoff.
    Retry(Arc<MethodConfig>),
    /// `hedgingPolicy`: further attempts after `hedgingDelay` while none has answered.
    Hedge(Arc<MethodConfig>),
}

/// The connection an attempt's stream opened on, with the attempt counted open there
/// (its [`CallGuard`]) as long as this lives: an attempt that fails, or loses to another
/// hedged attempt, stops counting when it is dropped; the committed attempt of a
/// streaming-response call hands its guard to the call ([`CallState::keep_counted`]).
pub(crate) struct AttemptConn {
    conn: Connection,
    call: CallGuard,
}

impl AttemptConn {
    /// Counts the attempt open on `conn`.
    fn new(conn: Connection) -> Self {
        let call = conn.call_started();
        AttemptConn { conn, call }
    }

    /// The connection, and the call counted open on it until `state` finishes.
    fn keep_counted(self, state: &CallState) -> Connection {
        state.keep_counted(self.call);
        self.conn
    }
}

impl std::ops::Deref for AttemptConn {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        &self.conn
    }
}

/// The call after its stream was opened.
struct Opened {
    sub: Subchannel,
    response: ResponseFuture,
    send: SendStream<Bytes>,
    conn: AttemptConn,
    encoding: Option<CompressionEncoding>,
    /// The stats attempt, when the call has stats.
    attempt: Option<Attempt>,
}

/// Maps a failed response head to a status, marking the connection dead on GOAWAY or I/O
/// errors so that new calls reconnect.
pub(crate) fn response_error(sub: &Subchannel, conn: &Connection, e: h2::Error) -> Status {
    if e.is_go_away() || e.is_io() {
        sub.drop_connection_if(conn.id(), "GOAWAY or I/O error on a call");
    }
    stream_status(conn, &e)
}

/// The status of a stream that failed on `conn`: a connection our keepalive closed says
/// so (grpc-go: "keepalive ping failed to receive ACK within timeout") rather than
/// "broken pipe".
fn stream_status(conn: &Connection, e: &h2::Error) -> Status {
    if matches!(
        conn.closed_reason(),
        Some(crate::transport::ConnectionClosed::KeepaliveTimeout)
    ) {
        return Status::unavailable(
            "keepalive timeout: the server did not answer a keepalive PING in time",
        );
    }
    Status::from_h2_error(e)
}

fn map_elapsed<T>(r: Result<Result<T, Status>, tokio::time::error::Elapsed>) -> Result<T, Status> {
    match r {
        Ok(r) => r,
        Err(_) => Err(Status::deadline_exceeded("deadline exceeded")),
    }
}

/// Runs `fut` bounded by `deadline` and by the call's cancel handle (CANCELLED).
pub(crate) async fn with_deadline<T>(
    deadline: Option<Deadline>,
    cancel: Option<&CancelHandle>,
    fut: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    let bounded = async {
        match deadline {
            None => fut.await,
            Some(d) => map_elapsed(tokio::time::timeout_at(d.instant(), fut).await),
        }
    };
    match cancel {
        None => bounded.await,
        Some(c) => {
            tokio::select! {
                r = bounded => r,
                _ = c.cancelled() => Err(Status::cancelled("call cancelled by the client")),
            }
        }
    }
}

/// A `:status 200` response whose content-type is not gRPC's (the check the server
/// applies to requests): the status synthesized from the HTTP status, as gRPC's
/// http-grpc-status-mapping.md asks (UNKNOWN for 200), naming the content-type.
pub(crate) fn non_grpc_response(parts: &http::response::Parts) -> Option<Status> {
    let ct = parts.headers.get(http::header::CONTENT_TYPE);
    if crate::metadata::is_grpc_content_type(ct) {
        return None;
    }
    let shown = ct.map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let code = Status::from_http_status(parts.status).code();
    Some(Status::new(
        code,
        format!("response has content-type {shown:?}, not application/grpc"),
    ))
}

/// An attempt that ended without committing: a Trailers-Only (or non-200) response with
/// a non-OK status, and the server's retry pushback.
fn uncommitted_failure(resp: &http::Response<h2::RecvStream>) -> Option<(Status, Pushback)> {
    if !resp.body().is_end_stream() && resp.status() == http::StatusCode::OK {
        return None;
    }
    let status = Status::from_header_map(resp.headers())
        .unwrap_or_else(|| Status::from_http_status(resp.status()));
    if status.is_ok() {
        return None;
    }
    Some((status, Pushback::parse(resp.headers().get(PUSHBACK_HEADER))))
}

/// How a single-request attempt failed without committing (`None`: it committed, its
/// result is the call's).
fn attempt_failure(
    r: &Result<(AttemptConn, http::Response<h2::RecvStream>), Status>,
) -> Option<(Status, Pushback)> {
    match r {
        Ok((_, resp)) => uncommitted_failure(resp),
        Err(s) => Some((s.clone(), Pushback::None)),
    }
}

/// Ends a stats attempt whose response head came (or failed): a committed response
/// ends with the call; a Trailers-Only failure or a stream error ends it now.
fn settle_attempt(
    attempt: Attempt,
    response: &Result<http::Response<h2::RecvStream>, h2::Error>,
    conn: &Connection,
) {
    match response {
        Ok(resp) => match uncommitted_failure(resp) {
            None => attempt.commit(),
            Some((status, _)) => attempt.end(&status),
        },
        Err(e) => attempt.end(&stream_status(conn, e)),
    }
}

/// A response head, classified: the call's status when it is over already (Trailers-Only
/// or an HTTP error), or the header metadata and the decoder for its messages.
pub(crate) enum Head {
    Done(Status),
    Messages(MetadataMap, FrameDecoder),
}

/// Classifies the response head `parts` (`end_stream`: the head ended the stream); `max`
/// is the receive limit for the messages. A non-gRPC content-type is UNKNOWN.
#[inline]
pub(crate) fn classify_head(
    parts: &http::response::Parts,
    end_stream: bool,
    max: usize,
) -> Result<Head, Status> {
    if end_stream || parts.status != http::StatusCode::OK {
        // Trailers-Only (or an HTTP error): the status is in these headers, or mapped
        // from the HTTP status when grpc-status is missing.
        let status = match Status::from_header_map(&parts.headers) {
            Some(s) => s,
            None => Status::from_http_status(parts.status),
        };
        return Ok(Head::Done(status));
    }
    if let Some(status) = non_grpc_response(parts) {
        return Err(status);
    }
    let headers = MetadataMap::from_headers(&parts.headers)
        .map_err(|e| Status::internal(format!("invalid response metadata: {e}")))?;
    let decoder = match encoding_from_headers(&parts.headers) {
        HeaderEncoding::Identity => FrameDecoder::new(max, None),
        HeaderEncoding::Known(e) => FrameDecoder::new(max, Some(e)),
        HeaderEncoding::Unknown(name) => {
            let mut d = FrameDecoder::new(max, None);
            d.set_unsupported_encoding(name);
            d
        }
    };
    Ok(Head::Messages(headers, decoder))
}

/// Reads the one message of a single-response call (unary or client-streaming) and the
/// final status from `stream`: the message and whether it came compressed. Build the
/// response with [`single_response`].
///
/// The stream is borrowed and the head's metadata stays with the caller: this future is
/// nested in every unary call's, and moving either into it copied them on each call
/// (docs/benchmarks.md).
pub(crate) async fn single_message<Resp>(
    stream: &mut Streaming<Resp>,
) -> Result<(Resp, Option<bool>), Status>
where
    Resp: prost::Message + Default + Send + 'static,
{
    let first = stream.message().await?;
    let compressed = stream.last_message_compressed();
    // Response cardinality violations are UNIMPLEMENTED (gRPC statuscodes.md).
    let Some(msg) = first else {
        return Err(Status::unimplemented(
            "cardinality violation: server ended a single-response call without a message",
        ));
    };
    match stream.message().await? {
        None => Ok((msg, compressed)),
        Some(_) => Err(Status::unimplemented(
            "cardinality violation: server sent more than one message on a single-response call",
        )),
    }
}

/// The response of a single-response call whose head carried `headers`, from
/// [`single_message`]'s result and the ended `stream` (its trailers and encoding).
#[inline]
pub(crate) fn single_response<Resp>(
    headers: MetadataMap,
    (msg, compressed): (Resp, Option<bool>),
    stream: &Streaming<Resp>,
) -> Response<Resp> {
    let trailers = stream.trailers().cloned().unwrap_or_default();
    let mut response = Response::from_parts(headers, msg, Some(trailers));
    if let Some(c) = compressed {
        response.set_message_compressed(c);
    }
    if let Some(e) = stream.encoding() {
        response.extensions_mut().insert(ResponseEncoding(e));
    }
    response
}

/// The TCP peer address of a connection (`None` for unix sockets).
pub(super) fn remote_addr(conn: &Connection) -> Option<std::net::SocketAddr> {
    match conn.address() {
        Address::Tcp(a) => Some(*a),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

impl Channel {
    /// Interceptors, deadline and call options: everything before touching the network.
    async fn prepare<T>(
        &self,
        path: &'static str,
        kind: CallKind,
        request: &mut Request<T>,
    ) -> Result<Prepared, Status> {
        // A call can complete without touching any tokio resource (fail-fast UNAVAILABLE
        // while the channel is in TRANSIENT_FAILURE, an expired deadline, an interceptor's
        // rejection), so a caller retrying in a loop would never yield: it would starve
        // its runtime thread and could not be aborted. Spend coop budget like tokio's own
        // resources do.
        tokio::task::coop::consume_budget().await;
        let mut p = self.prepare_inner(path, kind, request).await?;
        if request.compression_disabled() {
            // An explicit per-call "identity" overrides the channel default.
            p.compression = None;
        }
        if p.deadline.is_some_and(|d| d.is_expired()) {
            return Err(p.state.finish(Status::deadline_exceeded(
                "deadline exceeded before the call started",
            )));
        }
        Ok(p)
    }

    async fn prepare_inner<T>(
        &self,
        path: &'static str,
        kind: CallKind,
        request: &mut Request<T>,
    ) -> Result<Prepared, Status> {
        let cfg = &self.inner.config;
        let call_started = cfg.stats.as_ref().map(|_| std::time::Instant::now());
        // The call's own timeout, else the channel default; either may shorten, but never
        // extend, the inherited deadline of the server call being handled (as a grpc-go
        // context deadline cannot be extended by a child context).
        let own = request.timeout().or(cfg.timeout).map(Deadline::after);
        let inherited = Deadline::earliest(own, current_deadline());
        let cancel = request.extensions().get::<CancelHandle>().cloned();
        let snapshot = self.resolved_snapshot(inherited, cancel.as_ref()).await?;
        let method = snapshot.service_config.method_config(path);
        // The method config's timeout applies when shorter (gRFC A2).
        let deadline = Deadline::earliest(
            inherited,
            method.and_then(|m| m.timeout).map(Deadline::after),
        );
        let wait_for_ready = request
            .wait_for_ready()
            .or(method.and_then(|m| m.wait_for_ready))
            .unwrap_or(false);
        let max_send = method
            .and_then(|m| m.max_request_message_bytes)
            .map_or(cfg.max_send_message_size, |m| {
                m.min(cfg.max_send_message_size)
            });
        let max_recv = method
            .and_then(|m| m.max_response_message_bytes)
            .map_or(cfg.max_recv_message_size, |m| {
                m.min(cfg.max_recv_message_size)
            });
        let policy = match method {
            Some(m) if m.retry_policy.is_some() => CallPolicy::Retry(Arc::clone(m)),
            Some(m) if m.hedging_policy.is_some() => CallPolicy::Hedge(Arc::clone(m)),
            _ => CallPolicy::Once,
        };
        let throttle = match policy {
            CallPolicy::Once => None,
            _ => self.throttle(&snapshot.service_config),
        };
        let span = tracing::debug_span!(
            "grpc_client_call",
            method = path,
            target = %self.inner.target,
            peer = tracing::field::Empty,
            code = tracing::field::Empty
        );
        let mut metadata = std::mem::take(request.metadata_mut());
        let own_credentials = request.take_call_credentials();
        let credentials = match (cfg.call_credentials.is_empty(), own_credentials.is_empty()) {
            (true, _) => own_credentials,
            (false, true) => cfg.call_credentials.clone(),
            (false, false) => cfg
                .call_credentials
                .iter()
                .cloned()
                .chain(own_credentials)
                .collect(),
        };
        let mut deadline = deadline;
        let mut rejected = None;
        let mut info = None;
        if !cfg.interceptors.is_empty() {
            let timeout = deadline.map(|d| d.remaining());
            let mut ctx = ClientCallContext::new(path, kind, metadata, timeout);
            if let Err(status) = cfg
                .interceptors
                .start(&mut ctx)
                .instrument(span.clone())
                .await
            {
                rejected = Some(status);
            }
            if ctx.timeout != timeout {
                deadline = ctx.timeout.map(Deadline::after);
            }
            if rejected.is_none() {
                info = Some(ctx.take_info());
            }
            metadata = ctx.metadata;
        }
        let stats = match (&cfg.stats, call_started) {
            (Some(h), Some(t0)) => Some(ClientCallStats::new(
                h.call_started(path, &mut metadata),
                t0,
            )),
            _ => None,
        };
        let state = Arc::new(CallState {
            info: Mutex::new(info),
            interceptors: cfg.interceptors.clone(),
            span,
            started: Instant::now(),
            // a rejection was already reported to the interceptors that ran
            finished: AtomicBool::new(rejected.is_some()),
            send_error: Mutex::new(None),
            deadline,
            on_done: Mutex::new(None),
            _active: ActiveCall::new(&self.inner.shared),
            conn_call: Mutex::new(None),
            conn_call_set: AtomicBool::new(false),
            throttle,
            stats,
        });
        if let Some(status) = rejected {
            if let Some(s) = &state.stats {
                s.finish(&status);
            }
            return Err(status);
        }
        Ok(Prepared {
            state,
            metadata,
            deadline,
            compression: request.compression().or(cfg.send_compression),
            cancel,
            wait_for_ready,
            snapshot,
            max_send,
            max_recv,
            policy,
            credentials,
        })
    }

    /// The channel's retry throttle for the service config's `retryThrottling` (kept
    /// while its settings stay the same).
    fn throttle(&self, sc: &super::service_config::ServiceConfig) -> Option<Arc<Throttle>> {
        let cfg = sc.retry_throttling()?;
        let mut slot = self.inner.throttle.lock().ok()?;
        match &*slot {
            Some(t) if t.config() == cfg => Some(Arc::clone(t)),
            _ => {
                let t = Arc::new(Throttle::new(cfg));
                *slot = Some(Arc::clone(&t));
                Some(t)
            }
        }
    }

    /// The channel snapshot once the resolver has answered since the channel left IDLE,
    /// so the call sees the resolver's service config (grpc-go waits the same way). Asks
    /// an IDLE channel to connect; bounded by the call's deadline and cancellation.
    pub(crate) async fn resolved_snapshot(
        &self,
        deadline: Option<Deadline>,
        cancel: Option<&CancelHandle>,
    ) -> Result<Arc<Snapshot>, Status> {
        let shared = &self.inner.shared;
        let snap = shared.current();
        if snap.resolved {
            return Ok(snap);
        }
        let wait = async {
            let mut rx = shared.snapshot.subscribe();
            self.exit_idle();
            loop {
                let snap = Arc::clone(&rx.borrow_and_update());
                if snap.resolved || snap.state == ConnectivityState::Shutdown {
                    return Ok(snap);
                }
                if rx.changed().await.is_err() {
                    return Err(Status::unavailable("channel is shut down"));
                }
            }
        };
        with_deadline(deadline, cancel, wait).await
    }

    /// The transport security of `conn`: TLS channels and Unix domain sockets (local to
    /// the host) are private; plaintext TCP is not.
    pub(super) fn security_level(&self, conn: &Connection) -> SecurityLevel {
        if self.inner.scheme == http::uri::Scheme::HTTPS {
            return SecurityLevel::PrivacyAndIntegrity;
        }
        match conn.address() {
            Address::Tcp(_) => SecurityLevel::NoSecurity,
            #[allow(unreachable_patterns)]
            _ => SecurityLevel::PrivacyAndIntegrity,
        }
    }

    /// Picks the subchannel and connection for one attempt: reads the latest picker
    /// (never blocking), and waits for the next one when it says to queue, when it fails
    /// a wait-for-ready call, or when the picked subchannel lost its connection since.
    async fn pick(
        &self,
        path: &'static str,
        p: &Prepared,
    ) -> Result<(Subchannel, Connection), Status> {
        let (sub, conn, on_done) = self
            .pick_from(&p.snapshot, path, &p.metadata, p.wait_for_ready)
            .await?;
        p.state.set_on_done(on_done);
        Ok((sub, conn))
    }

    /// [`Channel::pick`] from `snapshot` on: the picked subchannel, its connection and
    /// the LB policy's callback for the call's final status.
    pub(crate) async fn pick_from(
        &self,
        snapshot: &Arc<Snapshot>,
        path: &str,
        metadata: &MetadataMap,
        wait_for_ready: bool,
    ) -> Result<(Subchannel, Connection, Option<OnDone>), Status> {
        let mut snap = Arc::clone(snapshot);
        let mut rx = None;
        loop {
            let info = PickInfo {
                method: path,
                metadata,
            };
            match snap.picker.pick(&info) {
                PickResult::Pick(pick) => {
                    if let Some(conn) = pick.subchannel.connection() {
                        return Ok((pick.subchannel, conn, pick.on_done));
                    }
                    // The subchannel lost its connection since the picker was made: the
                    // pick is discarded (its callback hears so) and the call waits for
                    // the picker that follows.
                    if let Some(f) = pick.on_done {
                        f(&Status::unavailable(
                            "pick discarded: the subchannel is no longer connected",
                        ));
                    }
                }
                PickResult::Queue => {}
                PickResult::Fail(status) if !wait_for_ready => return Err(status),
                PickResult::Fail(_) => {}
                PickResult::Drop(status) => return Err(status),
            }
            let rx = match &mut rx {
                // Subscribe, then pick again from the newest snapshot: none is missed.
                None => rx.insert(self.inner.shared.snapshot.subscribe()),
                Some(rx) => {
                    if rx.changed().await.is_err() {
                        return Err(Status::unavailable("channel is shut down"));
                    }
                    rx
                }
            };
            snap = Arc::clone(&rx.borrow_and_update());
        }
    }

    /// The request headers of one call.
    fn request_head(
        &self,
        path: &'static str,
        metadata: &MetadataMap,
        credentials: Option<&MetadataMap>,
        deadline: Option<Deadline>,
        encoding: Option<CompressionEncoding>,
        previous_attempts: u32,
    ) -> Result<http::Request<()>, Status> {
        let inner = &self.inner;
        let uri = http::Uri::builder()
            .scheme(inner.scheme.clone())
            .authority(inner.authority.as_str())
            .path_and_query(path)
            .build()
            .map_err(|e| Status::internal(format!("invalid method path {path:?}: {e}")))?;
        let mut req = http::Request::builder()
            .method(Method::POST)
            .uri(uri)
            .version(http::Version::HTTP_2)
            .body(())
            .map_err(|e| Status::internal(format!("building request: {e}")))?;
        let h = req.headers_mut();
        h.insert(http::header::TE, HeaderValue::from_static("trailers"));
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        if let Some(d) = deadline {
            if let Ok(v) = HeaderValue::from_str(&encode_timeout(d.remaining())) {
                h.insert(GRPC_TIMEOUT_NAME, v);
            }
        }
        if let Some(e) = encoding {
            h.insert(GRPC_ENCODING_NAME, HeaderValue::from_static(e.as_str()));
        }
        if let Some(v) = &inner.config.accept_header {
            h.insert(GRPC_ACCEPT_ENCODING_NAME, v.clone());
        }
        if previous_attempts > 0 {
            h.insert(
                PREVIOUS_ATTEMPTS_HEADER,
                HeaderValue::from(previous_attempts),
            );
        }
        match metadata.get("user-agent") {
            // A user-agent given as metadata goes in front of ours, in one header.
            Some(ua) => {
                let combined = format!(
                    "{ua} {}",
                    String::from_utf8_lossy(inner.config.user_agent.as_bytes())
                );
                let v = HeaderValue::try_from(combined)
                    .unwrap_or_else(|_| inner.config.user_agent.clone());
                h.insert(http::header::USER_AGENT, v);
                let mut md = metadata.clone();
                md.remove("user-agent");
                md.add_to_headers(h);
            }
            None => {
                h.insert(http::header::USER_AGENT, inner.config.user_agent.clone());
                metadata.add_to_headers(h);
            }
        }
        if let Some(md) = credentials {
            md.add_to_headers(h);
        }
        Ok(req)
    }

    /// Picks a connection, decides the request encoding and opens the stream. A stream
    /// that never reached the server (connection gone, GOAWAY, REFUSED_STREAM before
    /// any byte was sent) is retried once on a fresh connection.
    async fn open<M: prost::Message>(
        &self,
        path: &'static str,
        p: &Prepared,
        single: Option<&M>,
        previous_attempts: u32,
        fixed_encoding: Option<Option<CompressionEncoding>>,
    ) -> Result<Opened, Status> {
        // One stats attempt per call of `open` (gRFC A66: retries, hedges and transparent
        // retries are attempts); it ends here if the stream could not be opened.
        let Some(stats) = &p.state.stats else {
            return self
                .open_stream(path, p, single, previous_attempts, fixed_encoding, None)
                .await;
        };
        let attempt = stats.start_attempt(single.is_none());
        match self
            .open_stream(
                path,
                p,
                single,
                previous_attempts,
                fixed_encoding,
                Some(&attempt),
            )
            .await
        {
            Ok(mut opened) => {
                opened.attempt = Some(attempt);
                Ok(opened)
            }
            Err(status) => {
                attempt.end(&status);
                Err(status)
            }
        }
    }

    /// [`Channel::open`] without the stats attempt (`attempt` hears the peer and the
    /// size of a single request message).
    async fn open_stream<M: prost::Message>(
        &self,
        path: &'static str,
        p: &Prepared,
        single: Option<&M>,
        previous_attempts: u32,
        fixed_encoding: Option<Option<CompressionEncoding>>,
        stats: Option<&Attempt>,
    ) -> Result<Opened, Status> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (sub, conn) = self.pick(path, p).await.map_err(|s| {
                if s.code() == Code::Unavailable && !s.message().starts_with("connection to ") {
                    Status::unavailable(format!(
                        "connection to {} failed: {}",
                        self.inner.target,
                        s.message()
                    ))
                } else {
                    s
                }
            })?;
            p.state
                .span
                .record("peer", tracing::field::display(conn.address()));
            p.state.set_peer(remote_addr(&conn));
            if let Some(a) = stats {
                a.peer(remote_addr(&conn));
            }
            let encoding = fixed_encoding.unwrap_or_else(|| p.compression.filter(|e| {
                // Never compress in an encoding the server did not advertise on this
                // connection; before it said anything, only in the assumed ones.
                let server = conn
                    .peer_accept_encoding()
                    .map(|v| EncodingSet::parse_header(v.as_bytes()))
                    .unwrap_or(self.inner.config.assumed_server_accept);
                let ok = server.contains(*e);
                if !ok {
                    debug!(encoding = %e, "server has not advertised this encoding; sending uncompressed");
                }
                ok
            }));
            // Encode a single message before opening the stream, so a send-limit failure
            // never reaches the network.
            let frame = match single {
                Some(m) => Some(self.encode_one(m, encoding, p.max_send)?),
                None => None,
            };
            if let (Some(a), Some(f)) = (stats, &frame) {
                a.add_sent(f.len().saturating_sub(crate::codec::HEADER_LEN));
            }
            // Call credentials, per attempt: they see the connection picked for it.
            let credentials = if p.credentials.is_empty() {
                None
            } else {
                let info =
                    RequestInfo::new(path, &self.inner.authority, self.security_level(&conn));
                Some(credentials::request_metadata(&p.credentials, &info).await?)
            };
            let head = self.request_head(
                path,
                &p.metadata,
                credentials.as_ref(),
                p.deadline,
                encoding,
                previous_attempts,
            )?;
            let mut ready = match conn.send_request().ready().await {
                Ok(r) => r,
                Err(e) => {
                    // ready() only fails when the connection can open no more streams.
                    sub.drop_connection_if(
                        conn.id(),
                        "connection failed before the stream was opened",
                    );
                    if attempt < 2 {
                        continue;
                    }
                    return Err(Status::unavailable(format!("connection unusable: {e}")));
                }
            };
            // As grpc-go's checkForHeaderListSize: a head the server said it would refuse
            // fails this call (INTERNAL, grpc-go's code and words) and is never sent.
            if let Some(max) = ready.peer_max_header_list_size() {
                if crate::metadata::request_header_list_size(&head) > max as usize {
                    return Err(Status::internal(format!(
                        "header list size to send violates the maximum size ({max} bytes) set by server"
                    )));
                }
            }
            match ready.send_request(head, false) {
                Ok((response, mut send)) => {
                    let conn = AttemptConn::new(conn);
                    if let Some(frame) = frame {
                        if let Err(e) = body::send_data(&mut send, frame, true).await {
                            // The server may have answered (and reset) already: its status
                            // wins, read from the response.
                            debug!(error = %e, "sending the request message failed");
                        }
                    }
                    return Ok(Opened {
                        sub,
                        response,
                        send,
                        conn,
                        encoding,
                        attempt: None,
                    });
                }
                Err(e) => {
                    // Nothing reached the server: a connection-level failure is retried
                    // once on a fresh connection; anything else is our own error.
                    if e.is_go_away() || e.is_io() {
                        sub.drop_connection_if(conn.id(), "send_request failed");
                        if attempt < 2 {
                            continue;
                        }
                        return Err(Status::unavailable(format!("connection unusable: {e}")));
                    }
                    return Err(Status::internal(format!("could not start the call: {e}")));
                }
            }
        }
    }

    /// Awaits the response head; returns the header metadata and the message stream
    /// (already failed for Trailers-Only or a non-gRPC response).
    fn read_head<T>(
        &self,
        opened_conn: &Connection,
        resp: http::Response<h2::RecvStream>,
        max: usize,
        state: &CallState,
    ) -> Result<(MetadataMap, Streaming<T>), Status> {
        let (parts, body) = resp.into_parts();
        if let Some(v) = parts.headers.get(&GRPC_ACCEPT_ENCODING_NAME) {
            opened_conn.set_peer_accept_encoding(v.clone());
        }
        let (headers, mut decoder) = match classify_head(&parts, body.is_end_stream(), max)? {
            Head::Done(status) => return Ok((MetadataMap::new(), Streaming::from_status(status))),
            Head::Messages(headers, decoder) => (headers, decoder),
        };
        if let Some(bytes) = state.stats.as_ref().and_then(|s| s.committed_bytes()) {
            decoder.set_counter(bytes);
        }
        Ok((headers, Streaming::new_response(body, decoder)))
    }

    /// Sends a single-message request and awaits the committed response head, making as
    /// many attempts as the call's retry or hedging policy allows (gRFC A6). An attempt
    /// commits when response headers other than Trailers-Only arrive; a Trailers-Only
    /// failure (or a stream or connection failure) may be followed by another attempt.
    async fn send_single_request<M: prost::Message>(
        &self,
        path: &'static str,
        p: &Prepared,
        msg: &M,
    ) -> Result<(AttemptConn, http::Response<h2::RecvStream>), Status> {
        match &p.policy {
            CallPolicy::Once => self.single_attempt(path, p, msg, 0).await,
            CallPolicy::Retry(mc) => {
                let Some(policy) = &mc.retry_policy else {
                    return self.single_attempt(path, p, msg, 0).await;
                };
                let mut retry = RetryState::new(policy);
                loop {
                    let r = self.single_attempt(path, p, msg, retry.previous()).await;
                    let Some((status, pushback)) = attempt_failure(&r) else {
                        return r;
                    };
                    match retry.on_failure(&status, pushback, p.state.throttle.as_deref()) {
                        None => return r,
                        Some(delay) => {
                            // The failed attempt no longer counts on its connection.
                            drop(r);
                            debug!(code = ?status.code(), ?delay, attempt = retry.previous() + 1, "retrying");
                            tokio::time::sleep(delay).await;
                        }
                    }
                }
            }
            CallPolicy::Hedge(mc) => match &mc.hedging_policy {
                Some(h) => {
                    self.hedge(p, h, None, |n| self.single_attempt(path, p, msg, n))
                        .await
                        .1
                }
                None => self.single_attempt(path, p, msg, 0).await,
            },
        }
    }

    /// Hedging (gRFC A6): the first attempt at once, another after each `hedgingDelay`
    /// (at once after a non-fatal failure; after the server's pushback if it gave one)
    /// up to `maxAttempts`, and none once `stop` is set. The first attempt to commit wins
    /// and the others are cancelled (dropped: RST_STREAM(CANCEL)); a fatal status ends the
    /// call at once. `attempt(n)` makes attempt `n` (0-based); returns the index of the
    /// attempt whose result is the call's, with that result.
    async fn hedge<F, Fut>(
        &self,
        p: &Prepared,
        policy: &super::service_config::HedgingPolicy,
        stop: Option<&AtomicBool>,
        mut attempt: F,
    ) -> (
        u32,
        Result<(AttemptConn, http::Response<h2::RecvStream>), Status>,
    )
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<(AttemptConn, http::Response<h2::RecvStream>), Status>>,
    {
        use futures_util::stream::{FuturesUnordered, StreamExt};
        let mut inflight = FuturesUnordered::new();
        let mut started = 0u32;
        let mut more = true;
        let next = tokio::time::sleep(std::time::Duration::ZERO);
        tokio::pin!(next);
        loop {
            let may_start = more
                && started < policy.max_attempts
                && !stop.is_some_and(|s| s.load(Ordering::Acquire));
            tokio::select! {
                _ = &mut next, if may_start => {
                    let n = started;
                    let fut = attempt(n);
                    inflight.push(async move { (n, fut.await) });
                    started += 1;
                    next.as_mut().reset(Instant::now() + policy.hedging_delay);
                }
                Some((n, r)) = inflight.next(), if !inflight.is_empty() => {
                    let Some((status, pushback)) = attempt_failure(&r) else { return (n, r) };
                    if is_fatal(&policy.non_fatal_status_codes, status.code()) {
                        return (n, r);
                    }
                    let throttled = p.state.throttle.as_ref().is_some_and(|t| t.failure());
                    match pushback {
                        _ if throttled => more = false,
                        Pushback::Stop => more = false,
                        Pushback::After(d) => next.as_mut().reset(Instant::now() + d),
                        Pushback::None => next.as_mut().reset(Instant::now()),
                    }
                    let exhausted = !more || started >= policy.max_attempts || stop.is_some_and(|s| s.load(Ordering::Acquire));
                    if inflight.is_empty() && exhausted {
                        return (n, r);
                    }
                }
                else => return (started, Err(Status::unavailable("no hedged attempt left"))),
            }
        }
    }

    /// One attempt of a single-request call. A stream the server refused (REFUSED_STREAM:
    /// no application logic ran) is retried once, transparently.
    async fn single_attempt<M: prost::Message>(
        &self,
        path: &'static str,
        p: &Prepared,
        msg: &M,
        previous_attempts: u32,
    ) -> Result<(AttemptConn, http::Response<h2::RecvStream>), Status> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Opened {
                sub,
                response,
                send,
                conn,
                attempt: stats,
                ..
            } = self
                .open(path, p, Some(msg), previous_attempts, None)
                .await?;
            drop(send);
            let response = response.await;
            if let Some(a) = stats {
                settle_attempt(a, &response, &conn);
            }
            match response {
                Ok(resp) => return Ok((conn, resp)),
                Err(e) => {
                    // Refused (REFUSED_STREAM) or above a GOAWAY's last-stream-id: the
                    // server ran no application logic, so one transparent retry is safe.
                    let unprocessed = e.is_remote()
                        && (e.is_go_away() || e.reason() == Some(h2::Reason::REFUSED_STREAM));
                    if e.is_go_away() || e.is_io() {
                        sub.drop_connection_if(conn.id(), "GOAWAY or I/O error on a call");
                    }
                    if !(unprocessed && attempt < 2) {
                        return Err(stream_status(&conn, &e));
                    }
                    debug!(error = %e, "stream not processed by the server; retrying once");
                }
            }
        }
    }

    fn encode_one<M: prost::Message>(
        &self,
        msg: &M,
        encoding: Option<CompressionEncoding>,
        max_send: usize,
    ) -> Result<Bytes, Status> {
        let mut buf = BytesMut::new();
        encode_message(msg, encoding, max_send, &mut buf)?;
        Ok(buf.freeze())
    }

    /// Spawns the task streaming `messages` onto the request body, then half-closing.
    /// Each message is compressed with the call's encoding unless the request came from
    /// an [`crate::OutboundStream`] and the message said `compress(false)` (flag 0).
    fn spawn_sender<S, Req>(
        &self,
        state: &Arc<CallState>,
        mut send: SendStream<Bytes>,
        encoding: Option<CompressionEncoding>,
        request: Request<S>,
        max_send: usize,
    ) -> AbortOnDrop
    where
        S: Stream<Item = Req> + Send + 'static,
        Req: prost::Message + Send + 'static,
    {
        let slot = request
            .extensions()
            .get::<MessageCompressionSlot>()
            .map(|s| Arc::clone(&s.0));
        let messages = request.into_inner();
        let state = Arc::clone(state);
        let span = state.span.clone();
        AbortOnDrop(tokio::spawn(
            async move {
                let mut messages = std::pin::pin!(messages);
                let mut buf = BytesMut::new();
                loop {
                    // Messages the stream has ready at once share one write (see
                    // codec::next_batch); the last batch carries END_STREAM.
                    let batch = next_batch(&mut messages, &mut buf, |msg, buf| {
                        // The OutboundMessages stream published this message's choice as it
                        // yielded it.
                        let compress = slot
                            .as_ref()
                            .map_or(true, |s| s.swap(true, Ordering::SeqCst));
                        let enc = if compress { encoding } else { None };
                        let before = buf.len();
                        encode_message(&msg, enc, max_send, buf)?;
                        state.add_stream_sent(buf.len() - before - crate::codec::HEADER_LEN);
                        Ok(())
                    })
                    .await;
                    let ended = match batch {
                        Ok(end) => end == BatchEnd::StreamEnded,
                        Err(status) => {
                            debug!(status = %status, "request message not sent");
                            state.set_send_error(status);
                            send.send_reset(h2::Reason::CANCEL);
                            return;
                        }
                    };
                    if let Err(e) = body::send_data(&mut send, buf.split().freeze(), ended).await {
                        // Stream reset or finished by the server: the response carries the status.
                        debug!(error = %e, "request stream closed while sending");
                        return;
                    }
                    if ended {
                        return;
                    }
                }
            }
            .instrument(span),
        ))
    }

    /// Opens a streaming-request call and awaits its committed response head; the task
    /// sending the caller's messages is put in `sender` (it must outlive a bidi call's
    /// return). Under a retry policy the messages are buffered and replayed on each new
    /// attempt until one commits (gRFC A6); otherwise one attempt.
    async fn open_streaming<S, Req>(
        &self,
        path: &'static str,
        p: &Prepared,
        request: Request<S>,
        sender: &mut Option<AbortOnDrop>,
        opened: Option<&OpenedSignal>,
    ) -> Result<(AttemptConn, http::Response<h2::RecvStream>), Status>
    where
        S: Stream<Item = Req> + Send + 'static,
        Req: prost::Message + Send + 'static,
    {
        if let CallPolicy::Hedge(mc) = &p.policy {
            if let Some(h) = &mc.hedging_policy {
                return self
                    .hedge_streaming(path, p, h, request, sender, opened)
                    .await;
            }
        }
        let policy = match &p.policy {
            CallPolicy::Retry(mc) => mc.retry_policy.as_ref(),
            _ => None,
        };
        let Some(policy) = policy else {
            let Opened {
                sub,
                response,
                send,
                conn,
                encoding,
                attempt,
            } = self.open::<Req>(path, p, None, 0, None).await?;
            *sender = Some(self.spawn_sender(&p.state, send, encoding, request, p.max_send));
            fire_opened(opened, &conn);
            let response = response.await;
            if let Some(a) = attempt {
                settle_attempt(a, &response, &conn);
            }
            let resp = response.map_err(|e| response_error(&sub, &conn, e))?;
            return Ok((conn, resp));
        };
        let slot = request
            .extensions()
            .get::<MessageCompressionSlot>()
            .map(|s| Arc::clone(&s.0));
        let mut messages = Some((request.into_inner(), slot));
        let (streams_tx, streams_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut streams_rx = Some(streams_rx);
        let commit = Arc::new(Commit::default());
        let mut retry = RetryState::new(policy);
        // Every attempt uses the first one's encoding: the buffered frames are replayed as
        // they were encoded.
        let mut encoding = None;
        loop {
            let n = retry.previous();
            let (failure, last) = match self.open::<Req>(path, p, None, n, encoding).await {
                Err(status) => ((status, Pushback::None), None),
                Ok(Opened {
                    sub,
                    response,
                    send,
                    conn,
                    encoding: chosen,
                    attempt,
                }) => {
                    encoding.get_or_insert(chosen);
                    if let (Some((messages, compress_slot)), Some(rx)) =
                        (messages.take(), streams_rx.take())
                    {
                        let args = SenderArgs {
                            mode: Mode::Retry,
                            encoding: chosen,
                            compress_slot,
                            max_send: p.max_send,
                            limits: self.inner.retry_buffer_limits(),
                            commit: Arc::clone(&commit),
                        };
                        *sender = Some(AbortOnDrop(super::replay::spawn(
                            &p.state, rx, messages, args,
                        )));
                    }
                    let _ = streams_tx.send((n, send));
                    fire_opened(opened, &conn);
                    let response = response.await;
                    if let Some(a) = attempt {
                        settle_attempt(a, &response, &conn);
                    }
                    match response {
                        Ok(resp) => match uncommitted_failure(&resp) {
                            None => {
                                commit.commit();
                                return Ok((conn, resp));
                            }
                            Some(f) => (f, Some((conn, resp))),
                        },
                        Err(e) => ((response_error(&sub, &conn, e), Pushback::None), None),
                    }
                }
            };
            let (status, pushback) = failure;
            let delay = if commit.may_retry() {
                retry.on_failure(&status, pushback, p.state.throttle.as_deref())
            } else {
                None
            };
            match delay {
                Some(delay) => {
                    // The failed attempt no longer counts on its connection.
                    drop(last);
                    debug!(code = ?status.code(), ?delay, attempt = retry.previous() + 1, "retrying a streaming call");
                    tokio::time::sleep(delay).await;
                }
                None => {
                    commit.commit();
                    // The last attempt's Trailers-Only answer is the call's (as without retries).
                    return match last {
                        Some(r) => Ok(r),
                        None => Err(status),
                    };
                }
            }
        }
    }

    /// A streaming-request call under a hedging policy: every attempt gets the messages
    /// (the buffer replayed to late ones, then each new message to all), the first to
    /// commit keeps the stream (gRFC A6). The encoding is chosen once, before any
    /// connection is known (from the assumed server set), so all attempts share frames.
    async fn hedge_streaming<S, Req>(
        &self,
        path: &'static str,
        p: &Prepared,
        policy: &super::service_config::HedgingPolicy,
        request: Request<S>,
        sender: &mut Option<AbortOnDrop>,
        opened: Option<&OpenedSignal>,
    ) -> Result<(AttemptConn, http::Response<h2::RecvStream>), Status>
    where
        S: Stream<Item = Req> + Send + 'static,
        Req: prost::Message + Send + 'static,
    {
        let slot = request
            .extensions()
            .get::<MessageCompressionSlot>()
            .map(|s| Arc::clone(&s.0));
        let encoding = p
            .compression
            .filter(|e| self.inner.config.assumed_server_accept.contains(*e));
        let (streams_tx, streams_rx) = tokio::sync::mpsc::unbounded_channel();
        let commit = Arc::new(Commit::default());
        let args = SenderArgs {
            mode: Mode::Hedge,
            encoding,
            compress_slot: slot,
            max_send: p.max_send,
            limits: self.inner.retry_buffer_limits(),
            commit: Arc::clone(&commit),
        };
        *sender = Some(AbortOnDrop(super::replay::spawn(
            &p.state,
            streams_rx,
            request.into_inner(),
            args,
        )));
        let (n, r) = self
            .hedge(p, policy, Some(commit.buffer_full()), |n| {
                let streams_tx = streams_tx.clone();
                async move {
                    let Opened {
                        sub,
                        response,
                        send,
                        conn,
                        attempt,
                        ..
                    } = self.open::<Req>(path, p, None, n, Some(encoding)).await?;
                    let _ = streams_tx.send((n, send));
                    fire_opened(opened, &conn);
                    let response = response.await;
                    if let Some(a) = attempt {
                        settle_attempt(a, &response, &conn);
                    }
                    let resp = response.map_err(|e| response_error(&sub, &conn, e))?;
                    Ok((conn, resp))
                }
            })
            .await;
        // Only the chosen attempt's stream goes on.
        commit.commit_to(n);
        r
    }

    /// Reads exactly one message and the final status (unary and client-streaming).
    async fn read_single<Resp>(
        &self,
        opened_conn: &Connection,
        resp: http::Response<h2::RecvStream>,
        max: usize,
        state: &CallState,
    ) -> Result<Response<Resp>, Status>
    where
        Resp: prost::Message + Default + Send + 'static,
    {
        let (headers, mut stream) = self.read_head::<Resp>(opened_conn, resp, max, state)?;
        let msg = single_message(&mut stream).await?;
        let mut response = single_response(headers, msg, &stream);
        if let Some(a) = remote_addr(opened_conn) {
            response.extensions_mut().insert(RemoteAddr(a));
        }
        Ok(response)
    }

    /// A unary call: one request, one response.
    pub async fn unary<Req, Resp>(
        &self,
        path: &'static str,
        request: Request<Req>,
    ) -> Result<Response<Resp>, Status>
    where
        Req: prost::Message + Send + 'static,
        Resp: prost::Message + Default + Send + 'static,
    {
        let mut request = request;
        let p = self.prepare(path, CallKind::Unary, &mut request).await?;
        let state = Arc::clone(&p.state);
        let span = state.span.clone();
        let fut = async {
            let (conn, resp) = self
                .send_single_request(path, &p, request.get_ref())
                .await?;
            self.read_single(&conn, resp, p.max_recv, &p.state).await
        };
        let r = with_deadline(p.deadline, p.cancel.as_ref(), fut)
            .instrument(span)
            .await;
        match r {
            Ok(resp) => {
                state.finish(Status::new(Code::Ok, ""));
                Ok(resp)
            }
            Err(e) => Err(state.finish(e)),
        }
    }

    /// A server-streaming call: one request, a stream of responses.
    pub async fn server_streaming<Req, Resp>(
        &self,
        path: &'static str,
        request: Request<Req>,
    ) -> Result<Response<Streaming<Resp>>, Status>
    where
        Req: prost::Message + Send + 'static,
        Resp: prost::Message + Default + Send + 'static,
    {
        let mut request = request;
        let p = self
            .prepare(path, CallKind::ServerStreaming, &mut request)
            .await?;
        let state = Arc::clone(&p.state);
        let span = state.span.clone();
        let fut = async {
            let (conn, resp) = self
                .send_single_request(path, &p, request.get_ref())
                .await?;
            let conn = conn.keep_counted(&p.state);
            let (headers, stream) = self.read_head::<Resp>(&conn, resp, p.max_recv, &p.state)?;
            Ok((headers, stream, remote_addr(&conn)))
        };
        let r = with_deadline(p.deadline, p.cancel.as_ref(), fut)
            .instrument(span)
            .await;
        self.streaming_response(r, state, p.deadline, p.cancel.clone(), None)
    }

    /// A client-streaming call: a stream of requests, one response.
    ///
    /// Per-message options (e.g. `compress(false)`): pass a request made from an
    /// [`crate::OutboundStream`] (`IntoStreamingRequest::into_streaming_request`).
    pub async fn client_streaming<S, Req, Resp>(
        &self,
        path: &'static str,
        request: Request<S>,
    ) -> Result<Response<Resp>, Status>
    where
        S: Stream<Item = Req> + Send + 'static,
        Req: prost::Message + Send + 'static,
        Resp: prost::Message + Default + Send + 'static,
    {
        let mut request = request;
        let p = self
            .prepare(path, CallKind::ClientStreaming, &mut request)
            .await?;
        let state = Arc::clone(&p.state);
        let span = state.span.clone();
        let mut sender = None;
        let fut = async {
            let (conn, resp) = self
                .open_streaming(path, &p, request, &mut sender, None)
                .await?;
            self.read_single(&conn, resp, p.max_recv, &p.state).await
        };
        let r = with_deadline(p.deadline, p.cancel.as_ref(), fut)
            .instrument(span)
            .await;
        match r {
            Ok(resp) => {
                state.finish(Status::new(Code::Ok, ""));
                Ok(resp)
            }
            Err(e) => Err(state.finish(e)),
        }
    }

    /// A bidirectional-streaming call: requests are sent while responses are received.
    ///
    /// Returns as soon as the request is under way (its headers handed to the connection
    /// and the request stream being sent), without waiting for the response headers, as
    /// grpc-go's `NewStream` does: a server may answer only after it read a request, so a
    /// caller that starts sending after this returns must not wait for it.
    /// [`Response::metadata`] is therefore empty; [`Streaming::headers`] waits for the
    /// response headers and returns their metadata, and reading messages waits for them
    /// too. Under a retry or hedging policy the attempts after the first are made while
    /// the response stream is read (gRFC A6).
    ///
    /// Per-message options (e.g. `compress(false)`): pass a request made from an
    /// [`crate::OutboundStream`] (`IntoStreamingRequest::into_streaming_request`).
    pub async fn bidi_streaming<S, Req, Resp>(
        &self,
        path: &'static str,
        request: Request<S>,
    ) -> Result<Response<Streaming<Resp>>, Status>
    where
        S: Stream<Item = Req> + Send + 'static,
        Req: prost::Message + Send + 'static,
        Resp: prost::Message + Default + Send + 'static,
    {
        let mut request = request;
        let p = self
            .prepare(path, CallKind::BidiStreaming, &mut request)
            .await?;
        let state = Arc::clone(&p.state);
        let span = state.span.clone();
        let (deadline, cancel) = (p.deadline, p.cancel.clone());
        let (opened_tx, opened_rx) = tokio::sync::oneshot::channel();
        let channel = self.clone();
        let head = async move {
            let opened: OpenedSignal = Mutex::new(Some(opened_tx));
            let mut sender = None;
            let (conn, resp) = channel
                .open_streaming(path, &p, request, &mut sender, Some(&opened))
                .await?;
            let conn = conn.keep_counted(&p.state);
            let (headers, mut stream) =
                channel.read_head::<()>(&conn, resp, p.max_recv, &p.state)?;
            if let Some(s) = sender {
                stream.set_guard(Box::new(s));
            }
            Ok((headers, stream))
        }
        .instrument(span.clone());
        let mut head: crate::streaming::HeadFuture = Box::pin(head);
        // Until the request is under way: then the call returns, and the response head
        // is awaited by whoever reads the stream. A failure before that is the call's.
        let started = async {
            tokio::select! {
                biased;
                r = &mut head => Ok(Err(r)),
                addr = opened_rx => Ok(Ok(addr.ok().flatten())),
            }
        };
        let started = with_deadline(deadline, cancel.as_ref(), started)
            .instrument(span)
            .await;
        let remote = match started {
            Err(e) => return Err(state.finish(e)),
            Ok(Err(Err(e))) => return Err(state.finish(e)),
            Ok(Err(Ok((headers, stream)))) => {
                let r = Ok((headers, stream.retype::<Resp>(), None));
                return self.streaming_response(r, state, deadline, cancel, None);
            }
            Ok(Ok(addr)) => addr,
        };
        let r = Ok((MetadataMap::new(), Streaming::pending_head(head), remote));
        self.streaming_response(r, state, deadline, cancel, None)
    }

    fn streaming_response<Resp>(
        &self,
        r: Result<(MetadataMap, Streaming<Resp>, Option<std::net::SocketAddr>), Status>,
        state: Arc<CallState>,
        deadline: Option<Deadline>,
        cancel: Option<CancelHandle>,
        sender: Option<AbortOnDrop>,
    ) -> Result<Response<Streaming<Resp>>, Status> {
        match r {
            Err(e) => Err(state.finish(e)),
            Ok((headers, mut stream, remote)) => {
                if !headers.is_empty() {
                    stream.set_headers(headers.clone());
                }
                if let Some(d) = deadline {
                    stream.set_deadline(d.instant());
                }
                if let Some(c) = cancel {
                    stream.set_cancel_handle(c);
                }
                if let Some(done) = stream.status() {
                    // Trailers-Only OK: the stream is already over.
                    state.finish(done.clone());
                }
                let encoding = stream.encoding();
                let observer = Arc::clone(&state);
                stream.set_observer(Box::new(move |status| observer.finish(status)));
                stream.set_guard(Box::new(StreamGuard {
                    state,
                    _sender: sender,
                }));
                let mut response = Response::from_parts(headers, stream, None);
                if let Some(e) = encoding {
                    response.extensions_mut().insert(ResponseEncoding(e));
                }
                if let Some(a) = remote {
                    response.extensions_mut().insert(RemoteAddr(a));
                }
                Ok(response)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut v = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        v.extend_from_slice(&stream.to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    /// Reads frames from a raw HTTP/2 client, answering its PINGs, until it has opened
    /// `n` streams (HEADERS).
    async fn until_streams(tcp: &mut TcpStream, n: usize) {
        let mut buf = Vec::new();
        let mut seen = 0;
        let mut at = 24; // the client preface
        loop {
            while buf.len() >= at + 9 {
                let len = (usize::from(buf[at]) << 16)
                    | (usize::from(buf[at + 1]) << 8)
                    | usize::from(buf[at + 2]);
                if buf.len() < at + 9 + len {
                    break;
                }
                match (buf[at + 3], buf[at + 4]) {
                    (0x1, _) => seen += 1,
                    (0x6, 0) => {
                        let ack = frame(0x6, 1, 0, &buf[at + 9..at + 9 + len]);
                        tcp.write_all(&ack).await.unwrap();
                    }
                    _ => {}
                }
                at += 9 + len;
            }
            if seen >= n {
                return;
            }
            let mut chunk = [0u8; 4096];
            let k = tcp.read(&mut chunk).await.unwrap();
            assert!(k > 0, "client closed the connection");
            buf.extend_from_slice(&chunk[..k]);
        }
    }

    #[tokio::test]
    async fn a_stream_refused_by_goaway_ends_its_count_with_its_call() {
        tokio::time::timeout(Duration::from_secs(20), refused_by_goaway())
            .await
            .expect("test timed out");
    }

    async fn refused_by_goaway() {
        // A peer that takes two calls (streams 1 and 3), then sends GOAWAY with
        // last-stream-id 1: stream 3 ends without a frame of its own (no RST_STREAM, no
        // END_STREAM), its call fails, and only stream 1's call stays counted on the
        // connection. Further connections (the transparent retry) are closed at once.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (goaway_tx, goaway_rx) = tokio::sync::oneshot::channel::<()>();
        let peer = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            // SETTINGS (empty) and an ACK of the client's.
            tcp.write_all(&frame(0x4, 0, 0, &[])).await.unwrap();
            tcp.write_all(&frame(0x4, 1, 0, &[])).await.unwrap();
            until_streams(&mut tcp, 2).await;
            tcp.write_all(&frame(0x7, 0, 0, &[0, 0, 0, 1, 0, 0, 0, 0]))
                .await
                .unwrap();
            let _ = goaway_tx.send(());
            // Later connections are refused; this one stays open (stream 1 too).
            loop {
                let (other, _) = listener.accept().await.unwrap();
                drop(other);
            }
            #[allow(unreachable_code)]
            tcp
        });
        let ch = crate::Endpoint::new(format!("http://{addr}"))
            .connect_lazy()
            .unwrap();
        let first = spawn_unary(&ch, "/test.Svc/First");
        // The connection the calls use (picked while it is the channel's only one).
        let conn = only_connection(&ch, "/test.Svc/First").await;
        calls_become(&conn, 1, Duration::from_secs(5)).await;
        let second = ch.unary::<(), ()>("/test.Svc/Second", Request::new(()));
        let second = tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("the call above the GOAWAY's last-stream-id ends");
        assert_eq!(second.unwrap_err().code(), Code::Unavailable);
        assert!(goaway_rx.await.is_ok());
        assert_eq!(
            conn.active_calls(),
            1,
            "only the call on stream 1 is still open on the connection"
        );
        first.abort();
        assert_eq!(calls_become(&conn, 0, Duration::from_secs(5)).await, 0);
        peer.abort();
    }

    /// An HTTP/2 server on 127.0.0.1 whose streams the test answers by hand: each stream
    /// it accepts is handed over (request and response handle) in order.
    async fn manual_server() -> (
        std::net::SocketAddr,
        tokio::sync::mpsc::UnboundedReceiver<(
            http::Request<h2::RecvStream>,
            h2::server::SendResponse<Bytes>,
        )>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let Ok(mut conn) = h2::server::handshake(tcp).await else {
                        return;
                    };
                    while let Some(Ok(stream)) = conn.accept().await {
                        let _ = tx.send(stream);
                    }
                });
            }
        });
        (addr, rx)
    }

    /// Answers `respond` with one empty message and status OK.
    fn answer_ok(mut respond: h2::server::SendResponse<Bytes>) {
        let head = http::Response::builder()
            .header("content-type", "application/grpc")
            .body(())
            .unwrap();
        let mut send = respond.send_response(head, false).unwrap();
        send.send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), false)
            .unwrap();
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        send.send_trailers(trailers).unwrap();
    }

    /// The connection of a channel with one backend, once it is connected.
    async fn only_connection(ch: &Channel, path: &str) -> Connection {
        let snapshot = ch.resolved_snapshot(None, None).await.unwrap();
        let (_, conn, _) = ch
            .pick_from(&snapshot, path, &MetadataMap::new(), true)
            .await
            .unwrap();
        conn
    }

    /// Starts an empty unary call to `path` on `ch` in a task of its own.
    fn spawn_unary(
        ch: &Channel,
        path: &'static str,
    ) -> tokio::task::JoinHandle<Result<Response<()>, Status>> {
        let ch = ch.clone();
        tokio::spawn(async move { ch.unary::<(), ()>(path, Request::new(())).await })
    }

    /// Waits (up to `limit`) until `conn` counts `n` open calls; returns the count.
    async fn calls_become(conn: &Connection, n: usize, limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        while conn.active_calls() != n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        conn.active_calls()
    }

    #[tokio::test]
    async fn hedged_attempts_each_count_on_their_connection() {
        tokio::time::timeout(Duration::from_secs(20), hedged_attempts_counted())
            .await
            .expect("test timed out");
    }

    async fn hedged_attempts_counted() {
        // Three hedged attempts of one call run at once on the channel's one connection:
        // each counts there. The first to commit keeps counting until the call ends; the
        // others stop when they are cancelled.
        let (addr, mut streams) = manual_server().await;
        let ch = crate::Endpoint::new(format!("http://{addr}"))
            .default_service_config(
                r#"{"methodConfig": [{"name": [{"service": "test.Svc"}], "hedgingPolicy": {
                    "maxAttempts": 3, "hedgingDelay": "0.05s"}}]}"#,
            )
            .connect_lazy()
            .unwrap();
        let call = spawn_unary(&ch, "/test.Svc/Hedged");
        let mut attempts = Vec::new();
        for _ in 0..3 {
            attempts.push(streams.recv().await.unwrap());
        }
        let conn = only_connection(&ch, "/test.Svc/Hedged").await;
        assert_eq!(
            calls_become(&conn, 3, Duration::from_secs(5)).await,
            3,
            "every attempt in flight counts"
        );
        let (_request, first) = attempts.remove(0);
        answer_ok(first);
        call.await.unwrap().unwrap();
        assert_eq!(calls_become(&conn, 0, Duration::from_secs(5)).await, 0);
        drop(attempts);
    }

    #[tokio::test]
    async fn a_failed_retry_attempt_stops_counting_before_the_next_one() {
        tokio::time::timeout(Duration::from_secs(20), failed_attempt_uncounted())
            .await
            .expect("test timed out");
    }

    async fn failed_attempt_uncounted() {
        // The first attempt fails (Trailers-Only UNAVAILABLE) and the server asks for a
        // 3 s pushback: while the call waits, no attempt of it is open on the connection.
        let (addr, mut streams) = manual_server().await;
        let ch = crate::Endpoint::new(format!("http://{addr}"))
            .default_service_config(
                r#"{"methodConfig": [{"name": [{"service": "test.Svc"}], "retryPolicy": {
                    "maxAttempts": 2, "initialBackoff": "0.01s", "maxBackoff": "0.01s",
                    "backoffMultiplier": 1, "retryableStatusCodes": ["UNAVAILABLE"]}}]}"#,
            )
            .connect_lazy()
            .unwrap();
        let call = spawn_unary(&ch, "/test.Svc/Retried");
        let (_first_request, mut first) = streams.recv().await.unwrap();
        let conn = only_connection(&ch, "/test.Svc/Retried").await;
        assert_eq!(conn.active_calls(), 1);
        let failed = http::Response::builder()
            .header("content-type", "application/grpc")
            .header("grpc-status", "14")
            .header("grpc-retry-pushback-ms", "3000")
            .body(())
            .unwrap();
        first.send_response(failed, true).unwrap();
        assert_eq!(
            calls_become(&conn, 0, Duration::from_secs(2)).await,
            0,
            "the failed attempt still counts while the call waits for its retry"
        );
        let (_second_request, second) = streams.recv().await.unwrap();
        assert_eq!(conn.active_calls(), 1, "the retry counts");
        answer_ok(second);
        call.await.unwrap().unwrap();
        assert_eq!(calls_become(&conn, 0, Duration::from_secs(5)).await, 0);
    }
}
