//! FileStore-only behaviour: reopening, crashes, torn tails, corruption, losing sled or the
//! sidecars, segment rolling and reclaiming, and a throughput measurement (`--ignored`).

use std::fs;
use std::path::{Path, PathBuf};

use super::segment::list_segments;
use super::tests::{assert_same, small_opts};
use super::*;

fn open(dir: &Path) -> (FileStore, RecoveryReport) {
    FileStore::open(dir, small_opts()).unwrap()
}

fn log_path(dir: &Path, first: u64) -> PathBuf {
    dir.join("segments").join(format!("{first:020}.log"))
}

fn segments(dir: &Path) -> Vec<u64> {
    list_segments(&dir.join("segments")).unwrap()
}

/// Appends `n` messages on subjects `k.0`..`k.4` with payload `p<seq>`.
fn fill(s: &mut FileStore, n: u64) {
    for _ in 0..n {
        let seq = s.last_seq() + 1;
        let subj = format!("k.{}", seq % 5);
        s.append(&subj, None, format!("p{seq}").as_bytes(), seq as i64)
            .unwrap();
    }
}

fn assert_intact(s: &FileStore, seqs: impl IntoIterator<Item = u64>) {
    for seq in seqs {
        let m = s
            .get(seq)
            .unwrap()
            .unwrap_or_else(|| panic!("seq {seq} missing"));
        assert_eq!(m.payload, format!("p{seq}").as_bytes());
        assert_eq!(m.subject, format!("k.{}", seq % 5));
    }
}

#[test]
fn reopen_after_clean_close_reads_only_the_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = open(dir.path());
    fill(&mut s, 500);
    s.remove(7).unwrap();
    s.remove(250).unwrap();
    s.checkpoint().unwrap();
    let before = s.state();
    let segs = segments(dir.path());
    assert!(segs.len() > 5, "expected rolling, got {segs:?}");
    drop(s);
    let (s, report) = open(dir.path());
    assert!(!report.index_rebuilt);
    assert_eq!(report.segments_scanned, 1);
    assert_eq!(report.segments_from_sidecar as usize, segs.len() - 1);
    assert!(report.replayed_records < 500 / (segs.len() as u64 - 1));
    assert_eq!(s.state(), before);
    assert_eq!(s.get(7).unwrap(), None);
    assert_eq!(s.get(250).unwrap(), None);
    assert_intact(&s, (1..=500).filter(|&q| q != 7 && q != 250));
    // The checkpoint carries the subject count that sizes the subject table at open.
    drop(s);
    let meta = meta::MetaDb::open(&dir.path().join("index.sled"), 1 << 20).unwrap();
    assert_eq!(meta.load().unwrap().map(|l| l.subjects), Some(5));
}

#[test]
fn crash_keeps_synced_work_and_loses_only_unsynced() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = open(dir.path());
    fill(&mut s, 100);
    s.remove(3).unwrap();
    s.remove(99).unwrap();
    s.sync().unwrap();
    let synced = s.state();
    // Still in the write buffer (below write_buffer_bytes), never synced.
    s.append("late", None, b"x", 1).unwrap();
    assert_eq!(s.get(101).unwrap().unwrap().subject, "late");
    drop(s);
    let (mut s, report) = open(dir.path());
    assert_eq!(report.truncated_bytes, 0);
    assert_eq!(s.state(), synced);
    assert_eq!(s.get(3).unwrap(), None);
    assert_intact(&s, (4..=98).chain([100]));
    assert_eq!(s.append("next", None, b"", 2).unwrap(), 101);
}

#[test]
fn torn_tail_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = open(dir.path());
    fill(&mut s, 40);
    s.sync().unwrap();
    // The records end here; the file goes on with preallocated zeros.
    let len = s.active.len();
    drop(s);
    let last = *segments(dir.path()).last().unwrap();
    let file = fs::OpenOptions::new()
        .write(true)
        .open(log_path(dir.path(), last))
        .unwrap();
    assert!(file.metadata().unwrap().len() > len, "preallocated");
    file.set_len(len - 3).unwrap();
    drop(file);
    let (mut s, report) = open(dir.path());
    let cut = (record::msg_len("k.0", None, b"p40") - 3) as u64;
    assert_eq!(report.truncated_bytes, cut);
    assert!(report.corrupt_records.is_empty());
    assert_eq!(s.get(40).unwrap(), None);
    assert_intact(&s, 1..=39);
    assert_eq!(s.state().last_seq, 39);
    assert_eq!(
        fs::metadata(log_path(dir.path(), last)).unwrap().len(),
        len - 3 - cut
    );
    assert_eq!(s.append("k.0", None, b"p40", 40).unwrap(), 40);
    assert_intact(&s, 1..=40);
}

#[test]
fn torn_tail_after_checkpoint_never_reuses_the_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = open(dir.path());
    fill(&mut s, 40);
    s.checkpoint().unwrap();
    drop(s);
    let last = *segments(dir.path()).last().unwrap();
    let path = log_path(dir.path(), last);
    let len = fs::metadata(&path).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let (mut s, report) = open(dir.path());
    assert!(report.truncated_bytes > 0);
    assert_eq!(report.lost_seqs, vec![40]);
    assert_intact(&s, 1..=39);
    assert_eq!(s.append("k.1", None, b"p41", 41).unwrap(), 41);
    s.sync().unwrap();
    drop(s);
    let (s, _) = open(dir.path());
    assert_intact(&s, (1..=39).chain([41]));
}

#[test]
fn corruption_in_the_active_segment_is_skipped_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let opts = FileStoreOptions::default(); // one big segment
    let (mut s, _) = FileStore::open(dir.path(), opts.clone()).unwrap();
    fill(&mut s, 20);
    s.sync().unwrap();
    let victim = s.index.get(10).unwrap().aux as usize;
    drop(s);
    let path = log_path(dir.path(), 1);
    let mut bytes = fs::read(&path).unwrap();
    bytes[victim + record::HEADER + 4] ^= 0x40; // inside seq 10's payload
    fs::write(&path, &bytes).unwrap();
    let (s, report) = FileStore::open(dir.path(), opts).unwrap();
    assert_eq!(report.corrupt_records, vec![(1, victim as u64)]);
    assert_eq!(report.lost_seqs, vec![10]);
    assert_eq!(report.truncated_bytes, 0);
    assert_eq!(s.get(10).unwrap(), None);
    assert_intact(&s, (1..=9).chain(11..=20));
    let st = s.state();
    assert_eq!((st.msgs, st.last_seq, st.num_deleted), (19, 20, 1));
}

#[test]
fn corruption_in_a_sealed_segment_is_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = open(dir.path());
    fill(&mut s, 200);
    s.checkpoint().unwrap();
    let offsets: Vec<usize> = [5, 6, 30]
        .iter()
        .map(|&q| s.index.get(q).unwrap().aux as usize)
        .collect();
    drop(s);
    let first_segs = segments(dir.path());
    for (seq, off) in [5u64, 6, 30].iter().zip(&offsets) {
        let seg = *first_segs.iter().rfind(|&&f| f <= *seq).unwrap();
        let path = log_path(dir.path(), seg);
        let mut bytes = fs::read(&path).unwrap();
        bytes[off + record::HEADER + 2] ^= 0x01;
        fs::write(&path, &bytes).unwrap();
    }
    let (mut s, report) = open(dir.path());
    assert_eq!(
        report.replayed_records,
        s.segs.values().last().map_or(0, |a| a.live)
    );
    assert!(matches!(s.get(5), Err(StoreError::Corrupt { .. })));
    assert_intact(&s, (1..=4).chain(7..=29).chain(31..=200));
    // verify() finds the rest; afterwards they are lost, durably.
    assert_eq!(s.verify().unwrap().len(), 2);
    s.sync().unwrap();
    assert_eq!(s.state().msgs, 197);
    assert_eq!(s.get(5).unwrap(), None);
    drop(s);
    let (s, _) = open(dir.path());
    assert_eq!(s.state().msgs, 197);
    assert_eq!(s.get(6).unwrap(), None);
}

/// Appends until the store has `n` segment files.
fn fill_until_segments(s: &mut FileStore, dir: &Path, n: usize) {
    while segments(dir).len() < n {
        fill(s, 1);
        s.sync().unwrap();
    }
}

/// Builds a store whose deletions of segment A's messages were recorded (a tombstone and a
/// purge floor) in segment B, which then died and was unlinked: the facts must survive in
/// A's `.del` file. Plus ordinary deletions in the active segment.
fn build_with_history(dir: &Path) -> FileStore {
    let (mut s, _) = open(dir);
    fill_until_segments(&mut s, dir, 2);
    s.remove(2).unwrap();
    s.purge(None, Some(4), None).unwrap();
    fill_until_segments(&mut s, dir, 3);
    fill(&mut s, 30);
    let segs = segments(dir);
    for seq in segs[1]..segs[2] {
        s.remove(seq).unwrap();
    }
    let last = s.last_seq();
    s.remove(last - 3).unwrap();
    s.sync().unwrap();
    assert!(
        !segments(dir).contains(&segs[1]),
        "dead segment still on disk"
    );
    assert!(dir
        .join("segments")
        .join(format!("{:020}.del", segs[0]))
        .exists());
    assert_eq!(s.first_seq(), 4);
    s
}

#[test]
fn losing_sled_rebuilds_from_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = build_with_history(dir.path());
    s.checkpoint().unwrap();
    let model = clone_into_mem(&s);
    drop(s);
    fs::remove_dir_all(dir.path().join("index.sled")).unwrap();
    let (s, report) = open(dir.path());
    assert!(report.index_rebuilt);
    assert_eq!(report.segments_scanned, 1);
    assert_same(&s, &model);
    drop(s);
    // And without the .idx sidecars either: every log is rescanned.
    fs::remove_dir_all(dir.path().join("index.sled")).unwrap();
    for f in fs::read_dir(dir.path().join("segments")).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|e| e == "idx") {
            fs::remove_file(p).unwrap();
        }
    }
    let (s, report) = open(dir.path());
    assert!(report.index_rebuilt);
    assert_eq!(report.segments_scanned as usize, segments(dir.path()).len());
    assert_same(&s, &model);
    // A garbage sled directory is replaced, too.
    drop(s);
    fs::remove_dir_all(dir.path().join("index.sled")).unwrap();
    fs::create_dir(dir.path().join("index.sled")).unwrap();
    fs::write(dir.path().join("index.sled").join("db"), b"not a database").unwrap();
    let (s, report) = open(dir.path());
    assert!(report.index_rebuilt);
    assert_same(&s, &model);
}

fn clone_into_mem(s: &FileStore) -> MemStore {
    let st = s.state();
    let mut m = MemStore::new();
    m.set_first_seq(st.first_seq).unwrap();
    for seq in st.first_seq..=st.last_seq {
        match s.get(seq).unwrap() {
            Some(msg) => {
                m.append(&msg.subject, msg.headers.as_deref(), &msg.payload, msg.time)
                    .unwrap();
            }
            None => {
                m.append("gap", None, b"", 0).unwrap();
                m.remove(seq).unwrap();
            }
        }
    }
    m
}

#[test]
fn segments_roll_and_dead_ones_are_unlinked() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = open(dir.path());
    fill(&mut s, 120);
    s.sync().unwrap();
    let segs = segments(dir.path());
    assert!(segs.len() >= 3);
    assert_eq!(segs[0], 1);
    for w in segs.windows(2) {
        assert!(dir
            .path()
            .join("segments")
            .join(format!("{:020}.idx", w[0]))
            .exists());
        let last_in_first = s.segs[&w[0]].last;
        assert_eq!(w[1], last_in_first + 1);
    }
    for seq in segs[1]..segs[2] {
        s.remove(seq).unwrap();
    }
    assert!(log_path(dir.path(), segs[1]).exists());
    s.sync().unwrap();
    assert!(!log_path(dir.path(), segs[1]).exists());
    assert!(!dir
        .path()
        .join("segments")
        .join(format!("{:020}.idx", segs[1]))
        .exists());
    assert_intact(&s, (1..segs[1]).chain(segs[2]..=120));
    drop(s);
    let (s, report) = open(dir.path());
    assert!(!report.index_rebuilt);
    assert_eq!(s.state().msgs, 120 - (segs[2] - segs[1]));
}

/// A sync begun before more appends and removals (the runner applies the next batch while the
/// previous one is in `fdatasync`) covers only what came before it: it reports that sequence
/// as durable, leaves the store unsynced for the rest, and does not unlink a segment emptied by
/// removals written after it began (their tombstones are not on disk yet).
#[test]
fn a_sync_in_flight_covers_only_what_came_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = open(dir.path());
    fill(&mut s, 120);
    s.sync().unwrap();
    let segs = segments(dir.path());
    assert!(segs.len() >= 3);
    fill(&mut s, 1);
    let pending = s.begin_sync().unwrap();
    assert!(pending.needs_wait());
    assert_eq!(pending.seq(), 121);
    let wait = pending.waiter();
    let synced = std::thread::spawn(wait).join().unwrap();
    // Meanwhile: more appends, and removals that empty the second segment.
    fill(&mut s, 1);
    for seq in segs[1]..segs[2] {
        s.remove(seq).unwrap();
    }
    assert_eq!(s.end_sync(pending, synced).unwrap(), 121);
    assert!(
        log_path(dir.path(), segs[1]).exists(),
        "a segment emptied after the sync began was unlinked by it"
    );
    assert!(
        s.active.begin_sync().unwrap().0.is_some(),
        "what came after is unsynced"
    );
    let pending = s.begin_sync().unwrap();
    assert_eq!(pending.seq(), 122);
    let synced = pending.wait();
    assert_eq!(s.end_sync(pending, synced).unwrap(), 122);
    assert!(!log_path(dir.path(), segs[1]).exists());
    assert!(s.active.begin_sync().unwrap().0.is_none());
    drop(s);
    let (s, _) = open(dir.path());
    assert_eq!(s.last_seq(), 122);
    assert_intact(&s, (1..segs[1]).chain(segs[2]..=122));
}

/// The applied index is recorded in the log with the sync after it is marked: it survives
/// reopening (also when the segments that recorded it were unlinked, and without sled or the
/// sidecars), and a mark that no sync covered is gone after a crash, like the changes it
/// would describe.
#[test]
fn the_applied_index_is_durable_with_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = open(dir.path());
    assert_eq!(s.applied_index(), 0);
    fill(&mut s, 10);
    s.mark_applied(10);
    s.sync().unwrap();
    fill(&mut s, 1);
    s.mark_applied(11);
    drop(s); // a crash: neither the append nor the mark was synced
    let (mut s, _) = open(dir.path());
    assert_eq!(s.applied_index(), 10);
    // Through several segments: each mark goes with its sync.
    for i in 0..12u64 {
        fill(&mut s, 10);
        s.mark_applied(100 + i);
        s.sync().unwrap();
    }
    assert!(segments(dir.path()).len() >= 3);
    drop(s);
    let (mut s, _) = open(dir.path());
    assert_eq!(s.applied_index(), 111);
    // Every segment with a mark in it goes; the active one restated it when it began.
    assert!(s.purge(None, None, None).unwrap() > 0);
    s.sync().unwrap();
    drop(s);
    let (s, _) = open(dir.path());
    assert_eq!(s.applied_index(), 111);
    drop(s);
    // Without sled and the sidecars, the logs alone say it.
    fs::remove_dir_all(dir.path().join("index.sled")).unwrap();
    let (mut s, report) = open(dir.path());
    assert!(report.index_rebuilt);
    assert_eq!(s.applied_index(), 111);
    fill(&mut s, 120);
    s.mark_applied(200);
    s.checkpoint().unwrap();
    drop(s);
    for f in fs::read_dir(dir.path().join("segments")).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|e| e == "idx") {
            fs::remove_file(p).unwrap();
        }
    }
    fs::remove_dir_all(dir.path().join("index.sled")).unwrap();
    let (s, _) = open(dir.path());
    assert_eq!(s.applied_index(), 200);
}

#[test]
fn purge_all_drops_every_segment_file() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = open(dir.path());
    fill(&mut s, 150);
    s.sync().unwrap();
    assert!(segments(dir.path()).len() > 3);
    assert_eq!(s.purge(None, None, None).unwrap(), 150);
    s.sync().unwrap();
    assert_eq!(segments(dir.path()), vec![151]);
    let st = s.state();
    assert_eq!(
        (st.msgs, st.first_seq, st.last_seq, st.bytes),
        (0, 151, 150, 0)
    );
    drop(s); // crash right after the purge's sync
    let (mut s, _) = open(dir.path());
    assert_eq!(s.state(), st);
    assert_eq!(s.append("k.1", None, b"p151", 151).unwrap(), 151);
    assert_intact(&s, [151]);
}

#[test]
fn a_directory_is_opened_once() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = open(dir.path());
    assert!(matches!(
        FileStore::open(dir.path(), small_opts()),
        Err(StoreError::Invalid(_))
    ));
    assert!(dir.path().join("index.sled").exists());
    drop(s);
    let (s, report) = open(dir.path());
    assert!(!report.index_rebuilt);
    drop(s);
}

#[test]
fn delete_all_removes_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let stream = dir.path().join("stream");
    let (mut s, _) = FileStore::open(&stream, small_opts()).unwrap();
    fill(&mut s, 30);
    s.sync().unwrap();
    Box::new(s).delete_all().unwrap();
    assert!(!stream.exists());
}

/// `cargo test --release -- --ignored --nocapture throughput` prints the numbers: 100k (or
/// `STORE_BENCH_N`)
/// 128-byte appends with a sync every 100, split into time spent appending and syncing, next
/// to the raw cost of the same writes + `fdatasync` on a plain file.
#[test]
#[ignore]
fn throughput() {
    use std::io::Write;
    use std::time::Instant;
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = FileStore::open(dir.path(), FileStoreOptions::default()).unwrap();
    let payload = vec![b'x'; 128];
    let n: u64 = std::env::var("STORE_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let (mut appending, mut syncing) = (0f64, 0f64);
    for i in 0..n {
        let t = Instant::now();
        s.append("bench.subject", None, &payload, i as i64).unwrap();
        appending += t.elapsed().as_secs_f64();
        if i % 100 == 99 {
            let t = Instant::now();
            s.sync().unwrap();
            syncing += t.elapsed().as_secs_f64();
        }
    }
    let total = appending + syncing;
    println!(
        "append+sync/100: {:.0} msgs/s ({:.2} us/append, {:.3} ms/sync)",
        n as f64 / total,
        appending * 1e6 / n as f64,
        syncing * 1e3 / (n / 100) as f64
    );
    let mut raw = fs::File::create(dir.path().join("raw")).unwrap();
    let batch = vec![b'x'; 100 * record::msg_len("bench.subject", None, &payload)];
    let t = Instant::now();
    for _ in 0..n / 100 {
        raw.write_all(&batch).unwrap();
        raw.sync_data().unwrap();
    }
    println!(
        "raw write+fdatasync of the same batches: {:.3} ms/sync",
        t.elapsed().as_secs_f64() * 1e3 / (n / 100) as f64
    );
    let t = Instant::now();
    for seq in 1..=n {
        assert!(s.get(seq).unwrap().is_some());
    }
    println!("get: {:.0} msgs/s", n as f64 / t.elapsed().as_secs_f64());
    s.checkpoint().unwrap();
    drop(s);
    let t = Instant::now();
    let (_s, report) = FileStore::open(dir.path(), FileStoreOptions::default()).unwrap();
    println!(
        "reopen: {:.1} ms, replayed {} records, {} sidecars",
        t.elapsed().as_secs_f64() * 1000.0,
        report.replayed_records,
        report.segments_from_sidecar
    );
}

/// `cargo test --release -- --ignored --nocapture many_subjects_reopen` times reopening a KV
/// bucket with 1M (or `STORE_BENCH_KEYS`) keys of one 100-byte message each: the first open
/// has no subject count in sled yet, the later ones do. Also checks a few KV lookups.
#[test]
#[ignore]
fn many_subjects_reopen() {
    use std::time::Instant;
    let dir = tempfile::tempdir().unwrap();
    let keys: u64 = std::env::var("STORE_BENCH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let (mut s, _) = FileStore::open(dir.path(), FileStoreOptions::default()).unwrap();
    for i in 0..keys {
        s.append(&format!("$KV.BIG.key{i:07}"), None, &[b'v'; 100], i as i64)
            .unwrap();
        if i % 1000 == 999 {
            s.sync().unwrap();
        }
    }
    s.checkpoint().unwrap();
    drop(s);
    for _ in 0..3 {
        let t = Instant::now();
        let (s, report) = FileStore::open(dir.path(), FileStoreOptions::default()).unwrap();
        let took = t.elapsed();
        assert_eq!(s.state().num_subjects, keys);
        let last = format!("$KV.BIG.key{:07}", keys - 1);
        assert_eq!(s.last_seq_for_subject(&last), Some(keys));
        assert_eq!(s.subjects_matching(&last).len(), 1);
        println!(
            "reopen with {keys} subjects: {:.1} ms ({} sidecars, {} records replayed)",
            took.as_secs_f64() * 1000.0,
            report.segments_from_sidecar,
            report.replayed_records
        );
    }
}

#[test]
fn preallocated_space_is_neither_data_nor_damage() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = open(dir.path());
    fill(&mut s, 300);
    s.sync().unwrap();
    let active_len = s.active.len();
    drop(s); // a crash: the active log keeps its preallocated zeros
    let segs = segments(dir.path());
    assert!(segs.len() > 2);
    for &first in &segs[..segs.len() - 1] {
        // Sealed logs were cut to their records: a scan reads every byte as a record.
        let bytes = fs::read(log_path(dir.path(), first)).unwrap();
        assert_eq!(record::scan(&bytes, |_| {}), bytes.len(), "segment {first}");
    }
    let last = log_path(dir.path(), *segs.last().unwrap());
    assert!(fs::metadata(&last).unwrap().len() > active_len);
    let (mut s, report) = open(dir.path());
    assert_eq!(report.truncated_bytes, 0);
    assert!(report.corrupt_records.is_empty() && report.lost_seqs.is_empty());
    assert_intact(&s, 1..=300);
    // More appends reuse the space; a checkpoint leaves the log exactly as long as its records.
    fill(&mut s, 5);
    s.checkpoint().unwrap();
    let len = s.active.len();
    drop(s);
    assert_eq!(fs::metadata(&last).unwrap().len(), len);
    let (s, report) = open(dir.path());
    assert_eq!(report.truncated_bytes, 0);
    assert_intact(&s, 1..=305);
}

/// Sequential reads go through one read-ahead block; it must never serve bytes of the active
/// segment written after it was read (they were preallocated zeros or unflushed then), nor
/// outlive a segment's unlinking.
#[test]
fn read_ahead_never_serves_stale_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let opts = FileStoreOptions {
        write_buffer_bytes: 1,
        ..FileStoreOptions::default()
    };
    let (mut s, _) = FileStore::open(dir.path(), opts).unwrap();
    for round in 0..5u64 {
        fill(&mut s, 40);
        s.sync().unwrap();
        // Walk everything in order (read-ahead engages), interleaved with random gets.
        let last = s.last_seq();
        assert_intact(&s, 1..=last);
        assert_intact(&s, (1..=last).rev().step_by(7));
        assert_eq!(last, 40 * (round + 1));
    }
    // A read straddling what was appended after the block was taken.
    fill(&mut s, 1);
    assert_intact(&s, 190..=201);
    s.purge(None, Some(150), None).unwrap();
    s.sync().unwrap();
    fill(&mut s, 10);
    s.sync().unwrap();
    assert_intact(&s, 150..=211);
}
