//! `grpc-message` percent-decoding ([`decode_message`]): never fails, and what the encoder
//! emits is a valid header value that decodes back to the original text; a status read
//! from trailers carrying the value gets the same message.
#![no_main]

use grpc_runtime::status::{decode_message, encode_message};
use grpc_runtime::Status;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let decoded = decode_message(data);
    // Encoder output: bytes 0x20..=0x7E only, and it round-trips.
    let encoded = encode_message(&decoded);
    assert!(
        encoded.bytes().all(|b| (0x20..=0x7E).contains(&b)),
        "{encoded:?}"
    );
    assert_eq!(decode_message(encoded.as_bytes()), decoded);
    // The same through trailers, as a client reads them.
    if let Ok(value) = HeaderValue::from_bytes(data) {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("13"));
        trailers.insert("grpc-message", value);
        let status = Status::from_header_map(&trailers).expect("grpc-status is present");
        assert_eq!(status.message(), decoded);
        // And back out: the header the server would send reads back the same.
        let again =
            Status::from_header_map(&status.to_header_map()).expect("grpc-status is present");
        assert_eq!(again.message(), decoded);
        assert_eq!(again.code(), status.code());
    }
    // Arbitrary text (the input as UTF-8, lossily) round-trips too.
    let text = String::from_utf8_lossy(data);
    assert_eq!(decode_message(encode_message(&text).as_bytes()), text);
});
