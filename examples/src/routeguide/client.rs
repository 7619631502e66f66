//! The route guide client run, as in the reference client: GetFeature for a point in the
//! database and for one that is not, ListFeatures over a rectangle, RecordRoute over a
//! fixed route through database points, RouteChat with six notes at three locations.
//! Shared by the `routeguide-client` binary and the demo.

use futures_util::{stream, StreamExt};
use grpc_runtime::Channel;

use super::format_point;
use crate::pb::routeguide::route_guide_client::RouteGuideClient;
use crate::pb::routeguide::{Feature, Point, Rectangle, RouteNote, RouteSummary};
use crate::{BoxError, Transcript};

/// The point the reference client looks up first (a feature in the database).
pub const KNOWN_POINT: Point = Point {
    latitude: 409_146_138,
    longitude: -746_188_906,
};

/// A point with no feature.
pub const MISSING_POINT: Point = Point {
    latitude: 0,
    longitude: 0,
};

/// The reference client's ListFeatures rectangle.
pub fn list_rectangle() -> Rectangle {
    Rectangle {
        lo: Some(Point {
            latitude: 400_000_000,
            longitude: -750_000_000,
        }),
        hi: Some(Point {
            latitude: 420_000_000,
            longitude: -730_000_000,
        }),
    }
}

/// The route recorded by the client: `len` database points picked with a fixed stride, so
/// every run sends the same route (the reference picks random ones).
pub fn fixed_route(features: &[Feature], len: usize) -> Vec<Point> {
    if features.is_empty() {
        return Vec::new();
    }
    (0..len)
        .filter_map(|i| features[(i * 7 + 3) % features.len()].location)
        .collect()
}

/// The notes the reference client sends on RouteChat.
pub fn chat_notes() -> Vec<RouteNote> {
    [
        (0, 1, "First message"),
        (0, 2, "Second message"),
        (0, 3, "Third message"),
        (0, 1, "Fourth message"),
        (0, 2, "Fifth message"),
        (0, 3, "Sixth message"),
    ]
    .into_iter()
    .map(|(latitude, longitude, m)| RouteNote {
        location: Some(Point {
            latitude,
            longitude,
        }),
        message: m.to_string(),
    })
    .collect()
}

/// What the client run received.
#[derive(Debug, Clone, Default)]
pub struct RunResult {
    /// GetFeature at [`KNOWN_POINT`].
    pub found: Feature,
    /// GetFeature at [`MISSING_POINT`].
    pub missing: Feature,
    /// ListFeatures over [`list_rectangle`].
    pub listed: Vec<Feature>,
    /// RecordRoute over the route sent.
    pub summary: RouteSummary,
    /// The route sent to RecordRoute.
    pub route: Vec<Point>,
    /// RouteChat replies, in order.
    pub chat: Vec<RouteNote>,
}

/// Runs the four calls over `channel`. `route` is sent to RecordRoute. With `verbose`,
/// every listed feature is reported; otherwise only the first three.
pub async fn run(
    channel: Channel,
    route: Vec<Point>,
    verbose: bool,
    out: &Transcript,
) -> Result<RunResult, BoxError> {
    let client = RouteGuideClient::new(channel);
    let mut result = RunResult {
        route: route.clone(),
        ..RunResult::default()
    };

    for (point, slot) in [
        (KNOWN_POINT, &mut result.found),
        (MISSING_POINT, &mut result.missing),
    ] {
        let feature = client.get_feature(point).await?.into_inner();
        if feature.name.is_empty() {
            out.line(format!(
                "GetFeature {}: no feature there",
                format_point(&point)
            ));
        } else {
            out.line(format!(
                "GetFeature {}: {:?}",
                format_point(&point),
                feature.name
            ));
        }
        *slot = feature;
    }

    let rect = list_rectangle();
    out.line(format!(
        "ListFeatures in {} .. {}:",
        format_point(&rect.lo.unwrap_or_default()),
        format_point(&rect.hi.unwrap_or_default())
    ));
    let mut features = client.list_features(rect).await?.into_inner();
    while let Some(feature) = features.message().await? {
        if verbose || result.listed.len() < 3 {
            let name = if feature.name.is_empty() {
                "(unnamed)"
            } else {
                feature.name.as_str()
            };
            out.line(format!(
                "  {} {}",
                format_point(&feature.location.unwrap_or_default()),
                name
            ));
        }
        result.listed.push(feature);
    }
    if !verbose && result.listed.len() > 3 {
        out.line(format!("  ... and {} more", result.listed.len() - 3));
    }
    out.line(format!("ListFeatures: {} features", result.listed.len()));

    let summary = client.record_route(stream::iter(route)).await?.into_inner();
    out.line(format!(
        "RecordRoute: {} points, {} features, {} m, {} s",
        summary.point_count, summary.feature_count, summary.distance, summary.elapsed_time
    ));
    result.summary = summary;

    let notes = chat_notes();
    out.line(format!("RouteChat: sending {} notes", notes.len()));
    let mut replies = client.route_chat(stream::iter(notes)).await?.into_inner();
    while let Some(reply) = replies.next().await {
        let note = reply?;
        out.line(format!(
            "  got note {:?} at {}",
            note.message,
            format_point(&note.location.unwrap_or_default())
        ));
        result.chat.push(note);
    }
    out.line(format!("RouteChat: {} notes back", result.chat.len()));
    Ok(result)
}
