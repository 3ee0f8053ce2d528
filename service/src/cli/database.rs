//! Which database a subcommand uses: a URL, or the embedded cluster.

use std::path::PathBuf;

use chrono::NaiveDate;
use clap::Args;

use crate::db::location::{Database, DatabaseLocation};
use crate::db::store::{Schema, Store};
use crate::defaults;
use crate::error::Result;

/// Which database to use.
#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL or key=value string; also read from DB_URL. Without one,
    /// count runs its embedded PostgreSQL cluster.
    #[arg(long, env = "COUNT_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Base directory of the embedded cluster [default: /var/lib/count as
    /// root, else the user's data directory + /count].
    #[arg(long, env = "COUNT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL server binaries for the embedded cluster [default: the
    /// newest /usr/lib/postgresql/*/bin].
    #[arg(long, env = "COUNT_PG_BIN_DIR")]
    pub pg_bin_dir: Option<PathBuf>,
    /// Most database connections kept open.
    #[arg(long, env = "COUNT_POOL_SIZE", default_value_t = defaults::POOL_SIZE)]
    pub pool_size: usize,
    /// Use the schema and SQL API as they are: `count migrate` ran as their
    /// owner, and this role has only the grants of sql/roles.sql.
    #[arg(long, env = "COUNT_NO_MIGRATE")]
    pub no_migrate: bool,
}

/// `count rollup`.
#[derive(Debug, Args)]
pub struct RollupArgs {
    /// The database.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Roll up this UTC day (YYYY-MM-DD).
    #[arg(
        long,
        env = "COUNT_ROLLUP_DAY",
        required_unless_present = "due",
        conflicts_with = "due"
    )]
    pub day: Option<NaiveDate>,
    /// Roll up every raw count, whatever its day (what `count serve` does
    /// every few seconds).
    #[arg(long, env = "COUNT_ROLLUP_DUE")]
    pub due: bool,
}

impl DatabaseArgs {
    /// The database these flags name (`DB_URL` is the original service's
    /// name for `--database-url`).
    pub(super) fn location(&self) -> DatabaseLocation {
        DatabaseLocation {
            url: self
                .database_url
                .clone()
                .or_else(|| std::env::var("DB_URL").ok()),
            data_dir: self.data_dir.clone(),
            pg_bin_dir: self.pg_bin_dir.clone(),
        }
    }

    /// Whether to set the schema up (`--no-migrate` says no).
    pub(super) fn schema(&self) -> Schema {
        if self.no_migrate {
            Schema::Existing
        } else {
            Schema::Prepare
        }
    }

    /// The database, and a store opened as [`DatabaseArgs::schema`] says.
    pub(super) async fn open_store(&self) -> Result<(Database, Store)> {
        let database = self.location().open().await?;
        let store = Store::connect(database.config.clone(), self.pool_size, self.schema()).await?;
        Ok((database, store))
    }
}
