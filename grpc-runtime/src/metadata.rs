//! Call metadata: [`MetadataMap`] with ASCII and binary (`-bin`) values,
//! key validation (lowercase `[0-9a-z_.-]+`, reserved `grpc-` prefix), and
//! conversion to and from `http::HeaderMap` (base64 for `-bin`: padded and
//! unpadded accepted, unpadded emitted, comma-joined values split).

use std::fmt;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

/// Standard alphabet, no padding on encode, padding optional on decode.
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Encodes a binary header value (standard base64, unpadded).
pub fn encode_bin(value: &[u8]) -> String {
    B64.encode(value)
}

/// Decodes a binary header value: padded or unpadded base64. Surrounding
/// whitespace is ignored.
pub fn decode_bin(value: &[u8]) -> Result<Bytes, MetadataError> {
    let trimmed = value.trim_ascii();
    B64.decode(trimmed)
        .map(Bytes::from)
        .map_err(|e| MetadataError::InvalidBase64(e.to_string()))
}

/// Headers the runtime manages itself; they never appear in a user's
/// [`MetadataMap`].
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "te",
    "connection",
    "host",
    "transfer-encoding",
    "keep-alive",
];

/// Why a metadata key or value was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetadataError {
    /// The key is empty or has characters outside `[0-9a-z_.-]` (upper-case
    /// letters are refused, not silently lowered, at insert time).
    InvalidKey(String),
    /// The key uses the reserved `grpc-` prefix or a header the runtime manages.
    ReservedKey(String),
    /// An ASCII value has bytes outside 0x20..=0x7E.
    InvalidValue(String),
    /// An ASCII value was given for a `-bin` key or a binary value for a non-`-bin` key.
    WrongValueKind(String),
    /// A `-bin` header held invalid base64.
    InvalidBase64(String),
}

impl fmt::Display for MetadataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetadataError::InvalidKey(k) => write!(
                f,
                "invalid metadata key {k:?}: keys must match [0-9a-z_.-]+"
            ),
            MetadataError::ReservedKey(k) => {
                write!(f, "metadata key {k:?} is reserved: the grpc- prefix and transport headers are set by the runtime")
            }
            MetadataError::InvalidValue(k) => {
                write!(f, "invalid value for metadata key {k:?}: ASCII values must be printable (0x20-0x7E)")
            }
            MetadataError::WrongValueKind(k) => {
                write!(f, "metadata key {k:?}: keys ending in -bin take binary values, other keys take ASCII values")
            }
            MetadataError::InvalidBase64(e) => write!(f, "invalid base64 in -bin metadata: {e}"),
        }
    }
}

impl std::error::Error for MetadataError {}

/// One metadata value.
///
/// ASCII values are kept as the `HeaderValue` they arrived in (or were built into), so
/// metadata moves between the wire and the map without copying; every ASCII value in a
/// map is printable ASCII (0x20-0x7E), so [`MetadataValue::as_str`] always succeeds.
#[derive(Clone, PartialEq, Eq)]
pub enum MetadataValue {
    /// A value of a key without the `-bin` suffix.
    Ascii(HeaderValue),
    /// The decoded bytes of a `-bin` key's value.
    Binary(Bytes),
}

impl MetadataValue {
    /// The text of an ASCII value; `None` for a binary value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetadataValue::Ascii(v) => v.to_str().ok(),
            MetadataValue::Binary(_) => None,
        }
    }

    /// The bytes of a binary value; `None` for an ASCII value.
    pub fn as_bin(&self) -> Option<&Bytes> {
        match self {
            MetadataValue::Binary(b) => Some(b),
            MetadataValue::Ascii(_) => None,
        }
    }
}

impl fmt::Debug for MetadataValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetadataValue::Ascii(v) => fmt::Debug::fmt(v.to_str().unwrap_or(""), f),
            MetadataValue::Binary(b) => write!(f, "bin:{}", encode_bin(b)),
        }
    }
}

fn printable(value: &[u8]) -> bool {
    value.iter().all(|b| (0x20..=0x7e).contains(b))
}

/// Returns true if `key` ends in `-bin`.
pub fn is_bin_key(key: &str) -> bool {
    key.ends_with("-bin")
}

fn valid_key_chars(key: &str) -> bool {
    !key.is_empty()
        && key.bytes().all(|b| {
            b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'_' || b == b'.' || b == b'-'
        })
}

/// True for keys the runtime manages (`grpc-*`, `content-type`, `te`, ...).
pub fn is_reserved_key(key: &str) -> bool {
    key.starts_with("grpc-") || key.starts_with(':') || RESERVED_HEADERS.contains(&key)
}

fn check_key(key: &str) -> Result<(), MetadataError> {
    if !valid_key_chars(key) {
        return Err(MetadataError::InvalidKey(key.to_string()));
    }
    if is_reserved_key(key) {
        return Err(MetadataError::ReservedKey(key.to_string()));
    }
    Ok(())
}

/// An ASCII value as a `HeaderValue` (no copy of the string's bytes).
fn ascii_value(key: &str, value: String) -> Result<HeaderValue, MetadataError> {
    if !printable(value.as_bytes()) {
        return Err(MetadataError::InvalidValue(key.to_string()));
    }
    HeaderValue::from_maybe_shared(Bytes::from(value))
        .map_err(|_| MetadataError::InvalidValue(key.to_string()))
}

fn header_name(key: &str) -> Result<HeaderName, MetadataError> {
    HeaderName::from_bytes(key.as_bytes()).map_err(|_| MetadataError::InvalidKey(key.to_string()))
}

/// Ordered multimap of metadata (headers or trailers of a call).
///
/// Keys and ASCII values are kept as `http` header names and values: reading metadata
/// from received headers and writing it into outgoing ones shares their bytes.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct MetadataMap {
    entries: Vec<(HeaderName, MetadataValue)>,
}

impl MetadataMap {
    /// An empty map.
    pub fn new() -> MetadataMap {
        MetadataMap {
            entries: Vec::new(),
        }
    }

    /// Number of values (a key with two values counts twice).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if there are no values.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn ascii_entry(key: &str, value: String) -> Result<(HeaderName, MetadataValue), MetadataError> {
        check_key(key)?;
        if is_bin_key(key) {
            return Err(MetadataError::WrongValueKind(key.to_string()));
        }
        let value = ascii_value(key, value)?;
        Ok((header_name(key)?, MetadataValue::Ascii(value)))
    }

    fn bin_entry(key: &str, value: Bytes) -> Result<(HeaderName, MetadataValue), MetadataError> {
        check_key(key)?;
        if !is_bin_key(key) {
            return Err(MetadataError::WrongValueKind(key.to_string()));
        }
        Ok((header_name(key)?, MetadataValue::Binary(value)))
    }

    /// Sets an ASCII value, replacing any values of `key`.
    pub fn insert(&mut self, key: &str, value: impl Into<String>) -> Result<(), MetadataError> {
        let entry = Self::ascii_entry(key, value.into())?;
        self.remove(key);
        self.entries.push(entry);
        Ok(())
    }

    /// Adds an ASCII value, keeping existing values of `key`.
    pub fn append(&mut self, key: &str, value: impl Into<String>) -> Result<(), MetadataError> {
        let entry = Self::ascii_entry(key, value.into())?;
        self.entries.push(entry);
        Ok(())
    }

    /// Sets a binary value for a `-bin` key, replacing any values of `key`.
    pub fn insert_bin(&mut self, key: &str, value: impl Into<Bytes>) -> Result<(), MetadataError> {
        let entry = Self::bin_entry(key, value.into())?;
        self.remove(key);
        self.entries.push(entry);
        Ok(())
    }

    /// Adds a binary value for a `-bin` key.
    pub fn append_bin(&mut self, key: &str, value: impl Into<Bytes>) -> Result<(), MetadataError> {
        let entry = Self::bin_entry(key, value.into())?;
        self.entries.push(entry);
        Ok(())
    }

    fn values<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a MetadataValue> + 'a {
        self.entries
            .iter()
            .filter(move |(k, _)| k.as_str() == key)
            .map(|(_, v)| v)
    }

    /// First ASCII value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .filter(|(k, _)| k.as_str() == key)
            .find_map(|(_, v)| v.as_str())
    }

    /// All ASCII values of `key`, in order.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.values(key).filter_map(MetadataValue::as_str)
    }

    /// First binary value of a `-bin` key.
    pub fn get_bin(&self, key: &str) -> Option<&Bytes> {
        self.entries
            .iter()
            .filter(|(k, _)| k.as_str() == key)
            .find_map(|(_, v)| v.as_bin())
    }

    /// All binary values of a `-bin` key, in order.
    pub fn get_all_bin<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a Bytes> + 'a {
        self.values(key).filter_map(MetadataValue::as_bin)
    }

    /// True if `key` has at least one value.
    pub fn contains_key(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _)| k.as_str() == key)
    }

    /// Removes all values of `key`; returns how many were removed.
    pub fn remove(&mut self, key: &str) -> usize {
        let before = self.entries.len();
        self.entries.retain(|(k, _)| k.as_str() != key);
        before - self.entries.len()
    }

    /// Iterates over `(key, value)` pairs in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &MetadataValue)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The distinct keys, in first-seen order.
    pub fn keys(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for (k, _) in &self.entries {
            if !out.contains(&k.as_str()) {
                out.push(k.as_str());
            }
        }
        out
    }

    /// Appends all entries of `other` (already validated) to this map.
    pub fn merge(&mut self, other: MetadataMap) {
        self.entries.extend(other.entries);
    }

    /// Writes the entries into `headers` (appending), base64-encoding binary
    /// values without padding.
    pub fn add_to_headers(&self, headers: &mut HeaderMap) {
        for (k, v) in &self.entries {
            let value = match v {
                MetadataValue::Ascii(v) => v.clone(),
                MetadataValue::Binary(b) => match HeaderValue::from_str(&encode_bin(b)) {
                    Ok(v) => v,
                    Err(_) => continue,
                },
            };
            headers.append(k.clone(), value);
        }
    }

    /// Builds a `HeaderMap` holding these entries.
    pub fn to_headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        self.add_to_headers(&mut h);
        h
    }

    /// Reads user metadata from received headers or trailers, skipping the
    /// headers the runtime manages (`grpc-*`, `content-type`, `te`, ...).
    /// `-bin` values are split on commas and base64-decoded (padded or not);
    /// undecodable base64 is an error. ASCII values with bytes outside
    /// 0x20..=0x7E are skipped with a debug log.
    pub fn from_headers(headers: &HeaderMap) -> Result<MetadataMap, MetadataError> {
        let mut md = MetadataMap::new();
        for (name, value) in headers.iter() {
            let key = name.as_str();
            if is_reserved_key(key) {
                continue;
            }
            if is_bin_key(key) {
                for part in value.as_bytes().split(|b| *b == b',') {
                    md.entries
                        .push((name.clone(), MetadataValue::Binary(decode_bin(part)?)));
                }
            } else if printable(value.as_bytes()) {
                md.entries
                    .push((name.clone(), MetadataValue::Ascii(value.clone())));
            } else {
                tracing::debug!(key, "skipping metadata value with non-printable bytes");
            }
        }
        Ok(md)
    }
}

impl fmt::Debug for MetadataMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(k, v)| (k, v)))
            .finish()
    }
}

/// gRPC content types: `application/grpc` alone or followed by `+` or `;`. The one
/// check of both sides: the server refuses a request, the client a response, without it.
pub(crate) fn is_grpc_content_type(v: Option<&HeaderValue>) -> bool {
    let Some(v) = v else { return false };
    let b = v.as_bytes();
    let base = b"application/grpc";
    // The common case, exactly: one 16-byte compare instead of a case-folding one.
    if b == base {
        return true;
    }
    b.len() >= base.len()
        && b[..base.len()].eq_ignore_ascii_case(base)
        && (b.len() == base.len() || b[base.len()] == b'+' || b[base.len()] == b';')
}

/// A header list's size as HTTP/2 counts it (RFC 9113 6.5.2): name + value + 32 each.
pub(crate) fn header_list_size(h: &http::HeaderMap) -> usize {
    h.iter().map(|(k, v)| k.as_str().len() + v.len() + 32).sum()
}

/// A request head's size as HTTP/2 counts it, pseudo-headers (`:method`, `:scheme`,
/// `:authority`, `:path`) included, as grpc-go's `checkForHeaderListSize` counts it.
pub(crate) fn request_header_list_size(head: &http::Request<()>) -> usize {
    let uri = head.uri();
    let pseudo = [
        (":method".len(), head.method().as_str().len()),
        (":scheme".len(), uri.scheme_str().map_or(0, str::len)),
        (
            ":authority".len(),
            uri.authority().map_or(0, |a| a.as_str().len()),
        ),
        (
            ":path".len(),
            uri.path_and_query().map_or(1, |p| p.as_str().len()),
        ),
    ];
    pseudo.iter().map(|(n, v)| n + v + 32).sum::<usize>() + header_list_size(head.headers())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        let ok = |s: &'static str| is_grpc_content_type(Some(&HeaderValue::from_static(s)));
        assert!(ok("application/grpc"));
        assert!(ok("application/grpc+proto"));
        assert!(ok("application/grpc;charset=utf-8"));
        assert!(!ok("application/grpcx"));
        assert!(!ok("application/json"));
        assert!(!ok("text/plain"));
        assert!(!is_grpc_content_type(None));
    }

    #[test]
    fn keys_validated() {
        let mut m = MetadataMap::new();
        assert!(m.insert("x-user", "v").is_ok());
        assert_eq!(
            m.insert("X-User", "v"),
            Err(MetadataError::InvalidKey("X-User".into()))
        );
        assert_eq!(m.insert("", "v"), Err(MetadataError::InvalidKey("".into())));
        assert_eq!(
            m.insert("a b", "v"),
            Err(MetadataError::InvalidKey("a b".into()))
        );
        assert_eq!(
            m.insert("grpc-timeout", "1S"),
            Err(MetadataError::ReservedKey("grpc-timeout".into()))
        );
        assert_eq!(
            m.insert("content-type", "x"),
            Err(MetadataError::ReservedKey("content-type".into()))
        );
        assert!(m.insert("x-bin", "v").is_err());
        assert!(m.insert_bin("x", vec![1]).is_err());
        assert!(m.insert("x", "tab\there").is_err());
        assert!(m.insert("x", "ünï").is_err());
        let err = m.insert("grpc-foo", "v").unwrap_err().to_string();
        assert!(err.contains("reserved"), "{err}");
    }

    #[test]
    fn multi_values() {
        let mut m = MetadataMap::new();
        m.append("k", "1").unwrap();
        m.append("k", "2").unwrap();
        m.append_bin("k-bin", vec![0u8, 255]).unwrap();
        assert_eq!(m.get_all("k").collect::<Vec<_>>(), vec!["1", "2"]);
        assert_eq!(m.get("k"), Some("1"));
        m.insert("k", "3").unwrap();
        assert_eq!(m.get_all("k").collect::<Vec<_>>(), vec!["3"]);
        let h = m.to_headers();
        assert_eq!(h.get("k-bin").unwrap(), "AP8");
        let back = MetadataMap::from_headers(&h).unwrap();
        assert_eq!(back.get_bin("k-bin").unwrap().as_ref(), &[0u8, 255]);
        assert_eq!(back.get("k"), Some("3"));
    }

    #[test]
    fn base64_padded_unpadded_and_comma_joined() {
        assert_eq!(decode_bin(b"AP8").unwrap().as_ref(), &[0, 255]);
        assert_eq!(decode_bin(b"AP8=").unwrap().as_ref(), &[0, 255]);
        assert_eq!(decode_bin(b"YQ").unwrap().as_ref(), b"a");
        assert_eq!(decode_bin(b"YQ==").unwrap().as_ref(), b"a");
        assert_eq!(decode_bin(b"").unwrap().as_ref(), b"");
        assert!(decode_bin(b"!!!").is_err());
        assert_eq!(encode_bin(b"a"), "YQ");
        let mut h = HeaderMap::new();
        h.append("x-bin", HeaderValue::from_static("YQ==,Yg, Yw"));
        h.append("x-bin", HeaderValue::from_static("ZA"));
        h.insert("grpc-timeout", HeaderValue::from_static("1S"));
        h.insert("content-type", HeaderValue::from_static("application/grpc"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("user-agent", HeaderValue::from_static("x/1"));
        let m = MetadataMap::from_headers(&h).unwrap();
        let vals: Vec<_> = m.get_all_bin("x-bin").map(|b| b.to_vec()).collect();
        assert_eq!(
            vals,
            vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec(), b"d".to_vec()]
        );
        assert!(!m.contains_key("grpc-timeout"));
        assert!(!m.contains_key("content-type"));
        assert!(!m.contains_key("te"));
        assert_eq!(m.get("user-agent"), Some("x/1"));
        let mut bad = HeaderMap::new();
        bad.insert("x-bin", HeaderValue::from_static("@@@"));
        assert!(matches!(
            MetadataMap::from_headers(&bad),
            Err(MetadataError::InvalidBase64(_))
        ));
    }
}
