//! `-bin` metadata decoding ([`decode_bin`], [`MetadataMap::from_headers`]): base64 padded
//! or unpadded, comma-joined values split before decoding. Checks: what decodes re-encodes
//! (unpadded) to a value that decodes the same; padded and unpadded forms agree; a map read
//! from headers survives `to_headers` -> `from_headers` unchanged.
//!
//! Input: `name:value` lines (`\n`-separated) become a header map; the first line's value
//! is also fed to `decode_bin` on its own.
#![no_main]

use grpc_runtime::metadata::{decode_bin, encode_bin, MetadataMap, MetadataValue};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

fn entries(md: &MetadataMap) -> Vec<(String, MetadataValue)> {
    md.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

fuzz_target!(|data: &[u8]| {
    if let Ok(bytes) = decode_bin(data) {
        let unpadded = encode_bin(&bytes);
        assert!(!unpadded.ends_with('='));
        assert_eq!(
            decode_bin(unpadded.as_bytes()).expect("our encoding decodes"),
            bytes
        );
        let padding = "=".repeat((4 - unpadded.len() % 4) % 4);
        let padded = format!("{unpadded}{padding}");
        assert_eq!(
            decode_bin(padded.as_bytes()).expect("padded form decodes"),
            bytes
        );
    }

    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            headers.append(name, value);
        }
    }
    if let Ok(md) = MetadataMap::from_headers(&headers) {
        let again = MetadataMap::from_headers(&md.to_headers()).expect("our own headers decode");
        assert_eq!(entries(&again), entries(&md));
        for (key, value) in md.iter() {
            match value {
                MetadataValue::Binary(_) => assert!(key.ends_with("-bin"), "{key}"),
                MetadataValue::Ascii(v) => {
                    assert!(!key.ends_with("-bin"), "{key}");
                    assert!(v.as_bytes().iter().all(|b| (0x20..=0x7E).contains(b)));
                }
            }
        }
    }
});
