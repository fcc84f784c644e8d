//! The writer side shared by every backend ([`super::SqliteIndex`], [`super::PostgresIndex`]):
//! one writer per index applies the operations it is sent in batches (group commit, each
//! operation in a savepoint of its own) and answers each once its batch committed. This module
//! holds what does not depend on the database: the operations and their answers, the
//! [`WriterHandle`] an index keeps to send them (with the inserts handed over, which reads wait
//! for: [`super::hand_over`]), the gathering of a batch, and the answer to the operations left
//! when the writer stops.

use std::path::PathBuf;
use std::sync::Arc;
use std::task::{Context, Wake, Waker};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use dimsum_net::storage::BoxFuture;

use super::hand_over::{HandOverMark, HandOvers, queue};
use super::prepared::PreparedInstance;
use super::{DeleteTarget, Deleted, IndexError, Inserted, OnCommit, OnDuplicate, SessionStart};

/// Operations waiting for a writer.
pub(crate) const WRITES_QUEUED: usize = 256;

/// What a writer is asked to do.
pub(crate) enum Operation {
    Insert(Box<PreparedInstance>, OnDuplicate),
    Delete(DeleteTarget),
    FilesRemoved(Vec<PathBuf>),
    BeginSession,
    MarkClean,
    Close,
}

/// What a writer answers an operation with.
pub(crate) enum Done {
    Inserted(Inserted),
    Deleted(Deleted),
    Session(SessionStart),
    Nothing,
}

impl Done {
    fn inserted(self) -> Result<Inserted, IndexError> {
        match self {
            Done::Inserted(inserted) => Ok(inserted),
            _ => Err(unexpected()),
        }
    }
}

/// An operation on its way to the writer, with where it is answered.
pub(crate) struct WriteOp {
    pub(crate) operation: Operation,
    pub(crate) reply: Reply,
    /// The number of a handed-over insert ([`super::Index::hand_over`]), marked done when the
    /// writer lets go of it: after its commit and answer, or whenever it is dropped unanswered.
    pub(crate) mark: Option<HandOverMark>,
}

fn unexpected() -> IndexError {
    IndexError::Task("the index writer answered another operation".into())
}

/// Where the writer answers an operation.
pub(crate) enum Reply {
    /// A future waits for it.
    Channel(oneshot::Sender<Result<Done, IndexError>>),
    /// An insert handed over with [`super::Index::hand_over_then`]: called by the writer.
    Then(OnCommit),
}

impl Reply {
    pub(crate) fn send(self, result: Result<Done, IndexError>) {
        match self {
            Reply::Channel(sender) => {
                let _ = sender.send(result);
            }
            Reply::Then(then) => then.call(result.and_then(Done::inserted)),
        }
    }
}

/// An index's side of its writer: the queue of operations, and the inserts handed over that
/// reads wait for.
pub(crate) struct WriterHandle {
    operations: mpsc::Sender<WriteOp>,
    handed_over: Arc<HandOvers>,
}

impl WriterHandle {
    /// A handle and the receiving end the writer takes its operations from.
    pub(crate) fn new() -> (WriterHandle, mpsc::Receiver<WriteOp>) {
        let (operations, receiver) = mpsc::channel(WRITES_QUEUED);
        let handle = WriterHandle {
            operations,
            handed_over: Arc::new(HandOvers::new()),
        };
        (handle, receiver)
    }

    /// The inserts handed over, numbered (a [`Linger`] listens to who waits for the writer).
    pub(crate) fn hand_overs(&self) -> Arc<HandOvers> {
        self.handed_over.clone()
    }

    /// Waits until every insert handed over before this call is committed (or failed).
    pub(crate) async fn settle(&self) {
        self.handed_over.settle().await;
    }

    /// Numbers an insert handed over ([`super::Index::hand_over`]) and queues it for the
    /// writer: any read that starts after this returns waits for it. Queued now (or by a task
    /// when the queue is full), so that it goes on whether or not anyone awaits the answer.
    pub(crate) fn queue_insert(
        &self,
        instance: PreparedInstance,
        on_duplicate: OnDuplicate,
        reply: Reply,
    ) {
        queue(
            &self.operations,
            WriteOp {
                operation: Operation::Insert(Box::new(instance), on_duplicate),
                reply,
                mark: Some(self.handed_over.mark()),
            },
        );
        // A writer lingering over a batch takes what is queued when it wakes: wake it before
        // the queue is full, so that no store waits for room.
        if self.operations.capacity() < WRITES_QUEUED / 2 {
            self.handed_over.wake_writer();
        }
    }

    /// [`super::Index::hand_over`]: queues the insert now, answers once it is committed.
    pub(crate) fn hand_over(
        &self,
        instance: PreparedInstance,
        on_duplicate: OnDuplicate,
    ) -> BoxFuture<'static, Result<Inserted, IndexError>> {
        let (reply, done) = oneshot::channel();
        self.queue_insert(instance, on_duplicate, Reply::Channel(reply));
        Box::pin(async move { done.await.map_err(|_| IndexError::WriterGone)??.inserted() })
    }

    /// Hands an operation to the writer and waits for its commit.
    pub(crate) async fn write(&self, operation: Operation) -> Result<Done, IndexError> {
        let (reply, done) = oneshot::channel();
        self.operations
            .send(WriteOp {
                operation,
                reply: Reply::Channel(reply),
                mark: None,
            })
            .await
            .map_err(|_| IndexError::WriterGone)?;
        // Someone waits for this one: a lingering batch is committed with it at once.
        self.handed_over.wake_writer();
        done.await.map_err(|_| IndexError::WriterGone)?
    }

    /// [`super::Index::delete`].
    pub(crate) async fn delete(&self, target: DeleteTarget) -> Result<Deleted, IndexError> {
        match self.write(Operation::Delete(target)).await? {
            Done::Deleted(deleted) => Ok(deleted),
            _ => Err(unexpected()),
        }
    }

    /// [`super::Index::files_removed`].
    pub(crate) async fn files_removed(&self, files: Vec<PathBuf>) -> Result<(), IndexError> {
        self.write(Operation::FilesRemoved(files)).await?;
        Ok(())
    }

    /// [`super::Index::begin_session`].
    pub(crate) async fn begin_session(&self) -> Result<SessionStart, IndexError> {
        match self.write(Operation::BeginSession).await? {
            Done::Session(session) => Ok(session),
            _ => Err(unexpected()),
        }
    }

    /// [`super::Index::mark_clean`].
    pub(crate) async fn mark_clean(&self) -> Result<(), IndexError> {
        self.write(Operation::MarkClean).await?;
        Ok(())
    }

    /// Asks the writer to stop once what it was given is committed (a writer already gone
    /// is no error).
    pub(crate) async fn stop(&self) {
        let _ = self.write(Operation::Close).await;
    }
}

impl Drop for WriterHandle {
    /// The index is gone: a lingering writer commits what it holds at once and, once every
    /// queued operation is in, finds its queue closed.
    fn drop(&mut self) {
        self.handed_over.wake_writer();
    }
}

/// The operations a writer takes from its queue, a batch at a time (group commit): the first
/// that comes, then what else is queued already, up to `max_batch` operations or until
/// `max_batch_time` has passed. The batch that holds [`Operation::Close`] is the last; once
/// dropped, the queue is closed (later senders see it closed) and what is left in it is
/// answered with [`IndexError::WriterGone`].
pub(crate) struct Batches {
    operations: mpsc::Receiver<WriteOp>,
    max_batch: usize,
    max_batch_time: Duration,
    closed: bool,
    linger: Option<Linger>,
}

/// Waits on the calling thread until `future` resolves or `deadline` passes. No runtime is
/// needed (nor one that may be shutting down): the future's waker unparks the thread.
fn wait_on_this_thread(future: impl Future<Output = ()>, deadline: Instant) {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    while future.as_mut().poll(&mut context).is_pending() {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return;
        };
        // Unparked by the waker, at the deadline, or spuriously: polled again in each case.
        std::thread::park_timeout(left);
    }
}

/// How long a writer thread keeps a batch of inserts answered early ([`Reply::Then`]: nobody
/// awaits their commit; reads wait for them through [`HandOvers`]) open for more before it
/// commits: a serial sender's stores then share a transaction instead of one each (each
/// transaction writes every page it touched to the WAL, and consecutive instances touch the
/// same pages). The batch is committed at once when a read starts waiting for an insert, when
/// an operation someone awaits is queued, or when the queue is half full.
pub(crate) struct Linger {
    pub(crate) time: Duration,
    pub(crate) hand_overs: Arc<HandOvers>,
}

impl Batches {
    pub(crate) fn new(
        operations: mpsc::Receiver<WriteOp>,
        max_batch: usize,
        max_batch_time: Duration,
    ) -> Self {
        Self {
            operations,
            max_batch: max_batch.max(1),
            max_batch_time,
            closed: false,
            linger: None,
        }
    }

    /// Keeps batches of inserts answered early open for more, as `linger` says (a writer
    /// thread's batches: [`Batches::next_blocking`]).
    pub(crate) fn with_linger(mut self, linger: Linger) -> Self {
        self.linger = (!linger.time.is_zero()).then_some(linger);
        self
    }

    /// The next batch, waiting on the calling thread (a writer thread); `None` once closed.
    pub(crate) fn next_blocking(&mut self) -> Option<Vec<WriteOp>> {
        if self.closed {
            return None;
        }
        let first = self.operations.blocking_recv()?;
        let mut batch = self.gather(first);
        self.linger_for_more(&mut batch);
        Some(batch)
    }

    /// Keeps a batch of inserts answered early open for the linger time ([`Linger`]), or
    /// until someone waits for the writer ([`HandOvers::wake_writer`]: a read, an awaited
    /// operation, a queue filling up), then adds what was queued meanwhile. The thread sleeps
    /// through the wait instead of waking for each insert that comes.
    fn linger_for_more(&mut self, batch: &mut Vec<WriteOp>) {
        let Some(linger) = &self.linger else {
            return;
        };
        let answered_early = |op: &WriteOp| matches!(op.reply, Reply::Then(_));
        if !self.closed && batch.len() < self.max_batch && batch.iter().all(answered_early) {
            wait_on_this_thread(
                linger.hand_overs.writer_awaited(),
                Instant::now() + linger.time,
            );
            self.take_queued(batch);
        }
    }

    /// The next batch (a writer task); `None` once closed.
    pub(crate) async fn next(&mut self) -> Option<Vec<WriteOp>> {
        if self.closed {
            return None;
        }
        let first = self.operations.recv().await?;
        Some(self.gather(first))
    }

    fn gather(&mut self, first: WriteOp) -> Vec<WriteOp> {
        let mut batch = vec![first];
        self.take_queued(&mut batch);
        batch
    }

    /// Adds what is queued already to `batch`, up to `max_batch` operations or until
    /// `max_batch_time` has passed, and notes whether the batch holds [`Operation::Close`].
    fn take_queued(&mut self, batch: &mut Vec<WriteOp>) {
        let started = Instant::now();
        while batch.len() < self.max_batch && started.elapsed() < self.max_batch_time {
            match self.operations.try_recv() {
                Ok(operation) => batch.push(operation),
                Err(_) => break,
            }
        }
        self.closed = batch
            .iter()
            .any(|op| matches!(op.operation, Operation::Close));
    }
}

impl Drop for Batches {
    fn drop(&mut self) {
        self.operations.close();
        while let Ok(late) = self.operations.try_recv() {
            late.reply.send(Err(IndexError::WriterGone));
        }
    }
}

/// The rows an instance is filed under, and which of them its insert created.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ParentIds {
    pub(crate) patient_id: i64,
    pub(crate) study_id: i64,
    pub(crate) series_id: i64,
    pub(crate) new_study: bool,
    pub(crate) new_series: bool,
}
