//! Retry decisions of gRFC A6: the per-call retry state (attempt count, exponential
//! backoff with full jitter, server pushback) and the channel's retry throttle (a token
//! bucket shared by every call of the channel). The attempt loops that use them are in
//! `call.rs`; nothing here touches the network.

use std::sync::Mutex;
use std::time::Duration;

use http::HeaderValue;

use super::service_config::{RetryPolicy, RetryThrottling};
use crate::status::{Code, Status};
use crate::transport::random_unit;

/// The trailer a server sets to push back on retries (gRFC A6).
pub(crate) const PUSHBACK_HEADER: &str = "grpc-retry-pushback-ms";
/// The header telling the server how many attempts of this call came before.
pub(crate) const PREVIOUS_ATTEMPTS_HEADER: &str = "grpc-previous-rpc-attempts";

/// The channel's retry throttle: `max_tokens` tokens to start with; every failed
/// attempt takes one, every successful call gives back `token_ratio`; while at most
/// half the tokens are left, calls are not retried or hedged further.
#[derive(Debug)]
pub(crate) struct Throttle {
    config: RetryThrottling,
    tokens: Mutex<f64>,
}

impl Throttle {
    pub(crate) fn new(config: RetryThrottling) -> Self {
        Throttle {
            config,
            tokens: Mutex::new(config.max_tokens),
        }
    }

    pub(crate) fn config(&self) -> RetryThrottling {
        self.config
    }

    /// Records a failed attempt; `true` when retries are now throttled.
    pub(crate) fn failure(&self) -> bool {
        match self.tokens.lock() {
            Ok(mut t) => {
                *t = (*t - 1.0).max(0.0);
                *t <= self.config.max_tokens / 2.0
            }
            Err(_) => true,
        }
    }

    /// Records a successful call.
    pub(crate) fn success(&self) {
        if let Ok(mut t) = self.tokens.lock() {
            *t = (*t + self.config.token_ratio).min(self.config.max_tokens);
        }
    }

    #[cfg(test)]
    fn tokens(&self) -> f64 {
        self.tokens.lock().map(|t| *t).unwrap_or(0.0)
    }
}

/// What the server said about retrying in `grpc-retry-pushback-ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushback {
    /// No pushback header.
    None,
    /// Retry after exactly this delay.
    After(Duration),
    /// Negative or malformed: do not retry.
    Stop,
}

impl Pushback {
    pub(crate) fn parse(value: Option<&HeaderValue>) -> Pushback {
        let Some(v) = value else {
            return Pushback::None;
        };
        let text = v.to_str().unwrap_or("");
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Pushback::Stop;
        }
        match text.parse::<u64>() {
            Ok(ms) => Pushback::After(Duration::from_millis(ms)),
            // More digits than u64 holds: a very long pushback is a "not now".
            Err(_) => Pushback::Stop,
        }
    }
}

/// One call's retry state under a `retryPolicy`.
#[derive(Debug)]
pub(crate) struct RetryState<'a> {
    policy: &'a RetryPolicy,
    /// Attempts made so far (the first included).
    attempts: u32,
    backoff: Duration,
}

impl<'a> RetryState<'a> {
    pub(crate) fn new(policy: &'a RetryPolicy) -> Self {
        RetryState {
            policy,
            attempts: 1,
            backoff: policy.initial_backoff,
        }
    }

    /// Attempts made before the next one (the `grpc-previous-rpc-attempts` value).
    pub(crate) fn previous(&self) -> u32 {
        self.attempts - 1
    }

    /// After a failed attempt: the delay before the next one, or `None` to stop and
    /// return this attempt's status. Order as grpc-go: pushback validity, retryable code,
    /// throttle, attempt limit; then the delay (pushback exactly, else a random delay
    /// up to the current backoff, which then grows).
    pub(crate) fn on_failure(
        &mut self,
        status: &Status,
        pushback: Pushback,
        throttle: Option<&Throttle>,
    ) -> Option<Duration> {
        if pushback == Pushback::Stop {
            if let Some(t) = throttle {
                t.failure();
            }
            return None;
        }
        if !self.policy.retryable_status_codes.contains(&status.code()) {
            return None;
        }
        if throttle.is_some_and(|t| t.failure()) {
            return None;
        }
        if self.attempts >= self.policy.max_attempts {
            return None;
        }
        let delay = match pushback {
            Pushback::After(d) => {
                self.backoff = self.policy.initial_backoff;
                d
            }
            _ => {
                let d = crate::transport::backoff_scale(self.backoff, random_unit());
                let next =
                    crate::transport::backoff_scale(self.backoff, self.policy.backoff_multiplier);
                self.backoff = next.min(self.policy.max_backoff);
                d
            }
        };
        self.attempts += 1;
        Some(delay)
    }
}

/// Whether `code` ends a hedged call at once (it is not one of the non-fatal codes).
pub(crate) fn is_fatal(non_fatal: &[Code], code: Code) -> bool {
    code == Code::Ok || !non_fatal.contains(&code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(250),
            backoff_multiplier: 2.0,
            retryable_status_codes: vec![Code::Unavailable],
        }
    }

    #[test]
    fn backoff_grows_to_the_cap_with_full_jitter_and_stops_at_max_attempts() {
        let p = policy();
        let mut s = RetryState::new(&p);
        let un = Status::unavailable("x");
        let mut delays = Vec::new();
        while let Some(d) = s.on_failure(&un, Pushback::None, None) {
            delays.push(d);
        }
        assert_eq!(delays.len(), 3, "4 attempts: 3 retries");
        for (d, cap) in delays.iter().zip([100u64, 200, 250]) {
            assert!(*d <= Duration::from_millis(cap), "{d:?} > {cap}");
        }
        assert_eq!(s.previous(), 3);
    }

    #[test]
    fn non_retryable_codes_and_pushback() {
        let p = policy();
        let mut s = RetryState::new(&p);
        assert_eq!(
            s.on_failure(&Status::internal("x"), Pushback::None, None),
            None
        );
        let un = Status::unavailable("x");
        assert_eq!(
            s.on_failure(&un, Pushback::After(Duration::from_millis(700)), None),
            Some(Duration::from_millis(700))
        );
        assert_eq!(s.on_failure(&un, Pushback::Stop, None), None);
        assert_eq!(Pushback::parse(None), Pushback::None);
        assert_eq!(
            Pushback::parse(Some(&HeaderValue::from_static("25"))),
            Pushback::After(Duration::from_millis(25))
        );
        for bad in ["-1", "", "1.5", "abc", "99999999999999999999999"] {
            assert_eq!(
                Pushback::parse(Some(&HeaderValue::from_str(bad).unwrap())),
                Pushback::Stop,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn throttle_stops_retries_at_half_the_tokens_and_recovers() {
        let t = Throttle::new(RetryThrottling {
            max_tokens: 10.0,
            token_ratio: 0.5,
        });
        let p = RetryPolicy {
            max_attempts: 5,
            ..policy()
        };
        let un = Status::unavailable("x");
        let mut s = RetryState::new(&p);
        let mut retries = 0;
        while s.on_failure(&un, Pushback::None, Some(&t)).is_some() {
            retries += 1;
        }
        // 10 -> 9, 8, 7, 6 (retried), 5 (throttled: at most half left).
        assert_eq!(retries, 4);
        assert_eq!(t.tokens(), 5.0);
        assert!(RetryState::new(&p)
            .on_failure(&un, Pushback::None, Some(&t))
            .is_none());
        assert_eq!(t.tokens(), 4.0);
        for _ in 0..3 {
            t.success();
        }
        assert_eq!(t.tokens(), 5.5);
        assert!(
            RetryState::new(&p)
                .on_failure(&un, Pushback::None, Some(&t))
                .is_none(),
            "5.5 - 1 = 4.5"
        );
        for _ in 0..20 {
            t.success();
        }
        assert_eq!(t.tokens(), 10.0, "capped at max_tokens");
        assert!(RetryState::new(&p)
            .on_failure(&un, Pushback::None, Some(&t))
            .is_some());
    }
}
