//! Server-wide JetStream storage limits, as nats-server keeps them: `max_file_store` and
//! `max_memory_store` (unset: 75% of the store directory's free disk, 75% of RAM). A stream
//! with `max_bytes` reserves that much at create (`10047` / `10028` when it does not fit); a
//! publish is refused with `10023 insufficient resources` once what all streams of its kind
//! store is at or over the limit, so a full disk is met by an error, not by `ENOSPC`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use super::config::Storage;
use super::errors::ApiError;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

use crate::config::JetStreamConfig;

/// Limits, reservations and usage of one server's streams.
pub(crate) struct Resources {
    max_file: i64,
    max_memory: i64,
    used_file: AtomicI64,
    used_memory: AtomicI64,
    /// Stream name -> (storage, reserved bytes).
    reserved: Mutex<BTreeMap<String, (Storage, i64)>>,
    /// How long each stream commit's `fdatasync` took, in seconds.
    pub sync_latency: Histogram,
    /// `$JS.API` requests served and answered with an error.
    pub api: ApiStats,
}

/// `$JS.API` request counters (`api` of account info, `/jsz` and `/varz`).
#[derive(Debug, Default)]
pub(crate) struct ApiStats {
    total: std::sync::atomic::AtomicU64,
    errors: std::sync::atomic::AtomicU64,
}

impl ApiStats {
    /// A request arrived.
    pub fn request(&self) {
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    /// A request was answered with an error.
    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts the answer if it is an error response (`{"error": ...}`).
    pub fn answered(&self, body: &[u8]) {
        if body.starts_with(b"{\"error\"") {
            self.error();
        }
    }

    /// `{level, total, errors}`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "level": crate::protocol::info::API_LEVEL,
            "total": self.total.load(Ordering::Relaxed),
            "errors": self.errors.load(Ordering::Relaxed),
        })
    }
}

/// The buckets of the fsync latency histogram: 50 µs to about 1.6 s, doubling.
pub(crate) fn sync_latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

impl Resources {
    /// Resolves the configured limits (`-1`: nats-server's 75% defaults).
    pub fn new(cfg: &JetStreamConfig) -> Arc<Self> {
        let max_file = match cfg.max_file {
            n if n >= 0 => n,
            _ => free_disk(&cfg.store_dir).map_or(i64::MAX, |b| b / 4 * 3),
        };
        let max_memory = match cfg.max_memory {
            n if n >= 0 => n,
            _ => total_memory().map_or(i64::MAX, |b| b / 4 * 3),
        };
        tracing::info!("  Max Memory:      {}", human(max_memory));
        tracing::info!("  Max Storage:     {}", human(max_file));
        Arc::new(Self {
            max_file,
            max_memory,
            used_file: AtomicI64::new(0),
            used_memory: AtomicI64::new(0),
            reserved: Mutex::default(),
            sync_latency: sync_latency_histogram(),
            api: ApiStats::default(),
        })
    }

    /// The resolved limit of one storage kind (after the 75% defaults).
    pub fn max(&self, storage: Storage) -> i64 {
        match storage {
            Storage::File => self.max_file,
            Storage::Memory => self.max_memory,
        }
    }

    fn used(&self, storage: Storage) -> &AtomicI64 {
        match storage {
            Storage::File => &self.used_file,
            Storage::Memory => &self.used_memory,
        }
    }

    /// Reserves `max_bytes` (if positive) for stream `name`, replacing what it reserved before.
    pub fn reserve(&self, name: &str, storage: Storage, max_bytes: i64) -> Result<(), ApiError> {
        let mut reserved = super::lock(&self.reserved);
        let others: i64 = reserved
            .iter()
            .filter(|(n, (s, _))| n.as_str() != name && *s == storage)
            .map(|(_, (_, b))| *b)
            .sum();
        let want = max_bytes.max(0);
        if want > 0 && others.saturating_add(want) > self.max(storage) {
            return Err(match storage {
                Storage::File => ApiError::insufficient_storage(),
                Storage::Memory => ApiError::insufficient_memory(),
            });
        }
        reserved.insert(name.to_string(), (storage, want));
        Ok(())
    }

    /// Forgets stream `name`'s reservation.
    pub fn release(&self, name: &str) {
        super::lock(&self.reserved).remove(name);
    }

    /// What is reserved for `storage`.
    pub fn reserved(&self, storage: Storage) -> i64 {
        super::lock(&self.reserved)
            .values()
            .filter(|(s, _)| *s == storage)
            .map(|(_, b)| *b)
            .sum()
    }

    /// A stream of `storage` now stores `delta` bytes more (or fewer).
    pub fn add_used(&self, storage: Storage, delta: i64) {
        if delta != 0 {
            self.used(storage).fetch_add(delta, Ordering::Relaxed);
        }
    }

    /// True once streams of `storage` store as much as the limit allows.
    pub fn exhausted(&self, storage: Storage) -> bool {
        self.used(storage).load(Ordering::Relaxed) >= self.max(storage)
    }
}

/// Free bytes on the filesystem holding `dir`.
fn free_disk(dir: &Path) -> Option<i64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we own; the path is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    i64::try_from(u128::from(st.f_bavail) * u128::from(st.f_frsize)).ok()
}

/// The machine's RAM in bytes.
fn total_memory() -> Option<i64> {
    // SAFETY: sysinfo fills the zeroed struct we own.
    let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
    if unsafe { libc::sysinfo(&mut info) } != 0 {
        return None;
    }
    i64::try_from(u128::from(info.totalram) * u128::from(info.mem_unit)).ok()
}

/// `17.66 GB`, as nats-server logs limits.
fn human(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.2} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(file: i64, memory: i64) -> Arc<Resources> {
        Resources::new(&JetStreamConfig {
            max_file: file,
            max_memory: memory,
            ..JetStreamConfig::default()
        })
    }

    #[test]
    fn reservations_add_up_per_storage() {
        let r = limits(1 << 20, 1 << 20);
        r.reserve("a", Storage::File, 512 << 10).unwrap();
        r.reserve("m", Storage::Memory, 512 << 10).unwrap();
        let e = r.reserve("b", Storage::File, 600 << 10).unwrap_err();
        assert_eq!(e.err_code, 10047);
        let e = r.reserve("n", Storage::Memory, i64::MAX).unwrap_err();
        assert_eq!(e.err_code, 10028);
        // No max_bytes reserves nothing; a stream may re-reserve its own share.
        r.reserve("c", Storage::File, -1).unwrap();
        r.reserve("a", Storage::File, 1 << 20).unwrap();
        r.release("a");
        r.reserve("b", Storage::File, 600 << 10).unwrap();
        assert_eq!(r.reserved(Storage::File), 600 << 10);
    }

    #[test]
    fn usage_at_the_limit_is_exhausted() {
        let r = limits(1000, -1);
        r.add_used(Storage::File, 999);
        assert!(!r.exhausted(Storage::File));
        r.add_used(Storage::File, 1);
        assert!(r.exhausted(Storage::File));
        r.add_used(Storage::File, -500);
        assert!(!r.exhausted(Storage::File));
        assert!(!r.exhausted(Storage::Memory));
    }
}
