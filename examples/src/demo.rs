//! The demo: a route guide server in-process on `127.0.0.1:0`, the four call kinds through
//! the generated client over real HTTP/2, a short transcript, and a check of every answer
//! against the database (so a wrong answer fails the demo).

use std::path::Path;
use std::time::Instant;

use grpc_runtime::server::Server;

use crate::ensure;
use crate::routeguide::client::{
    self, chat_notes, fixed_route, list_rectangle, KNOWN_POINT, MISSING_POINT,
};
use crate::routeguide::geo::{distance_m, in_range};
use crate::routeguide::{load_features, RouteGuideService};
use crate::{connect, BoxError, RunningServer, Transcript};

/// Runs the demo with the database at `db`.
pub async fn run(db: &Path, out: &Transcript) -> Result<(), BoxError> {
    let started = Instant::now();
    let features = load_features(db)?;
    out.line(format!(
        "grpc-rust demo: RouteGuide with {} features from {}",
        features.len(),
        db.display()
    ));
    let service = RouteGuideService::new(features.clone());
    let server = RunningServer::start(Server::builder().add_service(service.into_server())).await?;
    out.line(format!("server listening on {}", server.addr()));

    let channel = connect(&server.url()).await?;
    let route = fixed_route(&features, 10);
    let got = client::run(channel, route.clone(), false, out).await?;

    // Check every answer against the database.
    let known = features.iter().find(|f| f.location == Some(KNOWN_POINT));
    ensure!(
        known.is_some_and(|k| k.name == got.found.name),
        "GetFeature: wrong feature {:?}",
        got.found
    );
    ensure!(
        got.missing.name.is_empty() && got.missing.location == Some(MISSING_POINT),
        "GetFeature: expected an unnamed feature at (0, 0), got {:?}",
        got.missing
    );
    let rect = list_rectangle();
    let expected: Vec<_> = features
        .iter()
        .filter(|f| f.location.as_ref().is_some_and(|p| in_range(p, &rect)))
        .cloned()
        .collect();
    ensure!(
        got.listed == expected,
        "ListFeatures: got {} features, expected {}",
        got.listed.len(),
        expected.len()
    );
    let hits: usize = route
        .iter()
        .map(|p| {
            features
                .iter()
                .filter(|f| f.location.as_ref() == Some(p))
                .count()
        })
        .sum();
    let distance: i32 = route.windows(2).map(|w| distance_m(&w[0], &w[1])).sum();
    ensure!(
        got.summary.point_count as usize == route.len()
            && got.summary.feature_count as usize == hits
            && got.summary.distance == distance,
        "RecordRoute: got {:?}, expected {} points, {hits} features, {distance} m",
        got.summary,
        route.len()
    );
    let expected_chat: Vec<String> = chat_notes()
        .into_iter()
        .take(3)
        .map(|n| n.message)
        .collect();
    let chat: Vec<String> = got.chat.iter().map(|n| n.message.clone()).collect();
    ensure!(
        chat == expected_chat,
        "RouteChat: got {chat:?}, expected {expected_chat:?}"
    );

    server.shutdown().await?;
    out.line(format!(
        "all four call kinds OK in {} ms",
        started.elapsed().as_millis()
    ));
    Ok(())
}
