//! [`Latch`]: a value set once that every waiter sees, the one signal behind call
//! cancellation ([`crate::CancelHandle`]), a server call's cancellation code
//! ([`crate::ServerContext`]) and a connection's forced shutdown of its calls; and
//! [`wait_until`], the wait on a `Notify` behind it and the server's shutdown stages; and
//! [`Signals`], the wakeups of the tasks that act on what a connection's frames show (BDP
//! samples, ping-policy violations, a stream opening).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{ready, Context, Poll};

use futures_util::task::AtomicWaker;
use tokio::sync::futures::Notified;
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
        Latch {
            value: AtomicU8::new(UNSET),
            notify: Notify::new(),
        }
    }
}

impl Latch {
    /// Sets the latch to `value` unless it was already set; returns whether this call set it.
    pub(crate) fn set(&self, value: u8) -> bool {
        debug_assert_ne!(value, UNSET);
        let first = self
            .value
            .compare_exchange(UNSET, value, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
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
    pub(crate) fn wait(&self) -> impl Future<Output = u8> + '_ {
        wait_until(&self.notify, || self.get())
    }
}

/// Waits on `notify` until `check` returns a value. The waiter is registered before each
/// check, so a `notify_waiters` between the check and the wait still wakes it; shared by
/// every "state changed, look again" signal of the crate.
///
/// A hand-written future rather than an `async fn`: it sits in `select!`s of futures
/// that live as long as a call or a connection, and an `async fn` around the `Notified`
/// about doubles its size (152 instead of 88 bytes for the server's shutdown wait).
pub(crate) fn wait_until<T, F: FnMut() -> Option<T>>(
    notify: &Notify,
    check: F,
) -> WaitUntil<'_, F> {
    WaitUntil {
        notified: notify.notified(),
        notify,
        check,
    }
}

pin_project_lite::pin_project! {
    /// The future of [`wait_until`].
    #[must_use = "futures do nothing unless polled"]
    pub(crate) struct WaitUntil<'a, F> {
        #[pin]
        notified: Notified<'a>,
        notify: &'a Notify,
        check: F,
    }
}

impl<T, F: FnMut() -> Option<T>> Future for WaitUntil<'_, F> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut this = self.project();
        loop {
            this.notified.as_mut().enable();
            if let Some(v) = (this.check)() {
                return Poll::Ready(v);
            }
            ready!(this.notified.as_mut().poll(cx));
            // Woken: wait again with a fresh registration (made before the next check).
            this.notified.set(this.notify.notified());
        }
    }
}

/// Up to eight wakeups, each for one waiting task: a flag bit per signal (all in one
/// byte) and each signal's waker. A raised signal is kept until taken (like
/// `Notify::notify_one`'s permit). Waiting holds no state (a `Notify`'s waiting future is
/// 64 bytes), which matters in a connection task's `select!` that lives as long as the
/// connection; three `Notify`s would be 96 bytes against these 80.
#[derive(Debug)]
pub(crate) struct Signals<const N: usize> {
    raised: AtomicU8,
    wakers: [AtomicWaker; N],
}

impl<const N: usize> Default for Signals<N> {
    fn default() -> Self {
        const { assert!(N <= 8, "one flag byte holds eight signals") };
        Signals {
            raised: AtomicU8::new(0),
            wakers: std::array::from_fn(|_| AtomicWaker::new()),
        }
    }
}

impl<const N: usize> Signals<N> {
    /// Signal `i` (below `N`).
    pub(crate) fn get(&self, i: usize) -> Signal<'_> {
        Signal {
            raised: &self.raised,
            bit: 1 << i,
            waker: &self.wakers[i],
        }
    }
}

/// One of a [`Signals`] set.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Signal<'a> {
    raised: &'a AtomicU8,
    bit: u8,
    waker: &'a AtomicWaker,
}

impl Signal<'_> {
    /// Raises the signal and wakes its waiting task, if any.
    pub(crate) fn raise(&self) {
        self.raised.fetch_or(self.bit, Ordering::Release);
        self.waker.wake();
    }

    /// Lowers the signal; returns whether it was raised.
    fn take(&self) -> bool {
        self.raised.fetch_and(!self.bit, Ordering::AcqRel) & self.bit != 0
    }

    /// Ready (and the signal lowered) once it was raised; otherwise registers the task.
    pub(crate) fn poll_take(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.take() {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        // Raised between the first check and the registration: its wake may have missed us.
        if self.take() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Resolves once the signal is raised (at once if it already was), lowering it.
    #[cfg(test)]
    pub(crate) async fn wait(self) {
        std::future::poll_fn(|cx| self.poll_take(cx)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_signal_is_kept_until_taken_and_wakes_its_waiter() {
        let signals = Arc::new(Signals::<3>::default());
        // raised before anyone waits: the next wait returns at once, the one after waits
        signals.get(1).raise();
        signals.get(1).raise();
        signals.get(1).wait().await;
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        assert!(signals.get(1).poll_take(&mut cx).is_pending());
        // the others were never raised
        assert!(signals.get(0).poll_take(&mut cx).is_pending());
        assert!(signals.get(2).poll_take(&mut cx).is_pending());
        let waiter = {
            let s = Arc::clone(&signals);
            tokio::spawn(async move { s.get(2).wait().await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        // raising another signal does not wake it
        signals.get(0).raise();
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        signals.get(2).raise();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("the waiter was woken")
            .expect("the waiter did not panic");
        assert!(
            signals.get(0).poll_take(&mut cx).is_ready(),
            "signal 0 was kept"
        );
    }

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
