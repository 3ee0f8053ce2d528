//! Totals as text: the one CSV and JSON form of a `count.totals` row, which
//! the HTTP API answers and `count export` writes.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::db::store::TotalRow;

/// The CSV header row (RFC 4180 lines end in CRLF).
pub const CSV_HEADER: &str = "bucket,method,path,total,live\r\n";

/// A time as RFC 3339 in UTC (`2026-11-29T12:00:00Z`).
pub fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// One row as JSON; method and path are null without grouping by endpoint.
pub fn json(row: &TotalRow) -> serde_json::Value {
    serde_json::json!({
        "bucket": rfc3339(row.bucket),
        "method": row.method,
        "path": row.path,
        "total": row.total,
        "live": row.live,
    })
}

/// One row as a CSV line; method and path are empty without grouping by
/// endpoint.
pub fn csv(row: &TotalRow) -> String {
    format!(
        "{},{},{},{},{}\r\n",
        rfc3339(row.bucket),
        csv_field(row.method.as_deref().unwrap_or("")),
        csv_field(row.path.as_deref().unwrap_or("")),
        row.total,
        row.live
    )
}

/// A field quoted when it holds a comma, a quote or a line break. (A path
/// that starts with `=` is written as it is: a spreadsheet that reads it as
/// a formula should be told to import text.)
fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_fields_are_quoted_only_when_they_must_be() {
        assert_eq!(csv_field("/users/{id}"), "/users/{id}");
        assert_eq!(csv_field("/a,b"), "\"/a,b\"");
        assert_eq!(csv_field("/say \"hi\""), "\"/say \"\"hi\"\"\"");
    }
}
