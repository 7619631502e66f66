//! `google.rpc.Status` and the standard error details of
//! `google/rpc/error_details.proto` (canonical names and field numbers), plus
//! [`ErrorDetail`], a typed view used to pack them into
//! `google.protobuf.Any` (`type.googleapis.com/google.rpc.X`).
//!
//! Hand-written prost structs for now; to be replaced by the output of our
//! own plugin for `protos/google/rpc`.

use prost::Message;
use prost_types::Any;

/// Prefix of the type URLs used when packing details into `Any`.
pub const TYPE_URL_PREFIX: &str = "type.googleapis.com/";

/// `google.rpc.Status`: the payload of `grpc-status-details-bin`.
#[derive(Clone, PartialEq, Message)]
pub struct Status {
    /// The status code (a `google.rpc.Code` / gRPC code value).
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// Developer-facing message.
    #[prost(string, tag = "2")]
    pub message: String,
    /// Error details, each packed in an `Any`.
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<Any>,
}

/// `google.rpc.RetryInfo`: when the client may retry.
#[derive(Clone, PartialEq, Message)]
pub struct RetryInfo {
    /// Clients should wait at least this long before retrying.
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<prost_types::Duration>,
}

/// `google.rpc.DebugInfo`: debugging information from the server.
#[derive(Clone, PartialEq, Message)]
pub struct DebugInfo {
    /// Stack trace entries.
    #[prost(string, repeated, tag = "1")]
    pub stack_entries: Vec<String>,
    /// Additional debugging information.
    #[prost(string, tag = "2")]
    pub detail: String,
}

/// `google.rpc.QuotaFailure`: how a quota check failed.
#[derive(Clone, PartialEq, Message)]
pub struct QuotaFailure {
    /// Describes all quota violations.
    #[prost(message, repeated, tag = "1")]
    pub violations: Vec<quota_failure::Violation>,
}

/// Nested types of [`QuotaFailure`].
pub mod quota_failure {
    /// `google.rpc.QuotaFailure.Violation`.
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct Violation {
        /// The subject on which the quota check failed.
        #[prost(string, tag = "1")]
        pub subject: String,
        /// A description of how the quota check failed.
        #[prost(string, tag = "2")]
        pub description: String,
    }
}

/// `google.rpc.ErrorInfo`: the cause of an error with structured details.
#[derive(Clone, PartialEq, Message)]
pub struct ErrorInfo {
    /// The reason of the error (UPPER_SNAKE_CASE).
    #[prost(string, tag = "1")]
    pub reason: String,
    /// The logical grouping to which `reason` belongs.
    #[prost(string, tag = "2")]
    pub domain: String,
    /// Additional structured details.
    #[prost(map = "string, string", tag = "3")]
    pub metadata: std::collections::HashMap<String, String>,
}

/// `google.rpc.PreconditionFailure`: what preconditions failed.
#[derive(Clone, PartialEq, Message)]
pub struct PreconditionFailure {
    /// Describes all precondition violations.
    #[prost(message, repeated, tag = "1")]
    pub violations: Vec<precondition_failure::Violation>,
}

/// Nested types of [`PreconditionFailure`].
pub mod precondition_failure {
    /// `google.rpc.PreconditionFailure.Violation`.
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct Violation {
        /// The type of precondition failure.
        #[prost(string, tag = "1")]
        pub r#type: String,
        /// The subject, relative to the type, that failed.
        #[prost(string, tag = "2")]
        pub subject: String,
        /// A description of how the precondition failed.
        #[prost(string, tag = "3")]
        pub description: String,
    }
}

/// `google.rpc.BadRequest`: violations in a client request.
#[derive(Clone, PartialEq, Message)]
pub struct BadRequest {
    /// Describes all violations in a client request.
    #[prost(message, repeated, tag = "1")]
    pub field_violations: Vec<bad_request::FieldViolation>,
}

/// Nested types of [`BadRequest`].
pub mod bad_request {
    /// `google.rpc.BadRequest.FieldViolation`.
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct FieldViolation {
        /// A path to a field in the request body.
        #[prost(string, tag = "1")]
        pub field: String,
        /// Why the field is bad.
        #[prost(string, tag = "2")]
        pub description: String,
        /// The reason of the field-level error (UPPER_SNAKE_CASE).
        #[prost(string, tag = "3")]
        pub reason: String,
        /// A localized version of the description.
        #[prost(message, optional, tag = "4")]
        pub localized_message: Option<super::LocalizedMessage>,
    }
}

/// `google.rpc.RequestInfo`: identifies the request for bug reports.
#[derive(Clone, PartialEq, Message)]
pub struct RequestInfo {
    /// An opaque request id.
    #[prost(string, tag = "1")]
    pub request_id: String,
    /// Data used to serve this request (e.g. an encrypted stack trace).
    #[prost(string, tag = "2")]
    pub serving_data: String,
}

/// `google.rpc.ResourceInfo`: the resource being accessed.
#[derive(Clone, PartialEq, Message)]
pub struct ResourceInfo {
    /// The type of resource.
    #[prost(string, tag = "1")]
    pub resource_type: String,
    /// The name of the resource.
    #[prost(string, tag = "2")]
    pub resource_name: String,
    /// The owner of the resource (optional).
    #[prost(string, tag = "3")]
    pub owner: String,
    /// The error encountered accessing the resource.
    #[prost(string, tag = "4")]
    pub description: String,
}

/// `google.rpc.Help`: links to documentation.
#[derive(Clone, PartialEq, Message)]
pub struct Help {
    /// URLs pointing to additional information.
    #[prost(message, repeated, tag = "1")]
    pub links: Vec<help::Link>,
}

/// Nested types of [`Help`].
pub mod help {
    /// `google.rpc.Help.Link`.
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct Link {
        /// What the link offers.
        #[prost(string, tag = "1")]
        pub description: String,
        /// The URL of the link.
        #[prost(string, tag = "2")]
        pub url: String,
    }
}

/// `google.rpc.LocalizedMessage`: a message in a given locale.
#[derive(Clone, PartialEq, Message)]
pub struct LocalizedMessage {
    /// BCP-47 locale, e.g. "en-US".
    #[prost(string, tag = "1")]
    pub locale: String,
    /// The localized message.
    #[prost(string, tag = "2")]
    pub message: String,
}

/// One standard error detail, typed.
#[derive(Clone, Debug, PartialEq)]
pub enum ErrorDetail {
    /// `google.rpc.RetryInfo`.
    RetryInfo(RetryInfo),
    /// `google.rpc.DebugInfo`.
    DebugInfo(DebugInfo),
    /// `google.rpc.QuotaFailure`.
    QuotaFailure(QuotaFailure),
    /// `google.rpc.ErrorInfo`.
    ErrorInfo(ErrorInfo),
    /// `google.rpc.PreconditionFailure`.
    PreconditionFailure(PreconditionFailure),
    /// `google.rpc.BadRequest`.
    BadRequest(BadRequest),
    /// `google.rpc.RequestInfo`.
    RequestInfo(RequestInfo),
    /// `google.rpc.ResourceInfo`.
    ResourceInfo(ResourceInfo),
    /// `google.rpc.Help`.
    Help(Help),
    /// `google.rpc.LocalizedMessage`.
    LocalizedMessage(LocalizedMessage),
    /// Any other detail, kept as-is.
    Other(Any),
}

fn pack<M: Message>(name: &str, m: &M) -> Any {
    Any { type_url: format!("{TYPE_URL_PREFIX}google.rpc.{name}"), value: m.encode_to_vec() }
}

impl ErrorDetail {
    /// Packs the detail into a `google.protobuf.Any`.
    pub fn to_any(&self) -> Any {
        match self {
            ErrorDetail::RetryInfo(m) => pack("RetryInfo", m),
            ErrorDetail::DebugInfo(m) => pack("DebugInfo", m),
            ErrorDetail::QuotaFailure(m) => pack("QuotaFailure", m),
            ErrorDetail::ErrorInfo(m) => pack("ErrorInfo", m),
            ErrorDetail::PreconditionFailure(m) => pack("PreconditionFailure", m),
            ErrorDetail::BadRequest(m) => pack("BadRequest", m),
            ErrorDetail::RequestInfo(m) => pack("RequestInfo", m),
            ErrorDetail::ResourceInfo(m) => pack("ResourceInfo", m),
            ErrorDetail::Help(m) => pack("Help", m),
            ErrorDetail::LocalizedMessage(m) => pack("LocalizedMessage", m),
            ErrorDetail::Other(a) => a.clone(),
        }
    }

    /// Unpacks an `Any`: a known `google.rpc` type URL (any host prefix)
    /// decodes into its variant, anything else becomes [`ErrorDetail::Other`].
    pub fn from_any(any: &Any) -> Result<ErrorDetail, prost::DecodeError> {
        let name = any.type_url.rsplit('/').next().unwrap_or("");
        let v = &any.value[..];
        Ok(match name {
            "google.rpc.RetryInfo" => ErrorDetail::RetryInfo(Message::decode(v)?),
            "google.rpc.DebugInfo" => ErrorDetail::DebugInfo(Message::decode(v)?),
            "google.rpc.QuotaFailure" => ErrorDetail::QuotaFailure(Message::decode(v)?),
            "google.rpc.ErrorInfo" => ErrorDetail::ErrorInfo(Message::decode(v)?),
            "google.rpc.PreconditionFailure" => ErrorDetail::PreconditionFailure(Message::decode(v)?),
            "google.rpc.BadRequest" => ErrorDetail::BadRequest(Message::decode(v)?),
            "google.rpc.RequestInfo" => ErrorDetail::RequestInfo(Message::decode(v)?),
            "google.rpc.ResourceInfo" => ErrorDetail::ResourceInfo(Message::decode(v)?),
            "google.rpc.Help" => ErrorDetail::Help(Message::decode(v)?),
            "google.rpc.LocalizedMessage" => ErrorDetail::LocalizedMessage(Message::decode(v)?),
            _ => ErrorDetail::Other(any.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_field_numbers() {
        // field 1 (string "a") + field 2 (string "b") + field 3 (LEN, nested)
        let fv = bad_request::FieldViolation {
            field: "a".into(),
            description: "b".into(),
            reason: "R".into(),
            localized_message: Some(LocalizedMessage { locale: "en".into(), message: "m".into() }),
        };
        let bytes = fv.encode_to_vec();
        assert_eq!(&bytes[..6], &[0x0a, 1, b'a', 0x12, 1, b'b']);
        assert_eq!(&bytes[6..9], &[0x1a, 1, b'R']);
        assert_eq!(bytes[9], 0x22);
        let ri = ResourceInfo { description: "d".into(), ..Default::default() };
        assert_eq!(ri.encode_to_vec(), vec![0x22, 1, b'd']);
    }

    #[test]
    fn any_roundtrip_all_kinds() {
        let all = vec![
            ErrorDetail::RetryInfo(RetryInfo { retry_delay: Some(prost_types::Duration { seconds: 1, nanos: 5 }) }),
            ErrorDetail::DebugInfo(DebugInfo { stack_entries: vec!["f".into()], detail: "d".into() }),
            ErrorDetail::QuotaFailure(QuotaFailure {
                violations: vec![quota_failure::Violation { subject: "s".into(), description: "d".into() }],
            }),
            ErrorDetail::ErrorInfo(ErrorInfo {
                reason: "R".into(),
                domain: "x.com".into(),
                metadata: [("k".to_string(), "v".to_string())].into_iter().collect(),
            }),
            ErrorDetail::PreconditionFailure(PreconditionFailure {
                violations: vec![precondition_failure::Violation {
                    r#type: "TOS".into(),
                    subject: "s".into(),
                    description: "d".into(),
                }],
            }),
            ErrorDetail::BadRequest(BadRequest::default()),
            ErrorDetail::RequestInfo(RequestInfo { request_id: "1".into(), serving_data: "x".into() }),
            ErrorDetail::ResourceInfo(ResourceInfo { resource_type: "t".into(), ..Default::default() }),
            ErrorDetail::Help(Help { links: vec![help::Link { description: "d".into(), url: "u".into() }] }),
            ErrorDetail::LocalizedMessage(LocalizedMessage { locale: "fr".into(), message: "m".into() }),
            ErrorDetail::Other(Any { type_url: "type.googleapis.com/x.Y".into(), value: vec![1, 2] }),
        ];
        for d in all {
            let any = d.to_any();
            if !matches!(d, ErrorDetail::Other(_)) {
                assert!(any.type_url.starts_with("type.googleapis.com/google.rpc."));
            }
            assert_eq!(ErrorDetail::from_any(&any).unwrap(), d);
        }
    }
}
