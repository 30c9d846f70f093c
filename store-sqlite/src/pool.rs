//! One writer connection and a small pool of read connections, used only on
//! tokio's blocking threads.
//!
//! Waiting for a connection happens asynchronously (a tokio mutex for the
//! writer, a semaphore for the readers), so a queue of requests never parks
//! blocking-pool threads; only the SQLite call itself runs in
//! `spawn_blocking`, holding the connection it was given.

use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::Connection;
use session_core::{Error, Result};
use tokio::sync::{Mutex as AsyncMutex, OwnedSemaphorePermit, Semaphore};

use crate::BACKEND;

/// The connections of one database, shared by every store (table) opened on
/// it through [`SqliteStore::open_table`](crate::SqliteStore::open_table).
#[derive(Debug)]
pub(crate) struct Pool {
    /// SQLite allows one writer at a time per file; one connection, taken in
    /// FIFO order, serializes this process's writes without busy-waiting.
    writer: Arc<AsyncMutex<Connection>>,
    /// `None` for an in-memory database, whose only connection is the writer.
    readers: Option<Readers>,
}

#[derive(Debug)]
struct Readers {
    permits: Arc<Semaphore>,
    /// Idle connections; a permit guarantees one is here.
    idle: Arc<Mutex<Vec<Connection>>>,
}

impl Pool {
    pub(crate) fn new(writer: Connection, readers: Vec<Connection>) -> Self {
        let readers = (!readers.is_empty()).then(|| Readers {
            permits: Arc::new(Semaphore::new(readers.len())),
            idle: Arc::new(Mutex::new(readers)),
        });
        Self {
            writer: Arc::new(AsyncMutex::new(writer)),
            readers,
        }
    }

    /// Run `f` on the writer connection, on a blocking thread.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let mut conn = Arc::clone(&self.writer).lock_owned().await;
        blocking(move || f(&mut conn)).await
    }

    /// Run `f` on a read connection (the writer if there are none), on a
    /// blocking thread.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let Some(readers) = &self.readers else {
            return self.write(move |conn| f(conn)).await;
        };
        let permit = Arc::clone(&readers.permits)
            .acquire_owned()
            .await
            .map_err(|e| Error::backend(BACKEND, e))?;
        let idle = Arc::clone(&readers.idle);
        blocking(move || {
            let checkout = Checkout::take(idle, permit)?;
            checkout.run(f)
        })
        .await
    }
}

/// A read connection out of the pool; goes back (and frees its permit) when
/// dropped, also if the closure using it panics.
struct Checkout {
    /// Always `Some` until `drop`.
    conn: Option<Connection>,
    idle: Arc<Mutex<Vec<Connection>>>,
    _permit: OwnedSemaphorePermit,
}

impl Checkout {
    fn take(idle: Arc<Mutex<Vec<Connection>>>, permit: OwnedSemaphorePermit) -> Result<Self> {
        let conn = idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        if conn.is_none() {
            // Cannot happen: there are as many permits as connections and a
            // connection always returns before its permit is released.
            return Err(Error::backend(BACKEND, "read connection pool is empty"));
        }
        Ok(Self {
            conn,
            idle,
            _permit: permit,
        })
    }

    fn run<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        match &self.conn {
            Some(conn) => f(conn),
            None => Err(Error::backend(BACKEND, "read connection already returned")),
        }
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(conn);
        }
    }
}

/// Run blocking work on tokio's blocking pool.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::backend(BACKEND, e))?
}
