//! Behaviour both stores must share: each scenario runs against [`MemStore`] and [`FileStore`]
//! (with tiny segments so that rolling is exercised), plus a randomized comparison of the two
//! with the file store reopened (cleanly or after a "crash") along the way.

use std::path::Path;

use super::*;

pub(super) fn small_opts() -> FileStoreOptions {
    FileStoreOptions {
        segment_bytes: 2048,
        write_buffer_bytes: 512,
        ..FileStoreOptions::default()
    }
}

type Factory = fn(&Path) -> Box<dyn MsgStore>;

fn mem(_: &Path) -> Box<dyn MsgStore> {
    Box::new(MemStore::new())
}

fn file(dir: &Path) -> Box<dyn MsgStore> {
    Box::new(FileStore::open(dir, small_opts()).unwrap().0)
}

macro_rules! for_both {
    ($($name:ident),* $(,)?) => {
        mod mem_store {
            $( #[test] fn $name() { super::$name(super::mem) } )*
        }
        mod file_store {
            $( #[test] fn $name() { super::$name(super::file) } )*
        }
    };
}

for_both!(
    append_get_state,
    subject_index,
    remove_accounting,
    purge_variants,
    pending_queries,
    time_queries,
    first_seq_and_purge_all,
    skipped_sequences_are_gaps,
);

fn with_store(make: Factory, f: impl FnOnce(&mut dyn MsgStore)) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = make(dir.path());
    f(store.as_mut());
    store.sync().unwrap();
    store.delete_all().unwrap();
}

fn fill(s: &mut dyn MsgStore, subjects: &[&str], n: u64) {
    for i in 0..n {
        let subj = subjects[(i % subjects.len() as u64) as usize];
        s.append(subj, None, format!("m{i}").as_bytes(), 1000 + i as i64)
            .unwrap();
    }
}

fn append_get_state(make: Factory) {
    with_store(make, |s| {
        assert_eq!(s.state().first_seq, 1);
        assert_eq!(s.append("a.b", None, b"one", 10).unwrap(), 1);
        assert_eq!(
            s.append("a.c", Some(b"NATS/1.0\r\nX: y\r\n\r\n"), b"two", 11)
                .unwrap(),
            2
        );
        assert_eq!(s.append("a.c", Some(b""), b"", 12).unwrap(), 3);
        let m = s.get(2).unwrap().unwrap();
        assert_eq!((m.seq, m.time, m.subject.as_str()), (2, 11, "a.c"));
        assert_eq!(m.headers.as_deref(), Some(&b"NATS/1.0\r\nX: y\r\n\r\n"[..]));
        assert_eq!(&m.payload[..], b"two");
        assert_eq!(s.get(1).unwrap().unwrap().headers, None);
        assert_eq!(
            s.get(3).unwrap().unwrap().headers.as_deref(),
            Some(&b""[..])
        );
        assert_eq!(s.get(0).unwrap(), None);
        assert_eq!(s.get(4).unwrap(), None);
        s.sync().unwrap();
        let st = s.state();
        assert_eq!((st.msgs, st.first_seq, st.last_seq), (3, 1, 3));
        assert_eq!((st.first_time, st.last_time), (10, 12));
        assert_eq!((st.num_deleted, st.num_subjects), (0, 2));
        assert!(st.bytes > 0);
        // Enough to roll several file segments; reads come back intact.
        fill(s, &["x.1", "x.2"], 300);
        for seq in 4..=303 {
            let m = s.get(seq).unwrap().unwrap();
            assert_eq!(m.payload, format!("m{}", seq - 4).as_bytes());
        }
        assert_eq!(s.state().msgs, 303);
    });
}

fn subject_index(make: Factory) {
    with_store(make, |s| {
        fill(s, &["kv.a", "kv.b", "other.x.y"], 9);
        let a = s.subject_state("kv.a").unwrap();
        assert_eq!((a.first_seq, a.last_seq, a.msgs), (1, 7, 3));
        assert_eq!(s.subject_state("kv"), None);
        assert_eq!(s.last_seq_for_subject("kv.b"), Some(8));
        assert_eq!(s.last_seq_for_subject("nope"), None);
        let mut m = s.subjects_matching("kv.*");
        m.sort();
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].0, "kv.b");
        assert_eq!(m[1].1.msgs, 3);
        assert_eq!(s.subjects_matching(">").len(), 3);
        assert_eq!(s.subjects_matching("other.>").len(), 1);
        assert_eq!(s.subjects_matching("other.*").len(), 0);
        assert_eq!(s.subjects_matching("kv.a").len(), 1);
        s.remove(1).unwrap();
        assert_eq!(s.subject_state("kv.a").unwrap().first_seq, 4);
        s.remove(7).unwrap();
        assert_eq!(s.last_seq_for_subject("kv.a"), Some(4));
        s.remove(4).unwrap();
        assert_eq!(s.subject_state("kv.a"), None);
        assert_eq!(s.state().num_subjects, 2);
    });
}

fn remove_accounting(make: Factory) {
    with_store(make, |s| {
        fill(s, &["a"], 10);
        let full = s.state().bytes;
        assert!(s.remove(5).unwrap());
        assert!(!s.remove(5).unwrap());
        assert!(!s.remove(99).unwrap());
        assert_eq!(s.get(5).unwrap(), None);
        let st = s.state();
        assert_eq!((st.msgs, st.num_deleted, st.first_seq), (9, 1, 1));
        assert!(st.bytes < full);
        s.remove(1).unwrap();
        s.remove(10).unwrap();
        s.sync().unwrap();
        let st = s.state();
        assert_eq!(
            (st.msgs, st.first_seq, st.last_seq, st.num_deleted),
            (7, 2, 10, 2)
        );
        assert_eq!(st.first_time, 1001);
        assert_eq!(s.append("a", None, b"", 2000).unwrap(), 11);
    });
}

fn purge_variants(make: Factory) {
    with_store(make, |s| {
        fill(s, &["p.a", "p.b", "q"], 30);
        // Literal filter, keep the newest 2 of that subject.
        assert_eq!(s.purge(Some("p.a"), None, Some(2)).unwrap(), 8);
        assert_eq!(s.subject_state("p.a").unwrap().msgs, 2);
        // Wildcard filter with keep: per subject.
        assert_eq!(s.purge(Some("p.*"), None, Some(1)).unwrap(), 1 + 9);
        assert_eq!(s.subject_state("p.b").unwrap().last_seq, 29);
        // Filter plus up_to.
        assert_eq!(s.purge(Some("q"), Some(10), None).unwrap(), 3);
        assert_eq!(s.subject_state("q").unwrap().first_seq, 12);
        let st = s.state();
        assert_eq!(st.msgs, 30 - 8 - 10 - 3);
        // No filter: up_to, then keep overall.
        assert_eq!(s.purge(None, Some(20), None).unwrap(), 3);
        assert_eq!(s.first_seq(), 21);
        assert_eq!(s.purge(None, None, Some(3)).unwrap(), 3);
        assert_eq!(s.first_seq(), 28);
        s.sync().unwrap();
        assert_eq!(s.state().msgs, 3);
        assert_eq!(s.state().last_seq, 30);
        // up_to past the end moves the next sequence.
        s.purge(None, Some(100), None).unwrap();
        s.sync().unwrap();
        let st = s.state();
        assert_eq!((st.msgs, st.first_seq, st.last_seq), (0, 100, 99));
        assert_eq!(s.append("z", None, b"", 5000).unwrap(), 100);
    });
}

fn pending_queries(make: Factory) {
    with_store(make, |s| {
        fill(s, &["o.1", "o.2", "x.y"], 60);
        assert_eq!(s.count_matching(1, None), 60);
        assert_eq!(s.count_matching(31, Some(">")), 30);
        assert_eq!(s.count_matching(1, Some("o.1")), 20);
        assert_eq!(s.count_matching(1, Some("o.*")), 40);
        assert_eq!(s.count_matching(59, Some("o.*")), 1);
        assert_eq!(s.count_matching(1, Some("nothing")), 0);
        assert_eq!(s.next_seq_matching(1, None), Some(1));
        assert_eq!(s.next_seq_matching(2, Some("x.*")), Some(3));
        assert_eq!(s.next_seq_matching(4, Some("o.2")), Some(5));
        assert_eq!(s.next_seq_matching(61, None), None);
        assert_eq!(s.next_seq_matching(1, Some("q.>")), None);
        s.remove(3).unwrap();
        s.remove(6).unwrap();
        assert_eq!(s.next_seq_matching(2, Some("x.y")), Some(9));
        assert_eq!(s.next_seq_matching(3, None), Some(4));
        assert_eq!(s.count_matching(1, Some("x.>")), 18);
        assert_eq!(s.count_matching(0, None), 58);
    });
}

fn time_queries(make: Factory) {
    with_store(make, |s| {
        fill(s, &["t"], 50); // times 1000..=1049
        assert_eq!(s.seq_for_time(0), 1);
        assert_eq!(s.seq_for_time(1010), 11);
        assert_eq!(s.seq_for_time(5000), 51);
        assert_eq!(s.expire_older_than(1020).unwrap(), 20);
        assert_eq!(s.expire_older_than(1020).unwrap(), 0);
        s.sync().unwrap();
        let st = s.state();
        assert_eq!((st.msgs, st.first_seq, st.first_time), (30, 21, 1020));
        assert_eq!(s.seq_for_time(0), 21);
        assert_eq!(s.expire_older_than(i64::MAX).unwrap(), 30);
        s.sync().unwrap();
        let st = s.state();
        assert_eq!(
            (st.msgs, st.first_seq, st.last_seq, st.last_time),
            (0, 51, 50, 1049)
        );
        assert_eq!(st.first_time, 0);
    });
}

fn first_seq_and_purge_all(make: Factory) {
    with_store(make, |s| {
        s.set_first_seq(1000).unwrap();
        assert_eq!(s.state().first_seq, 1000);
        assert_eq!(s.append("f", None, b"x", 1).unwrap(), 1000);
        assert!(s.set_first_seq(500).is_err());
        fill(s, &["f", "g"], 20);
        assert_eq!(s.purge(None, None, None).unwrap(), 21);
        s.sync().unwrap();
        let st = s.state();
        assert_eq!(
            (st.msgs, st.first_seq, st.last_seq, st.num_subjects),
            (0, 1021, 1020, 0)
        );
        assert_eq!(s.subject_state("f"), None);
        assert_eq!(s.append("f", None, b"x", 2).unwrap(), 1021);
        // Absurd sequences are refused rather than overflowing later.
        assert!(s.purge(None, Some(u64::MAX), None).is_err());
        assert!(s.set_first_seq(u64::MAX).is_err());
        assert!(s.append("", None, b"", 0).is_err());
        s.set_first_seq(MAX_SEQ).unwrap();
        assert_eq!(s.append("f", None, b"x", 3).unwrap(), MAX_SEQ);
        assert!(s.append("f", None, b"x", 4).is_err());
        assert_eq!(s.state().msgs, 1);
    });
}

/// Tiny deterministic generator (xorshift64*).
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// Asserts that two stores hold the same messages and answer queries alike.
pub(super) fn assert_same(a: &dyn MsgStore, b: &dyn MsgStore) {
    let (sa, sb) = (a.state(), b.state());
    assert_eq!(
        (
            sa.msgs,
            sa.first_seq,
            sa.last_seq,
            sa.num_deleted,
            sa.num_subjects,
            sa.first_time
        ),
        (
            sb.msgs,
            sb.first_seq,
            sb.last_seq,
            sb.num_deleted,
            sb.num_subjects,
            sb.first_time
        )
    );
    for seq in sa.first_seq.saturating_sub(2)..=sa.last_seq + 1 {
        assert_eq!(a.get(seq).unwrap(), b.get(seq).unwrap(), "seq {seq}");
    }
    for f in [None, Some("s.*"), Some("s.1"), Some("t.>")] {
        for start in [0, sa.first_seq, sa.last_seq / 2] {
            assert_eq!(a.count_matching(start, f), b.count_matching(start, f));
            assert_eq!(a.next_seq_matching(start, f), b.next_seq_matching(start, f));
        }
    }
    let mut ma = a.subjects_matching(">");
    let mut mb = b.subjects_matching(">");
    ma.sort();
    mb.sort();
    assert_eq!(ma, mb);
}

#[test]
fn stores_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<MemStore>();
    check::<FileStore>();
}

#[test]
fn file_store_matches_mem_store_through_reopens() {
    // (seed, percentage of operations that delete something)
    for (seed, deletes) in [(0x9E37_79B9_7F4A_7C15, 30), (7, 12), (0xDEAD_BEEF, 50)] {
        model_run(seed, deletes);
    }
}

/// Random appends, removes, purges, expiries and syncs on both stores; after every round the
/// two must agree, including after the file store is reopened cleanly, after a crash right
/// after a sync, and after losing sled.
fn model_run(seed: u64, deletes: u64) {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(seed);
    let mut model = MemStore::new();
    let mut store = FileStore::open(dir.path(), small_opts()).unwrap().0;
    let subjects = ["s.1", "s.2", "s.3", "t.a.b", "t.c"];
    let mut time = 0i64;
    for round in 0..50 {
        for _ in 0..rng.below(40) + 1 {
            let op = rng.below(100);
            let last = model.last_seq();
            let r = |rng: &mut Rng| model.first_seq() + rng.below(last + 2 - model.first_seq());
            if op >= deletes {
                if op.is_multiple_of(10) {
                    store.sync().unwrap();
                    continue;
                }
                time += 1 + rng.below(3) as i64;
                let subj = subjects[rng.below(5) as usize];
                let body = vec![b'x'; rng.below(120) as usize];
                let hdr = (rng.below(3) == 0).then_some(&b"NATS/1.0\r\n\r\n"[..]);
                assert_eq!(
                    store.append(subj, hdr, &body, time).unwrap(),
                    model.append(subj, hdr, &body, time).unwrap()
                );
                continue;
            }
            match rng.below(10) {
                0..=6 => {
                    let seq = r(&mut rng);
                    assert_eq!(store.remove(seq).unwrap(), model.remove(seq).unwrap());
                }
                7..=8 => {
                    let f = [None, Some("s.*"), Some("t.>"), Some("s.2")][rng.below(4) as usize];
                    let up_to = (rng.below(2) == 0).then(|| r(&mut rng));
                    let keep = (rng.below(2) == 0).then(|| rng.below(5));
                    assert_eq!(
                        store.purge(f, up_to, keep).unwrap(),
                        model.purge(f, up_to, keep).unwrap()
                    );
                }
                _ => {
                    let cutoff = time - rng.below(60) as i64;
                    assert_eq!(
                        store.expire_older_than(cutoff).unwrap(),
                        model.expire_older_than(cutoff).unwrap()
                    );
                }
            }
        }
        store.sync().unwrap();
        assert_same(&store, &model);
        match round % 6 {
            2 => {
                store.checkpoint().unwrap();
                drop(store);
                let (s, report) = FileStore::open(dir.path(), small_opts()).unwrap();
                assert!(report.corrupt_records.is_empty() && report.truncated_bytes == 0);
                assert!(!report.index_rebuilt);
                assert_eq!(report.segments_scanned, 1);
                store = s;
            }
            4 | 5 => {
                drop(store); // a crash right after sync
                if round % 6 == 5 {
                    std::fs::remove_dir_all(dir.path().join("index.sled")).unwrap();
                }
                store = FileStore::open(dir.path(), small_opts()).unwrap().0;
            }
            _ => continue,
        }
        assert_same(&store, &model);
    }
}

fn skipped_sequences_are_gaps(make: Factory) {
    let dir = tempfile::tempdir().unwrap();
    let mut s = make(dir.path());
    assert!(s.skip_to(0).is_err());
    s.skip_to(5).unwrap();
    assert_eq!(s.append("a", None, b"5", 5).unwrap(), 5);
    s.append("b", None, b"6", 6).unwrap();
    s.skip_to(7).unwrap();
    assert!(s.skip_to(6).is_err(), "6 is taken");
    s.skip_to(100).unwrap();
    assert_eq!(s.append("a", None, b"100", 100).unwrap(), 100);
    s.skip_to(1000).unwrap();
    assert_eq!(s.append("c", None, b"1000", 1000).unwrap(), 1000);
    let check = |s: &dyn MsgStore| {
        let st = s.state();
        assert_eq!((st.msgs, st.first_seq, st.last_seq), (4, 5, 1000));
        assert!(s.get(50).unwrap().is_none());
        assert_eq!(s.get(100).unwrap().unwrap().payload.as_ref(), b"100");
        assert_eq!(s.next_seq_matching(7, None), Some(100));
        assert_eq!(s.count_matching(0, Some("a")), 2);
    };
    check(s.as_ref());
    s.sync().unwrap();
    drop(s);
    // The file store left files behind: it must read the gaps back.
    if std::fs::read_dir(dir.path()).unwrap().next().is_some() {
        let (reopened, report) = FileStore::open(dir.path(), small_opts()).unwrap();
        assert!(report.lost_seqs.is_empty(), "{:?}", report.lost_seqs);
        check(&reopened);
        let mut fresh: Box<dyn MsgStore> = Box::new(reopened);
        fresh.purge(None, None, None).unwrap();
        fresh.delete_all().unwrap();
    }
}
