//! Per-segment sidecar files.
//!
//! `<first>.idx` is written and fsynced when a segment seals. It holds, for every sequence of
//! the segment, the record's offset, subject, size and time, plus the tombstones and purge floor
//! the segment's log contains. With it, reopening never rescans a sealed segment and the index
//! can be rebuilt without sled. Layout: `"CWIX"`, version (u32 LE), payload length (u64 LE),
//! CRC32 of the payload (u32 LE), payload. The payload is what bincode 1.3 with fixed-width
//! little-endian integers makes of [`SegImage`] (lengths as u64):
//! ```text
//! first u64, log_len u64,
//! subject count u64, then per subject: length u64, UTF-8 bytes,
//! entry count u64, then per entry: offset u32, subject u32, size u32, time i64,
//! tombstone count u64, then the tombstones u64, floor u64, marker_time i64,
//! applied u64                  (new in version 2: a file of another version is not trusted, so
//!                               its segment is scanned once and the file rewritten)
//! ```
//! It is encoded and decoded by hand, straight into the image's one-buffer subject list, so
//! loading a sidecar costs no allocation per subject.
//!
//! `<first>.del` holds deletion facts about segment `<first>` that were recorded in the log of
//! a later segment that has since been unlinked (see `FileStore` reclaim). It is a sequence of
//! tombstone/purge records in the normal record format, appended and fsynced.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

use super::record::{self, Kind, Scanned};

const IDX_MAGIC: [u8; 4] = *b"CWIX";
const IDX_VERSION: u32 = 2;
const IDX_HEADER: usize = 20;
/// Encoded size of an [`IdxEntry`].
const ENTRY_BYTES: usize = 20;
/// Offset of an entry whose sequence has no readable record (deleted before sealing, or lost).
pub(crate) const ABSENT: u32 = u32::MAX;

/// One sequence of a sealed segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IdxEntry {
    /// Byte offset of the record, or [`ABSENT`].
    pub(crate) offset: u32,
    /// Index into the image's subjects ([`SegImage::subject`]).
    pub(crate) subject: u32,
    /// Record length.
    pub(crate) size: u32,
    /// Message time.
    pub(crate) time: i64,
}

/// Everything the store needs to know about one segment without reading its log: the content
/// of an `.idx` file, or what a scan of the log found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SegImage {
    /// First sequence (the file name).
    pub(crate) first: u64,
    /// Length of the log file this describes.
    pub(crate) log_len: u64,
    /// The subjects used by the entries, back to back (see [`SegImage::subject`]).
    names: String,
    /// Where each subject ends in `names`.
    ends: Vec<usize>,
    /// One entry per sequence from `first`.
    pub(crate) entries: Vec<IdxEntry>,
    /// Sequences deleted by tombstones in this segment's log.
    pub(crate) tombs: Vec<u64>,
    /// Highest purge floor recorded in this segment's log (0 if none).
    pub(crate) floor: u64,
    /// Highest time carried by a purge record (the stream's last_time at the purge).
    pub(crate) marker_time: i64,
    /// Highest applied index recorded in this segment's log (0 if none).
    pub(crate) applied: u64,
}

impl SegImage {
    /// An image of segment `first` with nothing in it yet.
    pub(crate) fn new(first: u64, log_len: u64) -> SegImage {
        SegImage {
            first,
            log_len,
            ..SegImage::default()
        }
    }

    /// Subject `i` of the entries.
    pub(crate) fn subject(&self, i: u32) -> Option<&str> {
        let i = i as usize;
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.names.get(start..end)
    }

    /// How many subjects the entries use.
    pub(crate) fn subject_count(&self) -> usize {
        self.ends.len()
    }

    /// Adds a subject and returns its number for [`IdxEntry::subject`].
    pub(crate) fn push_subject(&mut self, name: &str) -> u32 {
        self.names.push_str(name);
        self.ends.push(self.names.len());
        (self.ends.len() - 1) as u32
    }

    /// The last sequence covered (`first - 1` if none).
    pub(crate) fn last(&self) -> u64 {
        self.first + self.entries.len() as u64 - 1
    }

    /// Checks that every entry points inside the log and at a known subject.
    pub(crate) fn is_coherent(&self) -> bool {
        self.first > 0
            && self.entries.iter().all(|e| {
                e.offset == ABSENT
                    || ((e.subject as usize) < self.ends.len()
                        && u64::from(e.offset) + u64::from(e.size) <= self.log_len
                        && e.size as usize >= record::OVERHEAD)
            })
    }
}

/// Appends the payload of an `.idx` file (see the module docs) to `out`.
fn encode(image: &SegImage, out: &mut Vec<u8>) {
    let len = 48
        + image.names.len()
        + 8 * image.ends.len()
        + ENTRY_BYTES * image.entries.len()
        + 8 * image.tombs.len();
    out.reserve(len);
    let mut put = |bytes: &[u8]| out.extend_from_slice(bytes);
    put(&image.first.to_le_bytes());
    put(&image.log_len.to_le_bytes());
    put(&(image.ends.len() as u64).to_le_bytes());
    let mut start = 0;
    for &end in &image.ends {
        put(&((end - start) as u64).to_le_bytes());
        put(&image.names.as_bytes()[start..end]);
        start = end;
    }
    put(&(image.entries.len() as u64).to_le_bytes());
    for e in &image.entries {
        put(&e.offset.to_le_bytes());
        put(&e.subject.to_le_bytes());
        put(&e.size.to_le_bytes());
        put(&e.time.to_le_bytes());
    }
    put(&(image.tombs.len() as u64).to_le_bytes());
    for t in &image.tombs {
        put(&t.to_le_bytes());
    }
    put(&image.floor.to_le_bytes());
    put(&image.marker_time.to_le_bytes());
    put(&image.applied.to_le_bytes());
}

/// Reads little-endian fields off a payload; `None` once it runs short.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }

    fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_le_bytes)
    }

    /// A count of items of at least `item` bytes each, checked against what is left.
    fn count(&mut self, item: usize) -> Option<usize> {
        let n = usize::try_from(self.u64()?).ok()?;
        (n.checked_mul(item)? <= self.0.len()).then_some(n)
    }
}

/// Writes `<path>` atomically (temp file, fsync, rename). The caller fsyncs the directory.
pub(crate) fn write_idx(path: &Path, image: &SegImage) -> io::Result<()> {
    let mut out = vec![0; IDX_HEADER];
    encode(image, &mut out);
    let payload = &out[IDX_HEADER..];
    let (len, crc) = (payload.len() as u64, crc32fast::hash(payload));
    out[..4].copy_from_slice(&IDX_MAGIC);
    out[4..8].copy_from_slice(&IDX_VERSION.to_le_bytes());
    out[8..16].copy_from_slice(&len.to_le_bytes());
    out[16..IDX_HEADER].copy_from_slice(&crc.to_le_bytes());
    let tmp = path.with_extension("idx.tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(&out)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)
}

/// Decodes a payload into `image`, reusing its memory; `None` if the payload is malformed.
fn decode_into(payload: &[u8], image: &mut SegImage) -> Option<()> {
    let mut f = Fields(payload);
    image.first = f.u64()?;
    image.log_len = f.u64()?;
    let n = f.count(8)?;
    // The names are copied back to back and checked as UTF-8 in one go; each piece is valid
    // too if the whole is and every piece ends on a character boundary.
    let mut names = std::mem::take(&mut image.names).into_bytes();
    names.clear();
    image.ends.clear();
    image.ends.reserve(n);
    for _ in 0..n {
        let len = usize::try_from(f.u64()?).ok()?;
        names.extend_from_slice(f.bytes(len)?);
        image.ends.push(names.len());
    }
    image.names = String::from_utf8(names).ok()?;
    if !image
        .ends
        .iter()
        .all(|&end| image.names.is_char_boundary(end))
    {
        return None;
    }
    let n = f.count(ENTRY_BYTES)?;
    image.entries.clear();
    image.entries.reserve(n);
    for _ in 0..n {
        image.entries.push(IdxEntry {
            offset: f.u32()?,
            subject: f.u32()?,
            size: f.u32()?,
            time: f.i64()?,
        });
    }
    let n = f.count(8)?;
    image.tombs.clear();
    image.tombs.reserve(n);
    for _ in 0..n {
        image.tombs.push(f.u64()?);
    }
    image.floor = f.u64()?;
    image.marker_time = f.i64()?;
    image.applied = f.u64()?;
    f.0.is_empty().then_some(())
}

/// Reads an `.idx` file into `image`, reusing its memory and `buf`'s; false (with `image` in
/// an unspecified state) if the file is missing, damaged or not for this segment.
pub(crate) fn read_idx_into(
    path: &Path,
    first: u64,
    buf: &mut Vec<u8>,
    image: &mut SegImage,
) -> io::Result<bool> {
    buf.clear();
    match File::open(path).and_then(|mut file| file.read_to_end(buf)) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    }
    let Some((header, payload)) = buf.split_first_chunk::<IDX_HEADER>() else {
        return Ok(false);
    };
    let word = |at: usize| {
        u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let mut len = [0u8; 8];
    len.copy_from_slice(&header[8..16]);
    if header[..4] != IDX_MAGIC
        || word(4) != IDX_VERSION
        || u64::from_le_bytes(len) != payload.len() as u64
        || crc32fast::hash(payload) != word(16)
    {
        return Ok(false);
    }
    Ok(decode_into(payload, image).is_some() && image.first == first && image.is_coherent())
}

/// [`read_idx_into`] into a new image; `Ok(None)` if it is missing, damaged or not for this
/// segment.
#[cfg(test)]
pub(crate) fn read_idx(path: &Path, first: u64) -> io::Result<Option<SegImage>> {
    let mut image = SegImage::default();
    Ok(read_idx_into(path, first, &mut Vec::new(), &mut image)?.then_some(image))
}

#[cfg(test)]
fn decode(payload: &[u8]) -> Option<SegImage> {
    let mut image = SegImage::default();
    decode_into(payload, &mut image).map(|()| image)
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

    fn sample() -> SegImage {
        let mut image = SegImage::new(5, 1000);
        image.push_subject("a");
        image.push_subject("bé.c");
        image.entries = vec![
            IdxEntry {
                offset: 0,
                subject: 1,
                size: 50,
                time: 1,
            },
            IdxEntry {
                offset: ABSENT,
                subject: 0,
                size: 0,
                time: 0,
            },
        ];
        image.tombs = vec![6];
        image.floor = 3;
        image.marker_time = 9;
        image.applied = 11;
        image
    }

    /// The payload is byte for byte what bincode makes of the serde-derived image the store
    /// first wrote, with the applied index (version 2) after it.
    #[test]
    fn payload_matches_the_bincode_layout() {
        use bincode::Options;
        #[derive(serde::Serialize)]
        struct Entry(u32, u32, u32, i64);
        #[derive(serde::Serialize)]
        struct Old(u64, u64, Vec<String>, Vec<Entry>, Vec<u64>, u64, i64, u64);
        let image = sample();
        let old = Old(
            5,
            1000,
            vec!["a".into(), "bé.c".into()],
            vec![Entry(0, 1, 50, 1), Entry(ABSENT, 0, 0, 0)],
            vec![6],
            3,
            9,
            11,
        );
        let codec = bincode::DefaultOptions::new()
            .with_fixint_encoding()
            .with_little_endian();
        let mut payload = Vec::new();
        encode(&image, &mut payload);
        assert_eq!(payload, codec.serialize(&old).unwrap());
        assert_eq!(decode(&payload), Some(image.clone()));
        assert_eq!(image.subject(1), Some("bé.c"));
        assert_eq!(image.subject(2), None);
        for cut in 0..payload.len() {
            assert_eq!(decode(&payload[..cut]), None, "{cut}");
        }
        let mut longer = payload.clone();
        longer.push(0);
        assert_eq!(decode(&longer), None);
        let mut bad_utf8 = payload;
        bad_utf8[24 + 8 + 1 + 8 + 1] = 0xff; // first byte of "é"
        assert_eq!(decode(&bad_utf8), None);
    }

    #[test]
    fn idx_round_trip_and_rejects_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.idx");
        let image = sample();
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
