//! count-client: count the requests your service handles into a count
//! server, without slowing them down.
//!
//! [`Counter::record`] adds to an in-memory tally by (method, path, minute),
//! and [`Counter::record_response`] by tenant and status code too, and
//! returns; a background task sends the tally with `AddBatch` every
//! flush interval, exactly once per batch, retrying through outages and
//! reconnecting as needed. A server doing 100,000 requests a second sends a
//! few small batches a second, and an outage costs memory in proportion to
//! distinct keys, not requests. [`CountLayer`] does the recording for axum,
//! hyper and tonic servers.
//!
//! Layout:
//! - [`counter`]: the [`Counter`] handle and its builder.
//! - [`layer`]: the tower [`CountLayer`].
//! - [`stats`]: [`Stats`], what a counter did.
//! - [`error`]: the crate's [`Error`].
//! - `tally` (private): the sharded in-memory counts.
//! - `delivery` (private): the background task sending batches.

pub mod counter;
mod delivery;
pub mod error;
pub mod layer;
pub mod stats;
mod tally;

pub use count_proto::v1::Method;
pub use counter::{BearerToken, Counter, CounterBuilder};
pub use error::Error;
pub use layer::{CountLayer, CountedBody, Counting, CountingFuture, RequestInfo};
pub use stats::Stats;
