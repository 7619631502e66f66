//! [`Latch`]: a value set once that every waiter sees, the one signal behind call
//! cancellation ([`crate::CancelHandle`]), a server call's cancellation code
//! ([`crate::ServerContext`]) and a connection's forced shutdown of its calls; and
//! [`wait_until`], the wait on a `Notify` behind it and the server's shutdown stages.

use std::sync::atomic::{AtomicU8, Ordering};

use tokio::sync::Notify;

/// The value of a latch that was not set.
const UNSET: u8 = u8::MAX;

/// A `u8` (anything but `u8::MAX`) set at most once; the first set wins and wakes every
/// waiter. Reading it is one atomic load.
#[derive(Debug)]
pub(crate) struct Latch {
    value: AtomicU8,
    notify: Notify,
}

impl Default for Latch {
    fn default() -> Self {
        Latch { value: AtomicU8::new(UNSET), notify: Notify::new() }
    }
}

impl Latch {
    /// Sets the latch to `value` unless it was already set; returns whether this call set it.
    pub(crate) fn set(&self, value: u8) -> bool {
        debug_assert_ne!(value, UNSET);
        let first = self.value.compare_exchange(UNSET, value, Ordering::AcqRel, Ordering::Acquire).is_ok();
        if first {
            self.notify.notify_waiters();
        }
        first
    }

    /// The value, once set.
    pub(crate) fn get(&self) -> Option<u8> {
        match self.value.load(Ordering::Acquire) {
            UNSET => None,
            v => Some(v),
        }
    }

    /// Resolves with the value once the latch is set.
    pub(crate) async fn wait(&self) -> u8 {
        wait_until(&self.notify, || self.get()).await
    }
}

/// Waits on `notify` until `check` returns a value. The waiter is registered before each
/// check, so a `notify_waiters` between the check and the wait still wakes it; shared by
/// every "state changed, look again" signal of the crate.
pub(crate) async fn wait_until<T>(notify: &Notify, mut check: impl FnMut() -> Option<T>) -> T {
    loop {
        let notified = notify.notified();
        let mut notified = std::pin::pin!(notified);
        notified.as_mut().enable();
        if let Some(v) = check() {
            return v;
        }
        notified.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn first_set_wins_and_wakes_every_waiter() {
        let latch = Arc::new(Latch::default());
        assert_eq!(latch.get(), None);
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let l = Arc::clone(&latch);
                tokio::spawn(async move { l.wait().await })
            })
            .collect();
        tokio::task::yield_now().await;
        assert!(latch.set(4));
        assert!(!latch.set(7));
        for w in waiters {
            assert_eq!(w.await.unwrap(), 4);
        }
        assert_eq!(latch.get(), Some(4));
        // a waiter that comes late returns at once
        assert_eq!(latch.wait().await, 4);
    }
}
