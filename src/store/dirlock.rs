//! One store per directory. A store with its own sled takes the directory's advisory lock
//! (`LOCK`, one descriptor for its lifetime). A store indexed in the server's shared sled,
//! which itself holds an exclusive lock over the whole store directory against other
//! processes, only claims its directory inside the process: no descriptor per stream.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::StoreError;

/// Directories claimed by the stores (and servers) of this process.
static CLAIMED: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// Held for a store's lifetime: the in-process claim on its directory and, for a store with
/// its own sled, the advisory lock on `<dir>/LOCK` (held while the descriptor is open).
#[derive(Debug)]
pub(crate) struct DirLock {
    path: PathBuf,
    _file: Option<File>,
}

impl DirLock {
    /// Locks `dir` (an existing directory); `shared_index` says another lock already keeps
    /// other processes out. Inside the process a directory is claimed once, whichever kind.
    pub(crate) fn take(dir: &Path, shared_index: bool) -> Result<DirLock, StoreError> {
        let busy = || StoreError::Invalid(format!("{} is already open", dir.display()));
        let path = std::fs::canonicalize(dir)?;
        if !claimed().insert(path.clone()) {
            return Err(busy());
        }
        // From here on, dropping `lock` gives the claim back.
        let mut lock = DirLock { path, _file: None };
        if shared_index {
            return Ok(lock);
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("LOCK"))?;
        match file.try_lock() {
            Ok(()) => {
                lock._file = Some(file);
                Ok(lock)
            }
            Err(TryLockError::WouldBlock) => Err(busy()),
            Err(TryLockError::Error(e)) => Err(StoreError::Io(e)),
        }
    }
}

fn claimed() -> std::sync::MutexGuard<'static, BTreeSet<PathBuf>> {
    CLAIMED.lock().unwrap_or_else(|p| p.into_inner())
}

impl Drop for DirLock {
    fn drop(&mut self) {
        claimed().remove(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_claimed_once_either_way() {
        let dir = tempfile::tempdir().unwrap();
        let claim = DirLock::take(dir.path(), true).unwrap();
        assert!(DirLock::take(dir.path(), true).is_err());
        assert!(!dir.path().join("LOCK").exists(), "a claim costs no file");
        drop(claim);
        let again = DirLock::take(dir.path(), true).unwrap();
        drop(again);
        let file = DirLock::take(dir.path(), false).unwrap();
        assert!(DirLock::take(dir.path(), false).is_err());
        assert!(
            DirLock::take(dir.path(), true).is_err(),
            "a claim excludes a file lock too"
        );
        drop(file);
        assert!(DirLock::take(dir.path(), true).is_ok());
    }
}
