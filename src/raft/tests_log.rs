//! The log file on its own: reopen, damage, zeros, truncate, purge, reclaim, vote and
//! committed durability.

use std::fs::OpenOptions;
use std::path::Path;

use openraft::{CommittedLeaderId, EntryPayload};

use super::log::LogError;
use super::log_file::{LogFile, LOG_FILE, RECLAIM_AT};
use super::meta::LOG_META;
use super::{Entry, LogId, Vote};

fn id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn entry(term: u64, index: u64) -> Entry {
    Entry {
        log_id: id(term, index),
        payload: EntryPayload::Normal(format!("e{index}").into_bytes()),
    }
}

fn entries(term: u64, from: u64, to: u64) -> Vec<Entry> {
    (from..=to).map(|i| entry(term, i)).collect()
}

fn open(dir: &Path) -> LogFile {
    LogFile::open(dir, RECLAIM_AT).unwrap()
}

/// The (term, index) of every live entry.
fn ids(log: &LogFile) -> Vec<(u64, u64)> {
    let all = log.read(0, u64::MAX).unwrap();
    all.iter()
        .map(|e| (e.log_id.leader_id.term, e.log_id.index))
        .collect()
}

fn span(term: u64, from: u64, to: u64) -> Vec<(u64, u64)> {
    (from..=to).map(|i| (term, i)).collect()
}

fn set_len(dir: &Path, len: u64) {
    let f = OpenOptions::new()
        .write(true)
        .open(dir.join(LOG_FILE))
        .unwrap();
    f.set_len(len).unwrap();
}

#[test]
fn appended_entries_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    assert_eq!(log.last(), None);
    log.append(&entries(1, 1, 4)).unwrap();
    log.append(&entries(1, 5, 10)).unwrap();
    drop(log);
    let log = open(dir.path());
    assert_eq!(ids(&log), span(1, 1, 10));
    assert_eq!(log.last(), Some(id(1, 10)));
    assert_eq!(log.read(3, 6).unwrap(), entries(1, 3, 5));
    assert_eq!(log.read(11, 20).unwrap(), vec![]);
}

#[test]
fn a_torn_tail_is_cut_and_appends_go_on_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    log.append(&entries(1, 1, 5)).unwrap();
    let size = log.size();
    drop(log);
    set_len(dir.path(), size - 3);
    let mut log = open(dir.path());
    assert_eq!(ids(&log), span(1, 1, 4));
    log.append(&entries(2, 5, 6)).unwrap();
    drop(log);
    let log = open(dir.path());
    assert_eq!(ids(&log), [span(1, 1, 4), span(2, 5, 6)].concat());
}

#[test]
fn a_damaged_record_ends_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    log.append(&entries(1, 1, 2)).unwrap();
    let two = log.size();
    log.append(&entries(1, 3, 5)).unwrap();
    drop(log);
    let path = dir.path().join(LOG_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[two as usize + 20] ^= 0x40; // inside entry 3's body
    std::fs::write(&path, &bytes).unwrap();
    let log = open(dir.path());
    assert_eq!(ids(&log), span(1, 1, 2));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), two);
}

#[test]
fn a_zero_tail_is_unwritten_space_not_damage() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    log.append(&entries(1, 1, 3)).unwrap();
    let size = log.size();
    drop(log);
    set_len(dir.path(), size + 100_000);
    let mut log = open(dir.path());
    assert_eq!(ids(&log), span(1, 1, 3));
    assert_eq!(log.size(), size);
    // Nothing was cut: the reserved zeros are still there; the next append lands at `size`.
    let len = std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len();
    assert_eq!(len, size + 100_000);
    log.append(&entries(1, 4, 4)).unwrap();
    drop(log);
    assert_eq!(ids(&open(dir.path())), span(1, 1, 4));
}

#[test]
fn truncate_then_append_replaces_the_suffix() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    log.append(&entries(1, 1, 10)).unwrap();
    log.truncate(6).unwrap();
    assert_eq!(log.last(), Some(id(1, 5)));
    log.append(&entries(2, 6, 8)).unwrap();
    drop(log);
    let mut log = open(dir.path());
    assert_eq!(ids(&log), [span(1, 1, 5), span(2, 6, 8)].concat());
    log.truncate(1).unwrap();
    assert_eq!(log.last(), None);
    drop(log);
    assert_eq!(ids(&open(dir.path())), vec![]);
}

#[test]
fn entries_must_go_above_the_last() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    log.append(&entries(1, 1, 3)).unwrap();
    let err = log.append(&entries(2, 3, 3)).unwrap_err();
    assert!(matches!(err, LogError::Order { after: 3, got: 3 }), "{err}");
    assert_eq!(ids(&log), span(1, 1, 3));
}

#[test]
fn purge_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    log.append(&entries(1, 1, 10)).unwrap();
    log.purge(id(1, 4)).unwrap();
    assert_eq!(log.purged(), Some(id(1, 4)));
    assert_eq!(ids(&log), span(1, 5, 10));
    drop(log);
    let mut log = open(dir.path());
    assert_eq!(log.purged(), Some(id(1, 4)));
    assert_eq!(ids(&log), span(1, 5, 10));
    assert_eq!(log.read(0, 6).unwrap(), entries(1, 5, 5));
    // Purging past the end (a snapshot was installed) empties the log.
    log.purge(id(3, 20)).unwrap();
    assert_eq!((log.last(), log.size()), (Some(id(3, 20)), 0));
    drop(log);
    let mut log = open(dir.path());
    assert_eq!(
        (log.purged(), log.last()),
        (Some(id(3, 20)), Some(id(3, 20)))
    );
    log.append(&entries(3, 21, 22)).unwrap();
    drop(log);
    assert_eq!(ids(&open(dir.path())), span(3, 21, 22));
}

#[test]
fn a_large_purged_prefix_is_reclaimed() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = LogFile::open(dir.path(), 200).unwrap();
    log.append(&entries(1, 1, 20)).unwrap();
    let before = log.size();
    log.purge(id(1, 5)).unwrap();
    assert_eq!(log.size(), before, "the dead prefix is still small");
    log.purge(id(1, 15)).unwrap();
    assert!(log.size() < before / 3, "{} of {before}", log.size());
    assert_eq!(ids(&log), span(1, 16, 20));
    log.append(&entries(1, 21, 21)).unwrap();
    drop(log);
    // A rewrite interrupted before its rename leaves a temporary file: dropped at open.
    std::fs::write(dir.path().join("raft-log.tmp"), b"partial").unwrap();
    let log = LogFile::open(dir.path(), 200).unwrap();
    assert_eq!(ids(&log), span(1, 16, 21));
    assert!(!dir.path().join("raft-log.tmp").exists());
}

#[test]
fn vote_and_committed_survive_reopen_and_damage_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    assert_eq!((log.vote(), log.committed()), (None, None));
    let vote = Vote::new(3, 2);
    log.save_vote(vote).unwrap();
    log.save_committed(Some(id(3, 7))).unwrap();
    drop(log);
    let mut log = open(dir.path());
    assert_eq!((log.vote(), log.committed()), (Some(vote), Some(id(3, 7))));
    let voted = Vote::new_committed(4, 1);
    log.save_vote(voted).unwrap();
    drop(log);
    assert_eq!(open(dir.path()).vote(), Some(voted));
    // A vote that cannot be read back must not be taken for "never voted".
    let path = dir.path().join(LOG_META);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    assert!(LogFile::open(dir.path(), RECLAIM_AT).is_err());
}
