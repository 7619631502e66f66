//! The RouteGuide server with the reference behaviour:
//! - GetFeature: the feature at the point, or an unnamed feature at that point;
//! - ListFeatures: every feature inside the (normalised) rectangle, in database order;
//! - RecordRoute: point count, how many database features the points hit, distance in
//!   metres (sum of haversine legs) and elapsed seconds;
//! - RouteChat: for every incoming note, first every note received earlier at the same
//!   location (by any client), then the note is stored.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::stream;
use grpc_runtime::{BoxStream, Request, Response, Status, Streaming};

use super::geo::{distance_m, in_range};
use crate::pb::routeguide::route_guide_server::{RouteGuide, RouteGuideServer};
use crate::pb::routeguide::{Feature, Point, Rectangle, RouteNote, RouteSummary};

type NoteKey = (i32, i32);

/// The RouteGuide implementation: a read-only feature list and the shared chat notes.
#[derive(Debug, Default, Clone)]
pub struct RouteGuideService {
    features: Arc<Vec<Feature>>,
    notes: Arc<Mutex<HashMap<NoteKey, Vec<RouteNote>>>>,
}

impl RouteGuideService {
    /// A service answering from `features`.
    pub fn new(features: Vec<Feature>) -> RouteGuideService {
        RouteGuideService {
            features: Arc::new(features),
            notes: Arc::default(),
        }
    }

    /// The generated server wrapper, ready for `Server::builder().add_service(..)`.
    pub fn into_server(self) -> RouteGuideServer<RouteGuideService> {
        RouteGuideServer::new(self)
    }

    /// The database.
    pub fn features(&self) -> &[Feature] {
        &self.features
    }

    /// The feature at exactly `p`, if any.
    pub fn feature_at(&self, p: &Point) -> Option<&Feature> {
        self.features
            .iter()
            .find(|f| f.location.as_ref() == Some(p))
    }

    /// Notes stored at `key` so far (a copy), then `note` is appended.
    fn exchange_note(&self, note: RouteNote) -> Vec<RouteNote> {
        let loc = note.location.unwrap_or_default();
        let mut notes = self.notes.lock().unwrap_or_else(|e| e.into_inner());
        let at = notes.entry((loc.latitude, loc.longitude)).or_default();
        let earlier = at.clone();
        at.push(note);
        earlier
    }
}

impl RouteGuide for RouteGuideService {
    async fn get_feature(&self, request: Request<Point>) -> Result<Response<Feature>, Status> {
        let point = request.into_inner();
        let feature = self.feature_at(&point).cloned().unwrap_or(Feature {
            name: String::new(),
            location: Some(point),
        });
        Ok(Response::new(feature))
    }

    async fn list_features(
        &self,
        request: Request<Rectangle>,
    ) -> Result<Response<BoxStream<Feature>>, Status> {
        let rect = request.into_inner();
        let inside: Vec<Result<Feature, Status>> = self
            .features
            .iter()
            .filter(|f| f.location.as_ref().is_some_and(|p| in_range(p, &rect)))
            .cloned()
            .map(Ok)
            .collect();
        tracing::debug!(count = inside.len(), "ListFeatures");
        Ok(Response::new(Box::pin(stream::iter(inside))))
    }

    async fn record_route(
        &self,
        request: Request<Streaming<Point>>,
    ) -> Result<Response<RouteSummary>, Status> {
        let start = Instant::now();
        let mut points = request.into_inner();
        let mut summary = RouteSummary::default();
        let mut last: Option<Point> = None;
        while let Some(point) = points.message().await? {
            summary.point_count = summary.point_count.saturating_add(1);
            let hits = self
                .features
                .iter()
                .filter(|f| f.location.as_ref() == Some(&point))
                .count();
            summary.feature_count = summary
                .feature_count
                .saturating_add(i32::try_from(hits).unwrap_or(i32::MAX));
            if let Some(prev) = &last {
                summary.distance = summary.distance.saturating_add(distance_m(prev, &point));
            }
            last = Some(point);
        }
        summary.elapsed_time = i32::try_from(start.elapsed().as_secs()).unwrap_or(i32::MAX);
        Ok(Response::new(summary))
    }

    async fn route_chat(
        &self,
        request: Request<Streaming<RouteNote>>,
    ) -> Result<Response<BoxStream<RouteNote>>, Status> {
        // Replies are produced as the response stream is polled: read one note, queue the
        // earlier notes at its location, send them, read the next note.
        let incoming = request.into_inner();
        let service = self.clone();
        let state = (
            incoming,
            std::collections::VecDeque::<RouteNote>::new(),
            false,
        );
        let replies = stream::unfold(state, move |(mut incoming, mut queue, done)| {
            let service = service.clone();
            async move {
                loop {
                    if let Some(note) = queue.pop_front() {
                        return Some((Ok(note), (incoming, queue, done)));
                    }
                    if done {
                        return None;
                    }
                    match incoming.message().await {
                        Ok(Some(note)) => queue.extend(service.exchange_note(note)),
                        Ok(None) => return None,
                        Err(status) => return Some((Err(status), (incoming, queue, true))),
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(replies)))
    }
}
