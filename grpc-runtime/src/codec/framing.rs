//! Length-prefixed message framing and the incremental frame decoder.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;

use crate::compression::{self, CompressionEncoding};
use crate::status::Status;

/// Size of the message prefix: 1 flag byte + 4 length bytes.
pub const HEADER_LEN: usize = 5;

/// Encodes `msg` as one framed message appended to `buf`.
///
/// With `compression` set the payload is compressed and the flag byte is 1;
/// otherwise the flag byte is 0. A (post-compression) payload larger than
/// `max_send` gives RESOURCE_EXHAUSTED and leaves `buf` unchanged.
pub fn encode_message<M: Message>(
    msg: &M,
    compression: Option<CompressionEncoding>,
    max_send: usize,
    buf: &mut BytesMut,
) -> Result<(), Status> {
    let start = buf.len();
    let raw_len = msg.encoded_len();
    buf.reserve(HEADER_LEN + raw_len);
    buf.put_bytes(0, HEADER_LEN);
    let flag = match compression {
        None => {
            // encoded_len was reserved, so encode cannot fail for lack of space
            if let Err(e) = msg.encode(buf) {
                buf.truncate(start);
                return Err(Status::internal(format!("failed to encode message: {e}")));
            }
            0u8
        }
        Some(enc) => {
            let plain = msg.encode_to_vec();
            if let Err(e) = compression::compress(enc, &plain, buf) {
                buf.truncate(start);
                return Err(Status::internal(format!(
                    "failed to compress message ({enc}): {e}"
                )));
            }
            1u8
        }
    };
    let len = buf.len() - start - HEADER_LEN;
    if len > max_send || len > u32::MAX as usize {
        buf.truncate(start);
        return Err(Status::resource_exhausted(format!(
            "trying to send message larger than max ({len} vs. {max_send})"
        )));
    }
    buf[start] = flag;
    buf[start + 1..start + HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

/// Decodes a protobuf payload, mapping failures to INTERNAL.
pub fn decode_message<M: Message + Default>(payload: Bytes) -> Result<M, Status> {
    M::decode(payload)
        .map_err(|e| Status::internal(format!("failed to decode protobuf message: {e}")))
}

/// Incremental decoder of framed messages.
///
/// Feed it DATA-frame bytes with [`FrameDecoder::push`]; take complete
/// (decompressed) payloads with [`FrameDecoder::next_message`]. A message may
/// span many pushes and one push may hold several messages.
#[derive(Debug)]
pub struct FrameDecoder {
    /// Received bytes not yet parsed, while they are still one received chunk: messages
    /// are sliced out of it without copying. Empty whenever `buf` is not.
    head: Bytes,
    /// Bytes of a message that spans chunks, copied together.
    buf: BytesMut,
    max_recv: usize,
    encoding: Option<CompressionEncoding>,
    /// `grpc-encoding` named something we cannot decode (its name).
    unsupported_encoding: Option<String>,
    /// Stats: received message bytes (wire size, prefix excluded) are added here.
    counter: Option<std::sync::Arc<crate::stats::MessageBytes>>,
}

impl FrameDecoder {
    /// A decoder with a receive limit and the stream's `grpc-encoding`
    /// (`None` for identity/absent).
    pub fn new(max_recv: usize, encoding: Option<CompressionEncoding>) -> FrameDecoder {
        FrameDecoder {
            head: Bytes::new(),
            buf: BytesMut::new(),
            max_recv,
            encoding,
            unsupported_encoding: None,
            counter: None,
        }
    }

    /// Records that the peer announced an encoding we lack: compressed
    /// messages then fail with INTERNAL naming it (client side, where the
    /// spec says a response in an unknown encoding is INTERNAL).
    pub fn set_unsupported_encoding(&mut self, name: String) {
        self.unsupported_encoding = Some(name);
    }

    /// Counts the wire size of every message received into `counter` (stats).
    pub(crate) fn set_counter(&mut self, counter: std::sync::Arc<crate::stats::MessageBytes>) {
        self.counter = Some(counter);
    }

    /// The receive limit.
    pub fn max_recv(&self) -> usize {
        self.max_recv
    }

    /// The stream's encoding (`None` = identity, or one we cannot decode).
    pub fn encoding(&self) -> Option<CompressionEncoding> {
        self.encoding
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: Bytes) {
        if self.buf.is_empty() && self.head.is_empty() {
            // The common case: whole messages get sliced out of this chunk.
            self.head = data;
        } else {
            self.spill_head();
            self.buf.extend_from_slice(&data);
        }
    }

    /// Moves the unparsed chunk into `buf` (a message spans chunks).
    fn spill_head(&mut self) {
        if !self.head.is_empty() {
            self.buf.extend_from_slice(&self.head);
            self.head = Bytes::new();
        }
    }

    /// Bytes buffered but not yet returned.
    pub fn buffered(&self) -> usize {
        self.head.len() + self.buf.len()
    }

    /// Checks a message prefix: (compressed, length) or the error that ends the call.
    fn check_prefix(&self, prefix: &[u8]) -> Result<(bool, usize), Status> {
        let flag = prefix[0];
        let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
        let compressed = match flag {
            0 => false,
            1 => true,
            other => {
                return Err(Status::internal(format!(
                    "invalid message flag byte {other:#04x} (expected 0 or 1)"
                )))
            }
        };
        if len > self.max_recv {
            return Err(Status::resource_exhausted(format!(
                "received message larger than max ({len} vs. {})",
                self.max_recv
            )));
        }
        if compressed && self.encoding.is_none() {
            return Err(match &self.unsupported_encoding {
                Some(name) => Status::internal(format!(
                    "received a message compressed with unsupported encoding {name:?}"
                )),
                None => Status::internal(
                    "compressed flag set on a message but no grpc-encoding was sent",
                ),
            });
        }
        Ok((compressed, len))
    }

    /// Decompresses a payload if its flag says so.
    fn payload(&self, compressed: bool, payload: Bytes) -> Result<Option<(bool, Bytes)>, Status> {
        if let Some(c) = &self.counter {
            c.add_rcvd(payload.len());
        }
        if compressed {
            // check_prefix made sure there is an encoding
            let Some(enc) = self.encoding else {
                return Err(Status::internal("missing encoding"));
            };
            return compression::decompress(enc, &payload, self.max_recv).map(|p| Some((true, p)));
        }
        Ok(Some((false, payload)))
    }

    /// Returns the next complete payload (decompressed), `Ok(None)` if more
    /// bytes are needed, or an error that ends the call: a length prefix over
    /// the limit (RESOURCE_EXHAUSTED, raised as soon as the prefix arrives),
    /// a flag other than 0/1, or flag 1 without a usable `grpc-encoding`
    /// (INTERNAL).
    pub fn next_message(&mut self) -> Result<Option<Bytes>, Status> {
        Ok(self.next_frame()?.map(|(_, payload)| payload))
    }

    /// As [`FrameDecoder::next_message`], also telling whether the message's
    /// compressed flag was set: `Ok(Some((compressed, payload)))`.
    pub fn next_frame(&mut self) -> Result<Option<(bool, Bytes)>, Status> {
        if self.head.len() >= HEADER_LEN {
            let (compressed, len) = self.check_prefix(&self.head[..HEADER_LEN])?;
            if self.head.len() >= HEADER_LEN + len {
                let payload = self.head.slice(HEADER_LEN..HEADER_LEN + len);
                self.head.advance(HEADER_LEN + len);
                return self.payload(compressed, payload);
            }
        }
        // Not a whole message in the chunk: collect it in `buf`.
        self.spill_head();
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let (compressed, len) = self.check_prefix(&self.buf[..HEADER_LEN])?;
        if self.buf.len() < HEADER_LEN + len {
            // Reserve for what is missing, but never more than MAX_RESERVE up front: the
            // length prefix is the peer's claim, and 5 bytes must not make us allocate
            // the whole receive limit (times every open stream). Larger messages grow
            // the buffer as their bytes actually arrive.
            self.buf
                .reserve((HEADER_LEN + len - self.buf.len()).min(MAX_RESERVE));
            return Ok(None);
        }
        self.buf.advance(HEADER_LEN);
        let payload = self.buf.split_to(len).freeze();
        self.payload(compressed, payload)
    }

    /// Checks the end of the stream: leftover bytes mean a truncated
    /// message (INTERNAL).
    pub fn finish(&self) -> Result<(), Status> {
        match self.buffered() {
            0 => Ok(()),
            n => Err(Status::internal(format!(
                "stream ended in the middle of a message ({n} bytes left over)"
            ))),
        }
    }
}

/// The most [`FrameDecoder`] reserves ahead of bytes actually received.
const MAX_RESERVE: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Code;

    #[derive(Clone, PartialEq, prost::Message)]
    struct M {
        #[prost(string, tag = "1")]
        s: String,
    }

    fn frames(msgs: &[M], enc: Option<CompressionEncoding>) -> Bytes {
        let mut buf = BytesMut::new();
        for m in msgs {
            encode_message(m, enc, usize::MAX, &mut buf).unwrap();
        }
        buf.freeze()
    }

    #[test]
    fn header_bytes() {
        let b = frames(&[M { s: "hi".into() }], None);
        assert_eq!(&b[..], &[0, 0, 0, 0, 4, 0x0a, 2, b'h', b'i']);
        let b = frames(&[M::default()], None);
        assert_eq!(&b[..], &[0, 0, 0, 0, 0]);
    }

    #[test]
    fn arbitrary_splits() {
        let msgs: Vec<M> = (0..20)
            .map(|i| M {
                s: "x".repeat(i * 37),
            })
            .collect();
        for enc in std::iter::once(None).chain(CompressionEncoding::ALL.map(Some)) {
            let all = frames(&msgs, enc);
            for chunk in [1usize, 2, 3, 5, 7, 64, 1000, all.len()] {
                let mut d = FrameDecoder::new(1 << 20, enc);
                let mut out = Vec::new();
                for piece in all.chunks(chunk) {
                    d.push(Bytes::copy_from_slice(piece));
                    while let Some(p) = d.next_message().unwrap() {
                        out.push(decode_message::<M>(p).unwrap());
                    }
                }
                d.finish().unwrap();
                assert_eq!(out, msgs, "chunk {chunk} enc {enc:?}");
            }
        }
    }

    #[test]
    fn whole_messages_are_sliced_out_of_the_chunk_without_copying() {
        let chunk = frames(&[M { s: "a".into() }, M { s: "bb".into() }], None);
        let mut d = FrameDecoder::new(100, None);
        d.push(chunk.clone());
        for want in ["a", "bb"] {
            let p = d.next_message().unwrap().unwrap();
            assert!(
                chunk.as_ptr_range().contains(&p.as_ptr()),
                "payload was copied"
            );
            assert_eq!(decode_message::<M>(p).unwrap().s, want);
        }
        assert_eq!(d.next_message().unwrap(), None);
        d.finish().unwrap();
    }

    #[test]
    fn limits() {
        let mut buf = BytesMut::new();
        let big = M { s: "y".repeat(100) };
        let err = encode_message(&big, None, 50, &mut buf).unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted);
        assert!(buf.is_empty());
        // receive limit triggers on the prefix alone
        let mut d = FrameDecoder::new(50, None);
        d.push(Bytes::from_static(&[0, 0, 0, 0, 200]));
        assert_eq!(
            d.next_message().unwrap_err().code(),
            Code::ResourceExhausted
        );
        // exactly at the limit is fine
        let mut d = FrameDecoder::new(102, None);
        d.push(frames(std::slice::from_ref(&big), None));
        assert!(d.next_message().unwrap().is_some());
        // compressed small but decompressed too large
        let mut d = FrameDecoder::new(50, Some(CompressionEncoding::Gzip));
        d.push(frames(
            &[M {
                s: "z".repeat(1000),
            }],
            Some(CompressionEncoding::Gzip),
        ));
        assert_eq!(
            d.next_message().unwrap_err().code(),
            Code::ResourceExhausted
        );
    }

    #[test]
    fn length_prefix_alone_does_not_allocate_the_claimed_size() {
        // A 5-byte prefix claiming 4 GiB under an unlimited receive limit: we wait for
        // more bytes, holding a bounded buffer rather than 4 GiB.
        let mut d = FrameDecoder::new(usize::MAX, None);
        d.push(Bytes::from_static(&[0, 0xFF, 0xFF, 0xFF, 0xFF]));
        assert_eq!(d.next_message().unwrap(), None);
        assert!(
            d.buf.capacity() <= HEADER_LEN + MAX_RESERVE,
            "{}",
            d.buf.capacity()
        );
        assert_eq!(d.finish().unwrap_err().code(), Code::Internal);
        // Under the default-sized limit, the same: reserve is bounded, not 4 MiB.
        let mut d = FrameDecoder::new(4 << 20, None);
        d.push(Bytes::from_static(&[0, 0, 0x40, 0, 0]));
        assert_eq!(d.next_message().unwrap(), None);
        assert!(
            d.buf.capacity() <= HEADER_LEN + MAX_RESERVE,
            "{}",
            d.buf.capacity()
        );
        // ... and the message still decodes once its bytes arrive in pieces.
        for _ in 0..64 {
            d.push(Bytes::from(vec![0u8; 64 * 1024]));
        }
        assert_eq!(d.next_message().unwrap().unwrap().len(), 4 << 20);
        // 0xFFFFFFFF under the default limit fails on the prefix alone.
        let mut d = FrameDecoder::new(4 << 20, None);
        d.push(Bytes::from_static(&[0, 0xFF, 0xFF, 0xFF, 0xFF]));
        assert_eq!(
            d.next_message().unwrap_err().code(),
            Code::ResourceExhausted
        );
    }

    #[test]
    fn flags() {
        let mut d = FrameDecoder::new(100, None);
        d.push(Bytes::from_static(&[1, 0, 0, 0, 1, 0]));
        let e = d.next_message().unwrap_err();
        assert_eq!(e.code(), Code::Internal);
        assert!(e.message().contains("grpc-encoding"));
        let mut d = FrameDecoder::new(100, None);
        d.push(Bytes::from_static(&[2, 0, 0, 0, 0]));
        assert_eq!(d.next_message().unwrap_err().code(), Code::Internal);
        let mut d = FrameDecoder::new(100, None);
        d.push(Bytes::from_static(&[0, 0, 0, 0, 3, 1]));
        assert_eq!(d.next_message().unwrap(), None);
        assert_eq!(d.finish().unwrap_err().code(), Code::Internal);
        // uncompressed message on a stream with an encoding is fine
        let mut d = FrameDecoder::new(100, Some(CompressionEncoding::Gzip));
        d.push(frames(&[M { s: "a".into() }], None));
        assert_eq!(
            decode_message::<M>(d.next_message().unwrap().unwrap())
                .unwrap()
                .s,
            "a"
        );
        // garbage protobuf -> INTERNAL
        assert_eq!(
            decode_message::<M>(Bytes::from_static(&[0x0a, 10, 1]))
                .unwrap_err()
                .code(),
            Code::Internal
        );
    }
}
