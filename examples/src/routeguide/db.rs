//! The feature database: a JSON array of `{"location": {"latitude": E7, "longitude": E7},
//! "name": "..."}` objects, the format of the reference example's `route_guide_db.json`.
//! The repository ships its own data set in `examples/data/route_guide_db.json`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::pb::routeguide::{Feature, Point};

/// Why the database could not be loaded.
#[derive(Debug)]
pub struct DbError(String);

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DbError {}

/// The shipped database, `examples/data/route_guide_db.json` (found through the crate's
/// manifest directory at build time).
pub fn default_db_path() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/route_guide_db.json"
    ))
}

/// Reads and parses the database at `path`.
pub fn load_features(path: &Path) -> Result<Vec<Feature>, DbError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| DbError(format!("cannot read {}: {e}", path.display())))?;
    parse_features(&text).map_err(|DbError(m)| DbError(format!("{}: {m}", path.display())))
}

/// Parses the JSON text of a database.
pub fn parse_features(text: &str) -> Result<Vec<Feature>, DbError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| DbError(format!("invalid JSON: {e}")))?;
    let items = value
        .as_array()
        .ok_or_else(|| DbError("expected a JSON array of features".into()))?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| parse_feature(item).map_err(|m| DbError(format!("feature {i}: {m}"))))
        .collect()
}

fn parse_feature(item: &Value) -> Result<Feature, String> {
    let name = match item.get("name") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err("\"name\" is not a string".into()),
    };
    let loc = item.get("location").ok_or("missing \"location\"")?;
    let coord = |key: &str| -> Result<i32, String> {
        let v = loc
            .get(key)
            .ok_or_else(|| format!("missing \"location.{key}\""))?;
        v.as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| format!("\"location.{key}\" is not a 32-bit integer (E7 degrees)"))
    };
    Ok(Feature {
        name,
        location: Some(Point {
            latitude: coord("latitude")?,
            longitude: coord("longitude")?,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let f = parse_features(r#"[{"location":{"latitude":1,"longitude":-2},"name":"a"},{"location":{"latitude":3,"longitude":4}}]"#)
            .unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].name, "a");
        assert_eq!(
            f[1].location,
            Some(Point {
                latitude: 3,
                longitude: 4
            })
        );
        assert!(parse_features("{}").is_err());
        assert!(parse_features(r#"[{"name":"x"}]"#).is_err());
        assert!(parse_features(r#"[{"location":{"latitude":1e12,"longitude":0}}]"#).is_err());
        assert!(parse_features("[").is_err());
    }

    #[test]
    fn shipped_db_loads() {
        let f = load_features(&default_db_path()).unwrap();
        assert_eq!(f.len(), 50);
        assert!(f.iter().any(|f| f.name.is_empty()));
    }
}
