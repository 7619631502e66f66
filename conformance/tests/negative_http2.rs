//! grpc's negative HTTP/2 interop cases (doc/negative-http2-interop-test-descriptions.md,
//! server behaviour as in grpc's test/http2_test): a misbehaving server written directly on
//! `h2::server` (no gRPC layer; its sockets tapped so the tests see every frame), or on a
//! hand-rolled frame writer where h2 cannot misbehave the way a case needs (padded DATA,
//! several PINGs in flight), against OUR client: `grpc_runtime::Channel` and the generated
//! `TestServiceClient`. Every case runs on real TCP on 127.0.0.1 and is bounded by a timeout.
//!
//! Cases (grpc's names first, then our variants and controls):
//! - goaway (+ goaway_seen_before_second_call, goaway_after_second_stream_opened: the
//!   transparent retry of a stream above last-stream-id, goaway_then_close on h2::server);
//! - rst_after_header, rst_during_data, rst_after_data (+ rst_reason_mapping[_before_headers]
//!   for every RST_STREAM code, rst_status_message_names_the_reset);
//! - ping; max_streams (+ max_streams_control_unlimited, proving the tap sees overlap);
//! - data_frame_padding, no_df_padding_sanity_test with grpc's 5-byte frames (see their doc
//!   comment), data_frame_padding_counted_in_flow_control and its no-padding
//!   control with 256-byte frames and 64 KiB client windows.

#[path = "negative_http2/frames.rs"]
mod frames;

use std::collections::HashMap;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use conformance::pb::test_service_client::TestServiceClient;
use conformance::pb::{Payload, SimpleRequest, SimpleResponse};
use frames::{Frame, Tapped, Wire};
use grpc_runtime::{Channel, Code, Status};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const UNARY_PATH: &str = "/grpc.testing.TestService/UnaryCall";
/// The request every case sends (the descriptions' `response_size` and payload).
const RESPONSE_SIZE: usize = 314_159;
const REQUEST_SIZE: usize = 271_828;
/// Upper bound for any single test: nothing may hang.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);
/// A failing call must fail this fast (the server resets at once; no hang).
const FAIL_FAST: Duration = Duration::from_secs(10);

fn large_request() -> SimpleRequest {
    SimpleRequest {
        response_size: RESPONSE_SIZE as i32,
        payload: Some(Payload {
            r#type: 0,
            body: vec![0; REQUEST_SIZE],
        }),
        ..Default::default()
    }
}

fn client(addr: SocketAddr) -> TestServiceClient {
    let channel = Channel::builder(format!("http://{addr}"))
        .connect_timeout(Duration::from_secs(5))
        .connect_lazy()
        .unwrap();
    TestServiceClient::new(channel)
}

/// Runs `fut` under [`TEST_TIMEOUT`].
async fn bounded<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(TEST_TIMEOUT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: timed out after {TEST_TIMEOUT:?} (hang)"),
    }
}

/// One large_unary call; returns its status or the response payload length.
async fn large_unary(c: &TestServiceClient) -> Result<usize, Status> {
    let resp = c.unary_call(large_request()).await?;
    Ok(resp.into_inner().payload.map(|p| p.body.len()).unwrap_or(0))
}

/// A large_unary that must succeed with the full 314159-byte payload.
async fn large_unary_ok(c: &TestServiceClient, what: &str) {
    match large_unary(c).await {
        Ok(n) => assert_eq!(n, RESPONSE_SIZE, "{what}: response payload size"),
        Err(s) => panic!("{what}: call failed: {:?} {:?}", s.code(), s.message()),
    }
}

/// A length-prefixed (uncompressed) gRPC message.
fn grpc_frame(msg: &impl Message) -> Bytes {
    let body = msg.encode_to_vec();
    let mut b = BytesMut::with_capacity(5 + body.len());
    b.put_u8(0);
    b.put_u32(body.len() as u32);
    b.put_slice(&body);
    b.freeze()
}

/// Parses one uncompressed length-prefixed SimpleRequest that fills `buf` exactly.
fn parse_request(buf: &[u8]) -> Result<SimpleRequest, String> {
    if buf.len() < 5 {
        return Err(format!(
            "request body of {} bytes is shorter than a message header",
            buf.len()
        ));
    }
    if buf[0] != 0 {
        return Err(format!(
            "request message flag {} (expected 0, uncompressed)",
            buf[0]
        ));
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if buf.len() != 5 + len {
        return Err(format!(
            "request body {} bytes, message header says {}",
            buf.len(),
            5 + len
        ));
    }
    SimpleRequest::decode(&buf[5..]).map_err(|e| format!("decoding SimpleRequest: {e}"))
}

/// The response message for a request, framed.
fn response_for(req: &SimpleRequest) -> Bytes {
    let size = req.response_size.max(0) as usize;
    grpc_frame(&SimpleResponse {
        payload: Some(Payload {
            r#type: 0,
            body: vec![0; size],
        }),
        ..Default::default()
    })
}

// =======================================================================================
// The misbehaving server on h2::server.

/// How the h2 server treats a request.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// Headers, the message, trailers `grpc-status: 0`.
    Normal,
    /// Normal, then GOAWAY(NO_ERROR, last-stream-id = this stream) once the trailers are
    /// on the wire (test_goaway.py).
    GoAwayAfterCall,
    /// RST_STREAM at once, no response at all, the request not read.
    RstBeforeHeaders,
    /// Headers, then RST_STREAM(NO_ERROR) without reading the request (test_rst_after_header.py).
    RstAfterHeader,
    /// Headers, the first half of the message, RST_STREAM(NO_ERROR) (test_rst_during_data.py).
    RstDuringData,
    /// Headers, the whole message, RST_STREAM(NO_ERROR) instead of trailers (test_rst_after_data.py).
    RstAfterData,
}

/// A request the server decoded.
#[derive(Debug, Clone)]
struct Seen {
    conn: usize,
    stream: u32,
    path: String,
    payload_len: usize,
    response_size: i32,
}

/// What the h2 server observed.
#[derive(Default)]
struct ServerLog {
    /// One wire tap per accepted TCP connection, in accept order.
    conns: Mutex<Vec<Arc<Mutex<Wire>>>>,
    /// Requests decoded, in order.
    seen: Mutex<Vec<Seen>>,
    /// Handler errors (a malformed request, an h2 error on the server side).
    errors: Mutex<Vec<String>>,
    /// Handlers running now, and the most at once.
    active: AtomicUsize,
    max_active: AtomicUsize,
    /// The misbehaviour is applied to the first request only; later ones are Normal.
    misbehaved: AtomicBool,
    /// The RST_STREAM error code of the Rst modes (default 0, NO_ERROR, as grpc's server).
    rst_reason: AtomicU32,
}

impl ServerLog {
    fn conn_count(&self) -> usize {
        self.conns.lock().unwrap().len()
    }

    fn wire(&self, i: usize) -> Arc<Mutex<Wire>> {
        self.conns.lock().unwrap()[i].clone()
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn assert_no_errors(&self) {
        let e = self.errors.lock().unwrap();
        assert!(e.is_empty(), "server-side errors: {e:?}");
    }
}

struct H2Server {
    addr: SocketAddr,
    log: Arc<ServerLog>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for H2Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the misbehaving server. `max_streams` sets SETTINGS_MAX_CONCURRENT_STREAMS;
/// `delay` holds each response back so concurrent calls overlap.
async fn start_h2(mode: Mode, max_streams: Option<u32>, delay: Duration) -> H2Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(ServerLog::default());
    let log2 = log.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let _ = tcp.set_nodelay(true);
            let wire = Arc::new(Mutex::new(Wire::default()));
            let conn_index = {
                let mut conns = log2.conns.lock().unwrap();
                conns.push(wire.clone());
                conns.len() - 1
            };
            let log = log2.clone();
            tokio::spawn(async move {
                if let Err(e) =
                    serve_conn(tcp, wire, conn_index, mode, max_streams, delay, log.clone()).await
                {
                    log.errors
                        .lock()
                        .unwrap()
                        .push(format!("connection {conn_index}: {e}"));
                }
            });
        }
    });
    H2Server { addr, log, task }
}

/// A request stream as `h2::server::Connection::accept` yields it.
type Incoming = (
    http::Request<h2::RecvStream>,
    h2::server::SendResponse<Bytes>,
);

enum ConnEvent {
    Accept(Option<Result<Box<Incoming>, h2::Error>>),
    CallDone,
}

async fn serve_conn(
    tcp: TcpStream,
    wire: Arc<Mutex<Wire>>,
    conn_index: usize,
    mode: Mode,
    max_streams: Option<u32>,
    delay: Duration,
    log: Arc<ServerLog>,
) -> Result<(), String> {
    let mut builder = h2::server::Builder::new();
    if let Some(n) = max_streams {
        builder.max_concurrent_streams(n);
    }
    let mut conn = builder
        .handshake::<_, Bytes>(Tapped::new(tcp, wire.clone()))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<()>();
    let mut going_away = false;
    loop {
        let ev = poll_fn(|cx| {
            if !going_away {
                if let Poll::Ready(Some(())) = done_rx.poll_recv(cx) {
                    return Poll::Ready(ConnEvent::CallDone);
                }
            }
            conn.poll_accept(cx)
                .map(|r| ConnEvent::Accept(r.map(|r| r.map(Box::new))))
        })
        .await;
        match ev {
            ConnEvent::CallDone => {
                // The trailers are on the wire: GOAWAY(NO_ERROR) naming the stream just served.
                conn.abrupt_shutdown(h2::Reason::NO_ERROR);
                going_away = true;
            }
            ConnEvent::Accept(Some(Ok(incoming))) => {
                let (req, respond) = *incoming;
                let first = !log.misbehaved.swap(true, Ordering::SeqCst);
                let this_mode = match mode {
                    Mode::GoAwayAfterCall | Mode::Normal => mode,
                    m if first => m,
                    _ => Mode::Normal,
                };
                let (log, wire, done_tx) = (log.clone(), wire.clone(), done_tx.clone());
                tokio::spawn(async move {
                    let n = log.active.fetch_add(1, Ordering::SeqCst) + 1;
                    log.max_active.fetch_max(n, Ordering::SeqCst);
                    let r = handle(req, respond, this_mode, conn_index, delay, &wire, &log).await;
                    log.active.fetch_sub(1, Ordering::SeqCst);
                    match r {
                        Ok(()) if this_mode == Mode::GoAwayAfterCall => {
                            let _ = done_tx.send(());
                        }
                        Ok(()) => {}
                        Err(e) => log
                            .errors
                            .lock()
                            .unwrap()
                            .push(format!("connection {conn_index}: {e}")),
                    }
                });
            }
            ConnEvent::Accept(Some(Err(e))) => {
                // The client going away abruptly is fine; anything else is recorded.
                if e.is_io() || e.is_go_away() {
                    return Ok(());
                }
                return Err(format!("accept: {e}"));
            }
            ConnEvent::Accept(None) => return Ok(()),
        }
    }
}

async fn handle(
    req: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    mode: Mode,
    conn: usize,
    delay: Duration,
    wire: &Mutex<Wire>,
    log: &ServerLog,
) -> Result<(), String> {
    let stream = respond.stream_id().as_u32();
    let path = req.uri().path().to_string();
    let head = http::Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
        .header("grpc-accept-encoding", "identity")
        .body(())
        .unwrap();

    if mode == Mode::RstBeforeHeaders {
        respond.send_reset(h2::Reason::from(log.rst_reason.load(Ordering::SeqCst)));
        return Ok(());
    }
    if mode == Mode::RstAfterHeader {
        // Headers as soon as the request arrives, then the reset; the request is not read.
        let mut send = respond
            .send_response(head, false)
            .map_err(|e| format!("send_response: {e}"))?;
        frames::wait_for(wire, "response HEADERS on the wire", |w| {
            w.streams
                .get(&stream)
                .is_some_and(|s| s.server_headers >= 1)
        })
        .await;
        send.send_reset(h2::Reason::from(log.rst_reason.load(Ordering::SeqCst)));
        return Ok(());
    }

    // Read the whole request, returning flow-control credit as we go.
    let mut body = req.into_body();
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| format!("reading request: {e}"))?;
        let _ = body.flow_control().release_capacity(chunk.len());
        buf.extend_from_slice(&chunk);
    }
    let request = parse_request(&buf)?;
    log.seen.lock().unwrap().push(Seen {
        conn,
        stream,
        path,
        payload_len: request.payload.as_ref().map(|p| p.body.len()).unwrap_or(0),
        response_size: request.response_size,
    });
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let message = response_for(&request);
    let mut send = respond
        .send_response(head, false)
        .map_err(|e| format!("send_response: {e}"))?;
    match mode {
        Mode::RstDuringData | Mode::RstAfterData => {
            let n = if mode == Mode::RstDuringData {
                message.len() / 2
            } else {
                message.len()
            };
            send.send_data(message.slice(..n), false)
                .map_err(|e| format!("send_data: {e}"))?;
            // Only reset once those bytes are on the wire (h2 would drop queued DATA).
            frames::wait_for(wire, "response DATA on the wire", |w| {
                w.streams.get(&stream).is_some_and(|s| s.server_data >= n)
            })
            .await;
            send.send_reset(h2::Reason::from(log.rst_reason.load(Ordering::SeqCst)));
        }
        _ => {
            send.send_data(message, false)
                .map_err(|e| format!("send_data: {e}"))?;
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
            send.send_trailers(trailers)
                .map_err(|e| format!("send_trailers: {e}"))?;
            if mode == Mode::GoAwayAfterCall {
                frames::wait_for(wire, "trailers on the wire", |w| {
                    w.streams.get(&stream).is_some_and(|s| s.server_ended)
                })
                .await;
            }
        }
    }
    Ok(())
}

/// The call failed (not OK, not a hang) with INTERNAL, as an RST_STREAM(NO_ERROR) on an
/// unfinished response maps to (DESIGN.md section 5; grpc-go and C core do the same).
async fn assert_reset_fails(mode: Mode, case: &str) -> String {
    let server = start_h2(mode, None, Duration::ZERO).await;
    let c = client(server.addr);
    let t0 = Instant::now();
    let r = bounded(case, large_unary(&c)).await;
    let took = t0.elapsed();
    let status = match r {
        Ok(n) => panic!(
            "{case}: the call was reported OK ({n} payload bytes) although the stream was reset"
        ),
        Err(s) => s,
    };
    eprintln!(
        "{case}: {:?} {:?} after {took:?}",
        status.code(),
        status.message()
    );
    assert!(took < FAIL_FAST, "{case}: took {took:?} to fail");
    assert_eq!(
        status.code(),
        Code::Internal,
        "{case}: wrong code; message {:?}",
        status.message()
    );
    assert!(
        !status.message().is_empty(),
        "{case}: the status carries a message"
    );
    let message = status.message().to_string();

    // What went over the wire is what the case describes. The tap parses what the server
    // wrote just after the write returns, which can be after our client saw it: wait for it.
    let wire = server.log.wire(0);
    frames::wait_for(&wire, "the RST_STREAM in the tap", |w| {
        w.streams.get(&1).is_some_and(|s| s.server_rst.is_some())
    })
    .await;
    {
        let w = wire.lock().unwrap();
        let s = w.streams.get(&1).expect("stream 1 on the wire");
        assert_eq!(
            s.server_rst,
            Some(0),
            "{case}: the server reset stream 1 with NO_ERROR"
        );
        assert!(!s.server_ended, "{case}: no END_STREAM from the server");
        assert_eq!(
            s.server_headers, 1,
            "{case}: one HEADERS frame (no trailers)"
        );
        let message_len = 5 + SimpleResponse {
            payload: Some(Payload {
                r#type: 0,
                body: vec![0; RESPONSE_SIZE],
            }),
            ..Default::default()
        }
        .encoded_len();
        let expect_data = match mode {
            Mode::RstAfterHeader => 0,
            Mode::RstDuringData => message_len / 2,
            _ => message_len,
        };
        assert_eq!(
            s.server_data, expect_data,
            "{case}: response DATA bytes before the reset"
        );
    }

    // A stream error leaves the connection usable: the next call succeeds on it.
    bounded(
        case,
        large_unary_ok(&c, &format!("{case}: call after the reset")),
    )
    .await;
    assert_eq!(
        server.log.conn_count(),
        1,
        "{case}: the reset stream must not cost the connection"
    );
    server.log.assert_no_errors();
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rst_after_header() {
    assert_reset_fails(Mode::RstAfterHeader, "rst_after_header").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rst_during_data() {
    assert_reset_fails(Mode::RstDuringData, "rst_during_data").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rst_after_data() {
    assert_reset_fails(Mode::RstAfterData, "rst_after_data").await;
}

/// RST_STREAM error codes map to status codes as DESIGN.md section 5 (and grpc-go) say,
/// for a reset after the response headers (like rst_after_header) and before any response.
/// A REFUSED_STREAM before any response means the server did no processing: that call is
/// retried transparently and succeeds; after response headers it is UNAVAILABLE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rst_reason_mapping() {
    rst_reason_table(Mode::RstAfterHeader, Some(Code::Unavailable)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rst_reason_mapping_before_headers() {
    rst_reason_table(Mode::RstBeforeHeaders, None).await;
}

/// Runs large_unary against a server resetting the first stream with every HTTP/2 error
/// code in turn; `refused` is the outcome expected for REFUSED_STREAM (None: OK after a
/// transparent retry).
async fn rst_reason_table(mode: Mode, refused: Option<Code>) {
    use h2::Reason as R;
    let table = [
        (R::NO_ERROR, Some(Code::Internal)),
        (R::PROTOCOL_ERROR, Some(Code::Internal)),
        (R::INTERNAL_ERROR, Some(Code::Internal)),
        (R::FLOW_CONTROL_ERROR, Some(Code::Internal)),
        (R::FRAME_SIZE_ERROR, Some(Code::Internal)),
        (R::COMPRESSION_ERROR, Some(Code::Internal)),
        (R::CONNECT_ERROR, Some(Code::Internal)),
        (R::REFUSED_STREAM, refused),
        (R::CANCEL, Some(Code::Cancelled)),
        (R::ENHANCE_YOUR_CALM, Some(Code::ResourceExhausted)),
        (R::INADEQUATE_SECURITY, Some(Code::PermissionDenied)),
    ];
    let mut wrong = Vec::new();
    for (reason, want) in table {
        let server = start_h2(mode, None, Duration::ZERO).await;
        server
            .log
            .rst_reason
            .store(u32::from(reason), Ordering::SeqCst);
        let c = client(server.addr);
        let got = bounded("rst_reason_mapping", large_unary(&c)).await;
        let ok = match (&got, want) {
            (Ok(n), None) => *n == RESPONSE_SIZE && server.log.seen().len() == 1,
            (Err(s), Some(code)) => s.code() == code,
            _ => false,
        };
        if !ok {
            wrong.push(format!(
                "{reason:?}: want {want:?} (None = OK after a retry), got {:?}",
                got.map_err(|s| (s.code(), s.message().to_string()))
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "RST_STREAM mapping ({mode:?}):\n{}",
        wrong.join("\n")
    );
}

/// The status message of a reset call says what happened: the stream was reset, and with
/// which HTTP/2 error code by name (grpc-go: "stream terminated by RST_STREAM with error
/// code: NO_ERROR").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rst_status_message_names_the_reset() {
    for (mode, case) in [
        (Mode::RstAfterHeader, "rst_after_header"),
        (Mode::RstDuringData, "rst_during_data"),
        (Mode::RstAfterData, "rst_after_data"),
    ] {
        let message = assert_reset_fails(mode, case).await;
        let lower = message.to_ascii_lowercase();
        assert!(
            (lower.contains("reset") || lower.contains("rst_stream"))
                && message.contains("NO_ERROR"),
            "{case}: the message should say the stream was reset with NO_ERROR: {message:?}"
        );
    }
}

/// goaway as grpc's test_goaway.py does it (frame-level server): after the first call's
/// trailers, GOAWAY(NO_ERROR, last-stream-id 1); the connection stays open and streams
/// above 1 are ignored. Two sequential large_unary calls both succeed, each on its own TCP
/// connection as stream 1. `pause` is the gap between the calls: zero races the GOAWAY (the
/// second stream may go out on the old connection; the GOAWAY then tells the client it was
/// never processed and it must be retried transparently on a new connection), a pause lets
/// the client see the GOAWAY first.
async fn goaway_case(pause: Duration, goaway: GoAway) {
    let (addr, log, task) = start_raw(RawMode {
        pings: false,
        pad: None,
        chunk: 16_384,
        goaway,
    })
    .await;
    let c = client(addr);
    bounded("goaway", async {
        large_unary_ok(&c, "goaway: first call").await;
        tokio::time::sleep(pause).await;
        large_unary_ok(&c, "goaway: second call").await;
    })
    .await;
    let l = log.lock().unwrap();
    eprintln!(
        "goaway (pause {pause:?}): {:?}, {} stream(s) ignored after GOAWAY",
        l.answered, l.ignored_streams
    );
    assert!(l.error.is_none(), "goaway: server error {:?}", l.error);
    assert_eq!(l.conns, 2, "goaway: TCP connections the server accepted");
    assert_eq!(
        l.answered,
        vec![(0, 1), (1, 1)],
        "goaway: (connection, stream) of the calls answered"
    );
    if goaway == GoAway::AfterTrailers {
        assert_eq!(
            l.goaways,
            vec![(0, 1), (1, 1)],
            "goaway: GOAWAY(last-stream-id 1) on each connection"
        );
    } else {
        // The second call first went out as stream 3 on the first connection.
        assert_eq!(
            l.goaways,
            vec![(0, 1)],
            "goaway: GOAWAY(last-stream-id 1) when stream 3 opened"
        );
        assert_eq!(
            l.ignored_streams, 1,
            "goaway: stream 3 opened above last-stream-id"
        );
    }
    drop(l);
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goaway() {
    goaway_case(Duration::ZERO, GoAway::AfterTrailers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goaway_seen_before_second_call() {
    goaway_case(Duration::from_millis(200), GoAway::AfterTrailers).await;
}

/// The second call is sent on the old connection before any GOAWAY; the GOAWAY then says
/// its stream (3) was never processed: it is retried transparently on a new connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goaway_after_second_stream_opened() {
    goaway_case(Duration::ZERO, GoAway::WhenNextStreamOpens).await;
}

/// A variant on h2::server: GOAWAY(NO_ERROR, last-stream-id 1) via abrupt_shutdown once
/// the first call's trailers are on the wire, after which h2 closes the connection. With
/// a pause before the second call (the client has seen the GOAWAY and the close), the
/// second call succeeds on a new connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goaway_then_close() {
    let server = start_h2(Mode::GoAwayAfterCall, None, Duration::ZERO).await;
    let c = client(server.addr);
    bounded("goaway_then_close", async {
        large_unary_ok(&c, "goaway_then_close: first call").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        large_unary_ok(&c, "goaway_then_close: second call").await;
    })
    .await;
    let seen = server.log.seen();
    assert_eq!(
        server.log.conn_count(),
        2,
        "goaway_then_close: TCP connections the server accepted"
    );
    assert_eq!(
        seen.len(),
        2,
        "goaway_then_close: requests the server answered: {seen:?}"
    );
    assert_eq!(
        (seen[0].conn, seen[1].conn),
        (0, 1),
        "goaway_then_close: one call per connection: {seen:?}"
    );
    assert_eq!(
        (seen[0].stream, seen[1].stream),
        (1, 1),
        "goaway_then_close: each the first stream of its connection"
    );
    for s in &seen {
        assert_eq!(s.path, UNARY_PATH);
        assert_eq!(s.payload_len, REQUEST_SIZE);
        assert_eq!(s.response_size, RESPONSE_SIZE as i32);
    }
    let first = server.log.wire(0);
    let w = first.lock().unwrap();
    assert_eq!(
        w.server_goaways,
        vec![(1, 0)],
        "goaway_then_close: GOAWAY(last-stream-id 1, NO_ERROR) on the first connection"
    );
    drop(w);
    server.log.assert_no_errors();
}

/// max_streams: SETTINGS_MAX_CONCURRENT_STREAMS=1; one call, then 10 concurrent calls:
/// all succeed with the right payload, and the wire never shows more than one open stream
/// (nor a REFUSED_STREAM, which the server would send if the client opened a second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_streams() {
    let server = start_h2(Mode::Normal, Some(1), Duration::from_millis(20)).await;
    let (max_open, refused) = ten_concurrent(&server, "max_streams").await;
    assert_eq!(
        max_open, 1,
        "max_streams: most streams open at once on one connection"
    );
    assert_eq!(refused, 0, "max_streams: streams the server refused");
    assert_eq!(
        server.log.max_active.load(Ordering::SeqCst),
        1,
        "max_streams: handlers running at once"
    );
}

/// Control for max_streams: without the limit the same 10 calls do overlap on the wire, so
/// the tap's open-stream count would catch a client ignoring MAX_CONCURRENT_STREAMS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_streams_control_unlimited() {
    let server = start_h2(Mode::Normal, None, Duration::from_millis(20)).await;
    let (max_open, _) = ten_concurrent(&server, "max_streams (no limit)").await;
    assert!(
        max_open > 1,
        "without a limit the calls overlap: at most {max_open} open at once"
    );
}

/// One large_unary, then 10 concurrent; all must succeed with the full payload. Returns the
/// most streams open at once on any connection and the REFUSED_STREAMs sent.
async fn ten_concurrent(server: &H2Server, case: &str) -> (usize, usize) {
    let c = client(server.addr);
    bounded(case, async {
        large_unary_ok(&c, &format!("{case}: initial call")).await;
        let calls: Vec<_> = (0..10)
            .map(|i| {
                let c = c.clone();
                let what = format!("{case}: concurrent call {i}");
                tokio::spawn(async move { large_unary_ok(&c, &what).await })
            })
            .collect();
        for call in calls {
            call.await.unwrap();
        }
    })
    .await;
    let seen = server.log.seen();
    assert_eq!(seen.len(), 11, "{case}: requests answered");
    assert!(
        seen.iter()
            .all(|s| s.path == UNARY_PATH && s.payload_len == REQUEST_SIZE),
        "{case}: requests {seen:?}"
    );
    server.log.assert_no_errors();
    let (mut max_open, mut refused) = (0, 0);
    for i in 0..server.log.conn_count() {
        let wire = server.log.wire(i);
        let w = wire.lock().unwrap();
        max_open = max_open.max(w.max_open);
        refused += w.refused;
    }
    eprintln!(
        "{case}: 11 calls over {} connection(s), at most {max_open} streams open at once",
        server.log.conn_count()
    );
    (max_open, refused)
}

// =======================================================================================
// The hand-rolled frame-level server (PINGs in flight, padded DATA).

#[derive(Clone, Copy)]
struct RawMode {
    /// PINGs before and after the response headers, before and after the response data
    /// (test_ping.py).
    pings: bool,
    /// Pad length of every response DATA frame (test_data_frame_padding.py: 255).
    pad: Option<u8>,
    /// Message bytes per DATA frame (test_data_frame_padding.py: 5).
    chunk: usize,
    /// When to send GOAWAY(NO_ERROR, last-stream-id = the first stream answered); the
    /// connection is left open and later streams are ignored.
    goaway: GoAway,
}

#[derive(Clone, Copy, PartialEq)]
enum GoAway {
    Never,
    /// Right after the first call's trailers (test_goaway.py).
    AfterTrailers,
    /// Only once the client opened another stream on the connection, which is then above
    /// last-stream-id: the client must retry that call on a new connection.
    WhenNextStreamOpens,
}

/// What the frame-level server observed.
#[derive(Default, Debug)]
struct RawLog {
    conns: usize,
    pings_sent: Vec<[u8; 8]>,
    pings_acked: Vec<[u8; 8]>,
    /// DATA frames sent and their flow-controlled bytes (padding included).
    data_frames: usize,
    flow_sent: u64,
    /// WINDOW_UPDATE increments received for the connection.
    conn_credit: u64,
    /// The trailers were written.
    done: bool,
    request: Option<(usize, i32)>,
    /// (connection index, stream id) of every request answered.
    answered: Vec<(usize, u32)>,
    /// GOAWAYs sent: (connection index, last-stream-id).
    goaways: Vec<(usize, u32)>,
    /// Streams the client opened above a GOAWAY's last-stream-id (ignored, as RFC 9113 6.8 says).
    ignored_streams: usize,
    error: Option<String>,
    /// The lowest the connection send window ever got (never below zero by construction).
    min_conn_window: i64,
}

async fn start_raw(mode: RawMode) -> (SocketAddr, Arc<Mutex<RawLog>>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(RawLog::default()));
    let log2 = log.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let _ = tcp.set_nodelay(true);
            let index = {
                let mut l = log2.lock().unwrap();
                l.conns += 1;
                l.conns - 1
            };
            let log = log2.clone();
            tokio::spawn(async move {
                if let Err(e) = raw_conn(tcp, index, mode, log.clone()).await {
                    log.lock().unwrap().error.get_or_insert(e);
                }
            });
        }
    });
    (addr, log, task)
}

/// GOAWAY(NO_ERROR) naming `last` as the last stream processed.
fn put_goaway(out: &mut Vec<u8>, last: u32) {
    let mut p = last.to_be_bytes().to_vec();
    p.extend_from_slice(&0u32.to_be_bytes());
    frames::put_frame(out, frames::GOAWAY, 0, 0, &p);
}

/// Per-stream state of the frame-level server.
#[derive(Default)]
struct RawStream {
    body: Vec<u8>,
    window: i64,
    /// The framed response and how much of it is sent.
    response: Option<(Bytes, usize)>,
}

async fn raw_conn(
    tcp: TcpStream,
    index: usize,
    mode: RawMode,
    log: Arc<Mutex<RawLog>>,
) -> Result<(), String> {
    let (mut rd, mut wr) = tcp.into_split();
    let mut preface = [0u8; 24];
    rd.read_exact(&mut preface)
        .await
        .map_err(|e| format!("reading preface: {e}"))?;
    if preface != frames::PREFACE {
        return Err(format!("bad preface {preface:?}"));
    }
    // Frames from the client, read by their own task so writing never blocks reading.
    let (tx, mut rx) = mpsc::unbounded_channel::<Frame>();
    tokio::spawn(async move {
        let mut head = [0u8; 9];
        while rd.read_exact(&mut head).await.is_ok() {
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0; len];
            if rd.read_exact(&mut payload).await.is_err() {
                break;
            }
            let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            if tx
                .send(Frame {
                    kind: head[3],
                    flags: head[4],
                    stream,
                    payload,
                })
                .is_err()
            {
                break;
            }
        }
    });

    let mut out = Vec::new();
    frames::put_settings(&mut out, &[]);
    let mut peer_initial_window: i64 = 65_535;
    let mut peer_max_frame: usize = 16_384;
    let mut conn_window: i64 = 65_535;
    let mut streams: HashMap<u32, RawStream> = HashMap::new();
    let mut ping_seq: u8 = 0;
    let mut goaway_sent: Option<u32> = None;
    let mut goaway_pending: Option<u32> = None;
    let mut ping = |out: &mut Vec<u8>, log: &Mutex<RawLog>| {
        ping_seq += 1;
        let payload = [b'n', b'e', b'g', b'-', b'p', b'i', b'n', ping_seq];
        frames::put_frame(out, frames::PING, 0, 0, &payload);
        log.lock().unwrap().pings_sent.push(payload);
    };
    {
        log.lock().unwrap().min_conn_window = conn_window;
    }
    loop {
        // Send what the windows allow.
        for (&id, st) in streams.iter_mut() {
            let Some((msg, sent)) = st.response.as_mut() else {
                continue;
            };
            if *sent == msg.len() {
                continue;
            }
            let overhead = mode.pad.map(|p| 1 + p as usize).unwrap_or(0);
            while *sent < msg.len() {
                // Whole chunks only (a window too small for one waits for a WINDOW_UPDATE),
                // so the frame count is exact.
                let n = mode.chunk.min(msg.len() - *sent);
                let room = conn_window.min(st.window).max(0) as usize;
                if n + overhead > room || n + overhead > peer_max_frame {
                    break;
                }
                let flow =
                    frames::put_data(&mut out, id, &msg[*sent..*sent + n], mode.pad, false) as i64;
                *sent += n;
                conn_window -= flow;
                st.window -= flow;
                let mut l = log.lock().unwrap();
                l.data_frames += 1;
                l.flow_sent += flow as u64;
                l.min_conn_window = l.min_conn_window.min(conn_window);
            }
            if *sent == msg.len() {
                frames::put_headers(&mut out, id, &[("grpc-status", "0")], true);
                if mode.pings {
                    ping(&mut out, &log);
                }
                let mut l = log.lock().unwrap();
                l.done = true;
                l.answered.push((index, id));
                if mode.goaway == GoAway::AfterTrailers && goaway_sent.is_none() {
                    put_goaway(&mut out, id);
                    goaway_sent = Some(id);
                    l.goaways.push((index, id));
                }
                if mode.goaway == GoAway::WhenNextStreamOpens && goaway_pending.is_none() {
                    goaway_pending = Some(id);
                }
            }
        }
        if !out.is_empty() {
            match wr.write_all(&out).await {
                Ok(()) => {}
                // After our GOAWAY the client may close this connection as soon as its
                // streams are done or moved elsewhere, while frames it sent before (the
                // DATA of a stream above last-stream-id) still draw WINDOW_UPDATEs here:
                // a write it no longer reads ends the connection, it is not an error.
                Err(_) if goaway_sent.is_some() => return Ok(()),
                Err(e) => return Err(format!("write: {e}")),
            }
            out.clear();
        }

        let Some(f) = rx.recv().await else {
            return Ok(());
        };
        match f.kind {
            frames::SETTINGS if f.flags & frames::ACK == 0 => {
                for kv in f.payload.chunks_exact(6) {
                    let id = u16::from_be_bytes([kv[0], kv[1]]);
                    let v = u32::from_be_bytes([kv[2], kv[3], kv[4], kv[5]]);
                    match id {
                        0x4 => {
                            let delta = v as i64 - peer_initial_window;
                            peer_initial_window = v as i64;
                            for st in streams.values_mut() {
                                st.window += delta;
                            }
                        }
                        0x5 => peer_max_frame = v as usize,
                        _ => {}
                    }
                }
                frames::put_frame(&mut out, frames::SETTINGS, frames::ACK, 0, &[]);
            }
            frames::PING if f.flags & frames::ACK == 0 => {
                frames::put_frame(&mut out, frames::PING, frames::ACK, 0, &f.payload);
            }
            frames::PING => {
                let mut p = [0u8; 8];
                if f.payload.len() == 8 {
                    p.copy_from_slice(&f.payload);
                }
                log.lock().unwrap().pings_acked.push(p);
            }
            frames::WINDOW_UPDATE => {
                let inc = f
                    .payload
                    .get(0..4)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff);
                let inc = inc.unwrap_or(0) as i64;
                if f.stream == 0 {
                    conn_window += inc;
                    log.lock().unwrap().conn_credit += inc as u64;
                } else if let Some(st) = streams.get_mut(&f.stream) {
                    st.window += inc;
                }
            }
            frames::HEADERS
                if goaway_sent
                    .or(goaway_pending)
                    .is_some_and(|last| f.stream > last) =>
            {
                let mut l = log.lock().unwrap();
                l.ignored_streams += 1;
                if let (None, Some(last)) = (goaway_sent, goaway_pending) {
                    put_goaway(&mut out, last);
                    goaway_sent = Some(last);
                    l.goaways.push((index, last));
                }
            }
            frames::HEADERS if !streams.contains_key(&f.stream) => {
                streams.insert(
                    f.stream,
                    RawStream {
                        window: peer_initial_window,
                        ..Default::default()
                    },
                );
                // Response headers at once, as grpc's base server does.
                if mode.pings {
                    ping(&mut out, &log);
                }
                frames::put_headers(
                    &mut out,
                    f.stream,
                    &[
                        (":status", "200"),
                        ("content-type", "application/grpc"),
                        ("grpc-accept-encoding", "identity"),
                    ],
                    false,
                );
                if mode.pings {
                    ping(&mut out, &log);
                }
            }
            frames::DATA => {
                let flow = f.payload.len() as u32;
                if flow > 0 {
                    frames::put_window_update(&mut out, 0, flow);
                }
                let Some(st) = streams.get_mut(&f.stream) else {
                    continue;
                };
                st.body.extend_from_slice(f.data_without_padding());
                if f.flags & frames::END_STREAM == 0 {
                    if flow > 0 {
                        frames::put_window_update(&mut out, f.stream, flow);
                    }
                } else {
                    let req = parse_request(&st.body)?;
                    log.lock().unwrap().request = Some((
                        req.payload.as_ref().map(|p| p.body.len()).unwrap_or(0),
                        req.response_size,
                    ));
                    if mode.pings {
                        ping(&mut out, &log);
                    }
                    st.response = Some((response_for(&req), 0));
                }
            }
            frames::GOAWAY => return Ok(()),
            _ => {}
        }
    }
}

/// ping: the server sends PINGs before and after the response headers and before and after
/// the response data (four in all, several in flight at once). The call succeeds with the
/// full payload and the client acks every PING with its payload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping() {
    let (addr, log, task) = start_raw(RawMode {
        pings: true,
        pad: None,
        chunk: 16_384,
        goaway: GoAway::Never,
    })
    .await;
    let c = client(addr);
    bounded("ping", large_unary_ok(&c, "ping")).await;
    // The last PING follows the trailers: wait (bounded) for its ack on the live connection.
    let t0 = Instant::now();
    loop {
        {
            let l = log.lock().unwrap();
            if l.pings_sent.len() == 4 && l.pings_acked.len() >= 4 {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "ping: {} PINGs sent, {} acked: {:?}",
                l.pings_sent.len(),
                l.pings_acked.len(),
                *l
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let l = log.lock().unwrap();
    assert_eq!(
        l.pings_acked, l.pings_sent,
        "ping: every PING acked once, with its payload, in order"
    );
    assert_eq!(
        l.request,
        Some((REQUEST_SIZE, RESPONSE_SIZE as i32)),
        "ping: request seen by the server"
    );
    assert!(l.done && l.error.is_none(), "ping: server state {l:?}");
    assert_eq!(l.conns, 1);
    drop(l);
    task.abort();
}

/// Runs one large_unary against the frame-level server sending `chunk` message bytes per
/// DATA frame, each padded with `pad` bytes (plus the pad length byte). The server never
/// exceeds the windows the client grants, so the call can only complete if the client
/// returns credit for the padding too (RFC 9113 6.1: padding is flow-controlled).
/// `window` sets our client's stream and connection receive windows (None = defaults).
async fn padding_case(pad: Option<u8>, chunk: usize, window: Option<u32>, case: &str) {
    let (addr, log, task) = start_raw(RawMode {
        pings: false,
        pad,
        chunk,
        goaway: GoAway::Never,
    })
    .await;
    let mut ep = Channel::builder(format!("http://{addr}")).connect_timeout(Duration::from_secs(5));
    if let Some(w) = window {
        ep = ep
            .initial_stream_window_size(w)
            .initial_connection_window_size(w);
    }
    let c = TestServiceClient::new(ep.connect_lazy().unwrap());
    let t0 = Instant::now();
    bounded(case, large_unary_ok(&c, case)).await;
    let l = log.lock().unwrap();
    eprintln!(
        "{case}: {} DATA frames, {} flow-controlled bytes, {} connection credit, in {:?}",
        l.data_frames,
        l.flow_sent,
        l.conn_credit,
        t0.elapsed()
    );
    assert!(l.done && l.error.is_none(), "{case}: server state {l:?}");
    assert_eq!(
        l.request,
        Some((REQUEST_SIZE, RESPONSE_SIZE as i32)),
        "{case}: request seen by the server"
    );
    let message_len = response_for(&large_request()).len();
    let frames_expected = message_len.div_ceil(chunk);
    assert_eq!(l.data_frames, frames_expected, "{case}: DATA frames");
    let per_frame_overhead = pad.map(|p| 1 + p as u64).unwrap_or(0);
    assert_eq!(
        l.flow_sent,
        message_len as u64 + frames_expected as u64 * per_frame_overhead,
        "{case}: bytes sent"
    );
    assert!(l.min_conn_window >= 0);
    // Everything beyond the initial 65535-byte connection window was granted by the client.
    assert!(
        l.conn_credit + 65_535 >= l.flow_sent,
        "{case}: the client granted {} bytes of connection credit for {} sent",
        l.conn_credit,
        l.flow_sent
    );
    drop(l);
    task.abort();
}

/// data_frame_padding with grpc's parameters: every response DATA frame carries 5 message
/// bytes and 255 bytes of padding, so 98% of the 16 MB of flow-controlled bytes are padding.
///
/// This (and no_df_padding_sanity_test) failed about half the time while the runtime kept
/// h2's default `data_frame_budget` (half the connection window): h2 closed the connection
/// with GOAWAY(ENHANCE_YOUR_CALM, "too_many_data_frames") once ~4000 DATA frames under 256
/// bytes sat unread (one 64 KB socket read holds 4600 of the unpadded ones). The runtime now
/// sets `transport::DATA_FRAME_BUDGET`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_frame_padding() {
    padding_case(Some(255), 5, None, "data_frame_padding").await;
}

/// grpc's no_df_padding_sanity_test: the same 5-byte DATA frames without padding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_df_padding_sanity_test() {
    padding_case(None, 5, None, "no_df_padding_sanity_test").await;
}

/// Padding counted in flow control, with frames large enough (256 message bytes + 256 of
/// padding) to stay clear of h2's small-frame budget, and our client's windows at the
/// HTTP/2 default of 65535 so the ~630 KB response needs many WINDOW_UPDATEs: a client
/// crediting only the message bytes would shrink the server's window by half each round
/// and stall (the test would time out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_frame_padding_counted_in_flow_control() {
    padding_case(
        Some(255),
        256,
        Some(65_535),
        "data_frame_padding (256-byte chunks, 64 KiB windows)",
    )
    .await;
}

/// The same without padding, as a control.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_padding_control_small_windows() {
    padding_case(
        None,
        256,
        Some(65_535),
        "no padding (256-byte chunks, 64 KiB windows)",
    )
    .await;
}

// =======================================================================================
// The reference client against our misbehaving servers.

/// grpc-go's own negative client (`http2_negative_client`, built by scripts/peers into
/// `$GRPC_RUST_PEERS/go/bin`) against the servers above, one case at a time: proves these
/// servers misbehave the way grpc's test suite means (grpc-go asserts rst_after_header and
/// rst_after_data fail INTERNAL, rst_during_data UNKNOWN (see below), the others succeed).
/// Skipped, with a note, when the peer cache has not been built.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_go_negative_client_against_our_servers() {
    let peers = std::env::var_os("GRPC_RUST_PEERS")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| std::path::PathBuf::from(h).join(".cache/grpc-rust/peers"))
        });
    let Some(bin) = peers
        .map(|p| p.join("go/bin/http2_negative_client"))
        .filter(|b| b.exists())
    else {
        eprintln!(
            "skipped: grpc-go's http2_negative_client is not built (scripts/peers/build-go.sh)"
        );
        return;
    };
    let run = |addr: SocketAddr, case: &'static str| {
        let bin = bin.clone();
        async move {
            let out = tokio::task::spawn_blocking(move || {
                std::process::Command::new("timeout")
                    .arg("30")
                    .arg(&bin)
                    .arg("--server_host=127.0.0.1")
                    .arg(format!("--server_port={}", addr.port()))
                    .arg(format!("--test_case={case}"))
                    .output()
                    .unwrap()
            })
            .await
            .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            // grpc-go 1.33's client wants UNKNOWN for rst_during_data, yet itself reports
            // INTERNAL ("stream terminated by RST_STREAM with error code: NO_ERROR") against
            // this server; grpc's C++ http2_client.cc (the core reference) wants INTERNAL
            // for all three rst cases, as we do. Accept exactly that one disagreement.
            let go_stale = case == "rst_during_data"
                && stderr.contains("UnaryCall() = _, Internal, want _, Unknown");
            assert!(
                out.status.success() || go_stale,
                "grpc-go http2_negative_client --test_case={case}: {}\n{stderr}",
                out.status
            );
        }
    };
    for (case, mode) in [
        ("rst_after_header", Mode::RstAfterHeader),
        ("rst_during_data", Mode::RstDuringData),
        ("rst_after_data", Mode::RstAfterData),
    ] {
        let server = start_h2(mode, None, Duration::ZERO).await;
        run(server.addr, case).await;
        // The peer may exit before the tap (on our side of the socket) has parsed the
        // RST_STREAM it wrote: wait (bounded) for it.
        let wire = server.log.wire(0);
        let t0 = Instant::now();
        frames::wait_for(
            &wire,
            &format!("{case}: RST_STREAM(NO_ERROR) on stream 1"),
            |w| w.streams.get(&1).and_then(|s| s.server_rst) == Some(0),
        )
        .await;
        eprintln!(
            "{case}: RST_STREAM seen by the tap {:?} after the peer exited",
            t0.elapsed()
        );
    }
    let server = start_h2(Mode::Normal, Some(1), Duration::from_millis(20)).await;
    run(server.addr, "max_streams").await;
    assert_eq!(
        server.log.seen().len(),
        16,
        "max_streams: grpc-go makes 1 + 15 calls"
    );
    for i in 0..server.log.conn_count() {
        let (max_open, refused) = {
            let wire = server.log.wire(i);
            let w = wire.lock().unwrap();
            (w.max_open, w.refused)
        };
        assert_eq!(
            (max_open, refused),
            (1, 0),
            "max_streams: grpc-go on connection {i}"
        );
    }
    drop(server);

    let (addr, log, task) = start_raw(RawMode {
        pings: false,
        pad: None,
        chunk: 16_384,
        goaway: GoAway::AfterTrailers,
    })
    .await;
    run(addr, "goaway").await;
    {
        let l = log.lock().unwrap();
        // grpc-go also reconnects eagerly after the second GOAWAY: 2 or more connections.
        assert!(
            l.conns >= 2 && l.answered == [(0, 1), (1, 1)],
            "goaway: grpc-go {l:?}"
        );
    }
    task.abort();

    let (addr, log, task) = start_raw(RawMode {
        pings: true,
        pad: None,
        chunk: 16_384,
        goaway: GoAway::Never,
    })
    .await;
    run(addr, "ping").await;
    {
        let l = log.lock().unwrap();
        assert!(l.done && l.pings_sent.len() == 4, "ping: grpc-go {l:?}");
        assert!(
            l.pings_acked.len() >= 3,
            "ping: grpc-go acked {:?} of {:?}",
            l.pings_acked,
            l.pings_sent
        );
    }
    task.abort();
}
