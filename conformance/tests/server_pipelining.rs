//! The server answers a pipelining client while it works: when one read brings many
//! requests on a connection, the responses of the first calls are written before the
//! last calls run (the connection task yields every 16 accepted streams), instead of
//! every call running first and all responses going out in one write at the end, which
//! leaves the client idle while the server works and the server idle while the client
//! answers.
//!
//! A raw client on real TCP sends 64 unary calls in one write to our server (serving
//! `grpc.testing.TestService` through `serve_with_incoming_stream`, its socket tapped
//! so the test sees which frames each write of the server carries).

#[allow(dead_code)]
#[path = "negative_http2/frames.rs"]
mod frames;

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use conformance::pb::test_service_server::TestServiceServer;
use conformance::server::InteropService;
use frames::{Frame, Splitter, END_STREAM, HEADERS, PREFACE, SETTINGS};
use grpc_runtime::server::Server;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Calls the client pipelines in one write.
const CALLS: u32 = 64;

/// For each write of the server, the streams whose response ended in it.
type Writes = Arc<Mutex<Vec<Vec<u32>>>>;

/// The server's side of the connection: records, per write, the streams it ended.
struct WriteTap {
    io: TcpStream,
    split: Splitter,
    writes: Writes,
}

impl WriteTap {
    fn record(&mut self, bytes: &[u8]) {
        let ended: Vec<u32> = self
            .split
            .feed(bytes)
            .iter()
            .filter(|f: &&Frame| f.kind == HEADERS && f.flags & END_STREAM != 0)
            .map(|f| f.stream)
            .collect();
        self.writes.lock().unwrap().push(ended);
    }
}

impl AsyncRead for WriteTap {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteTap {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            this.record(&buf[..*n]);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &r {
            let mut left = *n;
            let mut written = Vec::with_capacity(left);
            for b in bufs {
                let take = left.min(b.len());
                written.extend_from_slice(&b[..take]);
                left -= take;
            }
            this.record(&written);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Reads frames from `tcp` until `done` holds for the frames read so far.
async fn read_until(tcp: &mut TcpStream, split: &mut Splitter, seen: &mut Vec<Frame>, done: impl Fn(&[Frame]) -> bool) {
    let mut buf = vec![0u8; 64 * 1024];
    while !done(seen) {
        let n = tcp.read(&mut buf).await.expect("read from the server");
        assert!(n > 0, "the server closed the connection after {} frames", seen.len());
        seen.extend(split.feed(&buf[..n]));
    }
}

// A current-thread runtime: the server's connection task and its calls share one thread,
// as they do on a one-core server.
#[tokio::test]
async fn responses_go_out_while_later_calls_wait() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let writes: Writes = Arc::default();
    let server_writes = Arc::clone(&writes);
    let incoming = futures_util::stream::once(async move {
        let (io, peer) = listener.accept().await?;
        io.set_nodelay(true)?;
        Ok::<_, io::Error>((WriteTap { io, split: Splitter::server_to_client(), writes: server_writes }, Some(peer)))
    });
    tokio::spawn(
        Server::builder()
            .add_service(TestServiceServer::new(InteropService))
            .serve_with_incoming_stream(incoming, std::future::pending()),
    );

    let run = async {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let mut out = PREFACE.to_vec();
        frames::put_settings(&mut out, &[]);
        tcp.write_all(&out).await.unwrap();
        // The server's SETTINGS first, so it has nothing of its own left to write.
        let (mut split, mut seen) = (Splitter::server_to_client(), Vec::new());
        read_until(&mut tcp, &mut split, &mut seen, |f| f.iter().any(|f| f.kind == SETTINGS && f.flags == 0)).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        writes.lock().unwrap().clear();

        // 64 unary calls (an empty SimpleRequest each) in one write.
        let mut out = Vec::new();
        frames::put_frame(&mut out, SETTINGS, frames::ACK, 0, &[]);
        for i in 0..CALLS {
            let stream = 2 * i + 1;
            frames::put_headers(
                &mut out,
                stream,
                &[
                    (":method", "POST"),
                    (":scheme", "http"),
                    (":path", "/grpc.testing.TestService/UnaryCall"),
                    (":authority", "localhost"),
                    ("content-type", "application/grpc"),
                    ("te", "trailers"),
                ],
                false,
            );
            frames::put_data(&mut out, stream, &[0, 0, 0, 0, 0], None, true);
        }
        tcp.write_all(&out).await.unwrap();
        read_until(&mut tcp, &mut split, &mut seen, |f| {
            f.iter().filter(|f| f.kind == HEADERS && f.flags & END_STREAM != 0).count() == CALLS as usize
        })
        .await;
        let ok = seen.iter().filter(|f| f.kind == HEADERS && f.flags & END_STREAM != 0).count();
        assert_eq!(ok, CALLS as usize, "every call answered");
    };
    tokio::time::timeout(Duration::from_secs(30), run).await.expect("the calls finish within 30 s");

    let writes = writes.lock().unwrap();
    let with_responses: Vec<&Vec<u32>> = writes.iter().filter(|w| !w.is_empty()).collect();
    let sizes: Vec<usize> = with_responses.iter().map(|w| w.len()).collect();
    assert_eq!(sizes.iter().sum::<usize>(), CALLS as usize, "responses per write: {sizes:?}");
    // Responses went out before the last calls were even accepted: several writes, the
    // first with one burst of 16 (64 in one write without the yield).
    assert!(sizes.len() >= 2, "all {CALLS} responses in one write: {sizes:?}");
    assert!(sizes[0] <= 16, "the first write held {} responses: {sizes:?}", sizes[0]);
    // In call order: the first write answers the first streams.
    assert_eq!(with_responses[0][0], 1, "responses per write: {with_responses:?}");
}
