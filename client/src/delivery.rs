//! The background task that delivers the tally: batches of at most
//! `max_batch_keys` keys sent with `AddBatch`, one at a time, each resent
//! unchanged (same producer id and sequence) until the server acknowledges
//! it. The server applies a (producer, sequence) once, so a batch that was
//! applied but whose answer was lost counts once.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use count_proto::v1::count_service_client::CountServiceClient;
use count_proto::v1::{AddBatchRequest, AddRequest};
use tokio::sync::{mpsc, oneshot};
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::counter::{BearerToken, Config, Shared};
use crate::tally::Key;

/// Sent by counter handles to the task.
pub(crate) enum Command {
    /// Deliver everything recorded so far, then answer.
    Flush(oneshot::Sender<()>),
}

/// Shortest and longest wait between two sends of a failed batch.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(5));

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
    sequence: u64,
    /// False once every counter handle is gone.
    open: bool,
}

impl Delivery {
    pub(crate) fn new(
        shared: Arc<Shared>,
        config: Config,
        channel: Channel,
        commands: mpsc::UnboundedReceiver<Command>,
    ) -> Self {
        let token = config.bearer_token.clone();
        Delivery {
            shared,
            config,
            client: CountServiceClient::with_interceptor(channel, token),
            commands,
            outbox: VecDeque::new(),
            queued: 0,
            done: 0,
            waiters: Vec::new(),
            sequence: 0,
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
                self.send_one().await;
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

    /// Sends the next batch until it is acknowledged or refused for good.
    async fn send_one(&mut self) {
        let take = self.outbox.len().min(self.config.max_batch_keys);
        let keys: Vec<Key> = self.outbox.drain(..take).collect();
        let requests: u64 = keys.iter().map(|k| k.count).sum();
        self.sequence += 1;
        let request = AddBatchRequest {
            producer_id: self.config.producer_id.clone(),
            sequence: self.sequence,
            entries: keys.iter().map(entry).collect(),
        };
        let mut backoff = BACKOFF.0;
        loop {
            match self.client.add_batch(request.clone()).await {
                Ok(_) => {
                    self.shared.stats.delivered(requests);
                    break;
                }
                Err(status)
                    if matches!(
                        status.code(),
                        Code::InvalidArgument | Code::ResourceExhausted | Code::PermissionDenied
                    ) =>
                {
                    // Resending would be refused again and hold up every
                    // later batch.
                    tracing::error!(%status, requests, "count server refused a batch; dropping it");
                    self.shared.stats.given_up(requests);
                    break;
                }
                Err(status) => {
                    self.shared.stats.retried();
                    tracing::debug!(%status, ?backoff, "batch not acknowledged; resending");
                    // Jitter spreads the retries of many clients.
                    let wait = backoff.mul_f64(0.5 + fastrand::f64());
                    self.wait_for(wait).await;
                    backoff = (backoff * 2).min(BACKOFF.1);
                }
            }
        }
        self.done += take as u64;
        self.shared.queued_keys.fetch_sub(take, Ordering::Relaxed);
        self.shared.room.notify_waiters();
        self.answer_waiters();
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

fn entry(key: &Key) -> AddRequest {
    AddRequest {
        method: key.method as i32,
        path: key.path.to_string(),
        request_timestamp: Some(prost_types::Timestamp {
            seconds: key.second,
            nanos: 0,
        }),
        count: i64::try_from(key.count).unwrap_or(i64::MAX),
    }
}
