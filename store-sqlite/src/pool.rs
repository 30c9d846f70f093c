//! The threads that own the connections: one writer thread and a few reader
//! threads, each holding its connection for the life of the store.
//!
//! SQLite calls block, so none runs on an async worker thread. A caller
//! sends its work as a boxed job over a channel and awaits the answer on a
//! `tokio::sync::oneshot`. The readers share one queue (an MPMC channel:
//! whichever reader is free takes the next read), so under load a thread
//! finds the next job already queued instead of being handed a fresh
//! blocking-pool thread per call.
//!
//! The writer commits in groups: it takes the writes already queued (at most
//! [`MAX_GROUP`]) and runs them in one `BEGIN IMMEDIATE` … `COMMIT`, each
//! under its own `SAVEPOINT`, so that a write that fails rolls back only its
//! own effects and answers only its own caller. The others are answered
//! after the `COMMIT`, with its error if it fails: a write is acknowledged
//! only once it is committed. A commit costs far more than a one-row
//! statement, so sharing it is what makes writes under load cheap. A write
//! that finds the queue empty commits alone, as before.
//!
//! The threads stop when the last store sharing them is dropped: the queues
//! close, each thread finishes what is queued, and the drop joins them, so
//! the connections are closed when it returns.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crossbeam_channel::{Receiver, Sender};
use rusqlite::Connection;
use session_core::{Error, Result};
use tokio::sync::oneshot;

use crate::BACKEND;

/// Most writes committed by one transaction. Enough to take in every write
/// of a few dozen concurrent callers; bounded so that no caller waits behind
/// an unbounded group.
pub(crate) const MAX_GROUP: usize = 64;

/// The connections of one database, shared by every store (table) opened on
/// it through [`SqliteStore::open_namespace`](crate::SqliteStore::open_namespace).
#[derive(Debug)]
pub(crate) struct Pool {
    writer: Sender<WriteJob>,
    /// `None` for an in-memory database, whose only connection is the
    /// writer's.
    readers: Option<Sender<ReadJob>>,
    /// Declared last, so dropped after the senders: the threads see their
    /// queues closed, then are joined.
    _threads: Threads,
}

impl Pool {
    /// Start one thread for `writer` and one for each of `readers`.
    pub(crate) fn start(writer: Connection, readers: Vec<Connection>) -> Result<Self> {
        let mut threads = Threads(Vec::with_capacity(readers.len() + 1));
        let (write_tx, write_rx) = crossbeam_channel::unbounded::<WriteJob>();
        threads.spawn("sqlite-writer".to_owned(), move || {
            write_loop(writer, &write_rx);
        })?;
        let readers = if readers.is_empty() {
            None
        } else {
            let (read_tx, read_rx) = crossbeam_channel::unbounded::<ReadJob>();
            for (n, conn) in readers.into_iter().enumerate() {
                let jobs = read_rx.clone();
                threads.spawn(format!("sqlite-reader{n}"), move || {
                    read_loop(&conn, &jobs);
                })?;
            }
            Some(read_tx)
        };
        Ok(Self {
            writer: write_tx,
            readers,
            _threads: threads,
        })
    }

    /// Run `f` on the writer connection as part of a group commit: inside a
    /// transaction shared with other writes, under a savepoint of its own.
    /// `f` must not begin, commit or roll back a transaction itself.
    ///
    /// Its answer comes once its group is committed; an error from `f`
    /// rolls back only what `f` did.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job = GroupedWrite {
            f: Some(f),
            result: None,
            tx,
        };
        send(&self.writer, WriteJob::Grouped(Box::new(job)))?;
        receive(rx).await
    }

    /// Run `f` on the writer connection alone, outside any transaction
    /// (after the writes queued before it are committed): for work that
    /// manages its own transaction.
    pub(crate) async fn write_alone<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job = move |conn: &mut Connection| {
            let _ = tx.send(f(conn));
        };
        send(&self.writer, WriteJob::Alone(Box::new(job)))?;
        receive(rx).await
    }

    /// Run `f` on a read connection; without any (in-memory database), on
    /// the writer connection, alone, so that it sees only committed data.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let Some(readers) = &self.readers else {
            return self.write_alone(move |conn| f(conn)).await;
        };
        let (tx, rx) = oneshot::channel();
        let job = move |conn: &Connection| {
            let _ = tx.send(f(conn));
        };
        send(readers, Box::new(job))?;
        receive(rx).await
    }
}

fn send<J>(queue: &Sender<J>, job: J) -> Result<()> {
    // Fails only if the thread is gone, which happens only if it panicked
    // outside a job.
    queue
        .send(job)
        .map_err(|_| Error::backend(BACKEND, "the SQLite connection thread has stopped"))
}

async fn receive<T>(rx: oneshot::Receiver<Result<T>>) -> Result<T> {
    // A job is dropped unanswered only if it panicked.
    rx.await.map_err(|_| {
        Error::backend(
            BACKEND,
            "the SQLite connection thread dropped the request (a panic in the job)",
        )
    })?
}

/// A read: runs on a reader's connection and answers its caller itself.
type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

fn read_loop(conn: &Connection, jobs: &Receiver<ReadJob>) {
    while let Ok(job) = jobs.recv() {
        // A panicking job drops its sender (its caller gets an error); the
        // thread and its connection go on serving.
        let _ = catch_unwind(AssertUnwindSafe(|| job(conn)));
    }
}

enum WriteJob {
    /// Runs inside a group commit.
    Grouped(Box<dyn Grouped>),
    /// Runs by itself, in autocommit mode, and answers its caller itself.
    Alone(Box<dyn FnOnce(&mut Connection) + Send>),
}

impl std::fmt::Debug for WriteJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Grouped(_) => "Grouped",
            Self::Alone(_) => "Alone",
        })
    }
}

/// A write that can share a transaction: run first, answered once the fate
/// of its transaction is known.
trait Grouped: Send {
    /// Run the statements; `false` if they failed.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answer the caller: its own error if `run` failed, else `outcome`'s
    /// error if the transaction did not commit, else its result.
    fn answer(self: Box<Self>, outcome: std::result::Result<(), &GroupError>);
}

struct GroupedWrite<T, F> {
    /// `None` once run.
    f: Option<F>,
    /// `Some` once run.
    result: Option<Result<T>>,
    tx: oneshot::Sender<Result<T>>,
}

impl<T, F> Grouped for GroupedWrite<T, F>
where
    F: FnOnce(&Connection) -> Result<T> + Send,
    T: Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(f) = self.f.take() else {
            return false;
        };
        let result = catch_unwind(AssertUnwindSafe(|| f(conn)))
            .unwrap_or_else(|_| Err(Error::backend(BACKEND, "a write panicked")));
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn answer(self: Box<Self>, outcome: std::result::Result<(), &GroupError>) {
        let answer = match (self.result, outcome) {
            (Some(Err(e)), _) => Err(e),
            (_, Err(e)) => Err(Error::backend(BACKEND, e.clone())),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (None, Ok(())) => Err(Error::backend(BACKEND, "a write was never run")),
        };
        let _ = self.tx.send(answer);
    }
}

/// Why a write that succeeded was not committed: its group's transaction
/// failed. Every caller of the group gets a copy.
#[derive(Clone, Debug)]
pub(crate) struct GroupError {
    what: &'static str,
    source: Option<Arc<rusqlite::Error>>,
}

impl GroupError {
    fn new(what: &'static str, source: rusqlite::Error) -> Self {
        Self {
            what,
            source: Some(Arc::new(source)),
        }
    }
}

impl std::fmt::Display for GroupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the transaction this write shared with others {}",
            self.what
        )
    }
}

impl std::error::Error for GroupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

fn write_loop(mut conn: Connection, jobs: &Receiver<WriteJob>) {
    let mut group = VecDeque::with_capacity(MAX_GROUP);
    while let Ok(first) = jobs.recv() {
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(job) = next.take() {
            taken += 1;
            match job {
                WriteJob::Grouped(job) => group.push_back(job),
                WriteJob::Alone(job) => {
                    // Keep the order: what was queued before it commits first.
                    commit_group(&conn, &mut group);
                    let _ = catch_unwind(AssertUnwindSafe(|| job(&mut conn)));
                }
            }
            if taken < MAX_GROUP {
                next = jobs.try_recv().ok();
            }
        }
        commit_group(&conn, &mut group);
    }
}

/// Run and commit every write of `group`, emptying it.
fn commit_group(conn: &Connection, group: &mut VecDeque<Box<dyn Grouped>>) {
    while let Some(first) = group.pop_front() {
        if group.is_empty() {
            // Alone: in autocommit mode, as a single statement commits.
            run_alone(conn, first);
            return;
        }
        if let Err(e) = cached(conn, "BEGIN IMMEDIATE") {
            // Say why in every answer; a `BEGIN` that failed (say, another
            // process holds the write lock past the busy timeout) would fail
            // each write alone too.
            let e = GroupError::new("could not begin", e);
            first.answer(Err(&e));
            for job in group.drain(..) {
                job.answer(Err(&e));
            }
            return;
        }
        group.push_front(first);
        transaction(conn, group);
    }
}

fn run_alone(conn: &Connection, mut job: Box<dyn Grouped>) {
    job.run(conn);
    job.answer(Ok(()));
}

/// Run the writes of `group` in the transaction just begun, each under a
/// savepoint, and commit. Writes left in `group` (if SQLite rolled the
/// transaction back midway) go into the next one.
fn transaction(conn: &Connection, group: &mut VecDeque<Box<dyn Grouped>>) {
    let mut done: Vec<Box<dyn Grouped>> = Vec::with_capacity(group.len());
    let fail = |done: &mut Vec<Box<dyn Grouped>>, e: GroupError| {
        let _ = cached(conn, "ROLLBACK");
        for job in done.drain(..) {
            job.answer(Err(&e));
        }
    };
    while let Some(mut job) = group.pop_front() {
        if let Err(e) = cached(conn, "SAVEPOINT write") {
            group.push_front(job);
            let e = GroupError::new("failed (SAVEPOINT)", e);
            // Unrun writes fail too: each caller hears why.
            done.extend(group.drain(..));
            return fail(&mut done, e);
        }
        let ok = job.run(conn);
        if conn.is_autocommit() {
            // Some errors (disk full, I/O) make SQLite roll the whole
            // transaction back: the writes before this one are lost. This one
            // answers with its own error; the rest of the group goes on in a
            // new transaction.
            let e = GroupError {
                what: "was rolled back by an error in another write",
                source: None,
            };
            if ok {
                done.push(job);
            } else {
                job.answer(Ok(()));
            }
            return fail(&mut done, e);
        }
        let undo = if ok {
            Ok(())
        } else {
            cached(conn, "ROLLBACK TO write")
        };
        let released = undo.and_then(|()| cached(conn, "RELEASE write"));
        if ok {
            done.push(job);
        } else {
            // Its own error; its effects are undone (or, if the undo failed,
            // the whole transaction is rolled back just below).
            job.answer(Ok(()));
        }
        if let Err(e) = released {
            return fail(
                &mut done,
                GroupError::new("failed (ROLLBACK TO / RELEASE)", e),
            );
        }
    }
    match cached(conn, "COMMIT") {
        Ok(()) => {
            for job in done {
                job.answer(Ok(()));
            }
        }
        Err(e) => fail(&mut done, GroupError::new("failed to commit", e)),
    }
}

/// Run one parameterless statement through the connection's statement cache.
fn cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// The connection threads, joined when dropped.
#[derive(Debug)]
struct Threads(Vec<JoinHandle<()>>);

impl Threads {
    fn spawn(&mut self, name: String, f: impl FnOnce() + Send + 'static) -> Result<()> {
        let handle = thread::Builder::new()
            .name(name)
            .spawn(f)
            .map_err(|e| Error::backend(BACKEND, e))?;
        self.0.push(handle);
        Ok(())
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        let me = thread::current().id();
        for handle in self.0.drain(..) {
            // A thread never joins itself (it would if a job dropped the
            // last store).
            if handle.thread().id() != me {
                let _ = handle.join();
            }
        }
    }
}
