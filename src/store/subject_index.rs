//! The per-subject index: each subject with live messages gets a small integer id and the sorted
//! list of its live sequences. Most removals hit the front of a list (limits, age, purges), so a
//! `VecDeque` makes them O(1); per-subject counts from a sequence are a binary search.

use std::collections::VecDeque;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::subjects::{is_literal, subject_matches};
use super::SubjectState;

/// Interned subjects and their live sequences.
#[derive(Default)]
pub(crate) struct SubjectTable {
    ids: FxHashMap<Arc<str>, u32>,
    entries: Vec<Entry>,
    free: Vec<u32>,
}

struct Entry {
    name: Arc<str>,
    seqs: VecDeque<u64>,
}

impl SubjectTable {
    /// Subjects with at least one live message.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// The id of a subject, if it has live messages.
    pub(crate) fn id(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    /// The subject with this id. Ids come from this table, so they are always in range.
    pub(crate) fn name(&self, id: u32) -> &str {
        self.entries.get(id as usize).map_or("", |e| &e.name)
    }

    /// The live sequences of a subject, oldest first.
    pub(crate) fn seqs(&self, id: u32) -> &VecDeque<u64> {
        &self.entries[id as usize].seqs
    }

    /// Records a live sequence on `name` and returns the subject's id.
    pub(crate) fn add(&mut self, name: &str, seq: u64) -> u32 {
        let id = match self.ids.get(name) {
            Some(&id) => id,
            None => {
                let name: Arc<str> = Arc::from(name);
                let entry = Entry {
                    name: name.clone(),
                    seqs: VecDeque::new(),
                };
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
                self.ids.insert(name, id);
                id
            }
        };
        let seqs = &mut self.entries[id as usize].seqs;
        match seqs.back() {
            Some(&last) if last >= seq => {
                let at = seqs.partition_point(|&s| s < seq);
                if seqs.get(at) != Some(&seq) {
                    seqs.insert(at, seq);
                }
            }
            _ => seqs.push_back(seq),
        }
        id
    }

    /// Forgets a live sequence of subject `id`; the id is freed with its last sequence.
    pub(crate) fn remove(&mut self, id: u32, seq: u64) {
        let Some(entry) = self.entries.get_mut(id as usize) else {
            return;
        };
        let seqs = &mut entry.seqs;
        if seqs.front() == Some(&seq) {
            seqs.pop_front();
        } else if seqs.back() == Some(&seq) {
            seqs.pop_back();
        } else if let Ok(at) = seqs.binary_search(&seq) {
            seqs.remove(at);
        }
        if seqs.is_empty() {
            let name = std::mem::replace(&mut entry.name, Arc::from(""));
            entry.seqs = VecDeque::new();
            self.ids.remove(&name);
            self.free.push(id);
        }
    }

    /// The state of subject `id`.
    pub(crate) fn state(&self, id: u32) -> SubjectState {
        let seqs = self.seqs(id);
        SubjectState {
            first_seq: seqs.front().copied().unwrap_or(0),
            last_seq: seqs.back().copied().unwrap_or(0),
            msgs: seqs.len() as u64,
        }
    }

    /// Ids of the live subjects matching `filter`.
    pub(crate) fn matching<'a>(&'a self, filter: &'a str) -> Box<dyn Iterator<Item = u32> + 'a> {
        if is_literal(filter) {
            Box::new(self.id(filter).into_iter())
        } else {
            Box::new(
                self.ids
                    .iter()
                    .filter(move |(name, _)| subject_matches(filter, name))
                    .map(|(_, &id)| id),
            )
        }
    }

    /// Live messages of subject `id` with sequence >= `start`.
    pub(crate) fn count_from(&self, id: u32, start: u64) -> u64 {
        let seqs = self.seqs(id);
        (seqs.len() - seqs.partition_point(|&s| s < start)) as u64
    }

    /// The first live sequence >= `start` of subject `id`.
    pub(crate) fn next_from(&self, id: u32, start: u64) -> Option<u64> {
        let seqs = self.seqs(id);
        seqs.get(seqs.partition_point(|&s| s < start)).copied()
    }
}
