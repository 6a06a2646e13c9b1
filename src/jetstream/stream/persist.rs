//! Durable consumers on disk: one JSON file per consumer (config, created time and state),
//! written to a temporary file and renamed, fsynced when an AckSync is being confirmed.

use serde::{Deserialize, Serialize};

use super::Stream;
use crate::jetstream::config::ConsumerConfig;
use crate::jetstream::consumer::{Consumer, ConsumerState};

impl Stream {
    /// Persists the consumers whose state changed (write-to-temp and rename; with `durable`,
    /// the file is fsynced before the rename).
    pub fn persist_consumers(&mut self, durable: bool) {
        let Some(dir) = &self.dir else {
            for c in self.consumers.values_mut() {
                c.dirty = false;
            }
            return;
        };
        let cdir = dir.join("consumers");
        for c in self.consumers.values_mut().filter(|c| c.dirty) {
            c.dirty = false;
            if c.config.durable_name.is_none() {
                continue;
            }
            let rec = ConsumerRecord {
                config: c.config.clone(),
                created: c.created,
                state: c.state.clone(),
            };
            let Ok(json) = serde_json::to_vec(&rec) else {
                continue;
            };
            let tmp = cdir.join(format!("{}.json.tmp", c.name));
            let dst = cdir.join(format!("{}.json", c.name));
            let res = std::fs::create_dir_all(&cdir)
                .and_then(|_| write_file(&tmp, &json, durable))
                .and_then(|_| std::fs::rename(&tmp, &dst));
            if let Err(e) = res {
                tracing::error!(stream = %self.config.name, consumer = %c.name, "can't persist consumer state: {e}");
            }
        }
    }

    /// Loads persisted durable consumers.
    pub fn load_consumers(&mut self) {
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
            let Some(name) = rec.config.effective_name().map(str::to_string) else {
                continue;
            };
            let mut c = Consumer::new(
                name.clone(),
                rec.config,
                self.store.as_ref(),
                None,
                &self.config.subjects,
            );
            c.restore(rec.state, rec.created);
            self.consumers.insert(name, c);
        }
    }
}

#[derive(Serialize, Deserialize)]
struct ConsumerRecord {
    config: ConsumerConfig,
    created: i64,
    state: ConsumerState,
}

pub(super) fn write_file(
    path: &std::path::Path,
    data: &[u8],
    durable: bool,
) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(data)?;
    if durable {
        f.sync_data()?;
    }
    Ok(())
}
