//! The client against a RAW h2 server: the wire is the subject.

mod common;

use std::future::poll_fn;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::raw_h2::*;
use grpc_runtime::{Channel, Code, Request, Status};
use http::HeaderMap;
use tokio::sync::mpsc;

const PATH: &str = "/test.Echo/Unary";

async fn channel(addr: std::net::SocketAddr) -> Channel {
    Channel::builder(format!("http://{addr}"))
        .connect()
        .await
        .unwrap()
}

/// A handler that answers every unary call with `reply` and OK trailers (+ metadata).
fn echo_handler() -> Handler {
    handler(|req: http::Request<h2::RecvStream>, send| async move {
        let mut body = req.into_body();
        let Ok(data) = read_body(&mut body).await else {
            return;
        };
        let frames = unframe(&data);
        let text = frames
            .iter()
            .map(|(_, p)| <Echo as prost::Message>::decode(&p[..]).unwrap().text)
            .collect::<Vec<_>>()
            .join("+");
        respond(send, vec![frame_msg(&echo(&format!("echo:{text}")))], 0, "").await;
    })
}

#[tokio::test]
async fn unary_request_headers_are_exact() {
    let srv = raw_server(handler(
        |req: http::Request<h2::RecvStream>, mut send| async move {
            let mut body = req.into_body();
            let data = read_body(&mut body).await.unwrap();
            let frames = unframe(&data);
            assert_eq!(frames.len(), 1);
            assert_eq!(frames[0].0, 0, "uncompressed flag");
            let msg = <Echo as prost::Message>::decode(&frames[0].1[..]).unwrap();
            let mut resp = response_headers();
            resp.headers_mut().insert("x-resp", "hv".parse().unwrap());
            let mut s = send.send_response(resp, false).unwrap();
            s.send_data(frame_msg(&echo(&msg.text)), false).unwrap();
            let mut t = trailers(0, "");
            t.insert("x-trailer", "tv".parse().unwrap());
            s.send_trailers(t).unwrap();
        },
    ))
    .await;
    let ch = channel(srv.addr).await;
    let mut req = Request::new(echo("hi"));
    req.metadata_mut().insert("x-one", "1").unwrap();
    req.metadata_mut().append("x-multi", "a").unwrap();
    req.metadata_mut().append("x-multi", "b").unwrap();
    req.metadata_mut()
        .insert_bin("x-raw-bin", Bytes::from_static(&[1, 2]))
        .unwrap();
    req.set_timeout(Duration::from_secs(3));
    let resp = ch.unary::<Echo, Echo>(PATH, req).await.unwrap();
    assert_eq!(resp.metadata().get("x-resp"), Some("hv"));
    assert_eq!(resp.trailers().unwrap().get("x-trailer"), Some("tv"));
    assert_eq!(resp.get_ref().text, "hi");

    let reqs = srv.requests.lock().unwrap();
    let r = &reqs[0];
    assert_eq!(r.method, http::Method::POST);
    assert_eq!(r.uri.path(), PATH);
    assert_eq!(r.uri.scheme_str(), Some("http"));
    assert_eq!(r.uri.authority().unwrap().as_str(), srv.addr.to_string());
    let h = &r.headers;
    assert_eq!(h.get("te").unwrap(), "trailers");
    assert_eq!(h.get("content-type").unwrap(), "application/grpc");
    assert!(h
        .get("user-agent")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("grpc-rust/"));
    assert_eq!(
        h.get("grpc-accept-encoding").unwrap(),
        "identity,gzip,deflate,zstd"
    );
    assert!(
        h.get("grpc-encoding").is_none(),
        "no compression unless chosen and advertised"
    );
    let t = h.get("grpc-timeout").unwrap().to_str().unwrap();
    let (digits, unit) = t.split_at(t.len() - 1);
    assert!(
        !digits.is_empty() && digits.len() <= 8 && digits.bytes().all(|b| b.is_ascii_digit()),
        "{t}"
    );
    assert!("HMSmun".contains(unit), "{t}");
    let nanos: u64 = digits.parse::<u64>().unwrap()
        * match unit {
            "u" => 1_000,
            "m" => 1_000_000,
            "n" => 1,
            other => panic!("unexpected unit {other} for 3s"),
        };
    assert!(nanos <= 3_000_000_000 && nanos > 2_000_000_000, "{t}");
    assert_eq!(h.get("x-one").unwrap(), "1");
    let multi: Vec<_> = h
        .get_all("x-multi")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert_eq!(multi, vec!["a", "b"]);
    assert_eq!(
        h.get("x-raw-bin").unwrap(),
        "AQI",
        "-bin emitted unpadded base64"
    );
    // exactly these headers, nothing else
    let mut names: Vec<_> = h.keys().map(|k| k.as_str().to_string()).collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "content-type",
            "grpc-accept-encoding",
            "grpc-timeout",
            "te",
            "user-agent",
            "x-multi",
            "x-one",
            "x-raw-bin"
        ]
    );
}

#[tokio::test]
async fn trailers_only_response_gives_status_and_metadata() {
    let srv = raw_server(handler(|_req, mut send| async move {
        let mut resp = response_headers();
        let h = resp.headers_mut();
        h.insert("grpc-status", "5".parse().unwrap());
        h.insert("grpc-message", "no %E2%9C%93 such thing%".parse().unwrap());
        h.insert("x-why", "because".parse().unwrap());
        send.send_response(resp, true).unwrap();
    }))
    .await;
    let ch = channel(srv.addr).await;
    let err = ch
        .unary::<Echo, Echo>(PATH, Request::new(echo("x")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.message(), "no \u{2713} such thing%");
    assert_eq!(err.metadata().get("x-why"), Some("because"));
    // server streaming sees the same status as the first item
    let resp = ch
        .server_streaming::<Echo, Echo>(PATH, Request::new(echo("x")))
        .await
        .unwrap();
    let mut s = resp.into_inner();
    let err = s.message().await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn missing_grpc_status_maps_http_status() {
    let cases: &[(u16, Code)] = &[
        (400, Code::Internal),
        (401, Code::Unauthenticated),
        (403, Code::PermissionDenied),
        (404, Code::Unimplemented),
        (429, Code::Unavailable),
        (431, Code::Internal),
        (502, Code::Unavailable),
        (503, Code::Unavailable),
        (504, Code::Unavailable),
        (200, Code::Unknown),
        (500, Code::Unknown),
    ];
    let srv = raw_server(handler(
        |req: http::Request<h2::RecvStream>, mut send| async move {
            let status: u16 = req
                .headers()
                .get("x-status")
                .unwrap()
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            let resp = http::Response::builder().status(status).body(()).unwrap();
            // 200: Trailers-Only without grpc-status; others: with a body
            if status == 200 {
                send.send_response(resp, true).unwrap();
            } else {
                let mut s = send.send_response(resp, false).unwrap();
                let _ = s.send_data(Bytes::from_static(b"<html>error</html>"), true);
            }
        },
    ))
    .await;
    let ch = channel(srv.addr).await;
    for (http_status, code) in cases {
        let mut req = Request::new(echo("x"));
        req.metadata_mut()
            .insert("x-status", http_status.to_string())
            .unwrap();
        let err = ch.unary::<Echo, Echo>(PATH, req).await.unwrap_err();
        assert_eq!(err.code(), *code, "HTTP {http_status}: {err:?}");
    }
    // 200 with content-type but no trailers status at all (normal headers, then trailers without grpc-status)
}

#[tokio::test]
async fn rst_stream_codes_map_to_status() {
    let cases: &[(h2::Reason, Code)] = &[
        (h2::Reason::REFUSED_STREAM, Code::Unavailable),
        (h2::Reason::CANCEL, Code::Cancelled),
        (h2::Reason::ENHANCE_YOUR_CALM, Code::ResourceExhausted),
        (h2::Reason::INADEQUATE_SECURITY, Code::PermissionDenied),
        (h2::Reason::PROTOCOL_ERROR, Code::Internal),
        (h2::Reason::INTERNAL_ERROR, Code::Internal),
        (h2::Reason::FLOW_CONTROL_ERROR, Code::Internal),
    ];
    let srv = raw_server(handler(
        |req: http::Request<h2::RecvStream>, mut send| async move {
            let code: u32 = req
                .headers()
                .get("x-reason")
                .unwrap()
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            send.send_reset(h2::Reason::from(code));
        },
    ))
    .await;
    let ch = channel(srv.addr).await;
    for (reason, code) in cases {
        let mut req = Request::new(echo("x"));
        req.metadata_mut()
            .insert("x-reason", u32::from(*reason).to_string())
            .unwrap();
        let err = ch.unary::<Echo, Echo>(PATH, req).await.unwrap_err();
        assert_eq!(err.code(), *code, "{reason:?}: {err:?}");
    }
    // also mid-stream on a server-streaming call, after one message
    let srv = raw_server(handler(|_req, mut send| async move {
        let mut s = send.send_response(response_headers(), false).unwrap();
        s.send_data(frame_msg(&echo("one")), false).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        s.send_reset(h2::Reason::ENHANCE_YOUR_CALM);
    }))
    .await;
    let ch = channel(srv.addr).await;
    let mut s = ch
        .server_streaming::<Echo, Echo>(PATH, Request::new(echo("x")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.message().await.unwrap().unwrap().text, "one");
    assert_eq!(
        s.message().await.unwrap_err().code(),
        Code::ResourceExhausted
    );
}

/// A server that never answers and reports the RST_STREAM reason it receives.
async fn stalling_server(
    send_headers: bool,
) -> (RawServer, mpsc::UnboundedReceiver<(Instant, h2::Reason)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let tx = Arc::new(Mutex::new(tx));
    let srv = raw_server(handler(
        move |req: http::Request<h2::RecvStream>, mut send| {
            let tx = tx.clone();
            async move {
                let _body = req.into_body();
                let mut stream = if send_headers {
                    let mut s = send.send_response(response_headers(), false).unwrap();
                    s.send_data(frame_msg(&echo("first")), false).unwrap();
                    Some(s)
                } else {
                    None
                };
                let reason = match stream.as_mut() {
                    Some(s) => poll_fn(|cx| s.poll_reset(cx)).await,
                    None => poll_fn(|cx| send.poll_reset(cx)).await,
                };
                if let Ok(r) = reason {
                    let _ = tx.lock().unwrap().send((Instant::now(), r));
                }
            }
        },
    ))
    .await;
    (srv, rx)
}

#[tokio::test]
async fn deadline_gives_deadline_exceeded_and_resets_with_cancel() {
    let (srv, mut resets) = stalling_server(false).await;
    let ch = channel(srv.addr).await;
    let mut req = Request::new(echo("x"));
    req.set_timeout(Duration::from_millis(200));
    let t0 = Instant::now();
    let err = ch.unary::<Echo, Echo>(PATH, req).await.unwrap_err();
    let took = t0.elapsed();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(
        took >= Duration::from_millis(190) && took < Duration::from_secs(2),
        "{took:?}"
    );
    let (_, reason) = tokio::time::timeout(Duration::from_secs(2), resets.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reason, h2::Reason::CANCEL);

    // server-streaming: the deadline hits while reading messages
    let (srv, mut resets) = stalling_server(true).await;
    let ch = channel(srv.addr).await;
    let mut req = Request::new(echo("x"));
    req.set_timeout(Duration::from_millis(200));
    let mut s = ch
        .server_streaming::<Echo, Echo>(PATH, req)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.message().await.unwrap().unwrap().text, "first");
    let err = s.message().await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    let (_, reason) = tokio::time::timeout(Duration::from_secs(2), resets.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reason, h2::Reason::CANCEL);

    // bidi with a request stream that never ends: still DEADLINE_EXCEEDED, never CANCELLED
    let (srv, mut resets) = stalling_server(false).await;
    let ch = channel(srv.addr).await;
    let mut req = Request::new(futures_util::stream::pending::<Echo>());
    req.set_timeout(Duration::from_millis(150));
    // The call returns once its request is under way; the deadline ends the wait for
    // the response head.
    let t0 = Instant::now();
    let mut s = ch
        .bidi_streaming::<_, Echo, Echo>(PATH, req)
        .await
        .unwrap()
        .into_inner();
    assert!(
        t0.elapsed() < Duration::from_millis(150),
        "{:?}",
        t0.elapsed()
    );
    let err = s.message().await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded);
    let (_, reason) = tokio::time::timeout(Duration::from_secs(2), resets.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reason, h2::Reason::CANCEL);
}

#[tokio::test]
async fn dropping_a_call_resets_the_stream_with_cancel() {
    // unary future dropped while waiting
    let (srv, mut resets) = stalling_server(false).await;
    let ch = channel(srv.addr).await;
    let call = tokio::spawn({
        let ch = ch.clone();
        async move { ch.unary::<Echo, Echo>(PATH, Request::new(echo("x"))).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    call.abort();
    let (_, reason) = tokio::time::timeout(Duration::from_secs(2), resets.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reason, h2::Reason::CANCEL);

    // response Streaming dropped after the first message
    let (srv, mut resets) = stalling_server(true).await;
    let ch = channel(srv.addr).await;
    let mut s = ch
        .server_streaming::<Echo, Echo>(PATH, Request::new(echo("x")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.message().await.unwrap().unwrap().text, "first");
    drop(s);
    let (_, reason) = tokio::time::timeout(Duration::from_secs(2), resets.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reason, h2::Reason::CANCEL);

    // bidi: Streaming dropped while the request stream is still open
    let (srv, mut resets) = stalling_server(true).await;
    let ch = channel(srv.addr).await;
    let (_tx, rx) = mpsc::unbounded_channel::<Echo>();
    let reqs =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    let mut s = ch
        .bidi_streaming::<_, Echo, Echo>(PATH, Request::new(reqs))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.message().await.unwrap().unwrap().text, "first");
    drop(s);
    let (_, reason) = tokio::time::timeout(Duration::from_secs(2), resets.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reason, h2::Reason::CANCEL);
}

#[tokio::test]
async fn response_in_unknown_encoding_is_internal() {
    let srv = raw_server(handler(|_req, mut send| async move {
        let mut resp = response_headers();
        resp.headers_mut()
            .insert("grpc-encoding", "snappy".parse().unwrap());
        let mut s = send.send_response(resp, false).unwrap();
        let _ = s.send_data(frame(1, b"\x01\x02\x03"), false);
        let _ = s.send_trailers(trailers(0, ""));
    }))
    .await;
    let ch = channel(srv.addr).await;
    let err = ch
        .unary::<Echo, Echo>(PATH, Request::new(echo("x")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err:?}");
    assert!(err.message().contains("snappy"), "{err:?}");
}

#[tokio::test]
async fn oversize_response_is_resource_exhausted() {
    let srv = raw_server(handler(
        |req: http::Request<h2::RecvStream>, send| async move {
            let size: usize = req
                .headers()
                .get("x-size")
                .unwrap()
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            let m = Echo {
                text: String::new(),
                blob: vec![7u8; size],
            };
            respond(send, vec![frame_msg(&m)], 0, "").await;
        },
    ))
    .await;
    let ch = channel(srv.addr).await;
    let call = |size: usize| {
        let ch = ch.clone();
        async move {
            let mut req = Request::new(echo("x"));
            req.metadata_mut()
                .insert("x-size", size.to_string())
                .unwrap();
            ch.unary::<Echo, Echo>(PATH, req).await
        }
    };
    // just under the 4 MiB default passes, over it fails
    assert_eq!(
        call(4 * 1024 * 1024 - 16)
            .await
            .unwrap()
            .get_ref()
            .blob
            .len(),
        4 * 1024 * 1024 - 16
    );
    let err = call(4 * 1024 * 1024 + 1).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    // the connection is still fine for other calls
    assert!(call(10).await.is_ok());
    // configured limit
    let small = Channel::builder(format!("http://{}", srv.addr))
        .max_decoding_message_size(100)
        .connect()
        .await
        .unwrap();
    let mut req = Request::new(echo("x"));
    req.metadata_mut().insert("x-size", "200").unwrap();
    assert_eq!(
        small
            .unary::<Echo, Echo>(PATH, req)
            .await
            .unwrap_err()
            .code(),
        Code::ResourceExhausted
    );
}

#[tokio::test]
async fn oversize_request_fails_locally_with_resource_exhausted() {
    let srv = raw_server(echo_handler()).await;
    let ch = Channel::builder(format!("http://{}", srv.addr))
        .max_encoding_message_size(64)
        .connect()
        .await
        .unwrap();
    let big = Echo {
        text: String::new(),
        blob: vec![1; 100],
    };
    let err = ch
        .unary::<Echo, Echo>(PATH, Request::new(big.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert_eq!(
        srv.requests.lock().unwrap().len(),
        0,
        "nothing reached the server"
    );
    // client streaming: the second message is too large -> RESOURCE_EXHAUSTED (not CANCELLED)
    let reqs = futures_util::stream::iter(vec![echo("small"), big.clone()]);
    let err = ch
        .client_streaming::<_, Echo, Echo>(PATH, Request::new(reqs))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    // bidi too
    let srv2 = raw_server(handler(
        |req: http::Request<h2::RecvStream>, mut send| async move {
            let mut r = FrameReader::new(req.into_body());
            let mut s = send.send_response(response_headers(), false).unwrap();
            while let Some((_, p)) = r.next().await {
                let _ = s.send_data(frame(0, &p), false);
            }
            let _ = s.send_trailers(trailers(0, ""));
        },
    ))
    .await;
    let ch = Channel::builder(format!("http://{}", srv2.addr))
        .max_encoding_message_size(64)
        .connect()
        .await
        .unwrap();
    let reqs = futures_util::stream::iter(vec![echo("small"), big]);
    // the failure may come before the response headers (the call fails) or after (the stream fails)
    let mut last = None;
    let mut s = match ch
        .bidi_streaming::<_, Echo, Echo>(PATH, Request::new(reqs))
        .await
    {
        Ok(r) => r.into_inner(),
        Err(e) => {
            assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
            return;
        }
    };
    loop {
        match s.message().await {
            Ok(Some(m)) => assert_eq!(m.text, "small"),
            Ok(None) => break,
            Err(e) => {
                last = Some(e);
                break;
            }
        }
    }
    assert_eq!(last.expect("must fail").code(), Code::ResourceExhausted);
}

#[tokio::test]
async fn unpadded_bin_metadata_in_response() {
    let srv = raw_server(handler(|_req, mut send| async move {
        let mut resp = response_headers();
        resp.headers_mut()
            .insert("x-data-bin", "AQI".parse().unwrap()); // [1, 2] unpadded
        resp.headers_mut()
            .append("x-data-bin", "AwQ=".parse().unwrap()); // [3, 4] padded
        let mut s = send.send_response(resp, false).unwrap();
        s.send_data(frame_msg(&echo("ok")), false).unwrap();
        let mut t = trailers(0, "");
        t.insert("x-t-bin", "BQYH,CA".parse().unwrap()); // comma-joined: [5,6,7] and [8]
        s.send_trailers(t).unwrap();
    }))
    .await;
    let ch = channel(srv.addr).await;
    let resp = ch
        .unary::<Echo, Echo>(PATH, Request::new(echo("x")))
        .await
        .unwrap();
    let vals: Vec<_> = resp
        .metadata()
        .get_all_bin("x-data-bin")
        .map(|b| b.to_vec())
        .collect();
    assert_eq!(vals, vec![vec![1, 2], vec![3, 4]]);
    let t: Vec<_> = resp
        .trailers()
        .unwrap()
        .get_all_bin("x-t-bin")
        .map(|b| b.to_vec())
        .collect();
    assert_eq!(t, vec![vec![5, 6, 7], vec![8]]);
}

#[tokio::test]
async fn bidi_interleaves_send_and_receive() {
    let srv = raw_server(handler(
        |req: http::Request<h2::RecvStream>, mut send| async move {
            let mut r = FrameReader::new(req.into_body());
            let mut s = send.send_response(response_headers(), false).unwrap();
            let mut n = 0;
            while let Some((_, p)) = r.next().await {
                let m = <Echo as prost::Message>::decode(&p[..]).unwrap();
                n += 1;
                s.send_data(frame_msg(&echo(&format!("re:{}", m.text))), false)
                    .unwrap();
            }
            let mut t = trailers(0, "");
            t.insert("x-count", n.to_string().parse().unwrap());
            s.send_trailers(t).unwrap();
        },
    ))
    .await;
    let ch = channel(srv.addr).await;
    let (tx, rx) = mpsc::unbounded_channel::<Echo>();
    let reqs =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    tx.send(echo("0")).unwrap();
    let resp = ch
        .bidi_streaming::<_, Echo, Echo>(PATH, Request::new(reqs))
        .await
        .unwrap();
    let mut s = resp.into_inner();
    for i in 0..5 {
        // the reply to message i arrives before message i+1 is even produced
        let m = s.message().await.unwrap().unwrap();
        assert_eq!(m.text, format!("re:{i}"));
        if i < 4 {
            tx.send(echo(&(i + 1).to_string())).unwrap();
        }
    }
    drop(tx); // half-close
    assert!(s.message().await.unwrap().is_none());
    assert_eq!(s.trailers().unwrap().get("x-count"), Some("5"));
    assert!(s.status().unwrap().is_ok());
}

#[tokio::test]
async fn client_streaming_sends_all_then_half_closes() {
    let srv = raw_server(echo_handler()).await;
    let ch = channel(srv.addr).await;
    let reqs = futures_util::stream::iter((0..100).map(|i| echo(&i.to_string())));
    let resp = ch
        .client_streaming::<_, Echo, Echo>(PATH, Request::new(reqs))
        .await
        .unwrap();
    let expect = (0..100)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join("+");
    assert_eq!(resp.get_ref().text, format!("echo:{expect}"));
    // empty request stream: just an empty DATA frame with END_STREAM
    let resp = ch
        .client_streaming::<_, Echo, Echo>(PATH, Request::new(futures_util::stream::empty()))
        .await
        .unwrap();
    assert_eq!(resp.get_ref().text, "echo:");
}

#[tokio::test]
async fn ready_request_messages_share_data_frames_and_the_last_carries_end_stream() {
    // Counts the DATA frames of each request and whether an empty frame carried END_STREAM.
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, usize, bool)>();
    let srv = raw_server(handler(move |req: http::Request<h2::RecvStream>, send| {
        let tx = tx.clone();
        async move {
            let mut body = req.into_body();
            let (mut frames, mut bytes, mut empty_end) = (0, 0, false);
            while let Some(chunk) = body.data().await {
                let Ok(c) = chunk else { return };
                let _ = body.flow_control().release_capacity(c.len());
                empty_end = c.is_empty();
                frames += 1;
                bytes += c.len();
            }
            let _ = tx.send((frames, bytes, empty_end));
            respond(send, vec![frame_msg(&echo("ok"))], 0, "").await;
        }
    }))
    .await;
    let ch = channel(srv.addr).await;
    // 100 messages of ~210 bytes, all ready at once: far fewer frames than messages
    let reqs =
        futures_util::stream::iter((0..100).map(|i| echo(&format!("{i:03}{}", "x".repeat(200)))));
    ch.client_streaming::<_, Echo, Echo>(PATH, Request::new(reqs))
        .await
        .unwrap();
    let (frames, bytes, empty_end) = rx.recv().await.unwrap();
    // 5-byte prefix + tag + 2-byte length + 203 characters
    assert_eq!(bytes, 100 * (5 + 1 + 2 + 203));
    assert!(frames <= 3, "{frames} DATA frames for 100 ready messages");
    assert!(
        !empty_end,
        "END_STREAM should ride on the last message's frame"
    );
    // a stream that yields one message at a time still sends each at once
    let (mtx, mrx) = mpsc::channel::<Echo>(1);
    let reqs =
        futures_util::stream::unfold(
            mrx,
            |mut rx| async move { rx.recv().await.map(|m| (m, rx)) },
        );
    let call = tokio::spawn({
        let ch = ch.clone();
        async move {
            ch.client_streaming::<_, Echo, Echo>(PATH, Request::new(reqs))
                .await
        }
    });
    for i in 0..3 {
        mtx.send(echo(&i.to_string())).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(mtx);
    call.await.unwrap().unwrap();
    let (frames, _, empty_end) = rx.recv().await.unwrap();
    assert_eq!(
        (frames, empty_end),
        (4, true),
        "3 messages sent apart, then the half-close"
    );
}

#[tokio::test]
async fn large_client_stream_respects_flow_control() {
    // 8 MiB of requests against a server with a 64 KiB window that reads slowly
    let srv = raw_server(echo_handler()).await;
    let ch = channel(srv.addr).await;
    let reqs = futures_util::stream::iter((0..8).map(|_| Echo {
        text: "b".into(),
        blob: vec![3; 1024 * 1024],
    }));
    let resp = ch
        .client_streaming::<_, Echo, Echo>(PATH, Request::new(reqs))
        .await
        .unwrap();
    assert_eq!(resp.get_ref().text, "echo:b+b+b+b+b+b+b+b");
}

#[tokio::test]
async fn unary_cardinality_violations_are_unimplemented() {
    let srv = raw_server(handler(
        |req: http::Request<h2::RecvStream>, send| async move {
            let n: usize = req
                .headers()
                .get("x-n")
                .unwrap()
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            respond(send, (0..n).map(|_| frame_msg(&echo("m"))).collect(), 0, "").await;
        },
    ))
    .await;
    let ch = channel(srv.addr).await;
    for n in [0usize, 2] {
        let mut req = Request::new(echo("x"));
        req.metadata_mut().insert("x-n", n.to_string()).unwrap();
        let err = ch.unary::<Echo, Echo>(PATH, req).await.unwrap_err();
        // statuscodes.md: response cardinality violation -> UNIMPLEMENTED
        assert_eq!(err.code(), Code::Unimplemented, "{n} messages: {err:?}");
    }
}

#[tokio::test]
async fn error_status_in_trailers_after_messages() {
    let srv = raw_server(handler(|_req, send| async move {
        respond(
            send,
            vec![frame_msg(&echo("a")), frame_msg(&echo("b"))],
            9,
            "bad%20state",
        )
        .await;
    }))
    .await;
    let ch = channel(srv.addr).await;
    let mut s = ch
        .server_streaming::<Echo, Echo>(PATH, Request::new(echo("x")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.message().await.unwrap().unwrap().text, "a");
    assert_eq!(s.message().await.unwrap().unwrap().text, "b");
    let err = s.message().await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(err.message(), "bad state");
    assert!(
        s.message().await.unwrap().is_none(),
        "stream over after the error"
    );
}

#[tokio::test]
async fn many_concurrent_calls_share_one_connection() {
    let srv = raw_server(echo_handler()).await;
    let ch = Channel::builder(format!("http://{}", srv.addr))
        .connect_lazy()
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let ch = ch.clone();
        tasks.push(tokio::spawn(async move {
            let r = ch
                .unary::<Echo, Echo>(PATH, Request::new(echo(&i.to_string())))
                .await
                .unwrap();
            assert_eq!(r.get_ref().text, format!("echo:{i}"));
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(srv.connections.load(Ordering::SeqCst), 1);
    assert_eq!(srv.requests.lock().unwrap().len(), 200);
}

#[tokio::test]
async fn respects_max_concurrent_streams() {
    // a server allowing 2 concurrent streams; 20 calls each holding 50ms all succeed
    let active = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (a, p) = (active.clone(), peak.clone());
    let mut h2 = h2::server::Builder::new();
    h2.max_concurrent_streams(2);
    let options = RawServerOptions { h2, tls: None };
    let srv = raw_server_with(
        options,
        handler(move |req: http::Request<h2::RecvStream>, send| {
            let (a, p) = (a.clone(), p.clone());
            async move {
                let now = a.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                let mut body = req.into_body();
                let _ = read_body(&mut body).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                a.fetch_sub(1, Ordering::SeqCst);
                respond(send, vec![frame_msg(&echo("ok"))], 0, "").await;
            }
        }),
    )
    .await;
    let ch = channel(srv.addr).await;
    let calls = (0..20).map(|_| {
        let ch = ch.clone();
        tokio::spawn(async move { ch.unary::<Echo, Echo>(PATH, Request::new(echo("x"))).await })
    });
    for c in calls.collect::<Vec<_>>() {
        c.await.unwrap().unwrap();
    }
    assert!(
        peak.load(Ordering::SeqCst) <= 2,
        "peak {}",
        peak.load(Ordering::SeqCst)
    );
}

#[tokio::test]
async fn compression_follows_what_the_server_advertised() {
    type Seen = Vec<(Option<String>, u8, Echo)>; // (grpc-encoding, flag, message) per call
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let s2 = seen.clone();
    let srv = raw_server(handler(
        move |req: http::Request<h2::RecvStream>, mut send| {
            let seen = s2.clone();
            async move {
                let enc = req
                    .headers()
                    .get("grpc-encoding")
                    .map(|v| v.to_str().unwrap().to_string());
                let mut body = req.into_body();
                let data = read_body(&mut body).await.unwrap();
                let (flag, payload) = unframe(&data).remove(0);
                let plain = if flag == 1 {
                    assert_eq!(enc.as_deref(), Some("gzip"));
                    use std::io::Read;
                    let mut out = Vec::new();
                    flate2::read::GzDecoder::new(&payload[..])
                        .read_to_end(&mut out)
                        .unwrap();
                    out
                } else {
                    payload
                };
                let msg = <Echo as prost::Message>::decode(&plain[..]).unwrap();
                seen.lock().unwrap().push((enc, flag, msg.clone()));
                // respond gzip-compressed, with a second uncompressed (flag 0) message in the
                // same gzip stream (per-message "do not compress")
                let mut resp = response_headers();
                resp.headers_mut()
                    .insert("grpc-encoding", "gzip".parse().unwrap());
                resp.headers_mut()
                    .insert("grpc-accept-encoding", "identity,gzip".parse().unwrap());
                let mut s = send.send_response(resp, false).unwrap();
                let mut gz =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                std::io::Write::write_all(
                    &mut gz,
                    &prost::Message::encode_to_vec(&echo(&format!("z:{}", msg.text))),
                )
                .unwrap();
                s.send_data(frame(1, &gz.finish().unwrap()), false).unwrap();
                s.send_data(frame_msg(&echo("plain")), false).unwrap();
                s.send_trailers(trailers(0, "")).unwrap();
            }
        },
    ))
    .await;
    let ch = Channel::builder(format!("http://{}", srv.addr))
        .send_compressed(grpc_runtime::CompressionEncoding::Gzip)
        .assume_server_accepts(grpc_runtime::EncodingSet::none())
        .connect()
        .await
        .unwrap();
    let big = "x".repeat(1000);
    for _ in 0..2 {
        let mut s = ch
            .server_streaming::<Echo, Echo>(PATH, Request::new(echo(&big)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(s.message().await.unwrap().unwrap().text, format!("z:{big}"));
        assert_eq!(s.message().await.unwrap().unwrap().text, "plain");
        assert!(s.message().await.unwrap().is_none());
    }
    // zstd per call: not advertised by this server -> sent uncompressed
    let mut req = Request::new(echo(&big));
    req.set_compression(Some(grpc_runtime::CompressionEncoding::Zstd));
    let mut s = ch
        .server_streaming::<Echo, Echo>(PATH, req)
        .await
        .unwrap()
        .into_inner();
    while s.message().await.unwrap().is_some() {}
    let seen = seen.lock().unwrap();
    assert_eq!(
        (seen[0].0.as_deref(), seen[0].1),
        (None, 0),
        "strict mode: nothing assumed before the server advertised"
    );
    assert_eq!(
        (seen[1].0.as_deref(), seen[1].1),
        (Some("gzip"), 1),
        "second call compressed"
    );
    assert_eq!(seen[1].2.text, big);
    assert_eq!(
        (seen[2].0.as_deref(), seen[2].1),
        (None, 0),
        "zstd not advertised"
    );
}

#[tokio::test]
async fn reconnects_after_goaway_and_connection_loss() {
    // each connection serves one call then sends GOAWAY and closes
    let srv = raw_conn_server(
        RawServerOptions::default(),
        conn_handler(|_, mut conn| async move {
            if let Some(Ok((req, send))) = conn.accept().await {
                tokio::spawn(async move {
                    let mut body = req.into_body();
                    let _ = read_body(&mut body).await;
                    respond(send, vec![frame_msg(&echo("ok"))], 0, "").await;
                });
                conn.graceful_shutdown();
                while let Some(Ok(_)) = conn.accept().await {}
            }
        }),
    )
    .await;
    let ch = channel(srv.addr).await;
    assert_eq!(ch.state(), grpc_runtime::ConnectivityState::Ready);
    for _ in 0..3 {
        let r = ch
            .unary::<Echo, Echo>(PATH, Request::new(echo("x")))
            .await
            .unwrap();
        assert_eq!(r.get_ref().text, "ok");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(srv.connections.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn connect_failures_are_unavailable() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    assert!(Channel::builder(format!("http://{addr}"))
        .connect()
        .await
        .is_err());
    let ch = Channel::builder(format!("http://{addr}"))
        .connect_lazy()
        .unwrap();
    let err = ch
        .unary::<Echo, Echo>(PATH, Request::new(echo("x")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(
        ch.state(),
        grpc_runtime::ConnectivityState::TransientFailure
    );
    // and the channel recovers once a server listens there
    let srv_listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        let (tcp, _) = srv_listener.accept().await.unwrap();
        serve_conn(tcp, echo_handler(), Arc::default()).await;
    });
    // While in TRANSIENT_FAILURE (reconnect backoff, 1 s first) fail-fast calls fail at
    // once; a wait-for-ready call waits for the reconnect.
    let mut req = Request::new(echo("y"));
    req.set_wait_for_ready(true);
    req.set_timeout(Duration::from_secs(5));
    let r = ch.unary::<Echo, Echo>(PATH, req).await.unwrap();
    assert_eq!(r.get_ref().text, "echo:y");
    assert_eq!(ch.state(), grpc_runtime::ConnectivityState::Ready);
    // bad targets are refused up front
    assert!(Channel::builder("ftp://x:1").connect_lazy().is_err());
    // https without a TLS config trusts the system's roots (tests/tls_roots.rs)
    assert!(Channel::builder("https://localhost:1")
        .connect_lazy()
        .is_ok());
}

#[tokio::test]
async fn connect_timeout_applies() {
    // a listener that never completes the HTTP/2 handshake
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let mut keep = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            keep.push(s);
        }
    });
    let t0 = Instant::now();
    let r = Channel::builder(format!("http://{addr}"))
        .connect_timeout(Duration::from_millis(200))
        .connect()
        .await;
    assert!(r.is_err());
    assert!(t0.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn headers_for_status_with_details() {
    // grpc-status-details-bin in trailers reaches Status::details
    let srv = raw_server(handler(|_req, mut send| async move {
        let mut resp = response_headers();
        let h = resp.headers_mut();
        h.insert("grpc-status", "3".parse().unwrap());
        h.insert("grpc-message", "bad arg".parse().unwrap());
        h.insert(
            "grpc-status-details-bin",
            "CAMSB2JhZCBhcmc".parse().unwrap(),
        );
        send.send_response(resp, true).unwrap();
    }))
    .await;
    let ch = channel(srv.addr).await;
    let err: Status = ch
        .unary::<Echo, Echo>(PATH, Request::new(echo("x")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let rpc = err.rpc_status().unwrap().unwrap();
    assert_eq!(rpc.code, 3);
    assert_eq!(rpc.message, "bad arg");
    let _ = HeaderMap::new();
}

#[tokio::test]
async fn server_error_while_client_still_streaming_ends_the_call() {
    let srv = raw_server(handler(
        |req: http::Request<h2::RecvStream>, mut send| async move {
            let mut r = FrameReader::new(req.into_body());
            let _first = r.next().await;
            let mut resp = response_headers();
            resp.headers_mut()
                .insert("grpc-status", "8".parse().unwrap());
            resp.headers_mut()
                .insert("grpc-message", "enough".parse().unwrap());
            send.send_response(resp, true).unwrap();
            // h2 follows with RST_STREAM(NO_ERROR) since the client is still sending
        },
    ))
    .await;
    let ch = channel(srv.addr).await;
    // one message, then a request stream that never ends
    let reqs = futures_util::StreamExt::chain(
        futures_util::stream::iter(vec![echo("1")]),
        futures_util::stream::pending(),
    );
    let err = tokio::time::timeout(
        Duration::from_secs(5),
        ch.client_streaming::<_, Echo, Echo>(PATH, Request::new(reqs)),
    )
    .await
    .expect("must not hang")
    .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(err.message(), "enough");
}

#[tokio::test]
async fn oversized_response_headers_fail_only_that_call() {
    let srv = raw_server(handler(
        |req: http::Request<h2::RecvStream>, mut send| async move {
            let big = req.headers().get("x-big").is_some();
            let mut resp = response_headers();
            if big {
                resp.headers_mut()
                    .insert("x-huge", "h".repeat(20 * 1024).parse().unwrap());
            }
            let Ok(mut s) = send.send_response(resp, false) else {
                return;
            };
            let _ = s.send_data(frame_msg(&echo("ok")), false);
            let _ = s.send_trailers(trailers(0, ""));
        },
    ))
    .await;
    let ch = channel(srv.addr).await;
    let mut req = Request::new(echo("x"));
    req.metadata_mut().insert("x-big", "1").unwrap();
    let err = ch.unary::<Echo, Echo>(PATH, req).await.unwrap_err();
    // over our 8 KiB SETTINGS_MAX_HEADER_LIST_SIZE: h2 refuses the headers; like grpc-go, INTERNAL
    assert_eq!(err.code(), Code::Internal, "{err:?}");
    // the connection still serves other calls
    assert_eq!(
        ch.unary::<Echo, Echo>(PATH, Request::new(echo("x")))
            .await
            .unwrap()
            .get_ref()
            .text,
        "ok"
    );
}

#[test]
fn call_futures_and_responses_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _g = rt.enter();
    let ch = Channel::builder("http://127.0.0.1:1")
        .connect_lazy()
        .unwrap();
    let f1 = ch.unary::<Echo, Echo>(PATH, Request::new(echo("x")));
    let f2 = ch.server_streaming::<Echo, Echo>(PATH, Request::new(echo("x")));
    let f3 = ch.client_streaming::<_, Echo, Echo>(
        PATH,
        Request::new(futures_util::stream::empty::<Echo>()),
    );
    let f4 = ch
        .bidi_streaming::<_, Echo, Echo>(PATH, Request::new(futures_util::stream::empty::<Echo>()));
    assert_send(&f1);
    assert_send(&f2);
    assert_send(&f3);
    assert_send(&f4);
    fn assert_sync<T: Send + Sync + Clone + 'static>(_: &T) {}
    assert_sync(&ch);
}

#[tokio::test]
async fn calls_during_goaway_move_to_a_new_connection() {
    // connection 1: holds its first call 300 ms, sends GOAWAY right after accepting it;
    // later connections answer at once
    let srv = raw_conn_server(
        RawServerOptions::default(),
        conn_handler(|n, mut conn| async move {
            let mut first = true;
            while let Some(Ok((req, send))) = conn.accept().await {
                let delay = if n == 0 && first { 300 } else { 0 };
                tokio::spawn(async move {
                    let mut body = req.into_body();
                    let _ = read_body(&mut body).await;
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    respond(send, vec![frame_msg(&echo(&format!("conn{n}")))], 0, "").await;
                });
                if n == 0 && first {
                    conn.graceful_shutdown();
                }
                first = false;
            }
        }),
    )
    .await;
    let ch = channel(srv.addr).await;
    let slow = tokio::spawn({
        let ch = ch.clone();
        async move { ch.unary::<Echo, Echo>(PATH, Request::new(echo("x"))).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut later = Vec::new();
    for _ in 0..10 {
        let ch = ch.clone();
        later.push(tokio::spawn(async move {
            ch.unary::<Echo, Echo>(PATH, Request::new(echo("x"))).await
        }));
    }
    for l in later {
        let r = l.await.unwrap().unwrap();
        assert_eq!(
            r.get_ref().text,
            "conn1",
            "new calls use the new connection"
        );
    }
    assert_eq!(
        slow.await.unwrap().unwrap().get_ref().text,
        "conn0",
        "the in-flight call completes"
    );
    assert_eq!(srv.connections.load(Ordering::SeqCst), 2);
}

/// A slow reader's memory bound, as `slow_reader_ahead` measures it: the server can be at
/// most the client's stream receive window ahead of what the client has released (h2
/// flow control), plus what the client has released but not yet handed out: the message
/// being assembled (one message of `SLOW_MSG` bytes, its 5-byte frame header and the
/// field's 4 bytes of protobuf overhead) and the start of the next one (at most one
/// 16 KiB DATA frame, `max_frame_size`'s default).
const SLOW_MSG: usize = 1024 * 1024;
const SLOW_ASSEMBLY: usize = SLOW_MSG + 9 + 16 * 1024;

/// A server writes 48 x 1 MiB messages as fast as HTTP/2 flow control lets it while the
/// client reads one message every 10 ms; returns how far (bytes) the server ever got
/// ahead of what the client had consumed.
async fn slow_reader_ahead(
    endpoint: impl FnOnce(grpc_runtime::Endpoint) -> grpc_runtime::Endpoint,
) -> usize {
    const N: usize = 48;
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let s2 = sent.clone();
    let srv = raw_server(handler(move |_req, mut send| {
        let sent = s2.clone();
        async move {
            let mut s = send.send_response(response_headers(), false).unwrap();
            let payload = prost::Message::encode_to_vec(&Echo {
                text: String::new(),
                blob: vec![9; SLOW_MSG],
            });
            for _ in 0..N {
                let mut data = frame(0, &payload);
                while !data.is_empty() {
                    s.reserve_capacity(data.len());
                    let n = match poll_fn(|cx| s.poll_capacity(cx)).await {
                        Some(Ok(n)) => n,
                        _ => return,
                    };
                    let chunk = data.split_to(n.min(data.len()));
                    sent.fetch_add(chunk.len(), Ordering::SeqCst);
                    if s.send_data(chunk, false).is_err() {
                        return;
                    }
                }
            }
            let _ = s.send_trailers(trailers(0, ""));
        }
    }))
    .await;
    let ch = endpoint(Channel::builder(format!("http://{}", srv.addr)))
        .max_decoding_message_size(2 * SLOW_MSG)
        .connect()
        .await
        .unwrap();
    let mut s = ch
        .server_streaming::<Echo, Echo>(PATH, Request::new(echo("x")))
        .await
        .unwrap()
        .into_inner();
    let mut consumed = 0usize;
    let mut max_ahead = 0usize;
    while let Some(m) = s.message().await.unwrap() {
        consumed += m.blob.len() + 5 + 4; // payload + frame header + field tag and length
        tokio::time::sleep(Duration::from_millis(10)).await;
        let ahead = sent.load(Ordering::SeqCst).saturating_sub(consumed);
        max_ahead = max_ahead.max(ahead);
    }
    assert!(consumed >= N * SLOW_MSG);
    max_ahead
}

#[tokio::test]
async fn slow_reader_stalls_the_server_with_bounded_buffering() {
    // Default (adaptive) windows: the BDP estimator may grow the client's windows while
    // the reader keeps up (10 ms per MiB is 100 MiB/s, and on a loaded machine the PING's
    // RTT stretches, so samples of several MiB are common: 2 to 12 MiB windows were seen),
    // but never beyond BDP_LIMIT (docs/flow-control.md: "a slow reader makes the peer
    // buffer at most 16 MiB per connection"). 48 MiB are sent, so a server that did not
    // wait for the window would run far beyond it.
    let max_ahead = slow_reader_ahead(|e| e).await;
    let bound = grpc_runtime::transport::BDP_LIMIT as usize + SLOW_ASSEMBLY;
    assert!(
        max_ahead <= bound,
        "server ran {max_ahead} bytes ahead of the reader (bound {bound})"
    );
}

#[tokio::test]
async fn slow_reader_with_fixed_windows_stalls_the_server_within_one_window() {
    // Adaptive windows off: the 1 MiB stream window the client advertises bounds what the
    // server can send beyond what the client released, however loaded the machine is.
    const WINDOW: u32 = 1024 * 1024;
    let max_ahead = slow_reader_ahead(|e| {
        e.adaptive_window(false)
            .initial_stream_window_size(WINDOW)
            .initial_connection_window_size(2 * WINDOW)
    })
    .await;
    let bound = WINDOW as usize + SLOW_ASSEMBLY;
    assert!(
        max_ahead <= bound,
        "server ran {max_ahead} bytes ahead of the reader (bound {bound})"
    );
}

#[tokio::test]
async fn assumed_server_encodings_until_the_server_says_otherwise() {
    // A server that never advertises, accepts gzip on the first call and rejects it
    // afterwards with UNIMPLEMENTED + grpc-accept-encoding: identity.
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let s2 = seen.clone();
    let srv = raw_server(handler(
        move |req: http::Request<h2::RecvStream>, mut send| {
            let seen = s2.clone();
            async move {
                let enc = req
                    .headers()
                    .get("grpc-encoding")
                    .map(|v| v.to_str().unwrap().to_string());
                let n = {
                    let mut s = seen.lock().unwrap();
                    s.push(enc.clone());
                    s.len()
                };
                let mut body = req.into_body();
                let _ = read_body(&mut body).await;
                if n == 2 && enc.is_some() {
                    let mut resp = response_headers();
                    resp.headers_mut()
                        .insert("grpc-status", "12".parse().unwrap());
                    resp.headers_mut()
                        .insert("grpc-accept-encoding", "identity".parse().unwrap());
                    send.send_response(resp, true).unwrap();
                    return;
                }
                respond(send, vec![frame_msg(&echo("ok"))], 0, "").await;
            }
        },
    ))
    .await;
    let ch = Channel::builder(format!("http://{}", srv.addr))
        .send_compressed(grpc_runtime::CompressionEncoding::Gzip)
        .assume_server_accepts(
            grpc_runtime::EncodingSet::none().with(grpc_runtime::CompressionEncoding::Gzip),
        )
        .connect()
        .await
        .unwrap();
    assert!(ch
        .unary::<Echo, Echo>(PATH, Request::new(echo("1")))
        .await
        .is_ok());
    let err = ch
        .unary::<Echo, Echo>(PATH, Request::new(echo("2")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    assert!(ch
        .unary::<Echo, Echo>(PATH, Request::new(echo("3")))
        .await
        .is_ok());
    let seen = seen.lock().unwrap();
    assert_eq!(
        *seen,
        vec![Some("gzip".to_string()), Some("gzip".to_string()), None]
    );
}

#[tokio::test]
async fn malformed_responses_end_only_that_call() {
    let srv = raw_server(handler(
        |req: http::Request<h2::RecvStream>, mut send| async move {
            let case = req
                .headers()
                .get("x-case")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            let mut resp = response_headers();
            match case.as_str() {
                "bad-bin" => {
                    resp.headers_mut()
                        .insert("x-b-bin", "!!!not base64!!!".parse().unwrap());
                }
                "bad-status" => {
                    resp.headers_mut()
                        .insert("grpc-status", "abc".parse().unwrap());
                    send.send_response(resp, true).unwrap();
                    return;
                }
                "bad-percent" => {
                    resp.headers_mut()
                        .insert("grpc-status", "3".parse().unwrap());
                    resp.headers_mut()
                        .insert("grpc-message", "50%%zz%4".parse().unwrap());
                    send.send_response(resp, true).unwrap();
                    return;
                }
                "wrong-content-type" => {
                    resp.headers_mut()
                        .insert("content-type", "text/html".parse().unwrap());
                }
                // Refused by our server as a request content-type, so by our client too.
                "grpcx-content-type" => {
                    resp.headers_mut()
                        .insert("content-type", "application/grpcx".parse().unwrap());
                }
                "no-content-type" => {
                    resp.headers_mut().remove("content-type");
                }
                _ => {}
            }
            let mut s = send.send_response(resp, false).unwrap();
            let body = match case.as_str() {
                "bad-flag" => frame(2, b"xx"),
                "truncated" => Bytes::from_static(&[0, 0, 0, 0, 10, 1, 2]),
                "undecodable" => frame(0, &[0xff, 0xff, 0xff]),
                "flag-without-encoding" => frame(1, b"xx"),
                _ => frame_msg(&echo("ok")),
            };
            let _ = s.send_data(body, false);
            let _ = s.send_trailers(trailers(0, ""));
        },
    ))
    .await;
    let ch = channel(srv.addr).await;
    let cases = [
        ("bad-flag", Code::Internal),
        ("truncated", Code::Internal),
        ("undecodable", Code::Internal),
        ("flag-without-encoding", Code::Internal),
        ("bad-bin", Code::Internal),
        ("bad-status", Code::Internal),
        ("bad-percent", Code::InvalidArgument),
        ("wrong-content-type", Code::Unknown),
        ("grpcx-content-type", Code::Unknown),
        ("no-content-type", Code::Unknown),
    ];
    for (case, code) in cases {
        let mut req = Request::new(echo("x"));
        req.metadata_mut().insert("x-case", case).unwrap();
        let err = ch.unary::<Echo, Echo>(PATH, req).await.unwrap_err();
        assert_eq!(err.code(), code, "{case}: {err:?}");
        if case == "bad-percent" {
            assert_eq!(
                err.message(),
                "50%%zz%4",
                "invalid percent-encoding decodes leniently"
            );
        }
        // the connection keeps serving
        assert_eq!(
            ch.unary::<Echo, Echo>(PATH, Request::new(echo("x")))
                .await
                .unwrap()
                .get_ref()
                .text,
            "ok"
        );
    }
    assert_eq!(srv.connections.load(Ordering::SeqCst), 1);
}
