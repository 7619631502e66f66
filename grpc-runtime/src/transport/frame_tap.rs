//! A transparent IO adapter that watches the HTTP/2 frame headers going in and out of a
//! connection, for the connection management h2's API does not expose.
//!
//! It owns: the time of the last byte read (keepalive is measured from it), the frames
//! that feed the rules of [`super::engine`] kept per connection here (inbound PINGs
//! without ACK feed the server's [`PingStrikes`], our HEADERS or DATA reset them;
//! inbound DATA feeds the [`BdpSampler`] of adaptive flow-control windows), the debug
//! data of the GOAWAY we send (h2 cannot set it, so the adapter rewrites the next
//! outbound GOAWAY that carries none, e.g. to add `too_many_pings`).
//!
//! How the bytes are written (batching, gathering) is not its business: that is
//! [`super::write_batch::WriteBatch`], the adapter below it.
//!
//! It also notices a request header block that is slow to arrive (the server's header-read
//! timeout): from the first byte of a HEADERS frame's 9-byte header (or of any frame header
//! that is still incomplete) until the payload of the frame that carries END_HEADERS (the
//! HEADERS frame itself or its last CONTINUATION) has been read completely, the block is
//! "in progress", and [`Activity::header_block_since`] says since when.
//!
//! The connection's open calls are not seen here: the gRPC layer counts them
//! ([`Activity::call_started`], a guard per call held by the server's call task and by
//! the client call's state), so that a stream that ends without a frame of its own (one
//! above the last-stream-id of a GOAWAY) ends its count with its call. The [`Activity`]
//! shares the count with the connection's owner (keepalive, idleness, ping enforcement)
//! and with [`super::write_batch`].
//!
//! On a server, a call's task ends (and drops its guard) as soon as its response is
//! queued in h2, before the connection task writes it. For write batching such a call
//! still counts until the next flush of the connection
//! ([`Activity::count_until_flushed`]): its response is what the batch is made of, and
//! the connection stays busy for its server until then.
//!
//! Only the 9-byte frame headers are parsed; payload bytes pass through unchanged (apart
//! from the one GOAWAY being rewritten). A peer's malformed bytes never panic here: h2
//! itself rejects them and closes the connection.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::engine::{BdpSampler, PingPolicy, PingStrikes, Verdict};
use super::write_batch::BusyConnections;
use crate::latch::{Signal, Signals};

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const PUSH_PROMISE: u8 = 0x5;
const CONTINUATION: u8 = 0x9;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_ACK: u8 = 0x1;

/// The client connection preface (RFC 9113 section 3.4), sent before the first frame.
const PREFACE_LEN: usize = 24;

#[derive(Debug)]
struct State {
    last_read: Instant,
    /// When the last open call ended (or the connection started).
    idle_since: Instant,
    /// Ping-strike accounting (server side).
    strikes: Option<PingStrikes>,
    /// Debug data for our next GOAWAY (boxed: rare, and this state lives per connection).
    goaway_debug: Option<Box<Bytes>>,
    /// The last GOAWAY received: error code and debug data.
    peer_goaway: Option<Box<(u32, Bytes)>>,
    /// Since when a header block (or a frame header) has been in progress, as of the end
    /// of the last read (see the module doc).
    header_since: Option<Instant>,
    /// When BDP samples run (adaptive windows).
    bdp: BdpSampler,
}

/// One open call in [`Activity`]'s `calls` word (its high 32 bits).
const OPEN_CALL: u64 = 1 << 32;

/// The calls ended but not yet flushed in [`Activity`]'s `calls` word (its low 32 bits).
/// They cannot overflow into the open calls: a connection carries fewer than 2^31
/// streams in its life (stream ids are 31 bits).
const ENDED_UNFLUSHED: u64 = OPEN_CALL - 1;

/// The open calls in a value of [`Activity`]'s `calls` word.
fn open_calls(calls: u64) -> u64 {
    calls >> 32
}

/// Activity's signals (indices into its [`Signals`]).
const SIGNAL_VIOLATION: usize = 0;
const SIGNAL_CALL_OPENED: usize = 1;
const SIGNAL_BDP_WANTED: usize = 2;

/// What the adapter has seen on one connection; shared with the connection's owner.
#[derive(Debug)]
pub(crate) struct Activity {
    state: Mutex<State>,
    /// [`Activity::violation`], [`Activity::call_opened`], [`Activity::bdp_wanted`].
    signals: Signals<3>,
    /// Set while GOAWAY debug data waits to be written (checked per write, lock-free).
    goaway_armed: AtomicBool,
    /// The open calls (counted by [`CallGuard`]s, in units of [`OPEN_CALL`]) and, with
    /// [`Activity::count_until_flushed`], the calls ended since the connection last
    /// flushed (the low 32 bits). One word, so that whether the connection is busy
    /// (either is non-zero) changes atomically.
    calls: AtomicU64,
    /// Whether ended calls count until the next flush ([`Activity::count_until_flushed`]).
    count_until_flushed: AtomicBool,
    /// Whether `State::idle_since` is kept ([`Activity::track_idle`]).
    track_idle: AtomicBool,
    /// Whether a call opening on a connection without calls raises
    /// [`Activity::call_opened`] ([`Activity::wake_on_first_call`]).
    wake_on_first_call: AtomicBool,
    /// We sent HEADERS or DATA since the last inbound PING: its strikes start afresh
    /// (grpc-go resets `pingStrikes` when it writes either).
    reset_strikes: AtomicBool,
    /// Whether `State::header_since` is set (read lock-free by the connection task).
    header_pending: AtomicBool,
    /// A header block began since the connection task last looked
    /// ([`Activity::take_header_block_start`]).
    header_started: AtomicBool,
    /// The busy connections of this connection's server or client channel.
    busy: Arc<BusyConnections>,
}

/// One open call on a connection, from its start until it ends (dropped): the server's
/// call task and the client call's state hold one. While any is alive the connection
/// has active calls (keepalive without calls, max connection idle, ping enforcement) and
/// counts as busy for its server or channel ([`BusyConnections`]).
#[derive(Debug)]
pub(crate) struct CallGuard(Arc<Activity>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.0.call_ended();
    }
}

impl Drop for Activity {
    fn drop(&mut self) {
        // Calls that ended on a connection that never flushed again: the connection is
        // gone, so it is no longer busy. (Open calls hold the activity alive.)
        if *self.calls.get_mut() != 0 {
            self.busy.leave();
        }
    }
}

impl Activity {
    /// Fresh bookkeeping; `policy` enables server-side ping enforcement.
    /// `busy` counts the busy connections of the server or client channel this
    /// connection belongs to.
    pub(crate) fn new(policy: Option<PingPolicy>, busy: Arc<BusyConnections>) -> Arc<Self> {
        let now = Instant::now();
        Arc::new(Activity {
            state: Mutex::new(State {
                last_read: now,
                idle_since: now,
                strikes: policy.map(PingStrikes::new),
                goaway_debug: None,
                peer_goaway: None,
                header_since: None,
                bdp: BdpSampler::default(),
            }),
            signals: Signals::default(),
            goaway_armed: AtomicBool::new(false),
            calls: AtomicU64::new(0),
            count_until_flushed: AtomicBool::new(false),
            reset_strikes: AtomicBool::new(false),
            track_idle: AtomicBool::new(false),
            wake_on_first_call: AtomicBool::new(false),
            header_pending: AtomicBool::new(false),
            header_started: AtomicBool::new(false),
            busy,
        })
    }

    /// Raised when the ping policy was violated (server side).
    pub(crate) fn violation(&self) -> Signal<'_> {
        self.signals.get(SIGNAL_VIOLATION)
    }

    /// Raised when a call opens on a connection that had none, once
    /// [`Activity::wake_on_first_call`] asked for it (client keepalive wakes up from
    /// dormancy).
    pub(crate) fn call_opened(&self) -> Signal<'_> {
        self.signals.get(SIGNAL_CALL_OPENED)
    }

    /// Raised when DATA arrives while no BDP sample is running (send a BDP PING).
    pub(crate) fn bdp_wanted(&self) -> Signal<'_> {
        self.signals.get(SIGNAL_BDP_WANTED)
    }

    /// Counts a call open on this connection until the returned guard is dropped.
    pub(crate) fn call_started(self: &Arc<Self>) -> CallGuard {
        let before = self.calls.fetch_add(OPEN_CALL, Ordering::AcqRel);
        if before == 0 {
            // The connection becomes busy. (A concurrent `leave`, for its last call or
            // a flush, may run first; the busy count is only off for that instant.)
            self.busy.enter();
        }
        if open_calls(before) == 0 && self.wake_on_first_call.load(Ordering::Relaxed) {
            self.call_opened().raise();
        }
        CallGuard(Arc::clone(self))
    }

    /// A call ended ([`CallGuard`] dropped).
    fn call_ended(&self) {
        let before = if self.count_until_flushed.load(Ordering::Relaxed) {
            // open - 1, ended + 1: still busy until the flush (`Activity::flushed`)
            self.calls.fetch_sub(OPEN_CALL - 1, Ordering::AcqRel)
        } else {
            let before = self.calls.fetch_sub(OPEN_CALL, Ordering::AcqRel);
            if before == OPEN_CALL {
                self.busy.leave();
            }
            before
        };
        // the last open call ended
        if open_calls(before) == 1 && self.track_idle.load(Ordering::Relaxed) {
            self.with(|s| s.idle_since = Instant::now());
        }
    }

    /// The connection flushed its writes: the calls that ended before stop counting
    /// for batching (see [`Activity::count_until_flushed`]). Called by the connection's
    /// IO, one flush at a time.
    pub(crate) fn flushed(&self) {
        let ended = self.calls.load(Ordering::Relaxed) & ENDED_UNFLUSHED;
        // Only this call lowers the ended count, so it is at least `ended` here.
        if ended != 0 && self.calls.fetch_sub(ended, Ordering::AcqRel) == ended {
            self.busy.leave();
        }
    }

    /// Counts an ended call for write batching until the connection next flushes, and
    /// keeps the connection busy for its owner until then. A server asks for it: its
    /// call task ends as soon as the response is queued, before the connection task
    /// writes it. (A client call ends once its response was read: it has nothing left
    /// to write.)
    pub(crate) fn count_until_flushed(&self) {
        self.count_until_flushed.store(true, Ordering::Relaxed);
    }

    /// Raises [`Activity::call_opened`] whenever a call opens on a connection that had
    /// none. Only a client with keepalive waits for it (a keepalive without calls is
    /// dormant until then), so no one else pays for the wakeup on every first call.
    pub(crate) fn wake_on_first_call(&self) {
        self.wake_on_first_call.store(true, Ordering::Relaxed);
    }

    /// Keeps since when the connection has had no call ([`Activity::idle_since`]): a
    /// clock read and a lock each time its last call ends, so only a server with a max
    /// connection idle asks for it (before its first call).
    pub(crate) fn track_idle(&self) {
        self.track_idle.store(true, Ordering::Relaxed);
    }

    /// Whether batching writes on this connection pays off (see
    /// [`super::write_batch`]).
    pub(crate) fn batching_pays(&self, workers: usize) -> bool {
        let calls = self.calls.load(Ordering::Relaxed);
        super::write_batch::batching_pays(
            (open_calls(calls) + (calls & ENDED_UNFLUSHED)) as usize,
            self.busy.get(),
            workers,
        )
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> Option<R> {
        self.state.lock().ok().map(|mut s| f(&mut s))
    }

    /// When the last byte was read from the peer.
    pub(crate) fn last_read(&self) -> Instant {
        self.with(|s| s.last_read).unwrap_or_else(Instant::now)
    }

    /// Number of open calls.
    pub(crate) fn active_calls(&self) -> usize {
        open_calls(self.calls.load(Ordering::Acquire)) as usize
    }

    /// `Some(since)` when no call is open (and since when, if [`Activity::track_idle`]
    /// was asked for; else since the connection started), `None` otherwise.
    pub(crate) fn idle_since(&self) -> Option<Instant> {
        if self.active_calls() > 0 {
            return None;
        }
        self.with(|s| s.idle_since)
    }

    /// Whether the ping policy was violated.
    #[cfg(test)]
    pub(crate) fn too_many_pings(&self) -> bool {
        self.with(|s| s.strikes.as_ref().is_some_and(PingStrikes::tripped))
            .unwrap_or(false)
    }

    /// Since when an inbound header block has been in progress (the first byte of its
    /// HEADERS frame's header was read, the payload of its END_HEADERS frame is not read
    /// completely yet), or a frame header is incomplete; `None` when neither.
    pub(crate) fn header_block_since(&self) -> Option<Instant> {
        if !self.header_pending.load(Ordering::Acquire) {
            return None;
        }
        self.with(|s| s.header_since).flatten()
    }

    /// Publishes the scanner's header-block start after a read that changed it.
    fn set_header_since(&self, since: Option<Instant>) {
        self.with(|s| s.header_since = since);
        self.header_pending
            .store(since.is_some(), Ordering::Release);
        if since.is_some() {
            self.header_started.store(true, Ordering::Release);
        }
    }

    /// Whether a header block began since the last call (lock-free; one load when none
    /// did), so that the connection task arms its header-read timer once per block.
    pub(crate) fn take_header_block_start(&self) -> bool {
        self.header_started.load(Ordering::Acquire)
            && self.header_started.swap(false, Ordering::AcqRel)
    }

    /// The last GOAWAY the peer sent: error code and debug data.
    pub(crate) fn peer_goaway(&self) -> Option<(u32, Bytes)> {
        self.with(|s| s.peer_goaway.as_deref().cloned()).flatten()
    }

    fn on_peer_goaway(&self, payload: &[u8]) {
        if payload.len() >= 8 {
            let code = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
            let debug = Bytes::copy_from_slice(&payload[8..]);
            self.with(|s| s.peer_goaway = Some(Box::new((code, debug))));
        }
    }

    /// Turns BDP sampling on: from now on the first DATA received while no sample is
    /// running starts one and notifies [`Activity::bdp_wanted`].
    pub(crate) fn enable_bdp(&self) {
        self.with(|s| s.bdp.enable());
    }

    /// Ends the running BDP sample (its PING was acked): the DATA bytes received since it
    /// started. The next DATA frame starts a new sample.
    pub(crate) fn take_bdp_sample(&self) -> u64 {
        self.with(|s| s.bdp.take()).unwrap_or(0)
    }

    /// Starts no new BDP sample before `until` (the last one showed the window is far
    /// from limiting: sampling again at once would only cost a PING per request).
    pub(crate) fn quiet_bdp_until(&self, until: Instant) {
        self.with(|s| s.bdp.quiet_until(until));
    }

    /// Debug data to put into the next GOAWAY we send that has none.
    pub(crate) fn set_goaway_debug_data(&self, data: Bytes) {
        self.with(|s| s.goaway_debug = Some(Box::new(data)));
        self.goaway_armed.store(true, Ordering::Release);
    }

    fn goaway_armed(&self) -> bool {
        self.goaway_armed.load(Ordering::Acquire)
    }

    fn on_read(&self, now: Instant) {
        self.with(|s| s.last_read = now);
    }

    /// An inbound frame header read at `now`: DATA feeds the BDP sample, a PING (not an
    /// ACK) the ping strikes.
    fn inbound_frame(&self, now: Instant, kind: u8, flags: u8, len: usize) {
        if kind != DATA && (kind != PING || flags & FLAG_ACK != 0) {
            return;
        }
        let (violated, bdp) = self
            .with(|s| {
                if kind == DATA {
                    return (false, s.bdp.on_data(now, len));
                }
                let Some(strikes) = s.strikes.as_mut() else {
                    return (false, false);
                };
                if self.reset_strikes.load(Ordering::Relaxed)
                    && self.reset_strikes.swap(false, Ordering::Relaxed)
                {
                    strikes.reset();
                }
                let verdict = strikes.on_ping(now, self.active_calls() > 0);
                (verdict == Verdict::TooManyPings, false)
            })
            .unwrap_or((false, false));
        if violated {
            self.violation().raise();
        }
        if bdp {
            self.bdp_wanted().raise();
        }
    }

    /// An outbound frame header: our HEADERS or DATA reset the ping strikes.
    fn outbound_frame(&self, kind: u8) {
        if (kind == HEADERS || kind == DATA) && !self.reset_strikes.load(Ordering::Relaxed) {
            self.reset_strikes.store(true, Ordering::Relaxed);
        }
    }

    /// Feeds one inbound frame header (9 bytes) as if read from the peer.
    #[cfg(test)]
    pub(crate) fn inbound_frame_for_test(&self, header: &[u8]) {
        let mut h = [0u8; 9];
        h.copy_from_slice(&header[..9]);
        let (kind, flags, _, len) = parse_header(&h);
        self.inbound_frame(Instant::now(), kind, flags, len);
    }

    fn take_goaway_debug(&self) -> Option<Bytes> {
        self.goaway_armed.store(false, Ordering::Release);
        self.with(|s| s.goaway_debug.take().map(|b| *b)).flatten()
    }
}

/// Incremental frame-header scanner (one per connection: compact, it lives as long as the
/// connection).
#[derive(Debug)]
struct Scanner {
    /// The payload of the GOAWAY being read (kept up to `GOAWAY_CAPTURE` bytes). Boxed:
    /// 8 bytes instead of a `Vec`'s 24 in every connection, for a frame seen at most once.
    #[allow(clippy::box_collection)]
    goaway: Option<Box<Vec<u8>>>,
    /// Payload bytes of the current frame still to pass (a frame's length is 24 bits).
    payload: u32,
    /// Bytes of the connection preface still to skip.
    preface: u8,
    /// Bytes of `header` seen so far.
    have: u8,
    /// A HEADERS (or PUSH_PROMISE) frame without END_HEADERS was read: CONTINUATION
    /// frames follow until one carries END_HEADERS.
    block_open: bool,
    /// The frame whose payload is being read ends a header block.
    ends_block: bool,
    /// A header block or an incomplete frame header is in progress (see the module doc);
    /// since when is kept by the [`Activity`] (this scanner lives in every connection).
    in_header: bool,
    header: [u8; 9],
}

/// How much of a received GOAWAY's payload is kept (stream id, code, debug data).
const GOAWAY_CAPTURE: usize = 8 + 256;

impl Scanner {
    fn new(preface: bool) -> Self {
        Scanner {
            goaway: None,
            payload: 0,
            preface: if preface { PREFACE_LEN as u8 } else { 0 },
            have: 0,
            block_open: false,
            ends_block: false,
            in_header: false,
            header: [0; 9],
        }
    }

    /// Feeds bytes read at `now`; calls `on_header(type, flags, stream, len)` for each
    /// complete header and `on_goaway(payload)` for each complete GOAWAY. Returns the new
    /// start of the header block in progress when it changed: `Some(Some(now))` when one
    /// began in these bytes, `Some(None)` when the one in progress ended, `None` if
    /// nothing changed.
    fn feed(
        &mut self,
        mut data: &[u8],
        now: Instant,
        mut on_header: impl FnMut(u8, u8, u32, usize),
        mut on_goaway: impl FnMut(&[u8]),
    ) -> Option<Option<Instant>> {
        let before = self.in_header;
        let mut began = false;
        while !data.is_empty() {
            if self.preface > 0 {
                let n = usize::from(self.preface).min(data.len());
                self.preface -= n as u8;
                data = &data[n..];
            } else if self.payload > 0 {
                let n = (self.payload as usize).min(data.len());
                if let Some(g) = self.goaway.as_mut() {
                    let keep = n.min(GOAWAY_CAPTURE.saturating_sub(g.len()));
                    g.extend_from_slice(&data[..keep]);
                }
                self.payload -= n as u32;
                data = &data[n..];
                if self.payload == 0 {
                    if let Some(g) = self.goaway.take() {
                        on_goaway(&g);
                    }
                    if std::mem::take(&mut self.ends_block) {
                        self.in_header = false;
                    }
                }
            } else {
                if self.have == 0 && !self.in_header {
                    self.in_header = true;
                    began = true;
                }
                let n = fill_header(&mut self.header, &mut self.have, data);
                data = &data[n..];
                if self.have == 9 {
                    self.have = 0;
                    let (kind, flags, stream, len) = parse_header(&self.header);
                    // 24 bits: always fits.
                    self.payload = len as u32;
                    self.header_frame(kind, flags, len);
                    on_header(kind, flags, stream, len);
                    if kind == GOAWAY {
                        if len == 0 {
                            on_goaway(&[]);
                        } else {
                            self.goaway = Some(Box::default());
                        }
                    }
                }
            }
        }
        match (before, self.in_header) {
            (_, true) if began => Some(Some(now)),
            (true, false) => Some(None),
            _ => None,
        }
    }

    /// Follows header blocks over a complete frame header: a HEADERS frame (or a
    /// CONTINUATION of an open block) keeps the block in progress until the payload of the frame
    /// with END_HEADERS is read; any other frame ends the wait its header began (its
    /// payload is not timed), unless a block is open (h2 rejects such a frame).
    fn header_frame(&mut self, kind: u8, flags: u8, len: usize) {
        let in_block =
            kind == HEADERS || kind == PUSH_PROMISE || (kind == CONTINUATION && self.block_open);
        if !in_block {
            if !self.block_open {
                self.in_header = false;
            }
            return;
        }
        if flags & FLAG_END_HEADERS == 0 {
            self.block_open = true;
            return;
        }
        self.block_open = false;
        if len == 0 {
            self.in_header = false;
        } else {
            self.ends_block = true;
        }
    }
}

/// Copies the next bytes of a frame header from `data` into `buf`, of which `have` bytes
/// are already filled; returns how many bytes it took. The header is complete when
/// `have` reaches 9.
fn fill_header(buf: &mut [u8; 9], have: &mut u8, data: &[u8]) -> usize {
    let at = usize::from(*have);
    let n = (9 - at).min(data.len());
    buf[at..at + n].copy_from_slice(&data[..n]);
    *have += n as u8;
    n
}

fn parse_header(h: &[u8; 9]) -> (u8, u8, u32, usize) {
    let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
    let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
    (h[3], h[4], stream, len)
}

/// Outbound state. Normally bytes are written first and scanned afterwards, so h2's
/// writes (vectored or not) reach the socket unchanged. While a GOAWAY rewrite is armed,
/// frame headers are held back until complete so that GOAWAY can get its debug data.
#[derive(Debug)]
enum Out {
    /// `n` bytes (preface or payload) still to pass.
    Pass(usize),
    /// A frame header, `have` bytes of it seen; `held`: those bytes are not written yet.
    Header { buf: [u8; 9], have: u8, held: bool },
    /// Collecting the 8-byte payload of a GOAWAY that gets debug data appended (boxed:
    /// rare, and this state lives as long as the connection).
    GoAway(Box<GoAwayRewrite>),
}

/// A GOAWAY being rewritten: its header, the payload collected so far, the debug data.
#[derive(Debug)]
struct GoAwayRewrite {
    header: [u8; 9],
    payload: BytesMut,
    debug: Bytes,
}

impl Out {
    fn header() -> Out {
        Out::Header {
            buf: [0; 9],
            have: 0,
            held: false,
        }
    }
}

/// The adapter: wraps the connection's IO, reporting to an [`Activity`].
pub(crate) struct FrameTap<IO> {
    io: IO,
    activity: Arc<Activity>,
    inbound: Scanner,
    out: Out,
    /// Bytes accepted from h2 but not yet written (a held header, a rewritten GOAWAY).
    /// Boxed: needed only around a GOAWAY that gets debug data, and this adapter lives
    /// in every connection's future (8 bytes instead of 32).
    held: Option<Box<BytesMut>>,
}

impl<IO> FrameTap<IO> {
    /// Wraps `io`. `client` says which side we are: the client writes the preface, the
    /// server reads it.
    pub(crate) fn new(io: IO, activity: Arc<Activity>, client: bool) -> Self {
        FrameTap {
            io,
            activity,
            inbound: Scanner::new(!client),
            out: if client {
                Out::Pass(PREFACE_LEN)
            } else {
                Out::header()
            },
            held: None,
        }
    }

    /// Advances the outbound state over bytes already written.
    fn advance_written(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match &mut self.out {
                Out::Pass(left) => {
                    let n = (*left).min(data.len());
                    *left -= n;
                    data = &data[n..];
                    if *left == 0 {
                        self.out = Out::header();
                    }
                }
                Out::Header { buf, have, .. } => {
                    let n = fill_header(buf, have, data);
                    data = &data[n..];
                    if *have == 9 {
                        let (kind, _, _, len) = parse_header(buf);
                        self.activity.outbound_frame(kind);
                        self.out = if len > 0 {
                            Out::Pass(len)
                        } else {
                            Out::header()
                        };
                    }
                }
                // Only the holding path (poll_write_held) is in this state.
                Out::GoAway(..) => return,
            }
        }
    }

    /// The buffer of held bytes (made when first needed).
    fn held_mut(&mut self) -> &mut BytesMut {
        self.held.get_or_insert_with(Box::default)
    }

    /// Whether the next bytes must go through the holding path.
    fn must_hold(&self) -> bool {
        match &self.out {
            Out::Header { held: true, .. } | Out::GoAway(..) => true,
            Out::Header { have: 0, .. } => self.activity.goaway_armed(),
            _ => false,
        }
    }

    /// The holding path: takes header bytes (and a GOAWAY's payload) into our buffers.
    fn take_held(&mut self, buf: &[u8]) -> usize {
        match &mut self.out {
            Out::Header { buf: h, have, held } => {
                *held = true;
                let n = fill_header(h, have, buf);
                if *have == 9 {
                    let header = *h;
                    let (kind, _, _, len) = parse_header(&header);
                    self.activity.outbound_frame(kind);
                    let debug = if kind == GOAWAY && len == 8 {
                        self.activity.take_goaway_debug()
                    } else {
                        None
                    };
                    match debug {
                        Some(debug) => {
                            self.out = Out::GoAway(Box::new(GoAwayRewrite {
                                header,
                                payload: BytesMut::with_capacity(8),
                                debug,
                            }))
                        }
                        None => {
                            self.held_mut().extend_from_slice(&header);
                            self.out = if len > 0 {
                                Out::Pass(len)
                            } else {
                                Out::header()
                            };
                        }
                    }
                }
                n
            }
            Out::GoAway(rewrite) => {
                let GoAwayRewrite {
                    header: h,
                    payload,
                    debug,
                } = &mut **rewrite;
                let n = (8 - payload.len()).min(buf.len());
                payload.extend_from_slice(&buf[..n]);
                if payload.len() == 8 {
                    let total = 8 + debug.len();
                    let held = self.held.get_or_insert_with(Box::default);
                    held.reserve(9 + total);
                    held.put_u8((total >> 16) as u8);
                    held.put_u8((total >> 8) as u8);
                    held.put_u8(total as u8);
                    held.extend_from_slice(&h[3..9]);
                    held.extend_from_slice(payload);
                    held.extend_from_slice(debug);
                    self.out = Out::header();
                }
                n
            }
            Out::Pass(_) => 0,
        }
    }
}

impl<IO: AsyncWrite + Unpin> FrameTap<IO> {
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(held) = self.held.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        while !held.is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, held))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            held.advance(n);
        }
        self.held = None;
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for FrameTap<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        let new = &buf.filled()[before..];
        if !new.is_empty() {
            let now = Instant::now();
            this.activity.on_read(now);
            let activity = &this.activity;
            let changed = this.inbound.feed(
                new,
                now,
                |kind, flags, _, len| activity.inbound_frame(now, kind, flags, len),
                |payload| activity.on_peer_goaway(payload),
            );
            if let Some(since) = changed {
                activity.set_header_since(since);
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for FrameTap<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.must_hold() {
            return Poll::Ready(Ok(this.take_held(buf)));
        }
        // While a rewrite is armed, stop at the next frame boundary so the GOAWAY's
        // header can be held.
        let len = match (&this.out, this.activity.goaway_armed()) {
            (Out::Pass(left), true) => (*left).min(buf.len()),
            _ => buf.len(),
        };
        let n = ready!(Pin::new(&mut this.io).poll_write(cx, &buf[..len]))?;
        this.advance_written(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.activity.goaway_armed() || this.must_hold() {
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map(|b| &**b)
                .unwrap_or(&[]);
            return Pin::new(this).poll_write(cx, first);
        }
        // Held bytes go first.
        ready!(this.poll_pending(cx))?;
        let n = ready!(Pin::new(&mut this.io).poll_write_vectored(cx, bufs))?;
        let mut left = n;
        for b in bufs {
            if left == 0 {
                break;
            }
            let k = left.min(b.len());
            this.advance_written(&b[..k]);
            left -= k;
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::transport::write_batch::tests::Sink;

    fn header(len: usize, kind: u8, flags: u8, stream: u32) -> Vec<u8> {
        let mut v = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        v.extend_from_slice(&stream.to_be_bytes());
        v
    }

    #[test]
    fn scanner_finds_headers_across_splits() {
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend(header(3, HEADERS, 0x4, 1));
        bytes.extend([1, 2, 3]);
        bytes.extend(header(8, PING, 0, 0));
        bytes.extend([0; 8]);
        bytes.extend(header(0, DATA, 1, 1));
        bytes.extend(header(10, GOAWAY, 0, 0));
        bytes.extend([0, 0, 0, 1, 0, 0, 0, 0xb, b'h', b'i']);
        for split in 1..bytes.len() {
            let mut s = Scanner::new(true);
            let mut seen = Vec::new();
            let mut goaways = Vec::new();
            for chunk in bytes.chunks(split) {
                s.feed(
                    chunk,
                    Instant::now(),
                    |k, f, id, len| seen.push((k, f, id, len)),
                    |g| goaways.push(g.to_vec()),
                );
            }
            assert_eq!(
                seen,
                vec![
                    (HEADERS, 4, 1, 3),
                    (PING, 0, 0, 8),
                    (DATA, 1, 1, 0),
                    (GOAWAY, 0, 0, 10)
                ],
                "split {split}"
            );
            assert_eq!(
                goaways,
                vec![vec![0, 0, 0, 1, 0, 0, 0, 0xb, b'h', b'i']],
                "split {split}"
            );
        }
    }

    /// Feeds `chunks` at times t0 + 1 s, t0 + 2 s, ...; after each, whether a header
    /// block was in progress and since which chunk's time (1-based), or 0 for none.
    fn header_since_after_each(chunks: &[Vec<u8>]) -> Vec<u32> {
        let t0 = Instant::now();
        let mut s = Scanner::new(false);
        let mut since = None;
        let mut out = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            if let Some(changed) = s.feed(
                c,
                t0 + Duration::from_secs(i as u64 + 1),
                |_, _, _, _| {},
                |_| {},
            ) {
                since = changed;
            }
            assert_eq!(since.is_some(), s.in_header);
            out.push(since.map_or(0, |t: Instant| (t - t0).as_secs() as u32));
        }
        out
    }

    #[test]
    fn scanner_times_header_blocks_from_their_first_byte_to_end_headers() {
        let mut complete = header(3, HEADERS, 0x4, 1);
        complete.extend([1, 2, 3]);
        // A whole HEADERS frame in one read, then DATA (its payload is not timed), then a
        // SETTINGS frame header in two reads.
        let mut data = header(4, DATA, 0, 1);
        data.extend([0; 2]);
        let settings = header(0, 0x4, 0, 0);
        assert_eq!(
            header_since_after_each(&[
                complete.clone(),
                data,
                vec![0; 2],
                settings[..5].to_vec(),
                settings[5..].to_vec()
            ]),
            vec![0, 0, 0, 4, 0]
        );
        // HEADERS without END_HEADERS, then CONTINUATIONs one per read, the last one with
        // END_HEADERS and its payload in two reads: in progress since the first byte.
        let mut first = header(2, HEADERS, 0, 3);
        first.extend([1, 2]);
        let mut cont = header(1, CONTINUATION, 0, 3);
        cont.push(3);
        let last = header(2, CONTINUATION, 0x4, 3);
        assert_eq!(
            header_since_after_each(&[
                first[..1].to_vec(),
                first[1..].to_vec(),
                cont,
                last,
                vec![4],
                vec![5],
                complete
            ]),
            vec![1, 1, 1, 1, 1, 0, 0]
        );
        // A frame header announcing 16 KiB of HEADERS payload, then the payload trickling.
        let mut big = header(16 * 1024, HEADERS, 0x4, 5);
        big.push(0);
        assert_eq!(
            header_since_after_each(&[big, vec![0], vec![0]]),
            vec![1, 1, 1]
        );
    }

    fn write_all(tap: &mut FrameTap<Sink>, data: &[u8], chunk: usize) {
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        for c in data.chunks(chunk) {
            let mut c = c;
            while !c.is_empty() {
                match Pin::new(&mut *tap).poll_write(&mut cx, c) {
                    Poll::Ready(Ok(n)) => c = &c[n..],
                    other => panic!("{other:?}"),
                }
            }
        }
        assert!(Pin::new(&mut *tap).poll_flush(&mut cx).is_ready());
    }

    #[test]
    fn writes_pass_through_and_goaway_gets_debug_data() {
        let mut frames = header(4, DATA, 0, 1);
        frames.extend([9, 9, 9, 9]);
        frames.extend(header(8, GOAWAY, 0, 0));
        frames.extend([0, 0, 0, 1, 0, 0, 0, 0xb]);
        frames.extend(header(0, HEADERS, 5, 3));
        for chunk in 1..frames.len() + 1 {
            for max in [1, 3, 64] {
                // unarmed: byte-identical
                let a = Activity::new(None, Default::default());
                let mut tap = FrameTap::new(
                    Sink {
                        out: Vec::new(),
                        max,
                        writes: 0,
                    },
                    Arc::clone(&a),
                    false,
                );
                write_all(&mut tap, &frames, chunk);
                assert_eq!(tap.io.out, frames, "chunk {chunk} max {max}");
                // armed: the GOAWAY carries the debug data, the rest is unchanged
                let a = Activity::new(None, Default::default());
                a.set_goaway_debug_data(Bytes::from_static(b"too_many_pings"));
                let mut tap = FrameTap::new(
                    Sink {
                        out: Vec::new(),
                        max,
                        writes: 0,
                    },
                    Arc::clone(&a),
                    false,
                );
                write_all(&mut tap, &frames, chunk);
                let mut want = header(4, DATA, 0, 1);
                want.extend([9, 9, 9, 9]);
                want.extend(header(22, GOAWAY, 0, 0));
                want.extend([0, 0, 0, 1, 0, 0, 0, 0xb]);
                want.extend(b"too_many_pings");
                want.extend(header(0, HEADERS, 5, 3));
                assert_eq!(tap.io.out, want, "chunk {chunk} max {max}");
                assert!(!a.goaway_armed());
            }
        }
    }

    #[test]
    fn busy_connections_are_counted_per_owner() {
        // Two servers (or channels) in one process: each counts its own connections with
        // open calls, and only those decide whether its connections batch.
        let server_a = Arc::new(BusyConnections::default());
        let server_b = Arc::new(BusyConnections::default());
        let a1 = Activity::new(None, Arc::clone(&server_a));
        let a2 = Activity::new(None, Arc::clone(&server_a));
        let b1 = Activity::new(None, Arc::clone(&server_b));
        let a1_1 = a1.call_started();
        let a1_3 = a1.call_started();
        assert_eq!(server_a.get(), 1);
        let a2_1 = a2.call_started();
        assert_eq!((server_a.get(), server_b.get()), (2, 0));
        // two busy connections on one worker: a1 batches
        assert!(a1.batching_pays(1));
        let b1_calls = [b1.call_started(), b1.call_started()];
        assert!(
            !b1.batching_pays(1),
            "the other server's busy connections do not count"
        );
        // the count follows calls ending
        drop(a1_1);
        assert_eq!(server_a.get(), 2);
        drop(a1_3);
        assert_eq!(server_a.get(), 1);
        drop(a2_1);
        assert_eq!(server_a.get(), 0);
        drop(b1_calls);
        assert_eq!(server_b.get(), 0);
    }

    #[test]
    fn strikes_and_reset() {
        let a = Activity::new(
            Some(PingPolicy {
                min_time: Duration::from_secs(60),
                permit_without_calls: true,
            }),
            Default::default(),
        );
        for _ in 0..3 {
            a.inbound_frame(Instant::now(), PING, 0, 8);
        }
        assert!(!a.too_many_pings(), "first ping is free, then 2 strikes");
        a.outbound_frame(DATA);
        for _ in 0..3 {
            a.inbound_frame(Instant::now(), PING, 0, 8);
        }
        assert!(!a.too_many_pings(), "sending DATA reset the strikes");
        a.inbound_frame(Instant::now(), PING, 0, 8);
        assert!(a.too_many_pings());
        // acks never count
        let b = Activity::new(
            Some(PingPolicy {
                min_time: Duration::from_secs(60),
                permit_without_calls: true,
            }),
            Default::default(),
        );
        for _ in 0..10 {
            b.inbound_frame(Instant::now(), PING, FLAG_ACK, 8);
        }
        assert!(!b.too_many_pings());
    }

    #[test]
    fn bdp_pings_after_our_data_are_never_strikes() {
        // A grpc-go client sends a BDP PING whenever our DATA reaches it: each such PING
        // follows DATA we sent, so strikes reset every time (as grpc-go's server does).
        let a = Activity::new(
            Some(PingPolicy {
                min_time: Duration::from_secs(300),
                permit_without_calls: false,
            }),
            Default::default(),
        );
        let _call = a.call_started();
        for _ in 0..100 {
            a.outbound_frame(DATA);
            a.inbound_frame(Instant::now(), PING, 0, 8);
        }
        assert!(!a.too_many_pings());
    }

    #[test]
    fn bdp_sampling_counts_data_between_pings() {
        let a = Activity::new(None, Default::default());
        a.inbound_frame(Instant::now(), DATA, 0, 1000);
        assert_eq!(a.take_bdp_sample(), 0, "off until enabled");
        a.enable_bdp();
        a.inbound_frame(Instant::now(), DATA, 0, 1000);
        a.inbound_frame(Instant::now(), DATA, 0, 500);
        a.inbound_frame(Instant::now(), PING, FLAG_ACK, 8);
        // One signal for the sample start (kept until taken).
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        assert!(a.bdp_wanted().poll_take(&mut cx).is_ready());
        assert!(
            a.bdp_wanted().poll_take(&mut cx).is_pending(),
            "no second signal while sampling"
        );
        assert_eq!(a.take_bdp_sample(), 1500);
        a.inbound_frame(Instant::now(), DATA, 0, 7);
        assert!(
            a.bdp_wanted().poll_take(&mut cx).is_ready(),
            "the next DATA starts a new sample"
        );
        assert_eq!(a.take_bdp_sample(), 7);
        // While quiet, DATA neither starts a sample nor counts towards one.
        a.quiet_bdp_until(Instant::now() + Duration::from_secs(60));
        a.inbound_frame(Instant::now(), DATA, 0, 9);
        assert!(
            a.bdp_wanted().poll_take(&mut cx).is_pending(),
            "no sample while quiet"
        );
        assert_eq!(a.take_bdp_sample(), 0);
        a.quiet_bdp_until(Instant::now());
        a.inbound_frame(Instant::now(), DATA, 0, 11);
        assert!(
            a.bdp_wanted().poll_take(&mut cx).is_ready(),
            "sampling resumes after the quiet time"
        );
        assert_eq!(a.take_bdp_sample(), 11);
    }

    #[tokio::test(start_paused = true)]
    async fn calls_are_counted_by_their_guards() {
        // Client and server alike: counting ended calls until the flush (for batching)
        // does not keep them active for keepalive or idleness.
        for until_flushed in [false, true] {
            let a = Activity::new(None, Default::default());
            a.track_idle();
            if until_flushed {
                a.count_until_flushed();
            }
            let t0 = Instant::now();
            assert_eq!(a.idle_since(), Some(t0));
            let c1 = a.call_started();
            let c2 = a.call_started();
            assert_eq!((a.active_calls(), a.idle_since()), (2, None));
            tokio::time::advance(Duration::from_secs(5)).await;
            drop(c1);
            assert_eq!((a.active_calls(), a.idle_since()), (1, None));
            tokio::time::advance(Duration::from_secs(5)).await;
            drop(c2);
            assert_eq!(a.active_calls(), 0);
            assert_eq!(a.idle_since(), Some(t0 + Duration::from_secs(10)));
            // Frames do not open or close calls: HEADERS and RST_STREAM pass unnoticed.
            let mut headers = header(3, HEADERS, 0x4, 1);
            headers.extend([1, 2, 3]);
            a.inbound_frame_for_test(&headers);
            assert_eq!(a.active_calls(), 0);
            a.flushed();
            assert_eq!(a.idle_since(), Some(t0 + Duration::from_secs(10)));
        }
    }

    #[test]
    fn a_servers_ended_calls_count_until_the_next_flush() {
        // A server's call task ends once its response is queued, before the connection
        // task writes it: that response still counts for batching, and its connection
        // stays busy, until the connection flushes. (Without this, a server on one worker
        // with 4 connections of 8 calls wrote each response on its own: 1.00 writes per
        // call instead of 0.72.)
        let server = Arc::new(BusyConnections::default());
        let a = Activity::new(None, Arc::clone(&server));
        let b = Activity::new(None, Arc::clone(&server));
        a.count_until_flushed();
        b.count_until_flushed();
        let a_calls = [a.call_started(), a.call_started()];
        let b_call = b.call_started();
        assert!(a.batching_pays(1));
        // a's two responses are queued; b's handler still runs
        drop(a_calls);
        assert_eq!((a.active_calls(), server.get()), (0, 2));
        assert!(a.batching_pays(1), "the queued responses are batched");
        a.flushed();
        assert_eq!(server.get(), 1);
        assert!(!a.batching_pays(1));
        a.flushed();
        assert_eq!(server.get(), 1, "a second flush changes nothing");
        // a call opening after the flush makes the connection busy again
        let a_call = a.call_started();
        assert_eq!(server.get(), 2);
        drop(a_call);
        drop(b_call);
        assert_eq!(server.get(), 2);
        b.flushed();
        assert_eq!(server.get(), 1);
        // a connection that ends before its next flush is not busy any more
        drop(a);
        assert_eq!(server.get(), 0);
        drop(b);
        assert_eq!(server.get(), 0);

        // A client's call ends once its response was read: it stops counting at once.
        let channel = Arc::new(BusyConnections::default());
        let c = Activity::new(None, Arc::clone(&channel));
        let calls = [c.call_started(), c.call_started()];
        assert_eq!(channel.get(), 1);
        drop(calls);
        assert_eq!(channel.get(), 0);
        c.flushed();
        assert_eq!(channel.get(), 0);
    }

    #[test]
    fn a_ping_without_calls_is_a_strike_unless_permitted() {
        let policy = |permit_without_calls| PingPolicy {
            min_time: Duration::from_millis(1),
            permit_without_calls,
        };
        // No call open: pings closer than 2 hours are strikes.
        let a = Activity::new(Some(policy(false)), Default::default());
        for _ in 0..4 {
            a.inbound_frame(Instant::now(), PING, 0, 8);
        }
        assert!(a.too_many_pings());
        // With a call open, `min_time` applies.
        let a = Activity::new(Some(policy(false)), Default::default());
        let _call = a.call_started();
        std::thread::sleep(Duration::from_millis(2));
        for _ in 0..4 {
            a.inbound_frame(Instant::now(), PING, 0, 8);
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(!a.too_many_pings());
    }
}
