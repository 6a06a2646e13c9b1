//! The in-memory message index both stores share.
//!
//! Every sequence between the first and last live message has a 24-byte [`Slot`] (subject id,
//! stored size, a store-defined `aux` word — the file offset for the file store — and time),
//! grouped in chunks of 256. A chunk whose messages are all gone is freed, so interior
//! deletions cost nothing once a whole chunk is empty, and each chunk's live count makes the
//! unfiltered pending count a walk over chunks rather than messages. Subject names and the
//! per-subject sequence lists live in [`SubjectTable`].

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use super::subject_index::{SubjectKey, SubjectTable};
use super::subjects::{is_literal, selects_all, subject_matches};
use super::SubjectState;

const CHUNK_BITS: u32 = 8;
const CHUNK: usize = 1 << CHUNK_BITS;
const MASK: u64 = CHUNK as u64 - 1;
/// Subject id of an empty slot.
const FREE: u32 = u32::MAX;
/// With more subjects than this, a wildcard `next_matching` first scans messages forward.
const FEW_SUBJECTS: usize = 64;
/// How many live messages that forward scan looks at before asking every subject instead.
const SCAN_LIMIT: usize = 4096;

/// What the index keeps per live sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slot {
    /// Subject id in the [`SubjectTable`].
    pub(crate) subj: u32,
    /// Bytes the message counts for in `StoreState::bytes`.
    pub(crate) size: u32,
    /// Store-defined (the file store keeps the record's offset in its segment).
    pub(crate) aux: u32,
    /// Unix nanoseconds.
    pub(crate) time: i64,
}

impl Slot {
    const EMPTY: Slot = Slot {
        subj: FREE,
        size: 0,
        aux: 0,
        time: 0,
    };

    fn is_live(&self) -> bool {
        self.subj != FREE
    }
}

struct Chunk {
    slots: Box<[Slot]>,
    live: u32,
}

/// What a purge should remove.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PurgePlan {
    /// Every live sequence below this one (and move the next sequence up to it if higher).
    Front(u64),
    /// Exactly these sequences, ascending.
    Seqs(Vec<u64>),
}

/// Live sequences, their slots and the per-subject lists.
#[derive(Default)]
pub(crate) struct Index {
    /// Chunk number (`seq >> CHUNK_BITS`) of `chunks[0]`.
    base: u64,
    chunks: VecDeque<Option<Chunk>>,
    subjects: SubjectTable,
    msgs: u64,
    bytes: u64,
}

impl Index {
    /// Live messages.
    pub(crate) fn msgs(&self) -> u64 {
        self.msgs
    }

    /// Sum of the live messages' sizes.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The per-subject table.
    pub(crate) fn subjects(&self) -> &SubjectTable {
        &self.subjects
    }

    /// Makes room for `n` subjects (bulk loading knows roughly how many are coming).
    pub(crate) fn reserve_subjects(&mut self, n: usize) {
        self.subjects.reserve(n);
    }

    fn locate(&self, seq: u64) -> Option<(usize, usize)> {
        let chunk = (seq >> CHUNK_BITS).checked_sub(self.base)?;
        let chunk = usize::try_from(chunk).ok()?;
        (chunk < self.chunks.len()).then_some((chunk, (seq & MASK) as usize))
    }

    /// The slot of a live sequence.
    pub(crate) fn get(&self, seq: u64) -> Option<Slot> {
        let (i, j) = self.locate(seq)?;
        let slot = self.chunks[i].as_ref()?.slots[j];
        slot.is_live().then_some(slot)
    }

    /// The subject of a slot returned by this index.
    pub(crate) fn subject(&self, slot: &Slot) -> &str {
        self.subjects.name(slot.subj)
    }

    /// Makes `seq` live (replacing whatever it held).
    pub(crate) fn insert(&mut self, seq: u64, subject: &str, size: u32, aux: u32, time: i64) {
        self.insert_key(seq, SubjectKey::new(subject), size, aux, time);
    }

    /// [`Index::insert`] with the subject's hash already worked out; returns the subject's id.
    pub(crate) fn insert_key(
        &mut self,
        seq: u64,
        subject: SubjectKey<'_>,
        size: u32,
        aux: u32,
        time: i64,
    ) -> u32 {
        self.remove(seq);
        let subj = self.subjects.add(subject, seq);
        self.place(seq, subj, size, aux, time);
        subj
    }

    /// [`Index::insert`] on the subject with id `subj`, which an earlier insert returned: no
    /// name lookup. False (and nothing done) if that subject has no live message left.
    pub(crate) fn insert_as(
        &mut self,
        seq: u64,
        subj: u32,
        size: u32,
        aux: u32,
        time: i64,
    ) -> bool {
        self.remove(seq);
        if !self.subjects.add_to(subj, seq) {
            return false;
        }
        self.place(seq, subj, size, aux, time);
        true
    }

    fn place(&mut self, seq: u64, subj: u32, size: u32, aux: u32, time: i64) {
        let chunk_no = seq >> CHUNK_BITS;
        if self.chunks.is_empty() {
            self.base = chunk_no;
        }
        while chunk_no < self.base {
            self.chunks.push_front(None);
            self.base -= 1;
        }
        let i = (chunk_no - self.base) as usize;
        while self.chunks.len() <= i {
            self.chunks.push_back(None);
        }
        let chunk = self.chunks[i].get_or_insert_with(|| Chunk {
            slots: vec![Slot::EMPTY; CHUNK].into_boxed_slice(),
            live: 0,
        });
        chunk.slots[(seq & MASK) as usize] = Slot {
            subj,
            size,
            aux,
            time,
        };
        chunk.live += 1;
        self.msgs += 1;
        self.bytes += u64::from(size);
    }

    /// Makes `seq` not live; returns its slot if it was.
    pub(crate) fn remove(&mut self, seq: u64) -> Option<Slot> {
        let (i, j) = self.locate(seq)?;
        let chunk = self.chunks[i].as_mut()?;
        let slot = chunk.slots[j];
        if !slot.is_live() {
            return None;
        }
        chunk.slots[j] = Slot::EMPTY;
        chunk.live -= 1;
        if chunk.live == 0 {
            self.chunks[i] = None;
            self.trim();
        }
        self.subjects.remove(slot.subj, seq);
        self.msgs -= 1;
        self.bytes -= u64::from(slot.size);
        Some(slot)
    }

    /// Removes every live sequence below `floor`, calling `f` for each; returns how many.
    pub(crate) fn remove_below(&mut self, floor: u64, mut f: impl FnMut(u64, Slot)) -> u64 {
        let mut removed = 0;
        while let Some(front) = self.chunks.front_mut() {
            let start = self.base << CHUNK_BITS;
            if start >= floor {
                break;
            }
            if let Some(chunk) = front {
                let end = (floor - start).min(CHUNK as u64) as usize;
                for j in 0..end {
                    let slot = chunk.slots[j];
                    if slot.is_live() {
                        chunk.slots[j] = Slot::EMPTY;
                        chunk.live -= 1;
                        self.subjects.remove(slot.subj, start + j as u64);
                        self.msgs -= 1;
                        self.bytes -= u64::from(slot.size);
                        removed += 1;
                        f(start + j as u64, slot);
                    }
                }
                if chunk.live > 0 {
                    break;
                }
            }
            self.chunks.pop_front();
            self.base += 1;
        }
        self.trim();
        removed
    }

    fn trim(&mut self) {
        while matches!(self.chunks.front(), Some(None)) {
            self.chunks.pop_front();
            self.base += 1;
        }
        while matches!(self.chunks.back(), Some(None)) {
            self.chunks.pop_back();
        }
        if self.chunks.is_empty() {
            self.base = 0;
        }
    }

    /// Live sequences >= `start` with their slots, ascending.
    pub(crate) fn iter_from(&self, start: u64) -> impl Iterator<Item = (u64, Slot)> + '_ {
        let base = self.base;
        let skip =
            usize::try_from((start >> CHUNK_BITS).saturating_sub(base)).unwrap_or(usize::MAX);
        self.chunks
            .iter()
            .enumerate()
            .skip(skip)
            .filter_map(|(i, c)| c.as_ref().map(|c| (i, c)))
            .flat_map(move |(i, c)| {
                let first = (base + i as u64) << CHUNK_BITS;
                c.slots
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.is_live())
                    .map(move |(j, s)| (first + j as u64, *s))
            })
            .skip_while(move |(seq, _)| *seq < start)
    }

    /// Live sequences with their slots, newest first.
    pub(crate) fn iter_rev(&self) -> impl Iterator<Item = (u64, Slot)> + '_ {
        let base = self.base;
        self.chunks
            .iter()
            .enumerate()
            .rev()
            .filter_map(|(i, c)| c.as_ref().map(|c| (i, c)))
            .flat_map(move |(i, c)| {
                let first = (base + i as u64) << CHUNK_BITS;
                c.slots
                    .iter()
                    .enumerate()
                    .rev()
                    .filter(|(_, s)| s.is_live())
                    .map(move |(j, s)| (first + j as u64, *s))
            })
    }

    /// The stream totals, given the store's last assigned sequence and time.
    pub(crate) fn state(&self, last_seq: u64, last_time: i64) -> crate::store::StoreState {
        let first = self.first();
        let first_seq = first.map_or(last_seq + 1, |(s, _)| s);
        let msgs = self.msgs();
        crate::store::StoreState {
            msgs,
            bytes: self.bytes(),
            first_seq,
            first_time: first.map_or(0, |(_, slot)| slot.time),
            last_seq,
            last_time,
            num_deleted: if msgs == 0 {
                0
            } else {
                last_seq + 1 - first_seq - msgs
            },
            num_subjects: self.subjects().len() as u64,
            deleted: Vec::new(),
        }
    }

    /// The first live sequence.
    pub(crate) fn first(&self) -> Option<(u64, Slot)> {
        self.iter_from(0).next()
    }

    /// Live messages with sequence >= `start`, counting whichever side of `start` is shorter.
    pub(crate) fn count_from(&self, start: u64) -> u64 {
        let offset = (start >> CHUNK_BITS).saturating_sub(self.base);
        if start == 0 || offset > self.chunks.len() as u64 / 2 {
            self.count_range(start, u64::MAX)
        } else {
            self.msgs - self.count_range(0, start - 1)
        }
    }

    /// Live messages with `from <= seq <= to`: whole chunks by their counts, partial chunks
    /// slot by slot. Cost follows the number of chunks in the range.
    pub(crate) fn count_range(&self, from: u64, to: u64) -> u64 {
        if to < from || self.chunks.is_empty() {
            return 0;
        }
        let last_chunk = self.base + self.chunks.len() as u64 - 1;
        let lo = (from >> CHUNK_BITS).max(self.base);
        let hi = (to >> CHUNK_BITS).min(last_chunk);
        let mut n = 0;
        for chunk_no in lo..=hi {
            let Some(chunk) = &self.chunks[(chunk_no - self.base) as usize] else {
                continue;
            };
            let start = chunk_no << CHUNK_BITS;
            let a = from.saturating_sub(start).min(MASK) as usize;
            let b = to.saturating_sub(start).min(MASK) as usize;
            if a == 0 && b == MASK as usize {
                n += u64::from(chunk.live);
            } else {
                n += chunk.slots[a..=b].iter().filter(|s| s.is_live()).count() as u64;
            }
        }
        n
    }

    /// State of one exact subject.
    pub(crate) fn subject_state(&self, subject: &str) -> Option<SubjectState> {
        self.subjects.id(subject).map(|id| self.subjects.state(id))
    }

    /// Newest live sequence of one exact subject.
    pub(crate) fn last_seq_for_subject(&self, subject: &str) -> Option<u64> {
        let id = self.subjects.id(subject)?;
        self.subjects.seqs(id).last()
    }

    /// Every live subject matching `filter`, with its state.
    pub(crate) fn subjects_matching(&self, filter: &str) -> Vec<(String, SubjectState)> {
        self.subjects
            .matching(filter)
            .map(|id| (self.subjects.name(id).to_string(), self.subjects.state(id)))
            .collect()
    }

    /// First live sequence >= `start` whose subject matches `filter`.
    pub(crate) fn next_matching(&self, start: u64, filter: Option<&str>) -> Option<u64> {
        let filter = match filter {
            f if selects_all(f) => return self.iter_from(start).next().map(|(s, _)| s),
            Some(f) => f,
            None => return None,
        };
        if is_literal(filter) {
            let id = self.subjects.id(filter)?;
            return self.subjects.next_from(id, start);
        }
        if self.subjects.len() > FEW_SUBJECTS {
            // Matches are usually close: look at the next messages before asking each subject.
            let mut memo: FxHashMap<u32, bool> = FxHashMap::default();
            let mut seen = 0;
            for (seq, slot) in self.iter_from(start) {
                let hit = *memo
                    .entry(slot.subj)
                    .or_insert_with(|| subject_matches(filter, self.subjects.name(slot.subj)));
                if hit {
                    return Some(seq);
                }
                seen += 1;
                if seen == SCAN_LIMIT {
                    break;
                }
            }
            if seen < SCAN_LIMIT {
                return None;
            }
        }
        self.subjects
            .matching(filter)
            .filter_map(|id| self.subjects.next_from(id, start))
            .min()
    }

    /// Live messages with sequence >= `start` whose subject matches `filter`.
    pub(crate) fn count_matching(&self, start: u64, filter: Option<&str>) -> u64 {
        let filter = match filter {
            f if selects_all(f) => return self.count_from(start),
            Some(f) => f,
            None => return 0,
        };
        if is_literal(filter) {
            return self
                .subjects
                .id(filter)
                .map_or(0, |id| self.subjects.count_from(id, start));
        }
        // Ask each subject, or scan the messages: whichever set is smaller.
        let live = self.count_from(start);
        if self.subjects.len() as u64 <= live {
            return self
                .subjects
                .matching(filter)
                .map(|id| self.subjects.count_from(id, start))
                .sum();
        }
        let mut memo: FxHashMap<u32, bool> = FxHashMap::default();
        self.iter_from(start)
            .filter(|(_, slot)| {
                *memo
                    .entry(slot.subj)
                    .or_insert_with(|| subject_matches(filter, self.subjects.name(slot.subj)))
            })
            .count() as u64
    }

    /// First live sequence whose time is >= `time` (scanning from the front).
    pub(crate) fn first_at_or_after(&self, time: i64) -> Option<u64> {
        self.iter_from(0)
            .find(|(_, slot)| slot.time >= time)
            .map(|(seq, _)| seq)
    }

    /// Works out what `purge(filter, up_to, keep)` removes.
    pub(crate) fn plan_purge(
        &self,
        filter: Option<&str>,
        up_to: Option<u64>,
        keep: Option<u64>,
        last_seq: u64,
    ) -> PurgePlan {
        let keep = usize::try_from(keep.unwrap_or(0)).unwrap_or(usize::MAX);
        match filter {
            f if selects_all(f) => {
                let mut floor = up_to.unwrap_or(last_seq.saturating_add(1));
                if keep > 0 {
                    match self.iter_rev().nth(keep - 1) {
                        Some((seq, _)) => floor = floor.min(seq),
                        None => return PurgePlan::Seqs(Vec::new()),
                    }
                }
                PurgePlan::Front(floor)
            }
            Some(f) => {
                let mut seqs = Vec::new();
                for id in self.subjects.matching(f) {
                    let list = self.subjects.seqs(id);
                    let spare_from = list.len().saturating_sub(keep);
                    let below = up_to.map_or(list.len(), |u| list.count_below(u));
                    seqs.extend(list.iter().take(spare_from.min(below)));
                }
                seqs.sort_unstable();
                PurgePlan::Seqs(seqs)
            }
            None => PurgePlan::Seqs(Vec::new()),
        }
    }
}

#[cfg(test)]
#[path = "tests_index.rs"]
mod tests;
