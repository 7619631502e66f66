//! `round_robin`: one subchannel per address, all connected, calls rotated over the
//! READY ones. A subchannel that goes IDLE (connection lost, or backoff over after a
//! failure) is reconnected at once; a lost connection or a failure also asks for
//! re-resolution. The channel is READY while any subchannel is; CONNECTING while none is
//! READY and some are still trying; TRANSIENT_FAILURE once all have failed, and then
//! sticky (it stays TRANSIENT_FAILURE until one is READY again, as gRFC A61 describes).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{
    ChannelController, FailPicker, LbPolicy, LbPolicyBuilder, LbUpdate, Pick, PickInfo, PickResult,
    Picker, QueuePicker,
};
use crate::client::connectivity::ConnectivityState;
use crate::client::resolver::ResolvedAddress;
use crate::client::subchannel::{Subchannel, SubchannelState};
use crate::status::Status;
use crate::transport::random_unit;

/// Builds `round_robin` policies.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoundRobinBuilder;

impl LbPolicyBuilder for RoundRobinBuilder {
    fn name(&self) -> &'static str {
        "round_robin"
    }

    fn build(&self) -> Box<dyn LbPolicy> {
        Box::new(RoundRobin::default())
    }
}

#[derive(Default)]
struct RoundRobin {
    /// One per address, in address order.
    subchannels: Vec<Subchannel>,
    states: HashMap<u64, ConnectivityState>,
    state: Option<ConnectivityState>,
    /// The READY set last published (to publish only on change).
    published: Vec<u64>,
    last_error: Option<String>,
}

/// Rotates over the READY subchannels, starting at a random one.
struct RoundRobinPicker {
    ready: Vec<Subchannel>,
    next: AtomicUsize,
}

impl Picker for RoundRobinPicker {
    fn pick(&self, _: &PickInfo<'_>) -> PickResult {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.ready.len();
        PickResult::Pick(Pick::new(self.ready[i].clone()))
    }
}

impl RoundRobin {
    fn state_of(&self, sc: &Subchannel) -> ConnectivityState {
        self.states
            .get(&sc.id())
            .copied()
            .unwrap_or(ConnectivityState::Idle)
    }

    /// Recomputes the aggregate state and publishes a picker when it (or the READY set)
    /// changed.
    fn update(&mut self, cx: &mut dyn ChannelController) {
        let ready: Vec<Subchannel> = self
            .subchannels
            .iter()
            .filter(|s| self.state_of(s) == ConnectivityState::Ready)
            .cloned()
            .collect();
        let ids: Vec<u64> = ready.iter().map(|s| s.id()).collect();
        if !ready.is_empty() {
            if self.state == Some(ConnectivityState::Ready) && ids == self.published {
                return;
            }
            let start = (random_unit() * ready.len() as f64) as usize;
            self.state = Some(ConnectivityState::Ready);
            self.published = ids;
            cx.update_picker(
                ConnectivityState::Ready,
                Arc::new(RoundRobinPicker {
                    ready,
                    next: AtomicUsize::new(start),
                }),
            );
            return;
        }
        self.published.clear();
        let trying = self.subchannels.iter().any(|s| {
            matches!(
                self.state_of(s),
                ConnectivityState::Connecting | ConnectivityState::Idle
            )
        });
        let sticky = self.state == Some(ConnectivityState::TransientFailure);
        if trying && !sticky {
            if self.state != Some(ConnectivityState::Connecting) {
                self.state = Some(ConnectivityState::Connecting);
                cx.update_picker(ConnectivityState::Connecting, Arc::new(QueuePicker));
            }
            return;
        }
        self.state = Some(ConnectivityState::TransientFailure);
        let why = self.last_error.as_deref().unwrap_or("all addresses failed");
        cx.update_picker(
            ConnectivityState::TransientFailure,
            Arc::new(FailPicker(Status::unavailable(format!(
                "connection failed: {why}"
            )))),
        );
    }
}

impl LbPolicy for RoundRobin {
    fn resolver_update(
        &mut self,
        update: LbUpdate,
        cx: &mut dyn ChannelController,
    ) -> Result<(), String> {
        let mut addrs: Vec<ResolvedAddress> = Vec::with_capacity(update.addresses.len());
        for a in update.addresses {
            if !addrs.contains(&a) {
                addrs.push(a);
            }
        }
        let old = std::mem::take(&mut self.subchannels);
        let mut fresh = Vec::new();
        self.subchannels = addrs
            .iter()
            .map(|a| match old.iter().find(|s| s.address() == a) {
                Some(s) => s.clone(),
                None => {
                    let s = cx.new_health_checked_subchannel(a);
                    fresh.push(s.clone());
                    s
                }
            })
            .collect();
        for s in &old {
            if !self.subchannels.contains(s) {
                // Removed by the resolver: no new calls; open ones finish.
                s.shutdown();
                self.states.remove(&s.id());
            }
        }
        for s in &fresh {
            s.connect();
        }
        if self.subchannels.is_empty() {
            self.last_error = Some("name resolver returned no addresses".to_string());
            self.state = Some(ConnectivityState::TransientFailure);
            self.update(cx);
            return Err("empty address list".to_string());
        }
        self.update(cx);
        Ok(())
    }

    fn resolver_error(&mut self, error: String, cx: &mut dyn ChannelController) {
        if self.subchannels.is_empty() || self.state == Some(ConnectivityState::TransientFailure) {
            self.last_error = Some(format!("name resolution failed: {error}"));
            self.state = Some(ConnectivityState::TransientFailure);
            self.update(cx);
        }
    }

    fn subchannel_update(
        &mut self,
        sc: &Subchannel,
        state: &SubchannelState,
        cx: &mut dyn ChannelController,
    ) {
        if !self.subchannels.contains(sc) {
            return;
        }
        let before = self.states.insert(sc.id(), state.state);
        match state.state {
            ConnectivityState::Idle => {
                sc.connect();
                if before == Some(ConnectivityState::Ready) {
                    cx.request_resolution();
                }
            }
            ConnectivityState::TransientFailure => {
                if let Some(e) = &state.error {
                    self.last_error = Some(e.message().to_string());
                }
                cx.request_resolution();
            }
            _ => {}
        }
        // A subchannel back in CONNECTING after a failure does not end sticky failure.
        self.update(cx);
    }

    fn exit_idle(&mut self, _: &mut dyn ChannelController) {
        for s in &self.subchannels {
            s.connect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{st, update, TestCx};
    use super::super::LbConfig;
    use super::*;
    use ConnectivityState::*;

    fn picks(cx: &TestCx, n: usize) -> Vec<String> {
        let mut v: Vec<String> = (0..n).map(|_| cx.pick()).collect();
        v.sort();
        v
    }

    #[test]
    fn connects_to_all_and_rotates_over_the_ready_ones() {
        let (mut p, mut cx) = (RoundRobin::default(), TestCx::default());
        p.resolver_update(update(&[1, 2, 3], LbConfig::default()), &mut cx)
            .unwrap();
        assert!(
            [1, 2, 3]
                .iter()
                .all(|port| cx.sc(*port).connect_calls() == 1),
            "all at once"
        );
        assert_eq!((cx.state(), cx.pick()), (Some(Connecting), "queue".into()));
        p.subchannel_update(&cx.sc(1), &st(Ready), &mut cx);
        assert_eq!((cx.state(), cx.pick()), (Some(Ready), "1".into()));
        p.subchannel_update(&cx.sc(3), &st(Ready), &mut cx);
        assert_eq!(picks(&cx, 4), ["1", "1", "3", "3"]);
        // A lost connection: out of the rotation, reconnected at once, re-resolution asked.
        p.subchannel_update(&cx.sc(1), &st(Idle), &mut cx);
        assert_eq!(picks(&cx, 2), ["3", "3"]);
        assert_eq!(cx.sc(1).connect_calls(), 2);
        assert_eq!(cx.resolutions, 1);
    }

    #[test]
    fn all_failed_is_sticky_transient_failure_until_one_is_ready() {
        let (mut p, mut cx) = (RoundRobin::default(), TestCx::default());
        p.resolver_update(update(&[1, 2], LbConfig::default()), &mut cx)
            .unwrap();
        p.subchannel_update(&cx.sc(1), &st(TransientFailure), &mut cx);
        assert_eq!(cx.state(), Some(Connecting), "2 is still trying");
        p.subchannel_update(&cx.sc(2), &st(TransientFailure), &mut cx);
        assert_eq!(
            (cx.state(), cx.pick()),
            (Some(TransientFailure), "fail Unavailable".into())
        );
        p.subchannel_update(&cx.sc(2), &st(Idle), &mut cx);
        p.subchannel_update(&cx.sc(2), &st(Connecting), &mut cx);
        assert_eq!(cx.state(), Some(TransientFailure), "sticky");
        p.subchannel_update(&cx.sc(2), &st(Ready), &mut cx);
        assert_eq!((cx.state(), cx.pick()), (Some(Ready), "2".into()));
    }

    #[test]
    fn updates_keep_shared_addresses_and_drop_removed_ones() {
        let (mut p, mut cx) = (RoundRobin::default(), TestCx::default());
        p.resolver_update(update(&[1, 2], LbConfig::default()), &mut cx)
            .unwrap();
        let (one, two) = (cx.sc(1), cx.sc(2));
        p.subchannel_update(&one, &st(Ready), &mut cx);
        p.subchannel_update(&two, &st(Ready), &mut cx);
        p.resolver_update(update(&[2, 3, 2], LbConfig::default()), &mut cx)
            .unwrap();
        assert!(one.is_shut_down(), "removed");
        assert!(
            cx.sc(2) == two && !two.is_shut_down(),
            "kept, same subchannel"
        );
        assert_eq!(
            cx.created.len(),
            3,
            "one new subchannel (duplicates ignored)"
        );
        assert_eq!(picks(&cx, 2), ["2", "2"]);
        assert!(p
            .resolver_update(update(&[], LbConfig::default()), &mut cx)
            .is_err());
        assert_eq!(cx.pick(), "fail Unavailable");
    }
}
