//! The background task that delivers the tally: batches of at most
//! `max_batch_keys` keys and `max_batch_bytes` bytes sent with `AddBatch`,
//! one at a time, each resent unchanged (same producer id and sequence) until
//! the server acknowledges it. The server applies a (producer, sequence)
//! once, so a batch that was applied but whose answer was lost counts once.
//!
//! What the server refuses costs only what it refuses: a batch with refused
//! entries comes back naming them, and the rest goes out again as a new
//! batch; a batch too large for the server is split in halves; an error a
//! resend cannot fix drops the batch with a logged reason instead of holding
//! up every later one.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use count_proto::v1::count_service_client::CountServiceClient;
use count_proto::v1::{AddBatchRequest, AddRequest};
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::counter::{BearerToken, Config, Shared};
use crate::tally::Key;

/// Sent by counter handles to the task.
pub(crate) enum Command {
    /// Deliver everything recorded so far, then answer.
    Flush(oneshot::Sender<()>),
}

/// Shortest and longest wait between two sends of a failed batch.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(5));

/// How many times in a row one batch may be answered as a duplicate on its
/// first send before it is given up: each time it is resent above the
/// producer's last sequence, so only producers racing on one id get here.
const MAX_RESEQUENCES: u32 = 10;

pub(crate) struct Delivery {
    shared: Arc<Shared>,
    config: Config,
    client: CountServiceClient<InterceptedService<Channel, BearerToken>>,
    commands: mpsc::UnboundedReceiver<Command>,
    outbox: VecDeque<Key>,
    /// Keys moved from the tally to the outbox, ever.
    queued: u64,
    /// Keys delivered or given up, ever (outbox order).
    done: u64,
    /// Flush callers waiting until `done` reaches their mark.
    waiters: Vec<(u64, oneshot::Sender<()>)>,
    /// The last sequence used. It starts at the clock's microseconds, so a
    /// process restarted with the producer id of an earlier one continues
    /// above the earlier one's sequences (it would have to have sent more
    /// than a batch per microsecond to be overtaken).
    sequence: u64,
    /// The largest encoded batch sent: `max_batch_bytes`, lowered when the
    /// server refuses a batch as too large.
    batch_bytes: usize,
    /// False once every counter handle is gone.
    open: bool,
}

/// How one send of a batch ended.
enum Outcome {
    /// Applied (now, or by an earlier send of the same sequence).
    Delivered,
    /// Refused as a whole for a reason a resend cannot fix.
    GivenUp(Status),
    /// The server named these entries (by index, each within the batch) as
    /// refused; the batch applied nothing.
    Refused(Vec<usize>, Status),
    /// Larger than the server takes.
    TooLarge(Status),
}

impl Delivery {
    pub(crate) fn new(
        shared: Arc<Shared>,
        config: Config,
        channel: Channel,
        commands: mpsc::UnboundedReceiver<Command>,
    ) -> Self {
        let token = config.bearer_token.clone();
        let batch_bytes = config.max_batch_bytes;
        Delivery {
            shared,
            config,
            client: CountServiceClient::with_interceptor(channel, token),
            commands,
            outbox: VecDeque::new(),
            queued: 0,
            done: 0,
            waiters: Vec::new(),
            sequence: clock_micros(),
            batch_bytes,
            open: true,
        }
    }

    /// Runs until every counter handle is dropped.
    pub(crate) async fn run(mut self) {
        while self.open {
            tokio::select! {
                () = tokio::time::sleep(self.config.flush_interval) => {}
                () = self.shared.full.notified() => {}
                command = self.commands.recv() => self.command(command),
            }
            self.queue();
            while !self.outbox.is_empty() {
                self.send_next().await;
            }
        }
    }

    fn command(&mut self, command: Option<Command>) {
        match command {
            Some(Command::Flush(answer)) => {
                // Everything recorded before the call is in the tally now.
                self.queue();
                self.waiters.push((self.queued, answer));
                self.answer_waiters();
            }
            None => self.open = false,
        }
    }

    fn queue(&mut self) {
        let keys = self.shared.tally.drain();
        self.shared
            .queued_keys
            .fetch_add(keys.len(), Ordering::Relaxed);
        self.queued += keys.len() as u64;
        self.outbox.extend(keys);
    }

    fn answer_waiters(&mut self) {
        let done = self.done;
        let (ready, waiting) = self.waiters.drain(..).partition(|(mark, _)| *mark <= done);
        self.waiters = waiting;
        for (_, answer) in ready {
            let _ = answer.send(());
        }
    }

    /// Takes the next batch from the outbox and settles every key in it:
    /// delivered, or given up with a logged reason.
    async fn send_next(&mut self) {
        let (entries, taken) = self.take_batch();
        let mut batches = VecDeque::from([entries]);
        while let Some(batch) = batches.pop_front() {
            match self.send(&batch).await {
                Outcome::Delivered => self.shared.stats.delivered(requests(&batch)),
                Outcome::GivenUp(status) => self.give_up(&batch, &status),
                Outcome::Refused(refused, status) => {
                    let (kept, dropped): (Vec<_>, Vec<_>) = batch
                        .into_iter()
                        .enumerate()
                        .partition(|(index, _)| !refused.contains(index));
                    let dropped: Vec<_> = dropped.into_iter().map(|(_, e)| e).collect();
                    self.give_up(&dropped, &status);
                    let kept: Vec<_> = kept.into_iter().map(|(_, e)| e).collect();
                    if !kept.is_empty() {
                        batches.push_front(kept);
                    }
                }
                Outcome::TooLarge(status) if batch.len() > 1 => {
                    let size = encoded_len(&batch);
                    tracing::warn!(%status, size, "count server refused a batch as too large; splitting it");
                    self.batch_bytes = self.batch_bytes.min(size / 2).max(1);
                    let mut first = batch;
                    let second = first.split_off(first.len() / 2);
                    batches.push_front(second);
                    batches.push_front(first);
                }
                Outcome::TooLarge(status) => self.give_up(&batch, &status),
            }
        }
        self.done += taken as u64;
        self.shared.queued_keys.fetch_sub(taken, Ordering::Relaxed);
        self.shared.room.notify_waiters();
        self.answer_waiters();
    }

    /// The next keys of the outbox as entries, within the batch's key and
    /// byte limits (at least one key), and how many keys they are. A key
    /// counting more requests than the server takes in one entry becomes
    /// several entries.
    fn take_batch(&mut self) -> (Vec<AddRequest>, usize) {
        let mut entries = Vec::new();
        let mut bytes = 0;
        let mut keys = 0;
        while keys < self.config.max_batch_keys {
            let Some(key) = self.outbox.front() else {
                break;
            };
            let split = entries_of(key, self.config.max_entry_count);
            let size: usize = split.iter().map(entry_len).sum();
            if keys > 0 && bytes + size > self.batch_bytes {
                break;
            }
            self.outbox.pop_front();
            keys += 1;
            bytes += size;
            entries.extend(split);
        }
        (entries, keys)
    }

    /// Sends `entries` as one new batch until it is applied or refused.
    async fn send(&mut self, entries: &[AddRequest]) -> Outcome {
        let mut request = AddBatchRequest {
            producer_id: self.config.producer_id.clone(),
            sequence: self.next_sequence(),
            entries: entries.to_vec(),
        };
        let mut backoff = BACKOFF.0;
        // Whether an earlier send of this sequence may have been applied:
        // only then is a duplicate what it says.
        let mut maybe_applied = false;
        let mut resequenced = 0;
        loop {
            let status = match self.client.add_batch(request.clone()).await {
                Ok(response) => {
                    let response = response.into_inner();
                    if !response.duplicate || maybe_applied {
                        return Outcome::Delivered;
                    }
                    // First send, yet applied before: another process
                    // with this producer id got further. Never counted as
                    // delivered: resent above that process's sequence.
                    self.shared.stats.duplicate();
                    resequenced += 1;
                    tracing::warn!(
                        producer_id = %self.config.producer_id,
                        sequence = request.sequence,
                        last_sequence = response.last_sequence,
                        "count server already had this producer's batch sequence; another process uses the same producer id? resending with a new sequence"
                    );
                    if resequenced >= MAX_RESEQUENCES {
                        return Outcome::GivenUp(Status::already_exists(
                            "every new sequence was already applied: is the producer id shared by processes running at once?",
                        ));
                    }
                    self.sequence = self.sequence.max(response.last_sequence);
                    request.sequence = self.next_sequence();
                    continue;
                }
                Err(status) => status,
            };
            if let Some(refused) = refused_entries(&status) {
                // Indexes outside the batch would leave it whole and resent
                // at once, forever: a server naming only those is not
                // understood, and the batch is given up.
                if refused.iter().any(|&i| i < entries.len()) {
                    return Outcome::Refused(refused, status);
                }
                return Outcome::GivenUp(status);
            }
            match status.code() {
                Code::OutOfRange => return Outcome::TooLarge(status),
                // Outages, overload and lost answers: the same batch again
                // is safe and will get through.
                Code::Unavailable
                | Code::DeadlineExceeded
                | Code::Aborted
                | Code::Cancelled
                | Code::ResourceExhausted
                | Code::Unknown
                | Code::Internal => {}
                _ => return Outcome::GivenUp(status),
            }
            maybe_applied = true;
            self.shared.stats.retried();
            tracing::debug!(%status, ?backoff, "batch not acknowledged; resending");
            // Jitter spreads the retries of many clients.
            let wait = backoff.mul_f64(0.5 + fastrand::f64());
            self.wait_for(wait).await;
            backoff = (backoff * 2).min(BACKOFF.1);
        }
    }

    /// A sequence above every one used so far, and above the clock's
    /// microseconds (see [`Delivery::sequence`]). The server takes
    /// sequences up to `i64::MAX`.
    fn next_sequence(&mut self) -> u64 {
        self.sequence = (self.sequence + 1).max(clock_micros());
        self.sequence
    }

    fn give_up(&self, entries: &[AddRequest], status: &Status) {
        if entries.is_empty() {
            return;
        }
        let requests = requests(entries);
        tracing::error!(
            code = ?status.code(),
            reason = status.message(),
            requests,
            entries = entries.len(),
            "count server refused counts; dropping them"
        );
        self.shared.stats.given_up(requests);
    }

    /// Sleeps, still taking flush commands meanwhile.
    async fn wait_for(&mut self, wait: Duration) {
        let sleep = tokio::time::sleep(wait);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => return,
                command = self.commands.recv(), if self.open => self.command(command),
            }
        }
    }
}

/// The entries the server named as refused (`entries[i]...` field
/// violations), or `None` when it named none.
fn refused_entries(status: &Status) -> Option<Vec<usize>> {
    let bad_request = status.get_details_bad_request()?;
    let refused: Vec<usize> = bad_request
        .field_violations
        .iter()
        .filter_map(|v| {
            let rest = v.field.strip_prefix("entries[")?;
            rest[..rest.find(']')?].parse().ok()
        })
        .collect();
    (!refused.is_empty()).then_some(refused)
}

/// The entries of `key`: one, or several when it counts more requests than
/// one entry may carry.
fn entries_of(key: &Key, max_entry_count: u64) -> Vec<AddRequest> {
    let max = max_entry_count.max(1);
    let mut left = key.count;
    let mut entries = Vec::with_capacity(1);
    while left > 0 {
        let count = left.min(max);
        left -= count;
        entries.push(AddRequest {
            method: key.method as i32,
            path: key.path.to_string(),
            request_timestamp: Some(prost_types::Timestamp {
                seconds: key.minute,
                nanos: 0,
            }),
            count: i64::try_from(count).unwrap_or(i64::MAX),
            tenant: key.tenant.to_string(),
            status_code: key.status.map(u32::from),
        });
    }
    entries
}

/// The bytes `entry` adds to an encoded `AddBatchRequest`.
fn entry_len(entry: &AddRequest) -> usize {
    let len = entry.encoded_len();
    // Field tag and length prefix.
    1 + prost::length_delimiter_len(len) + len
}

fn encoded_len(entries: &[AddRequest]) -> usize {
    entries.iter().map(entry_len).sum()
}

fn requests(entries: &[AddRequest]) -> u64 {
    entries.iter().map(|e| e.count.max(0) as u64).sum()
}

/// Microseconds since the Unix epoch.
fn clock_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use count_proto::v1::Method;
    use tonic_types::{ErrorDetails, FieldViolation};

    #[test]
    fn a_key_over_the_entry_limit_becomes_several_entries() {
        let key = Key {
            method: Method::Get,
            path: "/a".into(),
            tenant: "acme".into(),
            status: Some(503),
            minute: 420,
            count: 25,
        };
        let entries = entries_of(&key, 10);
        let counts: Vec<i64> = entries.iter().map(|e| e.count).collect();
        assert_eq!(counts, vec![10, 10, 5]);
        assert!(
            entries
                .iter()
                .all(|e| e.tenant == "acme" && e.status_code == Some(503))
        );
        assert_eq!(entries_of(&key, 100).len(), 1);
    }

    #[test]
    fn refused_entries_are_read_from_the_status_details() {
        let status = Status::with_error_details(
            Code::InvalidArgument,
            "entries[3].path: is too long",
            ErrorDetails::with_bad_request(vec![
                FieldViolation::new("entries[3].path", "is too long"),
                FieldViolation::new("entries[12]", "over the endpoint cap"),
                FieldViolation::new("producer_id", "not an entry"),
            ]),
        );
        assert_eq!(refused_entries(&status), Some(vec![3, 12]));
        assert_eq!(
            refused_entries(&Status::invalid_argument("entries[1].path: x")),
            None
        );
    }
}
