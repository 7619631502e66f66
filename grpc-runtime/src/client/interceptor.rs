//! Client interceptors: async, chainable hooks around every call on a channel.
//!
//! Interceptors run in the order they were added: the first added is the outermost, so
//! its [`Interceptor::start`] runs first and its [`Interceptor::finish`] runs last. `start`
//! may read and change the outgoing metadata and timeout, or reject the call with a
//! [`Status`] (the call then fails with that status without touching the network).
//! `finish` sees the final status of every call, OK included, whichever the call kind.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

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
}

impl ClientCallContext {
    pub(crate) fn new(path: &'static str, kind: CallKind, metadata: MetadataMap, timeout: Option<Duration>) -> Self {
        ClientCallContext { path, kind, metadata, timeout }
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
}

/// A client interceptor.
pub trait Interceptor: Send + Sync + 'static {
    /// Runs before the call is sent. Return `Err(status)` to fail the call with `status`.
    fn start<'a>(&'a self, call: &'a mut ClientCallContext) -> InterceptFuture<'a>;

    /// Runs once with the call's final status (the default does nothing).
    fn finish(&self, path: &'static str, status: &Status) {
        let _ = (path, status);
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
    /// reports it to the `finish` of the interceptors that already started.
    pub(crate) async fn start(&self, ctx: &mut ClientCallContext) -> Result<(), Status> {
        for (i, icp) in self.0.iter().enumerate() {
            if let Err(status) = icp.start(ctx).await {
                for started in self.0[..i].iter().rev() {
                    started.finish(ctx.path, &status);
                }
                return Err(status);
            }
        }
        Ok(())
    }

    /// Runs every `finish` innermost first.
    pub(crate) fn finish(&self, path: &'static str, status: &Status) {
        for icp in self.0.iter().rev() {
            icp.finish(path, status);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
