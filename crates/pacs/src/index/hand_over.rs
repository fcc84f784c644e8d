//! The inserts handed over to an index's writer ([`super::Index::hand_over`]) and the order
//! reads keep with them, shared by every backend: each insert is numbered as it is handed over,
//! and a read waits until every insert numbered before it is committed or failed, so that whoever
//! was told an instance is stored finds it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The inserts handed over to the writer ([`super::Index::hand_over`]), numbered in the order
/// they were handed over, and how far they are all done: reads wait until every insert numbered
/// before them is (so that whoever was told an instance is stored finds it), never for those
/// that came after (so that a steady ingest cannot hold a read back for ever).
pub(crate) struct HandOvers {
    /// The number the next insert gets.
    next: AtomicU64,
    /// The inserts done after one still in flight.
    done_early: Mutex<BTreeSet<u64>>,
    /// Every insert numbered below this is done.
    done_below: tokio::sync::watch::Sender<u64>,
    /// Told when someone waits for the writer (a read for inserts, an awaited operation, a
    /// queue filling up), so that a writer holding a batch open for more
    /// ([`super::writer::Linger`]) commits it at once.
    writer_awaited: tokio::sync::Notify,
}

impl HandOvers {
    pub(crate) fn new() -> Self {
        Self {
            next: AtomicU64::new(0),
            done_early: Mutex::new(BTreeSet::new()),
            done_below: tokio::sync::watch::Sender::new(0),
            writer_awaited: tokio::sync::Notify::new(),
        }
    }

    /// Numbers a new insert.
    pub(crate) fn begin(&self) -> u64 {
        self.next.fetch_add(1, Ordering::SeqCst)
    }

    /// Numbers a new insert: the mark that says it is done when dropped.
    pub(crate) fn mark(self: &Arc<Self>) -> HandOverMark {
        HandOverMark {
            number: self.begin(),
            hand_overs: self.clone(),
        }
    }

    /// Insert `number` is committed, failed, or abandoned.
    fn done(&self, number: u64) {
        let mut early = self
            .done_early
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.done_below.send_modify(|below| {
            if number == *below {
                *below += 1;
                while early.remove(below) {
                    *below += 1;
                }
            } else if number > *below {
                early.insert(number);
            }
        });
    }

    /// Resolves when someone waits for the writer ([`HandOvers::wake_writer`]; a read waiting
    /// for inserts to be done, [`HandOvers::settle`]), or at once if someone did since the
    /// last call.
    pub(crate) async fn writer_awaited(&self) {
        self.writer_awaited.notified().await;
    }

    /// Tells a lingering writer that someone waits for it.
    pub(crate) fn wake_writer(&self) {
        self.writer_awaited.notify_one();
    }

    /// Waits until every insert numbered before this call is done.
    pub(crate) async fn settle(&self) {
        let target = self.next.load(Ordering::SeqCst);
        if *self.done_below.borrow() >= target {
            return;
        }
        let mut done_below = self.done_below.subscribe();
        self.wake_writer();
        // The sender lives as long as `self`: waiting cannot fail.
        let _ = done_below.wait_for(|below| *below >= target).await;
    }
}

/// Queues `operation` for a writer at once, or, when its queue is full, by a task that waits
/// for room (a send that fails drops the operation, its mark and its reply with it); an
/// operation for a writer that is gone is dropped at once.
pub(crate) fn queue<T: Send + 'static>(writer: &tokio::sync::mpsc::Sender<T>, operation: T) {
    use tokio::sync::mpsc::error::TrySendError;
    match writer.try_send(operation) {
        Ok(()) => {}
        Err(TrySendError::Full(operation)) => {
            let writer = writer.clone();
            tokio::spawn(async move { writer.send(operation).await });
        }
        Err(TrySendError::Closed(_)) => {}
    }
}

/// Marks a handed-over insert done when dropped. The writer keeps it until the insert's
/// transaction is over and answered; an insert dropped on the way (the writer gone, a queue
/// that closed) is marked done by the same drop, so no read waits for it for ever.
pub(crate) struct HandOverMark {
    pub(crate) hand_overs: Arc<HandOvers>,
    pub(crate) number: u64,
}

impl Drop for HandOverMark {
    fn drop(&mut self) {
        self.hand_overs.done(self.number);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_read_waits_for_the_inserts_before_it_and_not_for_later_ones() {
        let hand_overs = Arc::new(HandOvers::new());
        let first = hand_overs.mark();
        let second = hand_overs.mark();
        // Done out of order: the first still holds the reads back.
        drop(second);
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(50), hand_overs.settle()).await;
        assert!(waiting.is_err(), "settled before the first insert was done");
        let settle = {
            let hand_overs = hand_overs.clone();
            tokio::spawn(async move { hand_overs.settle().await })
        };
        // The read begins (its task runs up to its wait)...
        tokio::task::yield_now().await;
        // ...and an insert after it is not waited for.
        let _later = hand_overs.mark();
        drop(first);
        tokio::time::timeout(std::time::Duration::from_secs(5), settle)
            .await
            .expect("settled once the first was done")
            .expect("task");
    }
}
