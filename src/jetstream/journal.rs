//! An append-only journal of indexed entries, for state no message store records itself: a
//! stream's consumer deliveries and acks (`consumers.log` beside its store; consumer snapshots
//! say which index they include) and the stream catalogue's ops (`meta.log`, see
//! `catalogue`). A replay applies each entry above its snapshot's index once. Entries are
//! written with [`Journal::write`] (they survive kill -9) and fsynced with [`Journal::sync`]
//! (then they survive power loss); once the file passes [`COMPACT_AT`] the owner snapshots
//! durably and [`Journal::reset`]s it.
//!
//! ```text
//! record = len:u32le crc32:u32le index:u64le entry     (crc over index and entry; len of entry)
//! ```
//! A torn or damaged record ends the journal: it and what follows are cut off at open. The
//! file is preallocated ahead of its writes (`store::Prealloc`: an `fdatasync` then need not
//! commit a new file size, which made an AckSync cost a third more than a publish); a tail of
//! zeros is that unwritten space, not damage.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::store::Prealloc;

/// Journal size at which the consumers are snapshotted and the journal emptied.
pub(crate) const COMPACT_AT: u64 = 8 * 1024 * 1024;

const HEADER: usize = 16;

/// The entries read back: (index, entry bytes), in order.
pub(crate) type Entries = Vec<(u64, Vec<u8>)>;

/// An open journal.
pub(crate) struct Journal {
    path: PathBuf,
    file: Option<File>,
    buf: Vec<u8>,
    /// Index of the last entry pushed (entries are numbered from 1, and never reused).
    last: u64,
    /// Bytes of entries in the file.
    size: u64,
    /// The file's size (`size..` it is zeros reserved for the next writes).
    prealloc: Prealloc,
    /// Entries written but not fsynced.
    unsynced: bool,
}

impl Journal {
    /// The journal file `path`, with its entries (index, entry bytes) in order; a damaged
    /// tail is cut off. Opening creates nothing: the file appears with the first entry.
    pub fn open(path: &Path) -> std::io::Result<(Journal, Entries)> {
        Self::open_with(path, false)
    }

    /// Like [`Journal::open`], but a damaged file is first copied whole to
    /// `<path>.damaged.<ns>`: for a journal whose every entry was answered (the stream
    /// catalogue), where damage before the tail drops committed entries.
    pub fn open_keeping_damage(path: &Path) -> std::io::Result<(Journal, Entries)> {
        Self::open_with(path, true)
    }

    fn open_with(path: &Path, keep_damaged: bool) -> std::io::Result<(Journal, Entries)> {
        let path = path.to_path_buf();
        let mut entries = Vec::new();
        let mut size = 0u64;
        let mut prealloc = Prealloc::new(0);
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(mut f) => {
                let mut bytes = Vec::new();
                f.read_to_end(&mut bytes)?;
                let good = parse(&bytes, &mut entries);
                prealloc = Prealloc::new(bytes.len() as u64);
                let unwritten = bytes[good..].iter().all(|b| *b == 0);
                if !unwritten {
                    tracing::warn!(path = %path.display(), "journal damaged at byte {good}; the rest is dropped");
                    if keep_damaged {
                        let mut copy = path.clone().into_os_string();
                        copy.push(format!(".damaged.{}", super::time::now_nanos()));
                        std::fs::write(&copy, &bytes)?;
                        tracing::error!(path = %path.display(), copy = ?copy, "entries after byte {good} are dropped; the whole file is kept in the copy");
                    }
                    f.set_len(good as u64)?;
                    f.sync_data()?;
                    prealloc.cut(good as u64);
                }
                f.seek(SeekFrom::Start(good as u64))?;
                size = good as u64;
                Some(f)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let last = entries.last().map_or(0, |(i, _)| *i);
        let journal = Journal {
            path,
            file,
            buf: Vec::new(),
            last,
            size,
            prealloc,
            unsynced: false,
        };
        Ok((journal, entries))
    }

    /// Index of the last entry pushed.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// Makes sure the next index is above `applied` (a snapshot may be newer than the file).
    pub fn skip_to(&mut self, applied: u64) {
        self.last = self.last.max(applied);
    }

    /// Queues one entry under the stream's op `index` (above every earlier one).
    pub fn push(&mut self, index: u64, entry: &[u8]) {
        self.last = self.last.max(index);
        let index = index.to_le_bytes();
        let mut crc = crc32fast::Hasher::new();
        crc.update(&index);
        crc.update(entry);
        // Entries are small ops (acks, delivery batches), far under 4 GiB.
        let len = u32::try_from(entry.len()).unwrap_or(u32::MAX);
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf.extend_from_slice(&crc.finalize().to_le_bytes());
        self.buf.extend_from_slice(&index);
        self.buf.extend_from_slice(entry);
    }

    /// Writes the queued entries to the file (no fsync).
    pub fn write(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let file = match &mut self.file {
            Some(f) => f,
            None => {
                // Written at `size`, not appended: the file may be preallocated beyond it.
                let mut f = OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&self.path)?;
                f.seek(SeekFrom::Start(self.size))?;
                // The new file's directory entry must survive power loss too.
                if let Some(dir) = self.path.parent() {
                    File::open(dir)?.sync_all()?;
                }
                self.file.insert(f)
            }
        };
        let end = self.size + self.buf.len() as u64;
        self.prealloc.ensure(file, end);
        file.write_all(&self.buf)?;
        self.size = end;
        self.buf.clear();
        self.unsynced = true;
        Ok(())
    }

    /// Writes the queued entries and fsyncs them.
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.write()?;
        if self.unsynced {
            if let Some(f) = &self.file {
                f.sync_data()?;
            }
            self.unsynced = false;
        }
        Ok(())
    }

    /// Bytes written to the file.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Forgets everything after the first `size` bytes: queued entries and what was written
    /// since (an entry whose fsync failed must not be read back as committed).
    pub fn cut_to(&mut self, size: u64) -> std::io::Result<()> {
        self.buf.clear();
        if let Some(f) = &mut self.file {
            f.set_len(size)?;
            f.seek(SeekFrom::Start(size))?;
            f.sync_data()?;
            self.prealloc.cut(size);
        }
        self.size = size;
        self.unsynced = false;
        Ok(())
    }

    /// True once the file is big enough to compact.
    pub fn wants_compaction(&self) -> bool {
        self.size + self.buf.len() as u64 >= COMPACT_AT
    }

    /// Empties the journal once every consumer's snapshot includes all of it (the caller has
    /// just written them durably); indexes go on from where they were.
    pub fn reset(&mut self) -> std::io::Result<()> {
        self.buf.clear();
        if let Some(f) = &mut self.file {
            f.set_len(0)?;
            f.seek(SeekFrom::Start(0))?;
            f.sync_data()?;
            self.prealloc.cut(0);
        }
        self.size = 0;
        self.unsynced = false;
        Ok(())
    }
}

/// Parses records into `out`; returns the length of the good prefix.
fn parse(bytes: &[u8], out: &mut Entries) -> usize {
    let mut at = 0;
    while bytes.len() - at >= HEADER {
        let h = &bytes[at..at + HEADER];
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        let Some(end) = (at + HEADER).checked_add(len).filter(|e| *e <= bytes.len()) else {
            break;
        };
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&h[8..16]);
        hasher.update(&bytes[at + HEADER..end]);
        if hasher.finalize() != crc {
            break;
        }
        let mut index = [0u8; 8];
        index.copy_from_slice(&h[8..16]);
        out.push((u64::from_le_bytes(index), bytes[at + HEADER..end].to_vec()));
        at = end;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_reopen_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, entries) = Journal::open(&dir.path().join("consumers.log")).unwrap();
        assert!(entries.is_empty());
        assert!(!dir.path().join("consumers.log").exists());
        j.push(1, b"one");
        j.push(5, b"two");
        assert_eq!(j.last(), 5);
        j.sync().unwrap();
        j.push(6, b"three");
        j.write().unwrap();
        let len = j.size();
        drop(j);
        // A torn last record: its final byte is missing.
        let path = dir.path().join("consumers.log");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 1)
            .unwrap();
        let (mut j, entries) = Journal::open(&dir.path().join("consumers.log")).unwrap();
        assert_eq!(entries, vec![(1, b"one".to_vec()), (5, b"two".to_vec())]);
        assert_eq!(j.last(), 5);
        j.push(6, b"four");
        j.sync().unwrap();
        let (_, entries) = Journal::open(&dir.path().join("consumers.log")).unwrap();
        assert_eq!(entries.last(), Some(&(6, b"four".to_vec())));
    }

    #[test]
    fn reset_keeps_numbering_and_damage_ends_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(&dir.path().join("consumers.log")).unwrap();
        j.push(1, b"a");
        j.push(2, b"b");
        j.sync().unwrap();
        j.reset().unwrap();
        assert_eq!(j.last(), 2);
        j.push(3, b"c");
        j.push(4, b"d");
        j.sync().unwrap();
        assert_eq!(j.size(), 2 * (HEADER + 1) as u64);
        drop(j);
        let path = dir.path().join("consumers.log");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER + 1 + HEADER] ^= 0xff; // the second record's entry
        std::fs::write(&path, &bytes).unwrap();
        let (j, entries) = Journal::open(&dir.path().join("consumers.log")).unwrap();
        assert_eq!(entries, vec![(3, b"c".to_vec())]);
        assert_eq!(j.last(), 3);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), (HEADER + 1) as u64);
    }

    /// The file is preallocated: the zeros after the entries are unwritten space, neither read
    /// as entries nor taken for damage (nothing is copied aside), and writes after a reopen
    /// land right after the last entry, not after the zeros.
    #[test]
    fn preallocated_space_is_not_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.log");
        let (mut j, _) = Journal::open_keeping_damage(&path).unwrap();
        j.push(1, b"one");
        j.sync().unwrap();
        let written = j.size();
        drop(j);
        assert!(std::fs::metadata(&path).unwrap().len() > written);
        let (mut j, entries) = Journal::open_keeping_damage(&path).unwrap();
        assert_eq!(entries, vec![(1, b"one".to_vec())]);
        assert_eq!(j.size(), written);
        j.push(2, b"two");
        j.sync().unwrap();
        drop(j);
        let (_, entries) = Journal::open_keeping_damage(&path).unwrap();
        assert_eq!(entries, vec![(1, b"one".to_vec()), (2, b"two".to_vec())]);
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["meta.log".to_string()]);
    }
}
