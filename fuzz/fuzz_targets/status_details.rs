//! Status details: `grpc-status-details-bin` (base64 of a `google.rpc.Status`) read from
//! trailers ([`Status::from_header_map`]), then [`Status::rpc_status`] and
//! [`Status::error_details`] as an application calls them. Checks: undecodable details
//! are an error, never a panic; details that decode survive re-encoding; a status written
//! to trailers and read back keeps its code, message and details bytes.
//!
//! Input: byte 0 is the `grpc-status` value (0..=255, so out-of-range codes too), byte 1
//! says whether the rest is the header value as is (odd) or the raw details bytes (even,
//! base64-encoded here so the fuzzer reaches protobuf decoding directly).
#![no_main]

use grpc_runtime::metadata::encode_bin;
use grpc_runtime::rpc_types;
use grpc_runtime::{Code, Status};
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (code, raw, rest) = (data[0], data[1] & 1 == 1, &data[2..]);
    let value = if raw {
        HeaderValue::from_bytes(rest)
    } else {
        HeaderValue::from_str(&encode_bin(rest))
    };
    let Ok(value) = value else { return };
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from(u16::from(code)));
    trailers.insert("grpc-status-details-bin", value);
    let status = Status::from_header_map(&trailers).expect("grpc-status is present");
    assert_eq!(status.code(), Code::from_i32(i32::from(code)));
    if !raw {
        assert_eq!(&status.details()[..], rest);
    }

    match status.rpc_status() {
        Ok(None) => assert!(status.details().is_empty()),
        Ok(Some(rpc)) => {
            // Re-encoding what decoded gives bytes that decode to the same message.
            let again =
                rpc_types::Status::decode(rpc.encode_to_vec().as_slice()).expect("re-encoded");
            assert_eq!(again, rpc);
        }
        Err(_) => {
            assert!(status.error_details().is_err());
        }
    }
    if let Ok(details) = status.error_details() {
        // Typed details built back into a status decode to the same list.
        let rebuilt = Status::with_details(status.code(), status.message(), details.clone());
        assert_eq!(
            rebuilt.error_details().expect("our own details decode"),
            details
        );
    }

    // Written to trailers and read back: same code, message and details bytes.
    let back = Status::from_header_map(&status.to_header_map()).expect("grpc-status is present");
    assert_eq!(back.code(), status.code());
    assert_eq!(back.message(), status.message());
    assert_eq!(back.details(), status.details());
});
