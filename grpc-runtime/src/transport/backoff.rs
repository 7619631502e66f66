//! Randomness for jitter, and the reconnect backoff of gRPC's connection-backoff.md
//! (1 s initial, x1.6, jitter 0.2, 120 s max, 20 s minimum connect timeout).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A uniformly distributed number in `[0, 1)` (not cryptographic; for jitter only).
pub(crate) fn random_unit() -> f64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// `d * factor`, never panicking (unlike `Duration::mul_f64`): a negative or
/// NaN factor gives zero, an overflowing product saturates at `Duration::MAX`.
/// The factors come from user settings (`BackoffConfig`) and may be anything.
pub(crate) fn scale(d: Duration, factor: f64) -> Duration {
    if factor.is_nan() || factor <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(d.as_secs_f64() * factor).unwrap_or(Duration::MAX)
}

/// `d` scaled by a random factor in `[1 - fraction, 1 + fraction)`.
pub(crate) fn jitter(d: Duration, fraction: f64) -> Duration {
    scale(d, 1.0 + fraction * (2.0 * random_unit() - 1.0))
}

/// Reconnect backoff settings (gRPC connection-backoff.md).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffConfig {
    /// Delay after the first failure (default 1 s).
    pub base_delay: Duration,
    /// Factor applied after each further failure (default 1.6).
    pub multiplier: f64,
    /// Random spread of each delay, as a fraction (default 0.2: +-20%).
    pub jitter: f64,
    /// Upper bound of the delay (default 120 s).
    pub max_delay: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            base_delay: Duration::from_secs(1),
            multiplier: 1.6,
            jitter: 0.2,
            max_delay: Duration::from_secs(120),
        }
    }
}

/// The backoff state of one subchannel: the next delay, grown after each failure.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    config: BackoffConfig,
    current: Duration,
}

impl Backoff {
    pub(crate) fn new(config: BackoffConfig) -> Self {
        Backoff {
            config,
            current: config.base_delay,
        }
    }

    /// Back to the initial delay (after a successful connection).
    pub(crate) fn reset(&mut self) {
        self.current = self.config.base_delay;
    }

    /// The unjittered delay the next failure will wait.
    pub(crate) fn current(&self) -> Duration {
        self.current
    }

    /// The jittered delay to wait now; grows the next one.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let d = jitter(self.current, self.config.jitter);
        self.current = scale(self.current, self.config.multiplier).min(self.config.max_delay);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_jittered_and_capped() {
        let mut b = Backoff::new(BackoffConfig::default());
        let mut expected = 1.0f64;
        for _ in 0..20 {
            let d = b.next_delay().as_secs_f64();
            assert!(
                d >= expected * 0.8 - 1e-9 && d <= expected * 1.2 + 1e-9,
                "{d} vs {expected}"
            );
            expected = (expected * 1.6).min(120.0);
        }
        assert_eq!(b.current(), Duration::from_secs(120));
        b.reset();
        assert_eq!(b.current(), Duration::from_secs(1));
    }

    #[test]
    fn absurd_settings_never_panic() {
        for (base, multiplier, jitter) in [
            (Duration::MAX, 1.6, 0.2),
            (Duration::from_secs(1), f64::INFINITY, f64::INFINITY),
            (Duration::from_secs(1), f64::NAN, f64::NAN),
            (Duration::from_secs(1), -3.0, -7.0),
            (Duration::MAX, 1e300, 1e300),
        ] {
            let mut b = Backoff::new(BackoffConfig {
                base_delay: base,
                multiplier,
                jitter,
                max_delay: Duration::MAX,
            });
            for _ in 0..5 {
                let _ = b.next_delay();
            }
        }
        assert_eq!(scale(Duration::MAX, 2.0), Duration::MAX);
        assert_eq!(scale(Duration::from_secs(2), f64::NAN), Duration::ZERO);
        assert_eq!(scale(Duration::from_secs(2), 1.5), Duration::from_secs(3));
    }

    #[test]
    fn jitter_spreads() {
        let v: Vec<f64> = (0..200).map(|_| random_unit()).collect();
        assert!(v.iter().all(|x| (0.0..1.0).contains(x)));
        assert!(v.iter().any(|x| *x < 0.3) && v.iter().any(|x| *x > 0.7));
    }
}
