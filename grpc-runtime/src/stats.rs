//! Per-call stats hooks (crate-internal): what a stats plugin (today
//! [`crate::otel`], behind the `opentelemetry` feature) hears about client calls and
//! their attempts and about server calls. The shape is gRFC A66's `CallTracer` /
//! `CallAttemptTracer` / `ServerCallTracer`.
//!
//! Cost when no plugin is installed: the channel's and the server's handler is an
//! `Option`, checked once when a call starts; a call without a tracer carries `None`
//! and its attempts, message counters and end are never built or touched (one more
//! branch where an attempt opens and per message sent or received).
//!
//! Message sizes are what A66 asks for: message bytes as they go on the wire
//! (compressed when compressed), without the 5-byte gRPC message prefix and without
//! metadata or HTTP/2 framing.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::metadata::MetadataMap;
use crate::request::BoxFuture;
use crate::status::{Code, Status};

/// Message bytes of one client attempt or one server call: compressed size, the 5-byte
/// message prefix excluded.
#[derive(Debug, Default)]
pub(crate) struct MessageBytes {
    sent: AtomicU64,
    rcvd: AtomicU64,
}

impl MessageBytes {
    pub(crate) fn add_sent(&self, n: usize) {
        self.sent.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn add_rcvd(&self, n: usize) {
        self.rcvd.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    pub(crate) fn rcvd(&self) -> u64 {
        self.rcvd.load(Ordering::Relaxed)
    }
}

/// Installed on a channel: makes a tracer for every call.
pub(crate) trait ClientStatsHandler: Send + Sync + 'static {
    /// A call starts (after the interceptors); `metadata` is its outgoing metadata, where
    /// a tracing plugin puts its propagation headers.
    fn call_started(
        &self,
        method: &'static str,
        metadata: &mut MetadataMap,
    ) -> Box<dyn ClientCallTracer>;
}

/// One client call as a stats plugin sees it.
pub(crate) trait ClientCallTracer: Send + Sync {
    /// An attempt starts (before its pick). Transparent retries are attempts too.
    fn attempt_started(&self);
    /// The attempt's connection was picked.
    fn attempt_peer(&self, peer: Option<SocketAddr>) {
        let _ = peer;
    }
    /// An attempt ended: its status, duration and message bytes.
    fn attempt_ended(&self, status: &Status, duration: Duration, sent: u64, rcvd: u64);
    /// The call ended with `status` after `duration` (from its start to the status).
    fn call_ended(&self, status: &Status, duration: Duration);
}

/// Installed on a server: makes a tracer for every call it accepts as gRPC.
pub(crate) trait ServerStatsHandler: Send + Sync + 'static {
    /// A call's request head arrived. `registered`: the method is one of the server's
    /// services' (A66 records the others as "other").
    fn call_started(
        &self,
        method: &str,
        registered: bool,
        headers: &http::HeaderMap,
        peer: Option<SocketAddr>,
    ) -> Box<dyn ServerCallTracer>;
}

/// One server call as a stats plugin sees it.
pub(crate) trait ServerCallTracer: Send + Sync {
    /// Wraps the call's work (interceptors and handler), e.g. to make a trace context
    /// current while it runs. The default runs it as it is.
    fn instrument(&self, work: BoxFuture<Status>) -> BoxFuture<Status> {
        work
    }
    /// The call ended (trailers or reset scheduled).
    fn call_ended(&self, status: &Status, duration: Duration, sent: u64, rcvd: u64);
}

/// The stats of one client call with a tracer.
pub(crate) struct ClientCallStats {
    tracer: Box<dyn ClientCallTracer>,
    started: Instant,
    /// Attempts whose response committed (headers other than Trailers-Only), waiting for
    /// the call's end; the first is the one whose response the caller reads.
    committed: Mutex<Vec<Attempt>>,
    /// Message bytes the request sender of a streaming call encoded (shared by its
    /// attempts: a retried or hedged attempt is sent the buffered messages again).
    stream_sent: AtomicU64,
}

impl ClientCallStats {
    pub(crate) fn new(tracer: Box<dyn ClientCallTracer>, started: Instant) -> Arc<ClientCallStats> {
        Arc::new(ClientCallStats {
            tracer,
            started,
            committed: Mutex::new(Vec::new()),
            stream_sent: AtomicU64::new(0),
        })
    }

    /// A new attempt; `streaming`: its request is a stream (sent bytes counted by the
    /// call's sender task).
    pub(crate) fn start_attempt(self: &Arc<Self>, streaming: bool) -> Attempt {
        self.tracer.attempt_started();
        Attempt {
            call: Arc::clone(self),
            started: Instant::now(),
            bytes: Arc::new(MessageBytes::default()),
            streaming,
            done: false,
        }
    }

    pub(crate) fn add_stream_sent(&self, n: usize) {
        self.stream_sent.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The counter the committed attempt's response decoder adds to.
    pub(crate) fn committed_bytes(&self) -> Option<Arc<MessageBytes>> {
        let c = self.committed.lock().ok()?;
        c.first().map(|a| Arc::clone(&a.bytes))
    }

    /// The call ended: the committed attempt ends with the call's status (others, hedges
    /// that lost, as CANCELLED), then the call.
    pub(crate) fn finish(&self, status: &Status) {
        let committed = self
            .committed
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default();
        let mut it = committed.into_iter();
        if let Some(a) = it.next() {
            a.end(status);
        }
        for a in it {
            a.end(&Status::cancelled("hedged attempt not chosen"));
        }
        self.tracer.call_ended(status, self.started.elapsed());
    }
}

/// One client attempt; ends once: explicitly, with the call (committed), or as
/// CANCELLED when dropped (a hedged attempt that lost, a call dropped mid-attempt).
pub(crate) struct Attempt {
    call: Arc<ClientCallStats>,
    started: Instant,
    bytes: Arc<MessageBytes>,
    streaming: bool,
    done: bool,
}

impl Attempt {
    pub(crate) fn peer(&self, peer: Option<SocketAddr>) {
        self.call.tracer.attempt_peer(peer);
    }

    pub(crate) fn add_sent(&self, n: usize) {
        self.bytes.add_sent(n);
    }

    pub(crate) fn end(mut self, status: &Status) {
        self.record(status);
    }

    /// The attempt's response committed: it ends with the call.
    pub(crate) fn commit(self) {
        let call = Arc::clone(&self.call);
        let mut slot = call.committed.lock();
        if let Ok(c) = slot.as_mut() {
            c.push(self);
        }
        drop(slot);
    }

    fn record(&mut self, status: &Status) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let sent = if self.streaming {
            self.call.stream_sent.load(Ordering::Relaxed)
        } else {
            self.bytes.sent()
        };
        self.call
            .tracer
            .attempt_ended(status, self.started.elapsed(), sent, self.bytes.rcvd());
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.done {
            self.record(&Status::new(Code::Cancelled, "attempt abandoned"));
        }
    }
}

/// The stats of one server call with a tracer.
pub(crate) struct ServerCallStats {
    pub(crate) tracer: Box<dyn ServerCallTracer>,
    started: Instant,
    pub(crate) bytes: Arc<MessageBytes>,
    ended: AtomicBool,
}

impl ServerCallStats {
    pub(crate) fn new(tracer: Box<dyn ServerCallTracer>, started: Instant) -> ServerCallStats {
        ServerCallStats {
            tracer,
            started,
            bytes: Arc::new(MessageBytes::default()),
            ended: AtomicBool::new(false),
        }
    }

    /// The call ended with `status` (once; later calls do nothing).
    pub(crate) fn end(&self, status: &Status) {
        if !self.ended.swap(true, Ordering::AcqRel) {
            self.tracer.call_ended(
                status,
                self.started.elapsed(),
                self.bytes.sent(),
                self.bytes.rcvd(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Log(Mutex<Vec<String>>);

    struct Tracer(Arc<Log>);

    impl ClientCallTracer for Tracer {
        fn attempt_started(&self) {
            self.0 .0.lock().unwrap().push("start".into());
        }
        fn attempt_ended(&self, status: &Status, _: Duration, sent: u64, rcvd: u64) {
            self.0
                 .0
                .lock()
                .unwrap()
                .push(format!("attempt {} {sent} {rcvd}", status.code().as_str()));
        }
        fn call_ended(&self, status: &Status, _: Duration) {
            self.0
                 .0
                .lock()
                .unwrap()
                .push(format!("call {}", status.code().as_str()));
        }
    }

    #[test]
    fn attempts_end_once_and_committed_ones_end_with_the_call() {
        let log = Arc::new(Log::default());
        let call = ClientCallStats::new(Box::new(Tracer(Arc::clone(&log))), Instant::now());
        let a = call.start_attempt(false);
        a.add_sent(7);
        a.end(&Status::unavailable("x"));
        let dropped = call.start_attempt(false);
        drop(dropped);
        let b = call.start_attempt(false);
        b.add_sent(7);
        b.commit();
        call.committed_bytes().unwrap().add_rcvd(3);
        call.finish(&Status::new(Code::Ok, ""));
        let got = log.0.lock().unwrap().clone();
        assert_eq!(
            got,
            [
                "start",
                "attempt UNAVAILABLE 7 0",
                "start",
                "attempt CANCELLED 0 0",
                "start",
                "attempt OK 7 3",
                "call OK"
            ]
        );
    }
}
