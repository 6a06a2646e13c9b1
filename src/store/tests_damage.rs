//! Random damage to a stream directory: byte flips and truncations in logs, sidecars, `.del`
//! files and sled. Opening must not panic, and whatever is served must be exactly what was
//! appended under that sequence.

use std::fs;
use std::path::{Path, PathBuf};

use super::tests::{small_opts, Rng};
use super::*;

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.file_name().is_some_and(|n| n != "LOCK") {
            out.push(path);
        }
    }
}

fn payload(seq: u64) -> Vec<u8> {
    format!("payload-{seq}-{}", "z".repeat((seq % 50) as usize)).into_bytes()
}

/// A stream with several sealed segments, interior deletions and a purge; returns its live
/// sequences.
fn build(dir: &Path) -> Vec<u64> {
    let (mut s, _) = FileStore::open(dir, small_opts()).unwrap();
    for seq in 1..=150u64 {
        let hdr = (seq % 4 == 0).then_some(&b"NATS/1.0\r\nA: b\r\n\r\n"[..]);
        let got = s
            .append(&format!("d.{}", seq % 7), hdr, &payload(seq), seq as i64)
            .unwrap();
        assert_eq!(got, seq);
        if seq % 9 == 0 {
            s.remove(seq - 3).unwrap();
        }
        if seq == 60 {
            s.purge(None, Some(10), None).unwrap();
        }
    }
    s.purge(Some("d.3"), None, Some(2)).unwrap();
    s.checkpoint().unwrap();
    (1..=150).filter(|&q| s.get(q).unwrap().is_some()).collect()
}

#[test]
fn damaged_directories_never_panic_or_serve_wrong_data() {
    let pristine = tempfile::tempdir().unwrap();
    let live = build(pristine.path());
    let mut rng = Rng(0x5EED);
    for round in 0..60 {
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("s");
        copy_dir(pristine.path(), &dir);
        let mut all = Vec::new();
        files(&dir, &mut all);
        all.sort();
        let mut meta_damaged = false;
        for _ in 0..1 + rng.below(3) {
            let victim = &all[rng.below(all.len() as u64) as usize];
            let name = victim.to_string_lossy();
            meta_damaged |= name.contains("index.sled") || name.ends_with("STREAM_ID");
            let mut bytes = fs::read(victim).unwrap();
            if bytes.is_empty() {
                continue;
            }
            if round % 3 == 0 {
                bytes.truncate(rng.below(bytes.len() as u64) as usize);
            } else {
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(bytes.len() as u64) as usize;
                    bytes[at] ^= 1 << rng.below(8);
                }
            }
            fs::write(victim, &bytes).unwrap();
        }
        let (mut s, _report) = match FileStore::open(&dir, small_opts()) {
            Ok(opened) => opened,
            Err(StoreError::Index(_)) | Err(StoreError::Io(_)) => continue,
            Err(e) => panic!("round {round}: unexpected error {e}"),
        };
        let st = s.state();
        for seq in 1..=st.last_seq {
            match s.get(seq) {
                Ok(Some(m)) => {
                    assert_eq!(m.payload, payload(seq), "round {round} seq {seq}");
                    // With sled intact, nothing deleted comes back.
                    assert!(
                        meta_damaged || live.contains(&seq),
                        "round {round}: {seq} is back"
                    );
                    assert_eq!(m.subject, format!("d.{}", seq % 7));
                    assert_eq!(m.headers.is_some(), seq % 4 == 0);
                }
                Ok(None) | Err(StoreError::Corrupt { .. }) => {}
                Err(e) => panic!("round {round} seq {seq}: {e}"),
            }
        }
        // The store still works after whatever recovery did.
        let next = s.append("after", None, b"x", 1_000).unwrap();
        assert!(
            meta_damaged || next > 150,
            "round {round}: sequence {next} reused"
        );
        s.sync().unwrap();
        assert_eq!(&s.get(next).unwrap().unwrap().payload[..], b"x");
    }
}
