//! One store per directory. A store with its own sled takes the directory's advisory lock
//! (`LOCK`, one descriptor for its lifetime). A store indexed in the server's shared sled,
//! which itself holds an exclusive lock over the whole store directory against other
//! processes, only claims its directory inside the process: no descriptor per stream.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::StoreError;

/// Directories claimed by stores of this process that hold no `LOCK` file.
static CLAIMED: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// Held for a store's lifetime.
#[derive(Debug)]
pub(crate) enum DirLock {
    /// The advisory lock on `<dir>/LOCK` (held while the descriptor is open).
    File(#[allow(dead_code)] File),
    /// An in-process claim on the directory, released on drop.
    Claim(PathBuf),
}

impl DirLock {
    /// Locks `dir` (an existing directory); `shared_index` says another lock already keeps
    /// other processes out.
    pub(crate) fn take(dir: &Path, shared_index: bool) -> Result<DirLock, StoreError> {
        let busy = || StoreError::Invalid(format!("{} is already open", dir.display()));
        if shared_index {
            let path = std::fs::canonicalize(dir)?;
            let mut claimed = CLAIMED.lock().unwrap_or_else(|p| p.into_inner());
            if !claimed.insert(path.clone()) {
                return Err(busy());
            }
            return Ok(DirLock::Claim(path));
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("LOCK"))?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock::File(file)),
            Err(TryLockError::WouldBlock) => Err(busy()),
            Err(TryLockError::Error(e)) => Err(StoreError::Io(e)),
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        if let DirLock::Claim(path) = self {
            CLAIMED
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(path);
        }
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
        drop(file);
    }
}
