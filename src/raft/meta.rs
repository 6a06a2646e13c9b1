//! Small files replaced whole and durably: a group's log meta (vote, committed log id, purge
//! floor) and its snapshot. A file is written to `<name>.tmp`, fsynced, renamed over `<name>`
//! and the directory fsynced before the write returns, so a crash leaves either the old file
//! or the new one. A CRC32 ahead of the body catches damage.
//!
//! ```text
//! file = crc32:u32le body          (crc over body)
//! ```

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{LogId, Vote};

/// Name of the log meta file in a group's directory.
pub(crate) const LOG_META: &str = "raft-meta";

/// What a group's log keeps beside its entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LogMeta {
    /// The last vote saved.
    pub(crate) vote: Option<Vote>,
    /// The last committed log id saved (may lag the real one; never ahead of it).
    pub(crate) committed: Option<LogId>,
    /// Entries up to and including this one are purged.
    pub(crate) purged: Option<LogId>,
}

/// Replaces `dir/name` with `body`, durably (see the module doc).
pub(crate) fn write_atomic(dir: &Path, name: &str, body: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = File::create(&tmp)?;
    file.write_all(&crc32fast::hash(body).to_le_bytes())?;
    file.write_all(body)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

/// Reads `dir/name` back: `None` if it does not exist, `InvalidData` if its CRC fails.
pub(crate) fn read_checked(dir: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    let mut bytes = match fs::read(dir.join(name)) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some(crc) = bytes.get(..4).and_then(|c| c.try_into().ok()) else {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "file too short"));
    };
    if crc32fast::hash(&bytes[4..]) != u32::from_le_bytes(crc) {
        let msg = format!("{name}: checksum mismatch");
        return Err(io::Error::new(io::ErrorKind::InvalidData, msg));
    }
    bytes.drain(..4);
    Ok(Some(bytes))
}

/// Makes the directory's entries (a created or renamed file) durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_files_read_back_and_damage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_checked(dir.path(), "m").unwrap().is_none());
        write_atomic(dir.path(), "m", b"one").unwrap();
        write_atomic(dir.path(), "m", b"two").unwrap();
        assert_eq!(read_checked(dir.path(), "m").unwrap().unwrap(), b"two");
        assert!(!dir.path().join("m.tmp").exists());
        let path = dir.path().join("m");
        let mut bytes = fs::read(&path).unwrap();
        bytes[5] ^= 1;
        fs::write(&path, &bytes).unwrap();
        let err = read_checked(dir.path(), "m").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        fs::write(&path, [1u8, 2]).unwrap();
        assert!(read_checked(dir.path(), "m").is_err());
    }
}
