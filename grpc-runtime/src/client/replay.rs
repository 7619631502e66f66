//! The request side of a streaming call under a retry policy (gRFC A6): a sender task
//! that encodes the caller's messages once, keeps them in a replay buffer until the call
//! commits, and writes them to whichever attempt's stream is current, replaying the
//! buffer first on each new attempt. The buffer is bounded per call and per channel;
//! past either bound the call commits (no further retries) and the buffer is freed.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
        self.limits.channel_used.fetch_sub(self.size, Ordering::AcqRel);
    }
}

/// Writes `data` on `send` unless a new attempt's stream arrives first (then the old
/// stream is abandoned: dropping it resets it).
async fn send_or_switch(
    send: &mut SendStream<Bytes>,
    data: Bytes,
    end: bool,
    streams: &mut mpsc::UnboundedReceiver<SendStream<Bytes>>,
    open: bool,
) -> Result<(), Option<SendStream<Bytes>>> {
    tokio::select! {
        biased;
        next = streams.recv(), if open => Err(next),
        r = body::send_data(send, data, end) => r.map_err(|e| {
            debug!(error = %e, "request stream closed while sending");
            None
        }),
    }
}

/// Spawns the sender of a retryable streaming call. Each attempt's `SendStream` arrives
/// on `streams`; `committed` is set by the call once an attempt committed (and by the
/// sender itself when the buffer is full); the sender then stops buffering.
#[allow(clippy::too_many_arguments)]
pub(crate) fn spawn<S, Req>(
    state: &Arc<CallState>,
    mut streams: mpsc::UnboundedReceiver<SendStream<Bytes>>,
    messages: S,
    encoding: Option<CompressionEncoding>,
    compress_slot: Option<Arc<AtomicBool>>,
    max_send: usize,
    limits: BufferLimits,
    committed: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()>
where
    S: Stream<Item = Req> + Send + 'static,
    Req: prost::Message + Send + 'static,
{
    let state = Arc::clone(state);
    let span = state.span.clone();
    tokio::spawn(
        async move {
            let mut messages = std::pin::pin!(messages);
            let mut buf = BytesMut::new();
            let mut replay = Some(ReplayBuffer { frames: Vec::new(), size: 0, limits });
            let mut current: Option<SendStream<Bytes>> = None;
            let mut ended = false;
            // Whether further attempts may still arrive (the call has not finished
            // choosing its attempt).
            let mut open = true;
            loop {
                if replay.is_some() && committed.load(Ordering::Acquire) {
                    replay = None;
                }
                let send = match current.as_mut() {
                    // Everything sent, or no live stream: only a retry's stream is left
                    // to wait for.
                    Some(send) if !ended => send,
                    _ => {
                        if !open {
                            return;
                        }
                        match streams.recv().await {
                            Some(next) => current = start_attempt(next, &replay, ended).await,
                            None => return,
                        }
                        continue;
                    }
                };
                let batch = tokio::select! {
                    biased;
                    next = streams.recv(), if open => {
                        match next {
                            Some(next) => current = start_attempt(next, &replay, ended).await,
                            None => open = false,
                        }
                        continue;
                    }
                    // Cancel-safe: it only waits before taking the first message.
                    b = next_batch(&mut messages, &mut buf, |msg, buf| {
                        let compress = compress_slot.as_ref().map_or(true, |s| s.swap(true, Ordering::SeqCst));
                        encode_message(&msg, if compress { encoding } else { None }, max_send, buf)
                    }) => b,
                };
                match batch {
                    Ok(end) => ended = end == BatchEnd::StreamEnded,
                    Err(status) => {
                        debug!(status = %status, "request message not sent");
                        state.set_send_error(status);
                        committed.store(true, Ordering::Release);
                        send.send_reset(h2::Reason::CANCEL);
                        return;
                    }
                }
                let chunk = buf.split().freeze();
                if let Some(r) = replay.as_mut() {
                    if !r.push(&chunk) {
                        debug!("retry buffer full: the call commits to its current attempt");
                        committed.store(true, Ordering::Release);
                        replay = None;
                    }
                }
                match send_or_switch(send, chunk, ended, &mut streams, open).await {
                    Ok(()) => {}
                    Err(Some(next)) => current = start_attempt(next, &replay, ended).await,
                    Err(None) => current = None,
                }
            }
        }
        .instrument(span),
    )
}

/// Starts a new attempt's stream: replays the buffer (and END_STREAM if the caller's
/// stream ended) on it. `None` when that fails (the attempt's response says why).
async fn start_attempt(mut next: SendStream<Bytes>, replay: &Option<ReplayBuffer>, ended: bool) -> Option<SendStream<Bytes>> {
    let Some(replay) = replay else {
        // The buffer was given up (committed) as this retry was decided: it cannot be
        // replayed, so this attempt must not go on with part of the messages.
        next.send_reset(h2::Reason::CANCEL);
        return None;
    };
    let frames = replay.frames.clone();
    for f in frames {
        body::send_data(&mut next, f, false).await.ok()?;
    }
    if ended {
        body::send_data(&mut next, Bytes::new(), true).await.ok()?;
    }
    Some(next)
}

/// Spawns the sender of a hedged streaming call: each attempt's `(index, SendStream)`
/// arrives on `streams`; a new one gets the buffer replayed, then every message goes to
/// all live attempts. Once `winner` holds an attempt's index + 1, the others are dropped
/// (reset) and buffering stops. A full buffer sets `buffer_full` (no further hedges;
/// the attempts already running go on).
#[allow(clippy::too_many_arguments)]
pub(crate) fn spawn_fanout<S, Req>(
    state: &Arc<CallState>,
    mut streams: mpsc::UnboundedReceiver<(u32, SendStream<Bytes>)>,
    messages: S,
    encoding: Option<CompressionEncoding>,
    compress_slot: Option<Arc<AtomicBool>>,
    max_send: usize,
    limits: BufferLimits,
    winner: Arc<std::sync::atomic::AtomicU32>,
    buffer_full: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()>
where
    S: Stream<Item = Req> + Send + 'static,
    Req: prost::Message + Send + 'static,
{
    let state = Arc::clone(state);
    let span = state.span.clone();
    tokio::spawn(
        async move {
            let mut messages = std::pin::pin!(messages);
            let mut buf = BytesMut::new();
            let mut replay = Some(ReplayBuffer { frames: Vec::new(), size: 0, limits });
            let mut live: Vec<(u32, SendStream<Bytes>)> = Vec::new();
            let mut ended = false;
            let mut open = true;
            loop {
                let w = winner.load(Ordering::Acquire);
                if w != 0 {
                    live.retain(|(n, _)| *n + 1 == w);
                    replay = None;
                }
                if ended || live.is_empty() {
                    // Nothing to send now: only a new attempt's stream matters.
                    if !open {
                        return;
                    }
                    match streams.recv().await {
                        Some((n, s)) => add_attempt(&mut live, n, s, &replay, ended).await,
                        None => open = false,
                    }
                    continue;
                }
                let batch = tokio::select! {
                    biased;
                    next = streams.recv(), if open => {
                        match next {
                            Some((n, s)) => add_attempt(&mut live, n, s, &replay, ended).await,
                            None => open = false,
                        }
                        continue;
                    }
                    b = next_batch(&mut messages, &mut buf, |msg, buf| {
                        let compress = compress_slot.as_ref().map_or(true, |s| s.swap(true, Ordering::SeqCst));
                        encode_message(&msg, if compress { encoding } else { None }, max_send, buf)
                    }) => b,
                };
                match batch {
                    Ok(end) => ended = end == BatchEnd::StreamEnded,
                    Err(status) => {
                        debug!(status = %status, "request message not sent");
                        state.set_send_error(status);
                        buffer_full.store(true, Ordering::Release);
                        for (_, s) in &mut live {
                            s.send_reset(h2::Reason::CANCEL);
                        }
                        return;
                    }
                }
                let chunk = buf.split().freeze();
                if let Some(r) = replay.as_mut() {
                    if !r.push(&chunk) {
                        debug!("hedging buffer full: no further hedged attempts");
                        buffer_full.store(true, Ordering::Release);
                        replay = None;
                    }
                }
                let sent = futures_util::future::join_all(
                    live.iter_mut().map(|(_, s)| body::send_data(s, chunk.clone(), ended)),
                )
                .await;
                let mut ok = sent.into_iter().map(|r| r.is_ok());
                live.retain(|_| ok.next().unwrap_or(false));
            }
        }
        .instrument(span),
    )
}

/// Adds a hedged attempt's stream after replaying the buffer on it; an attempt that
/// starts after the buffer was given up cannot get all messages and is reset.
async fn add_attempt(
    live: &mut Vec<(u32, SendStream<Bytes>)>,
    n: u32,
    s: SendStream<Bytes>,
    replay: &Option<ReplayBuffer>,
    ended: bool,
) {
    if let Some(s) = start_attempt(s, replay, ended).await {
        live.push((n, s));
    }
}
