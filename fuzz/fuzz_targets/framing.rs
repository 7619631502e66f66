//! The gRPC length-prefixed message decoder ([`FrameDecoder`]) with compressed input, as
//! the server uses it: the stream's `grpc-encoding`, a receive limit (4 MiB by default, or
//! a small one), DATA-frame bytes in arbitrary splits.
//!
//! Input: byte 0 picks the encoding and the limit, byte 1 the chunk size, the rest is the
//! request body. Checks, beyond "no panic, no unbounded allocation":
//! - a payload never exceeds the limit;
//! - the outcome (payloads, then the error or the end-of-stream check) does not depend on
//!   how the body is split into chunks;
//! - compress/decompress round-trips the body in every encoding.
#![no_main]

use bytes::{Bytes, BytesMut};
use grpc_runtime::codec::{decode_message, FrameDecoder, DEFAULT_MAX_RECV_MESSAGE_SIZE};
use grpc_runtime::compression::{compress, decompress, CompressionEncoding};
use grpc_runtime::Code;
use libfuzzer_sys::fuzz_target;

/// What a decoder made of a whole body.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// Every message decoded; then `finish()` said this (None = clean end).
    Clean(Vec<(bool, Bytes)>, Option<Code>),
    /// Messages decoded before an error that ends the call.
    Failed(Vec<(bool, Bytes)>, Code),
}

fn run(
    encoding: Option<CompressionEncoding>,
    unsupported: bool,
    limit: usize,
    body: &[u8],
    chunk: usize,
) -> Outcome {
    let mut d = FrameDecoder::new(limit, encoding);
    if unsupported {
        d.set_unsupported_encoding("snappy".into());
    }
    let mut got = Vec::new();
    for piece in body.chunks(chunk.max(1)) {
        d.push(Bytes::copy_from_slice(piece));
        loop {
            match d.next_frame() {
                Ok(Some((compressed, payload))) => {
                    assert!(
                        payload.len() <= limit,
                        "payload of {} bytes over the limit {limit}",
                        payload.len()
                    );
                    // What a handler does next: decode a protobuf message (any outcome).
                    let _ = decode_message::<prost_types::Any>(payload.clone());
                    got.push((compressed, payload));
                }
                Ok(None) => break,
                Err(status) => return Outcome::Failed(got, status.code()),
            }
        }
    }
    Outcome::Clean(got, d.finish().err().map(|s| s.code()))
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (config, chunk, body) = (data[0], data[1], &data[2..]);
    let (encoding, unsupported) = match config & 0b111 {
        0 => (None, false),
        1 => (Some(CompressionEncoding::Gzip), false),
        2 => (Some(CompressionEncoding::Deflate), false),
        3 => (Some(CompressionEncoding::Zstd), false),
        // grpc-encoding named something we lack (client side)
        4 => (None, true),
        _ => (
            Some(CompressionEncoding::ALL[usize::from(config >> 6) % 3]),
            false,
        ),
    };
    let limit = match (config >> 3) & 0b11 {
        0 | 1 => DEFAULT_MAX_RECV_MESSAGE_SIZE,
        2 => 16 * 1024,
        _ => usize::from(chunk),
    };
    let whole = run(encoding, unsupported, limit, body, body.len());
    let split = run(
        encoding,
        unsupported,
        limit,
        body,
        usize::from(chunk % 64) + 1,
    );
    assert_eq!(whole, split, "outcome depends on the chunking");

    // Compression round trip of the raw body.
    let enc = CompressionEncoding::ALL[usize::from(chunk) % 3];
    let mut out = BytesMut::new();
    compress(enc, body, &mut out).expect("compressing into memory cannot fail");
    let back = decompress(enc, &out, body.len()).expect("round trip");
    assert_eq!(&back[..], body);
    if !body.is_empty() {
        let err = decompress(enc, &out, body.len() - 1).expect_err("one byte over the limit");
        assert_eq!(err.code(), Code::ResourceExhausted);
    }
});
