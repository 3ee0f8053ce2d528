//! One migrator at a time, without advisory locks (CockroachDB has none):
//! a lease row in a table of its own (`count_migration_lease`, beside
//! refinery's history table), taken in a transaction of its own before the
//! migrations run and given back after. A migrator that dies keeps the
//! lease only until it expires (5 minutes, in queries/lease_take.sql); the
//! others wait for it, then find the migrations applied.

use std::time::Duration;

use tokio::time::Instant;

use crate::error::{Error, Result};

/// How often a waiting migrator looks again.
const POLL: Duration = Duration::from_millis(200);

/// How long a migrator waits for the lease: longer than a lease lasts, so a
/// dead holder's lease expires first.
const WAIT: Duration = Duration::from_secs(6 * 60);

/// The migration lease, held until [`Lease::release`].
#[derive(Debug)]
pub(crate) struct Lease {
    holder: String,
}

impl Lease {
    /// Takes the lease, waiting while another migrator holds it.
    pub(crate) async fn take(client: &tokio_postgres::Client) -> Result<Lease> {
        client
            .batch_execute(include_str!("../../queries/lease_table.sql"))
            .await?;
        let holder = format!("pid-{}-{:016x}", std::process::id(), fastrand::u64(..));
        let deadline = Instant::now() + WAIT;
        let mut waited = false;
        loop {
            let taken = client
                .query_opt(include_str!("../../queries/lease_take.sql"), &[&holder])
                .await?;
            if taken.is_some() {
                return Ok(Lease { holder });
            }
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
    }

    /// Gives the lease back.
    pub(crate) async fn release(self, client: &tokio_postgres::Client) -> Result<()> {
        client
            .execute(
                include_str!("../../queries/lease_release.sql"),
                &[&self.holder],
            )
            .await?;
        Ok(())
    }
}
