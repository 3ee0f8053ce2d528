//! The crate's one error type, and its one mapping to gRPC status codes.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// Everything that can go wrong in the service and the CLI.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request or command-line value is invalid; `field` names it
    /// (`entries[3].path`, `period.month`, `--day`).
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// The offending field, as a client would spell it.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A read found no totals (the original service's NOT_FOUND).
    #[error("{0}")]
    NotFound(String),
    /// The service cannot answer yet (the database is not connected).
    #[error("{0}")]
    Unavailable(String),
    /// A request is larger than a limit allows (`--max-batch-entries`): a
    /// client may split it, as it does a message over `--max-message-bytes`,
    /// which tonic refuses with the same code.
    #[error("{field}: {reason}")]
    TooLarge {
        /// The field over the limit.
        field: String,
        /// By how much.
        reason: String,
    },
    /// A limit that protects the service was reached (series caps).
    #[error("{0}")]
    ResourceExhausted(String),
    /// A client took longer than allowed to send part of its request (an
    /// HTTP body): `DEADLINE_EXCEEDED`, and over HTTP 408.
    #[error("{field}: {reason}")]
    TimedOut {
        /// The part that did not arrive.
        field: String,
        /// How long it had.
        reason: String,
    },
    /// A tenant-bound token named another tenant (`entries[3].tenant`,
    /// `tenants[0]`).
    #[error("{field}: {reason}")]
    OtherTenant {
        /// The field naming the other tenant.
        field: String,
        /// Which tenant the token is bound to.
        reason: String,
    },
    /// Entries of an `AddBatch` were refused, so the batch applied nothing.
    /// The status carries each refusal as a `google.rpc.BadRequest` field
    /// violation, so that a client can resend the other entries.
    #[error("{}", refusals_summary(.0))]
    EntriesRefused(Vec<Refusal>),
    /// A statement failed or the connection broke.
    #[error("database: {}", with_causes(.0))]
    Database(#[from] tokio_postgres::Error),
    /// No database connection could be had from the pool.
    #[error("database pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// The pool could not be built from the configuration.
    #[error("database pool configuration: {0}")]
    PoolBuild(#[from] deadpool_postgres::BuildError),
    /// A schema migration failed; the message carries its causes, which is
    /// where refinery keeps the database's words.
    #[error("migration: {}", with_causes(.0))]
    Migration(#[from] refinery::Error),
    /// The embedded PostgreSQL cluster could not be set up, started or stopped.
    #[error("embedded PostgreSQL: {0}")]
    Cluster(String),
    /// A part of the service could not be set up from its configuration
    /// (the TLS client configuration, the reflection descriptors).
    #[error("set-up: {0}")]
    Setup(String),
    /// A file or socket operation failed; `context` says on what.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the path or address.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The gRPC transport failed (binding, serving or connecting).
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// A gRPC call failed: one the CLI made, or the `Add` stream a client
    /// was sending broke.
    #[error("{}: {}", .0.code(), .0.message())]
    Rpc(#[from] Status),
    /// A stream's flush failed; `committed` requests of the stream were
    /// committed before it.
    #[error("{source}; {committed} requests of this stream were committed before the failure")]
    Flush {
        /// Requests of the stream committed before the failure.
        committed: i64,
        /// Why the flush failed.
        source: Box<Error>,
    },
    /// A background task of the server died.
    #[error("{0}")]
    Task(String),
    /// `count check` found steps of the SQL API that fail on this database
    /// (it printed which).
    #[error("count check: {failed} of {steps} steps failed")]
    CheckFailed {
        /// How many failed.
        failed: usize,
        /// How many ran.
        steps: usize,
    },
}

/// One refused entry of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The entry and field, as a client would spell it (`entries[3].path`).
    pub field: String,
    /// Why it was refused.
    pub reason: String,
    /// What kind of refusal: it decides the batch's code.
    pub kind: RefusalKind,
}

/// Why an entry was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// Invalid (`INVALID_ARGUMENT`).
    Invalid,
    /// Valid, but a series cap refused it: a batch refused only for these
    /// is `RESOURCE_EXHAUSTED`.
    OverCap,
    /// It names a tenant its token may not write: any such refusal makes
    /// the batch `PERMISSION_DENIED`.
    OtherTenant,
}

/// The first refusal, and how many more there are.
fn refusals_summary(refusals: &[Refusal]) -> String {
    match refusals {
        [] => "no entries refused".to_owned(),
        [only] => format!("{}: {}", only.field, only.reason),
        [first, rest @ ..] => format!(
            "{}: {} (and {} more entries refused)",
            first.field,
            first.reason,
            rest.len()
        ),
    }
}

/// `error` and each of its sources, joined by ": ".
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::InvalidArgument`] for `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// An [`Error::Io`] that says what was being done.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Error::Io { context, source }
    }

    /// Whether this is a conflict with a concurrent transaction (another
    /// server setting the same schema up at the same moment), which the
    /// same work retried gets past: a serialization failure, a deadlock, or
    /// an object or row another transaction created first.
    pub fn is_conflict(&self) -> bool {
        const CONFLICTS: [&str; 6] = ["40001", "40P01", "23505", "42P07", "42710", "XX000"];
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(error) = source {
            if let Some(db) = error.downcast_ref::<tokio_postgres::Error>() {
                return db.code().is_some_and(|c| CONFLICTS.contains(&c.code()));
            }
            source = error.source();
        }
        false
    }

    /// The gRPC code a client should see: the one place SQLSTATEs become codes.
    pub fn code(&self) -> Code {
        match self {
            Error::InvalidArgument { .. } => Code::InvalidArgument,
            Error::NotFound(_) => Code::NotFound,
            Error::TooLarge { .. } => Code::OutOfRange,
            Error::ResourceExhausted(_) => Code::ResourceExhausted,
            Error::TimedOut { .. } => Code::DeadlineExceeded,
            Error::OtherTenant { .. } => Code::PermissionDenied,
            Error::EntriesRefused(refusals)
                if refusals.iter().any(|r| r.kind == RefusalKind::OtherTenant) =>
            {
                Code::PermissionDenied
            }
            Error::EntriesRefused(refusals)
                if refusals.iter().all(|r| r.kind == RefusalKind::OverCap) =>
            {
                Code::ResourceExhausted
            }
            Error::EntriesRefused(_) => Code::InvalidArgument,
            Error::Unavailable(_) => Code::Unavailable,
            Error::Database(e) => database_code(e),
            Error::Pool(_) => Code::Unavailable,
            Error::Rpc(status) => status.code(),
            Error::Flush { source, .. } => source.code(),
            Error::PoolBuild(_)
            | Error::Migration(_)
            | Error::Cluster(_)
            | Error::Setup(_)
            | Error::Task(_)
            | Error::CheckFailed { .. }
            | Error::Io { .. }
            | Error::Transport(_) => Code::Internal,
        }
    }
}

/// Maps a database error to a gRPC code by its SQLSTATE class; an error
/// without a SQLSTATE is a broken connection.
fn database_code(error: &tokio_postgres::Error) -> Code {
    let Some(state) = error.code() else {
        return Code::Unavailable;
    };
    match state.code() {
        "23505" => Code::AlreadyExists,
        "40001" | "40P01" => Code::Aborted,
        "57014" => Code::Cancelled,
        code if code.starts_with("22") => Code::InvalidArgument,
        code if code.starts_with("08") || code.starts_with("53") || code.starts_with("57P") => {
            Code::Unavailable
        }
        _ => Code::Internal,
    }
}

/// What a client is told: the database's own message where it has one (it
/// already names the argument and index), else the error's text.
fn client_message(error: &Error) -> String {
    match error {
        Error::Database(e) => match e.as_db_error() {
            Some(db) => db.message().to_owned(),
            None => error.to_string(),
        },
        Error::Flush { committed, source } => format!(
            "{}; {committed} requests of this stream were committed before the failure",
            client_message(source)
        ),
        _ => error.to_string(),
    }
}

/// The arguments of `count.totals` (sql/reads.sql; a test checks them
/// there) that its refusals name, by the names `GetTotals` and the HTTP
/// API give them too. (`count.add_batch`'s refusals name positions in the
/// merged batch, not in a request: the service checks entries first, so
/// one reaching it is the service's own fault, not a field of the caller.)
const TOTALS_ARGUMENTS: [&str; 6] = [
    "start_time",
    "end_time",
    "granularity",
    "time_zone",
    "group_by",
    "top",
];

/// The argument a refusal of `count.totals` names, and the refusal, when
/// `error` is one (an invalid-argument SQLSTATE, class 22): its messages
/// read `count.totals: argument …`, the argument first, on both backends,
/// since CockroachDB's `RAISE` takes no `COLUMN` to carry it apart.
pub(crate) fn sql_api_field(error: &Error) -> Option<(String, String)> {
    let Error::Database(e) = error else {
        return None;
    };
    let db = e.as_db_error()?;
    if !db.code().code().starts_with("22") {
        return None;
    }
    let rest = db.message().strip_prefix("count.totals: ")?;
    let field = TOTALS_ARGUMENTS.iter().find(|argument| {
        rest.strip_prefix(**argument)
            .is_some_and(|after| after.starts_with([' ', ':']))
    })?;
    let reason = rest[field.len()..].trim_start_matches([':', ' ']);
    Some(((*field).to_owned(), reason.to_owned()))
}

/// Whether the database (a statement or the pool) is at the root of `error`.
fn from_database(error: &Error) -> bool {
    match error {
        Error::Database(_) | Error::Pool(_) => true,
        Error::Flush { source, .. } => from_database(source),
        _ => false,
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        // A status that came in (a client's broken stream) goes out as it
        // came: code, message and details.
        if let Error::Rpc(status) = error {
            return status;
        }
        let code = error.code();
        if from_database(&error) {
            crate::metrics::database_error();
        }
        let message = client_message(&error);
        if code == Code::Internal {
            tracing::error!(%error, "internal error");
        }
        if let Error::EntriesRefused(refusals) = &error {
            let violations: Vec<FieldViolation> = refusals
                .iter()
                .map(|r| FieldViolation::new(r.field.clone(), r.reason.clone()))
                .collect();
            return Status::with_error_details(
                code,
                message,
                ErrorDetails::with_bad_request(violations),
            );
        }
        // The field at fault, as google.rpc.BadRequest: the service's own
        // checks, and the SQL API's.
        let field = match &error {
            Error::InvalidArgument { field, reason }
            | Error::TooLarge { field, reason }
            | Error::TimedOut { field, reason }
            | Error::OtherTenant { field, reason } => Some((field.clone(), reason.clone())),
            error => sql_api_field(error),
        };
        if let Some((field, reason)) = field {
            return Status::with_error_details(
                code,
                message,
                ErrorDetails::with_bad_request(vec![FieldViolation::new(field, reason)]),
            );
        }
        Status::new(code, message)
    }
}

#[cfg(test)]
mod tests {
    /// The argument names the refusals' parser knows are `count.totals`'
    /// own.
    #[test]
    fn the_totals_arguments_are_count_totals_parameters() {
        let sql = include_str!("../../sql/reads.sql");
        let signature = sql
            .split("CREATE OR REPLACE FUNCTION count.totals(")
            .nth(1)
            .and_then(|rest| rest.split(") RETURNS").next())
            .expect("count.totals in sql/reads.sql");
        let parameters: Vec<&str> = signature
            .split(',')
            .filter_map(|p| p.split_whitespace().next())
            .collect();
        for argument in super::TOTALS_ARGUMENTS {
            assert!(parameters.contains(&argument), "{argument}: {parameters:?}");
        }
    }
}
