//! RouteGuide behaviour over real sockets: a server on 127.0.0.1:0 with the shipped
//! database, the generated client. Expected values come from the JSON file read here
//! independently, or were computed outside this crate (see the RecordRoute test).

use std::time::Duration;

use examples::pb::routeguide::route_guide_client::RouteGuideClient;
use examples::pb::routeguide::{Point, Rectangle, RouteNote};
use examples::routeguide::{default_db_path, load_features, RouteGuideService};
use examples::RunningServer;
use futures_util::stream;
use grpc_runtime::server::Server;
use tokio::sync::mpsc;

fn pt(latitude: i32, longitude: i32) -> Point {
    Point {
        latitude,
        longitude,
    }
}

/// The JSON database as (lat, lon, name), parsed without the crate's loader.
fn raw_db() -> Vec<(i64, i64, String)> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/route_guide_db.json"
    ))
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["location"]["latitude"].as_i64().unwrap(),
                f["location"]["longitude"].as_i64().unwrap(),
                f["name"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

async fn start() -> (RunningServer, RouteGuideClient) {
    let service = RouteGuideService::new(load_features(&default_db_path()).unwrap());
    let server = RunningServer::start(Server::builder().add_service(service.into_server()))
        .await
        .unwrap();
    let client = RouteGuideClient::new(examples::connect(&server.url()).await.unwrap());
    (server, client)
}

fn channel_stream<T: Send + 'static>() -> (
    mpsc::UnboundedSender<T>,
    impl futures_core::Stream<Item = T> + Send + 'static,
) {
    let (tx, rx) = mpsc::unbounded_channel::<T>();
    (
        tx,
        stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) }),
    )
}

#[tokio::test]
async fn get_feature_found() {
    let (server, client) = start().await;
    let db = raw_db();
    let (lat, lon, name) = &db[0];
    let p = pt(*lat as i32, *lon as i32);
    let feature = client.get_feature(p).await.unwrap().into_inner();
    assert_eq!(feature.name, *name);
    assert_eq!(
        feature.name,
        "Old Mill Bridge, 72 Station Road, Bramblewood"
    );
    assert_eq!(feature.location, Some(p));
    // Every named feature is found by its exact location.
    for (lat, lon, name) in db.iter().filter(|f| !f.2.is_empty()) {
        let got = client
            .get_feature(pt(*lat as i32, *lon as i32))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(&got.name, name);
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn get_feature_not_found_is_unnamed_feature_at_the_point() {
    let (server, client) = start().await;
    for p in [pt(0, 0), pt(409_146_139, -746_188_906), pt(-1, 1)] {
        let feature = client.get_feature(p).await.unwrap().into_inner();
        assert_eq!(feature.name, "", "{p:?}");
        assert_eq!(feature.location, Some(p));
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn list_features_inside_rectangle() {
    let (server, client) = start().await;
    let (lat_a, lon_a, lat_b, lon_b) = (
        407_500_000i64,
        -743_000_000i64,
        405_000_000i64,
        -746_000_000i64,
    );
    // Corners given hi-then-lo: the server must normalise them.
    let rect = Rectangle {
        lo: Some(pt(lat_a as i32, lon_a as i32)),
        hi: Some(pt(lat_b as i32, lon_b as i32)),
    };
    let expected: Vec<String> = raw_db()
        .into_iter()
        .filter(|(lat, lon, _)| (lat_b..=lat_a).contains(lat) && (lon_b..=lon_a).contains(lon))
        .map(|f| f.2)
        .collect();
    assert_eq!(expected.len(), 6, "the data set changed; recheck this test");
    let mut stream = client.list_features(rect).await.unwrap().into_inner();
    let mut got = Vec::new();
    while let Some(f) = stream.message().await.unwrap() {
        got.push(f.name);
    }
    assert_eq!(got, expected);
    assert!(stream.status().unwrap().is_ok());

    // The whole data set, unnamed features included.
    let all = Rectangle {
        lo: Some(pt(-900_000_000, -1_800_000_000)),
        hi: Some(pt(900_000_000, 1_800_000_000)),
    };
    let mut stream = client.list_features(all).await.unwrap().into_inner();
    let mut n = 0;
    while stream.message().await.unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, raw_db().len());

    // A rectangle with nothing inside: an empty stream that ends OK.
    let empty = Rectangle {
        lo: Some(pt(0, 0)),
        hi: Some(pt(10, 10)),
    };
    let mut stream = client.list_features(empty).await.unwrap().into_inner();
    assert!(stream.message().await.unwrap().is_none());
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn record_route_summary_for_a_fixed_route() {
    let (server, client) = start().await;
    // Database points 0, 1, 1 (twice), 2, a point with no feature, point 3. Distances per
    // leg (haversine, R = 6371000 m, truncated to whole metres per leg) computed with
    // Python's math module: 44392 + 0 + 39462 + 12765 + 8702 = 105321.
    let route = vec![
        pt(409_146_138, -746_188_906),
        pt(405_662_475, -748_762_564),
        pt(405_662_475, -748_762_564),
        pt(406_066_273, -744_119_653),
        pt(407_000_000, -745_000_000),
        pt(406_604_709, -744_109_231),
    ];
    let summary = client
        .record_route(stream::iter(route))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.point_count, 6);
    assert_eq!(summary.feature_count, 5);
    assert_eq!(summary.distance, 105_321);
    assert_eq!(summary.elapsed_time, 0);

    let empty = client
        .record_route(stream::iter(Vec::<Point>::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (empty.point_count, empty.feature_count, empty.distance),
        (0, 0, 0)
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn record_route_elapsed_time_in_seconds() {
    let (server, client) = start().await;
    let (tx, points) = channel_stream::<Point>();
    let call = tokio::spawn(async move { client.record_route(points).await });
    tx.send(pt(0, 0)).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    tx.send(pt(10_000_000, 0)).unwrap();
    drop(tx);
    let summary = call.await.unwrap().unwrap().into_inner();
    assert_eq!(summary.point_count, 2);
    assert_eq!(summary.feature_count, 0);
    assert_eq!(summary.distance, 111_194); // one degree of latitude
    assert_eq!(summary.elapsed_time, 1);
    server.shutdown().await.unwrap();
}

fn note(lat: i32, lon: i32, m: &str) -> RouteNote {
    RouteNote {
        location: Some(pt(lat, lon)),
        message: m.to_string(),
    }
}

#[tokio::test]
async fn route_chat_sends_earlier_notes_at_the_same_location_first() {
    let (server, client) = start().await;
    let (tx, notes) = channel_stream::<RouteNote>();
    let mut replies = client.route_chat(notes).await.unwrap().into_inner();

    tx.send(note(1, 1, "A1")).unwrap();
    tx.send(note(2, 2, "B1")).unwrap();
    tx.send(note(1, 1, "A2")).unwrap();
    // A2 is answered with A1 (the earlier note at (1, 1)), before we send anything else.
    let first = replies.message().await.unwrap().unwrap();
    assert_eq!(first, note(1, 1, "A1"));
    tx.send(note(1, 1, "A3")).unwrap();
    tx.send(note(2, 2, "B2")).unwrap();
    drop(tx);
    let mut rest = Vec::new();
    while let Some(n) = replies.message().await.unwrap() {
        rest.push(n.message);
    }
    assert_eq!(rest, ["A1", "A2", "B1"]);

    // Notes are kept by the server across calls.
    let mut replies = client
        .route_chat(stream::iter(vec![note(1, 1, "A4")]))
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while let Some(n) = replies.message().await.unwrap() {
        got.push(n.message);
    }
    assert_eq!(got, ["A1", "A2", "A3"]);
    server.shutdown().await.unwrap();
}
