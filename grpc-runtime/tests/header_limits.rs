//! Malformed header blocks and header-list limits over real sockets (issue 15: one
//! call's trouble never hurts another). Request heads are written as raw frames with
//! hand-encoded HPACK where the fault is below what an HTTP/2 library will send
//! (uppercase names, NUL/CR/LF in values, a pseudo-header after a regular one, a zero
//! WINDOW_UPDATE increment); over-size metadata goes through h2's client, which sends
//! what it is given, and through our `Channel`. Every case checks that the next call on
//! the same connection still works. docs/reliability.md, "Malformed headers and
//! header-list limits", describes the behaviour these pin down.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use grpc_runtime::{Channel, Code, Request};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ------------------------------------------------------------ raw frames and HPACK

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PROTOCOL_ERROR: u32 = 0x1;
const FLOW_CONTROL_ERROR: u32 = 0x3;

fn raw_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut v = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    v.extend_from_slice(&stream.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// HPACK integer with an `n`-bit prefix (RFC 7541 5.1), `first` holding the pattern bits.
fn hpack_int(out: &mut Vec<u8>, first: u8, n: u32, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

fn hpack_str(out: &mut Vec<u8>, s: &[u8]) {
    hpack_int(out, 0, 7, s.len());
    out.extend_from_slice(s);
}

/// Literal field, new name, without indexing.
fn lit(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x00);
    hpack_str(out, name);
    hpack_str(out, value);
}

/// Literal field, new name, with incremental indexing (enters the dynamic table).
fn lit_indexed(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x40);
    hpack_str(out, name);
    hpack_str(out, value);
}

/// Indexed field (static 1..=61, dynamic from 62, newest first).
fn indexed(out: &mut Vec<u8>, index: usize) {
    hpack_int(out, 0x80, 7, index);
}

/// `:method POST`, `:scheme http`, `:path` and `:authority`; `:path` enters the dynamic
/// table so that a later block can refer to it by index.
fn request_pseudo(out: &mut Vec<u8>, path: &str) {
    indexed(out, 3); // :method POST
    indexed(out, 6); // :scheme http
    lit_indexed(out, b":path", path.as_bytes());
    lit(out, b":authority", b"localhost");
}

fn grpc_fields(out: &mut Vec<u8>) {
    lit(out, b"content-type", b"application/grpc");
    lit(out, b"te", b"trailers");
}

/// A hand-driven HTTP/2 client connection.
struct RawConn {
    tcp: TcpStream,
    buf: Vec<u8>,
}

#[derive(Debug)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

impl Frame {
    fn error_code(&self) -> u32 {
        let at = if self.kind == GOAWAY { 4 } else { 0 };
        u32::from_be_bytes(self.payload[at..at + 4].try_into().unwrap())
    }
}

impl RawConn {
    async fn open(addr: SocketAddr) -> RawConn {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(PREFACE).await.unwrap();
        tcp.write_all(&raw_frame(SETTINGS, 0, 0, &[]))
            .await
            .unwrap();
        RawConn {
            tcp,
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        self.tcp
            .write_all(&raw_frame(kind, flags, stream, payload))
            .await
            .unwrap();
    }

    /// A unary Echo request on `stream` whose `:path` is dynamic-table entry `path_index`
    /// (so it decodes right only if the server's HPACK table kept in step).
    async fn echo_by_index(&mut self, stream: u32, path_index: usize, text: &str) {
        let mut block = Vec::new();
        indexed(&mut block, 3);
        indexed(&mut block, 6);
        indexed(&mut block, path_index);
        lit(&mut block, b":authority", b"localhost");
        grpc_fields(&mut block);
        self.send(HEADERS, END_HEADERS, stream, &block).await;
        let body = frame(&EchoRequest {
            message: text.into(),
            count: 0,
            sleep_ms: 0,
        });
        self.send(DATA, END_STREAM, stream, &body).await;
    }

    async fn next(&mut self) -> Option<Frame> {
        loop {
            if self.buf.len() >= 9 {
                let len = (usize::from(self.buf[0]) << 16)
                    | (usize::from(self.buf[1]) << 8)
                    | usize::from(self.buf[2]);
                if self.buf.len() >= 9 + len {
                    let stream =
                        u32::from_be_bytes(self.buf[5..9].try_into().unwrap()) & 0x7fff_ffff;
                    let f = Frame {
                        kind: self.buf[3],
                        flags: self.buf[4],
                        stream,
                        payload: self.buf[9..9 + len].to_vec(),
                    };
                    self.buf.drain(..9 + len);
                    return Some(f);
                }
            }
            let mut chunk = [0u8; 16384];
            match self.tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Frames read until `done` says so, the connection ends, or 5 s pass.
    async fn read_until(&mut self, mut done: impl FnMut(&Frame) -> bool) -> Vec<Frame> {
        let mut frames = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(f) = self.next().await {
                let stop = done(&f);
                frames.push(f);
                if stop {
                    return;
                }
            }
        })
        .await;
        frames
    }

    /// Reads the answer to an `echo_by_index` call on `stream` and returns the echoed text.
    async fn echo_reply(&mut self, stream: u32) -> String {
        let frames = self
            .read_until(|f| f.stream == stream && f.flags & END_STREAM != 0)
            .await;
        assert!(
            frames.iter().all(|f| f.kind != GOAWAY),
            "connection closed: {frames:?}"
        );
        let data: Vec<u8> = frames
            .iter()
            .filter(|f| f.kind == DATA && f.stream == stream)
            .flat_map(|f| f.payload.clone())
            .collect();
        assert!(
            data.len() >= 5,
            "no response message on stream {stream}: {frames:?}"
        );
        EchoReply::decode(&data[5..]).unwrap().message
    }
}

fn assert_reset_only(frames: &[Frame], stream: u32, code: u32) {
    assert!(
        frames.iter().all(|f| f.kind != GOAWAY),
        "GOAWAY instead of a stream error: {frames:?}"
    );
    let rst = frames
        .iter()
        .find(|f| f.kind == RST_STREAM && f.stream == stream);
    let rst = rst.unwrap_or_else(|| panic!("no RST_STREAM on stream {stream}: {frames:?}"));
    assert_eq!(rst.error_code(), code, "{frames:?}");
}

// ------------------------------------------------------------ malformed request heads

/// Each malformed field, placed after valid headers, and entered into the HPACK dynamic
/// table (literal with incremental indexing) so the test also proves the server's table
/// stayed in step: the next request names its `:path` by dynamic index 63, which is
/// the first request's `:path` only if the bad field took index 62.
async fn malformed_field_is_a_stream_error(case: &str, name: &[u8], value: &[u8]) {
    let srv = start(|b| b).await;
    let mut c = RawConn::open(srv.addr).await;
    let mut block = Vec::new();
    request_pseudo(&mut block, "/test.Echo/Unary");
    grpc_fields(&mut block);
    lit_indexed(&mut block, name, value);
    c.send(HEADERS, END_HEADERS | END_STREAM, 1, &block).await;
    let frames = c
        .read_until(|f| f.kind == RST_STREAM || f.kind == GOAWAY)
        .await;
    assert_reset_only(&frames, 1, PROTOCOL_ERROR);
    c.echo_by_index(3, 63, case).await;
    assert_eq!(c.echo_reply(3).await, case, "{case}");
}

#[tokio::test]
async fn uppercase_header_name_resets_only_that_stream() {
    malformed_field_is_a_stream_error("uppercase", b"X-Upper", b"1").await;
}

#[tokio::test]
async fn nul_cr_lf_in_header_value_reset_only_that_stream() {
    malformed_field_is_a_stream_error("nul", b"x-bad", b"a\0b").await;
    malformed_field_is_a_stream_error("cr", b"x-bad", b"a\rb").await;
    malformed_field_is_a_stream_error("lf", b"x-bad", b"a\nb").await;
}

#[tokio::test]
async fn pseudo_header_after_a_regular_one_resets_only_that_stream() {
    malformed_field_is_a_stream_error("late-pseudo", b":scheme", b"http").await;
}

#[tokio::test]
async fn malformed_field_in_a_header_block_continued_in_continuation_frames() {
    // The bad field in the HEADERS frame, the rest of the block in a CONTINUATION: the
    // stream error must wait for END_HEADERS (the CONTINUATION still belongs to the
    // block and still feeds the HPACK table).
    let srv = start(|b| b).await;
    let mut c = RawConn::open(srv.addr).await;
    let mut first = Vec::new();
    request_pseudo(&mut first, "/test.Echo/Unary");
    lit_indexed(&mut first, b"X-Upper", b"1");
    let mut rest = Vec::new();
    grpc_fields(&mut rest);
    lit_indexed(&mut rest, b"x-after", b"2");
    c.send(HEADERS, END_STREAM, 1, &first).await;
    c.send(0x9, END_HEADERS, 1, &rest).await;
    let frames = c
        .read_until(|f| f.kind == RST_STREAM || f.kind == GOAWAY)
        .await;
    assert_reset_only(&frames, 1, PROTOCOL_ERROR);
    // table: x-after (62), X-Upper (63), :path (64)
    c.echo_by_index(3, 64, "after-continuation").await;
    assert_eq!(c.echo_reply(3).await, "after-continuation");
}

#[tokio::test]
async fn zero_window_update_on_a_stream_resets_only_that_stream() {
    let srv = start(|b| b).await;
    let mut c = RawConn::open(srv.addr).await;
    let mut block = Vec::new();
    request_pseudo(&mut block, "/test.Echo/Unary");
    grpc_fields(&mut block);
    c.send(HEADERS, END_HEADERS, 1, &block).await;
    c.send(WINDOW_UPDATE, 0, 1, &0u32.to_be_bytes()).await;
    let frames = c
        .read_until(|f| f.kind == RST_STREAM || f.kind == GOAWAY)
        .await;
    assert_reset_only(&frames, 1, PROTOCOL_ERROR);
    c.echo_by_index(3, 62, "after-window-update").await;
    assert_eq!(c.echo_reply(3).await, "after-window-update");
}

#[tokio::test]
async fn initial_window_size_over_the_maximum_is_flow_control_error() {
    // RFC 9113 6.5.2: SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1 is a connection error of
    // type FLOW_CONTROL_ERROR.
    let srv = start(|b| b).await;
    let mut c = RawConn::open(srv.addr).await;
    let mut s = vec![0x0, 0x4];
    s.extend_from_slice(&0x8000_0000u32.to_be_bytes());
    c.send(SETTINGS, 0, 0, &s).await;
    let frames = c.read_until(|f| f.kind == GOAWAY).await;
    let goaway = frames
        .iter()
        .find(|f| f.kind == GOAWAY)
        .unwrap_or_else(|| panic!("no GOAWAY: {frames:?}"));
    assert_eq!(goaway.error_code(), FLOW_CONTROL_ERROR, "{frames:?}");
}

// ------------------------------------------------------------ over-size request metadata

fn echo_req(text: &str, sleep_ms: i64) -> EchoRequest {
    EchoRequest {
        message: text.into(),
        count: 0,
        sleep_ms,
    }
}

/// Sends a unary call with `x-big` metadata of `size` bytes through h2's own client.
async fn big_call(c: &mut H2, addr: SocketAddr, size: usize) -> RawResponse {
    let big = "b".repeat(size);
    call(
        c,
        grpc_head(addr, "/test.Echo/Unary", &[("x-big", &big)]),
        &[frame(&echo_req("big", 0))],
    )
    .await
}

fn request_size(addr: SocketAddr, size: usize) -> usize {
    // RFC 9113 6.5.2 accounting: name + value + 32 per field, pseudo-headers included.
    let authority = addr.to_string();
    let fields: [(&str, usize); 7] = [
        (":method", 4),
        (":scheme", 4),
        (":path", "/test.Echo/Unary".len()),
        (":authority", authority.len()),
        ("content-type", "application/grpc".len()),
        ("te", "trailers".len()),
        ("x-big", size),
    ];
    fields.iter().map(|(n, v)| n.len() + v + 32).sum()
}

fn assert_resource_exhausted(r: &RawResponse, size: usize, limit: usize) {
    assert_eq!(r.status, http::StatusCode::OK, "{r:?}");
    assert!(r.headers_end_stream, "not Trailers-Only: {r:?}");
    assert_eq!(
        r.headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/grpc"[..]),
        "{r:?}"
    );
    assert_eq!(r.grpc_status().as_deref(), Some("8"), "{r:?}");
    assert_eq!(
        r.grpc_message().as_deref(),
        Some(format!("request metadata size {size} exceeds the limit of {limit} bytes").as_str()),
        "{r:?}"
    );
}

#[tokio::test]
async fn over_limit_request_metadata_is_resource_exhausted_for_that_call_only() {
    let srv = start(|b| b).await;
    let mut c = connect(srv.addr).await;
    // A call in flight on the same connection while the big ones fail.
    let mut c2 = c.clone();
    let addr = srv.addr;
    let survivor = tokio::spawn(async move {
        call(
            &mut c2,
            grpc_head(addr, "/test.Echo/Unary", &[]),
            &[frame(&echo_req("survivor", 400))],
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    // 12 KiB: over the 8 KiB limit; 30 KiB: under the hard cap (4 x the limit).
    for size in [12_000, 30_000] {
        let r = big_call(&mut c, srv.addr, size).await;
        assert_resource_exhausted(&r, request_size(srv.addr, size), 8192);
    }
    let r = survivor.await.unwrap();
    assert_eq!(r.grpc_status().as_deref(), Some("0"), "{r:?}");
    let ok = call(
        &mut c,
        grpc_head(srv.addr, "/test.Echo/Unary", &[]),
        &[frame(&echo_req("after", 0))],
    )
    .await;
    assert_eq!(ok.grpc_status().as_deref(), Some("0"), "{ok:?}");
    let m: EchoReply = decode(&ok.messages()[0].1);
    assert_eq!(m.message, "after");
}

#[tokio::test]
async fn request_metadata_limit_is_configurable_on_the_server() {
    let srv = start(|b| b.max_header_list_size(16 * 1024)).await;
    let mut c = connect(srv.addr).await;
    let r = big_call(&mut c, srv.addr, 12_000).await;
    assert_eq!(r.grpc_status().as_deref(), Some("0"), "{r:?}");
    let r = big_call(&mut c, srv.addr, 20_000).await;
    assert_resource_exhausted(&r, request_size(srv.addr, 20_000), 16 * 1024);
    let r = big_call(&mut c, srv.addr, 100).await;
    assert_eq!(r.grpc_status().as_deref(), Some("0"), "{r:?}");
}

#[tokio::test]
async fn request_metadata_beyond_the_hard_cap_closes_the_connection() {
    // Beyond 4 x the limit h2 stops decoding and closes the connection
    // (GOAWAY ENHANCE_YOUR_CALM): the documented hard cap.
    let srv = start(|b| b).await;
    let c = connect(srv.addr).await;
    let big = "b".repeat(40_000);
    let mut client = c.clone().ready().await.unwrap();
    let (resp, _send) = client
        .send_request(
            grpc_head(srv.addr, "/test.Echo/Unary", &[("x-big", &big)]),
            true,
        )
        .unwrap();
    let e = resp.await.unwrap_err();
    assert!(e.is_go_away() || e.is_io(), "{e:?}");
}

// ------------------------------------------------------------ our client

#[tokio::test]
async fn client_fails_a_call_whose_metadata_exceeds_the_peers_limit_before_sending() {
    let srv = start(|b| b).await;
    let ch = Channel::builder(format!("http://{}", srv.addr))
        .connect()
        .await
        .unwrap();
    // (Channel::connect waits for the server's PING ack, so its SETTINGS are known.)
    let ok = ch
        .unary::<EchoRequest, EchoReply>("/test.Echo/Unary", Request::new(echo_req("first", 0)))
        .await
        .unwrap();
    assert_eq!(ok.into_inner().message, "first");
    let ch2 = ch.clone();
    let survivor = tokio::spawn(async move {
        ch2.unary::<EchoRequest, EchoReply>(
            "/test.Echo/Unary",
            Request::new(echo_req("survivor", 300)),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut r = Request::new(echo_req("big", 0));
    r.metadata_mut()
        .insert("x-big", "b".repeat(12_000))
        .unwrap();
    let e = ch
        .unary::<EchoRequest, EchoReply>("/test.Echo/Unary", r)
        .await
        .unwrap_err();
    // grpc-go's checkForHeaderListSize: codes.Internal, same wording.
    assert_eq!(e.code(), Code::Internal, "{e:?}");
    assert!(
        e.message().contains(
            "header list size to send violates the maximum size (8192 bytes) set by server"
        ),
        "{e:?}"
    );
    assert_eq!(
        survivor.await.unwrap().unwrap().into_inner().message,
        "survivor"
    );
    let ok = ch
        .unary::<EchoRequest, EchoReply>("/test.Echo/Unary", Request::new(echo_req("after", 0)))
        .await
        .unwrap();
    assert_eq!(ok.into_inner().message, "after");
}

#[tokio::test]
async fn client_sends_metadata_the_peer_accepts() {
    let srv = start(|b| b.max_header_list_size(64 * 1024)).await;
    let ch = Channel::builder(format!("http://{}", srv.addr))
        .connect()
        .await
        .unwrap();
    let _ = ch
        .unary::<EchoRequest, EchoReply>("/test.Echo/Unary", Request::new(echo_req("first", 0)))
        .await
        .unwrap();
    let mut r = Request::new(echo_req("big", 0));
    r.metadata_mut()
        .insert("x-big", "b".repeat(40_000))
        .unwrap();
    let ok = ch
        .unary::<EchoRequest, EchoReply>("/test.Echo/Unary", r)
        .await
        .unwrap();
    assert_eq!(ok.into_inner().message, "big");
}

/// A server written in raw frames: it answers the first request with response headers
/// carrying an uppercase name, and every later one properly.
async fn uppercase_response_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let mut c = RawConn {
            tcp,
            buf: Vec::new(),
        };
        let mut preface = [0u8; 24];
        if c.tcp.read_exact(&mut preface).await.is_err() {
            return;
        }
        c.send(SETTINGS, 0, 0, &[]).await;
        let mut answered = 0;
        while let Some(f) = c.next().await {
            match f.kind {
                SETTINGS if f.flags & 1 == 0 => c.send(SETTINGS, 1, 0, &[]).await,
                PING if f.flags & 1 == 0 => c.send(PING, 1, 0, &f.payload).await,
                DATA if f.flags & END_STREAM != 0 => {
                    let mut head = Vec::new();
                    indexed(&mut head, 8); // :status 200
                    lit(&mut head, b"content-type", b"application/grpc");
                    if answered == 0 {
                        lit(&mut head, b"X-Upper", b"1");
                    }
                    answered += 1;
                    c.send(HEADERS, END_HEADERS, f.stream, &head).await;
                    let body = frame(&EchoReply {
                        message: format!("reply-{answered}"),
                    });
                    c.send(DATA, 0, f.stream, &body).await;
                    let mut trailers = Vec::new();
                    lit(&mut trailers, b"grpc-status", b"0");
                    c.send(HEADERS, END_HEADERS | END_STREAM, f.stream, &trailers)
                        .await;
                }
                _ => {}
            }
        }
    });
    addr
}

#[tokio::test]
async fn client_malformed_response_headers_fail_only_that_call() {
    let addr = uppercase_response_server().await;
    let ch = Channel::builder(format!("http://{addr}"))
        .connect()
        .await
        .unwrap();
    let e = ch
        .unary::<EchoRequest, EchoReply>("/test.Echo/Unary", Request::new(echo_req("a", 0)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Internal, "{e:?}");
    // Same connection (the raw server accepts only one).
    let ok = ch
        .unary::<EchoRequest, EchoReply>("/test.Echo/Unary", Request::new(echo_req("b", 0)))
        .await
        .unwrap();
    assert_eq!(ok.into_inner().message, "reply-2");
}
