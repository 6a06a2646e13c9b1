//! Segment files: naming and listing, the active segment's buffered writer, and a small cache
//! of read handles.
//!
//! A segment is `segments/<first seq, 20 digits>.log`; its message records carry consecutive
//! sequences starting at the name. Only the newest segment (the active one) is ever written.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::prealloc::Prealloc;

/// Read handles kept open.
const READERS: usize = 16;

/// `<dir>/<first:020>.<ext>`.
pub(crate) fn seg_file(dir: &Path, first: u64, ext: &str) -> PathBuf {
    dir.join(format!("{first:020}.{ext}"))
}

/// The first sequences of the `.log` files in `dir`, ascending. Other files are ignored.
pub(crate) fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".log") else {
            continue;
        };
        if stem.len() == 20 {
            if let Ok(first) = stem.parse::<u64>() {
                if first > 0 {
                    names.push(first);
                }
            }
        }
    }
    names.sort_unstable();
    Ok(names)
}

/// Makes the directory's entries (created, renamed, unlinked files) durable.
pub(crate) fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Removes a file, treating "already gone" as success.
pub(crate) fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The segment being appended to. Records collect in `buf` and reach the file on `flush`;
/// bytes below `flushed` are in the file, the rest are read straight from `buf`.
///
/// The file is preallocated ahead of the writes ([`Prealloc`]); recovery treats a tail of
/// zeros as unwritten space, and sealing (`trim`) cuts it off.
pub(crate) struct ActiveWriter {
    pub(crate) first: u64,
    /// Shared so an fsync can run while the store is unlocked ([`PendingSync`]).
    file: Arc<File>,
    flushed: u64,
    /// The file's size: `flushed..` it is preallocated space.
    prealloc: Prealloc,
    buf: Vec<u8>,
    /// Bytes written since the last `sync_data`.
    unsynced: bool,
}

impl ActiveWriter {
    /// Creates a new, empty segment file (the caller fsyncs the directory).
    pub(crate) fn create(dir: &Path, first: u64) -> io::Result<ActiveWriter> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(seg_file(dir, first, "log"))?;
        Ok(ActiveWriter {
            first,
            file: Arc::new(file),
            flushed: 0,
            prealloc: Prealloc::new(0),
            buf: Vec::new(),
            unsynced: false,
        })
    }

    /// Opens an existing segment to append after its first `len` bytes (anything beyond, such
    /// as preallocated space, is cut).
    pub(crate) fn reopen(dir: &Path, first: u64, len: u64) -> io::Result<ActiveWriter> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(seg_file(dir, first, "log"))?;
        if file.metadata()?.len() != len {
            file.set_len(len)?;
        }
        file.seek(SeekFrom::Start(len))?;
        Ok(ActiveWriter {
            first,
            file: Arc::new(file),
            flushed: len,
            prealloc: Prealloc::new(len),
            buf: Vec::new(),
            unsynced: true,
        })
    }

    /// Logical length: flushed bytes plus buffered ones.
    pub(crate) fn len(&self) -> u64 {
        self.flushed + self.buf.len() as u64
    }

    /// Bytes waiting in the buffer.
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Appends bytes produced by `encode`; returns the offset they start at.
    pub(crate) fn append(&mut self, encode: impl FnOnce(&mut Vec<u8>) -> usize) -> u64 {
        let at = self.len();
        encode(&mut self.buf);
        self.unsynced = true;
        at
    }

    /// Writes the buffer to the file. On failure the file is cut back to what was flushed
    /// before, so a half-written record never sits in front of later ones.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let end = self.flushed + self.buf.len() as u64;
        self.prealloc.ensure(&self.file, end);
        let mut file = &*self.file;
        if let Err(e) = file.write_all(&self.buf) {
            let _ = file.set_len(self.flushed);
            let _ = file.seek(SeekFrom::Start(self.flushed));
            self.prealloc.cut(self.flushed);
            return Err(e);
        }
        self.flushed += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Syncs and cuts the preallocated space off, leaving a file exactly as long as its
    /// records (before the segment is sealed, and at checkpoints).
    pub(crate) fn trim(&mut self) -> io::Result<()> {
        self.sync()?;
        if self.prealloc.allocated() > self.flushed {
            self.file.set_len(self.flushed)?;
            self.file.sync_all()?;
            self.prealloc.cut(self.flushed);
        }
        Ok(())
    }

    /// Flushes and `fdatasync`s, if anything was written since the last sync.
    pub(crate) fn sync(&mut self) -> io::Result<()> {
        self.flush()?;
        if self.unsynced {
            self.file.sync_data()?;
            self.unsynced = false;
        }
        Ok(())
    }

    /// Flushes and hands out the file to `fdatasync` (if anything was written since the last
    /// sync) and the length that sync covers; [`ActiveWriter::synced_upto`] records that it
    /// completed.
    pub(crate) fn begin_sync(&mut self) -> io::Result<(Option<Arc<File>>, u64)> {
        self.flush()?;
        Ok((self.unsynced.then(|| self.file.clone()), self.flushed))
    }

    /// A sync of segment `first` covering its first `covered` bytes completed: the segment
    /// is synced unless more was written since (appends go on while a sync is in flight).
    pub(crate) fn synced_upto(&mut self, first: u64, covered: u64) {
        if self.first == first && self.len() == covered {
            self.unsynced = false;
        }
    }

    /// Copies `len` bytes at `offset` if they are still in the buffer.
    pub(crate) fn read_buffered(&self, offset: u64, len: usize) -> Option<Vec<u8>> {
        let at = usize::try_from(offset.checked_sub(self.flushed)?).ok()?;
        self.buf.get(at..at.checked_add(len)?).map(<[u8]>::to_vec)
    }

    /// True if `offset` is below the flushed length.
    pub(crate) fn is_flushed(&self, offset: u64) -> bool {
        offset < self.flushed
    }

    /// Bytes written to the file (the rest is in the buffer).
    pub(crate) fn flushed(&self) -> u64 {
        self.flushed
    }
}

/// A sync begun with [`super::MsgStore::begin_sync`]: what it covers and the `fdatasync` still
/// to do, which runs without the store borrowed (behind a [`super::SharedStore`], without its
/// lock held: readers go on while the disk flushes; and the owner may append more meanwhile,
/// which this sync does not cover).
pub struct PendingSync {
    file: Option<Arc<File>>,
    /// The active segment and its length when the sync began.
    seg: u64,
    covered: u64,
    /// Every message up to this sequence is durable once the sync completes.
    seq: u64,
    /// Segments whose last removal is recorded in what the sync covers: unlinked after it.
    pub(crate) doomed: Vec<u64>,
}

impl PendingSync {
    /// A sync of the active segment `seg` up to `covered` bytes, `file` if it needs an
    /// `fdatasync`.
    pub(crate) fn new(
        file: Option<Arc<File>>,
        (seg, covered): (u64, u64),
        seq: u64,
        doomed: Vec<u64>,
    ) -> PendingSync {
        PendingSync {
            file,
            seg,
            covered,
            seq,
            doomed,
        }
    }

    /// A sync with nothing left to wait for: everything up to `seq` is durable already.
    pub fn done(seq: u64) -> PendingSync {
        PendingSync::new(None, (0, 0), seq, Vec::new())
    }

    /// True if [`PendingSync::wait`] has a disk to wait for.
    pub fn needs_wait(&self) -> bool {
        self.file.is_some()
    }

    /// The last sequence this sync makes durable.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The segment and length it covers.
    pub(crate) fn covers(&self) -> (u64, u64) {
        (self.seg, self.covered)
    }

    /// The wait, to run on another thread while the owner goes on.
    pub fn waiter(&self) -> impl FnOnce() -> io::Result<()> + Send + 'static {
        let file = self.file.clone();
        move || match file {
            Some(f) => f.sync_data(),
            None => Ok(()),
        }
    }

    /// Waits for the disk (from any thread).
    pub fn wait(&self) -> io::Result<()> {
        match &self.file {
            Some(f) => f.sync_data(),
            None => Ok(()),
        }
    }
}

/// Bytes read at once when a read starts where the previous one of its segment ended (a
/// consumer or watcher walking the log): one positioned read then serves the records that
/// follow, instead of one system call each.
const READ_AHEAD: usize = 32 * 1024;

/// Open read handles (most recently used last) and one read-ahead block.
#[derive(Default)]
pub(crate) struct Readers {
    open: Mutex<Vec<(u64, Arc<File>)>>,
    ahead: Mutex<Ahead>,
}

/// The read-ahead block and where the last read ended.
#[derive(Default)]
struct Ahead {
    /// Segment the block and `next` are about.
    first: u64,
    /// Offset of `bytes` in the segment.
    at: u64,
    bytes: Vec<u8>,
    /// End of the last read of segment `first`.
    next: u64,
}

impl Ahead {
    /// The bytes `[offset, offset+len)` of segment `first` if the block holds them.
    fn take(&mut self, first: u64, offset: u64, len: usize) -> Option<Vec<u8>> {
        let start = usize::try_from(offset.checked_sub(self.at)?).ok()?;
        let end = start.checked_add(len)?;
        let out = (self.first == first)
            .then(|| self.bytes.get(start..end))??
            .to_vec();
        self.next = offset + len as u64;
        if end == self.bytes.len() {
            // Used up (a reader that reached the end of what is written ends here): an idle
            // stream keeps no block.
            self.bytes = Vec::new();
        }
        Some(out)
    }

    /// True if a read at `offset` continues the last read of segment `first`.
    fn continues(&self, first: u64, offset: u64) -> bool {
        self.first == first && self.next == offset && offset > 0
    }
}

impl Readers {
    /// Reads `len` bytes at `offset` of segment `first`, whose bytes below `valid_end` are
    /// written and never change (a sealed segment's length, or the active one's flushed
    /// length: read-ahead never sees space written later). The locks are held only to find the
    /// handle and to copy from the block; reads are positioned, so readers do not queue.
    pub(crate) fn read(
        &self,
        dir: &Path,
        first: u64,
        offset: u64,
        len: usize,
        valid_end: u64,
    ) -> io::Result<Vec<u8>> {
        let sequential = {
            let mut ahead = self.ahead.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(out) = ahead.take(first, offset, len) {
                return Ok(out);
            }
            let sequential = ahead.continues(first, offset);
            if !sequential {
                // A random read (a direct get, say): remember where it ends, read nothing more.
                if ahead.first != first {
                    *ahead = Ahead::default();
                    ahead.first = first;
                }
                ahead.next = offset + len as u64;
            }
            sequential
        };
        let file = self.handle(dir, first)?;
        let room = usize::try_from(valid_end.saturating_sub(offset)).unwrap_or(usize::MAX);
        let block = READ_AHEAD.min(room);
        if !sequential || block <= len {
            let mut out = vec![0u8; len];
            std::os::unix::fs::FileExt::read_exact_at(&*file, &mut out, offset)?;
            return Ok(out);
        }
        let mut bytes = vec![0u8; block];
        std::os::unix::fs::FileExt::read_exact_at(&*file, &mut bytes, offset)?;
        let out = bytes[..len].to_vec();
        let mut ahead = self.ahead.lock().unwrap_or_else(|p| p.into_inner());
        *ahead = Ahead {
            first,
            at: offset,
            bytes,
            next: offset + len as u64,
        };
        Ok(out)
    }

    /// The open handle of segment `first`, opened if need be.
    fn handle(&self, dir: &Path, first: u64) -> io::Result<Arc<File>> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let pos = match open.iter().position(|(f, _)| *f == first) {
            Some(pos) => pos,
            None => {
                if open.len() >= READERS {
                    open.remove(0);
                }
                let file = File::open(seg_file(dir, first, "log"))?;
                open.push((first, Arc::new(file)));
                open.len() - 1
            }
        };
        let entry = open.remove(pos);
        let file = entry.1.clone();
        open.push(entry);
        Ok(file)
    }

    /// Closes the handle of a segment (before it is unlinked or truncated).
    pub(crate) fn forget(&self, first: u64) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|(f, _)| *f != first);
        let mut ahead = self.ahead.lock().unwrap_or_else(|p| p.into_inner());
        if ahead.first == first {
            *ahead = Ahead::default();
        }
    }
}
