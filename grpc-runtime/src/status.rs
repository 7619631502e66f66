//! gRPC status: the 17 status [`Code`]s, the [`Status`] error type, the
//! percent-encoding of `grpc-message`, `grpc-status-details-bin`, and the
//! mappings from HTTP status codes and HTTP/2 errors to gRPC codes.

use std::fmt;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use percent_encoding::{percent_decode, percent_encode, AsciiSet, CONTROLS};
use prost::Message;

use crate::metadata::MetadataMap;
use crate::rpc_types::{self, ErrorDetail};

/// Header carrying the decimal status code.
pub const GRPC_STATUS: &str = "grpc-status";
/// Header carrying the percent-encoded status message.
pub const GRPC_MESSAGE: &str = "grpc-message";
/// Header carrying a serialized `google.rpc.Status` (base64, unpadded).
pub const GRPC_STATUS_DETAILS_BIN: &str = "grpc-status-details-bin";

// The same names as `HeaderName`s: inserting a `&str` key copies it every time.
pub(crate) const GRPC_STATUS_NAME: HeaderName = HeaderName::from_static(GRPC_STATUS);
pub(crate) const GRPC_MESSAGE_NAME: HeaderName = HeaderName::from_static(GRPC_MESSAGE);
pub(crate) const GRPC_STATUS_DETAILS_BIN_NAME: HeaderName =
    HeaderName::from_static(GRPC_STATUS_DETAILS_BIN);

/// `grpc-status` values for the 17 codes, without formatting a number per call.
const CODE_VALUES: [&str; 17] = [
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
];

/// A gRPC status code (see the gRPC `statuscodes.md`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(i32)]
pub enum Code {
    /// Not an error; returned on success.
    #[default]
    Ok = 0,
    /// The operation was cancelled, typically by the caller.
    Cancelled = 1,
    /// Unknown error.
    Unknown = 2,
    /// The client specified an invalid argument.
    InvalidArgument = 3,
    /// The deadline expired before the operation could complete.
    DeadlineExceeded = 4,
    /// Some requested entity was not found.
    NotFound = 5,
    /// The entity that a client attempted to create already exists.
    AlreadyExists = 6,
    /// The caller does not have permission to execute the operation.
    PermissionDenied = 7,
    /// Some resource has been exhausted (quota, message size, ...).
    ResourceExhausted = 8,
    /// The system is not in a state required for the operation.
    FailedPrecondition = 9,
    /// The operation was aborted, typically due to a concurrency issue.
    Aborted = 10,
    /// The operation was attempted past the valid range.
    OutOfRange = 11,
    /// The operation is not implemented or not supported.
    Unimplemented = 12,
    /// Internal error: an invariant expected by the system is broken.
    Internal = 13,
    /// The service is currently unavailable (transient; retry may help).
    Unavailable = 14,
    /// Unrecoverable data loss or corruption.
    DataLoss = 15,
    /// The request does not have valid authentication credentials.
    Unauthenticated = 16,
}

impl Code {
    /// Every code, in numeric order.
    pub const ALL: [Code; 17] = [
        Code::Ok,
        Code::Cancelled,
        Code::Unknown,
        Code::InvalidArgument,
        Code::DeadlineExceeded,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Internal,
        Code::Unavailable,
        Code::DataLoss,
        Code::Unauthenticated,
    ];

    /// Converts a numeric code; values outside 0..=16 become [`Code::Unknown`].
    pub fn from_i32(value: i32) -> Code {
        if (0..=16).contains(&value) {
            Code::ALL[value as usize]
        } else {
            Code::Unknown
        }
    }

    /// The numeric value of this code.
    pub fn as_i32(self) -> i32 {
        self as i32
    }

    /// The canonical upper-case name, e.g. `"DEADLINE_EXCEEDED"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::Cancelled => "CANCELLED",
            Code::Unknown => "UNKNOWN",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Aborted => "ABORTED",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
            Code::DataLoss => "DATA_LOSS",
            Code::Unauthenticated => "UNAUTHENTICATED",
        }
    }

    /// Parses the decimal form used in the `grpc-status` header. Returns
    /// `None` when the value is not a decimal integer.
    pub fn from_header_bytes(value: &[u8]) -> Option<Code> {
        if value.is_empty() || value.len() > 10 || !value.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let s = std::str::from_utf8(value).ok()?;
        let n: i64 = s.parse().ok()?;
        Some(
            i32::try_from(n)
                .map(Code::from_i32)
                .unwrap_or(Code::Unknown),
        )
    }
}

impl From<i32> for Code {
    fn from(value: i32) -> Self {
        Code::from_i32(value)
    }
}

impl From<Code> for i32 {
    fn from(code: Code) -> i32 {
        code as i32
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of an RPC: a [`Code`], a human-readable message, optional
/// binary details (a serialized `google.rpc.Status`) and metadata that travels
/// in the trailers next to the status.
#[derive(Clone, Default)]
pub struct Status {
    code: Code,
    message: String,
    details: Bytes,
    metadata: MetadataMap,
}

macro_rules! ctors {
    ($($(#[$doc:meta])* $name:ident => $code:ident,)*) => {
        $(
            $(#[$doc])*
            pub fn $name(message: impl Into<String>) -> Status {
                Status::new(Code::$code, message)
            }
        )*
    };
}

impl Status {
    /// Creates a status with a code and message.
    pub fn new(code: Code, message: impl Into<String>) -> Status {
        Status {
            code,
            message: message.into(),
            details: Bytes::new(),
            metadata: MetadataMap::new(),
        }
    }

    ctors! {
        /// `OK` with a message (rarely useful; success usually has no message).
        ok => Ok,
        /// `CANCELLED`.
        cancelled => Cancelled,
        /// `UNKNOWN`.
        unknown => Unknown,
        /// `INVALID_ARGUMENT`.
        invalid_argument => InvalidArgument,
        /// `DEADLINE_EXCEEDED`.
        deadline_exceeded => DeadlineExceeded,
        /// `NOT_FOUND`.
        not_found => NotFound,
        /// `ALREADY_EXISTS`.
        already_exists => AlreadyExists,
        /// `PERMISSION_DENIED`.
        permission_denied => PermissionDenied,
        /// `RESOURCE_EXHAUSTED`.
        resource_exhausted => ResourceExhausted,
        /// `FAILED_PRECONDITION`.
        failed_precondition => FailedPrecondition,
        /// `ABORTED`.
        aborted => Aborted,
        /// `OUT_OF_RANGE`.
        out_of_range => OutOfRange,
        /// `UNIMPLEMENTED`.
        unimplemented => Unimplemented,
        /// `INTERNAL`.
        internal => Internal,
        /// `UNAVAILABLE`.
        unavailable => Unavailable,
        /// `DATA_LOSS`.
        data_loss => DataLoss,
        /// `UNAUTHENTICATED`.
        unauthenticated => Unauthenticated,
    }

    /// Creates a status with raw details bytes (a serialized `google.rpc.Status`).
    pub fn with_details_bytes(
        code: Code,
        message: impl Into<String>,
        details: impl Into<Bytes>,
    ) -> Status {
        let mut s = Status::new(code, message);
        s.details = details.into();
        s
    }

    /// Creates a status carrying typed error details; they are packed into a
    /// `google.rpc.Status` (code, message, `Any` details) and sent in
    /// `grpc-status-details-bin`.
    pub fn with_details(
        code: Code,
        message: impl Into<String>,
        details: Vec<ErrorDetail>,
    ) -> Status {
        let message = message.into();
        let rpc = rpc_types::Status {
            code: code.as_i32(),
            message: message.clone(),
            details: details.iter().map(ErrorDetail::to_any).collect(),
        };
        Status::with_details_bytes(code, message, rpc.encode_to_vec())
    }

    /// The status code.
    pub fn code(&self) -> Code {
        self.code
    }

    /// The message (already percent-decoded).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Raw details bytes (a serialized `google.rpc.Status`), empty if none.
    pub fn details(&self) -> &Bytes {
        &self.details
    }

    /// Trailing metadata sent or received with this status.
    pub fn metadata(&self) -> &MetadataMap {
        &self.metadata
    }

    /// Mutable trailing metadata.
    pub fn metadata_mut(&mut self) -> &mut MetadataMap {
        &mut self.metadata
    }

    /// Replaces the trailing metadata (builder style).
    pub fn with_metadata(mut self, metadata: MetadataMap) -> Status {
        self.metadata = metadata;
        self
    }

    /// Decodes the details as a `google.rpc.Status`. `Ok(None)` when there
    /// are no details.
    pub fn rpc_status(&self) -> Result<Option<rpc_types::Status>, prost::DecodeError> {
        if self.details.is_empty() {
            return Ok(None);
        }
        rpc_types::Status::decode(self.details.clone()).map(Some)
    }

    /// Decodes the typed error details. Details with an unknown type URL come
    /// back as [`ErrorDetail::Other`]; undecodable details bytes give an error.
    pub fn error_details(&self) -> Result<Vec<ErrorDetail>, prost::DecodeError> {
        match self.rpc_status()? {
            None => Ok(Vec::new()),
            Some(s) => s.details.iter().map(ErrorDetail::from_any).collect(),
        }
    }

    /// True for `Code::Ok`.
    pub fn is_ok(&self) -> bool {
        self.code() == Code::Ok
    }

    /// Maps an HTTP status (response without `grpc-status`) to a gRPC status,
    /// as in the gRPC spec's `http-grpc-status-mapping.md`.
    pub fn from_http_status(status: http::StatusCode) -> Status {
        let code = match status.as_u16() {
            400 => Code::Internal,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 => Code::Unimplemented,
            429 | 502 | 503 | 504 => Code::Unavailable,
            431 => Code::Internal,
            _ => Code::Unknown,
        };
        Status::new(
            code,
            format!("HTTP status {} without grpc-status", status.as_u16()),
        )
    }

    /// Maps an HTTP/2 RST_STREAM / GOAWAY error code to a gRPC code.
    pub(crate) fn code_from_reason(reason: h2::Reason) -> Code {
        match reason {
            h2::Reason::REFUSED_STREAM => Code::Unavailable,
            h2::Reason::CANCEL => Code::Cancelled,
            h2::Reason::ENHANCE_YOUR_CALM => Code::ResourceExhausted,
            h2::Reason::INADEQUATE_SECURITY => Code::PermissionDenied,
            _ => Code::Internal,
        }
    }

    /// Maps an `h2::Error` to a status: stream resets use the RST_STREAM
    /// mapping, GOAWAY and I/O errors are `UNAVAILABLE`.
    pub(crate) fn from_h2_error(err: &h2::Error) -> Status {
        if err.is_io() {
            return Status::unavailable(format!("connection error: {err}"));
        }
        if err.is_go_away() {
            let reason = err.reason().unwrap_or(h2::Reason::NO_ERROR);
            let code = match reason {
                h2::Reason::NO_ERROR => Code::Unavailable,
                r => Status::code_from_reason(r),
            };
            // A GOAWAY for a stream the server never processed is retryable.
            let code = if code == Code::Internal {
                Code::Unavailable
            } else {
                code
            };
            return Status::new(code, format!("connection closed (GOAWAY): {err}"));
        }
        match err.reason() {
            // Name the code the peer reset with, as grpc-go does (h2's own text for
            // NO_ERROR reads "not a result of an error").
            Some(reason) if err.is_reset() && err.is_remote() => Status::new(
                Status::code_from_reason(reason),
                format!("stream terminated by RST_STREAM with error code: {reason:?}"),
            ),
            Some(reason) => Status::new(
                Status::code_from_reason(reason),
                format!("stream error: {err}"),
            ),
            None => Status::internal(format!("HTTP/2 error: {err}")),
        }
    }

    /// Reads a status from response trailers (or Trailers-Only headers).
    /// Returns `None` when there is no `grpc-status`. A malformed
    /// `grpc-status` gives `INTERNAL`; undecodable details are dropped with a
    /// debug log (the code and message still reach the caller).
    pub fn from_header_map(headers: &HeaderMap) -> Option<Status> {
        let raw = headers.get(&GRPC_STATUS_NAME)?;
        let code = match Code::from_header_bytes(raw.as_bytes()) {
            Some(c) => c,
            None => {
                return Some(Status::internal(format!(
                    "malformed grpc-status header: {:?}",
                    String::from_utf8_lossy(raw.as_bytes())
                )))
            }
        };
        let message = headers
            .get(&GRPC_MESSAGE_NAME)
            .map(|v| decode_message(v.as_bytes()))
            .unwrap_or_default();
        let mut status = Status::new(code, message);
        if let Some(d) = headers.get(&GRPC_STATUS_DETAILS_BIN_NAME) {
            match crate::metadata::decode_bin(d.as_bytes()) {
                Ok(b) => status.details = b,
                Err(e) => tracing::debug!("ignoring undecodable grpc-status-details-bin: {e}"),
            }
        }
        match MetadataMap::from_headers(headers) {
            Ok(md) => status.metadata = md,
            Err(e) => tracing::debug!("ignoring undecodable trailing metadata: {e}"),
        }
        Some(status)
    }

    /// Appends `grpc-status`, `grpc-message` (if not empty),
    /// `grpc-status-details-bin` (if any) and this status's metadata to `headers`.
    pub fn add_to_headers(&self, headers: &mut HeaderMap) {
        let code = self.code().as_i32();
        let value = match usize::try_from(code).ok().and_then(|i| CODE_VALUES.get(i)) {
            Some(s) => HeaderValue::from_static(s),
            None => HeaderValue::from(code),
        };
        headers.insert(GRPC_STATUS_NAME, value);
        if !self.message.is_empty() {
            let enc = encode_message(&self.message);
            if let Ok(v) = HeaderValue::from_str(&enc) {
                headers.insert(GRPC_MESSAGE_NAME, v);
            }
        }
        if !self.details.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&crate::metadata::encode_bin(&self.details)) {
                headers.insert(GRPC_STATUS_DETAILS_BIN_NAME, v);
            }
        }
        self.metadata.add_to_headers(headers);
    }

    /// The status as a trailers map (see [`Status::add_to_headers`]).
    pub fn to_header_map(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        self.add_to_headers(&mut h);
        h
    }
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Status");
        d.field("code", &self.code())
            .field("message", &self.message);
        if !self.details.is_empty() {
            d.field("details", &format_args!("{} bytes", self.details.len()));
        }
        if !self.metadata.is_empty() {
            d.field("metadata", &self.metadata);
        }
        d.finish()
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code())?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for Status {}

/// Metadata a handler or interceptor failed to build is the program's own error:
/// INTERNAL, with the reason. So `?` works on [`crate::MetadataMap::insert`] in handlers.
///
/// ```
/// use grpc_runtime::{MetadataMap, Status};
///
/// fn headers(request_id: &str) -> Result<MetadataMap, Status> {
///     let mut md = MetadataMap::new();
///     md.insert("x-request-id", request_id)?;
///     Ok(md)
/// }
/// assert_eq!(headers("bad\nvalue").unwrap_err().code(), grpc_runtime::Code::Internal);
/// ```
impl From<crate::metadata::MetadataError> for Status {
    fn from(err: crate::metadata::MetadataError) -> Self {
        Status::internal(err.to_string())
    }
}

impl From<std::io::Error> for Status {
    fn from(err: std::io::Error) -> Self {
        Status::unavailable(format!("I/O error: {err}"))
    }
}

/// Bytes that must be percent-encoded in `grpc-message`: everything outside
/// 0x20..=0x7E, plus `%` itself.
const MESSAGE_ENCODE_SET: &AsciiSet = &CONTROLS.add(b'%');

/// Percent-encodes a status message for `grpc-message`: bytes 0x20-0x7E
/// except `%` pass through, every other byte of the UTF-8 form becomes `%XX`.
pub fn encode_message(message: &str) -> String {
    // CONTROLS covers 0x00-0x1F and 0x7F; percent_encode always encodes
    // non-ASCII bytes.
    percent_encode(message.as_bytes(), MESSAGE_ENCODE_SET).to_string()
}

/// Decodes a `grpc-message` value. Never fails: invalid `%` sequences are
/// kept literally and invalid UTF-8 is replaced.
pub fn decode_message(value: &[u8]) -> String {
    let bytes: Vec<u8> = percent_decode(value).collect();
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_roundtrip() {
        for (i, c) in Code::ALL.iter().enumerate() {
            assert_eq!(Code::from_i32(i as i32), *c);
            assert_eq!(c.as_i32(), i as i32);
        }
        assert_eq!(Code::from_i32(17), Code::Unknown);
        assert_eq!(Code::from_i32(-1), Code::Unknown);
        assert_eq!(Code::from_header_bytes(b"14"), Some(Code::Unavailable));
        assert_eq!(Code::from_header_bytes(b"99"), Some(Code::Unknown));
        assert_eq!(Code::from_header_bytes(b"x"), None);
        assert_eq!(Code::from_header_bytes(b""), None);
        assert_eq!(Code::from_header_bytes(b"-1"), None);
        assert_eq!(Code::from_header_bytes(b"99999999999999"), None);
    }

    #[test]
    fn percent_vectors() {
        assert_eq!(encode_message("hello world"), "hello world");
        assert_eq!(encode_message("100%"), "100%25");
        assert_eq!(encode_message("a\nb\tc"), "a%0Ab%09c");
        assert_eq!(encode_message("\u{7f}"), "%7F");
        assert_eq!(encode_message("日本"), "%E6%97%A5%E6%9C%AC");
        assert_eq!(
            encode_message(" ~!\"#$&'()*+,-./:;<=>?@[\\]^_`{|}"),
            " ~!\"#$&'()*+,-./:;<=>?@[\\]^_`{|}"
        );
        assert_eq!(decode_message(b"%E6%97%A5%E6%9C%AC"), "日本");
        assert_eq!(decode_message(b"100%25"), "100%");
        // Invalid sequences are kept, never an error.
        assert_eq!(decode_message(b"50% off %zz %"), "50% off %zz %");
        assert_eq!(decode_message(b"%FF"), "\u{FFFD}");
        let s = "mixed: ünïcödé % \r\n end";
        assert_eq!(decode_message(encode_message(s).as_bytes()), s);
    }

    #[test]
    fn http_mapping() {
        let m = |c: u16| Status::from_http_status(http::StatusCode::from_u16(c).unwrap()).code();
        assert_eq!(m(400), Code::Internal);
        assert_eq!(m(401), Code::Unauthenticated);
        assert_eq!(m(403), Code::PermissionDenied);
        assert_eq!(m(404), Code::Unimplemented);
        for c in [429, 502, 503, 504] {
            assert_eq!(m(c), Code::Unavailable);
        }
        assert_eq!(m(431), Code::Internal);
        assert_eq!(m(200), Code::Unknown);
        assert_eq!(m(500), Code::Unknown);
    }

    #[test]
    fn reason_mapping() {
        use h2::Reason;
        assert_eq!(
            Status::code_from_reason(Reason::REFUSED_STREAM),
            Code::Unavailable
        );
        assert_eq!(Status::code_from_reason(Reason::CANCEL), Code::Cancelled);
        assert_eq!(
            Status::code_from_reason(Reason::ENHANCE_YOUR_CALM),
            Code::ResourceExhausted
        );
        assert_eq!(
            Status::code_from_reason(Reason::INADEQUATE_SECURITY),
            Code::PermissionDenied
        );
        for r in [
            Reason::NO_ERROR,
            Reason::PROTOCOL_ERROR,
            Reason::INTERNAL_ERROR,
            Reason::FLOW_CONTROL_ERROR,
            Reason::SETTINGS_TIMEOUT,
            Reason::FRAME_SIZE_ERROR,
            Reason::COMPRESSION_ERROR,
            Reason::CONNECT_ERROR,
        ] {
            assert_eq!(Status::code_from_reason(r), Code::Internal);
        }
    }

    #[test]
    fn trailers_roundtrip_with_details() {
        use crate::rpc_types::{bad_request, BadRequest, RetryInfo};
        let mut st = Status::with_details(
            Code::InvalidArgument,
            "bad: 100% wrong\n",
            vec![
                ErrorDetail::BadRequest(BadRequest {
                    field_violations: vec![bad_request::FieldViolation {
                        field: "name".into(),
                        description: "empty".into(),
                        ..Default::default()
                    }],
                }),
                ErrorDetail::RetryInfo(RetryInfo {
                    retry_delay: Some(prost_types::Duration {
                        seconds: 2,
                        nanos: 0,
                    }),
                }),
            ],
        );
        st.metadata_mut().insert("x-trace", "abc").unwrap();
        let h = st.to_header_map();
        assert_eq!(h.get("grpc-status").unwrap(), "3");
        assert_eq!(h.get("grpc-message").unwrap(), "bad: 100%25 wrong%0A");
        assert!(!h
            .get("grpc-status-details-bin")
            .unwrap()
            .as_bytes()
            .ends_with(b"="));
        let back = Status::from_header_map(&h).unwrap();
        assert_eq!(back.code(), Code::InvalidArgument);
        assert_eq!(back.message(), "bad: 100% wrong\n");
        assert_eq!(back.metadata().get("x-trace"), Some("abc"));
        let details = back.error_details().unwrap();
        assert_eq!(details.len(), 2);
        match &details[0] {
            ErrorDetail::BadRequest(b) => assert_eq!(b.field_violations[0].field, "name"),
            other => panic!("{other:?}"),
        }
        let rpc = back.rpc_status().unwrap().unwrap();
        assert_eq!(
            rpc.details[1].type_url,
            "type.googleapis.com/google.rpc.RetryInfo"
        );
        assert!(Status::from_header_map(&HeaderMap::new()).is_none());
        let mut bad = HeaderMap::new();
        bad.insert("grpc-status", HeaderValue::from_static("abc"));
        assert_eq!(
            Status::from_header_map(&bad).unwrap().code(),
            Code::Internal
        );
    }

    #[test]
    fn ok_status_has_status_header() {
        let h = Status::new(Code::Ok, "").to_header_map();
        assert_eq!(h.get("grpc-status").unwrap(), "0");
        assert!(h.get("grpc-message").is_none());
    }
}
