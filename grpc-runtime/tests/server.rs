//! Server behaviour over real sockets, driven by a raw h2 client.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use grpc_runtime::server::{interceptor_fn, CallHead, Next};
use grpc_runtime::{Code, Status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn req(message: &str) -> EchoRequest {
    EchoRequest {
        message: message.into(),
        count: 0,
        sleep_ms: 0,
    }
}

#[tokio::test]
async fn unary_ok_headers_and_trailers_bytes() {
    let srv = start(|b| b).await;
    let mut c = connect(srv.addr).await;
    let head = grpc_head(
        srv.addr,
        "/test.Echo/Unary",
        &[("x-echo", "hello"), ("grpc-accept-encoding", "identity")],
    );
    let r = call(&mut c, head, &[frame(&req("hi"))]).await;
    assert_eq!(r.status, 200);
    assert!(!r.headers_end_stream);
    assert_eq!(r.headers.get("content-type").unwrap(), "application/grpc");
    assert_eq!(r.headers.get("x-echo-header").unwrap(), "hello");
    assert!(r.headers.get("grpc-encoding").is_none());
    // exact message bytes: flag 0, length 4, field 1 "hi"
    assert_eq!(&r.data[..], &[0, 0, 0, 0, 4, 0x0a, 2, b'h', b'i']);
    let t = r.trailers.as_ref().unwrap();
    assert_eq!(t.get("grpc-status").unwrap(), "0");
    assert!(t.get("grpc-message").is_none());
    assert_eq!(t.get("x-trailer").unwrap(), "t1");
}

#[tokio::test]
async fn error_status_message_is_percent_encoded_trailers_only() {
    let srv = start(|b| b).await;
    let mut c = connect(srv.addr).await;
    let r = call(
        &mut c,
        grpc_head(srv.addr, "/test.Echo/Unary", &[]),
        &[frame(&req("fail:9"))],
    )
    .await;
    assert!(
        r.headers_end_stream,
        "error before any message should be Trailers-Only"
    );
    assert_eq!(r.grpc_status().unwrap(), "9");
    assert_eq!(r.grpc_message().unwrap(), "failed as asked: 100%25 sure%0A");
}

#[tokio::test]
async fn unknown_service_and_method_are_trailers_only_unimplemented() {
    let srv = start(|b| b).await;
    let mut c = connect(srv.addr).await;
    for path in [
        "/test.Nope/Unary",
        "/test.Echo/Nope",
        "/test.Echo/NotInTrait",
        "/test.echo/Unary",
        "/garbage",
    ] {
        let r = call(&mut c, grpc_head(srv.addr, path, &[]), &[frame(&req("x"))]).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(r.headers_end_stream, "{path}: not Trailers-Only");
        assert!(r.data.is_empty());
        assert!(r.trailers.is_none());
        assert_eq!(r.headers.get("content-type").unwrap(), "application/grpc");
        assert_eq!(r.grpc_status().unwrap(), "12", "{path}");
        assert!(!r.grpc_message().unwrap().is_empty());
    }
    let r = call(
        &mut c,
        grpc_head(srv.addr, "/test.Nope/Unary", &[]),
        &[frame(&req("x"))],
    )
    .await;
    assert_eq!(r.grpc_message().unwrap(), "unknown service test.Nope");
    let r = call(
        &mut c,
        grpc_head(srv.addr, "/test.Echo/Nope", &[]),
        &[frame(&req("x"))],
    )
    .await;
    assert_eq!(
        r.grpc_message().unwrap(),
        "unknown method Nope for service test.Echo"
    );
}

/// A refusal before routing goes through the same trailer-size cut as a handler's
/// status: an unknown service whose name percent-encodes past 8 KiB still gets a
/// Trailers-Only UNIMPLEMENTED a client with the default 8 KiB header-list limit reads.
#[tokio::test]
async fn an_oversized_rejection_message_is_truncated() {
    let srv = start(|b| b).await;
    let mut c = connect(srv.addr).await;
    // Each "%25" becomes "%2525" in grpc-message: 1,700 of them are 8,500 bytes.
    let path = format!("/{}/Unary", "%25".repeat(1700));
    let r = call(&mut c, grpc_head(srv.addr, &path, &[]), &[frame(&req("x"))]).await;
    assert!(r.headers_end_stream, "not Trailers-Only");
    assert_eq!(r.grpc_status().unwrap(), "12");
    let size: usize = r
        .headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 32)
        .sum();
    assert!(
        size <= 8 * 1024,
        "the rejection's header block is {size} bytes"
    );
    let message = r.grpc_message().unwrap();
    // (the raw header: "%25" percent-encoded)
    assert!(
        message.starts_with("unknown service %2525%2525"),
        "{message}"
    );
    assert!(message.contains("[truncated"), "{message}");
}

#[tokio::test]
async fn bad_content_type_is_415() {
    let srv = start(|b| b).await;
    let mut c = connect(srv.addr).await;
    let head = http::Request::builder()
        .method("POST")
        .uri(format!("http://{}/test.Echo/Unary", srv.addr))
        .header("content-type", "application/json")
        .body(())
        .unwrap();
    let r = call(&mut c, head, &[frame(&req("x"))]).await;
    assert_eq!(r.status, 415);
    let head = http::Request::builder()
        .method("POST")
        .uri(format!("http://{}/test.Echo/Unary", srv.addr))
        .body(())
        .unwrap();
    let r = call(&mut c, head, &[frame(&req("x"))]).await;
    assert_eq!(r.status, 415);
    // the connection still works
    let r = call(
        &mut c,
        grpc_head(srv.addr, "/test.Echo/Unary", &[]),
        &[frame(&req("ok"))],
    )
    .await;
    assert_eq!(r.grpc_status().unwrap(), "0");
}

#[tokio::test]
async fn invalid_grpc_timeout_is_internal_for_that_call_only() {
    let srv = start(|b| b).await;
    let mut c = connect(srv.addr).await;
    for bad in ["1x", "123456789S", "S", "-1S"] {
        let r = call(
            &mut c,
            grpc_head(srv.addr, "/test.Echo/Unary", &[("grpc-timeout", bad)]),
            &[frame(&req("x"))],
        )
        .await;
        assert_eq!(r.grpc_status().unwrap(), "13", "{bad}");
        assert!(r.grpc_message().unwrap().contains("grpc-timeout"));
    }
    let r = call(
        &mut c,
        grpc_head(srv.addr, "/test.Echo/Unary", &[("grpc-timeout", "5S")]),
        &[frame(&req("ok"))],
    )
    .await;
    assert_eq!(r.grpc_status().unwrap(), "0");
}

#[tokio::test]
async fn unknown_request_encoding_is_unimplemented_with_accept_encoding() {
    let srv = start(|b| b).await;
    let mut c = connect(srv.addr).await;
    let r = call(
        &mut c,
        grpc_head(srv.addr, "/test.Echo/Unary", &[("grpc-encoding", "snappy")]),
        &[frame_raw(1, b"whatever")],
    )
    .await;
    assert!(r.headers_end_stream);
    assert_eq!(r.grpc_status().unwrap(), "12");
    assert_eq!(
        r.headers.get("grpc-accept-encoding").unwrap(),
        "identity,gzip,deflate,zstd"
    );
}

#[tokio::test]
async fn compressed_flag_without_encoding_is_internal() {
    let srv = start(|b| b).await;
    let mut c = connect(srv.addr).await;
    let payload = gzip(&prost::Message::encode_to_vec(&req("x")));
    let r = call(
        &mut c,
        grpc_head(srv.addr, "/test.Echo/Unary", &[]),
        &[frame_raw(1, &payload)],
    )
    .await;
    assert_eq!(r.grpc_status().unwrap(), "13");
    assert!(
        r.grpc_message().unwrap().contains("grpc-encoding"),
        "{:?}",
        r.grpc_message()
    );
}

#[tokio::test]
async fn bin_metadata_unpadded_padded_and_comma_joined() {
    let srv = start(|b| b).await;
    let mut c = connect(srv.addr).await;
    let head = grpc_head(
        srv.addr,
        "/test.Echo/Unary",
        &[("x-data-bin", "AP8"), ("x-data-bin", "YQ==,Yg")],
    );
    let r = call(&mut c, head, &[frame(&req("x"))]).await;
    assert_eq!(r.grpc_status().unwrap(), "0");
    let vals: Vec<_> = r
        .trailers
        .as_ref()
        .unwrap()
        .get_all("x-data-bin")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    // emitted unpadded
    assert_eq!(vals, vec!["AP8", "YQ", "Yg"]);
    // undecodable base64 -> INTERNAL
    let head = grpc_head(srv.addr, "/test.Echo/Unary", &[("x-data-bin", "!!!")]);
    let r = call(&mut c, head, &[frame(&req("x"))]).await;
    assert_eq!(r.grpc_status().unwrap(), "13");
}

#[tokio::test]
async fn gzip_request_and_response() {
    let srv = start(|b| b).await;
    let mut c = connect(srv.addr).await;
    let payload = gzip(&prost::Message::encode_to_vec(&req(
        &"compress me ".repeat(50)
    )));
    let head = grpc_head(
        srv.addr,
        "/test.Echo/Unary",
        &[("grpc-encoding", "gzip"), ("grpc-accept-encoding", "gzip")],
    );
    let r = call(&mut c, head, &[frame_raw(1, &payload)]).await;
    assert_eq!(r.grpc_status().unwrap(), "0", "{:?}", r.grpc_message());
    assert_eq!(r.headers.get("grpc-encoding").unwrap(), "gzip");
    let msgs = r.messages();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].0, 1, "response should be compressed");
    let reply: EchoReply = prost::Message::decode(&gunzip(&msgs[0].1)[..]).unwrap();
    assert_eq!(reply.message, "compress me ".repeat(50));

    // client compresses with gzip but only accepts identity: never answer in gzip
    let head = grpc_head(
        srv.addr,
        "/test.Echo/Unary",
        &[
            ("grpc-encoding", "gzip"),
            ("grpc-accept-encoding", "identity"),
        ],
    );
    let r = call(&mut c, head, &[frame_raw(1, &payload)]).await;
    assert_eq!(r.grpc_status().unwrap(), "0");
    assert!(r.headers.get("grpc-encoding").is_none());
    assert_eq!(r.messages()[0].0, 0);
}

#[tokio::test]
async fn default_compression_and_per_message_no_compress() {
    let srv = start(|b| b.default_compression(Some(grpc_runtime::CompressionEncoding::Gzip))).await;
    let mut c = connect(srv.addr).await;
    let mut r0 = req("alternate");
    r0.count = 6;
    let head = grpc_head(
        srv.addr,
        "/test.Echo/ServerStream",
        &[("grpc-accept-encoding", "gzip,deflate")],
    );
    let r = call(&mut c, head, &[frame(&r0)]).await;
    assert_eq!(r.grpc_status().unwrap(), "0");
    assert_eq!(r.headers.get("grpc-encoding").unwrap(), "gzip");
    let msgs = r.messages();
    assert_eq!(msgs.len(), 6);
    for (i, (flag, payload)) in msgs.iter().enumerate() {
        assert_eq!(*flag as usize, (i + 1) % 2, "message {i}");
        let raw = if *flag == 1 {
            gunzip(payload)
        } else {
            payload.to_vec()
        };
        let m: EchoReply = prost::Message::decode(&raw[..]).unwrap();
        assert!(m.message.starts_with(&format!("alternate-{i}-")));
    }
    // a client that does not advertise gzip gets identity
    let head = grpc_head(srv.addr, "/test.Echo/ServerStream", &[]);
    let r = call(&mut c, head, &[frame(&r0)]).await;
    assert!(r.headers.get("grpc-encoding").is_none());
    assert!(r.messages().iter().all(|(f, _)| *f == 0));
}

#[tokio::test]
async fn unary_with_zero_or_two_messages_is_unimplemented() {
    let srv = start(|b| b).await;
    let mut c = connect(srv.addr).await;
    // Cardinality violations: UNIMPLEMENTED per statuscodes.md.
    let r = call(&mut c, grpc_head(srv.addr, "/test.Echo/Unary", &[]), &[]).await;
    assert_eq!(r.grpc_status().unwrap(), "12");
    assert!(r.grpc_message().unwrap().contains("got none"));
    let two = [frame(&req("a")), frame(&req("b"))];
    let r = call(&mut c, grpc_head(srv.addr, "/test.Echo/Unary", &[]), &two).await;
    assert_eq!(r.grpc_status().unwrap(), "12");
    assert!(r.grpc_message().unwrap().contains("more than one"));
    let r = call(
        &mut c,
        grpc_head(srv.addr, "/test.Echo/ServerStream", &[]),
        &two,
    )
    .await;
    assert_eq!(r.grpc_status().unwrap(), "12");
    // a truncated message is INTERNAL as well
    let f = frame(&req("abc"));
    let r = call(
        &mut c,
        grpc_head(srv.addr, "/test.Echo/Unary", &[]),
        &[f.slice(..f.len() - 1)],
    )
    .await;
    assert_eq!(r.grpc_status().unwrap(), "13");
    // undecodable protobuf
    let r = call(
        &mut c,
        grpc_head(srv.addr, "/test.Echo/Unary", &[]),
        &[frame_raw(0, &[0x0a, 50, 1])],
    )
    .await;
    assert_eq!(r.grpc_status().unwrap(), "13");
}

#[tokio::test]
async fn message_over_limit_is_resource_exhausted() {
    let srv = start(|b| b.max_receive_message_size(1024).max_send_message_size(2048)).await;
    let mut c = connect(srv.addr).await;
    let big = req(&"x".repeat(2000));
    let r = call(
        &mut c,
        grpc_head(srv.addr, "/test.Echo/Unary", &[]),
        &[frame(&big)],
    )
    .await;
    assert_eq!(r.grpc_status().unwrap(), "8");
    // send side: a reply over 2048 bytes
    let mut sreq = req("s");
    sreq.count = 1;
    let ok = call(
        &mut c,
        grpc_head(srv.addr, "/test.Echo/ServerStream", &[]),
        &[frame(&sreq)],
    )
    .await;
    assert_eq!(ok.grpc_status().unwrap(), "0");
    let mut sreq = req(&"y".repeat(1000));
    sreq.count = 1;
    let srv2 = start(|b| b.max_send_message_size(500)).await;
    let mut c2 = connect(srv2.addr).await;
    let r = call(
        &mut c2,
        grpc_head(srv2.addr, "/test.Echo/ServerStream", &[]),
        &[frame(&sreq)],
    )
    .await;
    assert_eq!(r.grpc_status().unwrap(), "8");
    assert!(r.messages().is_empty());
}

#[tokio::test]
async fn client_cancel_is_observed_by_handler() {
    let mut srv = start(|b| b).await;
    let c = connect(srv.addr).await;
    let mut c = c.ready().await.unwrap();
    let (resp, mut send) = c
        .send_request(grpc_head(srv.addr, "/test.Echo/WaitCancel", &[]), false)
        .unwrap();
    send.send_data(frame(&req("x")), true).unwrap();
    assert_eq!(
        srv.next_event(Duration::from_secs(5)).await.as_deref(),
        Some("started")
    );
    let t = Instant::now();
    send.send_reset(h2::Reason::CANCEL);
    assert_eq!(
        srv.next_event(Duration::from_secs(2)).await.as_deref(),
        Some("cancelled:Cancelled")
    );
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    drop(resp);
}

#[tokio::test]
async fn server_deadline_cancels_handler() {
    let mut srv = start(|b| b).await;
    let mut c = connect(srv.addr).await;
    let t = Instant::now();
    let r = call(
        &mut c,
        grpc_head(
            srv.addr,
            "/test.Echo/WaitCancel",
            &[("grpc-timeout", "200m")],
        ),
        &[frame(&req("x"))],
    )
    .await;
    let el = t.elapsed();
    assert_eq!(r.grpc_status().unwrap(), "4");
    assert!(
        el >= Duration::from_millis(190) && el < Duration::from_millis(1500),
        "{el:?}"
    );
    assert_eq!(
        srv.next_event(Duration::from_secs(2)).await.as_deref(),
        Some("started")
    );
    assert_eq!(
        srv.next_event(Duration::from_secs(2)).await.as_deref(),
        Some("cancelled:DeadlineExceeded")
    );
}

#[tokio::test]
async fn an_already_expired_deadline_is_deadline_exceeded_without_running_the_handler() {
    let mut srv = start(|b| b).await;
    let mut c = connect(srv.addr).await;
    for t in ["0n", "1n", "1u", "0S"] {
        let r = call(
            &mut c,
            grpc_head(srv.addr, "/test.Echo/WaitCancel", &[("grpc-timeout", t)]),
            &[frame(&req("x"))],
        )
        .await;
        assert_eq!(r.grpc_status().as_deref(), Some("4"), "{t}");
        assert!(r.messages().is_empty());
    }
    assert_eq!(
        srv.next_event(Duration::from_millis(300)).await,
        None,
        "no handler ran"
    );
    // The connection goes on.
    let r = call(
        &mut c,
        grpc_head(srv.addr, "/test.Echo/Unary", &[("grpc-timeout", "1S")]),
        &[frame(&req("ok"))],
    )
    .await;
    assert_eq!(r.grpc_status().as_deref(), Some("0"));
}

#[tokio::test]
async fn deadline_is_visible_to_handler_task_local() {
    let srv = start(|b| b).await;
    let mut c = connect(srv.addr).await;
    let r = call(
        &mut c,
        grpc_head(srv.addr, "/test.Echo/Unary", &[("grpc-timeout", "3S")]),
        &[frame(&req("deadline?"))],
    )
    .await;
    let m: EchoReply = decode(&r.messages()[0].1);
    let ms: u64 = m
        .message
        .strip_prefix("remaining=")
        .unwrap()
        .parse()
        .unwrap();
    assert!(ms > 2000 && ms <= 3000, "{ms}");
    let r = call(
        &mut c,
        grpc_head(srv.addr, "/test.Echo/Unary", &[]),
        &[frame(&req("deadline?"))],
    )
    .await;
    let m: EchoReply = decode(&r.messages()[0].1);
    assert_eq!(m.message, "remaining=0");
}

#[tokio::test]
async fn server_streaming_order_and_error_after_messages() {
    let srv = start(|b| b).await;
    let mut c = connect(srv.addr).await;
    let mut r0 = req("m");
    r0.count = 100;
    let r = call(
        &mut c,
        grpc_head(srv.addr, "/test.Echo/ServerStream", &[]),
        &[frame(&r0)],
    )
    .await;
    let msgs = r.messages();
    assert_eq!(msgs.len(), 100);
    for (i, (_, p)) in msgs.iter().enumerate() {
        let m: EchoReply = decode(p);
        assert!(m.message.starts_with(&format!("m-{i}-")));
    }
    assert_eq!(r.grpc_status().unwrap(), "0");
    let mut r1 = req("fail-at-end");
    r1.count = 3;
    let r = call(
        &mut c,
        grpc_head(srv.addr, "/test.Echo/ServerStream", &[]),
        &[frame(&r1)],
    )
    .await;
    assert_eq!(r.messages().len(), 3);
    assert!(!r.headers_end_stream);
    assert_eq!(r.grpc_status().unwrap(), "10");
}

#[tokio::test]
async fn ready_response_messages_share_data_frames() {
    let srv = start(|b| b).await;
    let mut c = connect(srv.addr).await;
    // "ready": the handler's stream has all 100 messages (~215 bytes each) ready at once
    let mut r0 = req("ready");
    r0.count = 100;
    let r = call(
        &mut c,
        grpc_head(srv.addr, "/test.Echo/ServerStream", &[]),
        &[frame(&r0)],
    )
    .await;
    assert_eq!(r.grpc_status().unwrap(), "0");
    let msgs = r.messages();
    assert_eq!(msgs.len(), 100);
    for (i, (_, p)) in msgs.iter().enumerate() {
        let m: EchoReply = decode(p);
        assert!(
            m.message.starts_with(&format!("ready-{i}-")),
            "{i}: {}",
            m.message
        );
    }
    // 21 KiB in 16 KiB frames; one frame per message would be 100
    assert!(
        r.data_frames <= 3,
        "{} DATA frames for 100 ready messages",
        r.data_frames
    );
    // a stream yielding one message at a time (channel of 1) still delivers every message
    let mut r1 = req("m");
    r1.count = 5;
    let r = call(
        &mut c,
        grpc_head(srv.addr, "/test.Echo/ServerStream", &[]),
        &[frame(&r1)],
    )
    .await;
    assert_eq!(r.messages().len(), 5);
}

#[tokio::test]
async fn client_streaming_messages_split_across_frames() {
    let srv = start(|b| b).await;
    let mut c = connect(srv.addr).await;
    let mut all = Vec::new();
    for i in 0..5 {
        all.extend_from_slice(&frame(&req(&format!("p{i}"))));
    }
    // arbitrary DATA splits: 3-byte chunks
    let chunks: Vec<Bytes> = all.chunks(3).map(Bytes::copy_from_slice).collect();
    let r = call(
        &mut c,
        grpc_head(srv.addr, "/test.Echo/ClientStream", &[]),
        &chunks,
    )
    .await;
    assert_eq!(r.grpc_status().unwrap(), "0");
    let m: EchoReply = decode(&r.messages()[0].1);
    assert_eq!(m.message, "p0,p1,p2,p3,p4");
}

#[tokio::test]
async fn bidi_is_full_duplex_and_ordered() {
    let srv = start(|b| b).await;
    let c = connect(srv.addr).await;
    let mut c = c.ready().await.unwrap();
    let (resp, mut send) = c
        .send_request(grpc_head(srv.addr, "/test.Echo/Bidi", &[]), false)
        .unwrap();
    send.send_data(frame(&req("a")), false).unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut dec = grpc_runtime::codec::FrameDecoder::new(1 << 20, None);
    for i in 0..10 {
        if i > 0 {
            send.send_data(frame(&req(&format!("m{i}"))), false)
                .unwrap();
        }
        // read exactly one reply before sending the next request
        let payload = loop {
            if let Some(p) = dec.next_message().unwrap() {
                break p;
            }
            let chunk = body.data().await.unwrap().unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
            dec.push(chunk);
        };
        let m: EchoReply = decode(&payload);
        let expect = if i == 0 {
            "echo:a".to_string()
        } else {
            format!("echo:m{i}")
        };
        assert_eq!(m.message, expect);
    }
    send.send_data(Bytes::new(), true).unwrap();
    while let Some(d) = body.data().await {
        d.unwrap();
    }
    let t = body.trailers().await.unwrap().unwrap();
    assert_eq!(t.get("grpc-status").unwrap(), "0");
}

#[tokio::test]
async fn handler_panic_is_isolated() {
    let srv = start(|b| b).await;
    let mut c = connect(srv.addr).await;
    let r = call(
        &mut c,
        grpc_head(srv.addr, "/test.Echo/Panic", &[]),
        &[frame(&req("x"))],
    )
    .await;
    assert_eq!(r.grpc_status().unwrap(), "2");
    let r = call(
        &mut c,
        grpc_head(srv.addr, "/test.Echo/Unary", &[]),
        &[frame(&req("still alive"))],
    )
    .await;
    assert_eq!(r.grpc_status().unwrap(), "0");
}

#[tokio::test]
async fn early_headers_from_context() {
    let srv = start(|b| b).await;
    let mut c = connect(srv.addr).await;
    let r = call(
        &mut c,
        grpc_head(srv.addr, "/test.Echo/Unary", &[("x-echo", "v")]),
        &[frame(&req("early-headers"))],
    )
    .await;
    assert_eq!(r.headers.get("x-early").unwrap(), "yes");
    // response metadata set later is not sent (headers already went out)
    assert!(r.headers.get("x-echo-header").is_none());
    assert_eq!(r.grpc_status().unwrap(), "0");
}

#[tokio::test]
async fn max_concurrent_streams_is_enforced() {
    let mut srv = start(|b| b.max_concurrent_streams(1)).await;
    let c = connect(srv.addr).await;
    let mut c1 = c.clone().ready().await.unwrap();
    let (resp1, mut send1) = c1
        .send_request(grpc_head(srv.addr, "/test.Echo/WaitCancel", &[]), false)
        .unwrap();
    send1.send_data(frame(&req("x")), true).unwrap();
    assert_eq!(
        srv.next_event(Duration::from_secs(5)).await.as_deref(),
        Some("started")
    );
    // The second stream cannot open while the first is active.
    let addr = srv.addr;
    let c2 = c.clone();
    let second = tokio::spawn(async move {
        let mut c2 = c2.ready().await.unwrap();
        let (resp, mut send) = c2
            .send_request(grpc_head(addr, "/test.Echo/Unary", &[]), false)
            .unwrap();
        send.send_data(frame(&req("second")), true).unwrap();
        read_response(resp).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !second.is_finished(),
        "second call ran while the first held the only stream"
    );
    send1.send_reset(h2::Reason::CANCEL);
    drop(resp1);
    let r = tokio::time::timeout(Duration::from_secs(5), second)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.grpc_status().unwrap(), "0");
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_and_refuses_new() {
    let mut srv = start(|b| b.grace_period(Duration::from_secs(5))).await;
    let c = connect(srv.addr).await;
    let mut c1 = c.clone().ready().await.unwrap();
    let mut slow = req("slow");
    slow.sleep_ms = 600;
    let (resp1, mut send1) = c1
        .send_request(grpc_head(srv.addr, "/test.Echo/Unary", &[]), false)
        .unwrap();
    send1.send_data(frame(&slow), true).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    srv.shutdown();
    tokio::time::sleep(Duration::from_millis(150)).await;
    // New call on the same connection after GOAWAY: refused.
    let refused = match c.clone().ready().await {
        Err(_) => true,
        Ok(mut c2) => match c2.send_request(grpc_head(srv.addr, "/test.Echo/Unary", &[]), false) {
            Err(_) => true,
            Ok((resp, mut send)) => {
                let _ = send.send_data(frame(&req("late")), true);
                match resp.await {
                    Err(e) => {
                        assert!(
                            e.reason() == Some(h2::Reason::REFUSED_STREAM) || e.is_go_away(),
                            "{e:?}"
                        );
                        true
                    }
                    Ok(_) => false,
                }
            }
        },
    };
    assert!(refused, "a call after GOAWAY was served");
    // New connections are refused too (listener closed).
    assert!(tokio::net::TcpStream::connect(srv.addr).await.is_err());
    let r = read_response(resp1).await;
    assert_eq!(
        r.grpc_status().unwrap(),
        "0",
        "in-flight call did not finish"
    );
    let done = tokio::time::timeout(Duration::from_secs(3), &mut srv.handle).await;
    assert!(
        done.is_ok(),
        "server did not stop after in-flight calls finished"
    );
}

#[tokio::test]
async fn shutdown_grace_period_cancels_stuck_calls() {
    let mut srv = start(|b| b.grace_period(Duration::from_millis(200))).await;
    let c = connect(srv.addr).await;
    let mut c1 = c.ready().await.unwrap();
    let (resp1, mut send1) = c1
        .send_request(grpc_head(srv.addr, "/test.Echo/WaitCancel", &[]), false)
        .unwrap();
    send1.send_data(frame(&req("x")), true).unwrap();
    assert_eq!(
        srv.next_event(Duration::from_secs(5)).await.as_deref(),
        Some("started")
    );
    let t = Instant::now();
    srv.shutdown();
    assert_eq!(
        srv.next_event(Duration::from_secs(3)).await.as_deref(),
        Some("cancelled:Cancelled")
    );
    // The stuck call is reset with CANCEL.
    let err = resp1.await.unwrap_err();
    assert_eq!(err.reason(), Some(h2::Reason::CANCEL), "{err:?}");
    tokio::time::timeout(Duration::from_secs(3), &mut srv.handle)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn dropping_the_server_future_closes_its_connections() {
    let srv = start(|b| b).await;
    // A raw socket: h2's own client would hide when the server closes it.
    let mut tcp = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    // The server's SETTINGS arrive: the connection is served.
    let mut buf = [0u8; 9];
    tcp.read_exact(&mut buf).await.unwrap();
    assert_eq!(buf[3], 0x4, "first frame is not SETTINGS");
    srv.handle.abort();
    // Its connection goes with it: the socket reaches EOF (after whatever was queued).
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3), tcp.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "connection outlived the server's future");
}

#[tokio::test]
async fn interceptors_order_reject_modify_and_observe() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let tx1 = tx.clone();
    let tx2 = tx.clone();
    let srv = start(move |b| {
        b.add_interceptor(interceptor_fn(move |mut head: CallHead, next: Next| {
            let tx = tx1.clone();
            async move {
                let _ = tx.send(format!("outer:{}", head.method()));
                if head.metadata.get("x-deny").is_some() {
                    return Status::permission_denied("denied by interceptor");
                }
                head.metadata.insert("x-echo", "from-interceptor").unwrap();
                let st = next.run(head).await;
                let _ = tx.send(format!("outer-done:{:?}", st.code()));
                st
            }
        }))
        .add_interceptor(interceptor_fn(move |head: CallHead, next: Next| {
            let tx = tx2.clone();
            async move {
                let _ = tx.send("inner".to_string());
                next.run(head).await
            }
        }))
    })
    .await;
    let mut c = connect(srv.addr).await;
    let r = call(
        &mut c,
        grpc_head(srv.addr, "/test.Echo/Unary", &[]),
        &[frame(&req("x"))],
    )
    .await;
    assert_eq!(r.grpc_status().unwrap(), "0");
    assert_eq!(r.headers.get("x-echo-header").unwrap(), "from-interceptor");
    assert_eq!(rx.recv().await.unwrap(), "outer:/test.Echo/Unary");
    assert_eq!(rx.recv().await.unwrap(), "inner");
    assert_eq!(rx.recv().await.unwrap(), "outer-done:Ok");
    let r = call(
        &mut c,
        grpc_head(srv.addr, "/test.Echo/Unary", &[("x-deny", "1")]),
        &[frame(&req("x"))],
    )
    .await;
    assert!(r.headers_end_stream);
    assert_eq!(r.grpc_status().unwrap(), "7");
    assert_eq!(rx.recv().await.unwrap(), "outer:/test.Echo/Unary");
    let r = call(
        &mut c,
        grpc_head(srv.addr, "/test.Echo/Unary", &[]),
        &[frame(&req("fail:5"))],
    )
    .await;
    assert_eq!(r.grpc_status().unwrap(), "5");
    assert_eq!(rx.recv().await.unwrap(), "outer:/test.Echo/Unary");
    assert_eq!(rx.recv().await.unwrap(), "inner");
    assert_eq!(rx.recv().await.unwrap(), "outer-done:NotFound");
    let _ = Code::Ok;
}

#[tokio::test]
async fn unix_socket_server() {
    let dir = std::env::temp_dir().join(format!("grpc-rt-test-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("s.sock");
    let _ = std::fs::remove_file(&path);
    let (etx, _erx) = tokio::sync::mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let p2 = path.clone();
    let server = tokio::spawn(async move {
        grpc_runtime::server::Server::builder()
            .add_service(echo_server::EchoServer::new(TestEcho { events: etx }))
            .serve_unix_with_shutdown(p2, async {
                let _ = stop_rx.await;
            })
            .await
    });
    let mut stream = None;
    for _ in 0..50 {
        if let Ok(s) = tokio::net::UnixStream::connect(&path).await {
            stream = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (client, conn) = h2::client::handshake(stream.unwrap()).await.unwrap();
    tokio::spawn(conn);
    let mut c = client;
    let head = http::Request::builder()
        .method("POST")
        .uri("http://localhost/test.Echo/Unary")
        .header("content-type", "application/grpc+proto")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let r = call(&mut c, head, &[frame(&req("over unix"))]).await;
    assert_eq!(r.grpc_status().unwrap(), "0");
    let m: EchoReply = decode(&r.messages()[0].1);
    assert_eq!(m.message, "over unix");
    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn non_post_is_rejected() {
    let srv = start(|b| b).await;
    let mut c = connect(srv.addr).await;
    let head = http::Request::builder()
        .method("GET")
        .uri(format!("http://{}/test.Echo/Unary", srv.addr))
        .header("content-type", "application/grpc")
        .body(())
        .unwrap();
    let mut cr = c.clone().ready().await.unwrap();
    let (resp, _) = cr.send_request(head, true).unwrap();
    let r = read_response(resp).await;
    assert_eq!(r.status, 405);
    let r = call(
        &mut c,
        grpc_head(srv.addr, "/test.Echo/Unary", &[]),
        &[frame(&req("ok"))],
    )
    .await;
    assert_eq!(r.grpc_status().unwrap(), "0");
}

#[tokio::test]
async fn status_details_travel_in_trailers() {
    let srv = start(|b| b).await;
    let mut c = connect(srv.addr).await;
    let r = call(
        &mut c,
        grpc_head(srv.addr, "/test.Echo/Unary", &[]),
        &[frame(&req("details"))],
    )
    .await;
    assert_eq!(r.grpc_status().unwrap(), "3");
    let st = Status::from_header_map(&r.headers).unwrap();
    assert_eq!(st.code(), Code::InvalidArgument);
    assert_eq!(st.message(), "bad name");
    let raw = r
        .headers
        .get("grpc-status-details-bin")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(!raw.ends_with('='));
    match &st.error_details().unwrap()[0] {
        grpc_runtime::ErrorDetail::BadRequest(b) => assert_eq!(b.field_violations[0].field, "name"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn oversized_request_headers_are_resource_exhausted_not_431() {
    // h2 alone would answer HTTP 431; the server answers in gRPC (tests/header_limits.rs
    // has the rest of the header-list cases).
    let srv = start(|b| b).await;
    let mut c = connect(srv.addr).await;
    let big = "v".repeat(9000);
    let head = grpc_head(srv.addr, "/test.Echo/Unary", &[("x-big", big.as_str())]);
    let r = call(&mut c, head, &[frame(&req("x"))]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.headers_end_stream, "{r:?}");
    assert_eq!(r.grpc_status().as_deref(), Some("8"), "{r:?}");
    assert!(
        r.grpc_message()
            .unwrap()
            .ends_with("exceeds the limit of 8192 bytes"),
        "{r:?}"
    );
    let r = call(
        &mut c,
        grpc_head(srv.addr, "/test.Echo/Unary", &[]),
        &[frame(&req("ok"))],
    )
    .await;
    assert_eq!(r.grpc_status().unwrap(), "0");
}

#[tokio::test]
async fn bidi_reads_end_with_cancelled_on_client_reset() {
    let mut srv = start(|b| b).await;
    let c = connect(srv.addr).await;
    let mut c = c.ready().await.unwrap();
    let (resp, mut send) = c
        .send_request(grpc_head(srv.addr, "/test.Echo/Bidi", &[]), false)
        .unwrap();
    send.send_data(frame(&req("a")), false).unwrap();
    let resp = resp.await.unwrap();
    let mut body = resp.into_body();
    let first = body.data().await.unwrap().unwrap();
    assert!(first.len() >= 5);
    send.send_reset(h2::Reason::CANCEL);
    assert_eq!(
        srv.next_event(Duration::from_secs(2)).await.as_deref(),
        Some("bidi-read-error:Cancelled")
    );
}

#[tokio::test]
async fn slow_reader_applies_backpressure() {
    let mut srv = start(|b| b).await;
    let c = connect(srv.addr).await;
    let mut c = c.ready().await.unwrap();
    let mut r0 = req("flow");
    r0.count = 5000; // ~1.1 MB of replies
    let (resp, mut send) = c
        .send_request(grpc_head(srv.addr, "/test.Echo/ServerStream", &[]), false)
        .unwrap();
    send.send_data(frame(&r0), true).unwrap();
    let resp = resp.await.unwrap();
    // Do not read for a while: the producer must stall on flow control.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut max_produced = 0usize;
    while let Ok(Some(ev)) =
        tokio::time::timeout(Duration::from_millis(50), srv.events.recv()).await
    {
        if let Some(i) = ev.strip_prefix("produced:") {
            max_produced = max_produced.max(i.parse().unwrap());
        }
    }
    assert!(
        max_produced > 100,
        "producer never started ({max_produced})"
    );
    assert!(
        max_produced < 1000,
        "producer ran ahead of the 64 KiB window: {max_produced}"
    );
    let r = read_response_from(resp).await;
    assert_eq!(r.messages().len(), 5000);
    assert_eq!(r.grpc_status().unwrap(), "0");
}

#[tokio::test]
async fn server_done_while_client_sending_resets_with_no_error() {
    let srv = start(|b| b).await;
    let c = connect(srv.addr).await;
    let mut c = c.ready().await.unwrap();
    let (resp, mut send) = c
        .send_request(grpc_head(srv.addr, "/test.Echo/ClientStream", &[]), false)
        .unwrap();
    send.send_data(frame(&req("stop")), false).unwrap();
    let r = read_response(resp).await;
    assert_eq!(r.grpc_status().unwrap(), "0");
    let m: EchoReply = decode(&r.messages()[0].1);
    assert_eq!(m.message, "stopped");
    let reason = tokio::time::timeout(
        Duration::from_secs(2),
        std::future::poll_fn(|cx| send.poll_reset(cx)),
    )
    .await
    .expect("no RST_STREAM from the server")
    .unwrap();
    assert_eq!(reason, h2::Reason::NO_ERROR);
}

fn compress_with(enc: &str, data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    match enc {
        "gzip" => gzip(data),
        "deflate" => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "zstd" => zstd::stream::encode_all(data, 3).unwrap(),
        _ => unreachable!(),
    }
}

fn decompress_with(enc: &str, data: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    match enc {
        "gzip" => out = gunzip(data),
        "deflate" => {
            flate2::read::ZlibDecoder::new(data)
                .read_to_end(&mut out)
                .unwrap();
        }
        "zstd" => out = zstd::stream::decode_all(data).unwrap(),
        _ => unreachable!(),
    }
    out
}

#[tokio::test]
async fn deflate_and_zstd_request_and_response() {
    let srv = start(|b| b).await;
    let mut c = connect(srv.addr).await;
    for enc in ["deflate", "zstd", "gzip"] {
        let text = format!("{enc} payload ").repeat(40);
        let payload = compress_with(enc, &prost::Message::encode_to_vec(&req(&text)));
        let head = grpc_head(
            srv.addr,
            "/test.Echo/Unary",
            &[("grpc-encoding", enc), ("grpc-accept-encoding", enc)],
        );
        let r = call(&mut c, head, &[frame_raw(1, &payload)]).await;
        assert_eq!(
            r.grpc_status().unwrap(),
            "0",
            "{enc}: {:?}",
            r.grpc_message()
        );
        assert_eq!(r.headers.get("grpc-encoding").unwrap(), enc);
        let (flag, body) = &r.messages()[0];
        assert_eq!(*flag, 1);
        let reply: EchoReply = prost::Message::decode(&decompress_with(enc, body)[..]).unwrap();
        assert_eq!(reply.message, text);
        // corrupt compressed payload -> INTERNAL
        let head = grpc_head(srv.addr, "/test.Echo/Unary", &[("grpc-encoding", enc)]);
        let r = call(&mut c, head, &[frame_raw(1, b"definitely not compressed")]).await;
        assert_eq!(r.grpc_status().unwrap(), "13", "{enc}");
    }
}

#[tokio::test]
async fn encoding_disabled_on_server_is_unimplemented() {
    use grpc_runtime::{CompressionEncoding, EncodingSet};
    let srv =
        start(|b| b.accept_encodings(EncodingSet::none().with(CompressionEncoding::Gzip))).await;
    let mut c = connect(srv.addr).await;
    let payload = compress_with("zstd", &prost::Message::encode_to_vec(&req("x")));
    let head = grpc_head(srv.addr, "/test.Echo/Unary", &[("grpc-encoding", "zstd")]);
    let r = call(&mut c, head, &[frame_raw(1, &payload)]).await;
    assert_eq!(r.grpc_status().unwrap(), "12");
    assert_eq!(
        r.headers.get("grpc-accept-encoding").unwrap(),
        "identity,gzip"
    );
    // successful responses advertise the same set
    let r = call(
        &mut c,
        grpc_head(srv.addr, "/test.Echo/Unary", &[]),
        &[frame(&req("x"))],
    )
    .await;
    assert_eq!(r.grpc_status().unwrap(), "0");
    assert_eq!(
        r.headers.get("grpc-accept-encoding").unwrap(),
        "identity,gzip"
    );
}

#[tokio::test]
async fn bad_input_ends_only_that_call() {
    let srv = start(|b| b.max_receive_message_size(100)).await;
    let c = connect(srv.addr).await;
    // A slow good call stays in flight on the same connection throughout.
    let mut slow = req("survivor");
    slow.sleep_ms = 400;
    let mut c0 = c.clone();
    let addr = srv.addr;
    let good = tokio::spawn(async move {
        call(
            &mut c0,
            grpc_head(addr, "/test.Echo/Unary", &[]),
            &[frame(&slow)],
        )
        .await
    });
    type Case<'a> = (Vec<(&'a str, &'a str)>, Vec<Bytes>, &'a str);
    let cases: Vec<Case> = vec![
        (vec![], vec![frame_raw(0, &[0u8; 0][..]).slice(..3)], "13"), // truncated prefix
        (
            vec![],
            vec![Bytes::from_static(&[0, 0xff, 0xff, 0xff, 0xff])],
            "8",
        ), // length over the limit
        (
            vec![("grpc-timeout", "forever")],
            vec![frame(&req("x"))],
            "13",
        ), // invalid timeout
        (vec![("x-bad-bin", "%%%")], vec![frame(&req("x"))], "13"),   // undecodable base64
        (vec![], vec![frame_raw(0, &[0xff, 0xff])], "13"),            // undecodable protobuf
        (vec![], vec![frame_raw(7, b"x")], "13"),                     // unknown flag value
    ];
    let mut c1 = c.clone();
    for (headers, body, code) in cases {
        let r = call(
            &mut c1,
            grpc_head(srv.addr, "/test.Echo/Unary", &headers),
            &body,
        )
        .await;
        assert_eq!(
            r.grpc_status().as_deref(),
            Some(code),
            "{headers:?} {body:?} -> {:?}",
            r.grpc_message()
        );
        assert!(!r.grpc_message().unwrap_or_default().is_empty());
    }
    let r = good.await.unwrap();
    assert_eq!(r.grpc_status().unwrap(), "0");
    let m: EchoReply = decode(&r.messages()[0].1);
    assert_eq!(m.message, "survivor");
}

#[tokio::test]
async fn peer_address_is_visible() {
    let srv = start(|b| b).await;
    let tcp = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let local = tcp.local_addr().unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let mut c = client;
    let r = call(
        &mut c,
        grpc_head(srv.addr, "/test.Echo/Unary", &[]),
        &[frame(&req("peer?"))],
    )
    .await;
    let m: EchoReply = decode(&r.messages()[0].1);
    assert_eq!(m.message, local.to_string());
}
