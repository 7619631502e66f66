//! Adaptive flow-control windows: a bandwidth-delay-product (BDP) estimator driven by
//! PINGs, shared by client and server connections (as grpc-go's `bdp_estimator.go` and
//! hyper's `adaptive_window`).
//!
//! It owns the estimate, and the steps both sides' connection tasks take around it
//! ([`send_sample_ping`], [`on_pong`]); when a sample starts and what it does are
//! [`super::engine`]'s rules. When the first DATA frame arrives
//! while no sample runs, the [`super::frame_tap::Activity`] notifies the connection task,
//! which sends a PING; the DATA bytes received until the PING's ACK are the sample, the
//! time to the ACK the RTT. When a sample reaches 2/3 of the current window and the
//! bandwidth estimate grew, the window becomes `min(2 * sample, 16 MiB)`, and the
//! connection task sets the connection window (`set_target_window_size`) and the stream
//! window (`set_initial_window_size`, a SETTINGS frame). Windows only grow, never above
//! [`BDP_LIMIT`], so memory stays bounded. No DATA, no PINGs: an idle connection stays
//! quiet.

use std::num::NonZeroU32;
use std::time::Duration;

use tokio::time::Instant;

use super::engine::{Engine, Rules};
use super::frame_tap::Activity;

/// Upper bound of adaptive windows (16 MiB, as grpc-go's `bdpLimit`).
pub const BDP_LIMIT: u32 = 16 * 1024 * 1024;

/// The estimate (grpc-go's algorithm).
#[derive(Debug)]
pub(crate) struct Estimator {
    /// Current window (the estimated BDP); starts at the configured stream window. Not
    /// zero, so that an `Option<Estimator>` (kept in every server connection's task) is
    /// no larger than the estimator.
    bdp: NonZeroU32,
    /// Smoothed RTT in seconds.
    rtt: f64,
    samples: u32,
    /// Highest bandwidth seen (bytes/s).
    bw_max: f64,
}

impl Estimator {
    /// An estimator whose window starts at `initial` (it never goes below it).
    pub(crate) fn new(initial: u32) -> Self {
        Estimator {
            bdp: NonZeroU32::new(initial).unwrap_or(NonZeroU32::MIN),
            rtt: 0.0,
            samples: 0,
            bw_max: 0.0,
        }
    }

    /// The current window (the estimated BDP).
    pub(crate) fn window(&self) -> u32 {
        self.bdp.get()
    }

    /// Feeds one sample (`bytes` received during one PING round trip of `rtt`); returns
    /// the new window when it should grow.
    pub(crate) fn on_sample(&mut self, bytes: u64, rtt: Duration) -> Option<u32> {
        self.samples = self.samples.saturating_add(1);
        let r = rtt.as_secs_f64().max(1e-6);
        if self.samples <= 10 {
            // Bootstrap with the average of the first samples.
            self.rtt += (r - self.rtt) / f64::from(self.samples);
        } else {
            // Then heed the recent past more.
            self.rtt += (r - self.rtt) * 0.9;
        }
        // On a saturated link a sample is at most 1.5 times the real BDP.
        let bw = bytes as f64 / (self.rtt * 1.5);
        let grew = bw >= self.bw_max;
        if grew {
            self.bw_max = bw;
        }
        let bdp = self.bdp.get();
        if grew && bytes as f64 >= 0.66 * f64::from(bdp) && bdp < BDP_LIMIT {
            let new = bytes.saturating_mul(2).min(u64::from(BDP_LIMIT)) as u32;
            if let Some(new) = NonZeroU32::new(new).filter(|&n| n.get() > bdp) {
                self.bdp = new;
                return Some(new.get());
            }
        }
        None
    }
}

/// The window the driver should apply to the connection level: never below the configured
/// connection window.
pub(crate) fn connection_window(bdp: u32, configured: u32) -> u32 {
    bdp.max(configured)
}

/// A BDP sample began (the connection's [`Activity::bdp_wanted`] fired): sends its PING
/// on `ping` if the engine allows one now. A PING that cannot be sent means the
/// connection is ending: the engine stops pinging. (Both sides' connection tasks.)
pub(crate) fn send_sample_ping(engine: &mut Engine, ping: Option<&mut h2::PingPong>) {
    if let (Some(pp), true) = (ping, engine.start_bdp_ping(Instant::now())) {
        if pp.send_ping(h2::Ping::opaque()).is_err() {
            engine.pings_failed();
        }
    }
}

/// The answer to our PING in flight arrived (or failed: then the connection is ending,
/// `ping` is dropped and the engine stops pinging). Keepalive counts it; when it ended a
/// BDP sample, the sample is fed to the estimate. Returns the new stream window when the
/// estimate grew: the caller applies it with `set_initial_window_size`, and
/// [`connection_window`] of it with `set_target_window_size` (h2's client and server
/// connections share no trait for those two calls).
pub(crate) fn on_pong(
    engine: &mut Engine,
    rules: &Rules,
    activity: &Activity,
    ping: &mut Option<h2::PingPong>,
    pong: Result<h2::Pong, h2::Error>,
) -> Option<u32> {
    if pong.is_err() {
        *ping = None;
        engine.pings_failed();
        return None;
    }
    let now = Instant::now();
    let rtt = engine.on_pong(rules, now, activity.last_read())?;
    let growth = engine.bdp_sample(now, activity.take_bdp_sample(), rtt);
    if let Some(until) = growth.quiet_until {
        activity.quiet_bdp_until(until);
    }
    growth.window
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_on_full_samples_and_is_bounded() {
        let rtt = Duration::from_millis(40);
        let mut e = Estimator::new(65_535);
        // A sample well below 2/3 of the window changes nothing.
        assert_eq!(e.on_sample(10_000, rtt), None);
        // A window-limited sample doubles it.
        assert_eq!(e.on_sample(65_535, rtt), Some(131_070));
        assert_eq!(e.on_sample(131_070, rtt), Some(262_140));
        // Bandwidth fell: no growth even though the sample is large enough.
        assert_eq!(e.on_sample(200_000, Duration::from_millis(400)), None);
        let mut e = Estimator::new(1 << 20);
        let mut w = 1u64 << 20;
        for _ in 0..20 {
            if let Some(n) = e.on_sample(w, rtt) {
                w = u64::from(n);
            }
        }
        assert_eq!(w, u64::from(BDP_LIMIT));
        assert_eq!(e.on_sample(u64::from(BDP_LIMIT) * 4, rtt), None);
    }

    #[test]
    fn connection_window_never_below_configured() {
        assert_eq!(connection_window(1 << 20, 2 << 20), 2 << 20);
        assert_eq!(connection_window(8 << 20, 2 << 20), 8 << 20);
    }
}
