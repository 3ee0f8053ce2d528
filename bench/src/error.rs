//! The bench's one error type.

/// What can stop a bench run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A scenario's self-check found the database holding something other
    /// than what it sent, or a scenario's task died.
    #[error("bench: {0}")]
    Check(String),
    /// The private cluster, or a store on it, failed (count's own error).
    #[error("{0}")]
    Count(#[from] count_service::error::Error),
    /// A statement of the bench's own failed: the server's message (with
    /// its SQLSTATE and detail) when it sent one.
    #[error("database: {}", .0.as_db_error().map_or_else(|| .0.to_string(), |e| e.to_string()))]
    Database(#[from] tokio_postgres::Error),
    /// A gRPC call of the load failed.
    #[error("gRPC: {}: {}", .0.code(), .0.message())]
    Rpc(#[from] tonic::Status),
    /// The gRPC transport failed.
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// A process or socket operation failed; `context` says on what.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl Error {
    /// An [`Error::Io`] that says what was being done.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

/// A `Result` with the bench's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
