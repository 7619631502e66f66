//! `grpc-timeout` parsing ([`decode_timeout`]) as the server applies it: any value either
//! fails (the call gets INTERNAL) or gives a duration that becomes a [`Deadline`] without
//! overflowing; accepted values are exactly 1-8 ASCII digits and a unit; the encoder's
//! output always parses back to at least the encoded duration.
#![no_main]

use std::time::Duration;

use grpc_runtime::timeout::{decode_timeout, encode_timeout};
use grpc_runtime::Deadline;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match decode_timeout(data) {
        Ok(d) => {
            let (unit, digits) = data.split_last().expect("accepted value is not empty");
            assert!(
                (1..=8).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit),
                "{data:?}"
            );
            assert!(b"HMSmun".contains(unit), "{data:?}");
            // What the server does with it: a deadline from now (must not overflow).
            let deadline = Deadline::after(d);
            let _ = deadline.remaining();
            // Re-encoding never shortens it and stays within the header's grammar.
            let enc = encode_timeout(d);
            let back = decode_timeout(enc.as_bytes()).expect("encoder output parses");
            assert!(back >= d, "{enc} < {d:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    // The encoder on an arbitrary duration built from the input.
    if data.len() >= 12 {
        let secs = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
        let nanos = u32::from_le_bytes(data[8..12].try_into().expect("4 bytes")) % 1_000_000_000;
        let d = Duration::new(secs, nanos);
        let enc = encode_timeout(d);
        let back = decode_timeout(enc.as_bytes()).expect("encoder output parses");
        // Saturates at 99999999H; below that, rounds up.
        assert!(back >= d || enc == "99999999H", "{enc} for {d:?}");
        let _ = Deadline::after(d);
    }
});
