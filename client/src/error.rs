//! The crate's one error type.

/// What can go wrong when setting up or shutting down a [`crate::Counter`].
/// Recording never fails: it drops and counts instead.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The count server's URL could not be used.
    #[error("count server URL {url}: {source}")]
    Endpoint {
        /// The URL as given.
        url: String,
        /// Why it was refused.
        source: tonic::transport::Error,
    },
    /// The bearer token cannot be sent as an HTTP header value.
    #[error("the bearer token has characters an HTTP header cannot carry")]
    Token,
    /// `shutdown` ran out of time with requests still undelivered.
    #[error("{requests} recorded requests could not be delivered before the deadline")]
    Undelivered {
        /// Requests recorded but neither delivered nor dropped.
        requests: u64,
    },
}
