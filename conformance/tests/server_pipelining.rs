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
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conformance::pb::test_service_server::TestServiceServer;
use conformance::server::InteropService;
use frames::{Frame, Splitter, Tapped, Wire, END_STREAM, HEADERS, PREFACE, SETTINGS};
use grpc_runtime::server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Calls the client pipelines in one write.
const CALLS: u32 = 64;

/// Reads frames from `tcp` until `done` holds for the frames read so far.
async fn read_until(
    tcp: &mut TcpStream,
    split: &mut Splitter,
    seen: &mut Vec<Frame>,
    done: impl Fn(&[Frame]) -> bool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    while !done(seen) {
        let n = tcp.read(&mut buf).await.expect("read from the server");
        assert!(
            n > 0,
            "the server closed the connection after {} frames",
            seen.len()
        );
        seen.extend(split.feed(&buf[..n]));
    }
}

// A current-thread runtime: the server's connection task and its calls share one thread,
// as they do on a one-core server.
#[tokio::test]
async fn responses_go_out_while_later_calls_wait() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let wire = Arc::new(Mutex::new(Wire::default()));
    let server_wire = Arc::clone(&wire);
    let incoming = futures_util::stream::once(async move {
        let (io, peer) = listener.accept().await?;
        io.set_nodelay(true)?;
        Ok::<_, io::Error>((Tapped::new(io, server_wire), Some(peer)))
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
        read_until(&mut tcp, &mut split, &mut seen, |f| {
            f.iter().any(|f| f.kind == SETTINGS && f.flags == 0)
        })
        .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        wire.lock().unwrap().server_writes.clear();

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
            f.iter()
                .filter(|f| f.kind == HEADERS && f.flags & END_STREAM != 0)
                .count()
                == CALLS as usize
        })
        .await;
        let ok = seen
            .iter()
            .filter(|f| f.kind == HEADERS && f.flags & END_STREAM != 0)
            .count();
        assert_eq!(ok, CALLS as usize, "every call answered");
    };
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the calls finish within 30 s");

    let wire = wire.lock().unwrap();
    let with_responses: Vec<&Vec<u32>> = wire
        .server_writes
        .iter()
        .filter(|w| !w.is_empty())
        .collect();
    let sizes: Vec<usize> = with_responses.iter().map(|w| w.len()).collect();
    assert_eq!(
        sizes.iter().sum::<usize>(),
        CALLS as usize,
        "responses per write: {sizes:?}"
    );
    // Responses went out before the last calls were even accepted: several writes, the
    // first with one burst of 16 (64 in one write without the yield).
    assert!(
        sizes.len() >= 2,
        "all {CALLS} responses in one write: {sizes:?}"
    );
    assert!(
        sizes[0] <= 16,
        "the first write held {} responses: {sizes:?}",
        sizes[0]
    );
    // In call order: the first write answers the first streams.
    assert_eq!(
        with_responses[0][0], 1,
        "responses per write: {with_responses:?}"
    );
}
