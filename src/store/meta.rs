//! The stream's sled database (`index.sled/`, or the stream's tree in a sled shared by a
//! server's streams): a cache of what the logs and sidecars say, kept so that opening a stream
//! reads neither the sealed logs nor their tombstones.
//!
//! Keys (one tree, so one `sled::Batch` updates everything atomically):
//! - `"c"` → [`Checkpoint`]: the stream's identity and last_seq/last_time/floor as of the
//!   checkpoint.
//! - `"s" + first seq (u64 BE)` → [`SegCatalog`]: a sealed segment, its log length and a bitmap
//!   of its sequences that were not live at the checkpoint (the deletion set).
//! - `"n"` → how many subjects had live messages at the checkpoint (u64 LE): only a sizing
//!   hint for the subject table at the next open (absent in stores from before it existed).
//!
//! A checkpoint is written only after the log holding every fact it records has been synced,
//! so sled is never ahead of the durable log; sled 0.34's `flush` is not an fsync, so after a
//! crash it may be behind, which recovery handles by replaying from the logs.

use std::collections::BTreeMap;
use std::fs::{File, TryLockError};
use std::path::Path;
use std::time::{Duration, Instant};

use bincode::Options;
use serde::{Deserialize, Serialize};

use super::StoreError;

/// Version of the layout below; anything else is ignored and rebuilt.
pub(crate) const META_VERSION: u32 = 1;
const CHECKPOINT_KEY: &[u8] = b"c";
const SEGMENT_PREFIX: u8 = b's';
const SUBJECTS_KEY: &[u8] = b"n";
/// How long `open` waits for a dropped handle on the same database to let go of its lock.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Stream-wide facts at the time of the checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    pub(crate) version: u32,
    /// The stream's identity (its `STREAM_ID` file): a sled from anything else is ignored.
    pub(crate) stream_id: u64,
    pub(crate) last_seq: u64,
    pub(crate) last_time: i64,
    pub(crate) floor: u64,
}

/// A sealed segment in the catalogue.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SegCatalog {
    /// Last sequence covered by the segment.
    pub(crate) last: u64,
    /// Length of its log file when it sealed.
    pub(crate) log_len: u64,
    /// Bit `i` set: sequence `first + i` was not live at the checkpoint.
    pub(crate) dead: Vec<u8>,
}

impl SegCatalog {
    /// True if bit `i` of the deletion bitmap is set.
    pub(crate) fn is_dead(&self, i: u64) -> bool {
        usize::try_from(i / 8)
            .ok()
            .and_then(|byte| self.dead.get(byte))
            .is_some_and(|b| b & (1 << (i % 8)) != 0)
    }
}

fn codec() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .with_limit(1 << 28)
}

fn seg_key(first: u64) -> [u8; 9] {
    let mut key = [SEGMENT_PREFIX; 9];
    key[1..].copy_from_slice(&first.to_be_bytes());
    key
}

fn index_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Index(e.to_string())
}

/// Waits (briefly) until nothing holds sled's lock on `file`. sled keeps it until the last of
/// its threads lets go of a dropped `Db`, which can lag the drop; the stream directory's own
/// lock means no other store uses this sled, so a held lock is such a straggler, and opening
/// sled before it is gone would fail and get the database thrown away as damaged.
fn wait_for_lock(file: &Path) {
    let Ok(probe) = File::open(file) else {
        return;
    };
    let start = Instant::now();
    while let Err(TryLockError::WouldBlock) = probe.try_lock() {
        if start.elapsed() > LOCK_WAIT {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Opens (or creates) a sled database at `path` with a small cache and no flusher thread.
pub(crate) fn open_db(path: &Path, cache_bytes: u64) -> Result<sled::Db, StoreError> {
    wait_for_lock(&path.join("db"));
    sled::Config::new()
        .path(path)
        .cache_capacity(cache_bytes)
        .mode(sled::Mode::LowSpace)
        .flush_every_ms(None)
        .open()
        .map_err(index_err)
}

/// The open database: a stream's own sled (`index.sled/`), or its tree in a sled shared by
/// every stream of a server (one database open for the server's lifetime: sled 0.34 does not
/// give back all the memory of a database that is opened and dropped, and each one holds
/// descriptors).
pub(crate) struct MetaDb {
    db: sled::Db,
    tree: sled::Tree,
    /// The tree's name in a shared database (`None` for a stream's own sled).
    shared_name: Option<String>,
}

/// What a checkpoint holds.
pub(crate) struct Loaded {
    pub(crate) checkpoint: Checkpoint,
    pub(crate) segments: BTreeMap<u64, SegCatalog>,
    /// Subjects with live messages at the checkpoint (0 if unknown); a hint, not a fact.
    pub(crate) subjects: u64,
}

/// One checkpoint's changes.
#[derive(Default)]
pub(crate) struct Update {
    pub(crate) upserts: Vec<(u64, SegCatalog)>,
    pub(crate) removes: Vec<u64>,
    /// Subjects with live messages now.
    pub(crate) subjects: u64,
}

impl MetaDb {
    /// Opens (or creates) the database at `path` with a small cache and no flusher thread.
    pub(crate) fn open(path: &Path, cache_bytes: u64) -> Result<MetaDb, StoreError> {
        let db = open_db(path, cache_bytes)?;
        let tree = (*db).clone();
        Ok(MetaDb {
            db,
            tree,
            shared_name: None,
        })
    }

    /// The tree `name` of a database shared by a server's streams.
    pub(crate) fn in_shared(db: &sled::Db, name: &str) -> Result<MetaDb, StoreError> {
        let tree = db.open_tree(name).map_err(index_err)?;
        Ok(MetaDb {
            db: db.clone(),
            tree,
            shared_name: Some(name.to_string()),
        })
    }

    /// Removes this stream's tree from a shared database (its store is being deleted).
    pub(crate) fn drop_shared(self) -> Result<(), StoreError> {
        if let Some(name) = &self.shared_name {
            self.db.drop_tree(name).map_err(index_err)?;
        }
        Ok(())
    }

    /// The last checkpoint, or `None` if there is none or it does not decode.
    pub(crate) fn load(&self) -> Result<Option<Loaded>, StoreError> {
        let Some(raw) = self.tree.get(CHECKPOINT_KEY).map_err(index_err)? else {
            return Ok(None);
        };
        let Ok(checkpoint) = codec().deserialize::<Checkpoint>(&raw) else {
            return Ok(None);
        };
        if checkpoint.version != META_VERSION {
            return Ok(None);
        }
        let mut segments = BTreeMap::new();
        for item in self.tree.scan_prefix([SEGMENT_PREFIX]) {
            let (key, value) = item.map_err(index_err)?;
            let (Ok(first), Ok(cat)) = (
                <[u8; 8]>::try_from(&key[1..]).map(u64::from_be_bytes),
                codec().deserialize::<SegCatalog>(&value),
            ) else {
                return Ok(None);
            };
            segments.insert(first, cat);
        }
        let subjects = self.tree.get(SUBJECTS_KEY).map_err(index_err)?;
        let subjects = subjects
            .and_then(|raw| <[u8; 8]>::try_from(&raw[..]).ok())
            .map_or(0, u64::from_le_bytes);
        Ok(Some(Loaded {
            checkpoint,
            segments,
            subjects,
        }))
    }

    /// Drops everything (before a rebuild repopulates it).
    pub(crate) fn clear(&self) -> Result<(), StoreError> {
        self.tree.clear().map_err(index_err)?;
        self.tree.flush().map_err(index_err)?;
        Ok(())
    }

    /// Applies one checkpoint atomically and flushes sled.
    pub(crate) fn write(&self, checkpoint: &Checkpoint, update: Update) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for first in update.removes {
            batch.remove(&seg_key(first)[..]);
        }
        for (first, cat) in update.upserts {
            batch.insert(
                &seg_key(first)[..],
                codec().serialize(&cat).map_err(index_err)?,
            );
        }
        batch.insert(SUBJECTS_KEY, &update.subjects.to_le_bytes()[..]);
        batch.insert(
            CHECKPOINT_KEY,
            codec().serialize(checkpoint).map_err(index_err)?,
        );
        self.tree.apply_batch(batch).map_err(index_err)?;
        self.tree.flush().map_err(index_err)?;
        Ok(())
    }
}
