//! The state-machine adapter ([`RaftStateMachine`]): the application implements [`Machine`]
//! (apply a committed payload, serialize its state, restore it); [`MachineStore`] keeps the
//! applied log id and the membership beside it and handles snapshots.
//!
//! The machine itself is not durable: a snapshot is (`raft-snapshot`, written whole, fsynced,
//! renamed, the directory fsynced, with the snapshot's meta: last log id and membership). At
//! open the machine is restored from it and openraft replays the log above it. Applying and
//! building run on tokio's blocking threads, as the machine's code may do I/O.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};

use super::meta;
use super::{Entry, LogId, Node, NodeId, StorageError, TypeConfig};

/// Name of the snapshot file in a group's directory.
pub(crate) const SNAPSHOT_FILE: &str = "raft-snapshot";

/// An error a [`Machine`] reports.
pub type MachineError = Box<dyn std::error::Error + Send + Sync>;

/// The application's replicated state machine: deterministic, fed committed payloads in log
/// order.
pub trait Machine: Send + 'static {
    /// Applies the payload committed at `index`; the returned bytes answer the proposer.
    fn apply(&mut self, index: u64, payload: &[u8]) -> Vec<u8>;
    /// Applies several committed payloads in log order, one answer each. By default one at a
    /// time; a machine that hands its work to another thread hands over the whole batch.
    fn apply_batch(&mut self, entries: &[(u64, Vec<u8>)]) -> Vec<Vec<u8>> {
        entries.iter().map(|(i, p)| self.apply(*i, p)).collect()
    }
    /// The whole state, to be given to [`Machine::restore`] on this or another node.
    fn snapshot(&self) -> Vec<u8>;
    /// Replaces the state with a snapshot's. A snapshot may come from a peer: bad bytes are an
    /// error (and should leave the state as it was), never a panic.
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), MachineError>;
}

type Meta = SnapshotMeta<NodeId, Node>;

/// The snapshot file's contents.
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: Meta,
    data: Vec<u8>,
}

struct Applied<M> {
    machine: M,
    applied: Option<LogId>,
    membership: StoredMembership<NodeId, Node>,
    /// Snapshots built so far (makes snapshot ids unique).
    built: u64,
}

/// What is shared by the store and its snapshot builders.
struct Shared<M> {
    applied: Mutex<Applied<M>>,
    /// The snapshot on disk; held while the file is replaced.
    disk: Mutex<Option<Meta>>,
    dir: PathBuf,
}

/// A [`Machine`] under openraft. Clones share it.
pub struct MachineStore<M> {
    shared: Arc<Shared<M>>,
}

impl<M> Clone for MachineStore<M> {
    fn clone(&self) -> Self {
        MachineStore {
            shared: self.shared.clone(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Errors of the state machine's snapshot files and of the machine.
#[derive(Debug, thiserror::Error)]
pub enum SmError {
    /// Reading or writing the snapshot file failed (a damaged file included).
    #[error("raft snapshot I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The snapshot file passed its checksum but does not decode.
    #[error("raft snapshot undecodable: {0}")]
    Decode(String),
    /// The machine refused a snapshot.
    #[error("state machine restore: {0}")]
    Restore(MachineError),
    /// A blocking task failed (panicked or was cancelled at shutdown).
    #[error("state machine task failed: {0}")]
    Task(String),
}

/// An [`SmError`] as openraft's error about `subject`.
fn storage_err(subject: ErrorSubject<NodeId>, verb: ErrorVerb, e: SmError) -> StorageError {
    StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

fn snapshot_subject(meta: Option<&Meta>) -> ErrorSubject<NodeId> {
    ErrorSubject::Snapshot(meta.map(|m| m.signature()))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SmError> + Send + 'static,
) -> Result<T, SmError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(SmError::Task(e.to_string())),
    }
}

fn decode_file(bytes: &[u8]) -> Result<SnapshotFile, SmError> {
    super::decode(bytes).map_err(|e| SmError::Decode(e.to_string()))
}

impl<M: Machine> MachineStore<M> {
    /// Opens the state machine of the group in `dir`: `machine` is restored from the snapshot
    /// there, if any.
    pub fn open(dir: &Path, machine: M) -> Result<MachineStore<M>, SmError> {
        std::fs::create_dir_all(dir)?;
        let stored = meta::read_checked(dir, SNAPSHOT_FILE)?;
        let mut applied = Applied {
            machine,
            applied: None,
            membership: StoredMembership::default(),
            built: 0,
        };
        let mut disk = None;
        if let Some(bytes) = stored {
            let file = decode_file(&bytes)?;
            let restored = applied.machine.restore(&file.data);
            restored.map_err(SmError::Restore)?;
            applied.applied = file.meta.last_log_id;
            applied.membership = file.meta.last_membership.clone();
            disk = Some(file.meta);
        }
        Ok(MachineStore {
            shared: Arc::new(Shared {
                applied: Mutex::new(applied),
                disk: Mutex::new(disk),
                dir: dir.to_path_buf(),
            }),
        })
    }

    /// Reads the machine's applied state.
    pub fn read<R>(&self, f: impl FnOnce(&M) -> R) -> R {
        f(&lock(&self.shared.applied).machine)
    }

    /// The last applied log id.
    pub fn applied(&self) -> Option<LogId> {
        lock(&self.shared.applied).applied
    }
}

impl<M> Shared<M> {
    /// Writes `file` as the snapshot unless the one on disk is newer.
    fn store(&self, file: &SnapshotFile) -> Result<bool, SmError> {
        let mut disk = lock(&self.disk);
        if disk
            .as_ref()
            .is_some_and(|d| d.last_log_id > file.meta.last_log_id)
        {
            return Ok(false);
        }
        let bytes = super::encode(file).map_err(|e| SmError::Decode(e.to_string()))?;
        meta::write_atomic(&self.dir, SNAPSHOT_FILE, &bytes)?;
        *disk = Some(file.meta.clone());
        Ok(true)
    }

    fn load(&self) -> Result<Option<SnapshotFile>, SmError> {
        let _disk = lock(&self.disk);
        match meta::read_checked(&self.dir, SNAPSHOT_FILE)? {
            Some(bytes) => decode_file(&bytes).map(Some),
            None => Ok(None),
        }
    }
}

/// Applies `entries` in order: each run of normal payloads as one batch to the machine.
fn apply_all<M: Machine>(state: &mut Applied<M>, entries: Vec<Entry>) -> Vec<Vec<u8>> {
    let mut answers = Vec::with_capacity(entries.len());
    let mut run: Vec<(u64, Vec<u8>)> = Vec::new();
    for entry in entries {
        let log_id = entry.log_id;
        match entry.payload {
            EntryPayload::Normal(payload) => run.push((log_id.index, payload)),
            other => {
                answers.extend(apply_run(state, &mut run));
                if let EntryPayload::Membership(m) = other {
                    state.membership = StoredMembership::new(Some(log_id), m);
                }
                answers.push(Vec::new());
            }
        }
        state.applied = Some(log_id);
    }
    answers.extend(apply_run(state, &mut run));
    answers
}

fn apply_run<M: Machine>(state: &mut Applied<M>, run: &mut Vec<(u64, Vec<u8>)>) -> Vec<Vec<u8>> {
    if run.is_empty() {
        return Vec::new();
    }
    let batch = std::mem::take(run);
    let mut answers = state.machine.apply_batch(&batch);
    // A machine must answer each entry; a short answer list is padded, never a panic.
    answers.resize(batch.len(), Vec::new());
    answers
}

/// Builds snapshots of a [`MachineStore`].
pub struct Builder<M> {
    shared: Arc<Shared<M>>,
}

impl<M: Machine> RaftSnapshotBuilder<TypeConfig> for Builder<M> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let shared = self.shared.clone();
        let built = blocking(move || {
            let file = {
                let mut state = lock(&shared.applied);
                state.built += 1;
                let id = match state.applied {
                    Some(l) => format!("{}-{}-{}", l.leader_id, l.index, state.built),
                    None => format!("none-{}", state.built),
                };
                SnapshotFile {
                    meta: Meta {
                        last_log_id: state.applied,
                        last_membership: state.membership.clone(),
                        snapshot_id: id,
                    },
                    data: state.machine.snapshot(),
                }
            };
            shared.store(&file)?;
            Ok(file)
        })
        .await;
        let file = built.map_err(|e| storage_err(snapshot_subject(None), ErrorVerb::Write, e))?;
        Ok(Snapshot {
            meta: file.meta,
            snapshot: Box::new(Cursor::new(file.data)),
        })
    }
}

impl<M: Machine> RaftStateMachine<TypeConfig> for MachineStore<M> {
    type SnapshotBuilder = Builder<M>;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership<NodeId, Node>), StorageError> {
        let state = lock(&self.shared.applied);
        Ok((state.applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<u8>>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let shared = self.shared.clone();
        blocking(move || {
            let mut state = lock(&shared.applied);
            Ok(apply_all(&mut state, entries))
        })
        .await
        .map_err(|e| storage_err(ErrorSubject::StateMachine, ErrorVerb::Write, e))
    }

    async fn get_snapshot_builder(&mut self) -> Builder<M> {
        Builder {
            shared: self.shared.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let file = SnapshotFile {
            meta: meta.clone(),
            data: snapshot.into_inner(),
        };
        let shared = self.shared.clone();
        blocking(move || {
            let mut state = lock(&shared.applied);
            let restored = state.machine.restore(&file.data);
            restored.map_err(SmError::Restore)?;
            state.applied = file.meta.last_log_id;
            state.membership = file.meta.last_membership.clone();
            drop(state);
            shared.store(&file).map(|_| ())
        })
        .await
        .map_err(|e| storage_err(snapshot_subject(Some(meta)), ErrorVerb::Write, e))
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let shared = self.shared.clone();
        let file = blocking(move || shared.load())
            .await
            .map_err(|e| storage_err(snapshot_subject(None), ErrorVerb::Read, e))?;
        Ok(file.map(|f| Snapshot {
            meta: f.meta,
            snapshot: Box::new(Cursor::new(f.data)),
        }))
    }
}
