//! One HTTP/2 connection: handshake with our SETTINGS, accept streams and hand each to
//! its own task ([`super::dispatch`]), keepalive and ping enforcement, BDP windows, max
//! connection idle/age, the header-read timeout, GOAWAY and the server's shutdown stages.

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::dispatch::handle_stream;
use super::tls::PeerCertificates;
use super::{ConnGuard, Shared, ABORT, FORCE, GRACEFUL, RUNNING};
use crate::latch::Latch;
use crate::transport::bdp;
use crate::transport::frame_tap::{Activity, FrameTap, PingPolicy};
use crate::transport::jitter;
use crate::transport::write_batch::WriteBatch;

/// A peer that connects but never sends the HTTP/2 preface is dropped after this (the
/// default header-read timeout, `super::DEFAULT_HEADER_READ_TIMEOUT`, is the same).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// Keepalive, ping enforcement and age/idle limits of every connection (gRFC A8, A9).
#[derive(Debug, Clone)]
pub(crate) struct ConnManagement {
    pub(crate) keepalive_time: Option<Duration>,
    pub(crate) keepalive_timeout: Duration,
    pub(crate) permit_keepalive_time: Duration,
    pub(crate) permit_keepalive_without_calls: bool,
    pub(crate) max_connection_idle: Option<Duration>,
    pub(crate) max_connection_age: Option<Duration>,
    pub(crate) max_connection_age_grace: Option<Duration>,
    /// A request header block (HEADERS + CONTINUATIONs) begun must be complete within
    /// this, else the connection is closed (`None`: no limit).
    pub(crate) header_read_timeout: Option<Duration>,
    /// BDP-based adaptive windows.
    pub(crate) adaptive_window: bool,
    /// The configured initial stream window (adaptive windows never go below it).
    pub(crate) stream_window: u32,
    /// The configured initial connection window.
    pub(crate) connection_window: u32,
}

/// HTTP/2's default window (RFC 9113), h2's default for both windows.
pub(crate) const DEFAULT_WINDOW: u32 = 65_535;

impl Default for ConnManagement {
    fn default() -> Self {
        ConnManagement {
            keepalive_time: Some(Duration::from_secs(2 * 60 * 60)),
            keepalive_timeout: Duration::from_secs(20),
            permit_keepalive_time: Duration::from_secs(5 * 60),
            permit_keepalive_without_calls: false,
            max_connection_idle: None,
            max_connection_age: None,
            max_connection_age_grace: None,
            header_read_timeout: Some(super::DEFAULT_HEADER_READ_TIMEOUT),
            adaptive_window: true,
            stream_window: DEFAULT_WINDOW,
            connection_window: DEFAULT_WINDOW,
        }
    }
}

/// After GOAWAY(ENHANCE_YOUR_CALM) the connection is dropped if h2 has not closed it by then.
const ABRUPT_CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// After an idle GOAWAY, the connection is dropped if it has not closed by then (unless
/// a max-age grace is configured, which applies instead).
const IDLE_CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the accept branch of the connection loop brings back.
enum Turn<T> {
    /// h2's next stream (or its end, or its error).
    Accepted(T),
    /// No stream is ready, but a header block is in progress and no header-read timer is
    /// armed: the loop turns to arm it.
    HeaderBlock,
}

/// The earliest of the given deadlines.
fn earliest(deadlines: &[Option<Instant>]) -> Option<Instant> {
    deadlines.iter().flatten().min().copied()
}

/// When the header block in progress must be complete, if the connection task armed its
/// timer for one (`armed`) and a block is still in progress.
fn header_deadline(armed: bool, activity: &Activity, shared: &Shared) -> Option<Instant> {
    if !armed {
        return None;
    }
    let limit = shared.conn_mgmt.header_read_timeout?;
    activity
        .header_block_since()
        .map(|since| crate::timeout::instant_after(since, limit))
}

/// When the next keepalive PING is due: `time` after the last byte read.
fn keepalive_due(activity: &Activity, time: Duration) -> Instant {
    crate::timeout::instant_after(activity.last_read(), time)
}

/// The PING in flight (h2 allows one user PING at a time): when it was sent and whom its
/// answer serves. A BDP PING's answer also counts as a keepalive answer.
#[derive(Debug, Clone, Copy)]
struct PingOut {
    sent: Instant,
    bdp: bool,
    keepalive: bool,
}

/// After accepting this many streams in a row (without h2 running out of received ones),
/// the connection task yields: the calls spawned so far run, and the task's next turn
/// writes their responses before it accepts more.
///
/// Without it, a read that brings many requests (a pipelining client: h2load -m100, a
/// busy channel) has every call run before the first response goes out, so the peer sits
/// idle until the whole batch is done, then the server sits idle while the peer answers:
/// the two take turns. Writing every 16 calls' responses lets the peer work on them while
/// the server runs the next 16 (measured with h2load -c1 -m100: 94-100k req/s before,
/// 125-166k after). Fewer calls per read than this are unaffected.
const ACCEPT_BURST: u32 = 16;

/// Serves one connection until it closes or the server stops.
///
/// A plain function returning an `async move` block rather than an `async fn`: an
/// `async fn` keeps each argument twice in its future (the argument and the local it is
/// moved into), and this future lives as long as the connection.
#[allow(clippy::manual_async_fn)]
pub(crate) fn serve_connection<IO>(
    io: IO,
    peer: Option<SocketAddr>,
    peer_certs: Option<PeerCertificates>,
    shared: Arc<Shared>,
    shutdown: ConnGuard,
) -> impl std::future::Future<Output = ()> + Send + 'static
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async move {
        let activity = Activity::new(
            Some(PingPolicy {
                min_time: shared.conn_mgmt.permit_keepalive_time,
                permit_without_calls: shared.conn_mgmt.permit_keepalive_without_calls,
            }),
            Arc::clone(&shared.busy_connections),
        );
        if shared.conn_mgmt.max_connection_idle.is_some() {
            activity.track_idle();
        }
        let io = FrameTap::new(
            WriteBatch::new(io, Arc::clone(&activity)),
            Arc::clone(&activity),
            false,
        );
        // Not boxed: a box freed after the handshake leaves a hole of touched memory beside
        // this connection's buffers (measured: 0.5 KiB more RSS per idle connection), while
        // inline its state shares the task's allocation with the connection's later state.
        let handshake =
            tokio::time::timeout(HANDSHAKE_TIMEOUT, shared.h2.handshake::<_, Bytes>(io));
        let mut conn = match handshake.await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::debug!(?peer, "HTTP/2 handshake failed: {e}");
                return;
            }
            Err(_) => {
                tracing::debug!(?peer, "HTTP/2 handshake timed out");
                return;
            }
        };
        // Calls of this connection are cancelled when the server's grace period ends or when
        // this connection's max-age grace ends.
        // Set (to 1) when the connection's calls are to be cancelled.
        let force = Arc::new(Latch::default());
        // Keepalive and the BDP estimator share the PING handle, owned by this task: one
        // PING at a time, its answer polled here (no task, lock or future per PING).
        let mut ping = conn.ping_pong();
        let mut ping_out: Option<PingOut> = None;
        // Adaptive windows: the estimate, sampled by this task.
        let mut bdp_est = match (shared.conn_mgmt.adaptive_window, &ping) {
            (true, Some(_)) => {
                activity.enable_bdp();
                Some(bdp::Estimator::new(shared.conn_mgmt.stream_window))
            }
            _ => None,
        };
        // Keepalive: when the next PING is due (measured from the last byte read; checked
        // again when the time comes), and by when a PING sent must be answered.
        // (`shared.conn_mgmt` is read where needed rather than kept in locals: this
        // future lives as long as the connection.)
        // `keepalive_at` is when the next PING is due, or while `awaiting_pong`, by when the
        // PING sent must be answered (one slot for two instants that never coexist).
        let mut awaiting_pong = false;
        // One timer for keepalive, max age, max idle, the age grace and the abrupt-close
        // limit: it is re-armed only when the earliest of them changes, not per stream.
        // `armed`: the timer's deadline is the earliest of them (not armed: none is set).
        let timer = tokio::time::sleep_until(Instant::now());
        tokio::pin!(timer);
        let mut armed = false;
        // In a block: a local still in scope at an await is kept in this future, which
        // lives as long as the connection.
        let (mut keepalive_at, mut age_at, mut idle_check) = {
            let started = Instant::now();
            (
                shared
                    .conn_mgmt
                    .keepalive_time
                    .filter(|_| ping.is_some())
                    .map(|time| crate::timeout::instant_after(started, time)),
                shared
                    .conn_mgmt
                    .max_connection_age
                    .map(|age| crate::timeout::instant_after(started, jitter(age, 0.1))),
                shared
                    .conn_mgmt
                    .max_connection_idle
                    .map(|idle| crate::timeout::instant_after(started, idle)),
            )
        };
        // Once max age (or idle) drained the connection, `age_at` is when the grace period
        // ends (`in_grace`): again one slot for two instants that never coexist. Every slot
        // counts: this future lives as long as the connection (see the allocation-class
        // test below).
        let mut in_grace = false;
        let mut abrupt_at: Option<Instant> = None;
        // A header block is in progress and the timer covers it (its deadline is computed
        // from the block's start, kept by `activity`): armed on the first turn after a
        // block began, checked (and moved to a later block) when it is due.
        let mut header_armed = false;
        let mut going_away = false;
        // The server's shutdown stage this connection has acted on.
        let mut stage = RUNNING;
        // The wait for the next stage lives across turns of the loop: made in the
        // `select!`, it would register with the server's `Notify` and deregister again on
        // every turn (two lock round trips per wakeup of the connection).
        let next_stage = shutdown.past(stage);
        tokio::pin!(next_stage);
        // Streams accepted since h2 last had none ready (see [`ACCEPT_BURST`]).
        let mut burst: u32 = 0;
        loop {
            {
                let header_at = header_deadline(header_armed, &activity, &shared);
                let grace_at = age_at.filter(|_| in_grace);
                let next = if going_away {
                    earliest(&[keepalive_at, grace_at, abrupt_at, header_at])
                } else {
                    earliest(&[keepalive_at, age_at, idle_check, abrupt_at, header_at])
                };
                if next != armed.then(|| timer.deadline()) {
                    if let Some(at) = next {
                        timer.as_mut().reset(at);
                    }
                    armed = next.is_some();
                }
            }
            tokio::select! {
                turn = std::future::poll_fn(|cx| {
                    if burst >= ACCEPT_BURST {
                        // Yield: the task is woken now and runs again after the calls.
                        burst = 0;
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    let accepted = conn.poll_accept(cx);
                    match accepted {
                        Poll::Ready(Some(Ok(_))) => burst += 1,
                        Poll::Pending => {
                            burst = 0;
                            // A header block that h2 is still reading began in this poll
                            // (it arrives inside `poll_accept`): noticed lock-free.
                            if activity.take_header_block_start() {
                                return Poll::Ready(Turn::HeaderBlock);
                            }
                        }
                        Poll::Ready(_) => {}
                    }
                    accepted.map(Turn::Accepted)
                }) => match turn {
                    Turn::HeaderBlock => header_armed = shared.conn_mgmt.header_read_timeout.is_some(),
                    Turn::Accepted(Some(Ok((req, mut respond)))) => {
                        // A stream the client reset before we got to it (a cancelled call,
                        // or a rapid-reset attack) is dropped here: no task, no parsing.
                        if !already_reset(&mut respond) {
                            let call = activity.call_started();
                            tokio::spawn(handle_stream(req, respond, peer, peer_certs.clone(), shared.clone(), Arc::clone(&force), call));
                        }
                    }
                    Turn::Accepted(Some(Err(e))) => {
                        tracing::debug!(?peer, "connection error: {e}");
                        break;
                    }
                    Turn::Accepted(None) => break,
                },
                now = &mut next_stage, if stage < ABORT => {
                    stage = now;
                    next_stage.set(shutdown.past(stage));
                    if stage >= GRACEFUL && !going_away {
                        going_away = true;
                        conn.graceful_shutdown();
                    }
                    if stage >= FORCE {
                        force.set(1);
                    }
                    if stage >= ABORT {
                        tracing::debug!(?peer, "server stopped; dropping the connection");
                        break;
                    }
                }
                () = std::future::poll_fn(|cx| activity.violation().poll_take(cx)), if abrupt_at.is_none() => {
                    tracing::warn!(?peer, "client sent too many pings: GOAWAY(ENHANCE_YOUR_CALM, too_many_pings)");
                    activity.set_goaway_debug_data(Bytes::from_static(b"too_many_pings"));
                    conn.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM);
                    abrupt_at = Some(Instant::now() + ABRUPT_CLOSE_TIMEOUT);
                    going_away = true;
                }
                () = std::future::poll_fn(|cx| activity.bdp_wanted().poll_take(cx)), if bdp_est.is_some() && ping_out.is_none() => {
                    if let Some(pp) = ping.as_mut() {
                        match pp.send_ping(h2::Ping::opaque()) {
                            Ok(()) => ping_out = Some(PingOut { sent: Instant::now(), bdp: true, keepalive: false }),
                            // The connection is ending; stop sampling.
                            Err(_) => bdp_est = None,
                        }
                    }
                }
                pong = std::future::poll_fn(|cx| match ping.as_mut() {
                    Some(pp) => pp.poll_pong(cx),
                    None => Poll::Pending,
                }), if ping_out.is_some() => {
                    let Some(out) = ping_out.take() else { continue };
                    if pong.is_err() {
                        // The connection is ending: no more PINGs of either kind.
                        ping = None;
                        bdp_est = None;
                        keepalive_at = None;
                        awaiting_pong = false;
                        continue;
                    }
                    if out.bdp {
                        if let Some(est) = bdp_est.as_mut() {
                            let sample = (activity.take_bdp_sample(), out.sent.elapsed());
                            if let Some(window) = bdp::grow(est, &activity, sample) {
                                conn.set_target_window_size(bdp::connection_window(window, shared.conn_mgmt.connection_window));
                                if let Err(e) = conn.set_initial_window_size(window) {
                                    tracing::debug!(?peer, "raising the stream window to {window} failed: {e}");
                                }
                            }
                        }
                    }
                    if out.keepalive {
                        awaiting_pong = false;
                        keepalive_at = shared.conn_mgmt.keepalive_time.map(|time| keepalive_due(&activity, time));
                    }
                }
                _ = &mut timer, if armed => {
                    let now = Instant::now();
                    let due = |at: Option<Instant>| at.is_some_and(|at| at <= now);
                    if due(abrupt_at) {
                        break;
                    }
                    if due(header_deadline(header_armed, &activity, &shared)) {
                        let limit = shared.conn_mgmt.header_read_timeout.unwrap_or(Duration::MAX);
                        // The block in progress now (the one the timer was armed for may
                        // have ended and a later one begun).
                        let header_at = activity.header_block_since().map(|since| crate::timeout::instant_after(since, limit));
                        header_armed = header_at.is_some();
                        if header_at.is_some_and(|at| at <= now) && abrupt_at.is_none() {
                            // Only this connection goes: an abrupt GOAWAY, then h2 closes
                            // it once written, with any call still on it (a connection
                            // stalled inside a header block this long carries none well).
                            tracing::warn!(?peer, timeout = ?limit, "request header block not complete within the header read timeout: GOAWAY and close");
                            activity.set_goaway_debug_data(Bytes::from_static(b"header_read_timeout"));
                            conn.abrupt_shutdown(h2::Reason::NO_ERROR);
                            abrupt_at = Some(Instant::now() + ABRUPT_CLOSE_TIMEOUT);
                            going_away = true;
                            header_armed = false;
                        }
                    }
                    if in_grace && due(age_at) {
                        tracing::debug!(?peer, "max connection age grace over; closing the connection");
                        force.set(1);
                        break;
                    }
                    if awaiting_pong && due(keepalive_at) {
                        tracing::debug!(?peer, "keepalive PING not answered in time; closing the connection");
                        break;
                    }
                    if !awaiting_pong && due(keepalive_at) {
                        if let Some(time) = shared.conn_mgmt.keepalive_time {
                            let at = keepalive_due(&activity, time);
                            if at > now {
                                keepalive_at = Some(at);
                            } else {
                                // No new PING is due while one is out; its answer re-arms it.
                                keepalive_at = Some(crate::timeout::instant_after(now, shared.conn_mgmt.keepalive_timeout));
                                awaiting_pong = true;
                                match (ping_out.as_mut(), ping.as_mut()) {
                                    // A BDP PING is out: its answer counts.
                                    (Some(out), _) => out.keepalive = true,
                                    (None, Some(pp)) => match pp.send_ping(h2::Ping::opaque()) {
                                        Ok(()) => ping_out = Some(PingOut { sent: now, bdp: false, keepalive: true }),
                                        Err(_) => (keepalive_at, awaiting_pong) = (None, false),
                                    },
                                    (None, None) => (keepalive_at, awaiting_pong) = (None, false),
                                }
                            }
                        }
                    }
                    if !going_away && due(age_at) {
                        tracing::debug!(?peer, "max connection age reached; draining the connection");
                        going_away = true;
                        conn.graceful_shutdown();
                        age_at = shared.conn_mgmt.max_connection_age_grace.map(|g| crate::timeout::instant_after(now, g));
                        in_grace = true;
                    } else if !going_away && due(idle_check) {
                        let idle = shared.conn_mgmt.max_connection_idle.unwrap_or(Duration::MAX);
                        match activity.idle_since() {
                            Some(since) if crate::timeout::instant_after(since, idle) <= now => {
                                tracing::debug!(?peer, "max connection idle reached; closing the connection");
                                idle_check = None;
                                going_away = true;
                                conn.graceful_shutdown();
                                // A client that never acks the GOAWAY's PING must not hold the
                                // connection open forever.
                                age_at = Some(crate::timeout::instant_after(now, shared.conn_mgmt.max_connection_age_grace.unwrap_or(IDLE_CLOSE_TIMEOUT)));
                                in_grace = true;
                            }
                            Some(since) => idle_check = Some(crate::timeout::instant_after(since, idle)),
                            None => idle_check = Some(crate::timeout::instant_after(now, idle)),
                        }
                    }
                    // The timer fired: re-arm it on the next turn even if `next` is unchanged.
                    armed = false;
                }
            }
        }
    }
}

/// Whether the client already reset this stream (checked without registering a wakeup).
fn already_reset(respond: &mut h2::server::SendResponse<Bytes>) -> bool {
    let mut cx = std::task::Context::from_waker(futures_util::task::noop_waker_ref());
    respond.poll_reset(&mut cx).is_ready()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the value `f` returns, without calling it.
    fn returned_size<A, B, C, D, E, F>(_: fn(A, B, C, D, E) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    #[test]
    #[cfg_attr(
        debug_assertions,
        ignore = "release builds lay the future out tighter; run with --release"
    )]
    fn the_connection_task_stays_in_its_allocation_class() {
        // tokio's task cell is the future plus 104 bytes, aligned to 128: up to 1,944
        // bytes of future it is 2,048 bytes per connection, one byte more makes it 2,176.
        // (Every idle connection holds one; tonic's is 2,432.) Locals in scope at an
        // await, futures built inside `select!` and `async fn` arguments all count.
        let size = returned_size(serve_connection::<tokio::net::TcpStream>);
        assert!(size <= 1944, "the connection future grew to {size} bytes");
    }
}
