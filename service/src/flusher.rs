//! The one writer of every `Add` stream's counts. Each stream sums its
//! entries in a small aggregate of its own and merges that into one
//! aggregate the streams share; the shared aggregate is written as one
//! transaction per *epoch* (each time it is taken for writing).
//!
//! Why shared: with many series (tenants × endpoints × status codes), a
//! stream's own aggregate met most keys once before it was flushed, so
//! nearly every request became a raw row of its own. All streams together
//! meet each key many times per flush interval (the bench's load with
//! tenants: 4.1M raw rows for 5M requests when each stream wrote its own).
//!
//! Exactness: a stream answers only once every epoch it merged into has
//! committed. An epoch is one `count.add_series` call, one transaction, so
//! it is all written or not at all; a failed epoch fails every stream that
//! merged into it. A stream merges into a new epoch only once its epoch
//! before has committed, so what of a stream committed is always its first
//! requests, and the error says how many (as when each stream wrote its
//! own).
//!
//! Memory: at most [`WRITES_AT_ONCE`] epochs are being written, and one
//! fills, each of about `max_keys` keys. A merge into a full one waits until
//! a write ends; the stream is not read meanwhile, and HTTP/2 flow control
//! pushes back on its client.

use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};

use crate::aggregate::Aggregate;
use crate::db::store::Store;
use crate::error::Error;
use crate::metrics;

/// How an epoch ended: committed, or why not.
type Outcome = Option<Result<(), Arc<Error>>>;

/// Epochs written at once, each its own transaction on its own connection:
/// with one, a load of keys that do not repeat (every request a raw row)
/// went a third slower than when each stream wrote its own.
pub const WRITES_AT_ONCE: usize = 2;

/// The shared aggregate and its writer; cheap to clone. The writer task
/// ends when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Flusher {
    shared: Arc<Shared>,
    _writer: Arc<Writer>,
}

#[derive(Debug)]
struct Shared {
    filling: Mutex<Filling>,
    /// Wakes the writer: an epoch began, filled up, or was asked for.
    wake: Notify,
    /// Wakes merges waiting for room: the writer took the full epoch.
    room: Notify,
    /// How long an epoch fills before it is written.
    hold: Duration,
    /// An epoch is written as soon as it holds this many keys.
    max_keys: usize,
}

/// The epoch being filled.
#[derive(Debug)]
struct Filling {
    aggregate: Aggregate,
    number: u64,
    outcome: watch::Sender<Outcome>,
    /// When its first counts were merged.
    since: Option<Instant>,
    /// Whether a stream asked for it to be written now (it is ending).
    asked: bool,
}

impl Filling {
    fn new(number: u64) -> Filling {
        Filling {
            aggregate: Aggregate::default(),
            number,
            outcome: watch::Sender::new(None),
            since: None,
            asked: false,
        }
    }

    fn full(&self, max_keys: usize) -> bool {
        self.aggregate.keys() >= max_keys
    }
}

/// The writer task, aborted when the last [`Flusher`] goes.
#[derive(Debug)]
struct Writer(JoinHandle<()>);

impl Drop for Writer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Flusher {
    /// Starts the writer over `store`. An epoch is written `hold` after its
    /// first merge, as soon as it holds `max_keys` keys, when a stream that
    /// merged into it ends, or when one has more to merge than it.
    pub fn start(store: Store, hold: Duration, max_keys: usize) -> Flusher {
        let shared = Arc::new(Shared {
            filling: Mutex::new(Filling::new(0)),
            wake: Notify::new(),
            room: Notify::new(),
            hold,
            max_keys,
        });
        let writer = tokio::spawn(write_epochs(shared.clone(), store));
        Flusher {
            shared,
            _writer: Arc::new(Writer(writer)),
        }
    }

    /// Moves `local`'s counts into the epoch filling, waiting while it is
    /// full, and asks for it to be written at once if `now`. `after` is the
    /// epoch the stream merged into last, if it has not seen it end: if
    /// that is no longer the one filling, nothing is merged
    /// ([`Merge::Wait`]).
    async fn merge(&self, local: &mut Aggregate, now: bool, after: Option<u64>) -> Merge {
        let shared = &*self.shared;
        loop {
            let room = shared.room.notified();
            let mut room = pin!(room);
            // Registered before the look at the epoch, so that a write
            // taking it in between still wakes this merge.
            room.as_mut().enable();
            {
                let mut filling = self.filling();
                let mine = after == Some(filling.number);
                if after.is_some() && !mine {
                    return Merge::Wait;
                }
                if local.is_empty() {
                    if now && mine {
                        filling.asked = true;
                        shared.wake.notify_one();
                    }
                    return Merge::Nothing;
                }
                if !filling.full(shared.max_keys) && filling.aggregate.absorb(local) {
                    let began = filling.since.is_none();
                    if began {
                        filling.since = Some(Instant::now());
                    }
                    filling.asked |= now;
                    if began || now || filling.full(shared.max_keys) {
                        shared.wake.notify_one();
                    }
                    return Merge::Into(Epoch {
                        number: filling.number,
                        outcome: filling.outcome.subscribe(),
                    });
                }
                // Full, or its total would overflow: the next epoch takes
                // it. A stream already in this one waits for its write.
                filling.asked = true;
                shared.wake.notify_one();
                if mine {
                    return Merge::Wait;
                }
            }
            room.await;
        }
    }

    fn filling(&self) -> MutexGuard<'_, Filling> {
        // Nothing panics while holding the lock; a poisoned one still
        // holds consistent counts.
        self.shared
            .filling
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Writes each epoch when it is due, at most [`WRITES_AT_ONCE`] at once.
async fn write_epochs(shared: Arc<Shared>, store: Store) {
    let writes = Arc::new(Semaphore::new(WRITES_AT_ONCE));
    loop {
        // Taken before the next epoch: while every write is busy, the epoch
        // filling stays, and merges wait once it is full.
        let Ok(write) = writes.clone().acquire_owned().await else {
            return;
        };
        let (mut aggregate, outcome) = next_epoch(&shared).await;
        shared.room.notify_waiters();
        let store = store.clone();
        // A write that panicked drops `outcome`: its streams fail
        // (`Epoch::end`) instead of waiting.
        tokio::spawn(async move {
            let batch = aggregate.take_batch();
            drop(aggregate);
            let started = std::time::Instant::now();
            let result = match store.add_batch(None, &batch).await {
                Ok(requests) => {
                    metrics::committed("add", requests.unwrap_or(0), started.elapsed());
                    Ok(())
                }
                Err(error) => {
                    tracing::warn!(%error, requests = batch.requests, "writing the Add streams' counts failed");
                    Err(Arc::new(error))
                }
            };
            outcome.send_replace(Some(result));
            drop(write);
        });
    }
}

/// Waits until the epoch filling is due, then takes it, leaving the next
/// one filling.
async fn next_epoch(shared: &Shared) -> (Aggregate, watch::Sender<Outcome>) {
    loop {
        let due_at = {
            let mut filling = shared
                .filling
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            match filling.since {
                None => None,
                Some(since)
                    if filling.asked
                        || filling.full(shared.max_keys)
                        || since + shared.hold <= Instant::now() =>
                {
                    let next = Filling::new(filling.number + 1);
                    let taken = std::mem::replace(&mut *filling, next);
                    return (taken.aggregate, taken.outcome);
                }
                Some(since) => Some(since + shared.hold),
            }
        };
        match due_at {
            None => shared.wake.notified().await,
            Some(at) => {
                tokio::select! {
                    () = shared.wake.notified() => {}
                    () = sleep_until(at) => {}
                }
            }
        }
    }
}

/// What [`Flusher::merge`] did.
enum Merge {
    /// Merged into this epoch.
    Into(Epoch),
    /// Nothing to merge.
    Nothing,
    /// Merged nothing: the stream's epoch before is being written (or is
    /// full), and must end first.
    Wait,
}

/// An epoch a stream merged into.
#[derive(Debug)]
struct Epoch {
    number: u64,
    outcome: watch::Receiver<Outcome>,
}

impl Epoch {
    /// Waits for its end.
    async fn end(mut self) -> Result<(), Arc<Error>> {
        match self.outcome.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone().unwrap_or(Ok(())),
            // Its write is gone (it panicked, or the server is going away):
            // not written.
            Err(_) => Err(Arc::new(Error::Task(
                "the write of Add streams' counts stopped".to_owned(),
            ))),
        }
    }
}

/// One stream's side: the epoch it merged into last and has not seen end,
/// with its requests in it.
#[derive(Debug, Default)]
pub struct Merged {
    pending: Option<(Epoch, i64)>,
    /// Requests of this stream committed so far.
    committed: i64,
}

impl Merged {
    /// Merges `local` into `flusher`'s epoch filling, asking for it to be
    /// written at once if `now`; first waits for this stream's epoch
    /// before if that is being written. Fails if that epoch failed.
    pub async fn merge(
        &mut self,
        flusher: &Flusher,
        local: &mut Aggregate,
        now: bool,
    ) -> Result<(), Error> {
        loop {
            let requests = local.requests();
            let after = self.pending.as_ref().map(|(epoch, _)| epoch.number);
            match flusher.merge(local, now, after).await {
                Merge::Nothing => return Ok(()),
                Merge::Into(epoch) => {
                    match &mut self.pending {
                        Some((last, sum)) if last.number == epoch.number => *sum += requests,
                        pending => *pending = Some((epoch, requests)),
                    }
                    return Ok(());
                }
                Merge::Wait => {
                    self.finish().await?;
                }
            }
        }
    }

    /// Waits for this stream's last epoch; returns its requests committed,
    /// or the failure with how many did commit.
    pub async fn finish(&mut self) -> Result<i64, Error> {
        if let Some((epoch, requests)) = self.pending.take() {
            match epoch.end().await {
                Ok(()) => self.committed += requests,
                Err(source) => {
                    return Err(Error::Flush {
                        committed: self.committed,
                        source,
                    });
                }
            }
        }
        Ok(self.committed)
    }
}
