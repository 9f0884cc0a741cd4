//! The store: the only code in galleon that runs SQL.
//!
//! One SQLite file per home (`galleon.db`), WAL mode, migrations from zero (`migrations.rs`), and every
//! access inside a transaction: `read` for snapshots, `write` for changes (`BEGIN IMMEDIATE`, committed
//! only when the closure returns `Ok`, so a refused request changes nothing). Resources are stored as
//! their ARM documents, keyed by the lower-cased id (names compare case-insensitively); the server owns
//! their meaning, the store only their durability. It does not know HTTP, processes or images.

mod fleet;
mod migrations;
mod tx;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, TransactionBehavior};

pub use fleet::Event;
pub use tx::{Kind, Row, Tx};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the state database failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("a stored document is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the state database was written by a newer galleon (schema {found}, this one knows {known})")]
    TooNew { found: i64, known: i64 },
    #[error("'{0}' already exists")]
    Exists(String),
    #[error("the state database holds a malformed value: {0}")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The home's database. Cheap to share behind an `Arc`; calls are short and serialised.
pub struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // NORMAL is durable against process crashes (kill -9) in WAL mode; only power loss may lose the
        // last transactions, which the control plane re-learns by observation.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrations::run(&mut conn)?;
        Ok(Store { conn: Mutex::new(conn) })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (the transaction rolls back on drop).
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on a consistent snapshot.
    pub fn read<T, E: From<StoreError>>(&self, f: impl FnOnce(&Tx<'_>) -> Result<T, E>) -> Result<T, E> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred).map_err(StoreError::from)?;
        f(&Tx::new(&tx))
    }

    /// Runs `f` in a write transaction, committed only if `f` returns `Ok`.
    pub fn write<T, E: From<StoreError>>(&self, f: impl FnOnce(&Tx<'_>) -> Result<T, E>) -> Result<T, E> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(StoreError::from)?;
        let out = f(&Tx::new(&tx))?;
        tx.commit().map_err(StoreError::from)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
