//! `count add`: one count sent to a running server, as a script or a first
//! try would send it.

use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use clap::Args;
use count_proto::v1::{AddBatchRequest, AddRequest, Method};

use super::positive;
use super::remote::ServerArgs;
use crate::entry::stored_method;
use crate::error::{Error, Result};

/// `count add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// The requests' method: GET, POST, …, GRPC (any case); any other is
    /// counted as OTHER.
    pub method: String,
    /// The route, e.g. `/users/{id}`.
    pub path: String,
    /// How many requests.
    #[arg(long, default_value_t = 1, value_parser = positive)]
    pub count: usize,
    /// Whom they were for (a customer, an account) [default: none].
    #[arg(long, default_value = "")]
    pub tenant: String,
    /// How they went: the HTTP status code, or for GRPC the gRPC status
    /// code (0 is OK) [default: unknown].
    #[arg(long = "status")]
    pub status_code: Option<u32>,
    /// When they happened (RFC 3339, e.g. 2026-11-29T12:00:03Z) [default:
    /// now].
    #[arg(long, value_parser = DateTime::parse_from_rfc3339)]
    pub at: Option<DateTime<FixedOffset>>,
    /// The server.
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Sends the count with `AddBatch` (a producer of its own, sequence 1: a
/// retry of the call counts once) and says what was counted.
pub(super) async fn add(args: &AddArgs) -> Result<()> {
    let method = Method::from_str_name(&args.method.to_uppercase()).unwrap_or(Method::Unspecified);
    let at = args.at.map_or_else(Utc::now, |at| at.with_timezone(&Utc));
    let count = i64::try_from(args.count)
        .map_err(|_| Error::invalid("--count", format!("{} is too large", args.count)))?;
    let request = AddBatchRequest {
        producer_id: format!("count-add-{:016x}", fastrand::u64(..)),
        sequence: 1,
        entries: vec![AddRequest {
            method: method as i32,
            path: args.path.clone(),
            request_timestamp: Some(prost_types::Timestamp {
                seconds: at.timestamp(),
                nanos: 0,
            }),
            count,
            tenant: args.tenant.clone(),
            status_code: args.status_code,
        }],
    };
    let response = args.server.connect().await?.add_batch(request).await?;
    println!(
        "counted {} {} {} at {}",
        response.into_inner().accepted,
        stored_method(method),
        args.path,
        // The time sent, to the second (the server counts it in its minute).
        at.to_rfc3339_opts(SecondsFormat::Secs, false)
    );
    Ok(())
}
