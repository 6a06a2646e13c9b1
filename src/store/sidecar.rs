//! Per-segment sidecar files.
//!
//! `<first>.idx` is written and fsynced when a segment seals. It holds, for every sequence of
//! the segment, the record's offset, subject, size and time, plus the tombstones and purge floor
//! the segment's log contains. With it, reopening never rescans a sealed segment and the index
//! can be rebuilt without sled. Layout: `"CWIX"`, version (u32 LE), payload length (u64 LE),
//! CRC32 of the payload (u32 LE), payload (bincode 1.3, fixed-width little-endian integers).
//!
//! `<first>.del` holds deletion facts about segment `<first>` that were recorded in the log of
//! a later segment that has since been unlinked (see `FileStore` reclaim). It is a sequence of
//! tombstone/purge records in the normal record format, appended and fsynced.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use bincode::Options;
use serde::{Deserialize, Serialize};

use super::record::{self, Kind, Scanned};

const IDX_MAGIC: [u8; 4] = *b"CWIX";
const IDX_VERSION: u32 = 1;
const IDX_HEADER: usize = 20;
/// Offset of an entry whose sequence has no readable record (deleted before sealing, or lost).
pub(crate) const ABSENT: u32 = u32::MAX;

/// One sequence of a sealed segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct IdxEntry {
    /// Byte offset of the record, or [`ABSENT`].
    pub(crate) offset: u32,
    /// Index into [`SegImage::subjects`].
    pub(crate) subject: u32,
    /// Record length.
    pub(crate) size: u32,
    /// Message time.
    pub(crate) time: i64,
}

/// Everything the store needs to know about one segment without reading its log: the content
/// of an `.idx` file, or what a scan of the log found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SegImage {
    /// First sequence (the file name).
    pub(crate) first: u64,
    /// Length of the log file this describes.
    pub(crate) log_len: u64,
    /// Subjects used by the entries.
    pub(crate) subjects: Vec<String>,
    /// One entry per sequence from `first`.
    pub(crate) entries: Vec<IdxEntry>,
    /// Sequences deleted by tombstones in this segment's log.
    pub(crate) tombs: Vec<u64>,
    /// Highest purge floor recorded in this segment's log (0 if none).
    pub(crate) floor: u64,
    /// Highest time carried by a purge record (the stream's last_time at the purge).
    pub(crate) marker_time: i64,
}

impl SegImage {
    /// The last sequence covered (`first - 1` if none).
    pub(crate) fn last(&self) -> u64 {
        self.first + self.entries.len() as u64 - 1
    }

    /// Checks that every entry points inside the log and at a known subject.
    pub(crate) fn is_coherent(&self) -> bool {
        self.first > 0
            && self.entries.iter().all(|e| {
                e.offset == ABSENT
                    || ((e.subject as usize) < self.subjects.len()
                        && u64::from(e.offset) + u64::from(e.size) <= self.log_len
                        && e.size as usize >= record::OVERHEAD)
            })
    }
}

fn codec() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
}

/// Writes `<path>` atomically (temp file, fsync, rename). The caller fsyncs the directory.
pub(crate) fn write_idx(path: &Path, image: &SegImage) -> io::Result<()> {
    let payload = codec()
        .serialize(image)
        .map_err(|e| io::Error::other(e.to_string()))?;
    let mut out = Vec::with_capacity(IDX_HEADER + payload.len());
    out.extend_from_slice(&IDX_MAGIC);
    out.extend_from_slice(&IDX_VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    let tmp = path.with_extension("idx.tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(&out)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)
}

/// Reads an `.idx` file; `Ok(None)` if it is missing, damaged or not for this segment.
pub(crate) fn read_idx(path: &Path, first: u64) -> io::Result<Option<SegImage>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if bytes.len() < IDX_HEADER || bytes[..4] != IDX_MAGIC {
        return Ok(None);
    }
    let word =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[8..16]);
    let payload = &bytes[IDX_HEADER..];
    if word(4) != IDX_VERSION
        || u64::from_le_bytes(len) != payload.len() as u64
        || crc32fast::hash(payload) != word(16)
    {
        return Ok(None);
    }
    let image: SegImage = match codec()
        .with_limit(payload.len() as u64)
        .deserialize(payload)
    {
        Ok(image) => image,
        Err(_) => return Ok(None),
    };
    Ok((image.first == first && image.is_coherent()).then_some(image))
}

/// Appends deletion facts `(kind, seq, time)` to a `.del` file and fsyncs it. Returns true if
/// the file was created (the caller then fsyncs the directory).
pub(crate) fn append_del(path: &Path, facts: &[(Kind, u64, i64)]) -> io::Result<bool> {
    let created = !path.exists();
    let mut buf = Vec::with_capacity(facts.len() * record::OVERHEAD);
    for &(kind, seq, time) in facts {
        record::encode_marker(&mut buf, kind, seq, time);
    }
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    file.write_all(&buf)?;
    file.sync_data()?;
    Ok(created)
}

/// Reads the deletion facts of a `.del` file (none if it does not exist).
pub(crate) fn read_del(path: &Path) -> io::Result<Vec<(Kind, u64, i64)>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut facts = Vec::new();
    record::scan(&bytes, |s| {
        if let Scanned::Record(_, rec) = s {
            if rec.kind != Kind::Msg {
                facts.push((rec.kind, rec.seq, rec.time));
            }
        }
    });
    Ok(facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idx_round_trip_and_rejects_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.idx");
        let image = SegImage {
            first: 5,
            log_len: 1000,
            subjects: vec!["a".into()],
            entries: vec![
                IdxEntry {
                    offset: 0,
                    subject: 0,
                    size: 50,
                    time: 1,
                },
                IdxEntry {
                    offset: ABSENT,
                    subject: 0,
                    size: 0,
                    time: 0,
                },
            ],
            tombs: vec![6],
            floor: 3,
            marker_time: 9,
        };
        write_idx(&path, &image).unwrap();
        assert_eq!(read_idx(&path, 5).unwrap(), Some(image.clone()));
        assert_eq!(read_idx(&path, 6).unwrap(), None);
        let mut bytes = fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 3] ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert_eq!(read_idx(&path, 5).unwrap(), None);
        assert_eq!(read_idx(&dir.path().join("nope.idx"), 5).unwrap(), None);

        let del = dir.path().join("1.del");
        assert!(append_del(&del, &[(Kind::Tombstone, 7, 0)]).unwrap());
        assert!(!append_del(&del, &[(Kind::Purge, 9, 3)]).unwrap());
        assert_eq!(
            read_del(&del).unwrap(),
            vec![(Kind::Tombstone, 7, 0), (Kind::Purge, 9, 3)]
        );
    }
}
