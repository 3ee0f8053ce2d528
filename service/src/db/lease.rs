//! One migrator at a time, without advisory locks (CockroachDB has none):
//! a lease row in a table of its own (`count_migration_lease`, beside
//! refinery's history table), taken in a transaction of its own before the
//! migrations run and given back after. The lease lasts 30 seconds and its
//! holder renews it every 10 seconds on a connection of its own, so a long
//! migration keeps it, and a migrator killed mid-way holds up the next one
//! for 30 seconds at most.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{Error, Result};

/// How often a waiting migrator looks again.
const POLL: Duration = Duration::from_millis(200);

/// How often the holder renews the lease (it lasts 30 s: queries/lease_*.sql).
const RENEW_EVERY: Duration = Duration::from_secs(10);

/// How long a migrator waits for the lease before giving up: a live holder
/// renews it, so this only bounds a migration that takes this long.
const WAIT: Duration = Duration::from_secs(30 * 60);

/// The migration lease, held until [`Lease::release`].
#[derive(Debug)]
pub(crate) struct Lease {
    holder: String,
    renewal: JoinHandle<()>,
}

impl Lease {
    /// Takes the lease through `client`, waiting while another migrator
    /// holds it, and keeps it renewed on a connection of its own made with
    /// `config` and `tls`.
    pub(crate) async fn take(
        client: &tokio_postgres::Client,
        config: &tokio_postgres::Config,
        tls: MakeRustlsConnect,
    ) -> Result<Lease> {
        client
            .batch_execute(include_str!("../../queries/lease_table.sql"))
            .await?;
        let holder = format!("pid-{}-{:016x}", std::process::id(), fastrand::u64(..));
        let deadline = Instant::now() + WAIT;
        let mut waited = false;
        while client
            .query_opt(include_str!("../../queries/lease_take.sql"), &[&holder])
            .await?
            .is_none()
        {
            if Instant::now() >= deadline {
                return Err(Error::Unavailable(
                    "another migrator holds count_migration_lease; run `count migrate` as a single job"
                        .to_owned(),
                ));
            }
            if !waited {
                tracing::info!("waiting for another migrator (count_migration_lease)");
                waited = true;
            }
            tokio::time::sleep(POLL).await;
        }
        let (renewer, connection) = config.connect(tls).await?;
        tokio::spawn(connection);
        let renewal = tokio::spawn(renew(renewer, holder.clone()));
        Ok(Lease { holder, renewal })
    }

    /// Gives the lease back. A failure is only logged: the lease expires
    /// by itself, and the set-up it guarded has succeeded or failed already.
    pub(crate) async fn release(self, client: &tokio_postgres::Client) {
        self.renewal.abort();
        if let Err(error) = client
            .execute(
                include_str!("../../queries/lease_release.sql"),
                &[&self.holder],
            )
            .await
        {
            tracing::warn!(%error, "could not give the migration lease back; it expires in 30 s");
        }
    }
}

/// Renews `holder`'s lease until aborted.
async fn renew(client: tokio_postgres::Client, holder: String) {
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        match client
            .execute(include_str!("../../queries/lease_renew.sql"), &[&holder])
            .await
        {
            Ok(1) => {}
            Ok(_) => {
                tracing::warn!("the migration lease was taken over; another migrator may run");
                return;
            }
            Err(error) => tracing::warn!(%error, "could not renew the migration lease"),
        }
    }
}
