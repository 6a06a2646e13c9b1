//! [`FileStore::open`]: rebuilding the in-memory state from disk after a clean close or a crash.
//!
//! 1. Open sled (`index.sled/`); if it will not open it is deleted and recreated. Read the
//!    checkpoint and the sealed-segment catalogue. They are trusted only if the checkpoint
//!    carries this directory's identity (`STREAM_ID`, created with the stream and removed first
//!    by `delete_all`); otherwise sled is cleared and everything is rebuilt from the segments
//!    (`index_rebuilt`). A trusted sled is used fact by fact: it only ever records deletions
//!    that were already durable in the log, so its per-segment deletion bitmaps, floor and
//!    last_seq always apply — damage to a segment does not throw away what sled knows.
//! 2. Every segment but the newest is sealed: load its `.idx` (offsets, subjects, sizes, times,
//!    tombstones, floor) if it is valid and matches the log's length — no log read. Without a
//!    valid `.idx` the log is scanned and the `.idx` rewritten. A segment's subjects are each
//!    looked up once, in batches, in a subject table sized from sled's subject count.
//! 3. The newest segment is the active one: scan it record by record, verifying CRCs. Damaged
//!    records followed by valid ones are skipped (resynchronising on the next magic whose record
//!    checks out), logged and reported; their sequences are lost, never served. Undecodable
//!    bytes at the end are a torn write: the file is cut there. This scan is the only log read
//!    in a normal open, so recovery time follows the unindexed tail.
//! 4. Deletions are the union of every tombstone/purge record (from `.idx`, the scan and `.del`
//!    files) and a trusted sled's bitmaps and floor: the logs cover a stale sled (its
//!    checkpoint may lag, as sled 0.34's flush is no fsync), sled covers a damaged tombstone.
//! 5. `last_seq` is the highest of the logs, the tombstones, the floor and sled's checkpoint, so
//!    a lost tail never lets a sequence be handed out twice; sequences the checkpoint knew but
//!    the log lost are reported lost. If the active segment does not end at `last_seq` a fresh
//!    one is started. The active segment is fsynced, dead segments unlinked, and a new
//!    checkpoint written (catalogue entries for segments sled did not know or that changed).
//!
//! A directory is locked (`LOCK`) while open, so a busy sled is never mistaken for a damaged
//! one. Nothing read from disk is trusted before its CRC and bounds check out, so damage
//! produces reports, never panics.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rustc_hash::FxHashMap;

use super::dirlock::DirLock;
use super::file::{FileStore, FileStoreOptions, SegMeta};
use super::index::Index;
use super::meta::{self, MetaDb};
use super::record::{self, Kind, Scanned};
use super::segment::{fsync_dir, list_segments, seg_file, ActiveWriter, Readers};
use super::sidecar::{self, IdxEntry, SegImage, ABSENT};
use super::subject_index::SubjectKey;
use super::{RecoveryReport, StoreError};

/// Largest segment size accepted (offsets are 32-bit).
const MAX_SEGMENT: u64 = 1 << 30;
/// A segment subject not yet resolved to an index subject id.
const NO_ID: u32 = u32::MAX;
/// Messages indexed per batch of first lookups (see `index_image`).
const LOOKUP_BATCH: usize = 16;
/// Lost sequences listed individually in a report (the rest are only counted in the log).
const LOST_DETAIL: usize = 100_000;

/// State rebuilt by [`load`].
#[derive(Default)]
struct Recovered {
    index: Index,
    segs: BTreeMap<u64, SegMeta>,
    last_seq: u64,
    last_time: i64,
    floor: u64,
    /// The highest applied index any segment records.
    applied: u64,
    active_len: u64,
    /// Sealed segments whose catalogue entry must be (re)written.
    dirty: BTreeSet<u64>,
    idx_written: bool,
}

impl FileStore {
    /// Opens (creating if needed) the store in `dir` and recovers it. See the module docs.
    pub fn open(
        dir: &Path,
        opts: FileStoreOptions,
    ) -> Result<(FileStore, RecoveryReport), StoreError> {
        let mut opts = opts;
        opts.segment_bytes = opts.segment_bytes.clamp(1, MAX_SEGMENT);
        let seg_dir = dir.join("segments");
        fs::create_dir_all(&seg_dir)?;
        let lock = DirLock::take(dir, opts.shared_index.is_some())?;
        let (stream_id, fresh_id) = read_or_create_id(dir)?;
        let meta = match &opts.shared_index {
            Some(db) => shared_meta(db, dir, stream_id),
            None => open_meta(&dir.join("index.sled"), opts.index_cache_bytes),
        };
        let names = list_segments(&seg_dir)?;

        let loaded = match meta.as_ref().map(MetaDb::load).transpose() {
            Ok(loaded) => loaded.flatten(),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "sled index unreadable");
                None
            }
        };
        let had_checkpoint = loaded.is_some();
        let catalog = loaded.filter(|l| !fresh_id && l.checkpoint.stream_id == stream_id);
        let rebuilt = catalog.is_none() && (had_checkpoint || !names.is_empty());
        if rebuilt {
            tracing::warn!(dir = %dir.display(), "rebuilding the stream index from its segments");
            if let Some(Err(e)) = meta.as_ref().map(MetaDb::clear) {
                tracing::warn!(error = %e, "could not clear the sled index");
            }
        }
        let mut report = RecoveryReport {
            index_rebuilt: rebuilt,
            ..RecoveryReport::default()
        };
        let mut rec = load(&seg_dir, &names, catalog.as_ref(), &mut report)?;

        let active = match names.last() {
            Some(&first) => ActiveWriter::reopen(&seg_dir, first, rec.active_len)?,
            None => {
                let first = rec.last_seq + 1;
                rec.segs.insert(first, SegMeta::new(first));
                ActiveWriter::create(&seg_dir, first)?
            }
        };
        if rec.idx_written || names.is_empty() {
            fsync_dir(&seg_dir)?;
        }
        let uncatalog = catalog
            .as_ref()
            .map(|l| {
                l.segments
                    .keys()
                    .filter(|f| !rec.segs.contains_key(f))
                    .copied()
                    .collect()
            })
            .unwrap_or_default();
        let mut store = FileStore {
            dir: dir.to_path_buf(),
            seg_dir,
            opts,
            index: rec.index,
            segs: rec.segs,
            active,
            readers: Readers::default(),
            meta,
            last_seq: rec.last_seq,
            last_time: rec.last_time,
            floor: rec.floor,
            applied: rec.applied,
            applied_written: rec.applied,
            dirty: rec.dirty,
            uncatalog,
            doomed: BTreeSet::new(),
            corrupt: Mutex::new(Vec::new()),
            poisoned: None,
            stream_id,
            _lock: lock,
        };
        if let Err(e) = store.active.sync() {
            return Err(store.poison(e));
        }
        let active_last = store.segs.get(&store.active.first).map(|s| s.last);
        if active_last != Some(store.last_seq) {
            // The active log does not end at last_seq (lost tail, purge past the end): new
            // appends must start a segment named after their sequence.
            store.roll_to(store.last_seq + 1)?;
        }
        store.doomed = store
            .segs
            .iter()
            .filter(|(&f, s)| s.live == 0 && f != store.active.first)
            .map(|(&f, _)| f)
            .collect();
        store.unlink_doomed()?;
        store.write_checkpoint();
        Ok((store, report))
    }
}

/// This store's tree in a shared sled (named after its identity, so a recreated directory
/// never reads an old tree); a stream's own `index.sled/` from before is removed.
fn shared_meta(db: &sled::Db, dir: &Path, stream_id: u64) -> Option<MetaDb> {
    let own = dir.join("index.sled");
    if own.exists() {
        let _ = fs::remove_dir_all(&own);
    }
    MetaDb::in_shared(db, &format!("{stream_id:016x}"))
        .map_err(|e| tracing::warn!(error = %e, "running without a sled index"))
        .ok()
}

/// Opens sled, recreating it once if it is damaged; `None` if even that fails.
fn open_meta(path: &Path, cache_bytes: u64) -> Option<MetaDb> {
    match MetaDb::open(path, cache_bytes) {
        Ok(db) => Some(db),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "sled index damaged; recreating");
            let _ = fs::remove_dir_all(path);
            MetaDb::open(path, cache_bytes)
                .map_err(|e| tracing::error!(error = %e, "running without a sled index"))
                .ok()
        }
    }
}

/// The directory's identity, creating it (durably) if missing or unreadable; the flag says
/// it is new, in which case no existing sled can be trusted.
fn read_or_create_id(dir: &Path) -> Result<(u64, bool), StoreError> {
    let path = dir.join("STREAM_ID");
    if let Ok(text) = fs::read_to_string(&path) {
        if let Ok(id) = u64::from_str_radix(text.trim(), 16) {
            return Ok((id, false));
        }
    }
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    if let Ok(now) = SystemTime::now().duration_since(UNIX_EPOCH) {
        hasher.write_u128(now.as_nanos());
    }
    let id = hasher.finish();
    let tmp = dir.join("STREAM_ID.tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(format!("{id:016x}\n").as_bytes())?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, &path)?;
    fsync_dir(dir)?;
    Ok((id, true))
}

/// Rebuilds the index and segment table from the files (see the module docs).
fn load(
    seg_dir: &Path,
    names: &[u64],
    catalog: Option<&meta::Loaded>,
    report: &mut RecoveryReport,
) -> Result<Recovered, StoreError> {
    let cp = catalog.map(|l| l.checkpoint.clone()).unwrap_or_default();
    let mut rec = Recovered {
        floor: cp.floor,
        ..Recovered::default()
    };
    // Size the subject table once, from the checkpoint's count, trusted only as far as the
    // logs have room for that many messages.
    if let Some(l) = catalog.filter(|l| l.subjects > 0) {
        let log_len = |&f: &u64| fs::metadata(seg_file(seg_dir, f, "log")).map_or(0, |m| m.len());
        let room: u64 = names.iter().map(log_len).sum::<u64>() / record::OVERHEAD as u64;
        rec.index
            .reserve_subjects(usize::try_from(l.subjects.min(room)).unwrap_or(usize::MAX));
    }
    let mut tombs = Vec::new();
    let mut log_last = 0u64;
    let mut last_msg_time = i64::MIN;
    let mut marker_time = i64::MIN;
    // Sidecars are read into one reused buffer and image (saving page faults on big ones).
    let (mut buf, mut spare, mut scanned) = (Vec::new(), SegImage::default(), None);
    for (i, &first) in names.iter().enumerate() {
        let is_active = i + 1 == names.len();
        let log_path = seg_file(seg_dir, first, "log");
        let from_idx = !is_active && read_valid_idx(seg_dir, first, &mut buf, &mut spare);
        let (image, sealed) = if from_idx {
            report.segments_from_sidecar += 1;
            (&mut spare, true)
        } else {
            let image = scanned.insert(scan_segment(&log_path, first, is_active, report)?);
            report.segments_scanned += 1;
            let mut sealed = false;
            if !is_active {
                match sidecar::write_idx(&seg_file(seg_dir, first, "idx"), image) {
                    Ok(()) => (sealed, rec.idx_written) = (true, true),
                    Err(e) => {
                        tracing::warn!(segment = first, error = %e, "could not write .idx")
                    }
                }
            }
            (image, sealed)
        };
        if let Some(time) = index_image(&mut rec.index, image) {
            last_msg_time = time;
        }
        // A trusted bitmap is a set of sequences known deleted: it applies by sequence even if
        // the segment's file changed; the entry is rewritten if it no longer describes it.
        let cat = catalog.and_then(|l| l.segments.get(&first));
        if let Some(cat) = cat {
            for k in 0..=cat.last.saturating_sub(first) {
                if cat.is_dead(k) {
                    rec.index.remove(first + k);
                }
            }
        }
        if sealed && !cat.is_some_and(|c| c.last == image.last() && c.log_len == image.log_len) {
            rec.dirty.insert(first);
        }
        tombs.extend_from_slice(&image.tombs);
        rec.floor = rec.floor.max(image.floor);
        rec.applied = rec.applied.max(image.applied);
        marker_time = marker_time.max(image.marker_time);
        log_last = log_last.max(first - 1).max(image.last());
        if is_active {
            rec.active_len = image.log_len;
        }
        rec.segs.insert(
            first,
            SegMeta {
                first,
                last: image.last(),
                live: 0,
                sealed,
                log_len: image.log_len,
                tombs: std::mem::take(&mut image.tombs),
                floor: image.floor,
                marker_time: image.marker_time,
                applied: image.applied,
            },
        );
    }
    for &first in names {
        for (kind, seq, time) in sidecar::read_del(&seg_file(seg_dir, first, "del"))? {
            match kind {
                Kind::Tombstone => tombs.push(seq),
                Kind::Purge => {
                    rec.floor = rec.floor.max(seq);
                    marker_time = marker_time.max(time);
                }
                Kind::Msg | Kind::Applied => {}
            }
        }
    }
    // Deletions from the logs; segments they change need a fresh catalogue entry.
    let seg_of =
        |segs: &BTreeMap<u64, SegMeta>, seq: u64| segs.range(..=seq).next_back().map(|(&f, _)| f);
    for &t in &tombs {
        log_last = log_last.max(t);
        if rec.index.remove(t).is_some() {
            if let Some(f) = seg_of(&rec.segs, t) {
                rec.dirty.insert(f);
            }
        }
    }
    if rec.floor > 0 {
        log_last = log_last.max(rec.floor - 1);
        let mut touched = BTreeSet::new();
        rec.index.remove_below(rec.floor, |seq, _| {
            touched.extend(seg_of(&rec.segs, seq));
        });
        rec.dirty.extend(touched);
    }
    rec.dirty
        .retain(|f| rec.segs.get(f).is_some_and(|s| s.sealed));
    for seg in rec.segs.values_mut() {
        seg.live = rec.index.count_range(seg.first, seg.last);
    }
    if cp.last_seq > log_last {
        tracing::error!(
            from = log_last + 1,
            to = cp.last_seq,
            "messages the index knew are missing from the log"
        );
        report
            .lost_seqs
            .extend((log_last + 1..=cp.last_seq).take(LOST_DETAIL));
    }
    rec.last_seq = log_last.max(cp.last_seq);
    rec.last_time = cp.last_time.max(last_msg_time).max(marker_time).max(0);
    Ok(rec)
}

/// Adds a segment's messages to the index; returns the time of the last one. Each of the
/// segment's subjects is hashed once and looked up by name once, then reused by id; the first
/// lookups are made a batch at a time with their table slots loaded up front.
fn index_image(index: &mut Index, image: &SegImage) -> Option<i64> {
    let keys: Vec<SubjectKey> = (0..image.subject_count() as u32)
        .map(|i| SubjectKey::new(image.subject(i).unwrap_or_default()))
        .collect();
    let mut ids = vec![NO_ID; keys.len()];
    let (mut seq, mut last_time) = (image.first, None);
    for batch in image.entries.chunks(LOOKUP_BATCH) {
        for e in batch.iter().filter(|e| e.offset != ABSENT) {
            if ids.get(e.subject as usize) == Some(&NO_ID) {
                index.subjects().warm(&keys[e.subject as usize]);
            }
        }
        for e in batch {
            let (at, s) = (seq, e.subject as usize);
            seq += 1;
            if e.offset == ABSENT || s >= ids.len() {
                continue;
            }
            if ids[s] == NO_ID || !index.insert_as(at, ids[s], e.size, e.offset, e.time) {
                ids[s] = index.insert_key(at, keys[s], e.size, e.offset, e.time);
            }
            last_time = Some(e.time);
        }
    }
    last_time
}

/// Reads the segment's `.idx` into `image`; true if it is present, valid and describes the
/// log as it is.
fn read_valid_idx(seg_dir: &Path, first: u64, buf: &mut Vec<u8>, image: &mut SegImage) -> bool {
    let Ok(meta) = fs::metadata(seg_file(seg_dir, first, "log")) else {
        return false;
    };
    match sidecar::read_idx_into(&seg_file(seg_dir, first, "idx"), first, buf, image) {
        Ok(valid) => valid && image.log_len == meta.len(),
        Err(e) => {
            tracing::warn!(segment = first, error = %e, "unreadable .idx; scanning the log");
            false
        }
    }
}

/// Reads a segment's log record by record. Cuts a torn tail off the active segment; reports
/// damage elsewhere.
fn scan_segment(
    path: &Path,
    first: u64,
    is_active: bool,
    report: &mut RecoveryReport,
) -> Result<SegImage, StoreError> {
    let bytes = fs::read(path)?;
    let mut image = SegImage::new(first, 0);
    let mut subjects: FxHashMap<&str, u32> = FxHashMap::default();
    let mut records = 0u64;
    let mut damaged = Vec::new();
    let mut lost = Vec::new();
    let end = record::scan(&bytes, |item| match item {
        Scanned::Record(at, rec) => {
            records += 1;
            match rec.kind {
                Kind::Tombstone => image.tombs.push(rec.seq),
                Kind::Purge => {
                    image.floor = image.floor.max(rec.seq);
                    image.marker_time = image.marker_time.max(rec.time);
                }
                Kind::Applied => image.applied = image.applied.max(rec.seq),
                Kind::Msg => {
                    let next = first + image.entries.len() as u64;
                    // Sequences run consecutively from the segment's name; a gap can only come
                    // from damaged records, each at least OVERHEAD bytes.
                    let plausible = rec.seq >= next
                        && rec.seq - next <= at / record::OVERHEAD as u64
                        && at <= u64::from(u32::MAX - 1);
                    let subject = std::str::from_utf8(rec.subject).ok();
                    let (Some(subject), true) = (subject, plausible) else {
                        damaged.push((at, rec.len as u64));
                        return;
                    };
                    for seq in next..rec.seq {
                        lost.push(seq);
                        image.entries.push(IdxEntry {
                            offset: ABSENT,
                            subject: 0,
                            size: 0,
                            time: 0,
                        });
                    }
                    let id = *subjects
                        .entry(subject)
                        .or_insert_with(|| image.push_subject(subject));
                    image.entries.push(IdxEntry {
                        offset: at as u32,
                        subject: id,
                        size: rec.len as u32,
                        time: rec.time,
                    });
                }
            }
        }
        Scanned::Damaged(at, len) => damaged.push((at, len)),
    });
    image.log_len = bytes.len() as u64;
    // Past the last byte written, the active segment holds preallocated zeros (segment.rs):
    // not data, not damage. Sealed segments are trimmed, so zeros at their end are lost records.
    let written = bytes.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    if is_active && written <= end {
        image.log_len = end as u64;
    } else if end < bytes.len() {
        if is_active {
            let cut = (written - end) as u64;
            tracing::warn!(
                segment = first,
                offset = end,
                bytes = cut,
                "cutting a torn tail"
            );
            report.truncated_bytes += cut;
            image.log_len = end as u64;
        } else {
            damaged.push((end as u64, (bytes.len() - end) as u64));
        }
    }
    for &(at, len) in &damaged {
        tracing::error!(
            segment = first,
            offset = at,
            bytes = len,
            "corrupt record skipped"
        );
        report.corrupt_records.push((first, at));
    }
    let room = LOST_DETAIL.saturating_sub(report.lost_seqs.len());
    report.lost_seqs.extend(lost.into_iter().take(room));
    report.replayed_records += records;
    Ok(image)
}
