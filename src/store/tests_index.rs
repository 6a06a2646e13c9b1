//! Unit tests of the shared in-memory index (`index.rs`).

use super::*;

#[test]
fn chunks_are_freed_and_counts_hold() {
    let mut ix = Index::default();
    for seq in 1..=1000 {
        let subj = if seq % 2 == 0 { "even" } else { "odd" };
        ix.insert(seq, subj, 10, seq as u32, seq as i64);
    }
    assert_eq!(ix.msgs(), 1000);
    assert_eq!(ix.count_from(500), 501);
    assert_eq!(ix.count_range(10, 19), 10);
    for seq in 1..=600 {
        ix.remove(seq);
    }
    assert_eq!(ix.first().map(|(s, _)| s), Some(601));
    assert!(ix.chunks.len() <= 2);
    assert_eq!(ix.count_matching(0, Some("even")), 200);
    assert_eq!(ix.next_matching(601, Some("even")), Some(602));
    assert_eq!(ix.remove_below(700, |_, _| {}), 99);
    assert_eq!(ix.first().map(|(s, _)| s), Some(700));
    assert_eq!(ix.bytes(), 301 * 10);
    assert_eq!(ix.first_at_or_after(900), Some(900));
    assert_eq!(ix.iter_rev().next().map(|(s, _)| s), Some(1000));
}

#[test]
fn counts_agree_with_brute_force() {
    let mut rng = super::super::tests::Rng(42);
    let mut ix = Index::default();
    for seq in 1..=3000 {
        ix.insert(seq, "s", 1, 0, 0);
    }
    for _ in 0..2000 {
        ix.remove(rng.below(3100));
    }
    ix.remove_below(300, |_, _| {});
    let live: Vec<u64> = ix.iter_from(0).map(|(s, _)| s).collect();
    assert_eq!(live.len() as u64, ix.msgs());
    for _ in 0..500 {
        let (a, b) = (rng.below(3300), rng.below(3300));
        let want = live.iter().filter(|&&s| s >= a && s <= b).count() as u64;
        assert_eq!(ix.count_range(a, b), want, "{a}..={b}");
        let want = live.iter().filter(|&&s| s >= a).count() as u64;
        assert_eq!(ix.count_from(a), want, "{a}..");
    }
}

#[test]
fn many_subjects_use_both_strategies() {
    let mut ix = Index::default();
    for seq in 1..=10_000u64 {
        ix.insert(seq, &format!("k.{}", seq % 500), 1, 0, 0);
    }
    ix.insert(10_001, "other.x", 1, 0, 0);
    assert_eq!(ix.next_matching(1, Some("other.*")), Some(10_001));
    assert_eq!(ix.next_matching(1, Some("k.*")), Some(1));
    assert_eq!(ix.next_matching(10_002, Some("k.*")), None);
    assert_eq!(ix.count_matching(9_001, Some("k.*")), 1000);
    assert_eq!(ix.count_matching(10_001, Some("k.*")), 0);
    assert_eq!(ix.count_matching(1, Some("*.x")), 1);
}

#[test]
fn subjects_agree_with_a_model_through_churn() {
    use std::collections::{BTreeMap, BTreeSet};
    let mut rng = super::super::tests::Rng(7);
    let mut ix = Index::default();
    let mut model: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    let mut live: BTreeMap<u64, String> = BTreeMap::new();
    let forget = |model: &mut BTreeMap<String, BTreeSet<u64>>, name: &String, seq: u64| {
        let seqs = model.get_mut(name).unwrap();
        seqs.remove(&seq);
        if seqs.is_empty() {
            model.remove(name);
        }
    };
    for round in 0..40 {
        // Pools of changing size make the subject table grow, wrap runs around its end and
        // free, reuse and compact subjects.
        let pool = [8, 300, 3000][round % 3];
        for _ in 0..2000 {
            let seq = 1 + rng.below(20_000);
            if rng.below(3) == 0 {
                let old = live.remove(&seq);
                if let Some(old) = &old {
                    forget(&mut model, old, seq);
                }
                assert_eq!(ix.remove(seq).is_some(), old.is_some());
                continue;
            }
            let subject = format!("k.{}.x", rng.below(pool));
            if let Some(old) = live.insert(seq, subject.clone()) {
                forget(&mut model, &old, seq);
            }
            model.entry(subject.clone()).or_default().insert(seq);
            ix.insert(seq, &subject, 1, 0, 0);
        }
        assert_eq!(ix.subjects().len(), model.len());
        let mut all = ix.subjects_matching(">");
        all.sort();
        let want: Vec<_> = model
            .iter()
            .map(|(name, seqs)| {
                let state = SubjectState {
                    first_seq: *seqs.first().unwrap(),
                    last_seq: *seqs.last().unwrap(),
                    msgs: seqs.len() as u64,
                };
                (name.clone(), state)
            })
            .collect();
        assert_eq!(all, want);
        for i in 0..pool.min(50) {
            let name = format!("k.{i}.x");
            let seqs = model.get(&name);
            assert_eq!(
                ix.last_seq_for_subject(&name),
                seqs.map(|s| *s.last().unwrap())
            );
            assert_eq!(
                ix.count_matching(10_000, Some(&name)),
                seqs.map_or(0, |s| s.range(10_000..).count() as u64)
            );
            assert_eq!(
                ix.next_matching(10_000, Some(&name)),
                seqs.and_then(|s| s.range(10_000..).next().copied())
            );
        }
    }
}
