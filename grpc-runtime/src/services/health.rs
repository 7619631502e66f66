//! The standard health service, `grpc.health.v1.Health`: Check, Watch and
//! List, fed by a [`HealthReporter`] that sets the serving status per
//! service (`""` is the server as a whole).
//!
//! Semantics (as grpc-go, and what health clients and load balancers expect):
//! - `Check` of a service never set answers NOT_FOUND.
//! - `Watch` streams the current status at once, then every change. A service
//!   never set streams `SERVICE_UNKNOWN` and the stream stays open: when the
//!   service is set later, the watcher sees it. (Ending Watch with NOT_FOUND,
//!   as tonic does, is wrong: clients then retry in a loop.)
//! - `List` answers every known service, or RESOURCE_EXHAUSTED above
//!   [`MAX_LIST_SERVICES`].
//! - [`HealthReporter::shutdown`] sets every service NOT_SERVING and ignores
//!   later updates until [`HealthReporter::resume`]; hook it to server
//!   shutdown with [`crate::server::ServerBuilder::on_shutdown`].
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use grpc_runtime::server::Server;
//! use grpc_runtime::services::health::{HealthReporter, ServingStatus};
//!
//! let reporter = HealthReporter::new();
//! reporter.set_serving_status("helloworld.Greeter", ServingStatus::Serving);
//! let on_shutdown = reporter.clone();
//! Server::builder()
//!     .add_service(reporter.service())
//!     .on_shutdown(move || on_shutdown.shutdown())
//!     .serve("127.0.0.1:50051".parse().unwrap())
//!     .await
//! # }
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

pub use crate::generated::grpc_health_v1::health_check_response::ServingStatus;
pub use crate::generated::grpc_health_v1::{
    health_client, health_server, HealthCheckRequest, HealthCheckResponse, HealthListRequest,
    HealthListResponse, FILE_DESCRIPTOR_SET,
};

use crate::{BoxStream, Request, Response, Status};
use health_server::{Health, HealthServer};

/// `List` answers RESOURCE_EXHAUSTED when more services than this are known
/// (the limit grpc-go uses).
pub const MAX_LIST_SERVICES: usize = 100;

/// One service's status channel. `known` is false for services that are only
/// watched (or were cleared): they read `SERVICE_UNKNOWN`.
struct Entry {
    tx: watch::Sender<ServingStatus>,
    known: bool,
}

#[derive(Default)]
struct State {
    services: HashMap<String, Entry>,
    shut_down: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Sets the health the service reports. Cheap to clone; all clones (and the
/// services made by [`HealthReporter::service`]) share one state.
///
/// A new reporter knows one service, `""` (the whole server), as SERVING.
#[derive(Clone)]
pub struct HealthReporter {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for HealthReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.shared.lock();
        let mut known: Vec<(&str, ServingStatus)> = state
            .services
            .iter()
            .filter(|(_, e)| e.known)
            .map(|(k, e)| (k.as_str(), *e.tx.borrow()))
            .collect();
        known.sort();
        f.debug_struct("HealthReporter")
            .field("services", &known)
            .field("shut_down", &state.shut_down)
            .finish()
    }
}

impl Default for HealthReporter {
    fn default() -> Self {
        Self::new()
    }
}

/// A reporter and the service it feeds, ready for
/// [`crate::server::ServerBuilder::add_service`].
pub fn health_reporter() -> (HealthReporter, HealthServer<HealthService>) {
    let reporter = HealthReporter::new();
    let service = reporter.service();
    (reporter, service)
}

impl HealthReporter {
    /// A reporter where `""` (the whole server) is SERVING.
    pub fn new() -> Self {
        let reporter = HealthReporter {
            shared: Arc::new(Shared::default()),
        };
        reporter.set_serving_status("", ServingStatus::Serving);
        reporter
    }

    /// The `grpc.health.v1.Health` service answering from this reporter.
    pub fn service(&self) -> HealthServer<HealthService> {
        HealthServer::new(HealthService {
            shared: self.shared.clone(),
        })
    }

    /// Sets the status of `service` (`""` = the whole server) and tells its
    /// watchers if it changed. Ignored after [`HealthReporter::shutdown`].
    pub fn set_serving_status(&self, service: &str, status: ServingStatus) {
        let mut state = self.shared.lock();
        if state.shut_down {
            tracing::debug!(service, ?status, "health: ignoring update after shutdown");
            return;
        }
        set(&mut state, service, status);
    }

    /// Shorthand for `set_serving_status(service, SERVING)`.
    pub fn set_serving(&self, service: &str) {
        self.set_serving_status(service, ServingStatus::Serving);
    }

    /// Shorthand for `set_serving_status(service, NOT_SERVING)`.
    pub fn set_not_serving(&self, service: &str) {
        self.set_serving_status(service, ServingStatus::NotServing);
    }

    /// Forgets `service`: Check answers NOT_FOUND again and its watchers see
    /// `SERVICE_UNKNOWN` (their streams stay open).
    pub fn clear_service_status(&self, service: &str) {
        let mut state = self.shared.lock();
        let remove = match state.services.get_mut(service) {
            None => false,
            Some(e) => {
                e.known = false;
                e.tx.send_if_modified(|s| replace(s, ServingStatus::ServiceUnknown));
                e.tx.receiver_count() == 0
            }
        };
        if remove {
            state.services.remove(service);
        }
    }

    /// The status of `service`, or `None` if it was never set (or cleared).
    pub fn serving_status(&self, service: &str) -> Option<ServingStatus> {
        let state = self.shared.lock();
        state
            .services
            .get(service)
            .filter(|e| e.known)
            .map(|e| *e.tx.borrow())
    }

    /// Sets every known service NOT_SERVING and ignores later updates until
    /// [`HealthReporter::resume`]. Call it when the server starts shutting
    /// down so clients move away before the connections close.
    pub fn shutdown(&self) {
        let mut state = self.shared.lock();
        state.shut_down = true;
        for e in state.services.values().filter(|e| e.known) {
            e.tx.send_if_modified(|s| replace(s, ServingStatus::NotServing));
        }
    }

    /// Undoes [`HealthReporter::shutdown`]: every known service is SERVING
    /// again and updates are accepted.
    pub fn resume(&self) {
        let mut state = self.shared.lock();
        state.shut_down = false;
        for e in state.services.values().filter(|e| e.known) {
            e.tx.send_if_modified(|s| replace(s, ServingStatus::Serving));
        }
    }
}

/// Writes `new` into `slot`; true if it changed (for `send_if_modified`).
fn replace(slot: &mut ServingStatus, new: ServingStatus) -> bool {
    let changed = *slot != new;
    *slot = new;
    changed
}

fn set(state: &mut State, service: &str, status: ServingStatus) {
    match state.services.get_mut(service) {
        Some(e) => {
            e.known = true;
            e.tx.send_if_modified(|s| replace(s, status));
        }
        None => {
            let (tx, _) = watch::channel(status);
            state
                .services
                .insert(service.to_string(), Entry { tx, known: true });
        }
    }
}

/// The `grpc.health.v1.Health` implementation behind
/// [`HealthReporter::service`].
pub struct HealthService {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for HealthService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthService").finish_non_exhaustive()
    }
}

/// Drops a watched-only entry when its last watcher goes away, so watching
/// many unknown names does not leak.
struct WatchGuard {
    rx: watch::Receiver<ServingStatus>,
    shared: Arc<Shared>,
    service: String,
    first: bool,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        // `self.rx` is still alive here: 1 receiver left means only ours.
        let remove = state
            .services
            .get(&self.service)
            .is_some_and(|e| !e.known && e.tx.receiver_count() <= 1);
        if remove {
            state.services.remove(&self.service);
        }
    }
}

impl Health for HealthService {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let service = request.into_inner().service;
        let state = self.shared.lock();
        match state.services.get(&service).filter(|e| e.known) {
            Some(e) => Ok(Response::new(HealthCheckResponse {
                status: *e.tx.borrow() as i32,
            })),
            None => Err(Status::not_found(format!("unknown service {service:?}"))),
        }
    }

    async fn list(
        &self,
        _request: Request<HealthListRequest>,
    ) -> Result<Response<HealthListResponse>, Status> {
        let state = self.shared.lock();
        let known = state.services.iter().filter(|(_, e)| e.known);
        let count = known.clone().count();
        if count > MAX_LIST_SERVICES {
            return Err(Status::resource_exhausted(format!(
                "server health list exceeds maximum capacity: {MAX_LIST_SERVICES}"
            )));
        }
        let statuses = known
            .map(|(k, e)| {
                (
                    k.clone(),
                    HealthCheckResponse {
                        status: *e.tx.borrow() as i32,
                    },
                )
            })
            .collect();
        Ok(Response::new(HealthListResponse { statuses }))
    }

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<BoxStream<HealthCheckResponse>>, Status> {
        let service = request.into_inner().service;
        let rx = {
            let mut state = self.shared.lock();
            let entry = state
                .services
                .entry(service.clone())
                .or_insert_with(|| Entry {
                    tx: watch::channel(ServingStatus::ServiceUnknown).0,
                    known: false,
                });
            entry.tx.subscribe()
        };
        let guard = WatchGuard {
            rx,
            shared: self.shared.clone(),
            service,
            first: true,
        };
        let stream = futures_util::stream::unfold(guard, |mut g| async move {
            if !g.first {
                // Only the latest status matters: a watcher that falls behind
                // skips intermediate values, as grpc-go does.
                g.rx.changed().await.ok()?;
            }
            g.first = false;
            let status = *g.rx.borrow_and_update();
            Some((
                Ok(HealthCheckResponse {
                    status: status as i32,
                }),
                g,
            ))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reporter_states() {
        let r = HealthReporter::new();
        assert_eq!(r.serving_status(""), Some(ServingStatus::Serving));
        assert_eq!(r.serving_status("a"), None);
        r.set_not_serving("a");
        assert_eq!(r.serving_status("a"), Some(ServingStatus::NotServing));
        r.shutdown();
        assert_eq!(r.serving_status(""), Some(ServingStatus::NotServing));
        r.set_serving("a");
        assert_eq!(
            r.serving_status("a"),
            Some(ServingStatus::NotServing),
            "ignored after shutdown"
        );
        r.resume();
        assert_eq!(r.serving_status("a"), Some(ServingStatus::Serving));
        r.clear_service_status("a");
        assert_eq!(r.serving_status("a"), None);
        assert!(
            !r.shared.lock().services.contains_key("a"),
            "no watcher: entry removed"
        );
    }

    #[tokio::test]
    async fn watchers_of_unknown_names_do_not_leak() {
        use futures_util::StreamExt;
        let r = HealthReporter::new();
        let svc = HealthService {
            shared: r.shared.clone(),
        };
        let watch = |name: &str| {
            svc.watch(Request::new(HealthCheckRequest {
                service: name.into(),
            }))
        };
        let mut s1 = watch("x").await.unwrap().into_inner();
        let mut s2 = watch("x").await.unwrap().into_inner();
        assert_eq!(
            s1.next().await.unwrap().unwrap().status,
            ServingStatus::ServiceUnknown as i32
        );
        assert_eq!(
            s2.next().await.unwrap().unwrap().status,
            ServingStatus::ServiceUnknown as i32
        );
        drop(s1);
        assert!(
            r.shared.lock().services.contains_key("x"),
            "one watcher left"
        );
        drop(s2);
        assert!(
            !r.shared.lock().services.contains_key("x"),
            "last watcher gone: entry removed"
        );
        // A known service keeps its entry when its watchers go away.
        r.set_serving("k");
        let s = watch("k").await.unwrap().into_inner();
        drop(s);
        assert_eq!(r.serving_status("k"), Some(ServingStatus::Serving));
    }
}
