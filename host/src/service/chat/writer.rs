//! Group commit for chat messages: one writer task takes every message waiting in its queue
//! and stores them in one transaction, so the database sees one round trip and one commit
//! per batch instead of per message. Under light load a batch is one message and nothing
//! waits; under heavy load batches grow, which is what keeps up with the load.
//!
//! The queue is bounded twice: in length (memory) and in age (latency). A message that
//! finds the queue full, or that waited longer than `max_wait` before the writer reached
//! it, is refused without being stored. Nothing is acknowledged before its commit, so a
//! refusal never loses an acknowledged message.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use crate::store::{Inserted, NewMessage, Store, StoreError};

#[derive(Debug, Clone, Copy)]
pub struct WriterLimits {
    /// Messages waiting for the writer before new ones are refused.
    pub queue: usize,
    /// Most messages in one transaction.
    pub batch: usize,
    /// Longest a message may wait for the writer before it is refused instead.
    pub max_wait: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The queue is full or too old: the server is over its capacity right now.
    #[error("the chat writer is over capacity")]
    Overloaded,
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct Job {
    message: NewMessage,
    queued_at: Instant,
    done: oneshot::Sender<Result<Inserted, WriteError>>,
}

/// The sending half; the writer task ends when the last one is dropped.
pub struct MessageWriter {
    queue: mpsc::Sender<Job>,
}

impl MessageWriter {
    pub fn start(store: Arc<dyn Store>, limits: WriterLimits) -> MessageWriter {
        let (queue, jobs) = mpsc::channel(limits.queue.max(1));
        tokio::spawn(
            run(store, jobs, limits.batch.max(1), limits.max_wait)
                .instrument(tracing::info_span!("chat.writer")),
        );
        MessageWriter { queue }
    }

    /// Stores `message` with the next batch; returns once the batch committed.
    pub async fn write(&self, message: NewMessage) -> Result<Inserted, WriteError> {
        let (done, outcome) = oneshot::channel();
        let job = Job {
            message,
            queued_at: Instant::now(),
            done,
        };
        self.queue.try_send(job).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => WriteError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => WriteError::Store(StoreError::Unavailable(
                "the chat writer has stopped".into(),
            )),
        })?;
        outcome.await.unwrap_or_else(|_| {
            Err(WriteError::Store(StoreError::Unavailable(
                "the chat writer stopped before storing the message".into(),
            )))
        })
    }

    /// Messages waiting for the writer now.
    pub fn queued(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }
}

async fn run(
    store: Arc<dyn Store>,
    mut jobs: mpsc::Receiver<Job>,
    batch: usize,
    max_wait: Duration,
) {
    let mut taken = Vec::with_capacity(batch);
    while jobs.recv_many(&mut taken, batch).await > 0 {
        let (fresh, stale): (Vec<Job>, Vec<Job>) = taken
            .drain(..)
            .partition(|job| job.queued_at.elapsed() <= max_wait);
        if !stale.is_empty() {
            metrics::counter!("lyceum_chat_writes_refused_total", "reason" => "stale")
                .increment(stale.len() as u64);
        }
        for job in stale {
            let _ = job.done.send(Err(WriteError::Overloaded));
        }
        if fresh.is_empty() {
            continue;
        }
        metrics::histogram!("lyceum_chat_write_batch_size").record(fresh.len() as f64);
        commit(store.as_ref(), fresh).await;
    }
}

/// Stores one batch and answers each job. When the batch as a whole fails for a reason other
/// than the database being unreachable, each message is tried alone, so one bad message
/// cannot fail its neighbours.
async fn commit(store: &dyn Store, jobs: Vec<Job>) {
    let (messages, answers): (Vec<NewMessage>, Vec<_>) =
        jobs.into_iter().map(|job| (job.message, job.done)).unzip();
    match store.insert_messages(&messages).await {
        Ok(outcomes) => {
            for (answer, outcome) in answers.into_iter().zip(outcomes) {
                let _ = answer.send(Ok(outcome));
            }
        }
        Err(StoreError::Unavailable(reason)) => {
            for answer in answers {
                let _ = answer.send(Err(StoreError::Unavailable(reason.clone()).into()));
            }
        }
        Err(error) if messages.len() == 1 => {
            let _ = answers
                .into_iter()
                .next()
                .map(|a| a.send(Err(error.into())));
        }
        Err(error) => {
            tracing::warn!(%error, size = messages.len(), "chat batch failed; storing its messages one by one");
            for (message, answer) in messages.into_iter().zip(answers) {
                let outcome = store
                    .insert_messages(std::slice::from_ref(&message))
                    .await
                    .map(|mut outcomes| outcomes.remove(0))
                    .map_err(WriteError::from);
                let _ = answer.send(outcome);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        domain::{FileId, MessageId, Role, RoomId, User, UserId, now},
        store::SqliteStore,
    };

    /// A fresh SQLite database in a file of its own (the writer and the test read through
    /// different connections, so it cannot be in memory).
    struct Db {
        store: Arc<dyn Store>,
        path: std::path::PathBuf,
    }

    impl Drop for Db {
        fn drop(&mut self) {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", self.path.display()));
            }
        }
    }

    async fn db() -> Db {
        let path = std::env::temp_dir().join(format!("lyceum-writer-{}.db", uuid::Uuid::now_v7()));
        let store = SqliteStore::connect(&format!("sqlite://{}?mode=rwc", path.display()), 4)
            .await
            .unwrap();
        store.migrate().await.unwrap();
        Db {
            store: Arc::new(store),
            path,
        }
    }

    async fn user(store: &dyn Store) -> UserId {
        let user = User {
            id: UserId::new(),
            email: format!("{}@example.com", uuid::Uuid::now_v7().simple()),
            name: "Ada".into(),
            role: Role::Student,
            created_at: now(),
        };
        store.insert_user(&user, "not-a-hash").await.unwrap();
        user.id
    }

    fn message(room: RoomId, sender: UserId, client_id: Option<&str>) -> NewMessage {
        NewMessage {
            id: MessageId::new(),
            room_id: room,
            sender_id: sender,
            content: "hello".into(),
            client_id: client_id.map(str::to_owned),
            reply_to: None,
            flagged: false,
            created_at: now(),
            attachments: Vec::new(),
        }
    }

    const LIMITS: WriterLimits = WriterLimits {
        queue: 64,
        batch: 64,
        max_wait: Duration::from_secs(5),
    };

    #[tokio::test]
    async fn a_batch_stores_each_message_once_and_a_resend_names_the_first() {
        let db = db().await;
        let store = db.store.as_ref();
        let (room, ada) = (RoomId::new(), user(store).await);
        let first = message(room, ada, Some("a"));
        let mut with_files = message(room, ada, Some("b"));
        with_files.attachments = vec![FileId::new(), FileId::new()];
        let resend_in_batch = message(room, ada, Some("a"));
        let anonymous = message(room, ada, None);
        let batch = [
            first.clone(),
            with_files.clone(),
            resend_in_batch,
            anonymous.clone(),
        ];
        assert_eq!(
            store.insert_messages(&batch).await.unwrap(),
            vec![
                Inserted::Created,
                Inserted::Created,
                Inserted::Existing(first.id),
                Inserted::Created
            ]
        );
        let later = message(room, ada, Some("b"));
        assert_eq!(
            store.insert_messages(&[later]).await.unwrap(),
            vec![Inserted::Existing(with_files.id)]
        );
        let history = store.messages(room, None, 10).await.unwrap();
        assert_eq!(
            history.iter().map(|m| m.id).collect::<Vec<_>>(),
            vec![anonymous.id, with_files.id, first.id],
            "three messages, newest first"
        );
        assert_eq!(history[1].sender_name, "Ada");
        let attached: Vec<FileId> = store
            .attachments(&[with_files.id])
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.file_id)
            .collect();
        assert_eq!(attached, with_files.attachments, "in their order");
    }

    #[tokio::test]
    async fn one_bad_message_does_not_fail_the_rest_of_its_batch() {
        let db = db().await;
        let (room, ada) = (RoomId::new(), user(db.store.as_ref()).await);
        let writer = MessageWriter::start(db.store.clone(), LIMITS);
        // No such user: the sender's foreign key refuses this row.
        let orphan = message(room, UserId::new(), Some("x"));
        let (a, bad, b) = tokio::join!(
            writer.write(message(room, ada, Some("1"))),
            writer.write(orphan),
            writer.write(message(room, ada, Some("2"))),
        );
        assert!(matches!(a, Ok(Inserted::Created)), "{a:?}");
        assert!(matches!(b, Ok(Inserted::Created)), "{b:?}");
        assert!(bad.is_err(), "{bad:?}");
        assert_eq!(db.store.messages(room, None, 10).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_stores_nothing_it_refused() {
        let db = db().await;
        let (room, ada) = (RoomId::new(), user(db.store.as_ref()).await);
        let writer = MessageWriter::start(db.store.clone(), WriterLimits { queue: 2, ..LIMITS });
        let messages: Vec<NewMessage> = (0..6)
            .map(|i| message(room, ada, Some(&i.to_string())))
            .collect();
        // All six are queued before the writer first runs: two fit.
        let outcomes =
            futures::future::join_all(messages.iter().cloned().map(|m| writer.write(m))).await;
        let stored: Vec<MessageId> = messages
            .iter()
            .zip(&outcomes)
            .filter(|(_, o)| matches!(o, Ok(Inserted::Created)))
            .map(|(m, _)| m.id)
            .collect();
        let refused = outcomes
            .iter()
            .filter(|o| matches!(o, Err(WriteError::Overloaded)))
            .count();
        assert_eq!((stored.len(), refused), (2, 4), "{outcomes:?}");
        let mut in_history: Vec<MessageId> = db
            .store
            .messages(room, None, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.id)
            .collect();
        in_history.reverse();
        assert_eq!(in_history, stored);
    }

    #[tokio::test]
    async fn a_message_that_waited_too_long_is_refused_not_stored() {
        let db = db().await;
        let (room, ada) = (RoomId::new(), user(db.store.as_ref()).await);
        let writer = MessageWriter::start(
            db.store.clone(),
            WriterLimits {
                max_wait: Duration::from_millis(20),
                ..LIMITS
            },
        );
        // Hold the writer's runtime thread so the job ages in the queue.
        let write = writer.write(message(room, ada, Some("late")));
        let hold = async { std::thread::sleep(Duration::from_millis(50)) };
        let (outcome, ()) = tokio::join!(write, hold);
        assert!(
            matches!(outcome, Err(WriteError::Overloaded)),
            "{outcome:?}"
        );
        assert!(db.store.messages(room, None, 10).await.unwrap().is_empty());
    }
}
