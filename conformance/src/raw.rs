//! Raw gRPC calls over a runtime transport connection, for what the runtime's `Channel`
//! does not expose and the interop cases need: choosing compression per request message
//! (client_compressed_streaming sends one compressed and one uncompressed message) and
//! seeing each response message's compressed flag (server_compressed_unary / _streaming
//! assert it). Everything else (connecting, TLS, framing, compression, status parsing) is
//! the runtime's own code (`transport::connect`, `codec`, `compression`, `Status`).

use bytes::{Buf, Bytes, BytesMut};
use grpc_runtime::codec::encode_message;
use grpc_runtime::compression::decompress;
use grpc_runtime::transport::{connect, Address, ClientTlsConfig, TransportConfig};
use grpc_runtime::{CompressionEncoding, Status};
use http::{HeaderMap, HeaderValue};

use crate::client::{certs_dir, ClientConfig};

/// Largest response message accepted.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// One response message: its compressed flag and its (decompressed) protobuf bytes.
#[derive(Debug)]
pub struct RawMessage {
    /// The compressed-flag byte of the frame was 1.
    pub compressed: bool,
    /// The message bytes after decompression.
    pub payload: Bytes,
}

/// The outcome of a raw call.
#[derive(Debug)]
pub struct RawResponse {
    /// Response headers (empty for Trailers-Only).
    pub headers: HeaderMap,
    /// Response messages in order.
    pub messages: Vec<RawMessage>,
    /// The final status.
    pub status: Status,
}

impl RawResponse {
    /// Decodes message `i` as `M`.
    pub fn decode<M: prost::Message + Default>(&self, i: usize) -> Result<M, String> {
        let m = self.messages.get(i).ok_or_else(|| format!("no response message #{i}"))?;
        M::decode(m.payload.clone()).map_err(|e| format!("response message #{i} does not decode: {e}"))
    }
}

/// Encodes `msg` as one frame, compressed with gzip when `compress` is set.
pub fn frame<M: prost::Message>(msg: &M, compress: bool) -> Result<Bytes, String> {
    let mut buf = BytesMut::new();
    encode_message(msg, compress.then_some(CompressionEncoding::Gzip), usize::MAX, &mut buf)
        .map_err(|s| format!("encoding a request: {}", s.message()))?;
    Ok(buf.freeze())
}

/// Makes one call to `path` on a new connection: sends `frames` (already framed, see
/// [`frame`]) with `grpc-encoding: gzip` when `gzip_header`, advertises gzip in
/// `grpc-accept-encoding`, half-closes, and reads every response frame and the status.
pub async fn call(cfg: &ClientConfig, path: &str, frames: Vec<Bytes>, gzip_header: bool) -> Result<RawResponse, String> {
    let host_port = format!("{}:{}", cfg.server_host, cfg.server_port);
    let addr = tokio::net::lookup_host(host_port.as_str())
        .await
        .map_err(|e| format!("resolving {host_port}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host_port} resolved to no address"))?;
    let server_name = cfg.server_host_override.clone().unwrap_or_else(|| cfg.server_host.clone());
    let mut tc = TransportConfig::default();
    if cfg.use_tls {
        let ca = cfg.ca_file.clone().unwrap_or_else(|| certs_dir().join("ca.pem"));
        let pem = std::fs::read(&ca).map_err(|e| format!("reading CA file {}: {e}", ca.display()))?;
        tc.tls = Some(ClientTlsConfig::new().ca_certificate_pem(pem).domain_name(server_name.clone()));
    }
    let conn = connect(&Address::Tcp(addr), &server_name, &tc)
        .await
        .map_err(|e| format!("connecting to {addr}: {}", e.message()))?;
    let authority = match &cfg.server_host_override {
        Some(o) => o.clone(),
        None => host_port.clone(),
    };
    let uri = http::Uri::builder()
        .scheme(if cfg.use_tls { "https" } else { "http" })
        .authority(authority.as_str())
        .path_and_query(path)
        .build()
        .map_err(|e| format!("building the request URI: {e}"))?;
    let mut req = http::Request::builder()
        .method(http::Method::POST)
        .uri(uri)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-accept-encoding", "gzip")
        .header("user-agent", grpc_runtime::USER_AGENT)
        .body(())
        .map_err(|e| format!("building the request: {e}"))?;
    if gzip_header {
        req.headers_mut().insert("grpc-encoding", HeaderValue::from_static("gzip"));
    }
    for (k, v) in &cfg.additional_metadata {
        // As the Channel does: `-bin` values go base64-encoded on the wire.
        let v = if k.ends_with("-bin") { grpc_runtime::metadata::encode_bin(v.as_bytes()) } else { v.clone() };
        match (http::HeaderName::try_from(k.as_str()), HeaderValue::try_from(v)) {
            (Ok(k), Ok(v)) => {
                req.headers_mut().append(k, v);
            }
            _ => return Err(format!("--additional_metadata {k:?} is not a valid header")),
        }
    }
    let mut sender = conn.send_request().ready().await.map_err(|e| format!("connection not ready: {e}"))?;
    let (response, mut body) = sender.send_request(req, false).map_err(|e| format!("sending the request: {e}"))?;
    for f in frames {
        body.reserve_capacity(f.len());
        body.send_data(f, false).map_err(|e| format!("sending a request message: {e}"))?;
    }
    body.send_data(Bytes::new(), true).map_err(|e| format!("half-closing: {e}"))?;

    let resp = response.await.map_err(|e| format!("awaiting the response: {e}"))?;
    let (parts, mut recv) = resp.into_parts();
    if recv.is_end_stream() {
        let status = Status::from_header_map(&parts.headers).unwrap_or_else(|| Status::from_http_status(parts.status));
        return Ok(RawResponse { headers: HeaderMap::new(), messages: Vec::new(), status });
    }
    let encoding = match parts.headers.get("grpc-encoding").map(|v| v.as_bytes()) {
        None | Some(b"identity") => None,
        Some(b"gzip") => Some(CompressionEncoding::Gzip),
        Some(other) => return Err(format!("server used an encoding we did not offer: {:?}", String::from_utf8_lossy(other))),
    };
    let mut buf = BytesMut::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.map_err(|e| format!("reading the response body: {e}"))?;
        let _ = recv.flow_control().release_capacity(chunk.len());
        buf.extend_from_slice(&chunk);
    }
    let trailers = recv.trailers().await.map_err(|e| format!("reading the trailers: {e}"))?;
    let status = trailers
        .as_ref()
        .and_then(Status::from_header_map)
        .ok_or("response ended without a grpc-status trailer")?;
    let mut messages = Vec::new();
    let mut data = buf.freeze();
    while !data.is_empty() {
        if data.len() < 5 {
            return Err(format!("truncated frame header ({} bytes left)", data.len()));
        }
        let flag = data.get_u8();
        let len = data.get_u32() as usize;
        if data.len() < len {
            return Err(format!("truncated frame: {len} bytes announced, {} left", data.len()));
        }
        let raw = data.split_to(len);
        let payload = match (flag, encoding) {
            (0, _) => raw,
            (1, Some(enc)) => decompress(enc, &raw, MAX_MESSAGE).map_err(|s| format!("decompressing: {}", s.message()))?,
            (1, None) => return Err("compressed flag set without grpc-encoding".into()),
            (f, _) => return Err(format!("invalid compressed-flag byte {f}")),
        };
        messages.push(RawMessage { compressed: flag == 1, payload });
    }
    Ok(RawResponse { headers: parts.headers, messages, status })
}
