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
    B64.decode(trimmed).map(Bytes::from).map_err(|e| MetadataError::InvalidBase64(e.to_string()))
}

/// Headers the runtime manages itself; they never appear in a user's
/// [`MetadataMap`].
const RESERVED_HEADERS: &[&str] = &["content-type", "te", "connection", "host", "transfer-encoding", "keep-alive"];

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
            MetadataError::InvalidKey(k) => write!(f, "invalid metadata key {k:?}: keys must match [0-9a-z_.-]+"),
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
#[derive(Clone, PartialEq, Eq)]
pub enum MetadataValue {
    /// A printable-ASCII value (key without `-bin`).
    Ascii(String),
    /// A binary value (key ending in `-bin`), base64 on the wire.
    Binary(Bytes),
}

impl fmt::Debug for MetadataValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetadataValue::Ascii(s) => fmt::Debug::fmt(s, f),
            MetadataValue::Binary(b) => write!(f, "bin:{}", encode_bin(b)),
        }
    }
}

/// Returns true if `key` ends in `-bin`.
pub fn is_bin_key(key: &str) -> bool {
    key.ends_with("-bin")
}

fn valid_key_chars(key: &str) -> bool {
    !key.is_empty()
        && key.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'_' || b == b'.' || b == b'-')
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

fn check_ascii_value(key: &str, value: &str) -> Result<(), MetadataError> {
    if value.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        Ok(())
    } else {
        Err(MetadataError::InvalidValue(key.to_string()))
    }
}

/// Ordered multimap of metadata (headers or trailers of a call).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct MetadataMap {
    entries: Vec<(String, MetadataValue)>,
}

impl MetadataMap {
    /// An empty map.
    pub fn new() -> MetadataMap {
        MetadataMap { entries: Vec::new() }
    }

    /// Number of values (a key with two values counts twice).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if there are no values.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn check_ascii(key: &str, value: &str) -> Result<(), MetadataError> {
        check_key(key)?;
        if is_bin_key(key) {
            return Err(MetadataError::WrongValueKind(key.to_string()));
        }
        check_ascii_value(key, value)
    }

    fn check_bin(key: &str) -> Result<(), MetadataError> {
        check_key(key)?;
        if !is_bin_key(key) {
            return Err(MetadataError::WrongValueKind(key.to_string()));
        }
        Ok(())
    }

    /// Sets an ASCII value, replacing any values of `key`.
    pub fn insert(&mut self, key: &str, value: impl Into<String>) -> Result<(), MetadataError> {
        let value = value.into();
        Self::check_ascii(key, &value)?;
        self.remove(key);
        self.entries.push((key.to_string(), MetadataValue::Ascii(value)));
        Ok(())
    }

    /// Adds an ASCII value, keeping existing values of `key`.
    pub fn append(&mut self, key: &str, value: impl Into<String>) -> Result<(), MetadataError> {
        let value = value.into();
        Self::check_ascii(key, &value)?;
        self.entries.push((key.to_string(), MetadataValue::Ascii(value)));
        Ok(())
    }

    /// Sets a binary value for a `-bin` key, replacing any values of `key`.
    pub fn insert_bin(&mut self, key: &str, value: impl Into<Bytes>) -> Result<(), MetadataError> {
        Self::check_bin(key)?;
        self.remove(key);
        self.entries.push((key.to_string(), MetadataValue::Binary(value.into())));
        Ok(())
    }

    /// Adds a binary value for a `-bin` key.
    pub fn append_bin(&mut self, key: &str, value: impl Into<Bytes>) -> Result<(), MetadataError> {
        Self::check_bin(key)?;
        self.entries.push((key.to_string(), MetadataValue::Binary(value.into())));
        Ok(())
    }

    /// First ASCII value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.iter().find_map(|(k, v)| match v {
            MetadataValue::Ascii(s) if k == key => Some(s.as_str()),
            _ => None,
        })
    }

    /// All ASCII values of `key`, in order.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.entries.iter().filter(move |(k, _)| k == key).filter_map(|(_, v)| match v {
            MetadataValue::Ascii(s) => Some(s.as_str()),
            MetadataValue::Binary(_) => None,
        })
    }

    /// First binary value of a `-bin` key.
    pub fn get_bin(&self, key: &str) -> Option<&Bytes> {
        self.entries.iter().find_map(|(k, v)| match v {
            MetadataValue::Binary(b) if k == key => Some(b),
            _ => None,
        })
    }

    /// All binary values of a `-bin` key, in order.
    pub fn get_all_bin<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a Bytes> + 'a {
        self.entries.iter().filter(move |(k, _)| k == key).filter_map(|(_, v)| match v {
            MetadataValue::Binary(b) => Some(b),
            MetadataValue::Ascii(_) => None,
        })
    }

    /// True if `key` has at least one value.
    pub fn contains_key(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _)| k == key)
    }

    /// Removes all values of `key`; returns how many were removed.
    pub fn remove(&mut self, key: &str) -> usize {
        let before = self.entries.len();
        self.entries.retain(|(k, _)| k != key);
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
                out.push(k);
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
            let Ok(name) = HeaderName::from_bytes(k.as_bytes()) else { continue };
            let value = match v {
                MetadataValue::Ascii(s) => HeaderValue::from_str(s),
                MetadataValue::Binary(b) => HeaderValue::from_str(&encode_bin(b)),
            };
            if let Ok(value) = value {
                headers.append(name, value);
            }
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
                    md.entries.push((key.to_string(), MetadataValue::Binary(decode_bin(part)?)));
                }
            } else {
                match value.to_str() {
                    Ok(s) if s.bytes().all(|b| (0x20..=0x7e).contains(&b)) => {
                        md.entries.push((key.to_string(), MetadataValue::Ascii(s.to_string())))
                    }
                    _ => tracing::debug!(key, "skipping metadata value with non-printable bytes"),
                }
            }
        }
        Ok(md)
    }
}

impl fmt::Debug for MetadataMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.entries.iter().map(|(k, v)| (k, v))).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_validated() {
        let mut m = MetadataMap::new();
        assert!(m.insert("x-user", "v").is_ok());
        assert_eq!(m.insert("X-User", "v"), Err(MetadataError::InvalidKey("X-User".into())));
        assert_eq!(m.insert("", "v"), Err(MetadataError::InvalidKey("".into())));
        assert_eq!(m.insert("a b", "v"), Err(MetadataError::InvalidKey("a b".into())));
        assert_eq!(m.insert("grpc-timeout", "1S"), Err(MetadataError::ReservedKey("grpc-timeout".into())));
        assert_eq!(m.insert("content-type", "x"), Err(MetadataError::ReservedKey("content-type".into())));
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
        assert_eq!(vals, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec(), b"d".to_vec()]);
        assert!(!m.contains_key("grpc-timeout"));
        assert!(!m.contains_key("content-type"));
        assert!(!m.contains_key("te"));
        assert_eq!(m.get("user-agent"), Some("x/1"));
        let mut bad = HeaderMap::new();
        bad.insert("x-bin", HeaderValue::from_static("@@@"));
        assert!(matches!(MetadataMap::from_headers(&bad), Err(MetadataError::InvalidBase64(_))));
    }
}
