//! One HTTP/2 connection: handshake with our SETTINGS, accept streams and hand each to
//! its own task ([`super::dispatch`]), the header-read timeout, GOAWAY and the server's
//! shutdown stages; and it drives the connection's [`Engine`] (keepalive, ping
//! enforcement, BDP windows, max connection idle/age), whose rules live in
//! `transport/engine.rs`.

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
use crate::transport::engine::{Action, Close, Drain, Engine, Keepalive, PingPolicy, Rules};
use crate::transport::frame_tap::{Activity, FrameTap};
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
    /// The rules every connection's [`Engine`] follows, made from the fields above when
    /// the server is built ([`ConnManagement::seal`]).
    pub(crate) rules: Rules,
}

impl ConnManagement {
    /// Makes [`ConnManagement::rules`] from the settings (once they are final).
    pub(crate) fn seal(&mut self) {
        self.rules = Rules {
            keepalive: self.keepalive_time.map(|time| Keepalive {
                time,
                timeout: self.keepalive_timeout,
                // A9: the server pings whether or not calls are open.
                without_calls: true,
            }),
            max_idle: self.max_connection_idle,
            max_age: self.max_connection_age,
            // grpc-go: +-10%, so that connections made together do not drain together.
            age_jitter: 0.1,
            age_grace: self.max_connection_age_grace,
            bdp_window: self.adaptive_window.then_some(self.stream_window),
        };
    }
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
            rules: Rules::default(),
        }
    }
}

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
        activity.count_until_flushed();
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
        // The state of the connection's rules (the rules themselves stay in `shared`:
        // this future lives as long as the connection).
        let mut engine = Engine::new(&shared.conn_mgmt.rules, Instant::now(), ping.is_some());
        if engine.samples_bdp() {
            activity.enable_bdp();
        }
        // One timer for the engine's deadlines and the header-read timeout: it is re-armed
        // only when the earliest of them changes, not per stream.
        // `armed`: the timer's deadline is the earliest of them (not armed: none is set).
        let timer = tokio::time::sleep_until(Instant::now());
        tokio::pin!(timer);
        let mut armed = false;
        // A header block is in progress and the timer covers it (its deadline is computed
        // from the block's start, kept by `activity`): armed on the first turn after a
        // block began, checked (and moved to a later block) when it is due.
        let mut header_armed = false;
        // The server's shutdown stage this connection has acted on.
        let mut stage = RUNNING;
        // The wait for the next stage lives across turns of the loop: made in the
        // `select!`, it would register with the server's `Notify` and deregister again on
        // every turn (two lock round trips per wakeup of the connection).
        let next_stage = shutdown.past(stage);
        tokio::pin!(next_stage);
        // Streams accepted since h2 last had none ready (see [`ACCEPT_BURST`]).
        let mut burst: u32 = 0;
        'conn: loop {
            {
                let header_at = header_deadline(header_armed, &activity, &shared);
                let next = earliest(&[
                    engine.next_deadline(&shared.conn_mgmt.rules, activity.active_calls()),
                    header_at,
                ]);
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
                    if stage >= GRACEFUL && !engine.is_going_away() {
                        engine.go_away();
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
                () = std::future::poll_fn(|cx| activity.violation().poll_take(cx)), if !engine.is_closing_abruptly() => {
                    tracing::warn!(?peer, "client sent too many pings: GOAWAY(ENHANCE_YOUR_CALM, too_many_pings)");
                    activity.set_goaway_debug_data(Bytes::from_static(b"too_many_pings"));
                    conn.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM);
                    engine.close_abruptly(Instant::now());
                }
                () = std::future::poll_fn(|cx| activity.bdp_wanted().poll_take(cx)), if engine.wants_bdp_ping() => {
                    bdp::send_sample_ping(&mut engine, ping.as_mut());
                }
                pong = std::future::poll_fn(|cx| match ping.as_mut() {
                    Some(pp) => pp.poll_pong(cx),
                    None => Poll::Pending,
                }), if engine.ping_in_flight() => {
                    if let Some(window) = bdp::on_pong(&mut engine, &shared.conn_mgmt.rules, &activity, &mut ping, pong) {
                        conn.set_target_window_size(bdp::connection_window(window, shared.conn_mgmt.connection_window));
                        if let Err(e) = conn.set_initial_window_size(window) {
                            tracing::debug!(?peer, "raising the stream window to {window} failed: {e}");
                        }
                    }
                }
                _ = &mut timer, if armed => {
                    let now = Instant::now();
                    if header_deadline(header_armed, &activity, &shared).is_some_and(|at| at <= now) {
                        let limit = shared.conn_mgmt.header_read_timeout.unwrap_or(Duration::MAX);
                        // The block in progress now (the one the timer was armed for may
                        // have ended and a later one begun).
                        let header_at = activity.header_block_since().map(|since| crate::timeout::instant_after(since, limit));
                        header_armed = header_at.is_some();
                        if header_at.is_some_and(|at| at <= now) && !engine.is_closing_abruptly() {
                            // Only this connection goes: an abrupt GOAWAY, then h2 closes
                            // it once written, with any call still on it (a connection
                            // stalled inside a header block this long carries none well).
                            tracing::warn!(?peer, timeout = ?limit, "request header block not complete within the header read timeout: GOAWAY and close");
                            activity.set_goaway_debug_data(Bytes::from_static(b"header_read_timeout"));
                            conn.abrupt_shutdown(h2::Reason::NO_ERROR);
                            engine.close_abruptly(now);
                            header_armed = false;
                        }
                    }
                    let (last_read, calls, idle_since) = (activity.last_read(), activity.active_calls(), activity.idle_since());
                    while let Some(action) = engine.poll_timer(&shared.conn_mgmt.rules, now, last_read, calls, idle_since) {
                        match action {
                            Action::SendPing => {
                                let sent = ping.as_mut().is_some_and(|pp| pp.send_ping(h2::Ping::opaque()).is_ok());
                                if !sent {
                                    engine.pings_failed();
                                }
                            }
                            Action::Drain(why) => {
                                match why {
                                    Drain::MaxAge => tracing::debug!(?peer, "max connection age reached; draining the connection"),
                                    Drain::Idle => tracing::debug!(?peer, "max connection idle reached; closing the connection"),
                                }
                                conn.graceful_shutdown();
                            }
                            Action::Close(why) => {
                                match why {
                                    Close::GraceOver => {
                                        tracing::debug!(?peer, "max connection age grace over; closing the connection");
                                        force.set(1);
                                    }
                                    Close::KeepaliveTimeout => tracing::debug!(?peer, "keepalive PING not answered in time; closing the connection"),
                                    Close::AbruptTimeout => {}
                                }
                                break 'conn;
                            }
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
