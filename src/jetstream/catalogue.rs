//! The stream catalogue: which streams exist, with what configuration and creation time. It
//! is a state machine of [`MetaOp`]s (what a cluster's meta Raft group will replicate): every
//! create, update and delete goes through [`Catalogue::apply_at`], which decides it against the
//! applied state (name taken, subjects overlapping, stream unknown) and reads no clock.
//!
//! On disk ([`Durable`]) it is `jetstream/meta.log` (a [`Journal`] of JSON entries, each
//! fsynced before its answer) and `jetstream/meta.json` (a snapshot with the index it includes,
//! written when the log passes its compaction size). A store written before the catalogue
//! (per-stream `meta.json` files) is taken over once, at the first start.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::config::StreamConfig;
use super::errors::ApiError;
use super::journal::Journal;
use crate::protocol::subject::overlaps;

/// A change of the catalogue.
// Consumer assignments join these ops with the cluster.
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum MetaOp {
    /// A new stream; `created` and, in a cluster, the servers that host it (`peers`, by
    /// server name) are chosen by the proposer. No peers: the local node.
    CreateStream {
        config: StreamConfig,
        created: i64,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        peers: Vec<String>,
    },
    /// A stream's new configuration (validated against the old one by the proposer).
    UpdateStream { config: StreamConfig },
    /// The stream is gone.
    DeleteStream { name: String },
    /// The servers hosting a stream change (`STREAM.PEER.REMOVE`: one out, maybe a
    /// replacement in, appended last).
    SetPeers { name: String, peers: Vec<String> },
}

/// One stream's entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Assignment {
    pub config: StreamConfig,
    pub created: i64,
    /// The servers hosting the stream in a cluster (empty on a single node).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<String>,
}

/// What applying a [`MetaOp`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum MetaApplied {
    /// The stream was added, changed or removed.
    Changed,
    /// A create of a stream that exists with this very configuration: nothing changed.
    Exists,
    /// An index at or below the applied one: nothing changed.
    Skipped,
}

/// The catalogue's state.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Catalogue {
    streams: BTreeMap<String, Assignment>,
    /// Index of the last op applied.
    applied: u64,
}

impl Catalogue {
    /// The stream called `name`.
    pub fn get(&self, name: &str) -> Option<&Assignment> {
        self.streams.get(name)
    }

    /// Every stream, by name.
    pub fn streams(&self) -> impl Iterator<Item = (&String, &Assignment)> {
        self.streams.iter()
    }

    /// Index of the last op applied (read by the tests; the meta group will report it).
    #[cfg(test)]
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// What `op` would do, or the error it gets, without changing anything.
    pub fn check(&self, op: &MetaOp) -> Result<MetaApplied, ApiError> {
        match op {
            MetaOp::CreateStream { config, .. } => match self.streams.get(&config.name) {
                Some(a) if a.config == *config => Ok(MetaApplied::Exists),
                Some(_) => Err(ApiError::stream_name_exist()),
                None if self.overlapping(&config.name, &config.subjects) => {
                    Err(ApiError::subjects_overlap())
                }
                None => Ok(MetaApplied::Changed),
            },
            MetaOp::UpdateStream { config } => {
                if !self.streams.contains_key(&config.name) {
                    return Err(ApiError::stream_not_found());
                }
                if self.overlapping(&config.name, &config.subjects) {
                    return Err(ApiError::subjects_overlap());
                }
                Ok(MetaApplied::Changed)
            }
            MetaOp::DeleteStream { name } | MetaOp::SetPeers { name, .. } => {
                match self.streams.contains_key(name) {
                    true => Ok(MetaApplied::Changed),
                    false => Err(ApiError::stream_not_found()),
                }
            }
        }
    }

    /// Applies `op` as log index `index`: decided by [`Catalogue::check`] against the applied
    /// state, so every replica accepts or refuses alike. A refused op still uses its index.
    pub fn apply_at(&mut self, index: u64, op: MetaOp) -> Result<MetaApplied, ApiError> {
        if index <= self.applied {
            return Ok(MetaApplied::Skipped);
        }
        self.applied = index;
        let outcome = self.check(&op)?;
        if outcome == MetaApplied::Changed {
            match op {
                MetaOp::CreateStream {
                    config,
                    created,
                    peers,
                } => {
                    let a = Assignment {
                        config,
                        created,
                        peers,
                    };
                    self.streams.insert(a.config.name.clone(), a);
                }
                MetaOp::UpdateStream { config } => {
                    if let Some(a) = self.streams.get_mut(&config.name) {
                        a.config = config;
                    }
                }
                MetaOp::DeleteStream { name } => {
                    self.streams.remove(&name);
                }
                MetaOp::SetPeers { name, peers } => {
                    if let Some(a) = self.streams.get_mut(&name) {
                        a.peers = peers;
                    }
                }
            }
        }
        Ok(outcome)
    }

    /// True if another stream's subjects overlap `subjects`.
    fn overlapping(&self, name: &str, subjects: &[String]) -> bool {
        self.streams.iter().any(|(n, a)| {
            n != name
                && a.config
                    .subjects
                    .iter()
                    .any(|x| subjects.iter().any(|y| overlaps(x, y)))
        })
    }
}

/// The catalogue kept on disk: every op is in the log, fsynced, before its answer.
pub(crate) struct Durable {
    catalogue: Catalogue,
    journal: Journal,
    dir: PathBuf,
    /// A failed write could not be undone: further commits are refused.
    broken: bool,
}

impl Durable {
    /// Opens the catalogue in `dir` (the `jetstream` directory): the snapshot, then every
    /// logged op above it. A snapshot that does not decode is an error: starting with streams
    /// missing would hide their data.
    pub fn open(dir: &Path) -> io::Result<Durable> {
        let snapshot = dir.join("meta.json");
        let mut catalogue = match std::fs::read(&snapshot) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| io::Error::other(format!("{}: {e}", snapshot.display())))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Catalogue::default(),
            Err(e) => return Err(e),
        };
        let (mut journal, entries) = Journal::open_keeping_damage(&dir.join("meta.log"))?;
        journal.skip_to(catalogue.applied);
        for (index, bytes) in entries {
            let op: MetaOp = serde_json::from_slice(&bytes)
                .map_err(|e| io::Error::other(format!("meta.log entry {index}: {e}")))?;
            // Ops were checked before they were logged; one refused now is logged and passed.
            if let Err(e) = catalogue.apply_at(index, op) {
                tracing::warn!(index, "catalogue replay: {}", e.description);
            }
        }
        Ok(Durable {
            catalogue,
            journal,
            dir: dir.to_path_buf(),
            broken: false,
        })
    }

    /// The applied catalogue.
    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// Checks `op`, logs it durably and applies it (the local log: committed once fsynced).
    /// Nothing changes if the check or the write fails.
    pub fn commit(&mut self, op: MetaOp) -> Result<MetaApplied, ApiError> {
        if self.catalogue.check(&op)? == MetaApplied::Exists {
            return Ok(MetaApplied::Exists);
        }
        let io = |e: io::Error| ApiError::store_failed(&e.to_string());
        let entry = serde_json::to_vec(&op).map_err(|e| io(io::Error::other(e)))?;
        if self.broken {
            return Err(ApiError::store_failed(
                "the stream catalogue could not be written; restart the server",
            ));
        }
        let index = self.catalogue.applied + 1;
        let before = self.journal.size();
        self.journal.push(index, &entry);
        if let Err(e) = self.journal.sync() {
            // Not committed: the entry must not be read back (its index goes to the next op).
            if let Err(cut) = self.journal.cut_to(before) {
                tracing::error!("catalogue log can't be cut back after a failed write: {cut}; no more changes until restart");
                self.broken = true;
            }
            return Err(io(e));
        }
        let applied = self.catalogue.apply_at(index, op);
        if self.journal.wants_compaction() {
            if let Err(e) = self.snapshot() {
                tracing::error!("catalogue snapshot failed (the log keeps growing): {e}");
            }
        }
        applied
    }

    /// Writes the snapshot durably, then empties the log.
    fn snapshot(&mut self) -> io::Result<()> {
        let json = serde_json::to_vec(&self.catalogue).map_err(io::Error::other)?;
        let tmp = self.dir.join("meta.json.tmp");
        super::stream::write_file(&tmp, &json)?;
        std::fs::rename(&tmp, self.dir.join("meta.json"))?;
        super::stream::sync_dir(&self.dir)?;
        self.journal.reset()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(name: &str, subjects: &[&str]) -> StreamConfig {
        let json = serde_json::json!({ "name": name, "subjects": subjects });
        serde_json::from_value::<StreamConfig>(json)
            .unwrap()
            .normalize()
            .unwrap()
    }

    fn create(name: &str, subjects: &[&str]) -> MetaOp {
        MetaOp::CreateStream {
            config: cfg(name, subjects),
            created: 7,
            peers: Vec::new(),
        }
    }

    #[test]
    fn apply_decides_against_the_applied_state() {
        let mut c = Catalogue::default();
        assert_eq!(
            c.apply_at(1, create("A", &["a.>"])),
            Ok(MetaApplied::Changed)
        );
        assert_eq!(
            c.apply_at(2, create("A", &["a.>"])),
            Ok(MetaApplied::Exists)
        );
        let taken = c.apply_at(3, create("A", &["other"])).unwrap_err();
        assert_eq!(taken.err_code, ApiError::stream_name_exist().err_code);
        let overlap = c.apply_at(4, create("B", &["a.x"])).unwrap_err();
        assert_eq!(overlap.err_code, ApiError::subjects_overlap().err_code);
        assert_eq!(c.apply_at(4, create("B", &["b"])), Ok(MetaApplied::Skipped));
        assert_eq!(c.apply_at(5, create("B", &["b"])), Ok(MetaApplied::Changed));
        let update = MetaOp::UpdateStream {
            config: cfg("B", &["b", "a.y"]),
        };
        assert!(c.apply_at(6, update).is_err());
        let delete = MetaOp::DeleteStream { name: "A".into() };
        assert_eq!(c.apply_at(7, delete.clone()), Ok(MetaApplied::Changed));
        assert!(c.apply_at(8, delete).is_err());
        let names: Vec<&String> = c.streams().map(|(n, _)| n).collect();
        assert_eq!(names, ["B"]);
        assert_eq!(c.applied(), 8);
    }

    #[test]
    fn committed_ops_survive_reopen_and_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = Durable::open(dir.path()).unwrap();
        d.commit(create("A", &["a"])).unwrap();
        assert!(d.commit(create("A2", &["a"])).is_err());
        d.commit(create("B", &["b"])).unwrap();
        let reopened = Durable::open(dir.path()).unwrap();
        assert_eq!(reopened.catalogue(), d.catalogue());
        assert_eq!(reopened.catalogue().applied(), 2);
        d.snapshot().unwrap();
        d.commit(MetaOp::DeleteStream { name: "A".into() }).unwrap();
        let reopened = Durable::open(dir.path()).unwrap();
        assert_eq!(reopened.catalogue(), d.catalogue());
        assert!(reopened.catalogue().get("A").is_none());
        assert_eq!(reopened.catalogue().applied(), 3);
    }

    #[test]
    fn a_damaged_log_is_copied_before_it_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = Durable::open(dir.path()).unwrap();
        d.commit(create("A", &["a"])).unwrap();
        d.commit(create("B", &["b"])).unwrap();
        drop(d);
        let log = dir.path().join("meta.log");
        let mut bytes = std::fs::read(&log).unwrap();
        bytes[20] ^= 0xff; // inside the first entry
        std::fs::write(&log, &bytes).unwrap();
        let d = Durable::open(dir.path()).unwrap();
        assert!(
            d.catalogue().get("B").is_none(),
            "the journal cuts at the damage"
        );
        let copies: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".damaged."))
            .collect();
        assert_eq!(copies.len(), 1);
        assert_eq!(std::fs::read(copies[0].path()).unwrap(), bytes);
    }

    #[test]
    fn a_damaged_snapshot_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("meta.json"), b"{not json").unwrap();
        assert!(Durable::open(dir.path()).is_err());
    }
}
