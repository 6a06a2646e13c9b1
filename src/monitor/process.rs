//! The process's own resource use for `/varz` and STATSZ: resident memory and CPU percent
//! (the CPU time used between two samples over the wall time between them, as `ps` shows it).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// CPU time at one moment.
struct Sample {
    at: Instant,
    cpu: Duration,
}

/// Remembers the last sample so that each reading covers the time since the one before.
pub(crate) struct CpuMeter {
    last: Mutex<Option<Sample>>,
    started: Instant,
}

impl Default for CpuMeter {
    fn default() -> Self {
        Self {
            last: Mutex::new(None),
            started: Instant::now(),
        }
    }
}

impl CpuMeter {
    /// Percent of one core used since the previous reading (since start, at the first).
    pub fn percent(&self) -> f64 {
        let Some(cpu) = cpu_time() else { return 0.0 };
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let (since, used) = match last.as_ref() {
            Some(prev) if now.duration_since(prev.at) >= Duration::from_millis(100) => {
                (now.duration_since(prev.at), cpu.saturating_sub(prev.cpu))
            }
            _ => (now.duration_since(self.started), cpu),
        };
        *last = Some(Sample { at: now, cpu });
        if since.is_zero() {
            return 0.0;
        }
        let pct = used.as_secs_f64() / since.as_secs_f64() * 100.0;
        (pct * 100.0).round() / 100.0
    }
}

/// User plus system CPU time of this process.
fn cpu_time() -> Option<Duration> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a full `rusage` into the pointer it is given.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: getrusage returned 0, so it initialised the struct.
    let usage = unsafe { usage.assume_init() };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    Some(tv(usage.ru_utime) + tv(usage.ru_stime))
}

/// Resident set size in bytes (Linux `/proc/self/statm`; 0 elsewhere).
pub(crate) fn rss_bytes() -> u64 {
    let Ok(text) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = text
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * page.max(0) as u64
}

/// Cores this process may run on.
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
