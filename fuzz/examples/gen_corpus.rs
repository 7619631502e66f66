//! Writes the seed corpora under `fuzz/corpus/<target>/` (then minimise them with
//! `cargo fuzz cmin`, see docs/fuzzing.md):
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example gen_corpus`
//!
//! The `server_conn` seeds are real client byte streams: an `h2` client makes gRPC calls
//! (unary, streaming, compressed, malformed) against our server over an in-memory pipe,
//! and what it wrote is recorded. The `plugin_*` seeds are the well-formed requests built
//! from the repository's protos; the others are hand-picked valid and edge-case values.

use std::io::Write as _;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use grpc_runtime::codec::encode_message;
use grpc_runtime::compression::{compress, CompressionEncoding};
use grpc_runtime::metadata::encode_bin;
use grpc_runtime::rpc_types::{self, ErrorDetail};
use grpc_runtime::Code;
use grpc_rust_fuzz::Log;
use prost::Message;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

/// The client's side of the pipe, recording what the client writes.
struct Recorder {
    io: DuplexStream,
    log: Log,
}

impl AsyncRead for Recorder {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Recorder {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let res = Pin::new(&mut this.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = res {
            this.log.lock().unwrap().extend_from_slice(&buf[..n]);
        }
        res
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// One call a seed makes.
#[derive(Clone)]
struct Call {
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    /// DATA frames (the body split as given).
    data: Vec<Bytes>,
    /// Send trailers instead of END_STREAM on the last DATA frame.
    trailers: bool,
    /// Reset the stream after the first response message instead of reading to the end.
    cancel: bool,
    method: &'static str,
}

impl Call {
    fn new(path: &'static str, body: Bytes) -> Call {
        Call {
            path,
            headers: Vec::new(),
            data: vec![body],
            trailers: false,
            cancel: false,
            method: "POST",
        }
    }
    fn header(mut self, k: &'static str, v: impl Into<String>) -> Call {
        self.headers.push((k, v.into()));
        self
    }
}

fn frame<M: Message>(m: &M, enc: Option<CompressionEncoding>) -> Bytes {
    let mut buf = BytesMut::new();
    encode_message(m, enc, usize::MAX, &mut buf).unwrap();
    buf.freeze()
}

fn frames<M: Message>(ms: &[M]) -> Bytes {
    let mut buf = BytesMut::new();
    for m in ms {
        encode_message(m, None, usize::MAX, &mut buf).unwrap();
    }
    buf.freeze()
}

/// Runs `calls` (concurrently) from an h2 client against our server and returns the
/// client's bytes.
async fn record(calls: Vec<Call>) -> Vec<u8> {
    let (client, server_io) = tokio::io::duplex(1 << 20);
    let server = grpc_rust_fuzz::spawn_server(server_io);
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let io = Recorder {
        io: client,
        log: Arc::clone(&log),
    };
    let (send, conn) = h2::client::Builder::new()
        .handshake::<_, Bytes>(io)
        .await
        .unwrap();
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut tasks = Vec::new();
    for call in calls {
        let mut send = send.clone().ready().await.unwrap();
        let mut req = http::Request::builder()
            .method(call.method)
            .uri(format!("http://localhost{}", call.path))
            .header("te", "trailers");
        if !call.headers.iter().any(|(k, _)| *k == "content-type") {
            req = req.header("content-type", "application/grpc");
        }
        for (k, v) in &call.headers {
            req = req.header(*k, v.as_str());
        }
        let (resp, mut body) = send.send_request(req.body(()).unwrap(), false).unwrap();
        tasks.push(tokio::spawn(async move {
            let n = call.data.len();
            for (i, d) in call.data.into_iter().enumerate() {
                body.reserve_capacity(d.len());
                let _ = body.send_data(d, i + 1 == n && !call.trailers);
            }
            if n == 0 && !call.trailers {
                let _ = body.send_data(Bytes::new(), true);
            }
            if call.trailers {
                let mut t = http::HeaderMap::new();
                t.insert("x-trailer", http::HeaderValue::from_static("1"));
                let _ = body.send_trailers(t);
            }
            let Ok(resp) = resp.await else { return };
            let mut rbody = resp.into_body();
            while let Some(Ok(d)) = rbody.data().await {
                let _ = rbody.flow_control().release_capacity(d.len());
                if call.cancel {
                    body.send_reset(h2::Reason::CANCEL);
                    return;
                }
            }
            let _ = rbody.trailers().await;
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    drop(send);
    let _ = tokio::time::timeout(std::time::Duration::from_millis(200), conn).await;
    server.abort();
    let out = log.lock().unwrap().clone();
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::File::create(dir.join(name))
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

fn server_seeds() -> Vec<(&'static str, Vec<Call>)> {
    use grpc_runtime::services::health::{HealthCheckRequest, HealthListRequest};
    let check = |s: &str| HealthCheckRequest { service: s.into() };
    let hc = "/grpc.health.v1.Health/Check";
    let compressed = |enc: CompressionEncoding| {
        Call::new(hc, frame(&check("grpc.fuzz.Echo"), Some(enc)))
            .header("grpc-encoding", enc.as_str())
            .header("grpc-accept-encoding", "gzip,deflate,zstd")
    };
    let refl_v1 = {
        use grpc_runtime::services::reflection::v1::{
            server_reflection_request::MessageRequest, ServerReflectionRequest,
        };
        let r = |m: MessageRequest| ServerReflectionRequest {
            host: String::new(),
            message_request: Some(m),
        };
        frames(&[
            r(MessageRequest::ListServices(String::new())),
            r(MessageRequest::FileContainingSymbol(
                "grpc.health.v1.Health".into(),
            )),
            r(MessageRequest::FileByFilename(
                "grpc/health/v1/health.proto".into(),
            )),
            r(MessageRequest::FileContainingSymbol(
                "no.such.Symbol".into(),
            )),
            r(MessageRequest::AllExtensionNumbersOfType(
                "grpc.health.v1.HealthCheckRequest".into(),
            )),
        ])
    };
    let refl_v1alpha = {
        use grpc_runtime::services::reflection::v1alpha::{
            server_reflection_request::MessageRequest, ServerReflectionRequest,
        };
        let r = |m: MessageRequest| ServerReflectionRequest {
            host: String::new(),
            message_request: Some(m),
        };
        frames(&[
            r(MessageRequest::ListServices(String::new())),
            r(MessageRequest::FileByFilename("x.proto".into())),
        ])
    };
    let echo_msgs = frames(&[b"one".to_vec(), b"two".to_vec(), vec![7u8; 300]]);
    let mut split = Call::new("/grpc.fuzz.Echo/Collect", Bytes::new());
    split.data = echo_msgs.chunks(4).map(Bytes::copy_from_slice).collect();
    let mut watch = Call::new("/grpc.health.v1.Health/Watch", frame(&check(""), None));
    watch.cancel = true;
    let mut with_trailers = Call::new("/grpc.fuzz.Echo/Bidi", echo_msgs.clone());
    with_trailers.trailers = true;
    let mut get = Call::new(hc, Bytes::new());
    get.method = "GET";
    let details = rpc_types::Status {
        code: Code::Aborted as i32,
        message: "m".into(),
        details: vec![ErrorDetail::RetryInfo(rpc_types::RetryInfo { retry_delay: None }).to_any()],
    };
    vec![
        ("health_check", vec![Call::new(hc, frame(&check(""), None))]),
        (
            "health_check_metadata",
            vec![Call::new(hc, frame(&check("grpc.fuzz.Down"), None))
                .header("grpc-timeout", "1S")
                .header("user-agent", "fuzz/1")
                .header("x-ascii", "value")
                .header("x-trace-bin", encode_bin(&details.encode_to_vec()))
                .header("x-two-bin", "AAEC,AwQ=")],
        ),
        (
            "health_check_gzip",
            vec![compressed(CompressionEncoding::Gzip)],
        ),
        (
            "health_check_deflate",
            vec![compressed(CompressionEncoding::Deflate)],
        ),
        (
            "health_check_zstd",
            vec![compressed(CompressionEncoding::Zstd)],
        ),
        (
            "health_list",
            vec![Call::new(
                "/grpc.health.v1.Health/List",
                frame(&HealthListRequest {}, None),
            )],
        ),
        ("health_watch_cancel", vec![watch]),
        (
            "reflection_v1",
            vec![Call::new(
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                refl_v1,
            )],
        ),
        (
            "reflection_v1alpha",
            vec![Call::new(
                "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                refl_v1alpha,
            )],
        ),
        (
            "echo_unary",
            vec![Call::new(
                "/grpc.fuzz.Echo/Unary",
                frame(&b"hello".to_vec(), None),
            )],
        ),
        (
            "echo_unary_error_details",
            vec![Call::new(
                "/grpc.fuzz.Echo/Unary",
                frame(&b"!boom".to_vec(), None),
            )],
        ),
        (
            "echo_expand",
            vec![Call::new(
                "/grpc.fuzz.Echo/Expand",
                frame(&b"four".to_vec(), None),
            )],
        ),
        ("echo_collect_split", vec![split]),
        ("echo_bidi_trailers", vec![with_trailers]),
        (
            "echo_bidi_gzip",
            vec![Call::new("/grpc.fuzz.Echo/Bidi", {
                let mut b = BytesMut::new();
                b.extend_from_slice(&frame(&b"a".to_vec(), Some(CompressionEncoding::Gzip)));
                b.extend_from_slice(&frame(&b"b".to_vec(), None));
                b.freeze()
            })
            .header("grpc-encoding", "gzip")],
        ),
        (
            "concurrent",
            vec![
                Call::new(hc, frame(&check(""), None)),
                Call::new("/grpc.fuzz.Echo/Unary", frame(&b"x".to_vec(), None)),
                Call::new("/grpc.fuzz.Echo/Bidi", echo_msgs.clone()),
            ],
        ),
        (
            "unknown_method",
            vec![
                Call::new("/grpc.fuzz.Echo/Nope", Bytes::new()),
                Call::new("/no.Such/Service", Bytes::new()),
            ],
        ),
        (
            "bad_content_type",
            vec![Call::new(hc, Bytes::new()).header("content-type", "text/plain")],
        ),
        ("get_method", vec![get]),
        (
            "bad_timeout",
            vec![Call::new(hc, frame(&check(""), None)).header("grpc-timeout", "123456789S")],
        ),
        (
            "unsupported_encoding",
            vec![Call::new(hc, frame(&check(""), None)).header("grpc-encoding", "snappy")],
        ),
        (
            "compressed_flag_without_encoding",
            vec![Call::new(hc, Bytes::from_static(&[1, 0, 0, 0, 2, 0x0a, 0]))],
        ),
        (
            "oversized_prefix",
            vec![Call::new(
                hc,
                Bytes::from_static(&[0, 0xff, 0xff, 0xff, 0xff, 0]),
            )],
        ),
        (
            "truncated_message",
            vec![Call::new(hc, Bytes::from_static(&[0, 0, 0, 0, 9, 0x0a]))],
        ),
        (
            "two_messages_unary",
            vec![Call::new(
                "/grpc.fuzz.Echo/Unary",
                frames(&[b"a".to_vec(), b"b".to_vec()]),
            )],
        ),
        (
            "corrupt_gzip",
            vec![
                Call::new(hc, Bytes::from_static(&[1, 0, 0, 0, 4, 0x1f, 0x8b, 8, 0]))
                    .header("grpc-encoding", "gzip"),
            ],
        ),
    ]
}

fn main() {
    let root = grpc_rust_fuzz::repo_root().join("fuzz/corpus");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (name, calls) in server_seeds() {
        let bytes = rt.block_on(record(calls));
        // Replayed through the fuzz target's own path: must end cleanly.
        let out = grpc_rust_fuzz::run_connection(&bytes);
        println!(
            "server_conn/{name}: {} bytes in, {} bytes out",
            bytes.len(),
            out.len()
        );
        write(&root.join("server_conn"), name, &bytes);
    }

    for (i, req) in grpc_rust_fuzz::plugin_requests().iter().enumerate() {
        let bytes = req.encode_to_vec();
        write(
            &root.join("plugin_request"),
            &format!("request_{i}"),
            &bytes,
        );
        // plugin_structured: the base index and no edits, then a couple of edits each.
        write(
            &root.join("plugin_structured"),
            &format!("base_{i}"),
            &[i as u8],
        );
        write(
            &root.join("plugin_structured"),
            &format!("edits_{i}"),
            &[i as u8, 6, 0, 3, 7, 1, 2, 12, 0, 1, 5],
        );
    }

    // framing: [config, chunk, body...]; config bits 0-2 encoding, 3-4 limit.
    let msg = grpc_runtime::services::health::HealthCheckRequest {
        service: "grpc.fuzz.Echo".into(),
    };
    let mut body = BytesMut::new();
    for _ in 0..3 {
        body.extend_from_slice(&frame(&msg, None));
    }
    let mut seeds: Vec<(String, Vec<u8>)> = vec![("plain".into(), [&[0u8, 7][..], &body].concat())];
    for (i, enc) in CompressionEncoding::ALL.into_iter().enumerate() {
        let mut b = BytesMut::new();
        b.extend_from_slice(&frame(&msg, Some(enc)));
        b.extend_from_slice(&frame(&msg, None));
        seeds.push((
            format!("compressed_{enc}"),
            [&[i as u8 + 1, 3][..], &b].concat(),
        ));
        let mut big = BytesMut::new();
        compress(enc, &vec![b'z'; 20_000], &mut big).unwrap();
        let len = (big.len() as u32).to_be_bytes();
        // limit 16 KiB (config bits 3-4 = 2): decompresses past the limit
        seeds.push((
            format!("bomb_{enc}"),
            [&[(2 << 3) | (i as u8 + 1), 64, 1][..], &len, &big].concat(),
        ));
    }
    seeds.push(("unsupported".into(), vec![4, 1, 1, 0, 0, 0, 1, 0]));
    seeds.push(("oversized".into(), vec![3 << 3, 0, 0, 0, 0, 1, 0]));
    for (name, bytes) in seeds {
        write(&root.join("framing"), &name, &bytes);
    }

    for (i, v) in [
        "1S",
        "99999999H",
        "0n",
        "1000m",
        "5M",
        "250u",
        "00000001n",
        "123456789S",
        "1s",
        "S",
        "-1S",
        " 1S",
    ]
    .iter()
    .enumerate()
    {
        write(&root.join("timeout"), &format!("t{i}"), v.as_bytes());
    }
    for (i, v) in [
        "plain text",
        "100%25",
        "%E6%97%A5%E6%9C%AC",
        "bad %zz %",
        "%FF%fe",
        "%0A%0d%7F",
    ]
    .iter()
    .enumerate()
    {
        write(&root.join("grpc_message"), &format!("m{i}"), v.as_bytes());
    }
    for (i, v) in [
        "AAEC",
        "AAECAw==",
        "AAECAw",
        " AAE= ",
        "x-a-bin:AAEC,AwQ=\nx-b:text\nx-c-bin:\ngrpc-status:1\nx-d:\u{7f}",
        "x-bin:!!\nx-ok:1",
    ]
    .iter()
    .enumerate()
    {
        write(&root.join("metadata_bin"), &format!("b{i}"), v.as_bytes());
    }
    let all_details = rpc_types::Status {
        code: 10,
        message: "aborted".into(),
        details: vec![
            ErrorDetail::RetryInfo(rpc_types::RetryInfo {
                retry_delay: Some(prost_types::Duration {
                    seconds: 1,
                    nanos: 2,
                }),
            })
            .to_any(),
            ErrorDetail::BadRequest(rpc_types::BadRequest {
                field_violations: vec![Default::default()],
            })
            .to_any(),
            ErrorDetail::LocalizedMessage(rpc_types::LocalizedMessage {
                locale: "en".into(),
                message: "m".into(),
            })
            .to_any(),
            prost_types::Any {
                type_url: "type.googleapis.com/x.Y".into(),
                value: vec![1, 2, 3],
            },
        ],
    }
    .encode_to_vec();
    write(
        &root.join("status_details"),
        "details",
        &[10, 0]
            .iter()
            .chain(&all_details)
            .copied()
            .collect::<Vec<_>>(),
    );
    write(
        &root.join("status_details"),
        "details_header",
        &[10, 1]
            .iter()
            .copied()
            .chain(encode_bin(&all_details).into_bytes())
            .collect::<Vec<_>>(),
    );
    write(&root.join("status_details"), "empty", &[0, 0]);
}
