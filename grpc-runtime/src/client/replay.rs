//! The request side of a streaming call under a retry or hedging policy (gRFC A6): a
//! sender task that encodes the caller's messages once, keeps them in a replay buffer
//! until the call commits, and writes them to the live attempts (retry: the current one;
//! hedging: all), replaying the buffer first on each new attempt. The buffer is bounded
//! per call and per channel; past either bound no further attempt starts and the buffer
//! is freed.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use h2::SendStream;
use tokio::sync::mpsc;
use tracing::{debug, Instrument};

use super::body;
use super::call::CallState;
use crate::codec::{encode_message, next_batch, BatchEnd};
use crate::compression::CompressionEncoding;

/// Default bound of one call's replay buffer (grpc-go's per-RPC buffer: 256 KiB).
pub const DEFAULT_PER_CALL_RETRY_BUFFER: usize = 256 * 1024;
/// Default bound of all replay buffers of one channel (grpc-java's: 16 MiB).
pub const DEFAULT_CHANNEL_RETRY_BUFFER: usize = 16 * 1024 * 1024;

/// Replay buffer bounds and the channel-wide usage they count against.
#[derive(Debug, Clone)]
pub(crate) struct BufferLimits {
    pub(crate) per_call: usize,
    pub(crate) per_channel: usize,
    pub(crate) channel_used: Arc<AtomicUsize>,
}

/// One call's buffered frames; gives its bytes back to the channel when dropped.
struct ReplayBuffer {
    frames: Vec<Bytes>,
    size: usize,
    limits: BufferLimits,
}

impl ReplayBuffer {
    /// Keeps `frame`; `false` (and nothing kept) when a bound would be passed.
    fn push(&mut self, frame: &Bytes) -> bool {
        let n = frame.len();
        if self.size + n > self.limits.per_call {
            return false;
        }
        let used = self.limits.channel_used.fetch_add(n, Ordering::AcqRel);
        if used + n > self.limits.per_channel {
            self.limits.channel_used.fetch_sub(n, Ordering::AcqRel);
            return false;
        }
        self.size += n;
        self.frames.push(frame.clone());
        true
    }
}

impl Drop for ReplayBuffer {
    fn drop(&mut self) {
        self.limits
            .channel_used
            .fetch_sub(self.size, Ordering::AcqRel);
    }
}

/// How a call's attempts share its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// One attempt at a time: a new attempt's stream replaces the current one.
    Retry,
    /// Attempts run side by side: every live attempt gets every message.
    Hedge,
}

/// What the call and its sender tell each other.
#[derive(Debug, Default)]
pub(crate) struct Commit {
    /// 0: undecided; `n + 1`: attempt `n` won (the others are dropped); `ANY`: the call
    /// committed to the attempt it has.
    choice: AtomicU32,
    /// The sender gave up its buffer (a bound was reached): no further attempt may start.
    buffer_full: AtomicBool,
}

const ANY: u32 = u32::MAX;

impl Commit {
    /// The call keeps the attempt it has (retries): buffering stops.
    pub(crate) fn commit(&self) {
        let _ = self
            .choice
            .compare_exchange(0, ANY, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Attempt `n` won (hedging): the other attempts' streams are dropped.
    pub(crate) fn commit_to(&self, n: u32) {
        self.choice
            .store(n.saturating_add(1).min(ANY - 1), Ordering::Release);
    }

    /// Whether a further attempt may still start (no commit, buffer kept).
    pub(crate) fn may_retry(&self) -> bool {
        self.choice.load(Ordering::Acquire) == 0 && !self.buffer_full.load(Ordering::Acquire)
    }

    /// Set when the buffer was given up.
    pub(crate) fn buffer_full(&self) -> &AtomicBool {
        &self.buffer_full
    }
}

/// The fixed inputs of a call's sender.
pub(crate) struct SenderArgs {
    pub(crate) mode: Mode,
    pub(crate) encoding: Option<CompressionEncoding>,
    /// Per-message compression choices of an `OutboundStream`.
    pub(crate) compress_slot: Option<Arc<AtomicBool>>,
    pub(crate) max_send: usize,
    pub(crate) limits: BufferLimits,
    pub(crate) commit: Arc<Commit>,
}

/// Spawns the sender of a streaming call with a retry or hedging policy. Each attempt's
/// `(index, SendStream)` arrives on `streams`; a new one gets the buffer replayed (and
/// END_STREAM if the caller's stream already ended), then the messages that follow. A
/// write stalled on an attempt being replaced (retry) gives way to the new stream.
pub(crate) fn spawn<S, Req>(
    state: &Arc<CallState>,
    mut streams: mpsc::UnboundedReceiver<(u32, SendStream<Bytes>)>,
    messages: S,
    args: SenderArgs,
) -> tokio::task::JoinHandle<()>
where
    S: Stream<Item = Req> + Send + 'static,
    Req: prost::Message + Send + 'static,
{
    let state = Arc::clone(state);
    let span = state.span.clone();
    let SenderArgs {
        mode,
        encoding,
        compress_slot,
        max_send,
        limits,
        commit,
    } = args;
    tokio::spawn(
        async move {
            let mut messages = std::pin::pin!(messages);
            let mut buf = BytesMut::new();
            let mut replay = Some(ReplayBuffer { frames: Vec::new(), size: 0, limits });
            let mut live: Vec<(u32, SendStream<Bytes>)> = Vec::new();
            let mut ended = false;
            // Whether further attempts may still arrive (the call is still choosing).
            let mut open = true;
            loop {
                match commit.choice.load(Ordering::Acquire) {
                    0 => {}
                    ANY => replay = None,
                    won => {
                        live.retain(|(n, _)| n.saturating_add(1) == won);
                        replay = None;
                    }
                }
                if ended || live.is_empty() {
                    // Nothing to send now: only a new attempt's stream matters.
                    if !open {
                        return;
                    }
                    match streams.recv().await {
                        Some((n, s)) => add_attempt(mode, &mut live, n, s, &replay, ended).await,
                        None => open = false,
                    }
                    continue;
                }
                let batch = tokio::select! {
                    biased;
                    next = streams.recv(), if open => {
                        match next {
                            Some((n, s)) => add_attempt(mode, &mut live, n, s, &replay, ended).await,
                            None => open = false,
                        }
                        continue;
                    }
                    // Cancel-safe: it only waits before taking the first message.
                    b = next_batch(&mut messages, &mut buf, |msg, buf| {
                        let compress = compress_slot.as_ref().map_or(true, |s| s.swap(true, Ordering::SeqCst));
                        let before = buf.len();
                        encode_message(&msg, if compress { encoding } else { None }, max_send, buf)?;
                        state.add_stream_sent(buf.len() - before - crate::codec::HEADER_LEN);
                        Ok(())
                    }) => b,
                };
                match batch {
                    Ok(end) => ended = end == BatchEnd::StreamEnded,
                    Err(status) => {
                        debug!(status = %status, "request message not sent");
                        state.set_send_error(status);
                        commit.buffer_full.store(true, Ordering::Release);
                        for (_, s) in &mut live {
                            s.send_reset(h2::Reason::CANCEL);
                        }
                        return;
                    }
                }
                let chunk = buf.split().freeze();
                if let Some(r) = replay.as_mut() {
                    if !r.push(&chunk) {
                        // Retry: the call commits to its current attempt. Hedging: no
                        // further attempts; the running ones go on.
                        debug!("retry buffer full: no further attempts");
                        commit.buffer_full.store(true, Ordering::Release);
                        replay = None;
                    }
                }
                let sends = futures_util::future::join_all(
                    live.iter_mut().map(|(_, s)| body::send_data(s, chunk.clone(), ended)),
                );
                tokio::select! {
                    biased;
                    // Retry: a new attempt replaces one whose write may be stalled.
                    next = streams.recv(), if open && mode == Mode::Retry => match next {
                        Some((n, s)) => add_attempt(mode, &mut live, n, s, &replay, ended).await,
                        None => open = false,
                    },
                    sent = sends => {
                        let mut ok = sent.into_iter().map(|r| {
                            if let Err(e) = &r {
                                debug!(error = %e, "request stream closed while sending");
                            }
                            r.is_ok()
                        });
                        live.retain(|_| ok.next().unwrap_or(false));
                    }
                }
            }
        }
        .instrument(span),
    )
}

/// Adds an attempt's stream after replaying the buffer on it (retry: in place of the
/// current one).
async fn add_attempt(
    mode: Mode,
    live: &mut Vec<(u32, SendStream<Bytes>)>,
    n: u32,
    s: SendStream<Bytes>,
    replay: &Option<ReplayBuffer>,
    ended: bool,
) {
    if mode == Mode::Retry {
        live.clear();
    }
    if let Some(s) = start_attempt(s, replay, ended).await {
        live.push((n, s));
    }
}

/// Replays the buffer (and END_STREAM if the caller's stream ended) on a new attempt's
/// stream. `None` when that fails (the attempt's response says why), or when the buffer
/// was already given up: the attempt could not get all messages, so it is reset.
async fn start_attempt(
    mut next: SendStream<Bytes>,
    replay: &Option<ReplayBuffer>,
    ended: bool,
) -> Option<SendStream<Bytes>> {
    let Some(replay) = replay else {
        next.send_reset(h2::Reason::CANCEL);
        return None;
    };
    for f in replay.frames.clone() {
        body::send_data(&mut next, f, false).await.ok()?;
    }
    if ended {
        body::send_data(&mut next, Bytes::new(), true).await.ok()?;
    }
    Some(next)
}
