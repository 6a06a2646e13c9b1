//! `cargo bench --bench fsync_floor`: what one durable append costs on this disk, the floor
//! under every JetStream/KV acknowledgement that waits for the disk (`sync: always`).
//!
//! Appends 200-byte records to a file, each followed by `fdatasync`, three ways: growing the
//! file (every sync also commits a new size), over space reserved with `fallocate` (what the
//! store's active segment does), and over space written with zeros beforehand. Prints p50/p90/
//! p99 in microseconds per way, medians over 3 rounds of 2,000 appends. The file lives in
//! `LOADGEN_STORE_DIR` or `target/`, i.e. on the disk the load generator's stores use.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::Instant;

const APPENDS: usize = 2_000;
const RECORD: usize = 200;
const SPACE: u64 = 8 << 20;
const ROUNDS: usize = 3;

#[derive(Clone, Copy)]
enum Way {
    Grow,
    Fallocate,
    Zeroed,
}

fn prepare(file: &mut File, way: Way) -> std::io::Result<()> {
    match way {
        Way::Grow => {}
        Way::Fallocate => {
            // SAFETY: a plain syscall on a descriptor `file` keeps open.
            let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, SPACE as libc::off_t) };
            if rc != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Way::Zeroed => {
            let zeros = vec![0u8; 1 << 20];
            for _ in 0..SPACE >> 20 {
                file.write_all(&zeros)?;
            }
            file.seek(SeekFrom::Start(0))?;
        }
    }
    file.sync_all()
}

/// Latencies of one round, sorted, in microseconds.
fn round(path: &PathBuf, way: Way) -> std::io::Result<Vec<f64>> {
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)?;
    prepare(&mut file, way)?;
    let record = [b'x'; RECORD];
    let mut lat = Vec::with_capacity(APPENDS);
    for _ in 0..APPENDS {
        let t = Instant::now();
        file.write_all(&record)?;
        file.sync_data()?;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    lat.sort_by(f64::total_cmp);
    Ok(lat)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((p * sorted.len() as f64) as usize).min(sorted.len() - 1)]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> std::io::Result<()> {
    let dir = std::env::var_os("LOADGEN_STORE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("fsync-floor.tmp");
    println!(
        "200-byte append + fdatasync, {APPENDS} per round, medians of {ROUNDS} rounds, in {}",
        dir.display()
    );
    println!("| file | p50 µs | p90 µs | p99 µs |\n|---|---:|---:|---:|");
    for (name, way) in [
        ("growing", Way::Grow),
        ("preallocated (fallocate)", Way::Fallocate),
        ("pre-written zeros", Way::Zeroed),
    ] {
        let mut figures = [Vec::new(), Vec::new(), Vec::new()];
        for _ in 0..ROUNDS {
            let lat = round(&path, way)?;
            for (f, p) in figures.iter_mut().zip([0.5, 0.9, 0.99]) {
                f.push(pct(&lat, p));
            }
        }
        let [p50, p90, p99] = figures.map(median);
        println!("| {name} | {p50:.0} | {p90:.0} | {p99:.0} |");
    }
    std::fs::remove_file(&path)
}
