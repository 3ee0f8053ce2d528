//! Totals as text: the one CSV and JSON form of a `count.totals` row, which
//! the HTTP API answers and `count export` writes.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::db::store::TotalRow;

/// The CSV header row (RFC 4180 lines end in CRLF).
/// Columns past `live` came with tenants and statuses: appended, so that
/// readers by position keep working.
pub const CSV_HEADER: &str = "bucket,method,path,total,live,tenant,status_code,status_class\r\n";

/// A time as RFC 3339 in UTC (`2026-11-29T12:00:00Z`).
pub fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// One row as JSON; a group's members are null unless grouped by it (and
/// `status_code` when unknown).
pub fn json(row: &TotalRow) -> serde_json::Value {
    serde_json::json!({
        "bucket": rfc3339(row.bucket),
        "method": row.method,
        "path": row.path,
        "tenant": row.tenant,
        "status_code": row.status_code,
        "status_class": row.status_class,
        "total": row.total,
        "live": row.live,
    })
}

/// One row as a CSV line; a group's fields are empty unless grouped by it.
pub fn csv(row: &TotalRow) -> String {
    format!(
        "{},{},{},{},{},{},{},{}\r\n",
        rfc3339(row.bucket),
        csv_field(row.method.as_deref().unwrap_or("")),
        csv_field(row.path.as_deref().unwrap_or("")),
        row.total,
        row.live,
        csv_field(row.tenant.as_deref().unwrap_or("")),
        row.status_code
            .map(|code| code.to_string())
            .unwrap_or_default(),
        row.status_class.as_deref().unwrap_or(""),
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
