//! The framing of one Raft log record, and the scan that finds where a file's good records
//! end.
//!
//! ```text
//! record = len:u32le crc32:u32le index:u64le body     (crc over index and body; len of body)
//! ```
//! `body` is the bincode of the openraft entry. The CRC is checked before a length is
//! trusted for anything but bounds, so arbitrary bytes neither panic nor over-read.

/// Bytes before the body.
pub(crate) const HEADER: usize = 16;

/// A record found by [`scan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Found {
    /// Byte offset of the record in the file.
    pub(crate) at: u64,
    /// The record's log index.
    pub(crate) index: u64,
    /// Body length.
    pub(crate) len: u32,
}

impl Found {
    /// Offset of the byte after the record.
    pub(crate) fn end(&self) -> u64 {
        self.at + HEADER as u64 + u64::from(self.len)
    }
}

/// Appends the record of `body` under `index` to `out`. Returns `None` for a body over 4 GiB.
pub(crate) fn frame(index: u64, body: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let len = u32::try_from(body.len()).ok()?;
    let index = index.to_le_bytes();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&index);
    crc.update(body);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&index);
    out.extend_from_slice(body);
    Some(())
}

/// Checks one record read back whole (header and body) and returns its body.
pub(crate) fn check(bytes: &[u8]) -> Option<&[u8]> {
    let (header, body) = (bytes.get(..HEADER)?, bytes.get(HEADER..)?);
    let len = u32::from_le_bytes(header[0..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    if len != body.len() {
        return None;
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[8..16]);
    hasher.update(body);
    (hasher.finalize() == crc).then_some(body)
}

/// Scans `bytes` (a whole file) for good records; returns them and the length of the good
/// prefix. What follows that prefix is a torn or damaged tail, or unwritten zeros.
pub(crate) fn scan(bytes: &[u8]) -> (Vec<Found>, usize) {
    let mut found = Vec::new();
    let mut at = 0usize;
    while bytes.len() - at >= HEADER {
        let h = &bytes[at..at + HEADER];
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let Some(end) = (at + HEADER)
            .checked_add(len as usize)
            .filter(|e| *e <= bytes.len())
        else {
            break;
        };
        if check(&bytes[at..end]).is_none() {
            break;
        }
        let mut index = [0u8; 8];
        index.copy_from_slice(&h[8..16]);
        found.push(Found {
            at: at as u64,
            index: u64::from_le_bytes(index),
            len,
        });
        at = end;
    }
    (found, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_scan_back_and_garbage_stops_the_scan() {
        let mut buf = Vec::new();
        frame(7, b"seven", &mut buf).unwrap();
        frame(8, b"", &mut buf).unwrap();
        let good = buf.len();
        buf.extend_from_slice(&[0xff; 40]);
        let (found, len) = scan(&buf);
        assert_eq!(len, good);
        assert_eq!(found.len(), 2);
        assert_eq!((found[0].index, found[0].len, found[0].at), (7, 5, 0));
        assert_eq!(found[1].at, found[0].end());
        assert_eq!(check(&buf[..found[0].end() as usize]), Some(&b"seven"[..]));
        let mut bad = buf[..found[0].end() as usize].to_vec();
        bad[HEADER] ^= 1;
        assert_eq!(check(&bad), None);
        assert_eq!(scan(&bad).0, vec![]);
    }
}
