//! Message compression: identity, gzip, deflate (zlib format, as gRPC's
//! "deflate" is), zstd; parsing and emitting `grpc-encoding` and
//! `grpc-accept-encoding`; negotiation helpers. Each message is compressed
//! on its own (no context across messages).
//!
//! gzip and deflate need the `gzip` cargo feature (on by default; flate2 with its
//! pure-Rust backend), zstd the `zstd` feature (off by default; it builds the zstd C
//! library). An encoding that is not compiled in does not exist here: its
//! [`CompressionEncoding`] variant is absent, it is never advertised in
//! `grpc-accept-encoding`, and a peer's message in it is rejected as an encoding we do
//! not implement (UNIMPLEMENTED, listing what we accept).

use std::fmt;
#[cfg(any(feature = "gzip", feature = "zstd"))]
use std::io::{Read, Write};

#[cfg(any(feature = "gzip", feature = "zstd"))]
use bytes::BufMut;
use bytes::{Bytes, BytesMut};

use crate::status::Status;

/// Header naming the encoding of compressed messages.
pub const GRPC_ENCODING: &str = "grpc-encoding";
/// Header listing the encodings a peer accepts.
pub const GRPC_ACCEPT_ENCODING: &str = "grpc-accept-encoding";

// The same names as `HeaderName`s: inserting a `&str` key copies it every time.
pub(crate) const GRPC_ENCODING_NAME: http::HeaderName =
    http::HeaderName::from_static(GRPC_ENCODING);
pub(crate) const GRPC_ACCEPT_ENCODING_NAME: http::HeaderName =
    http::HeaderName::from_static(GRPC_ACCEPT_ENCODING);

/// A compression algorithm other than identity. Only the algorithms compiled in (the
/// `gzip` and `zstd` cargo features) have a variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CompressionEncoding {
    /// `gzip` (RFC 1952). Needs the `gzip` feature (on by default).
    #[cfg(feature = "gzip")]
    #[cfg_attr(docsrs, doc(cfg(feature = "gzip")))]
    Gzip,
    /// `deflate`: the zlib format (RFC 1950), as the gRPC implementations use it.
    /// Needs the `gzip` feature (on by default).
    #[cfg(feature = "gzip")]
    #[cfg_attr(docsrs, doc(cfg(feature = "gzip")))]
    Deflate,
    /// `zstd` (RFC 8878). Needs the `zstd` feature (off by default).
    #[cfg(feature = "zstd")]
    #[cfg_attr(docsrs, doc(cfg(feature = "zstd")))]
    Zstd,
}

/// How many algorithms are compiled in.
const COMPILED_IN: usize = 2 * cfg!(feature = "gzip") as usize + cfg!(feature = "zstd") as usize;

impl CompressionEncoding {
    /// All algorithms compiled into this build (see the `gzip` and `zstd` features).
    pub const ALL: [CompressionEncoding; COMPILED_IN] = [
        #[cfg(feature = "gzip")]
        CompressionEncoding::Gzip,
        #[cfg(feature = "gzip")]
        CompressionEncoding::Deflate,
        #[cfg(feature = "zstd")]
        CompressionEncoding::Zstd,
    ];

    /// The name used in `grpc-encoding`.
    pub fn as_str(self) -> &'static str {
        match self {
            #[cfg(feature = "gzip")]
            CompressionEncoding::Gzip => "gzip",
            #[cfg(feature = "gzip")]
            CompressionEncoding::Deflate => "deflate",
            #[cfg(feature = "zstd")]
            CompressionEncoding::Zstd => "zstd",
        }
    }

    /// Parses an encoding name. `Ok(None)` for `identity`, `Err(name)` for
    /// names we do not support (including those whose feature is off).
    pub fn parse(name: &str) -> Result<Option<CompressionEncoding>, String> {
        match name.trim() {
            "identity" => Ok(None),
            #[cfg(feature = "gzip")]
            "gzip" => Ok(Some(CompressionEncoding::Gzip)),
            #[cfg(feature = "gzip")]
            "deflate" => Ok(Some(CompressionEncoding::Deflate)),
            #[cfg(feature = "zstd")]
            "zstd" => Ok(Some(CompressionEncoding::Zstd)),
            other => Err(other.to_string()),
        }
    }

    fn bit(self) -> u8 {
        match self {
            #[cfg(feature = "gzip")]
            CompressionEncoding::Gzip => 1,
            #[cfg(feature = "gzip")]
            CompressionEncoding::Deflate => 2,
            #[cfg(feature = "zstd")]
            CompressionEncoding::Zstd => 4,
        }
    }
}

impl fmt::Display for CompressionEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of compression encodings (identity is always implied).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct EncodingSet(u8);

impl EncodingSet {
    /// Only identity.
    pub const fn none() -> EncodingSet {
        EncodingSet(0)
    }

    /// Every algorithm compiled into this build (see [`CompressionEncoding::ALL`]).
    pub const fn all() -> EncodingSet {
        EncodingSet(
            if cfg!(feature = "gzip") { 1 | 2 } else { 0 }
                | if cfg!(feature = "zstd") { 4 } else { 0 },
        )
    }

    /// True if `enc` is in the set.
    pub fn contains(self, enc: CompressionEncoding) -> bool {
        self.0 & enc.bit() != 0
    }

    /// Adds `enc`.
    pub fn insert(&mut self, enc: CompressionEncoding) {
        self.0 |= enc.bit();
    }

    /// Returns the set with `enc` added.
    pub fn with(mut self, enc: CompressionEncoding) -> EncodingSet {
        self.insert(enc);
        self
    }

    /// Removes `enc`.
    pub fn remove(&mut self, enc: CompressionEncoding) {
        self.0 &= !enc.bit();
    }

    /// The members, in a fixed order.
    pub fn iter(self) -> impl Iterator<Item = CompressionEncoding> {
        CompressionEncoding::ALL
            .into_iter()
            .filter(move |e| self.contains(*e))
    }

    /// The `grpc-accept-encoding` value: `identity` followed by the members,
    /// e.g. `identity,gzip,deflate,zstd` (with every encoding compiled in).
    pub fn to_header_value(self) -> String {
        let mut s = String::from("identity");
        for e in self.iter() {
            s.push(',');
            s.push_str(e.as_str());
        }
        s
    }

    /// [`EncodingSet::to_header_value`] as a header value, built once per set.
    pub(crate) fn header_value(self) -> http::HeaderValue {
        static VALUES: std::sync::OnceLock<Vec<http::HeaderValue>> = std::sync::OnceLock::new();
        let values = VALUES.get_or_init(|| {
            (0..=EncodingSet::all().0)
                .map(|bits| {
                    http::HeaderValue::try_from(EncodingSet(bits).to_header_value())
                        .unwrap_or(http::HeaderValue::from_static("identity"))
                })
                .collect()
        });
        values
            .get(usize::from(self.0))
            .cloned()
            .unwrap_or(http::HeaderValue::from_static("identity"))
    }

    /// Parses a `grpc-accept-encoding` value (comma-separated; unknown names
    /// are ignored).
    pub fn parse_header(value: &[u8]) -> EncodingSet {
        let mut set = EncodingSet::none();
        for part in value.split(|b| *b == b',') {
            if let Ok(name) = std::str::from_utf8(part) {
                if let Ok(Some(e)) = CompressionEncoding::parse(name) {
                    set.insert(e);
                }
            }
        }
        set
    }

    /// Reads all `grpc-accept-encoding` headers of a map.
    pub fn from_headers(headers: &http::HeaderMap) -> EncodingSet {
        let mut set = EncodingSet::none();
        for v in headers.get_all(&GRPC_ACCEPT_ENCODING_NAME) {
            set.0 |= EncodingSet::parse_header(v.as_bytes()).0;
        }
        set
    }
}

impl fmt::Debug for EncodingSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// What a `grpc-encoding` header said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum HeaderEncoding {
    /// Absent or `identity`.
    Identity,
    /// An algorithm we implement.
    Known(CompressionEncoding),
    /// An algorithm we do not implement.
    Unknown(String),
}

/// Reads the `grpc-encoding` header of a map.
pub(crate) fn encoding_from_headers(headers: &http::HeaderMap) -> HeaderEncoding {
    match headers.get(&GRPC_ENCODING_NAME) {
        None => HeaderEncoding::Identity,
        Some(v) => match v.to_str() {
            Err(_) => HeaderEncoding::Unknown(String::from_utf8_lossy(v.as_bytes()).into_owned()),
            Ok(s) => match CompressionEncoding::parse(s) {
                Ok(None) => HeaderEncoding::Identity,
                Ok(Some(e)) => HeaderEncoding::Known(e),
                Err(name) => HeaderEncoding::Unknown(name),
            },
        },
    }
}

/// Chooses the encoding of a server's responses: an explicit per-call
/// choice if the client accepts it, else the request's encoding if the
/// server may send it and the client accepts it, else the server default if
/// the client accepts it, else identity. Never picks an encoding the client
/// did not advertise.
pub(crate) fn negotiate_response_encoding(
    explicit: Option<CompressionEncoding>,
    request_encoding: Option<CompressionEncoding>,
    server_default: Option<CompressionEncoding>,
    server_enabled: EncodingSet,
    client_accepts: EncodingSet,
) -> Option<CompressionEncoding> {
    if let Some(e) = explicit {
        return client_accepts.contains(e).then_some(e);
    }
    if let Some(e) = request_encoding {
        if server_enabled.contains(e) && client_accepts.contains(e) {
            return Some(e);
        }
    }
    server_default.filter(|e| client_accepts.contains(*e))
}

/// Compresses `input` with `enc`, appending to `out`.
pub fn compress(enc: CompressionEncoding, input: &[u8], out: &mut BytesMut) -> std::io::Result<()> {
    #[cfg(not(any(feature = "gzip", feature = "zstd")))]
    {
        let _ = (input, out);
        match enc {}
    }
    #[cfg(any(feature = "gzip", feature = "zstd"))]
    {
        let writer = out.writer();
        match enc {
            #[cfg(feature = "gzip")]
            CompressionEncoding::Gzip => {
                let mut e = flate2::write::GzEncoder::new(writer, flate2::Compression::fast());
                e.write_all(input)?;
                e.finish()?;
            }
            #[cfg(feature = "gzip")]
            CompressionEncoding::Deflate => {
                let mut e = flate2::write::ZlibEncoder::new(writer, flate2::Compression::fast());
                e.write_all(input)?;
                e.finish()?;
            }
            #[cfg(feature = "zstd")]
            CompressionEncoding::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(writer, 1)?;
                e.write_all(input)?;
                e.finish()?;
            }
        }
        Ok(())
    }
}

/// The largest zstd window (as a power of two) accepted when at most `limit` bytes
/// may come out: enough for the limit, at least 8 MiB (RFC 8878's recommendation
/// for HTTP, so any reasonable encoder works), at most zstd's own default of 128 MiB.
#[cfg(feature = "zstd")]
fn zstd_window_log_max(limit: usize) -> u32 {
    let needed = usize::BITS - limit.saturating_sub(1).leading_zeros();
    needed.clamp(23, 27)
}

/// Decompresses `input`, failing with RESOURCE_EXHAUSTED if the output
/// exceeds `limit` bytes and INTERNAL if the data is corrupt.
pub fn decompress(enc: CompressionEncoding, input: &[u8], limit: usize) -> Result<Bytes, Status> {
    #[cfg(not(any(feature = "gzip", feature = "zstd")))]
    {
        let _ = (input, limit);
        match enc {}
    }
    #[cfg(any(feature = "gzip", feature = "zstd"))]
    {
        let mut out = Vec::new();
        let cap = (limit as u64).saturating_add(1);
        let res = match enc {
            #[cfg(feature = "gzip")]
            CompressionEncoding::Gzip => flate2::read::GzDecoder::new(input)
                .take(cap)
                .read_to_end(&mut out),
            #[cfg(feature = "gzip")]
            CompressionEncoding::Deflate => flate2::read::ZlibDecoder::new(input)
                .take(cap)
                .read_to_end(&mut out),
            #[cfg(feature = "zstd")]
            CompressionEncoding::Zstd => match zstd::stream::read::Decoder::new(input) {
                // The frame header names the window the decoder must allocate (up to
                // 128 MiB by default), whatever the output size: bound it, or a few
                // bytes per message can make us allocate far beyond the receive limit.
                Ok(mut d) => match d.window_log_max(zstd_window_log_max(limit)) {
                    Ok(()) => d.take(cap).read_to_end(&mut out),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            },
        };
        if let Err(e) = res {
            #[cfg(feature = "zstd")]
            if enc == CompressionEncoding::Zstd && e.to_string().contains("too much memory") {
                return Err(Status::resource_exhausted(format!(
                "zstd message needs a window larger than this receiver allows (2^{} bytes): {e}",
                zstd_window_log_max(limit)
            )));
            }
            return Err(Status::internal(format!(
                "failed to decompress message ({enc}): {e}"
            )));
        }
        if out.len() > limit {
            return Err(Status::resource_exhausted(format!(
                "decompressed message larger than the limit ({limit} bytes)"
            )));
        }
        Ok(Bytes::from(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Code;

    #[test]
    fn roundtrip_each() {
        let data: Vec<u8> = (0..50_000u32).map(|i| (i % 7) as u8).collect();
        for enc in CompressionEncoding::ALL {
            let mut out = BytesMut::new();
            compress(enc, &data, &mut out).unwrap();
            assert!(out.len() < data.len() / 10, "{enc} did not compress");
            let back = decompress(enc, &out, 1 << 20).unwrap();
            assert_eq!(&back[..], &data[..]);
            let err = decompress(enc, &out, 1000).unwrap_err();
            assert_eq!(err.code(), Code::ResourceExhausted);
            assert_eq!(
                decompress(enc, b"garbage!", 1000).unwrap_err().code(),
                Code::Internal
            );
        }
    }

    #[cfg(feature = "gzip")]
    #[test]
    fn gzip_and_deflate_framing() {
        // deflate is zlib-framed: 0x78 header
        let mut out = BytesMut::new();
        compress(CompressionEncoding::Deflate, b"x", &mut out).unwrap();
        assert_eq!(out[0], 0x78);
        let mut out = BytesMut::new();
        compress(CompressionEncoding::Gzip, b"x", &mut out).unwrap();
        assert_eq!(&out[..2], &[0x1f, 0x8b]);
    }

    /// Only what is compiled in parses, and all of it does: a peer's `zstd` without
    /// the feature is an unknown encoding (UNIMPLEMENTED listing what we accept).
    #[test]
    fn parse_matches_compiled_in() {
        for name in ["gzip", "deflate", "zstd"] {
            let parsed = CompressionEncoding::parse(name).ok().flatten();
            let compiled = CompressionEncoding::ALL
                .into_iter()
                .find(|e| e.as_str() == name);
            assert_eq!(parsed, compiled, "{name}");
            assert_eq!(
                EncodingSet::all().to_header_value().contains(name),
                compiled.is_some(),
                "{name}"
            );
        }
    }

    #[cfg(feature = "zstd")]
    /// A zstd frame declaring a `2^log` window (no content size) holding one raw byte.
    fn zstd_frame_with_window(log: u8) -> Vec<u8> {
        vec![
            0x28,
            0xB5,
            0x2F,
            0xFD,
            0x00,
            (log - 10) << 3,
            0x09,
            0x00,
            0x00,
            b'a',
        ]
    }

    #[cfg(feature = "zstd")]
    #[test]
    fn zstd_window_is_bounded() {
        assert_eq!(zstd_window_log_max(4 << 20), 23);
        assert_eq!(zstd_window_log_max(0), 23);
        assert_eq!(zstd_window_log_max(64 << 20), 26);
        assert_eq!(zstd_window_log_max(usize::MAX), 27);
        // 8 MiB windows decode under the default 4 MiB limit...
        let ok = decompress(
            CompressionEncoding::Zstd,
            &zstd_frame_with_window(23),
            4 << 20,
        )
        .unwrap();
        assert_eq!(&ok[..], b"a");
        // ... a 10-byte frame asking for 128 MiB (or 1 GiB) of window does not.
        for log in [24, 27, 30] {
            let err = decompress(
                CompressionEncoding::Zstd,
                &zstd_frame_with_window(log),
                4 << 20,
            )
            .unwrap_err();
            assert_eq!(err.code(), Code::ResourceExhausted, "2^{log}: {err:?}");
            assert!(err.message().contains("window"), "{err:?}");
        }
        // A receiver that allows 64 MiB messages accepts their windows.
        assert!(decompress(
            CompressionEncoding::Zstd,
            &zstd_frame_with_window(26),
            64 << 20
        )
        .is_ok());
    }

    #[cfg(all(feature = "gzip", feature = "zstd"))]
    #[test]
    fn headers() {
        assert_eq!(
            EncodingSet::all().to_header_value(),
            "identity,gzip,deflate,zstd"
        );
        assert_eq!(EncodingSet::none().to_header_value(), "identity");
        for bits in 0..=7 {
            let set = EncodingSet(bits);
            assert_eq!(set.header_value().to_str().unwrap(), set.to_header_value());
        }
        let s = EncodingSet::parse_header(b"identity, gzip ,br,zstd");
        assert!(s.contains(CompressionEncoding::Gzip));
        assert!(s.contains(CompressionEncoding::Zstd));
        assert!(!s.contains(CompressionEncoding::Deflate));
        assert_eq!(CompressionEncoding::parse("identity"), Ok(None));
        assert_eq!(CompressionEncoding::parse("snappy"), Err("snappy".into()));
    }

    #[cfg(all(feature = "gzip", feature = "zstd"))]
    #[test]
    fn negotiation() {
        use CompressionEncoding::*;
        let all = EncodingSet::all();
        let gz = EncodingSet::none().with(Gzip);
        assert_eq!(
            negotiate_response_encoding(None, Some(Gzip), None, all, gz),
            Some(Gzip)
        );
        assert_eq!(
            negotiate_response_encoding(None, Some(Zstd), None, all, gz),
            None
        );
        assert_eq!(
            negotiate_response_encoding(None, None, Some(Gzip), all, gz),
            Some(Gzip)
        );
        assert_eq!(
            negotiate_response_encoding(None, None, Some(Zstd), all, gz),
            None
        );
        assert_eq!(
            negotiate_response_encoding(Some(Deflate), Some(Gzip), None, all, gz),
            None
        );
        assert_eq!(
            negotiate_response_encoding(Some(Gzip), None, None, all, gz),
            Some(Gzip)
        );
    }
}
