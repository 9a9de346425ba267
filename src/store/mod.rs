//! The on-disk store: retained messages and persistent sessions in `<data_dir>/mqttd.redb`.
//!
//! **Why redb.** An embedded, pure-Rust (no C toolchain), well-maintained key-value store with
//! ACID transactions and a stable file format since 1.0. It keeps copy-on-write B-trees and
//! commits by switching a checksummed root: a write torn by a crash or power loss is detected
//! at the next open and the previous commit is used, so nothing committed before it is lost.
//! A broker's state is many small records that mostly live briefly (a QoS 1 message lives
//! until its PUBACK): a B-tree with in-place-free pages suits that better than an LSM (fjall),
//! and sled is unmaintained with an unstable format.
//!
//! **Layout.** Four tables; values are records of the broker's own versioned binary format
//! (`broker::persist::record`), so the store knows nothing of their content:
//!
//! | table | key | value |
//! |---|---|---|
//! | `sessions` | client identifier | session: subscriptions, will, expiry, QoS 2 state |
//! | `deliveries` | (client identifier, sequence number) | one queued or inflight message |
//! | `retained` | topic | retained message |
//! | `meta` | `"format"` | record format version |
//!
//! **Failure handling.** A record that does not decode is logged with its key and skipped by
//! `Broker::restore`. A file that cannot be opened or read (damaged, or of an unknown format)
//! is renamed to `mqttd.redb.damaged-<unix seconds>` and the broker starts with an empty store,
//! logging loudly; if even that fails it runs in memory. Only a store held by another running
//! broker (the file lock) stops the start.
//!
//! A commit that fails (disk full, I/O error) closes the database: after an I/O error redb
//! refuses every further transaction (`PreviousIo`) until the database is closed and opened
//! again, so the next [`Store::apply`] reopens it first, with the opener the store was made with
//! (the file, or a test's storage backend). The writer retries the failed change set.
//!
//! **Durability** (`storage.durability`, see [`writer`]): the store writer applies each batch's
//! [`ChangeSet`](crate::broker::ChangeSet) in one write transaction committed with fsync, and
//! the server task holds the outputs of that batch (acknowledgements, CONNACKs, deliveries)
//! until the commit.

pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use crate::broker::{Loaded, StoreOp};

const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
const DELIVERIES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("deliveries");
const RETAINED: TableDefinition<&str, &[u8]> = TableDefinition::new("retained");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// File name of the store in the data directory.
pub const FILE_NAME: &str = "mqttd.redb";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "{path}: the store is in use by another running broker (one data directory per broker)"
    )]
    InUse { path: PathBuf },
    #[error("{path}: {source}")]
    Db {
        path: PathBuf,
        source: Box<redb::Error>,
    },
    #[error("cannot create the data directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub struct Store {
    /// `None` after a failed operation closed it; the next one opens it again.
    db: Mutex<Option<Database>>,
    reopen: Opener,
    path: PathBuf,
}

/// Opens the database again after a failed commit.
type Opener = Box<dyn Fn() -> Result<Database, redb::DatabaseError> + Send + Sync>;

/// What [`Store::open`] found.
pub struct Opened {
    pub store: Store,
    pub loaded: Loaded,
    /// The damaged file moved aside, if any.
    pub moved_aside: Option<PathBuf>,
}

impl Store {
    /// Opens (or creates) the store in `dir` and reads everything in it. A damaged file is
    /// moved aside and replaced by an empty store.
    pub fn open(dir: &Path) -> Result<Opened, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        match Self::open_and_load(&path) {
            Ok((store, loaded)) => Ok(Opened {
                store,
                loaded,
                moved_aside: None,
            }),
            Err(StoreError::InUse { path }) => Err(StoreError::InUse { path }),
            Err(e) => {
                let stamp = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let aside = dir.join(format!("{FILE_NAME}.damaged-{stamp}"));
                tracing::error!(
                    store = %path.display(), error = %e, moved_to = %aside.display(),
                    "THE STORE CANNOT BE READ: moving it aside and starting with an empty store \
                     (retained messages and persistent sessions in it are not restored)"
                );
                std::fs::rename(&path, &aside).map_err(|source| StoreError::Db {
                    path: path.clone(),
                    source: Box::new(redb::Error::Io(source)),
                })?;
                let (store, loaded) = Self::open_and_load(&path)?;
                Ok(Opened {
                    store,
                    loaded,
                    moved_aside: Some(aside),
                })
            }
        }
    }

    fn open_and_load(path: &Path) -> Result<(Store, Loaded), StoreError> {
        let err = |e: redb::Error| match e {
            redb::Error::DatabaseAlreadyOpen => StoreError::InUse {
                path: path.to_path_buf(),
            },
            e => StoreError::Db {
                path: path.to_path_buf(),
                source: Box::new(e),
            },
        };
        let db = open_file(path, false).map_err(|e| err(e.into()))?;
        let file = path.to_path_buf();
        let reopen = Box::new(move || open_file(&file, true));
        let store = Store::new(path.to_path_buf(), db, reopen).map_err(err)?;
        let loaded = store.load().map_err(err)?;
        Ok((store, loaded))
    }

    /// The store on `db` (named `path` in logs), opened again with `reopen` after a failed
    /// commit; creates the tables if needed.
    fn new(path: PathBuf, db: Database, reopen: Opener) -> Result<Store, redb::Error> {
        let store = Store {
            db: Mutex::new(Some(db)),
            reopen,
            path,
        };
        store.init()?;
        Ok(store)
    }

    /// Runs `f` on the database, opening it first if a failed operation closed it. An error
    /// closes it: after an I/O error redb fails every later transaction with `PreviousIo` until
    /// the database is opened again (the closed file also releases its lock, which a reopen
    /// needs).
    fn with_db<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, redb::Error>,
    ) -> Result<T, redb::Error> {
        let mut slot = self.slot();
        let db = match slot.take() {
            Some(db) => db,
            None => (self.reopen)()?,
        };
        let result = f(&db);
        if result.is_ok() {
            *slot = Some(db);
        }
        result
    }

    /// The database slot. A panic while it was held left it empty (taken by `with_db`): the next
    /// operation opens the database again, so a poisoned lock is safe to use.
    fn slot(&self) -> MutexGuard<'_, Option<Database>> {
        self.db.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates the tables and records the format version.
    fn init(&self) -> Result<(), redb::Error> {
        self.with_db(Self::init_db)
    }

    fn init_db(db: &Database) -> Result<(), redb::Error> {
        let tx = db.begin_write()?;
        {
            tx.open_table(SESSIONS)?;
            tx.open_table(DELIVERIES)?;
            tx.open_table(RETAINED)?;
            let mut meta = tx.open_table(META)?;
            let format = meta.get("format")?.map(|v| v.value());
            let ours = u64::from(crate::broker::persist_format());
            if format.is_some_and(|f| f > ours) {
                tracing::warn!(
                    store_format = format,
                    ours,
                    "store written by a newer mqttd; records it cannot read are skipped"
                );
            } else if format != Some(ours) {
                // Older records stay readable; new ones are written in our format.
                meta.insert("format", ours)?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn load(&self) -> Result<Loaded, redb::Error> {
        self.with_db(Self::load_db)
    }

    fn load_db(db: &Database) -> Result<Loaded, redb::Error> {
        let tx = db.begin_read()?;
        let mut loaded = Loaded::default();
        for entry in tx.open_table(SESSIONS)?.iter()? {
            let (k, v) = entry?;
            loaded
                .sessions
                .push((k.value().to_owned(), v.value().to_vec()));
        }
        for entry in tx.open_table(DELIVERIES)?.iter()? {
            let (k, v) = entry?;
            let (client_id, seq) = k.value();
            loaded
                .deliveries
                .push((client_id.to_owned(), seq, v.value().to_vec()));
        }
        for entry in tx.open_table(RETAINED)?.iter()? {
            let (k, v) = entry?;
            loaded
                .retained
                .push((k.value().to_owned(), v.value().to_vec()));
        }
        Ok(loaded)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Applies `ops` in order in one transaction, durable (fsync) when this returns. An error
    /// closes the database; the next call opens it again.
    pub fn apply(&self, ops: &[StoreOp]) -> Result<(), redb::Error> {
        self.with_db(|db| Self::apply_db(db, ops))
    }

    fn apply_db(db: &Database, ops: &[StoreOp]) -> Result<(), redb::Error> {
        let mut tx = db.begin_write()?;
        tx.set_durability(Durability::Immediate)
            .map_err(|e| redb::Error::Io(std::io::Error::other(e.to_string())))?;
        {
            let mut sessions = tx.open_table(SESSIONS)?;
            let mut deliveries = tx.open_table(DELIVERIES)?;
            let mut retained = tx.open_table(RETAINED)?;
            for op in ops {
                match op {
                    StoreOp::PutSession { client_id, record } => {
                        sessions.insert(&**client_id, record.as_slice())?;
                    }
                    StoreOp::DeleteSession { client_id } => {
                        let id: &str = client_id;
                        sessions.remove(id)?;
                        deliveries.retain_in((id, 0)..=(id, u64::MAX), |_, _| false)?;
                    }
                    StoreOp::PutDelivery {
                        client_id,
                        seq,
                        record,
                    } => {
                        deliveries.insert((&**client_id, *seq), record.as_slice())?;
                    }
                    StoreOp::DeleteDelivery { client_id, seq } => {
                        deliveries.remove((&**client_id, *seq))?;
                    }
                    StoreOp::PutRetained { topic, record } => {
                        retained.insert(&**topic, record.as_slice())?;
                    }
                    StoreOp::DeleteRetained { topic } => {
                        retained.remove(&**topic)?;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(())
    }
}

/// Opens (or creates) the store file. redb checks the file when it was not closed cleanly: at
/// the start that is worth a warning; on a `reopen` after a failed commit it always happens and
/// is logged at debug level, so a commit that keeps failing logs only what the writer logs.
fn open_file(path: &Path, reopen: bool) -> Result<Database, redb::DatabaseError> {
    let mut builder = Database::builder();
    builder.set_repair_callback(move |session| {
        let progress = format!("{:.0}%", session.progress() * 100.0);
        if reopen {
            tracing::debug!(progress, "store checked again after a failed commit");
        } else {
            tracing::warn!(progress, "store was not closed cleanly: checking it");
        }
    });
    builder.create(path)
}

#[cfg(test)]
mod tests;
