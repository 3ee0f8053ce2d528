//! Which engine the store talks to, told by `version()`: PostgreSQL, or
//! CockroachDB through the portable path. The SQL API is the same on both;
//! only PostgreSQL's own set-up differs (the extension and its catalog
//! queries, per-function settings such as JIT). docs/sql.md,
//! "Portability", says what is checked for CockroachDB.

use crate::error::Result;

/// A database engine the store can set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Engine {
    /// PostgreSQL, with or without the `count` extension.
    Postgres,
    /// CockroachDB: the portable SQL only.
    Cockroach,
}

impl Engine {
    /// Asks the database.
    pub(crate) async fn of(client: &tokio_postgres::Client) -> Result<Engine> {
        let row = client
            .query_one(include_str!("../../queries/version.sql"), &[])
            .await?;
        Ok(Engine::from_version(row.get(0)))
    }

    /// Reads `version()`'s text: CockroachDB's starts with "CockroachDB"
    /// ("CockroachDB CCL v25.2.0 (x86_64-pc-linux-gnu, …)").
    fn from_version(version: &str) -> Engine {
        if version.starts_with("CockroachDB") {
            Engine::Cockroach
        } else {
            Engine::Postgres
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Engine;

    #[test]
    fn version_tells_the_engine() {
        for (version, engine) in [
            (
                "PostgreSQL 15.14 (Debian 15.14-0+deb12u1) on x86_64-pc-linux-gnu",
                Engine::Postgres,
            ),
            (
                "CockroachDB CCL v25.2.0 (x86_64-pc-linux-gnu, built 2025/05/12, go1.23.7)",
                Engine::Cockroach,
            ),
        ] {
            assert_eq!(Engine::from_version(version), engine, "{version}");
        }
    }
}
