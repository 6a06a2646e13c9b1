//! The per-subject index: each subject with live messages gets a small integer id and the
//! sorted list of its live sequences.
//!
//! It is built for millions of subjects (a Key-Value bucket has one per key), held compactly
//! and rebuilt fast when a store opens:
//! - names sit back to back in one arena `String`, not one allocation each; the bytes of
//!   subjects that lost their last message are reclaimed by compacting the arena once they
//!   make up half of it;
//! - names map to ids through an open-addressing table (linear probing, at most 3/4 full,
//!   backward-shift deletion) whose 8-byte slots hold 32 bits of the name's hash and the id,
//!   so a probe only touches the arena on a hash match;
//! - a subject with one live sequence keeps it inline; from two on they move to a boxed
//!   `VecDeque`, so the removals that usually hit the front of a list (limits, age, purges)
//!   are O(1). Per-subject counts from a sequence are a binary search.
//!
//! A single-message subject costs a 32-byte entry, its name and 8 to 16 bytes of table.

use std::collections::VecDeque;
use std::hash::BuildHasher;

use rustc_hash::FxBuildHasher;

use super::subjects::{is_literal, subject_matches};
use super::SubjectState;

/// The smallest table: 16 slots.
const MIN_BITS: u32 = 4;
/// Dead arena bytes tolerated before compaction is considered.
const COMPACT_MIN: usize = 64 << 10;

/// Interned subjects and their live sequences.
#[derive(Default)]
pub(crate) struct SubjectTable {
    /// Every live subject's name, back to back (plus dead bytes awaiting compaction).
    names: String,
    dead_bytes: usize,
    /// `hash << 32 | (id + 1)`, or 0 for an empty slot; empty or `1 << bits` long.
    slots: Vec<u64>,
    bits: u32,
    entries: Vec<Entry>,
    free: Vec<u32>,
    live: usize,
}

struct Entry {
    /// Where the name sits in the arena.
    off: usize,
    len: usize,
    seqs: Seqs,
}

/// The box keeps this at 16 bytes (a `VecDeque` is 32) for the common single-message case.
#[allow(clippy::box_collection)]
enum Seqs {
    /// A free id (on the free list).
    Free,
    One(u64),
    /// Two or more, ascending.
    Many(Box<VecDeque<u64>>),
}

/// A subject's live sequences, ascending (a view over one or two slices).
#[derive(Clone, Copy)]
pub(crate) struct SeqList<'a> {
    head: &'a [u64],
    tail: &'a [u64],
}

impl<'a> SeqList<'a> {
    /// How many.
    pub(crate) fn len(&self) -> usize {
        self.head.len() + self.tail.len()
    }

    /// The oldest.
    pub(crate) fn first(&self) -> Option<u64> {
        self.head.first().or(self.tail.first()).copied()
    }

    /// The newest.
    pub(crate) fn last(&self) -> Option<u64> {
        self.tail.last().or(self.head.last()).copied()
    }

    /// The `i`-th oldest.
    pub(crate) fn get(&self, i: usize) -> Option<u64> {
        match self.head.get(i) {
            Some(&seq) => Some(seq),
            None => self.tail.get(i - self.head.len()).copied(),
        }
    }

    /// How many sequences come before the first one >= `seq`.
    pub(crate) fn count_below(&self, seq: u64) -> usize {
        match self.head.partition_point(|&s| s < seq) {
            n if n < self.head.len() => n,
            n => n + self.tail.partition_point(|&s| s < seq),
        }
    }

    /// The sequences, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = u64> + 'a {
        self.head.iter().chain(self.tail).copied()
    }
}

/// 32 well-mixed bits of a name's hash: the table's home slot is its top bits.
fn hash_of(name: &str) -> u32 {
    let h = FxBuildHasher.hash_one(name);
    (h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32
}

/// A subject name with its hash, for callers that look a name up more than once.
#[derive(Clone, Copy)]
pub(crate) struct SubjectKey<'a> {
    name: &'a str,
    hash: u32,
}

impl<'a> SubjectKey<'a> {
    pub(crate) fn new(name: &'a str) -> SubjectKey<'a> {
        SubjectKey {
            name,
            hash: hash_of(name),
        }
    }
}

impl SubjectTable {
    /// Subjects with at least one live message.
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// The id of a subject, if it has live messages.
    pub(crate) fn id(&self, name: &str) -> Option<u32> {
        self.find(name, hash_of(name))
    }

    /// The subject with this id ("" for an id this table did not hand out).
    pub(crate) fn name(&self, id: u32) -> &str {
        self.entries
            .get(id as usize)
            .and_then(|e| self.names.get(e.off..e.off + e.len))
            .unwrap_or("")
    }

    /// The live sequences of subject `id`, oldest first.
    pub(crate) fn seqs(&self, id: u32) -> SeqList<'_> {
        match self.entries.get(id as usize).map(|e| &e.seqs) {
            Some(Seqs::One(seq)) => SeqList {
                head: std::slice::from_ref(seq),
                tail: &[],
            },
            Some(Seqs::Many(list)) => {
                let (head, tail) = list.as_slices();
                SeqList { head, tail }
            }
            Some(Seqs::Free) | None => SeqList {
                head: &[],
                tail: &[],
            },
        }
    }

    /// Records a live sequence on subject `key` and returns the subject's id.
    pub(crate) fn add(&mut self, key: SubjectKey<'_>, seq: u64) -> u32 {
        let id = match self.find(key.name, key.hash) {
            Some(id) => id,
            None => self.create(key.name, key.hash),
        };
        self.push_seq(id, seq);
        id
    }

    /// Makes room for `n` subjects in all without the table growing on the way.
    pub(crate) fn reserve(&mut self, n: usize) {
        let slots = (n / 3).saturating_mul(4).saturating_add(4);
        let bits = slots
            .checked_next_power_of_two()
            .map_or(32, usize::trailing_zeros)
            .clamp(MIN_BITS, 32);
        if bits > self.bits {
            self.resize(bits);
        }
    }

    /// Loads the table slot where a lookup of `key` starts. Bulk loading calls this for a
    /// batch of names before adding them, so that their cache misses overlap instead of
    /// coming one after the other.
    pub(crate) fn warm(&self, key: &SubjectKey<'_>) {
        if !self.slots.is_empty() {
            std::hint::black_box(self.slots[self.home(key.hash)]);
        }
    }

    /// Records a live sequence on subject `id`, which an earlier call returned; false (and
    /// nothing done) if that subject has no live message left, as its id may then be reused.
    pub(crate) fn add_to(&mut self, id: u32, seq: u64) -> bool {
        let live = self
            .entries
            .get(id as usize)
            .is_some_and(|e| !matches!(e.seqs, Seqs::Free));
        if live {
            self.push_seq(id, seq);
        }
        live
    }

    fn push_seq(&mut self, id: u32, seq: u64) {
        let Some(entry) = self.entries.get_mut(id as usize) else {
            return;
        };
        match &mut entry.seqs {
            Seqs::Free => entry.seqs = Seqs::One(seq),
            Seqs::One(only) => {
                let only = *only;
                if only != seq {
                    let pair = if only < seq { [only, seq] } else { [seq, only] };
                    entry.seqs = Seqs::Many(Box::new(VecDeque::from(pair)));
                }
            }
            Seqs::Many(seqs) => match seqs.back() {
                Some(&last) if last >= seq => {
                    let at = seqs.partition_point(|&s| s < seq);
                    if seqs.get(at) != Some(&seq) {
                        seqs.insert(at, seq);
                    }
                }
                _ => seqs.push_back(seq),
            },
        }
    }

    /// Forgets a live sequence of subject `id`; the id is freed with its last sequence.
    pub(crate) fn remove(&mut self, id: u32, seq: u64) {
        let Some(entry) = self.entries.get_mut(id as usize) else {
            return;
        };
        match &mut entry.seqs {
            Seqs::Free => {}
            Seqs::One(only) => {
                if *only == seq {
                    self.release(id);
                }
            }
            Seqs::Many(seqs) => {
                if seqs.front() == Some(&seq) {
                    seqs.pop_front();
                } else if seqs.back() == Some(&seq) {
                    seqs.pop_back();
                } else if let Ok(at) = seqs.binary_search(&seq) {
                    seqs.remove(at);
                }
                if seqs.len() == 1 {
                    entry.seqs = Seqs::One(seqs[0]);
                }
            }
        }
    }

    /// The state of subject `id`.
    pub(crate) fn state(&self, id: u32) -> SubjectState {
        let seqs = self.seqs(id);
        SubjectState {
            first_seq: seqs.first().unwrap_or(0),
            last_seq: seqs.last().unwrap_or(0),
            msgs: seqs.len() as u64,
        }
    }

    /// Ids of the live subjects matching `filter`.
    pub(crate) fn matching<'a>(&'a self, filter: &'a str) -> Box<dyn Iterator<Item = u32> + 'a> {
        if is_literal(filter) {
            Box::new(self.id(filter).into_iter())
        } else {
            Box::new(
                (0..self.entries.len() as u32)
                    .filter(|&id| !matches!(self.entries[id as usize].seqs, Seqs::Free))
                    .filter(move |&id| subject_matches(filter, self.name(id))),
            )
        }
    }

    /// Live messages of subject `id` with sequence >= `start`.
    pub(crate) fn count_from(&self, id: u32, start: u64) -> u64 {
        let seqs = self.seqs(id);
        (seqs.len() - seqs.count_below(start)) as u64
    }

    /// The first live sequence >= `start` of subject `id`.
    pub(crate) fn next_from(&self, id: u32, start: u64) -> Option<u64> {
        let seqs = self.seqs(id);
        seqs.get(seqs.count_below(start))
    }

    fn home(&self, hash: u32) -> usize {
        (hash >> (32 - self.bits)) as usize
    }

    fn find(&self, name: &str, hash: u32) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(hash);
        loop {
            let slot = self.slots[i];
            if slot == 0 {
                return None;
            }
            if (slot >> 32) as u32 == hash {
                let id = (slot as u32).wrapping_sub(1);
                if self.name(id) == name {
                    return Some(id);
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// A new subject with no sequence yet (the caller adds one).
    fn create(&mut self, name: &str, hash: u32) -> u32 {
        if (self.live + 1) * 4 > self.slots.len() * 3 && self.bits < 32 {
            self.resize((self.bits + 1).max(MIN_BITS));
        }
        let entry = Entry {
            off: self.names.len(),
            len: name.len(),
            seqs: Seqs::Free,
        };
        self.names.push_str(name);
        let id = match self.free.pop() {
            Some(id) => {
                self.entries[id as usize] = entry;
                id
            }
            None => {
                self.entries.push(entry);
                (self.entries.len() - 1) as u32
            }
        };
        self.place(u64::from(hash) << 32 | (u64::from(id) + 1));
        self.live += 1;
        id
    }

    fn place(&mut self, slot: u64) {
        let mask = self.slots.len() - 1;
        let mut i = self.home((slot >> 32) as u32);
        while self.slots[i] != 0 {
            i = (i + 1) & mask;
        }
        self.slots[i] = slot;
    }

    fn resize(&mut self, bits: u32) {
        self.bits = bits;
        let old = std::mem::replace(&mut self.slots, vec![0; 1 << self.bits]);
        for slot in old.into_iter().filter(|&s| s != 0) {
            self.place(slot);
        }
    }

    /// Frees subject `id`: its table slot (shifting later slots of the run back), its name.
    fn release(&mut self, id: u32) {
        let name = self.name(id);
        let target = u64::from(hash_of(name)) << 32 | (u64::from(id) + 1);
        let mask = self.slots.len().wrapping_sub(1);
        let mut i = self.home((target >> 32) as u32);
        while self.slots.get(i).is_some_and(|&s| s != target && s != 0) {
            i = (i + 1) & mask;
        }
        if self.slots.get(i) == Some(&target) {
            let mut j = i;
            loop {
                j = (j + 1) & mask;
                let slot = self.slots[j];
                if slot == 0 {
                    break;
                }
                // Move `slot` into the hole unless its home lies cyclically in (i, j].
                let home = self.home((slot >> 32) as u32);
                if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
                    self.slots[i] = slot;
                    i = j;
                }
            }
            self.slots[i] = 0;
        }
        let entry = &mut self.entries[id as usize];
        self.dead_bytes += entry.len;
        *entry = Entry {
            off: 0,
            len: 0,
            seqs: Seqs::Free,
        };
        self.free.push(id);
        self.live -= 1;
        if self.live == 0 {
            self.names.clear();
            self.dead_bytes = 0;
        } else if self.dead_bytes > COMPACT_MIN && self.dead_bytes * 2 > self.names.len() {
            self.compact();
        }
    }

    /// Rewrites the arena without the names of freed subjects.
    fn compact(&mut self) {
        let mut names = String::with_capacity(self.names.len() - self.dead_bytes);
        for entry in &mut self.entries {
            if !matches!(entry.seqs, Seqs::Free) {
                let name = self.names.get(entry.off..entry.off + entry.len);
                entry.off = names.len();
                names.push_str(name.unwrap_or(""));
            }
        }
        self.names = names;
        self.dead_bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_subjects_come_and_go() {
        let mut t = SubjectTable::default();
        let name = |i: u64| format!("$KV.b.key{i}");
        for i in 0..50_000u64 {
            assert_eq!(t.add(SubjectKey::new(&name(i)), i + 1) as u64, i);
        }
        assert_eq!(t.add(SubjectKey::new(&name(7)), 60_000), 7);
        assert_eq!(t.seqs(7).iter().collect::<Vec<_>>(), vec![8, 60_000]);
        for i in (0..50_000u64).filter(|i| i % 3 != 0) {
            let id = t.id(&name(i)).unwrap();
            t.remove(id, i + 1);
        }
        assert_eq!(t.len(), 50_000 / 3 + 2);
        assert!(t.names.len() < 50_000 * 10, "arena was compacted");
        for i in 0..50_000u64 {
            let id = t.id(&name(i));
            assert_eq!(id.is_some(), i % 3 == 0 || i == 7, "{i}");
            if let Some(id) = id {
                assert_eq!(t.name(id), name(i));
                assert_eq!(t.state(id).last_seq, if i == 7 { 60_000 } else { i + 1 });
            }
        }
        t.remove(7, 60_000);
        assert!(t.id(&name(7)).is_none());
        assert!(!t.add_to(7, 5));
        let reused = t.add(SubjectKey::new("x"), 9);
        assert!(t.add_to(reused, 10) && t.add_to(reused, 3));
        assert_eq!(t.seqs(reused).iter().collect::<Vec<_>>(), vec![3, 9, 10]);
        assert_eq!(t.count_from(reused, 4), 2);
        assert_eq!(t.next_from(reused, 4), Some(9));
        t.remove(reused, 9);
        assert_eq!(t.state(reused).msgs, 2);
        assert_eq!(t.matching("x").count(), 1);
        assert_eq!(t.matching("$KV.b.*").count(), 50_000 / 3 + 1);
    }

    #[test]
    fn reserve_sizes_the_table_once() {
        let mut t = SubjectTable::default();
        t.reserve(3000);
        let slots = t.slots.len();
        for i in 0..3000 {
            t.add(SubjectKey::new(&format!("s.{i}")), i + 1);
        }
        assert_eq!(t.slots.len(), slots);
        t.reserve(10);
        assert_eq!(t.slots.len(), slots);
        assert!((0..3000u32).all(|i| t.id(&format!("s.{i}")) == Some(i)));
        t.reserve(usize::MAX >> 40);
        assert!(t.slots.len() > slots && t.id("s.2999") == Some(2999));
    }
}
