//! Client interceptors: async, chainable hooks around every call on a channel.
//!
//! Interceptors run in the order they were added: the first added is the outermost, so
//! its [`Interceptor::start`] runs first and its [`Interceptor::finish_call`] runs last. `start`
//! may read and change the outgoing metadata and timeout, or reject the call with a
//! [`Status`] (the call then fails with that status without touching the network).
//! [`Interceptor::finish_call`] sees the final status of every call, OK included, whichever
//! the call kind, together with a [`CallInfo`] about that very call: its path, kind, start
//! time, the server's address once a connection was picked, and the per-call state the
//! interceptors put in [`ClientCallContext::extensions_mut`] during `start`. So an
//! interceptor can time a call or carry anything from `start` to `finish` without keeping
//! its own table of calls in flight.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::metadata::MetadataMap;
use crate::status::Status;

/// The future an interceptor's `start` returns.
pub type InterceptFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Status>> + Send + 'a>>;

/// The kind of call being made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// One request, one response.
    Unary,
    /// One request, a stream of responses.
    ServerStreaming,
    /// A stream of requests, one response.
    ClientStreaming,
    /// Streams both ways.
    BidiStreaming,
}

/// The outgoing call as seen by interceptors before it starts.
#[derive(Debug)]
pub struct ClientCallContext {
    path: &'static str,
    kind: CallKind,
    pub(crate) metadata: MetadataMap,
    pub(crate) timeout: Option<Duration>,
    started: Instant,
    extensions: http::Extensions,
}

impl ClientCallContext {
    pub(crate) fn new(
        path: &'static str,
        kind: CallKind,
        metadata: MetadataMap,
        timeout: Option<Duration>,
    ) -> Self {
        ClientCallContext {
            path,
            kind,
            metadata,
            timeout,
            started: Instant::now(),
            extensions: http::Extensions::new(),
        }
    }

    /// The method path, e.g. `/helloworld.Greeter/SayHello`.
    pub fn path(&self) -> &'static str {
        self.path
    }

    /// The call kind.
    pub fn kind(&self) -> CallKind {
        self.kind
    }

    /// The outgoing metadata.
    pub fn metadata(&self) -> &MetadataMap {
        &self.metadata
    }

    /// The outgoing metadata, to add, change or remove entries.
    pub fn metadata_mut(&mut self) -> &mut MetadataMap {
        &mut self.metadata
    }

    /// The call's timeout, if one is set (explicitly, inherited, or the channel default).
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Sets or clears the call's timeout.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// When the call started (just before the first interceptor's `start` ran); the same
    /// instant [`CallInfo::start_time`] reports to `finish_call`.
    pub fn start_time(&self) -> Instant {
        self.started
    }

    /// Per-call state shared by the interceptors of this call: what `start` inserts here
    /// is handed back to every [`Interceptor::finish_call`] of the same call in
    /// [`CallInfo::extensions`]. Use a private type as the key to avoid clashes with other
    /// interceptors.
    pub fn extensions(&self) -> &http::Extensions {
        &self.extensions
    }

    /// Per-call state, mutably: see [`ClientCallContext::extensions`].
    pub fn extensions_mut(&mut self) -> &mut http::Extensions {
        &mut self.extensions
    }

    /// What `finish_call` learns about this call, taking the extensions out.
    pub(crate) fn take_info(&mut self) -> CallInfo {
        CallInfo {
            path: self.path,
            kind: self.kind,
            started: self.started,
            peer: None,
            extensions: std::mem::take(&mut self.extensions),
        }
    }
}

/// One finished call as [`Interceptor::finish_call`] sees it: the same call its `start`
/// saw, with what `start` left in [`ClientCallContext::extensions_mut`].
#[derive(Debug)]
pub struct CallInfo {
    path: &'static str,
    kind: CallKind,
    started: Instant,
    pub(crate) peer: Option<SocketAddr>,
    extensions: http::Extensions,
}

impl CallInfo {
    /// The method path, e.g. `/helloworld.Greeter/SayHello`.
    pub fn path(&self) -> &'static str {
        self.path
    }

    /// The call kind.
    pub fn kind(&self) -> CallKind {
        self.kind
    }

    /// When the call started (just before the first interceptor's `start` ran).
    pub fn start_time(&self) -> Instant {
        self.started
    }

    /// Time since the call started; in `finish_call`, the call's duration (including
    /// the interceptors' `start`, connecting and, for streaming responses, the time until
    /// the response stream ended).
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The address of the server the call went to (the connection's TCP peer, the last one
    /// if the call was retried on a new connection); `None` when no connection was
    /// reached (rejected by an interceptor, connect failure, deadline before connecting)
    /// or over a unix socket.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// The per-call state interceptors inserted in `start` with
    /// [`ClientCallContext::extensions_mut`].
    pub fn extensions(&self) -> &http::Extensions {
        &self.extensions
    }
}

/// A client interceptor.
pub trait Interceptor: Send + Sync + 'static {
    /// Runs before the call is sent. Return `Err(status)` to fail the call with `status`.
    fn start<'a>(&'a self, call: &'a mut ClientCallContext) -> InterceptFuture<'a>;

    /// Runs once with the call's final status (the default does nothing). Only called by
    /// the default [`Interceptor::finish_call`]; new interceptors override that instead,
    /// which also tells which call finished.
    fn finish(&self, path: &'static str, status: &Status) {
        let _ = (path, status);
    }

    /// Runs once per call with its final status and a [`CallInfo`] about the call: path,
    /// kind, start time / duration, server address, and the per-call state `start` put in
    /// [`ClientCallContext::extensions_mut`]. The default calls
    /// [`Interceptor::finish`]`(call.path(), status)`, so interceptors written against
    /// `finish` keep working.
    fn finish_call(&self, call: &CallInfo, status: &Status) {
        self.finish(call.path(), status);
    }
}

/// An interceptor from a synchronous closure over the call context.
pub fn interceptor_fn<F>(f: F) -> impl Interceptor
where
    F: Fn(&mut ClientCallContext) -> Result<(), Status> + Send + Sync + 'static,
{
    struct FnInterceptor<F>(F);
    impl<F> Interceptor for FnInterceptor<F>
    where
        F: Fn(&mut ClientCallContext) -> Result<(), Status> + Send + Sync + 'static,
    {
        fn start<'a>(&'a self, call: &'a mut ClientCallContext) -> InterceptFuture<'a> {
            let r = (self.0)(call);
            Box::pin(std::future::ready(r))
        }
    }
    FnInterceptor(f)
}

/// The chain of interceptors of a channel.
#[derive(Clone, Default)]
pub(crate) struct Interceptors(pub(crate) Vec<Arc<dyn Interceptor>>);

impl Interceptors {
    /// Runs every `start` in order (outermost first); stops at the first rejection and
    /// reports it to the `finish_call` of the interceptors that already started.
    pub(crate) async fn start(&self, ctx: &mut ClientCallContext) -> Result<(), Status> {
        for (i, icp) in self.0.iter().enumerate() {
            if let Err(status) = icp.start(ctx).await {
                let info = ctx.take_info();
                for started in self.0[..i].iter().rev() {
                    started.finish_call(&info, &status);
                }
                return Err(status);
            }
        }
        Ok(())
    }

    /// Runs every `finish_call` innermost first.
    pub(crate) fn finish(&self, info: &CallInfo, status: &Status) {
        for icp in self.0.iter().rev() {
            icp.finish_call(info, status);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
