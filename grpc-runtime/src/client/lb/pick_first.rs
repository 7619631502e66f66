//! `pick_first` (gRFC A62): one connection at a time. Tries the addresses in order,
//! keeps the first that connects and sends every call to it. After a pass in which
//! every address failed it reports TRANSIENT_FAILURE and keeps retrying each address as
//! its backoff ends ("sticky" TRANSIENT_FAILURE: only READY ends it). When the chosen
//! connection is lost it goes IDLE and asks for re-resolution; the next call starts a
//! new pass from the first address. With `{"shuffleAddressList": true}` each resolver
//! update's list is shuffled first (to spread clients over backends).

use std::sync::Arc;

use tracing::debug;

use super::{
    ChannelController, FailPicker, LbConfig, LbPolicy, LbPolicyBuilder, LbUpdate, Pick, PickInfo,
    PickResult, Picker, QueuePicker,
};
use crate::client::connectivity::ConnectivityState;
use crate::client::resolver::ResolvedAddress;
use crate::client::subchannel::{Subchannel, SubchannelState};
use crate::status::Status;
use crate::transport::random_unit;

/// `pick_first`'s JSON config.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PickFirstConfig {
    /// `shuffleAddressList`: shuffle each resolver update's addresses.
    pub shuffle_address_list: bool,
}

/// Builds `pick_first` policies (the default policy).
#[derive(Debug, Clone, Copy, Default)]
pub struct PickFirstBuilder;

impl LbPolicyBuilder for PickFirstBuilder {
    fn name(&self) -> &'static str {
        "pick_first"
    }

    fn parse_config(&self, config: &serde_json::Value) -> Result<LbConfig, String> {
        let obj = config
            .as_object()
            .ok_or("pick_first config must be an object")?;
        let shuffle = match obj.get("shuffleAddressList") {
            None | Some(serde_json::Value::Null) => false,
            Some(serde_json::Value::Bool(b)) => *b,
            Some(_) => return Err("shuffleAddressList must be a boolean".to_string()),
        };
        Ok(LbConfig::new(PickFirstConfig {
            shuffle_address_list: shuffle,
        }))
    }

    fn build(&self) -> Box<dyn LbPolicy> {
        Box::new(PickFirst::default())
    }
}

#[derive(Default)]
struct PickFirst {
    addresses: Vec<ResolvedAddress>,
    /// Subchannels of the current pass, in address order.
    subchannels: Vec<Subchannel>,
    selected: Option<Subchannel>,
    /// The last state each subchannel reported (by id; new ones are IDLE).
    states: std::collections::HashMap<u64, ConnectivityState>,
    state: Option<ConnectivityState>,
    /// Index of the subchannel being tried in the first pass; `None` once the pass
    /// failed (sticky TRANSIENT_FAILURE) or none is running.
    trying: Option<usize>,
    last_error: Option<String>,
}

struct Selected(Subchannel);

impl Picker for Selected {
    fn pick(&self, _: &PickInfo<'_>) -> PickResult {
        PickResult::Pick(Pick::new(self.0.clone()))
    }
}

/// Fisher-Yates with the crate's jitter randomness.
pub(crate) fn shuffle<T>(v: &mut [T]) {
    for i in (1..v.len()).rev() {
        let j = ((random_unit() * (i + 1) as f64) as usize).min(i);
        v.swap(i, j);
    }
}

impl PickFirst {
    fn set(
        &mut self,
        state: ConnectivityState,
        picker: Arc<dyn Picker>,
        cx: &mut dyn ChannelController,
    ) {
        self.state = Some(state);
        cx.update_picker(state, picker);
    }

    fn fail_picker(&self) -> Arc<dyn Picker> {
        let why = self.last_error.as_deref().unwrap_or("all addresses failed");
        Arc::new(FailPicker(Status::unavailable(format!(
            "connection failed: {why}"
        ))))
    }

    /// Subchannels for the current address list, reusing those we have.
    fn rebuild(&mut self, cx: &mut dyn ChannelController) {
        let old = std::mem::take(&mut self.subchannels);
        self.subchannels = self
            .addresses
            .iter()
            .map(|a| {
                old.iter()
                    .find(|s| s.address() == a)
                    .cloned()
                    .unwrap_or_else(|| cx.new_subchannel(a))
            })
            .collect();
        let keep: std::collections::HashSet<u64> =
            self.subchannels.iter().map(|s| s.id()).collect();
        self.states.retain(|id, _| keep.contains(id));
    }

    /// Starts a pass over the addresses from the first.
    fn start_pass(&mut self, cx: &mut dyn ChannelController) {
        self.rebuild(cx);
        self.selected = None;
        if self.state != Some(ConnectivityState::TransientFailure) {
            self.set(ConnectivityState::Connecting, Arc::new(QueuePicker), cx);
        }
        self.try_from(0, cx);
    }

    /// Tries subchannel `i` (skipping those already failing); at the end of the list the
    /// pass failed.
    fn try_from(&mut self, mut i: usize, cx: &mut dyn ChannelController) {
        while let Some(sc) = self.subchannels.get(i) {
            match self
                .states
                .get(&sc.id())
                .copied()
                .unwrap_or(ConnectivityState::Idle)
            {
                ConnectivityState::Ready => {
                    let sc = sc.clone();
                    self.select(sc, cx);
                    return;
                }
                ConnectivityState::Idle => {
                    sc.connect();
                    self.trying = Some(i);
                    return;
                }
                ConnectivityState::Connecting => {
                    self.trying = Some(i);
                    return;
                }
                _ => i += 1,
            }
        }
        // Every address failed: sticky TRANSIENT_FAILURE until one connects.
        self.trying = None;
        debug!(error = ?self.last_error, "pick_first: every address failed");
        let picker = self.fail_picker();
        self.set(ConnectivityState::TransientFailure, picker, cx);
        cx.request_resolution();
        for sc in &self.subchannels {
            sc.connect();
        }
    }

    fn select(&mut self, sc: Subchannel, cx: &mut dyn ChannelController) {
        for other in &self.subchannels {
            if *other != sc {
                other.shutdown();
            }
        }
        self.subchannels = vec![sc.clone()];
        self.states.retain(|id, _| *id == sc.id());
        self.trying = None;
        self.selected = Some(sc.clone());
        self.set(ConnectivityState::Ready, Arc::new(Selected(sc)), cx);
    }
}

impl LbPolicy for PickFirst {
    fn resolver_update(
        &mut self,
        update: LbUpdate,
        cx: &mut dyn ChannelController,
    ) -> Result<(), String> {
        let cfg = update
            .config
            .get::<PickFirstConfig>()
            .copied()
            .unwrap_or_default();
        let mut addrs: Vec<ResolvedAddress> = Vec::with_capacity(update.addresses.len());
        for a in update.addresses {
            if !addrs.contains(&a) {
                addrs.push(a);
            }
        }
        if cfg.shuffle_address_list {
            shuffle(&mut addrs);
        }
        if addrs.is_empty() {
            self.addresses.clear();
            self.subchannels.clear();
            self.selected = None;
            self.trying = None;
            self.last_error = Some("name resolver returned no addresses".to_string());
            let picker = self.fail_picker();
            self.set(ConnectivityState::TransientFailure, picker, cx);
            return Err("empty address list".to_string());
        }
        self.addresses = addrs;
        if let Some(sel) = &self.selected {
            if self.addresses.contains(sel.address()) {
                // Keep the connection we have; the new list applies to the next pass.
                return Ok(());
            }
        }
        if self.state == Some(ConnectivityState::Idle) {
            // Stay IDLE: the next call starts a pass over the new list.
            self.rebuild(cx);
            return Ok(());
        }
        self.start_pass(cx);
        Ok(())
    }

    fn resolver_error(&mut self, error: String, cx: &mut dyn ChannelController) {
        if self.subchannels.is_empty() || self.state == Some(ConnectivityState::TransientFailure) {
            self.last_error = Some(format!("name resolution failed: {error}"));
            let picker = self.fail_picker();
            self.set(ConnectivityState::TransientFailure, picker, cx);
        }
    }

    fn subchannel_update(
        &mut self,
        sc: &Subchannel,
        state: &SubchannelState,
        cx: &mut dyn ChannelController,
    ) {
        let Some(index) = self.subchannels.iter().position(|s| s == sc) else {
            return;
        };
        self.states.insert(sc.id(), state.state);
        if self.selected.as_ref() == Some(sc) {
            if state.state != ConnectivityState::Ready {
                // The connection was lost: IDLE until the next call, and re-resolve.
                self.selected = None;
                self.set(ConnectivityState::Idle, Arc::new(QueuePicker), cx);
                cx.request_resolution();
            }
            return;
        }
        match state.state {
            ConnectivityState::Ready => self.select(sc.clone(), cx),
            ConnectivityState::TransientFailure => {
                if let Some(e) = &state.error {
                    self.last_error = Some(e.message().to_string());
                }
                if self.trying == Some(index) {
                    self.try_from(index + 1, cx);
                } else if self.state == Some(ConnectivityState::TransientFailure) {
                    // Keep the message current for failing calls.
                    let picker = self.fail_picker();
                    self.set(ConnectivityState::TransientFailure, picker, cx);
                }
            }
            // Backoff over: in sticky TRANSIENT_FAILURE try it again.
            ConnectivityState::Idle
                if self.state == Some(ConnectivityState::TransientFailure)
                    || self.trying == Some(index) =>
            {
                sc.connect()
            }
            _ => {}
        }
    }

    fn exit_idle(&mut self, cx: &mut dyn ChannelController) {
        if self.state == Some(ConnectivityState::Idle) && !self.addresses.is_empty() {
            self.start_pass(cx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{st, update, TestCx};
    use super::*;
    use ConnectivityState::*;

    fn policy() -> PickFirst {
        PickFirst::default()
    }

    #[test]
    fn walks_the_addresses_in_order_then_sticks_to_the_first_ready() {
        let (mut p, mut cx) = (policy(), TestCx::default());
        p.resolver_update(update(&[1, 2, 3], LbConfig::default()), &mut cx)
            .unwrap();
        assert_eq!((cx.state(), cx.pick()), (Some(Connecting), "queue".into()));
        assert_eq!(
            [cx.sc(1).connect_calls(), cx.sc(2).connect_calls()],
            [1, 0],
            "one address at a time"
        );
        p.subchannel_update(&cx.sc(1), &st(Connecting), &mut cx);
        p.subchannel_update(&cx.sc(1), &st(TransientFailure), &mut cx);
        assert_eq!(
            cx.sc(2).connect_calls(),
            1,
            "the next address after a failure"
        );
        assert_eq!(
            cx.state(),
            Some(Connecting),
            "not TRANSIENT_FAILURE before the pass ends"
        );
        p.subchannel_update(&cx.sc(2), &st(Ready), &mut cx);
        assert_eq!((cx.state(), cx.pick()), (Some(Ready), "2".into()));
        assert!(
            cx.sc(1).is_shut_down() && cx.sc(3).is_shut_down(),
            "the others are dropped"
        );
        assert!(!cx.sc(2).is_shut_down());
        // An update that keeps the selected address keeps the connection.
        let pickers = cx.pickers.len();
        p.resolver_update(update(&[4, 2], LbConfig::default()), &mut cx)
            .unwrap();
        assert_eq!(cx.pickers.len(), pickers, "no new picker");
        assert_eq!(cx.pick(), "2");
    }

    #[test]
    fn a_failed_pass_is_sticky_transient_failure_retried_as_backoffs_end() {
        let (mut p, mut cx) = (policy(), TestCx::default());
        p.resolver_update(update(&[1, 2], LbConfig::default()), &mut cx)
            .unwrap();
        p.subchannel_update(&cx.sc(1), &st(TransientFailure), &mut cx);
        p.subchannel_update(&cx.sc(2), &st(TransientFailure), &mut cx);
        assert_eq!(
            (cx.state(), cx.pick()),
            (Some(TransientFailure), "fail Unavailable".into())
        );
        assert_eq!(cx.resolutions, 1, "re-resolution after a failed pass");
        // Backoff over: IDLE -> connect again; CONNECTING does not leave TRANSIENT_FAILURE.
        p.subchannel_update(&cx.sc(1), &st(Idle), &mut cx);
        assert_eq!(cx.sc(1).connect_calls(), 3);
        p.subchannel_update(&cx.sc(1), &st(Connecting), &mut cx);
        assert_eq!(cx.state(), Some(TransientFailure));
        p.subchannel_update(&cx.sc(2), &st(Ready), &mut cx);
        assert_eq!((cx.state(), cx.pick()), (Some(Ready), "2".into()));
    }

    #[test]
    fn losing_the_connection_goes_idle_and_the_next_call_starts_a_new_pass() {
        let (mut p, mut cx) = (policy(), TestCx::default());
        p.resolver_update(update(&[1, 2], LbConfig::default()), &mut cx)
            .unwrap();
        p.subchannel_update(&cx.sc(1), &st(Ready), &mut cx);
        p.subchannel_update(&cx.sc(1), &st(Idle), &mut cx);
        assert_eq!((cx.state(), cx.pick()), (Some(Idle), "queue".into()));
        assert_eq!(cx.resolutions, 1);
        let created = cx.created.len();
        p.exit_idle(&mut cx);
        assert_eq!(cx.state(), Some(Connecting));
        assert_eq!(
            cx.sc(1).connect_calls(),
            2,
            "the pass starts again at the first address"
        );
        assert_eq!(
            cx.created.len(),
            created + 1,
            "a new subchannel for the dropped address 2"
        );
    }

    #[test]
    fn empty_updates_fail_and_config_shuffles() {
        let (mut p, mut cx) = (policy(), TestCx::default());
        assert!(p
            .resolver_update(update(&[], LbConfig::default()), &mut cx)
            .is_err());
        assert_eq!(
            (cx.state(), cx.pick()),
            (Some(TransientFailure), "fail Unavailable".into())
        );
        let cfg = PickFirstBuilder
            .parse_config(&serde_json::json!({"shuffleAddressList": true}))
            .unwrap();
        assert_eq!(
            cfg.get::<PickFirstConfig>(),
            Some(&PickFirstConfig {
                shuffle_address_list: true
            })
        );
        assert!(PickFirstBuilder
            .parse_config(&serde_json::json!({"shuffleAddressList": 1}))
            .is_err());
        // Shuffled: over 40 updates of 8 addresses, the first one tried is not always 1.
        let mut firsts = std::collections::HashSet::new();
        for _ in 0..40 {
            let (mut p, mut cx) = (policy(), TestCx::default());
            p.resolver_update(update(&[1, 2, 3, 4, 5, 6, 7, 8], cfg.clone()), &mut cx)
                .unwrap();
            let first = cx
                .created
                .iter()
                .find(|s| s.connect_calls() == 1)
                .map(|s| s.address().address().to_string());
            firsts.insert(first);
        }
        assert!(firsts.len() > 1, "{firsts:?}");
    }
}
