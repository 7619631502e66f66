//! The RouteGuide tutorial service, with the behaviour of the grpc.io reference example:
//! the feature database ([`db`]), the geometry ([`geo`]: rectangle test and haversine
//! distance on E7 coordinates), the server ([`server::RouteGuideService`]) and the
//! client run shared by the `routeguide-client` binary and the demo ([`client`]).

pub mod client;
pub mod db;
pub mod geo;
pub mod server;

pub use db::{default_db_path, load_features, parse_features, DbError};
pub use server::RouteGuideService;

/// Default address of the route guide server binaries.
pub const DEFAULT_ADDR: &str = "127.0.0.1:10000";

/// Formats a point as `(lat, lon)` in degrees, e.g. `(40.9146138, -74.6188906)`.
pub fn format_point(p: &crate::pb::routeguide::Point) -> String {
    format!(
        "({}, {})",
        geo::degrees(p.latitude),
        geo::degrees(p.longitude)
    )
}
