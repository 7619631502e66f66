//! Load balancing: picks the subchannel a call goes to. The first policy is pick_first
//! (one subchannel over the resolved address list, tried in order).

use std::sync::{Arc, Mutex};

use super::connectivity::ConnectivityState;
use super::subchannel::{Subchannel, SubchannelConfig};
use crate::transport::Address;

/// A load-balancing policy.
pub trait Balancer: Send + Sync + 'static {
    /// The resolver produced a new address list.
    fn update_addresses(&self, addrs: Vec<Address>);
    /// Picks the subchannel for one call; `None` if no addresses are known yet.
    fn pick(&self) -> Option<Arc<Subchannel>>;
    /// Aggregated connectivity state.
    fn state(&self) -> ConnectivityState;
    /// Shuts down every subchannel.
    fn shutdown(&self);
}

/// pick_first: a single subchannel that tries the addresses in resolver order.
#[derive(Debug)]
pub struct PickFirst {
    config: Arc<SubchannelConfig>,
    sub: Mutex<Option<Arc<Subchannel>>>,
    shut: std::sync::atomic::AtomicBool,
}

impl PickFirst {
    /// A pick_first balancer creating subchannels with `config`.
    pub fn new(config: Arc<SubchannelConfig>) -> Self {
        PickFirst { config, sub: Mutex::new(None), shut: Default::default() }
    }
}

impl Balancer for PickFirst {
    fn update_addresses(&self, addrs: Vec<Address>) {
        if let Ok(mut slot) = self.sub.lock() {
            match slot.as_ref() {
                Some(sc) => sc.update_addresses(addrs),
                None => *slot = Some(Subchannel::new(Arc::clone(&self.config), addrs)),
            }
        }
    }

    fn pick(&self) -> Option<Arc<Subchannel>> {
        self.sub.lock().ok()?.clone()
    }

    fn state(&self) -> ConnectivityState {
        if self.shut.load(std::sync::atomic::Ordering::Acquire) {
            return ConnectivityState::Shutdown;
        }
        self.pick().map(|s| s.state()).unwrap_or(ConnectivityState::Idle)
    }

    fn shutdown(&self) {
        self.shut.store(true, std::sync::atomic::Ordering::Release);
        if let Some(sc) = self.pick() {
            sc.shutdown();
        }
    }
}
