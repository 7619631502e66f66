//! The rules of one HTTP/2 connection's life, for both sides and without IO: keepalive
//! (gRFC A8 client PINGs, A9 server PINGs, one timeout for an unanswered PING), the
//! server's ping-strike enforcement, when a BDP sample is taken and what it does to the
//! windows (adaptive flow control), max connection idle, max connection age and its
//! grace, and the limit on an abrupt close.
//!
//! [`Engine`] is plain state: the connection's driver tells it the time and what
//! happened (a PING acked, calls opened, the connection started going away), asks it
//! when to wake up next ([`Engine::next_deadline`]) and, when that time comes, what to do
//! ([`Engine::poll_timer`]: send a PING, drain with GOAWAY, close). The server's
//! connection task drives one ([`crate::server`]'s `conn.rs`), the client's connection
//! task another (`connect.rs`). The two rules that run on every inbound frame,
//! [`PingStrikes`] and [`BdpSampler`], are kept by the frame tap's
//! [`super::frame_tap::Activity`], which sees those frames.
//!
//! Nothing here reads a clock: every method takes `now`, so the rules are unit-tested
//! with plain instants (and on paused tokio time).

use std::time::Duration;

use tokio::time::Instant;

use super::bdp::Estimator;
use crate::timeout::instant_after;

/// gRFC A8: more than this many ping strikes earn GOAWAY(ENHANCE_YOUR_CALM).
pub(crate) const MAX_PING_STRIKES: u32 = 2;

/// Without calls (and unless permitted), PINGs closer together than this are strikes
/// (grpc-go's server: two hours).
const PING_WITHOUT_CALLS_MIN: Duration = Duration::from_secs(2 * 60 * 60);

/// After an abrupt GOAWAY (e.g. ENHANCE_YOUR_CALM) the connection is dropped if h2 has
/// not closed it by then.
pub(crate) const ABRUPT_CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// After an idle GOAWAY, the connection is dropped if it has not closed by then (unless
/// a max-age grace is configured, which applies instead).
pub(crate) const IDLE_CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// After a BDP sample under a quarter of the window, no new sample starts for this long.
/// grpc-go samples again on the next DATA frame after every ACK, which on a connection of
/// small calls means one PING (and a separate write) per call; a window that is far from
/// full cannot grow anyway, so the estimator rests a little. A bulk transfer that starts
/// meanwhile is sampled at most this much later.
pub(crate) const QUIET_AFTER_SMALL_SAMPLE: Duration = Duration::from_millis(50);

/// Keepalive PINGs (client: gRFC A8; server: A9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Keepalive {
    /// A PING is sent after the connection has been silent (nothing read) this long.
    pub(crate) time: Duration,
    /// A PING not answered within this closes the connection.
    pub(crate) timeout: Duration,
    /// Whether PINGs are sent while no call is open (a server always sends them).
    pub(crate) without_calls: bool,
}

/// What one connection's [`Engine`] enforces.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rules {
    /// Keepalive PINGs.
    pub(crate) keepalive: Option<Keepalive>,
    /// Drain (GOAWAY) a connection without calls for this long.
    pub(crate) max_idle: Option<Duration>,
    /// Drain a connection this old, give or take `age_jitter` (a fraction: grpc-go
    /// spreads it by +-10% so that connections made together do not drain together).
    pub(crate) max_age: Option<Duration>,
    /// See `max_age`.
    pub(crate) age_jitter: f64,
    /// After a max-age (or idle) drain, close the connection after this.
    pub(crate) age_grace: Option<Duration>,
    /// Adaptive windows: the configured stream window they start from (and never go
    /// below); `None` without adaptive windows.
    pub(crate) bdp_window: Option<u32>,
}

/// Why the connection drains (GOAWAY, then the grace period).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Drain {
    /// Max connection age reached.
    MaxAge,
    /// Max connection idle reached.
    Idle,
}

/// Why the connection closes now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Close {
    /// A keepalive PING went unanswered for the keepalive timeout.
    KeepaliveTimeout,
    /// The grace period after a max-age or idle drain is over (calls still open are
    /// cancelled).
    GraceOver,
    /// An abrupt GOAWAY was sent and h2 has not closed the connection in time.
    AbruptTimeout,
}

/// What the driver does when [`Engine::poll_timer`] asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Send a keepalive PING (if it cannot be sent, tell [`Engine::pings_failed`]).
    SendPing,
    /// Send GOAWAY and let the calls finish: the connection takes no new ones.
    Drain(Drain),
    /// Close the connection.
    Close(Close),
}

/// The PING in flight (h2 allows one user PING at a time): when it was sent and whom its
/// answer serves. A BDP PING's answer also counts as a keepalive answer.
#[derive(Debug, Clone, Copy)]
struct PingOut {
    sent: Instant,
    bdp: bool,
    keepalive: bool,
}

/// What a BDP sample does ([`Engine::bdp_sample`], [`bdp_grow`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BdpGrowth {
    /// The new stream window (the connection window is
    /// [`super::bdp::connection_window`] of it), when it grew.
    pub(crate) window: Option<u32>,
    /// Start no new sample before this ([`BdpSampler::quiet_until`]).
    pub(crate) quiet_until: Option<Instant>,
}

/// The timers and PING bookkeeping of one connection (see the module doc). Its
/// [`Rules`] are not part of it: the driver passes them to each call (a server keeps one
/// copy for all its connections, and this state lives in every connection's task).
#[derive(Debug)]
pub(crate) struct Engine {
    /// When the next keepalive PING is due or, while `awaiting_pong`, by when the PING
    /// sent must be answered. Recomputed from the last read when it comes.
    keepalive_at: Option<Instant>,
    awaiting_pong: bool,
    ping_out: Option<PingOut>,
    /// Adaptive windows: the estimate.
    bdp: Option<Estimator>,
    /// When max age drains the connection or, while `in_grace`, when its grace ends.
    age_at: Option<Instant>,
    in_grace: bool,
    /// When to check next whether the connection has been idle for max idle.
    idle_check: Option<Instant>,
    abrupt_at: Option<Instant>,
    going_away: bool,
}

impl Engine {
    /// The rules of a connection that started at `now`; `can_ping`: the driver holds
    /// the connection's PING handle (without it, no keepalive and no BDP).
    pub(crate) fn new(rules: &Rules, now: Instant, can_ping: bool) -> Self {
        let after = |d: Option<Duration>| d.map(|d| instant_after(now, d));
        let max_age = rules
            .max_age
            .map(|age| super::jitter(age, rules.age_jitter));
        Engine {
            keepalive_at: after(rules.keepalive.filter(|_| can_ping).map(|k| k.time)),
            awaiting_pong: false,
            ping_out: None,
            bdp: rules.bdp_window.filter(|_| can_ping).map(Estimator::new),
            age_at: after(max_age),
            in_grace: false,
            idle_check: after(rules.max_idle),
            abrupt_at: None,
            going_away: false,
        }
    }

    /// Whether adaptive windows are on (sample the BDP: [`Engine::start_bdp_ping`]).
    pub(crate) fn samples_bdp(&self) -> bool {
        self.bdp.is_some()
    }

    /// Whether keepalive PINGs are wanted with `calls` open.
    fn keepalive_wanted(rules: &Rules, calls: usize) -> bool {
        rules
            .keepalive
            .is_some_and(|k| k.without_calls || calls > 0)
    }

    /// When [`Engine::poll_timer`] has something to do next with `calls` open; `None`:
    /// nothing until something else happens (a client keepalive without calls is
    /// dormant until a call opens).
    pub(crate) fn next_deadline(&self, rules: &Rules, calls: usize) -> Option<Instant> {
        let keepalive = self
            .keepalive_at
            .filter(|_| self.awaiting_pong || Self::keepalive_wanted(rules, calls));
        let grace = self.age_at.filter(|_| self.in_grace);
        let candidates = if self.going_away {
            [keepalive, grace, self.abrupt_at, None]
        } else {
            [keepalive, self.age_at, self.idle_check, self.abrupt_at]
        };
        candidates.into_iter().flatten().min()
    }

    /// What is due at `now`: call until it answers `None`. `last_read` is when the
    /// last byte was read from the peer, `calls` how many calls are open, `idle_since`
    /// since when none is (`None` while some are).
    pub(crate) fn poll_timer(
        &mut self,
        rules: &Rules,
        now: Instant,
        last_read: Instant,
        calls: usize,
        idle_since: Option<Instant>,
    ) -> Option<Action> {
        let due = |at: Option<Instant>| at.is_some_and(|at| at <= now);
        if due(self.abrupt_at) {
            self.abrupt_at = None;
            return Some(Action::Close(Close::AbruptTimeout));
        }
        if self.in_grace && due(self.age_at) {
            self.age_at = None;
            return Some(Action::Close(Close::GraceOver));
        }
        if self.awaiting_pong && due(self.keepalive_at) {
            self.keepalive_at = None;
            self.awaiting_pong = false;
            return Some(Action::Close(Close::KeepaliveTimeout));
        }
        if let Some(k) = rules.keepalive {
            if !self.awaiting_pong && due(self.keepalive_at) && Self::keepalive_wanted(rules, calls)
            {
                let at = instant_after(last_read, k.time);
                if at > now {
                    self.keepalive_at = Some(at);
                } else {
                    // No new PING is due while one is out; its answer re-arms it.
                    self.keepalive_at = Some(instant_after(now, k.timeout));
                    self.awaiting_pong = true;
                    match self.ping_out.as_mut() {
                        // A BDP PING is out: its answer counts.
                        Some(out) => out.keepalive = true,
                        None => {
                            self.ping_out = Some(PingOut {
                                sent: now,
                                bdp: false,
                                keepalive: true,
                            });
                            return Some(Action::SendPing);
                        }
                    }
                }
            }
        }
        if self.going_away {
            return None;
        }
        if due(self.age_at) {
            self.going_away = true;
            self.age_at = rules.age_grace.map(|g| instant_after(now, g));
            self.in_grace = true;
            return Some(Action::Drain(Drain::MaxAge));
        }
        if due(self.idle_check) {
            let idle = rules.max_idle.unwrap_or(Duration::MAX);
            match idle_since {
                Some(since) if instant_after(since, idle) <= now => {
                    self.idle_check = None;
                    self.going_away = true;
                    // A peer that never acks the GOAWAY's PING must not hold the
                    // connection open forever.
                    let grace = rules.age_grace.unwrap_or(IDLE_CLOSE_TIMEOUT);
                    self.age_at = Some(instant_after(now, grace));
                    self.in_grace = true;
                    return Some(Action::Drain(Drain::Idle));
                }
                Some(since) => self.idle_check = Some(instant_after(since, idle)),
                None => self.idle_check = Some(instant_after(now, idle)),
            }
        }
        None
    }

    /// The connection is going away for another reason (the server's shutdown, a
    /// GOAWAY sent for a violation): max age and idle no longer apply, keepalive and
    /// the grace of a drain already under way still do.
    pub(crate) fn go_away(&mut self) {
        self.going_away = true;
    }

    /// Whether the connection is going away (drained, or [`Engine::go_away`]).
    pub(crate) fn is_going_away(&self) -> bool {
        self.going_away
    }

    /// An abrupt GOAWAY was sent at `now`: close if h2 has not within
    /// [`ABRUPT_CLOSE_TIMEOUT`].
    pub(crate) fn close_abruptly(&mut self, now: Instant) {
        self.going_away = true;
        self.abrupt_at = Some(instant_after(now, ABRUPT_CLOSE_TIMEOUT));
    }

    /// Whether an abrupt close is under way ([`Engine::close_abruptly`]).
    pub(crate) fn is_closing_abruptly(&self) -> bool {
        self.abrupt_at.is_some()
    }

    /// Whether a PING is in flight (its answer is awaited with
    /// [`Engine::on_pong`]).
    pub(crate) fn ping_in_flight(&self) -> bool {
        self.ping_out.is_some()
    }

    /// Whether a BDP PING may be sent now (adaptive windows on, no PING in flight).
    pub(crate) fn wants_bdp_ping(&self) -> bool {
        self.bdp.is_some() && self.ping_out.is_none()
    }

    /// A BDP sample began (DATA arrived while none ran): returns whether to send its
    /// PING now; the answer is awaited with [`Engine::on_pong`].
    pub(crate) fn start_bdp_ping(&mut self, now: Instant) -> bool {
        if !self.wants_bdp_ping() {
            return false;
        }
        self.ping_out = Some(PingOut {
            sent: now,
            bdp: true,
            keepalive: false,
        });
        true
    }

    /// A PING could not be sent, or its answer failed: the connection is ending, no
    /// more PINGs of either kind.
    pub(crate) fn pings_failed(&mut self) {
        self.ping_out = None;
        self.bdp = None;
        self.keepalive_at = None;
        self.awaiting_pong = false;
    }

    /// The PING in flight was answered at `now`: a keepalive waits for the next silence
    /// (from `last_read`); returns the round-trip time when it was a BDP PING (feed the
    /// sample to [`Engine::bdp_sample`]).
    pub(crate) fn on_pong(
        &mut self,
        rules: &Rules,
        now: Instant,
        last_read: Instant,
    ) -> Option<Duration> {
        let out = self.ping_out.take()?;
        if out.keepalive {
            self.awaiting_pong = false;
            self.keepalive_at = rules.keepalive.map(|k| instant_after(last_read, k.time));
        }
        (out.bdp && self.bdp.is_some()).then(|| now.saturating_duration_since(out.sent))
    }

    /// Feeds a BDP sample (`bytes` received during one PING round trip of `rtt`).
    pub(crate) fn bdp_sample(&mut self, now: Instant, bytes: u64, rtt: Duration) -> BdpGrowth {
        match self.bdp.as_mut() {
            Some(est) => bdp_grow(est, now, bytes, rtt),
            None => BdpGrowth {
                window: None,
                quiet_until: None,
            },
        }
    }
}

/// Feeds a BDP sample to the estimator: the new window when it grew (logged), and a rest
/// of [`QUIET_AFTER_SMALL_SAMPLE`] after a sample under a quarter of the window.
pub(crate) fn bdp_grow(est: &mut Estimator, now: Instant, bytes: u64, rtt: Duration) -> BdpGrowth {
    let quiet_until =
        (bytes < u64::from(est.window() / 4)).then(|| instant_after(now, QUIET_AFTER_SMALL_SAMPLE));
    let window = est.on_sample(bytes, rtt);
    if let Some(window) = window {
        tracing::debug!(
            window,
            sample = bytes,
            rtt_us = rtt.as_micros() as u64,
            "BDP estimate grew; raising flow-control windows"
        );
    }
    BdpGrowth {
        window,
        quiet_until,
    }
}

/// Server-side ping enforcement (gRFC A8 and A9, as grpc-go's `handlePing`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PingPolicy {
    /// Pings closer together than this are strikes (while calls are active).
    pub(crate) min_time: Duration,
    /// Whether pings without active calls are allowed at `min_time`; if not, a ping while
    /// idle is a strike unless 2 hours passed since the last one (as grpc-go).
    pub(crate) permit_without_calls: bool,
}

/// What [`PingStrikes::on_ping`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The PING is fine (or a strike within the allowance).
    Allowed,
    /// More than [`MAX_PING_STRIKES`] strikes: GOAWAY(ENHANCE_YOUR_CALM,
    /// "too_many_pings"). Answered once per connection.
    TooManyPings,
}

/// Ping-strike accounting of one server connection.
#[derive(Debug)]
pub(crate) struct PingStrikes {
    policy: PingPolicy,
    strikes: u32,
    last_ping_at: Option<Instant>,
    tripped: bool,
}

impl PingStrikes {
    /// No strikes yet.
    pub(crate) fn new(policy: PingPolicy) -> Self {
        PingStrikes {
            policy,
            strikes: 0,
            last_ping_at: None,
            tripped: false,
        }
    }

    /// We sent HEADERS or DATA: strikes start afresh (grpc-go resets `pingStrikes` when
    /// it writes either, so a client's BDP PINGs after our DATA are never strikes).
    pub(crate) fn reset(&mut self) {
        self.strikes = 0;
        self.last_ping_at = None;
    }

    /// A PING (not an ACK) arrived at `now`, with `calls_open` or not.
    pub(crate) fn on_ping(&mut self, now: Instant, calls_open: bool) -> Verdict {
        let allowed = if !calls_open && !self.policy.permit_without_calls {
            PING_WITHOUT_CALLS_MIN
        } else {
            self.policy.min_time
        };
        if let Some(last) = self.last_ping_at {
            if instant_after(last, allowed) > now {
                self.strikes += 1;
            }
        }
        self.last_ping_at = Some(now);
        if self.strikes > MAX_PING_STRIKES && !self.tripped {
            self.tripped = true;
            return Verdict::TooManyPings;
        }
        Verdict::Allowed
    }

    /// Whether the policy was violated.
    #[cfg(test)]
    pub(crate) fn tripped(&self) -> bool {
        self.tripped
    }
}

/// When BDP samples run: the first DATA received while none runs starts one (and its
/// PING), the DATA bytes received until the PING's ACK are the sample.
#[derive(Debug, Default)]
pub(crate) struct BdpSampler {
    /// Sampling is on for this connection.
    enabled: bool,
    /// A BDP PING is wanted or in flight; DATA bytes received meanwhile are counted.
    sampling: bool,
    /// DATA payload bytes received since the current sample started.
    sample: u64,
    /// No new sample starts before this (after a sample far below the window).
    quiet_until: Option<Instant>,
}

impl BdpSampler {
    /// Turns sampling on.
    pub(crate) fn enable(&mut self) {
        self.enabled = true;
    }

    /// Counts a DATA frame of `len` payload bytes received at `now`; returns whether it
    /// started a sample (send a BDP PING).
    pub(crate) fn on_data(&mut self, now: Instant, len: usize) -> bool {
        if !self.enabled || len == 0 {
            return false;
        }
        if self.sampling {
            self.sample = self.sample.saturating_add(len as u64);
            return false;
        }
        if self.quiet_until.is_some_and(|t| now < t) {
            return false;
        }
        self.quiet_until = None;
        self.sampling = true;
        self.sample = len as u64;
        true
    }

    /// Ends the running sample (its PING was acked): the DATA bytes received since it
    /// started. The next DATA frame starts a new one.
    pub(crate) fn take(&mut self) -> u64 {
        self.sampling = false;
        std::mem::take(&mut self.sample)
    }

    /// Starts no new sample before `until`.
    pub(crate) fn quiet_until(&mut self, until: Instant) {
        self.quiet_until = Some(until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn server_rules() -> Rules {
        Rules {
            keepalive: Some(Keepalive {
                time: 10 * S,
                timeout: 2 * S,
                without_calls: true,
            }),
            ..Rules::default()
        }
    }

    /// Runs the timer at `now`: every action due.
    fn run(
        e: &mut Engine,
        rules: &Rules,
        now: Instant,
        last_read: Instant,
        calls: usize,
    ) -> Vec<Action> {
        let idle_since = (calls == 0).then_some(last_read);
        std::iter::from_fn(|| e.poll_timer(rules, now, last_read, calls, idle_since)).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn keepalive_pings_after_silence_and_closes_when_unanswered() {
        let t0 = Instant::now();
        let rules = server_rules();
        let mut e = Engine::new(&rules, t0, true);
        assert_eq!(e.next_deadline(&rules, 0), Some(t0 + 10 * S));
        // Something was read at 5 s: the PING moves to 15 s.
        assert_eq!(run(&mut e, &rules, t0 + 10 * S, t0 + 5 * S, 0), vec![]);
        assert_eq!(e.next_deadline(&rules, 0), Some(t0 + 15 * S));
        assert_eq!(
            run(&mut e, &rules, t0 + 15 * S, t0 + 5 * S, 0),
            vec![Action::SendPing]
        );
        assert!(e.ping_in_flight());
        // Answered: the next one is due 10 s after the last read.
        assert_eq!(e.on_pong(&rules, t0 + 16 * S, t0 + 16 * S), None);
        assert_eq!(e.next_deadline(&rules, 0), Some(t0 + 26 * S));
        assert_eq!(
            run(&mut e, &rules, t0 + 26 * S, t0 + 16 * S, 0),
            vec![Action::SendPing]
        );
        // Not answered within the timeout: close.
        assert_eq!(e.next_deadline(&rules, 0), Some(t0 + 28 * S));
        assert_eq!(run(&mut e, &rules, t0 + 27 * S, t0 + 16 * S, 0), vec![]);
        assert_eq!(
            run(&mut e, &rules, t0 + 28 * S, t0 + 16 * S, 0),
            vec![Action::Close(Close::KeepaliveTimeout)]
        );
        assert_eq!(e.next_deadline(&rules, 0), None);
    }

    #[tokio::test(start_paused = true)]
    async fn client_keepalive_without_calls_is_dormant_and_pings_first_on_a_call() {
        let t0 = Instant::now();
        let rules = Rules {
            keepalive: Some(Keepalive {
                time: 10 * S,
                timeout: 2 * S,
                without_calls: false,
            }),
            ..Rules::default()
        };
        let mut e = Engine::new(&rules, t0, true);
        // No call: nothing to wake up for, and nothing due even after the time.
        assert_eq!(e.next_deadline(&rules, 0), None);
        assert_eq!(run(&mut e, &rules, t0 + 60 * S, t0, 0), vec![]);
        // A call opens after a long silence: PING at once.
        assert_eq!(e.next_deadline(&rules, 1), Some(t0 + 10 * S));
        assert_eq!(
            run(&mut e, &rules, t0 + 60 * S, t0, 1),
            vec![Action::SendPing]
        );
        // The timeout runs even if the call ends meanwhile.
        assert_eq!(e.next_deadline(&rules, 0), Some(t0 + 62 * S));
        // With the keepalive on without calls, it pings with none open.
        let rules = Rules {
            keepalive: Some(Keepalive {
                time: 10 * S,
                timeout: 2 * S,
                without_calls: true,
            }),
            ..Rules::default()
        };
        let mut e = Engine::new(&rules, t0, true);
        assert_eq!(
            run(&mut e, &rules, t0 + 10 * S, t0, 0),
            vec![Action::SendPing]
        );
        // No PING handle: no keepalive.
        let e = Engine::new(&server_rules(), t0, false);
        assert_eq!(e.next_deadline(&rules, 0), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_bdp_ping_in_flight_answers_for_keepalive() {
        let t0 = Instant::now();
        let rules = Rules {
            bdp_window: Some(65_535),
            ..server_rules()
        };
        let mut e = Engine::new(&rules, t0, true);
        assert!(e.start_bdp_ping(t0 + 9 * S));
        assert!(!e.start_bdp_ping(t0 + 9 * S), "one PING at a time");
        // Keepalive due while the BDP PING is out: no second PING, its answer counts.
        assert_eq!(run(&mut e, &rules, t0 + 10 * S, t0, 1), vec![]);
        assert_eq!(e.on_pong(&rules, t0 + 11 * S, t0 + 11 * S), Some(2 * S));
        assert_eq!(e.next_deadline(&rules, 1), Some(t0 + 21 * S));
        // A failed PING ends both.
        assert!(e.start_bdp_ping(t0 + 12 * S));
        e.pings_failed();
        assert!(!e.wants_bdp_ping());
        assert_eq!(e.next_deadline(&rules, 1), None);
    }

    #[tokio::test(start_paused = true)]
    async fn bdp_samples_grow_the_window_and_small_ones_rest() {
        let t0 = Instant::now();
        let rules = Rules {
            bdp_window: Some(65_535),
            ..Rules::default()
        };
        let mut e = Engine::new(&rules, t0, true);
        let rtt = Duration::from_millis(40);
        // A window-limited sample doubles the window.
        assert_eq!(
            e.bdp_sample(t0, 65_535, rtt),
            BdpGrowth {
                window: Some(131_070),
                quiet_until: None
            }
        );
        // A sample under a quarter of the window: no growth, and a rest.
        assert_eq!(
            e.bdp_sample(t0, 1_000, rtt),
            BdpGrowth {
                window: None,
                quiet_until: Some(t0 + QUIET_AFTER_SMALL_SAMPLE)
            }
        );
        // The sampler: DATA starts a sample, counts until taken, rests when told.
        let mut s = BdpSampler::default();
        assert!(!s.on_data(t0, 10), "off until enabled");
        s.enable();
        assert!(s.on_data(t0, 10));
        assert!(!s.on_data(t0, 5));
        assert_eq!(s.take(), 15);
        s.quiet_until(t0 + QUIET_AFTER_SMALL_SAMPLE);
        assert!(!s.on_data(t0 + Duration::from_millis(49), 10));
        assert_eq!(s.take(), 0);
        assert!(s.on_data(t0 + QUIET_AFTER_SMALL_SAMPLE, 7));
        assert_eq!(s.take(), 7);
    }

    #[tokio::test(start_paused = true)]
    async fn max_age_drains_then_the_grace_closes() {
        let t0 = Instant::now();
        let rules = Rules {
            max_age: Some(30 * S),
            age_grace: Some(5 * S),
            ..Rules::default()
        };
        let mut e = Engine::new(&rules, t0, true);
        assert_eq!(e.next_deadline(&rules, 3), Some(t0 + 30 * S));
        assert_eq!(
            run(&mut e, &rules, t0 + 30 * S, t0 + 29 * S, 3),
            vec![Action::Drain(Drain::MaxAge)]
        );
        assert!(e.is_going_away());
        assert_eq!(e.next_deadline(&rules, 3), Some(t0 + 35 * S));
        assert_eq!(
            run(&mut e, &rules, t0 + 35 * S, t0 + 29 * S, 3),
            vec![Action::Close(Close::GraceOver)]
        );
        assert_eq!(e.next_deadline(&rules, 3), None);
        // Without a grace, calls run to their end.
        let rules = Rules {
            max_age: Some(30 * S),
            ..Rules::default()
        };
        let mut e = Engine::new(&rules, t0, true);
        assert_eq!(
            run(&mut e, &rules, t0 + 30 * S, t0, 1),
            vec![Action::Drain(Drain::MaxAge)]
        );
        assert_eq!(e.next_deadline(&rules, 1), None);
    }

    #[tokio::test(start_paused = true)]
    async fn max_idle_counts_from_the_last_call() {
        let t0 = Instant::now();
        let rules = Rules {
            max_idle: Some(10 * S),
            ..Rules::default()
        };
        let mut e = Engine::new(&rules, t0, true);
        assert_eq!(e.next_deadline(&rules, 0), Some(t0 + 10 * S));
        // Calls open at the check: look again a whole idle time later.
        assert_eq!(e.poll_timer(&rules, t0 + 10 * S, t0, 2, None), None);
        assert_eq!(e.next_deadline(&rules, 0), Some(t0 + 20 * S));
        // The last call ended at 15 s: idle from then on.
        let since = Some(t0 + 15 * S);
        assert_eq!(e.poll_timer(&rules, t0 + 20 * S, t0, 0, since), None);
        assert_eq!(e.next_deadline(&rules, 0), Some(t0 + 25 * S));
        assert_eq!(
            e.poll_timer(&rules, t0 + 25 * S, t0, 0, since),
            Some(Action::Drain(Drain::Idle))
        );
        // A peer that never finishes the drain is closed after the idle close timeout.
        assert_eq!(
            e.next_deadline(&rules, 0),
            Some(t0 + 25 * S + IDLE_CLOSE_TIMEOUT)
        );
        assert_eq!(
            e.poll_timer(&rules, t0 + 25 * S + IDLE_CLOSE_TIMEOUT, t0, 0, since),
            Some(Action::Close(Close::GraceOver))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn going_away_stops_age_and_idle_and_an_abrupt_close_is_bounded() {
        let t0 = Instant::now();
        let rules = Rules {
            max_age: Some(30 * S),
            max_idle: Some(10 * S),
            ..server_rules()
        };
        let mut e = Engine::new(&rules, t0, true);
        e.go_away();
        // Keepalive still runs; age and idle do not.
        assert_eq!(e.next_deadline(&rules, 0), Some(t0 + 10 * S));
        assert_eq!(
            run(&mut e, &rules, t0 + 40 * S, t0, 0),
            vec![Action::SendPing]
        );
        assert_eq!(e.on_pong(&rules, t0 + 41 * S, t0 + 41 * S), None);
        assert!(!e.is_closing_abruptly());
        e.close_abruptly(t0 + 41 * S);
        assert!(e.is_closing_abruptly());
        assert_eq!(
            e.next_deadline(&rules, 0),
            Some(t0 + 41 * S + ABRUPT_CLOSE_TIMEOUT)
        );
        assert_eq!(
            run(&mut e, &rules, t0 + 41 * S + ABRUPT_CLOSE_TIMEOUT, t0, 0),
            vec![Action::Close(Close::AbruptTimeout)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn ping_strikes() {
        let t0 = Instant::now();
        let policy = PingPolicy {
            min_time: 60 * S,
            permit_without_calls: false,
        };
        // With calls: pings closer than min_time are strikes; the third strike trips.
        let mut p = PingStrikes::new(policy);
        assert_eq!(p.on_ping(t0, true), Verdict::Allowed, "the first is free");
        assert_eq!(p.on_ping(t0 + S, true), Verdict::Allowed);
        assert_eq!(p.on_ping(t0 + 2 * S, true), Verdict::Allowed);
        assert_eq!(p.on_ping(t0 + 3 * S, true), Verdict::TooManyPings);
        assert!(p.tripped());
        assert_eq!(p.on_ping(t0 + 4 * S, true), Verdict::Allowed, "once");
        // Pings min_time apart never are; our HEADERS or DATA reset the count.
        let mut p = PingStrikes::new(policy);
        for i in 0..10 {
            assert_eq!(p.on_ping(t0 + i * 60 * S, true), Verdict::Allowed);
        }
        let mut p = PingStrikes::new(policy);
        for i in 0..10 {
            p.reset();
            assert_eq!(p.on_ping(t0 + i * S, true), Verdict::Allowed);
        }
        // Without calls, two hours apart unless permitted.
        let mut p = PingStrikes::new(policy);
        for i in 0..3 {
            assert_eq!(p.on_ping(t0 + i * 60 * 60 * S, false), Verdict::Allowed);
        }
        assert_eq!(
            p.on_ping(t0 + 3 * 60 * 60 * S, false),
            Verdict::TooManyPings
        );
        let mut p = PingStrikes::new(PingPolicy {
            permit_without_calls: true,
            ..policy
        });
        for i in 0..10 {
            assert_eq!(p.on_ping(t0 + i * 60 * S, false), Verdict::Allowed);
        }
    }
}
