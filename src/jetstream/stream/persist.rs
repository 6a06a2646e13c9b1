//! Consumer snapshots on disk: one JSON file per consumer (name, config, created time, state and
//! the journal index that state includes), written to a temporary file, fsynced and renamed.
//! They are written when a consumer is created or changed and when the journal is compacted;
//! in between, deliveries and acks go to the journal.

use serde::{Deserialize, Serialize};

use super::Stream;
use crate::jetstream::config::{ConsumerConfig, StreamConfig};
use crate::jetstream::consumer::{Consumer, ConsumerState};

impl Stream {
    /// Snapshots the consumers marked dirty: durable and ephemeral ones alike, so that after a
    /// restart a client's push or ordered consumer (a KV watcher) resumes at once instead of
    /// waiting to notice it is gone. Each file is written to a temporary file, fsynced and
    /// renamed, and the directory fsynced after. Returns the first error.
    pub fn persist_consumers(&mut self) -> std::io::Result<()> {
        let applied = self.journal_index();
        // A replicated stream's consumers are in its group's log.
        let dir = self.dir.as_ref().filter(|_| !self.replicated);
        let Some(dir) = dir else {
            for c in self.consumers.values_mut() {
                c.dirty = false;
            }
            return Ok(());
        };
        let cdir = dir.join("consumers");
        let mut result = Ok(());
        let mut renamed = false;
        for c in self.consumers.values_mut().filter(|c| c.dirty) {
            let rec = ConsumerRecord {
                name: Some(c.name.clone()),
                config: c.config.clone(),
                created: c.created,
                state: c.state().clone(),
                applied,
            };
            let json = serde_json::to_vec(&rec).map_err(std::io::Error::other)?;
            let tmp = cdir.join(format!("{}.json.tmp", c.name));
            let dst = cdir.join(format!("{}.json", c.name));
            let res = std::fs::create_dir_all(&cdir)
                .and_then(|_| write_file(&tmp, &json))
                .and_then(|_| std::fs::rename(&tmp, &dst));
            match res {
                Ok(()) => {
                    c.dirty = false;
                    c.applied = applied;
                    renamed = true;
                }
                Err(e) => {
                    tracing::error!(stream = %self.config.name, consumer = %c.name, "can't persist consumer state: {e}");
                    if result.is_ok() {
                        result = Err(e);
                    }
                }
            }
        }
        if renamed {
            result = result.and(sync_dir(&cdir));
        }
        result
    }

    /// Loads the persisted consumers (durable and ephemeral), then replays the journal into
    /// them.
    pub fn load_consumers(&mut self) {
        if self.replicated {
            // Its consumers come from its group's log.
            return;
        }
        self.load_snapshots();
        self.replay_journal();
    }

    fn load_snapshots(&mut self) {
        let Some(dir) = &self.dir else { return };
        let Ok(entries) = std::fs::read_dir(dir.join("consumers")) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            let rec: ConsumerRecord = match std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
            {
                Some(r) => r,
                None => {
                    tracing::error!(path = %path.display(), "unreadable consumer state; skipped");
                    continue;
                }
            };
            if let Some((name, c)) = self.consumer_from(rec) {
                self.consumers.insert(name, c);
            }
        }
    }

    /// The consumer a record describes, with its state restored (`None` for a record with
    /// no name, durable or otherwise).
    pub(super) fn consumer_from(&self, rec: ConsumerRecord) -> Option<(String, Consumer)> {
        let name = rec
            .name
            .clone()
            .or_else(|| rec.config.effective_name().map(str::to_string))?;
        let mut c = Consumer::new(
            name.clone(),
            rec.config,
            self.store.as_ref(),
            None,
            &self.config.subjects,
            rec.created,
        );
        c.restore(rec.state, rec.applied);
        Some((name, c))
    }
}

#[derive(Serialize, Deserialize)]
pub(super) struct ConsumerRecord {
    /// The consumer's name (server-chosen for most ephemerals; absent in older files).
    #[serde(default)]
    pub name: Option<String>,
    pub config: ConsumerConfig,
    pub created: i64,
    pub state: ConsumerState,
    /// The journal index `state` includes (absent in files from before the journal).
    #[serde(default)]
    pub applied: u64,
}

/// Writes `data` to a new file at `path` and fsyncs it.
pub(crate) fn write_file(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(data)?;
    f.sync_data()
}

/// fsyncs a directory, so the renames in it survive power loss.
pub(crate) fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// A stream's `meta.json` as stores written before the catalogue have it (read once, when
/// the catalogue takes them over).
#[derive(Serialize, Deserialize)]
pub(crate) struct StreamMeta {
    pub config: StreamConfig,
    pub created: i64,
}

impl StreamMeta {
    /// Reads `<dir>/meta.json`; `None` if missing or unreadable.
    pub fn read(dir: &std::path::Path) -> Option<StreamMeta> {
        let bytes = std::fs::read(dir.join("meta.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}
