//! Write batching and gathering for a connection's IO: fewer, larger writes to the socket.
//!
//! It owns two things, both about how h2's writes reach the socket (the bytes are never
//! changed):
//!
//! - Batching, the way grpc-go's loopy writer does it: when h2 starts writing less than
//!   [`MIN_BATCH`] bytes, the adapter yields once first (wakes its own task and returns
//!   `Pending`), so that the call tasks that are ready to run queue their frames too and
//!   one `writev` carries them all. Under load this turns one syscall per response into
//!   one per batch. It yields only when other calls on the connection could join the batch
//!   and batching cannot leave the runtime idle: when more connections have calls in
//!   flight than the runtime has workers, or when this connection has [`BATCH_STREAMS`] or
//!   more. (On a server, a call whose handler finished counts until its response is
//!   flushed: [`Activity::count_until_flushed`].) With one busy connection and a few
//!   calls, holding back the first response until the others are ready makes the peer
//!   wait and then answer in a burst (the two sides take turns instead of working in
//!   parallel), so each response goes out at once.
//! - Gathering: h2 writes each DATA frame above a few hundred bytes on its own (`writev`
//!   of its header and payload), which for bulk data means one syscall, one TCP segment
//!   and one wakeup of the reader per 16 KiB frame. The adapter copies such writes into a
//!   buffer of up to [`GATHER_LIMIT`] bytes, as grpc-go's buffered writer does. h2 writes
//!   frames one after another without flushing (our h2 patch 6 in
//!   `third_party/h2/PATCHES.md`) and flushes when it has nothing more to write, so a
//!   burst of frames goes out in 64 KiB writes.
//!
//! `poll_flush` keeps tokio's contract: once it returns `Ready(Ok(()))`, every byte
//! accepted before it has been written to the inner IO (and that IO flushed).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::frame_tap::Activity;

/// Below this many bytes, a write yields once before it goes out (see the module doc);
/// grpc-go's loopy writer uses the same threshold (`minBatchSize`).
pub(crate) const MIN_BATCH: usize = 1000;

/// Large writes (DATA frames of at least [`MIN_BATCH`] bytes, which h2 hands over one
/// frame at a time) are gathered up to this many bytes: one `writev` per 64 KiB instead of
/// one per 16 KiB frame (see the module doc).
pub(crate) const GATHER_LIMIT: usize = 64 * 1024;

/// A gathering buffer larger than this is released once written (it is not kept for the
/// connection's whole life).
const KEEP_PENDING: usize = 4 * 1024;

/// A connection with this many open streams batches its writes even when it is the only
/// busy one (see the module doc).
pub(crate) const BATCH_STREAMS: usize = 32;

/// Connections with calls in flight, counted per server and per client channel: the
/// batching rule compares their number with the runtime's workers (a server and a
/// channel each run on one runtime as a rule; connections of other servers or
/// channels in the process do not keep this one's workers busy).
#[derive(Debug, Default)]
pub(crate) struct BusyConnections(AtomicUsize);

impl BusyConnections {
    /// A connection got its first call.
    pub(crate) fn enter(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection's last call ended (on a server: its response was flushed too), or
    /// the connection ended.
    pub(crate) fn leave(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    /// How many connections have calls in flight.
    pub(crate) fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// Whether a connection with `open_streams` should batch its writes while
/// `busy_connections` connections have calls in flight on `workers` worker threads.
pub(crate) fn batching_pays(open_streams: usize, busy_connections: usize, workers: usize) -> bool {
    // The stream being written counts as open: with no other, nothing can join the batch.
    open_streams >= 2 && (open_streams >= BATCH_STREAMS || busy_connections > workers)
}

/// The adapter: wraps a connection's IO (below the [`super::frame_tap::FrameTap`]).
pub(crate) struct WriteBatch<IO> {
    io: IO,
    /// Where the connection's open streams and the busy connections are counted.
    activity: Arc<Activity>,
    /// Gathered bytes accepted but not yet written.
    pending: BytesMut,
    /// This write cycle (up to the next flush) already yielded once.
    yielded: bool,
    /// Worker threads of the runtime the connection was made on.
    workers: u32,
}

impl<IO> WriteBatch<IO> {
    /// Wraps `io`; `activity` says how busy the connection and the process are.
    pub(crate) fn new(io: IO, activity: Arc<Activity>) -> Self {
        WriteBatch {
            io,
            activity,
            pending: BytesMut::new(),
            yielded: false,
            workers: tokio::runtime::Handle::try_current().map_or(1, |h| {
                u32::try_from(h.metrics().num_workers()).unwrap_or(u32::MAX)
            }),
        }
    }

    /// Whether a write of `len` bytes should first yield once, letting other tasks add
    /// their frames to the batch; if so, the task is already woken.
    fn yield_for_batch(&mut self, len: usize, cx: &mut Context<'_>) -> bool {
        if self.yielded || len >= MIN_BATCH || !self.activity.batching_pays(self.workers as usize) {
            return false;
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        true
    }
}

impl<IO: AsyncWrite + Unpin> WriteBatch<IO> {
    /// Writes the gathered bytes out.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.advance(n);
        }
        if self.pending.capacity() > KEEP_PENDING {
            self.pending = BytesMut::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for WriteBatch<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for WriteBatch<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // Gathered bytes go first.
        ready!(this.poll_pending(cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.yield_for_batch(buf.len(), cx) {
            return Poll::Pending;
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        // A frame header and a payload beside it: h2 writing one large DATA frame on its
        // own. (Its buffer of small frames, one slice, goes out as before.)
        let chained = bufs.iter().filter(|b| !b.is_empty()).count() >= 2;
        if chained && (MIN_BATCH..=GATHER_LIMIT).contains(&total) {
            if this.pending.len() + total > GATHER_LIMIT {
                ready!(this.poll_pending(cx))?;
            }
            this.pending.reserve(total);
            for b in bufs {
                this.pending.extend_from_slice(b);
            }
            return Poll::Ready(Ok(total));
        }
        // Gathered bytes go first.
        ready!(this.poll_pending(cx))?;
        if this.yield_for_batch(total, cx) {
            return Poll::Pending;
        }
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        ready!(Pin::new(&mut this.io).poll_flush(cx))?;
        this.yielded = false;
        this.activity.flushed();
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A DATA frame header announcing `len` payload bytes on stream 1.
    fn data_header(len: usize) -> Vec<u8> {
        vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            0,
            0,
            0,
            0,
            0,
            1,
        ]
    }

    /// A sink accepting at most `max` bytes per write; counts the writes (the frame
    /// tap's tests use it too).
    pub(crate) struct Sink {
        pub(crate) out: Vec<u8>,
        pub(crate) max: usize,
        pub(crate) writes: usize,
    }

    impl AsyncWrite for Sink {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.max);
            self.out.extend_from_slice(&buf[..n]);
            self.writes += 1;
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// A [`WriteBatch`] over a [`Sink`] taking at most `max` bytes per write.
    fn into_sink(activity: Arc<Activity>, max: usize) -> WriteBatch<Sink> {
        WriteBatch::new(
            Sink {
                out: Vec::new(),
                max,
                writes: 0,
            },
            activity,
        )
    }

    /// A DATA frame of 4 bytes: a write small enough to be batched.
    fn small_frame() -> Vec<u8> {
        let mut small = data_header(4);
        small.extend([1, 2, 3, 4]);
        small
    }

    /// A waker that counts its wakes.
    struct CountWaker(AtomicUsize);

    impl std::task::Wake for CountWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A [`CountWaker`] and the waker that counts into it.
    fn counting_waker() -> (Arc<CountWaker>, std::task::Waker) {
        let counter = Arc::new(CountWaker(Default::default()));
        let waker = std::task::Waker::from(Arc::clone(&counter));
        (counter, waker)
    }

    #[tokio::test]
    async fn a_flush_that_returns_ready_leaves_nothing_behind() {
        // tokio's contract: after poll_flush returns Ready(Ok), every byte accepted has
        // reached the inner IO. (The gathering frame tap answered Ready while it waited
        // for "the flush that finds nothing new", holding a whole frame back.)
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let mut w = WriteBatch::new(near, Activity::new(None, Default::default()));
        let mut want: Vec<u8> = Vec::new();
        for i in 0..3u8 {
            let head = data_header(16 * 1024);
            let payload = vec![i; 16 * 1024];
            let slices = [io::IoSlice::new(&head), io::IoSlice::new(&payload)];
            let n = w.write_vectored(&slices).await.unwrap();
            assert_eq!(n, head.len() + payload.len());
            want.extend(&head);
            want.extend(&payload);
            w.flush().await.unwrap();
            let mut got = vec![0u8; n];
            tokio::time::timeout(Duration::from_secs(5), far.read_exact(&mut got))
                .await
                .expect("bytes held back after poll_flush returned Ready(Ok)")
                .unwrap();
            assert_eq!(got[..], want[want.len() - n..]);
        }
        // shutdown writes what was gathered too
        let head = data_header(2000);
        let payload = vec![9u8; 2000];
        let slices = [io::IoSlice::new(&head), io::IoSlice::new(&payload)];
        assert_eq!(w.write_vectored(&slices).await.unwrap(), 9 + 2000);
        w.shutdown().await.unwrap();
        let mut rest = Vec::new();
        far.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest.len(), 9 + 2000);
    }

    #[test]
    fn large_frames_are_gathered_until_the_flush() {
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        let mut w = into_sink(Activity::new(None, Default::default()), 5000);
        let mut want: Vec<u8> = Vec::new();
        // h2 writes a large DATA frame as its header and payload side by side, and the
        // next one without flushing in between.
        for i in 0..3u8 {
            let head = data_header(16 * 1024);
            let payload = vec![i; 16 * 1024];
            let slices = [io::IoSlice::new(&head), io::IoSlice::new(&payload)];
            let n = 9 + 16 * 1024;
            assert!(
                matches!(Pin::new(&mut w).poll_write_vectored(&mut cx, &slices), Poll::Ready(Ok(k)) if k == n)
            );
            want.extend(&head);
            want.extend(&payload);
            assert_eq!(w.io.writes, 0, "frame {i} written before the flush");
        }
        // the flush writes the batch, in order
        assert!(Pin::new(&mut w).poll_flush(&mut cx).is_ready());
        assert_eq!(w.io.out, want);
        assert_eq!(w.io.writes, want.len().div_ceil(5000));
        // a frame that would overflow the batch pushes the gathered bytes out first, and a
        // small write after gathered bytes goes after them
        w.io.out.clear();
        let head = data_header(40 * 1024);
        let payload = vec![9u8; 40 * 1024];
        for _ in 0..2 {
            let slices = [io::IoSlice::new(&head), io::IoSlice::new(&payload)];
            assert!(Pin::new(&mut w)
                .poll_write_vectored(&mut cx, &slices)
                .is_ready());
        }
        assert_eq!(
            w.io.out.len(),
            9 + 40 * 1024,
            "the first frame went out when the second did not fit"
        );
        let small = [0, 0, 0, 1, 5, 0, 0, 0, 1];
        assert!(matches!(
            Pin::new(&mut w).poll_write(&mut cx, &small),
            Poll::Ready(Ok(9))
        ));
        let mut want: Vec<u8> = Vec::new();
        for _ in 0..2 {
            want.extend(&head);
            want.extend(&payload);
        }
        want.extend(&small);
        assert_eq!(w.io.out, want);
    }

    #[test]
    fn small_writes_yield_once_per_flush_and_large_ones_never() {
        let (counter, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        let wakes = || counter.0.load(Ordering::SeqCst);
        let activity = Activity::new(None, Default::default());
        // enough open calls that batching pays on its own
        let _calls: Vec<_> = (0..BATCH_STREAMS)
            .map(|_| activity.call_started())
            .collect();
        let mut w = into_sink(activity, usize::MAX);
        let small = small_frame();
        // first small write of a cycle: Pending, and the task is woken to come back
        assert!(Pin::new(&mut w).poll_write(&mut cx, &small).is_pending());
        assert_eq!(wakes(), 1);
        assert!(w.io.out.is_empty());
        // the retry (and any further write before the flush) goes through
        for _ in 0..2 {
            assert!(matches!(
                Pin::new(&mut w).poll_write(&mut cx, &small),
                Poll::Ready(Ok(13))
            ));
        }
        assert!(Pin::new(&mut w).poll_flush(&mut cx).is_ready());
        // a new cycle yields again; vectored writes too
        let slices = [io::IoSlice::new(&small)];
        assert!(Pin::new(&mut w)
            .poll_write_vectored(&mut cx, &slices)
            .is_pending());
        assert_eq!(wakes(), 2);
        assert!(matches!(
            Pin::new(&mut w).poll_write_vectored(&mut cx, &slices),
            Poll::Ready(Ok(13))
        ));
        assert!(Pin::new(&mut w).poll_flush(&mut cx).is_ready());
        // a write of MIN_BATCH bytes or more goes out at once
        let mut big = data_header(MIN_BATCH);
        big.resize(9 + MIN_BATCH, 7);
        assert!(
            matches!(Pin::new(&mut w).poll_write(&mut cx, &big), Poll::Ready(Ok(n)) if n == big.len())
        );
        assert_eq!(wakes(), 2);
        assert_eq!(w.io.out.len(), 13 * 3 + big.len());
    }

    #[test]
    fn a_servers_queued_responses_are_batched_until_the_flush() {
        let (counter, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        let activity = Activity::new(None, Default::default());
        activity.count_until_flushed();
        // enough calls that batching pays; their handlers finished and queued responses
        drop(
            (0..BATCH_STREAMS)
                .map(|_| activity.call_started())
                .collect::<Vec<_>>(),
        );
        let mut w = into_sink(activity, usize::MAX);
        let small = small_frame();
        assert!(
            Pin::new(&mut w).poll_write(&mut cx, &small).is_pending(),
            "the ended calls' responses are what the batch is made of"
        );
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert!(Pin::new(&mut w).poll_write(&mut cx, &small).is_ready());
        assert!(Pin::new(&mut w).poll_flush(&mut cx).is_ready());
        // once flushed they count no more: the next small write goes out at once
        assert!(Pin::new(&mut w).poll_write(&mut cx, &small).is_ready());
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert_eq!(w.io.writes, 2);
    }

    #[test]
    fn batching_only_when_it_cannot_idle_the_runtime() {
        // one busy connection with a few calls: each response goes out at once
        assert!(!batching_pays(10, 1, 1));
        assert!(!batching_pays(0, 0, 1));
        // many calls on this connection, or more busy connections than workers
        assert!(batching_pays(BATCH_STREAMS, 1, 1));
        assert!(batching_pays(2, 2, 1));
        assert!(!batching_pays(2, 2, 2));
        // a lone call on this connection has nothing to batch with
        assert!(!batching_pays(1, 5, 1));
    }
}
