//! `grpc-timeout` encoding/decoding (1-8 ASCII digits + unit `H M S m u n`)
//! and the [`Deadline`] type, plus the task-local "current deadline" used to
//! propagate a server call's deadline to outgoing client calls.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// The `grpc-timeout` header name (a `HeaderName`: inserting a `&str` key copies it).
pub(crate) const GRPC_TIMEOUT_NAME: http::HeaderName =
    http::HeaderName::from_static("grpc-timeout");

/// Largest value that fits in the 8 digits `grpc-timeout` allows.
const MAX_DIGITS_VALUE: u64 = 99_999_999;

/// Encodes a timeout for the `grpc-timeout` header, using the finest unit
/// whose value fits in 8 digits (rounding up, so the peer never sees a
/// shorter timeout than ours). Durations beyond 99,999,999 hours saturate.
pub fn encode_timeout(timeout: Duration) -> String {
    let nanos = timeout.as_nanos();
    const UNITS: [(u128, char); 6] = [
        (1, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
        (3_600_000_000_000, 'H'),
    ];
    for (per, unit) in UNITS {
        let v = nanos.div_ceil(per);
        if v <= MAX_DIGITS_VALUE as u128 {
            return format!("{v}{unit}");
        }
    }
    format!("{MAX_DIGITS_VALUE}H")
}

/// Why a `grpc-timeout` value was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidTimeout(pub String);

impl fmt::Display for InvalidTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "malformed grpc-timeout {:?}: expected 1-8 digits followed by one of H M S m u n",
            self.0
        )
    }
}

impl std::error::Error for InvalidTimeout {}

/// Decodes a `grpc-timeout` header value.
pub fn decode_timeout(value: &[u8]) -> Result<Duration, InvalidTimeout> {
    let err = || InvalidTimeout(String::from_utf8_lossy(value).into_owned());
    let (unit, digits) = value.split_last().ok_or_else(err)?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(err());
    }
    let n: u64 = digits
        .iter()
        .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
    Ok(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return Err(err()),
    })
}

/// How far in the future [`instant_after`] saturates: about 100 years.
const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `base + d`, never panicking: durations beyond ~100 years (e.g. a user's
/// `Duration::MAX` for "never") are capped, and if even that overflows the
/// platform's `Instant` the result is the furthest representable point we
/// can find. `Instant + Duration` panics on overflow; use this instead for
/// any duration a peer or user controls.
pub(crate) fn instant_after(base: Instant, d: Duration) -> Instant {
    let mut d = d.min(FAR_FUTURE);
    loop {
        if let Some(t) = base.checked_add(d) {
            return t;
        }
        if d.is_zero() {
            return base;
        }
        d /= 2;
    }
}

/// A point in time by which a call must finish.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline(Instant);

impl Deadline {
    /// The deadline `timeout` from now. Absurdly large timeouts are capped
    /// at roughly 100 years.
    pub fn after(timeout: Duration) -> Deadline {
        Deadline(instant_after(Instant::now(), timeout))
    }

    /// A deadline at a given instant.
    pub fn at(instant: Instant) -> Deadline {
        Deadline(instant)
    }

    /// The instant of the deadline.
    pub fn instant(&self) -> Instant {
        self.0
    }

    /// Time left before the deadline (zero if it passed).
    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// True once the deadline has passed.
    pub fn is_expired(&self) -> bool {
        Instant::now() >= self.0
    }

    /// The earlier of two optional deadlines.
    pub fn earliest(a: Option<Deadline>, b: Option<Deadline>) -> Option<Deadline> {
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, None) => a,
            (None, b) => b,
        }
    }
}

tokio::task_local! {
    static CURRENT_DEADLINE: Option<Deadline>;
}

/// The deadline of the server call being handled by the current task, if
/// any. Outgoing client calls made from a handler inherit it unless they
/// set their own timeout. Tasks spawned by the handler do not inherit it
/// automatically; wrap them with [`scope_deadline`].
pub fn current_deadline() -> Option<Deadline> {
    CURRENT_DEADLINE.try_with(|d| *d).ok().flatten()
}

/// Runs `fut` with `deadline` as the [`current_deadline`].
pub async fn scope_deadline<F: Future>(deadline: Option<Deadline>, fut: F) -> F::Output {
    CURRENT_DEADLINE.scope(deadline, fut).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_vectors() {
        assert_eq!(encode_timeout(Duration::from_nanos(0)), "0n");
        assert_eq!(encode_timeout(Duration::from_nanos(1)), "1n");
        assert_eq!(
            encode_timeout(Duration::from_nanos(99_999_999)),
            "99999999n"
        );
        assert_eq!(encode_timeout(Duration::from_nanos(100_000_000)), "100000u");
        assert_eq!(encode_timeout(Duration::from_millis(100)), "100000u");
        assert_eq!(encode_timeout(Duration::from_secs(1)), "1000000u");
        assert_eq!(encode_timeout(Duration::from_secs(100)), "100000m");
        assert_eq!(encode_timeout(Duration::from_secs(100_000)), "100000S");
        assert_eq!(encode_timeout(Duration::from_secs(100_000_000)), "1666667M");
        assert_eq!(
            encode_timeout(Duration::from_secs(99_999_999 * 60 + 1)),
            "1666667H"
        );
        assert_eq!(encode_timeout(Duration::MAX), "99999999H");
        // rounds up, never down
        assert_eq!(encode_timeout(Duration::from_nanos(100_000_001)), "100001u");
    }

    #[test]
    fn decode_vectors() {
        assert_eq!(decode_timeout(b"1H").unwrap(), Duration::from_secs(3600));
        assert_eq!(decode_timeout(b"2M").unwrap(), Duration::from_secs(120));
        assert_eq!(decode_timeout(b"3S").unwrap(), Duration::from_secs(3));
        assert_eq!(decode_timeout(b"4m").unwrap(), Duration::from_millis(4));
        assert_eq!(decode_timeout(b"5u").unwrap(), Duration::from_micros(5));
        assert_eq!(decode_timeout(b"6n").unwrap(), Duration::from_nanos(6));
        assert_eq!(
            decode_timeout(b"99999999H").unwrap(),
            Duration::from_secs(99_999_999 * 3600)
        );
        assert_eq!(
            decode_timeout(b"00000001S").unwrap(),
            Duration::from_secs(1)
        );
        for bad in [
            &b""[..],
            b"S",
            b"1",
            b"123456789S",
            b"1s",
            b"1X",
            b"-1S",
            b" 1S",
            b"1.5S",
            b"1SS",
            b"\xff",
        ] {
            assert!(
                decode_timeout(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        for d in [1u64, 999, 123_456_789, 5_000_000_000, 3_600_000_000_000] {
            let dur = Duration::from_nanos(d);
            let back = decode_timeout(encode_timeout(dur).as_bytes()).unwrap();
            assert!(back >= dur);
        }
    }

    #[tokio::test]
    async fn task_local_deadline() {
        assert_eq!(current_deadline(), None);
        let d = Deadline::after(Duration::from_secs(5));
        let seen = scope_deadline(Some(d), async { current_deadline() }).await;
        assert_eq!(seen, Some(d));
        assert!(d.remaining() <= Duration::from_secs(5));
        assert!(!d.is_expired());
    }
}
