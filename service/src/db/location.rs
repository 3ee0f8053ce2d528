//! Which database the commands use: the one `--database-url` names, or the
//! embedded default, a private cluster under `--data-dir`.

use std::path::PathBuf;

use crate::db::cluster::{Cluster, ClusterOptions, DATABASE};
use crate::db::connect::ConnectConfig;
use crate::error::{Error, Result};

/// A database to connect to, keeping the embedded cluster (if any) running
/// for as long as this value lives.
#[derive(Debug)]
pub struct Database {
    /// How to connect.
    pub config: ConnectConfig,
    /// The embedded cluster, stopped on drop if this process started it.
    pub cluster: Option<Cluster>,
}

/// Where the database is, as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct DatabaseLocation {
    /// A libpq URL or key=value string; `None` for the embedded default.
    pub url: Option<String>,
    /// The embedded cluster's base directory.
    pub data_dir: Option<PathBuf>,
    /// Where the PostgreSQL server binaries are, for the embedded cluster.
    pub pg_bin_dir: Option<PathBuf>,
}

impl DatabaseLocation {
    /// Parses the URL, or creates and starts the embedded cluster and its
    /// database.
    pub async fn open(&self) -> Result<Database> {
        if let Some(url) = &self.url {
            return Ok(Database {
                config: ConnectConfig::parse(url)?,
                cluster: None,
            });
        }
        let mut options = ClusterOptions::new(
            self.data_dir
                .clone()
                .unwrap_or_else(crate::db::cluster::default_base_dir),
        );
        options.bin_dir = self.pg_bin_dir.clone();
        let cluster = tokio::task::spawn_blocking(move || Cluster::start(&options))
            .await
            .map_err(|e| Error::Cluster(format!("start-up task failed: {e}")))??;
        cluster.create_database().await?;
        if !cluster.create_extension().await? {
            tracing::info!("the count extension is not installed in this PostgreSQL");
        }
        tracing::info!(url = %cluster.url(DATABASE), "embedded PostgreSQL (psql takes this URL)");
        Ok(Database {
            config: cluster.config(DATABASE).into(),
            cluster: Some(cluster),
        })
    }
}
