//! Peer- and user-controlled input at the extremes, over real sockets: absurd
//! durations in builders and headers, decompression bombs, huge length prefixes,
//! malformed paths, metadata and status trailers. Each must end only the call it
//! belongs to with the right status (or be accepted), and never panic a task.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use grpc_runtime::transport::BackoffConfig;
use grpc_runtime::{Channel, Code, CompressionEncoding, Request};
use http::HeaderValue;

/// Panics raised outside test code (in library tasks, where tokio would swallow them),
/// recorded by a process-wide hook. Tests in this file run in parallel, so a panic
/// fails whichever test looks next; any such panic is a bug.
static LIBRARY_PANICS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn watch_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let at = info
                .location()
                .map(|l| l.file().to_string())
                .unwrap_or_default();
            if !at.contains("tests/") {
                LIBRARY_PANICS
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(format!("{info}"));
            }
            default(info);
        }));
    });
}

fn assert_no_library_panics() {
    let p = LIBRARY_PANICS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    assert!(p.is_empty(), "library code panicked: {p:?}");
}

fn req(message: &str) -> EchoRequest {
    EchoRequest {
        message: message.into(),
        count: 0,
        sleep_ms: 0,
    }
}

/// A call that must succeed and echo `text` back (proves the connection still serves).
async fn assert_echo(c: &mut H2, addr: std::net::SocketAddr, text: &str) {
    let r = call(
        c,
        grpc_head(addr, "/test.Echo/Unary", &[]),
        &[frame(&req(text))],
    )
    .await;
    assert_eq!(
        r.grpc_status().as_deref(),
        Some("0"),
        "{:?}",
        r.grpc_message()
    );
    let m: EchoReply = decode(&r.messages()[0].1);
    assert_eq!(m.message, text);
}

// ------------------------------------------------------------------ server side

#[tokio::test]
async fn server_accepts_the_largest_grpc_timeouts() {
    watch_panics();
    // 99999999H is ~11,400 years: Instant::now() + that overflows; the deadline must
    // saturate instead of panicking the call task.
    let srv = start(|b| b).await;
    let mut c = connect(srv.addr).await;
    for t in [
        "99999999H",
        "99999999M",
        "99999999S",
        "99999999m",
        "99999999u",
        "99999999n",
    ] {
        let r = call(
            &mut c,
            grpc_head(srv.addr, "/test.Echo/Unary", &[("grpc-timeout", t)]),
            &[frame(&req(t))],
        )
        .await;
        assert_eq!(
            r.grpc_status().as_deref(),
            Some("0"),
            "{t}: {:?} {:?}",
            r.grpc_message(),
            r.error
        );
        let m: EchoReply = decode(&r.messages()[0].1);
        assert_eq!(m.message, t);
    }
    assert_echo(&mut c, srv.addr, "after").await;
    assert_no_library_panics();
}

#[tokio::test]
async fn server_builder_accepts_duration_max_everywhere() {
    watch_panics();
    // Duration::MAX as "never" for every server duration: the connection task adds
    // these to Instant::now() (age, idle, grace, keepalive, ping policy) and the
    // shutdown path adds a second to the cancel grace. None may panic.
    let mut srv = start(|b| {
        b.max_connection_idle(Duration::MAX)
            .max_connection_age(Duration::MAX)
            .max_connection_age_grace(Duration::MAX)
            .keepalive_time(Duration::MAX)
            .keepalive_timeout(Duration::MAX)
            .permit_keepalive_time(Duration::MAX)
            .permit_keepalive_without_calls(true)
            .handler_cancel_grace(Duration::MAX)
            .grace_period(Duration::from_millis(100))
    })
    .await;
    let tcp = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let (mut c, mut conn) = h2::client::handshake(tcp).await.unwrap();
    let mut pp = conn.ping_pong().unwrap();
    tokio::spawn(conn);
    assert_echo(&mut c, srv.addr, "one").await;
    // Two pings: the second is checked against last_ping + permit_keepalive_time.
    for _ in 0..2 {
        tokio::time::timeout(Duration::from_secs(5), pp.ping(h2::Ping::opaque()))
            .await
            .unwrap()
            .unwrap();
    }
    assert_echo(&mut c, srv.addr, "two").await;
    // A call stuck past the shutdown grace period: shutdown then waits
    // cancel_grace + 1 s, which must saturate rather than overflow.
    let mut stuck = req("stuck");
    stuck.sleep_ms = 60_000;
    let mut c2 = c.clone();
    let addr = srv.addr;
    let stuck = tokio::spawn(async move {
        call(
            &mut c2,
            grpc_head(addr, "/test.Echo/Unary", &[]),
            &[frame(&stuck)],
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    srv.shutdown();
    // The handler ignores cancellation for up to a minute; serve() waits for the
    // (huge) cancel grace. What matters is that it is still waiting, not panicked.
    let handle = &mut srv.handle;
    let early = tokio::time::timeout(Duration::from_millis(500), handle).await;
    match early {
        Err(_) => {}         // still draining: fine
        Ok(Ok(Ok(()))) => {} // finished cleanly: fine too
        Ok(other) => panic!("serve ended badly: {other:?}"),
    }
    stuck.abort();
    assert_no_library_panics();
}

#[tokio::test]
async fn compressed_bomb_is_resource_exhausted_and_only_that_call_fails() {
    watch_panics();
    // 64 MiB of zeros gzip to ~64 KiB; the default 4 MiB receive limit applies to the
    // decompressed size.
    let srv = start(|b| b).await;
    let mut c = connect(srv.addr).await;
    let mut payload = vec![0x0a, 0x80, 0x80, 0x80, 0x20]; // field 1, length 64 MiB
    payload.resize(5 + (64 << 20), b'a');
    let bomb = gzip(&payload);
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    let started = std::time::Instant::now();
    let r = call(
        &mut c,
        grpc_head(srv.addr, "/test.Echo/Unary", &[("grpc-encoding", "gzip")]),
        &[frame_raw(1, &bomb)],
    )
    .await;
    assert_eq!(
        r.grpc_status().as_deref(),
        Some("8"),
        "{:?}",
        r.grpc_message()
    );
    assert!(
        r.grpc_message()
            .unwrap()
            .contains("decompressed message larger"),
        "{:?}",
        r.grpc_message()
    );
    // Stopping at the limit is quick; inflating all 64 MiB would not change the
    // answer but would take longer.
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_echo(&mut c, srv.addr, "still here").await;
    assert_no_library_panics();
}

#[tokio::test]
async fn length_prefix_ffffffff_with_unlimited_receive_size_ends_only_that_call() {
    watch_panics();
    // With the receive limit lifted, a 4 GiB length prefix is legal; the server must
    // wait for the bytes (not allocate 4 GiB on the claim) and the call ends when the
    // client gives up: INTERNAL for a truncated message.
    let srv = start(|b| b.max_receive_message_size(usize::MAX)).await;
    let mut c = connect(srv.addr).await;
    let r = call(
        &mut c,
        grpc_head(srv.addr, "/test.Echo/Unary", &[]),
        &[Bytes::from_static(&[0, 0xff, 0xff, 0xff, 0xff, 1, 2, 3])],
    )
    .await;
    assert_eq!(
        r.grpc_status().as_deref(),
        Some("13"),
        "{:?}",
        r.grpc_message()
    );
    assert!(
        r.grpc_message().unwrap().contains("middle of a message"),
        "{:?}",
        r.grpc_message()
    );
    assert_echo(&mut c, srv.addr, "ok").await;
    assert_no_library_panics();
}

#[tokio::test]
async fn malformed_paths_are_unimplemented_trailers_only() {
    watch_panics();
    let srv = start(|b| b).await;
    let mut c = connect(srv.addr).await;
    for path in [
        "/test.Echo",
        "/test.Echo/",
        "//Unary",
        "/",
        "/test.Echo/Unary/extra",
        "/test.Echo/unary",
        "/%FF/%00",
    ] {
        let r = call(&mut c, grpc_head(srv.addr, path, &[]), &[frame(&req("x"))]).await;
        assert!(r.headers_end_stream, "{path}");
        assert_eq!(
            r.grpc_status().as_deref(),
            Some("12"),
            "{path}: {:?}",
            r.grpc_message()
        );
        assert!(!r.grpc_message().unwrap_or_default().is_empty(), "{path}");
    }
    assert_echo(&mut c, srv.addr, "ok").await;
    assert_no_library_panics();
}

#[tokio::test]
async fn odd_request_metadata_is_handled_per_call() {
    watch_panics();
    let srv = start(|b| b).await;
    let mut c = connect(srv.addr).await;
    // Undecodable -bin values fail the call with INTERNAL.
    for bad in ["!!!", "a", "YQ=x", "Y Q"] {
        let r = call(
            &mut c,
            grpc_head(srv.addr, "/test.Echo/Unary", &[("x-k-bin", bad)]),
            &[frame(&req("x"))],
        )
        .await;
        assert_eq!(
            r.grpc_status().as_deref(),
            Some("13"),
            "{bad}: {:?}",
            r.grpc_message()
        );
        assert!(
            r.grpc_message().unwrap().contains("metadata"),
            "{bad}: {:?}",
            r.grpc_message()
        );
    }
    // Non-ASCII bytes (obs-text) in an ASCII key's value: HTTP/2 allows them, gRPC
    // does not; the value is skipped and the call goes on.
    let mut head = grpc_head(srv.addr, "/test.Echo/Unary", &[]);
    head.headers_mut()
        .insert("x-latin", HeaderValue::from_bytes(b"caf\xe9 \xff").unwrap());
    let r = call(&mut c, head, &[frame(&req("latin"))]).await;
    assert_eq!(
        r.grpc_status().as_deref(),
        Some("0"),
        "{:?}",
        r.grpc_message()
    );
    // An invalid grpc-encoding value (not a token we know) is UNIMPLEMENTED.
    let r = call(
        &mut c,
        grpc_head(
            srv.addr,
            "/test.Echo/Unary",
            &[("grpc-encoding", "gzip, br")],
        ),
        &[frame(&req("x"))],
    )
    .await;
    assert_eq!(
        r.grpc_status().as_deref(),
        Some("12"),
        "{:?}",
        r.grpc_message()
    );
    assert_echo(&mut c, srv.addr, "ok").await;
    assert_no_library_panics();
}

// ------------------------------------------------------------------ client side

mod raw {
    pub use super::common::raw_h2::*;
}

const PATH: &str = "/test.Echo/Unary";

/// A raw server whose answer depends on the request's `x-case` header.
async fn odd_server() -> raw::RawServer {
    raw::raw_server(raw::handler(
        |req: http::Request<h2::RecvStream>, mut send| async move {
            let case = req
                .headers()
                .get("x-case")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            let timeout = req
                .headers()
                .get("grpc-timeout")
                .map(|v| v.to_str().unwrap().to_string());
            let mut body = req.into_body();
            let _ = raw::read_body(&mut body).await;
            let mut t = http::HeaderMap::new();
            let mut frames = vec![];
            match case.as_str() {
                "status-999" => t.insert("grpc-status", HeaderValue::from_static("999")),
                "status-neg" => t.insert("grpc-status", HeaderValue::from_static("-1")),
                "status-huge" => t.insert(
                    "grpc-status",
                    HeaderValue::from_static("99999999999999999999999"),
                ),
                "bad-utf8" => {
                    t.insert("grpc-status", HeaderValue::from_static("3"));
                    t.insert(
                        "grpc-message",
                        HeaderValue::from_bytes(b"bad \xff\xfe %FF%C3 end").unwrap(),
                    )
                }
                "long-message" => {
                    t.insert("grpc-status", HeaderValue::from_static("3"));
                    t.insert(
                        "grpc-message",
                        HeaderValue::from_str(&"%41".repeat(2000)).unwrap(),
                    )
                }
                "details-garbage" => {
                    t.insert("grpc-status", HeaderValue::from_static("9"));
                    // Valid base64 of bytes that are not a google.rpc.Status.
                    t.insert(
                        "grpc-status-details-bin",
                        HeaderValue::from_static("//////8"),
                    )
                }
                "details-bad-base64" => {
                    t.insert("grpc-status", HeaderValue::from_static("9"));
                    t.insert("grpc-status-details-bin", HeaderValue::from_static("!!!"))
                }
                "bomb" => {
                    let mut payload = vec![0x0a, 0x80, 0x80, 0x80, 0x20]; // field 1, 64 MiB
                    payload.resize(5 + (64 << 20), b'a');
                    frames.push(raw::frame(1, &gzip(&payload)));
                    t.insert("grpc-status", HeaderValue::from_static("0"))
                }
                "prefix-ffffffff" => {
                    frames.push(Bytes::from_static(&[0, 0xff, 0xff, 0xff, 0xff, 1, 2, 3]));
                    t.insert("grpc-status", HeaderValue::from_static("0"))
                }
                "slow" => {
                    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                    t.insert("grpc-status", HeaderValue::from_static("0"))
                }
                _ => {
                    let text = format!("timeout={}", timeout.unwrap_or_default());
                    frames.push(raw::frame_msg(&raw::echo(&text)));
                    t.insert("grpc-status", HeaderValue::from_static("0"))
                }
            };
            let mut resp = raw::response_headers();
            if case == "bomb" {
                resp.headers_mut()
                    .insert("grpc-encoding", HeaderValue::from_static("gzip"));
            }
            let Ok(mut s) = send.send_response(resp, false) else {
                return;
            };
            for f in frames {
                let _ = s.send_data(f, false);
            }
            let _ = s.send_trailers(t);
        },
    ))
    .await
}

async fn odd_call(ch: &Channel, case: &str) -> Result<raw::Echo, grpc_runtime::Status> {
    let mut r = Request::new(raw::echo("x"));
    r.metadata_mut().insert("x-case", case).unwrap();
    ch.unary::<raw::Echo, raw::Echo>(PATH, r)
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn client_accepts_duration_max_and_absurd_backoff_settings() {
    watch_panics();
    let srv = odd_server().await;
    let ch = Channel::builder(format!("http://{}", srv.addr))
        .timeout(Duration::MAX)
        .connect_timeout(Duration::MAX)
        .keepalive_time(Duration::MAX)
        .keepalive_timeout(Duration::MAX)
        .idle_timeout(Some(Duration::MAX))
        .backoff(BackoffConfig {
            base_delay: Duration::MAX,
            multiplier: f64::INFINITY,
            jitter: f64::NAN,
            max_delay: Duration::MAX,
        })
        .connect()
        .await
        .unwrap();
    // Channel default timeout of Duration::MAX: the deadline saturates (~100 years)
    // and the header carries a valid 8-digit value for what is left of it.
    let sent = |text: String| {
        let v = text.strip_prefix("timeout=").unwrap().to_string();
        let d = grpc_runtime::timeout::decode_timeout(v.as_bytes())
            .unwrap_or_else(|e| panic!("{v}: {e}"));
        assert!(d >= Duration::from_secs(99 * 365 * 86_400), "{v}");
    };
    sent(odd_call(&ch, "").await.unwrap().text);
    // Per-call Duration::MAX too.
    let mut r = Request::new(raw::echo("x"));
    r.set_timeout(Duration::MAX);
    sent(
        ch.unary::<raw::Echo, raw::Echo>(PATH, r)
            .await
            .unwrap()
            .into_inner()
            .text,
    );
    // A call in flight wakes the keepalive task, which adds keepalive_time to the
    // last read.
    let mut slow = Request::new(raw::echo("x"));
    slow.metadata_mut().insert("x-case", "slow").unwrap();
    let _ = ch.unary::<raw::Echo, raw::Echo>(PATH, slow).await;
    // A failed connection attempt grows the backoff by `multiplier` and jitters it.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let lazy = Channel::builder(format!("http://{dead}"))
        .backoff(BackoffConfig {
            base_delay: Duration::MAX,
            multiplier: f64::INFINITY,
            jitter: f64::NAN,
            max_delay: Duration::MAX,
        })
        .connect_lazy()
        .unwrap();
    let e = lazy
        .unary::<raw::Echo, raw::Echo>(PATH, Request::new(raw::echo("x")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_no_library_panics();
}

#[tokio::test]
async fn client_reads_odd_status_trailers_without_failing_the_connection() {
    watch_panics();
    let srv = odd_server().await;
    let ch = Channel::builder(format!("http://{}", srv.addr))
        .connect()
        .await
        .unwrap();

    // Out-of-range but numeric: UNKNOWN (statuscodes.md); not a number: INTERNAL.
    let e = odd_call(&ch, "status-999").await.unwrap_err();
    assert_eq!(e.code(), Code::Unknown, "{e:?}");
    for case in ["status-neg", "status-huge"] {
        let e = odd_call(&ch, case).await.unwrap_err();
        assert_eq!(e.code(), Code::Internal, "{case}: {e:?}");
        assert!(e.message().contains("grpc-status"), "{case}: {e:?}");
    }
    // Invalid UTF-8, raw or percent-encoded, decodes lossily: never an error.
    let e = odd_call(&ch, "bad-utf8").await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().starts_with("bad ") && e.message().ends_with(" end"),
        "{:?}",
        e.message()
    );
    assert!(e.message().contains('\u{FFFD}'), "{:?}", e.message());
    // A long (6000-byte, percent-encoded) message arrives whole.
    let e = odd_call(&ch, "long-message").await.unwrap_err();
    assert_eq!(e.message(), "A".repeat(2000));
    // Details that are not a google.rpc.Status: the code and message still stand;
    // decoding the details reports an error rather than panicking.
    let e = odd_call(&ch, "details-garbage").await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.rpc_status().is_err(), "{:?}", e.rpc_status());
    assert!(e.error_details().is_err());
    // Undecodable base64 in details: ignored, the status still stands.
    let e = odd_call(&ch, "details-bad-base64").await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.details().is_empty());

    assert_eq!(odd_call(&ch, "").await.unwrap().text, "timeout=");
    assert_eq!(srv.connections.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_no_library_panics();
}

#[tokio::test]
async fn client_response_bomb_and_huge_prefix_are_resource_exhausted() {
    watch_panics();
    let srv = odd_server().await;
    let ch = Channel::builder(format!("http://{}", srv.addr))
        .accept_compressed(grpc_runtime::EncodingSet::none().with(CompressionEncoding::Gzip))
        .connect()
        .await
        .unwrap();
    let e = odd_call(&ch, "bomb").await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    let e = odd_call(&ch, "prefix-ffffffff").await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    // With the limit lifted, the same prefix is a truncated message: INTERNAL.
    let unlimited = Channel::builder(format!("http://{}", srv.addr))
        .max_decoding_message_size(usize::MAX)
        .connect()
        .await
        .unwrap();
    let e = odd_call(&unlimited, "prefix-ffffffff").await.unwrap_err();
    assert_eq!(e.code(), Code::Internal, "{e:?}");
    assert_eq!(odd_call(&ch, "").await.unwrap().text, "timeout=");
    assert_no_library_panics();
}

#[tokio::test]
async fn oversized_status_from_a_handler_is_cut_down_not_fatal() {
    // A handler's status with a 100 KB message and 1 MB of details cannot fit the
    // client's 8 KiB header list. Sent as is, the client's h2 answers with GOAWAY
    // (ENHANCE_YOUR_CALM, header_list_way_too_large), failing every call on the
    // connection. The server sends the code and the start of the message instead.
    watch_panics();
    use grpc_runtime::server::{interceptor_fn, CallHead, Next};
    let srv = start(|b| {
        b.add_interceptor(interceptor_fn(|head: CallHead, next: Next| async move {
            if head.metadata.get("x-huge").is_some() {
                return grpc_runtime::Status::with_details_bytes(
                    Code::Aborted,
                    "m".repeat(100_000),
                    vec![7u8; 1 << 20],
                );
            }
            next.run(head).await
        }))
    })
    .await;
    let ch = Channel::builder(format!("http://{}", srv.addr))
        .connect()
        .await
        .unwrap();
    // A call in flight on the same connection throughout.
    let mut slow = req("survivor");
    slow.sleep_ms = 300;
    let ch2 = ch.clone();
    let survivor = tokio::spawn(async move {
        ch2.unary::<EchoRequest, EchoReply>("/test.Echo/Unary", Request::new(slow))
            .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    for _ in 0..2 {
        let mut r = Request::new(req("x"));
        r.metadata_mut().insert("x-huge", "1").unwrap();
        let e = ch
            .unary::<EchoRequest, EchoReply>("/test.Echo/Unary", r)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Aborted, "{e:?}");
        assert!(e.message().starts_with(&"m".repeat(512)), "{e:?}");
        assert!(
            e.message()
                .ends_with("[truncated: status and trailers exceeded 8192 bytes]"),
            "{e:?}"
        );
        assert!(e.details().is_empty());
        let ok = ch
            .unary::<EchoRequest, EchoReply>("/test.Echo/Unary", Request::new(req("fine")))
            .await
            .unwrap();
        assert_eq!(ok.into_inner().message, "fine");
    }
    assert_eq!(
        survivor.await.unwrap().unwrap().into_inner().message,
        "survivor"
    );
    // A status that fits goes out whole.
    let e = ch
        .unary::<EchoRequest, EchoReply>("/test.Echo/Unary", Request::new(req("fail:10")))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::Aborted, "failed as asked: 100% sure\n")
    );
    assert_no_library_panics();
}

#[tokio::test]
async fn oversized_response_headers_end_only_that_call_with_internal() {
    // The echo handler copies x-echo into a response header. With the server's own
    // limit raised, a 60 KB value gets in; the response headers carrying it would be
    // far over the client's 8 KiB limit, so the server ends the call with INTERNAL
    // (Trailers-Only) instead of sending them.
    watch_panics();
    let srv = start(|b| b.max_header_list_size(1 << 20)).await;
    let ch = Channel::builder(format!("http://{}", srv.addr))
        .connect()
        .await
        .unwrap();
    let mut slow = req("survivor");
    slow.sleep_ms = 300;
    let ch2 = ch.clone();
    let survivor = tokio::spawn(async move {
        ch2.unary::<EchoRequest, EchoReply>("/test.Echo/Unary", Request::new(slow))
            .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut r = Request::new(req("x"));
    r.metadata_mut()
        .insert("x-echo", "v".repeat(60_000))
        .unwrap();
    let e = ch
        .unary::<EchoRequest, EchoReply>("/test.Echo/Unary", r)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Internal, "{e:?}");
    assert!(e.message().contains("response headers too large"), "{e:?}");
    assert_eq!(
        survivor.await.unwrap().unwrap().into_inner().message,
        "survivor"
    );
    let ok = ch
        .unary::<EchoRequest, EchoReply>("/test.Echo/Unary", Request::new(req("fine")))
        .await
        .unwrap();
    assert_eq!(ok.into_inner().message, "fine");
    assert_no_library_panics();
}
