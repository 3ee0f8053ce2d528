//! The extension's one error type, and the SQLSTATE each error raises.

use pgrx::PgSqlErrorCode;

/// Everything `count.add_series` and `count.add_batch` can refuse or fail
/// on; [`Error::report`] names the function.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// An argument or array element is NULL where a value is required (22004).
    #[error("{0}")]
    Null(String),
    /// An argument has a value the API does not accept (22023).
    #[error("{0}")]
    Invalid(String),
    /// The sum of the counts does not fit a bigint (22003).
    #[error("the sum of the counts does not fit a bigint")]
    Overflow,
    /// A series row was not visible after inserting it: a concurrent
    /// transaction holds it under snapshot isolation; retrying helps (40001).
    #[error("{0} series were not visible yet; retry")]
    NotVisible(usize),
    /// An SPI call failed (its message).
    #[error("{0}")]
    Spi(String),
}

impl From<pgrx::spi::SpiError> for Error {
    fn from(error: pgrx::spi::SpiError) -> Self {
        Error::Spi(error.to_string())
    }
}

impl Error {
    /// The SQLSTATE a caller sees.
    pub fn code(&self) -> PgSqlErrorCode {
        match self {
            Error::Null(_) => PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            Error::Invalid(_) => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            Error::Overflow => PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
            Error::NotVisible(_) => PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE,
            Error::Spi(_) => PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        }
    }

    /// Raises the error as a PostgreSQL ERROR with its SQLSTATE, its
    /// message prefixed with `function`'s name, as the fallback's are.
    pub fn report(self, function: &str) -> ! {
        pgrx::ereport!(ERROR, self.code(), format!("{function}: {self}"));
    }
}
