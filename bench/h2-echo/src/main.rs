//! `h2-echo`: the ceiling for unary benchmarks. A bare `h2` server (no gRPC layer, no
//! protobuf, no routing) that answers every request with the same pre-built gRPC-framed
//! response: HEADERS(:status 200, content-type application/grpc), one DATA frame holding a
//! length-prefixed `SimpleResponse` with a payload of `--resp_size` bytes (default 0, i.e. an
//! empty message), then trailers `grpc-status: 0`. The request body is drained (and its flow
//! control released) but not decoded.
//!
//! Usage: `h2-echo [--port=N] [--resp_size=N]` (port 0 picks one; the bound port is printed
//! on stdout as `listening on 127.0.0.1:PORT`). Runs on a tokio multi-thread runtime like the
//! gRPC servers it is compared with; pin it with `taskset` from the outside.

use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};
use h2::server;
use http::{HeaderMap, HeaderValue, Response};
use tokio::net::{TcpListener, TcpStream};

fn parse_flag(args: &[String], name: &str, default: usize) -> Result<usize, String> {
    let prefix = format!("--{name}=");
    match args.iter().find_map(|a| a.strip_prefix(&prefix)) {
        Some(v) => v.parse().map_err(|_| format!("--{name}={v}: not a number")),
        None => Ok(default),
    }
}

/// A gRPC frame holding a `SimpleResponse { payload: Payload { body: [0; n] } }` (or the
/// empty message when n is 0).
fn framed_response(n: usize) -> Bytes {
    let mut msg = BytesMut::new();
    if n > 0 {
        // Payload { body = 2 (bytes) }: tag 0x12, varint len, bytes
        let mut payload = BytesMut::new();
        payload.put_u8(0x12);
        put_varint(&mut payload, n as u64);
        payload.put_bytes(0, n);
        // SimpleResponse { payload = 1 }: tag 0x0a
        msg.put_u8(0x0a);
        put_varint(&mut msg, payload.len() as u64);
        msg.put(payload);
    }
    let mut out = BytesMut::with_capacity(5 + msg.len());
    out.put_u8(0);
    out.put_u32(msg.len() as u32);
    out.put(msg);
    out.freeze()
}

fn put_varint(b: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        b.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    b.put_u8(v as u8);
}

async fn serve_conn(sock: TcpStream, body: Bytes) {
    let _ = sock.set_nodelay(true);
    let mut conn = match server::handshake(sock).await {
        Ok(c) => c,
        Err(_) => return,
    };
    while let Some(res) = conn.accept().await {
        let Ok((req, mut respond)) = res else { return };
        let body = body.clone();
        tokio::spawn(async move {
            let mut reqbody = req.into_body();
            while let Some(chunk) = reqbody.data().await {
                match chunk {
                    Ok(c) => {
                        let _ = reqbody.flow_control().release_capacity(c.len());
                    }
                    Err(_) => return,
                }
            }
            let resp = Response::builder()
                .status(200)
                .header("content-type", "application/grpc")
                .body(())
                .unwrap_or_default();
            let Ok(mut send) = respond.send_response(resp, false) else {
                return;
            };
            if send.send_data(body, false).is_err() {
                return;
            }
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from_static("0"));
            let _ = send.send_trailers(trailers);
        });
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (port, resp_size) = match (
        parse_flag(&args, "port", 50055),
        parse_flag(&args, "resp_size", 0),
    ) {
        (Ok(p), Ok(r)) => (p, r),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("h2-echo: {e}");
            std::process::exit(2);
        }
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port as u16));
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("h2-echo: binding {addr}: {e}");
            std::process::exit(1);
        }
    };
    if let Ok(a) = listener.local_addr() {
        println!("listening on {a}");
    }
    let body = framed_response(resp_size);
    loop {
        tokio::select! {
            acc = listener.accept() => {
                if let Ok((sock, _)) = acc {
                    tokio::spawn(serve_conn(sock, body.clone()));
                }
            }
            _ = tokio::signal::ctrl_c() => return,
        }
    }
}
