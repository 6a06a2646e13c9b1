//! Start-up: opening the stream catalogue (taking over the per-stream `meta.json` files of a
//! store written before it) and restoring every stream it lists.

use std::path::Path;

use super::catalogue::{Durable, MetaOp};
use super::config::Storage;
use super::stream::StreamMeta;
use super::{lock, streams_dir, JetStream};

/// Opens `<store_dir>/jetstream`'s catalogue. Streams found on disk with a `meta.json` (the
/// layout before the catalogue, or a takeover a crash cut short) are committed to it (a
/// stream it already holds as such is `Exists`), and their `meta.json` files removed once it
/// holds them durably; one that cannot be taken over keeps its file and is retried next start.
pub(super) fn open_catalogue(store_dir: &Path) -> Result<Durable, crate::Error> {
    let dir = store_dir.join("jetstream");
    let unreadable = |e: std::io::Error| {
        crate::Error::Store(format!(
            "stream catalogue in {} unreadable: {e}",
            dir.display()
        ))
    };
    let mut catalogue = Durable::open(&dir).map_err(unreadable)?;
    let Ok(entries) = std::fs::read_dir(streams_dir(store_dir)) else {
        return Ok(catalogue);
    };
    let mut taken = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        if !path.join("meta.json").exists() {
            continue;
        }
        let Some(meta) = StreamMeta::read(&path) else {
            tracing::error!(dir = %path.display(), "stream metadata unreadable; stream skipped");
            continue;
        };
        let name = meta.config.name.clone();
        let op = MetaOp::CreateStream {
            config: meta.config,
            created: meta.created,
            peers: Vec::new(),
        };
        match catalogue.commit(op) {
            Ok(_) => taken.push(path.join("meta.json")),
            Err(e) => {
                tracing::error!(stream = %name, "not taken into the catalogue: {}", e.description)
            }
        }
    }
    for file in taken {
        if let Err(e) = std::fs::remove_file(&file) {
            tracing::warn!(file = %file.display(), "old stream metadata not removed: {e}");
        }
    }
    Ok(catalogue)
}

/// Moves a directory left where a new stream is created (a stream deleted from the catalogue
/// whose data removal a crash cut short) aside, to `<name>.orphan.<ns>`, so the new stream
/// starts empty and nothing is destroyed unasked. Stream names hold no `.`, so it is never
/// taken for a stream.
pub(super) fn set_aside(dir: &Path) {
    if !dir.exists() {
        return;
    }
    let mut to = dir.as_os_str().to_owned();
    to.push(format!(".orphan.{}", super::time::now_nanos()));
    match std::fs::rename(dir, &to) {
        Ok(()) => {
            tracing::warn!(from = %dir.display(), to = ?to, "a directory no stream owned was set aside")
        }
        Err(e) => tracing::error!(dir = %dir.display(), "can't set aside: {e}"),
    }
}

impl JetStream {
    /// Opens every stream of the catalogue. Memory streams do not outlive the process (as on
    /// nats-server): their entries are deleted. Directories no stream owns are reported.
    pub(super) fn restore_streams(&self) {
        let mut catalogue = lock(&self.catalogue);
        let all: Vec<_> = catalogue
            .catalogue()
            .streams()
            .map(|(_, a)| a.clone())
            .collect();
        for a in all {
            let name = a.config.name.clone();
            if a.config.storage == Storage::Memory {
                if let Err(e) = catalogue.commit(MetaOp::DeleteStream { name: name.clone() }) {
                    tracing::error!(stream = %name, "memory stream not removed: {}", e.description);
                }
                continue;
            }
            if let Err(e) = self
                .resources
                .reserve(&name, a.config.storage, a.config.max_bytes)
            {
                tracing::warn!(stream = %name, "{}", e.description);
            }
            match self.open_stream(a.config, a.created, false) {
                Ok(()) => tracing::info!(stream = %name, "Restored stream"),
                Err(e) => {
                    tracing::error!(stream = %name, "can't restore stream: {}", e.description)
                }
            }
        }
        let Ok(entries) = std::fs::read_dir(streams_dir(&self.cfg.store_dir)) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.contains('.') && catalogue.catalogue().get(&name).is_none() {
                tracing::warn!(dir = %e.path().display(), "directory of no stream in the catalogue; left as it is");
            }
        }
    }
}
