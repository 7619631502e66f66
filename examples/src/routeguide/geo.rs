//! Geometry on E7 coordinates (degrees x 10^7), as in the reference example:
//! the inclusive rectangle test of ListFeatures and the haversine distance of
//! RecordRoute.

use crate::pb::routeguide::{Point, Rectangle};

/// E7 coordinates per degree.
pub const COORD_FACTOR: f64 = 1e7;

/// Earth radius in metres used by the reference example.
pub const EARTH_RADIUS_M: f64 = 6_371_000.0;

/// An E7 coordinate in degrees.
pub fn degrees(e7: i32) -> f64 {
    f64::from(e7) / COORD_FACTOR
}

/// True if `p` lies inside `rect` (edges included). The corners may be given in any
/// order: the rectangle is normalised to its lowest and highest latitude and longitude.
pub fn in_range(p: &Point, rect: &Rectangle) -> bool {
    let lo = rect.lo.unwrap_or_default();
    let hi = rect.hi.unwrap_or_default();
    let left = lo.longitude.min(hi.longitude);
    let right = lo.longitude.max(hi.longitude);
    let top = lo.latitude.max(hi.latitude);
    let bottom = lo.latitude.min(hi.latitude);
    p.longitude >= left && p.longitude <= right && p.latitude >= bottom && p.latitude <= top
}

/// Great-circle distance in whole metres between two points (haversine formula,
/// truncated like the reference's `int32(distance)`).
pub fn distance_m(p1: &Point, p2: &Point) -> i32 {
    let lat1 = degrees(p1.latitude).to_radians();
    let lat2 = degrees(p2.latitude).to_radians();
    let lng1 = degrees(p1.longitude).to_radians();
    let lng2 = degrees(p2.longitude).to_radians();
    let dlat = lat2 - lat1;
    let dlng = lng2 - lng1;
    let a = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlng / 2.0).sin().powi(2);
    let c = 2.0 * a.sqrt().atan2((1.0 - a).sqrt());
    (EARTH_RADIUS_M * c) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(latitude: i32, longitude: i32) -> Point {
        Point {
            latitude,
            longitude,
        }
    }

    #[test]
    fn rectangle_is_normalised_and_inclusive() {
        let r = Rectangle {
            lo: Some(pt(10, 20)),
            hi: Some(pt(0, 0)),
        };
        assert!(in_range(&pt(0, 0), &r));
        assert!(in_range(&pt(10, 20), &r));
        assert!(in_range(&pt(5, 5), &r));
        assert!(!in_range(&pt(11, 5), &r));
        assert!(!in_range(&pt(5, -1), &r));
    }

    #[test]
    fn haversine() {
        assert_eq!(distance_m(&pt(0, 0), &pt(0, 0)), 0);
        // One degree of latitude: R * pi / 180 = 111194.93 m.
        assert_eq!(distance_m(&pt(0, 0), &pt(10_000_000, 0)), 111_194);
        // One degree of longitude at 60 degrees north: half of that, along the great circle.
        let d = distance_m(&pt(600_000_000, 0), &pt(600_000_000, 10_000_000));
        assert!((55_590..=55_600).contains(&d), "{d}");
    }
}
