//! Server interceptors: async, chainable middleware around every call.
//!
//! An [`Interceptor`] receives the [`CallHead`] (method, metadata,
//! extensions, context) and a [`Next`]. It may read or change the metadata
//! and extensions, reject the call by returning a non-OK [`Status`] without
//! calling `next`, or call `next.run(head).await` to continue; that returns
//! the final status of the call, which the interceptor can observe (it was
//! already sent; returning a different status afterwards changes nothing).
//! Interceptors run in the order added: the first is outermost.

use std::future::Future;
use std::sync::Arc;

use crate::context::ServerContext;
use crate::metadata::MetadataMap;
use crate::request::BoxFuture;
use crate::status::Status;

/// The part of an incoming call interceptors see and may change.
#[derive(Debug)]
pub struct CallHead {
    /// Request metadata.
    pub metadata: MetadataMap,
    /// Typed values handed on to the handler's `Request::extensions()`.
    pub extensions: http::Extensions,
    context: ServerContext,
}

impl CallHead {
    pub(crate) fn new(metadata: MetadataMap, context: ServerContext) -> CallHead {
        CallHead {
            metadata,
            extensions: http::Extensions::new(),
            context,
        }
    }

    /// The full method path, e.g. `/helloworld.Greeter/SayHello`.
    pub fn method(&self) -> &str {
        self.context.method()
    }

    /// The call context (deadline, peer, cancellation, trailers).
    pub fn context(&self) -> &ServerContext {
        &self.context
    }
}

/// A server interceptor. See the module docs.
pub trait Interceptor: Send + Sync + 'static {
    /// Handles one call; call `next.run(head)` to continue the chain.
    fn intercept(&self, head: CallHead, next: Next) -> BoxFuture<Status>;
}

type Terminal = Box<dyn FnOnce(CallHead) -> BoxFuture<Status> + Send>;

/// The rest of the chain (further interceptors, then the handler).
pub struct Next {
    chain: Arc<[Arc<dyn Interceptor>]>,
    index: usize,
    terminal: Terminal,
}

impl std::fmt::Debug for Next {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Next")
            .field("remaining", &(self.chain.len() - self.index))
            .finish()
    }
}

impl Next {
    pub(crate) fn new(chain: Arc<[Arc<dyn Interceptor>]>, terminal: Terminal) -> Next {
        Next {
            chain,
            index: 0,
            terminal,
        }
    }

    /// Runs the rest of the chain and returns the call's final status.
    pub fn run(self, head: CallHead) -> BoxFuture<Status> {
        match self.chain.get(self.index).cloned() {
            Some(icpt) => {
                let next = Next {
                    chain: self.chain,
                    index: self.index + 1,
                    terminal: self.terminal,
                };
                icpt.intercept(head, next)
            }
            None => (self.terminal)(head),
        }
    }
}

/// An interceptor made from an async closure `|head, next| async { ... }`.
pub struct InterceptorFn<F>(F);

impl<F, Fut> Interceptor for InterceptorFn<F>
where
    F: Fn(CallHead, Next) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Status> + Send + 'static,
{
    fn intercept(&self, head: CallHead, next: Next) -> BoxFuture<Status> {
        Box::pin((self.0)(head, next))
    }
}

/// Wraps an async closure as an [`Interceptor`].
pub fn interceptor_fn<F, Fut>(f: F) -> InterceptorFn<F>
where
    F: Fn(CallHead, Next) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Status> + Send + 'static,
{
    InterceptorFn(f)
}
