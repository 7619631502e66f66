//! Message codec: the 5-byte gRPC framing (flag byte + 4-byte big-endian
//! length + payload), an incremental decoder for bytes arriving in arbitrary
//! DATA-frame splits, size limits (RESOURCE_EXHAUSTED), the compressed flag,
//! and prost encode/decode. Nothing here knows about sockets or HTTP/2.

mod batch;
mod framing;

pub(crate) use batch::{next_batch, BatchEnd};

pub use framing::{decode_message, encode_message, FrameDecoder, HEADER_LEN};

/// Default maximum size of a received message (4 MiB), as grpc-go and C core.
pub const DEFAULT_MAX_RECV_MESSAGE_SIZE: usize = 4 * 1024 * 1024;
/// Default maximum size of a sent message (unlimited).
pub const DEFAULT_MAX_SEND_MESSAGE_SIZE: usize = usize::MAX;
