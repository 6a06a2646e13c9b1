//! The determinism harness: seeded streams of ops (publishes with and without `Nats-Msg-Id`,
//! TTLs, rollups and message schedules (and the fired messages that move or purge them),
//! deletes, purges, max_age and TTL expiry (with subject delete markers),
//! config updates, consumer creates and deletes,
//! deliveries, acks and terms, expected-last-sequence/-subject-sequence/-msg-id conditions met
//! and unmet, on limits and interest streams) applied to a memory replica and
//! to a file replica (whose ops first round-trip through the entry codec) must leave identical
//! messages, subject state, consumer state (cursor, pending, redeliveries) and dedup window.
//! A third, file replica "crashes" now and then (dropped without a shutdown after its store
//! synced and its journal was written, as after kill -9) and is reopened from disk: its
//! messages and consumer state must match too. Its dedup window, last msg id and TTL index are
//! rebuilt from the stored messages, which cannot be exact (an id whose message was deleted
//! inside the window is forgotten, as on nats-server; the harness found that this changes later
//! `Expected-Last-Msg-Id` outcomes), so after each reopen they are not compared but taken from
//! the surviving replica, as a snapshot install would; making them durable with the data is an
//! open item of the replication issue.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{codec, Expect, Op, Rollup, Stream};
use crate::jetstream::config::{AckPolicy, ConsumerConfig, DeliverPolicy, Retention, StreamConfig};
use crate::jetstream::consumer::{AckKind, Deliveries, Sent};
use crate::store::{FileStore, FileStoreOptions, MemStore};

const SUBJECTS: [&str; 4] = ["s.a", "s.b", "s.c.x", "s.c.y"];
const SECOND: i64 = 1_000_000_000;

fn config(retention: Retention) -> StreamConfig {
    let mut cfg: StreamConfig = serde_json::from_str(
        r#"{"name":"D","subjects":["s.>"],"allow_rollup_hdrs":true,"allow_msg_ttl":true,
            "allow_msg_schedules":true,
            "duplicate_window":10000000000,"subject_delete_marker_ttl":5000000000}"#,
    )
    .unwrap();
    cfg.retention = retention;
    cfg.normalize().unwrap()
}

const CONSUMERS: [&str; 3] = ["C1", "C2", "C3"];

/// A seeded generator of plausible op streams, with its own clock.
struct Gen {
    rng: StdRng,
    now: i64,
    last_seq: u64,
    dseq: u64,
    retention: Retention,
}

impl Gen {
    fn new(seed: u64, retention: Retention) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            now: 1_800_000_000 * SECOND,
            last_seq: 0,
            dseq: 0,
            retention,
        }
    }

    fn consumer(&mut self) -> String {
        CONSUMERS[self.rng.random_range(0..3)].to_string()
    }

    fn op(&mut self) -> Op {
        self.now += self.rng.random_range(1..2 * SECOND);
        match self.rng.random_range(0..133) {
            0..=64 => self.append(),
            130..=132 => Op::ConsumerReset {
                consumer: self.consumer(),
                seq: self.rng.random_range(1..=self.last_seq + 1),
            },
            100..=114 => self.delivered(),
            115..=129 => Op::Ack {
                consumer: self.consumer(),
                seq: self.rng.random_range(1..=self.last_seq + 1),
                kind: if self.rng.random_bool(0.8) {
                    AckKind::Ack
                } else {
                    AckKind::Term
                },
            },
            65..=72 => Op::Delete {
                seq: self.rng.random_range(1..=self.last_seq + 2),
            },
            73..=77 => Op::Purge {
                filter: self
                    .rng
                    .random_bool(0.5)
                    .then(|| SUBJECTS[self.rng.random_range(0..4)].to_string()),
                seq: self
                    .rng
                    .random_bool(0.3)
                    .then(|| self.rng.random_range(1..=self.last_seq + 1)),
                keep: self
                    .rng
                    .random_bool(0.3)
                    .then(|| self.rng.random_range(0..3)),
            },
            78..=80 => Op::Expire {
                before: self.now - self.rng.random_range(30 * SECOND..300 * SECOND),
            },
            81..=82 => Op::ExpireTtl { now: self.now },
            83..=87 => {
                let mut cfg = config(self.retention);
                cfg.max_msgs_per_subject = [-1, 2, 5][self.rng.random_range(0..3)];
                cfg.max_msgs = [-1, 20, 50][self.rng.random_range(0..3)];
                Op::UpdateConfig(Box::new(cfg))
            }
            88..=95 => {
                let policy = [
                    DeliverPolicy::All,
                    DeliverPolicy::Last,
                    DeliverPolicy::New,
                    DeliverPolicy::LastPerSubject,
                ][self.rng.random_range(0..4)];
                let name = self.consumer();
                let ack_policy = [AckPolicy::Explicit, AckPolicy::All, AckPolicy::None]
                    [self.rng.random_range(0..3)];
                let config = ConsumerConfig {
                    durable_name: Some(name.clone()),
                    deliver_policy: policy,
                    ack_policy,
                    // (Last per subject needs a filter.)
                    filter_subject: (policy == DeliverPolicy::LastPerSubject
                        || self.rng.random_bool(0.5))
                    .then(|| "s.c.>".to_string()),
                    ..ConsumerConfig::default()
                };
                Op::ConsumerCreate {
                    name,
                    config: Box::new(config.normalize().unwrap()),
                    created: self.now,
                }
            }
            _ => Op::ConsumerDelete {
                name: self.consumer(),
            },
        }
    }

    /// A plausible delivery batch: a few new or repeated deliveries, maybe one given up.
    fn delivered(&mut self) -> Op {
        let mut sent = Vec::new();
        for _ in 0..self.rng.random_range(0..4) {
            self.dseq += 1;
            sent.push(Sent {
                sseq: self.rng.random_range(1..=self.last_seq + 1),
                dseq: self.dseq,
                count: self.rng.random_range(1..=3),
                time: self.now,
            });
        }
        let dropped = if self.rng.random_bool(0.2) {
            vec![self.rng.random_range(1..=self.last_seq + 1)]
        } else {
            Vec::new()
        };
        Op::Delivered {
            consumer: self.consumer(),
            deliveries: Deliveries {
                cursor: sent.iter().map(|s| s.sseq).max().unwrap_or(0),
                dseq: self.dseq,
                initial_taken: self.rng.random_range(0..2),
                sent,
                dropped,
            },
        }
    }

    fn append(&mut self) -> Op {
        let subject = SUBJECTS[self.rng.random_range(0..4)].to_string();
        let msg_id = self
            .rng
            .random_bool(0.3)
            .then(|| format!("id{}", self.rng.random_range(0..40)));
        let mut hdrs = String::new();
        if let Some(id) = &msg_id {
            hdrs.push_str(&format!("Nats-Msg-Id: {id}\r\n"));
        }
        if self.rng.random_bool(0.1) {
            hdrs.push_str(&format!("Nats-TTL: {}s\r\n", self.rng.random_range(1..30)));
        }
        if self.rng.random_bool(0.08) {
            let pattern = match self.rng.random_range(0..3) {
                0 => format!("@every {}s", self.rng.random_range(1..20)),
                1 => format!("@at {}", crate::jetstream::time::rfc3339(self.now + SECOND)),
                _ => "*/5 * * * * *".to_string(),
            };
            hdrs.push_str(&format!(
                "Nats-Schedule: {pattern}\r\nNats-Schedule-Target: s.b\r\n"
            ));
        } else if self.rng.random_bool(0.05) {
            // What a schedule fired: it moves the schedule on, or purges it.
            let next = match self.rng.random_bool(0.5) {
                true => "purge".to_string(),
                false => crate::jetstream::time::rfc3339(self.now + 3 * SECOND),
            };
            let scheduler = SUBJECTS[self.rng.random_range(0..4)];
            hdrs.push_str(&format!(
                "Nats-Scheduler: {scheduler}\r\nNats-Schedule-Next: {next}\r\n"
            ));
        }
        let rollup = self.rng.random_bool(0.05).then_some(Rollup::Subject);
        let len = self.rng.random_range(0..64);
        let payload = (0..len).map(|_| self.rng.random()).collect();
        // Now and then a condition on the stream, met or not (the generator's idea of the last
        // sequence runs ahead of the stream's when appends are refused or de-duplicated).
        let near = |g: &mut Self| g.last_seq.saturating_sub(g.rng.random_range(0..3));
        let expect = Expect {
            last_seq: self.rng.random_bool(0.05).then(|| near(self)),
            last_subject_seq: self.rng.random_bool(0.05).then(|| near(self)),
            last_subject: self
                .rng
                .random_bool(0.02)
                .then(|| SUBJECTS[self.rng.random_range(0..4)].to_string()),
            last_msg_id: self
                .rng
                .random_bool(0.03)
                .then(|| format!("id{}", self.rng.random_range(0..40))),
        };
        self.last_seq += 1;
        Op::Append {
            // The harness assigns it from the leader's state (see `assign`).
            seq: 0,
            subject,
            headers: (!hdrs.is_empty()).then(|| format!("NATS/1.0\r\n{hdrs}\r\n").into_bytes()),
            payload,
            time: self.now,
            msg_id,
            rollup,
            expect,
        }
    }
}

/// One stored message: seq, subject, payload, headers, time.
type Stored = (u64, String, Vec<u8>, Option<Vec<u8>>, i64);

/// Everything two replicas must agree on.
#[derive(Debug, PartialEq)]
struct Snapshot {
    msgs: Vec<Stored>,
    first_seq: u64,
    last_seq: u64,
    subjects: Vec<(String, crate::store::SubjectState)>,
    consumers: Vec<(String, i64, crate::jetstream::consumer::ConsumerState)>,
    dedup: Vec<(String, u64, i64)>,
    last_msg_id: Option<String>,
    ttl: Vec<(i64, u64)>,
    schedules: Vec<(String, i64, u64)>,
    config: StreamConfig,
}

fn snapshot(s: &Stream) -> Snapshot {
    let mut msgs = Vec::new();
    let mut seq = 0;
    while let Some(next) = s.store.next_seq_matching(seq, None) {
        let m = s.store.get(next).unwrap().unwrap();
        msgs.push((
            m.seq,
            m.subject,
            m.payload.to_vec(),
            m.headers.map(|h| h.to_vec()),
            m.time,
        ));
        seq = next + 1;
    }
    let st = s.store.state();
    let mut subjects = s.store.subjects_matching(">");
    subjects.sort_by(|a, b| a.0.cmp(&b.0));
    let mut dedup: Vec<(String, u64, i64)> = s
        .dedup
        .ids
        .iter()
        .map(|(id, &(seq, t))| (id.clone(), seq, t))
        .collect();
    dedup.sort();
    Snapshot {
        msgs,
        first_seq: st.first_seq,
        last_seq: st.last_seq,
        subjects,
        consumers: s
            .consumers
            .values()
            .map(|c| (c.name.clone(), c.created, c.state().clone()))
            .collect(),
        dedup,
        last_msg_id: s.last_msg_id.clone(),
        ttl: s.ttl.iter().copied().collect(),
        // Entries whose message is gone are inert (firing drops them); a rebuilt index has none.
        schedules: s
            .schedules
            .export()
            .into_iter()
            .filter(|(_, _, seq)| s.store.get(*seq).is_ok_and(|m| m.is_some()))
            .collect(),
        config: s.config.clone(),
    }
}

/// What a reopened replica must match: everything but the rebuilt dedup window, TTL index and
/// schedules.
fn durable_part(s: &Stream) -> Snapshot {
    Snapshot {
        dedup: Vec::new(),
        last_msg_id: None,
        ttl: Vec::new(),
        // Rebuilt from what is stored: an older schedule left under a plain message that was
        // deleted since comes back (as on nats-server, whose index is rebuilt the same way).
        schedules: Vec::new(),
        ..snapshot(s)
    }
}

fn open_file_replica(dir: &std::path::Path, cfg: StreamConfig) -> Stream {
    let (fs, _) = FileStore::open(&dir.join("store"), FileStoreOptions::default()).unwrap();
    let mut s = Stream::new(cfg, 1, Box::new(fs), Some(dir.to_path_buf()));
    s.load_consumers();
    s
}

/// After each op, what the runner does with a batch: a new or changed consumer is snapshotted,
/// the journal written, now and then compacted.
fn like_the_runner(s: &mut Stream, op_was_create: bool, compact: bool) {
    if op_was_create {
        s.persist_consumers().unwrap();
    }
    s.write_journal(false).unwrap();
    if compact {
        s.compact_journal().unwrap();
    }
}

/// Gives an append the sequence a leader would assign from its applied state: nearly always
/// the next one; now and then one behind (a replayed append: skipped) or ahead (a leader that
/// ran past a refused op: refused), which every replica must treat alike.
fn assign(op: &mut Op, leader: &Stream, rng: &mut StdRng) {
    if let Op::Append { seq, .. } = op {
        let next = leader.store.last_seq() + 1;
        *seq = match rng.random_range(0..100) {
            0 => next.saturating_sub(1),
            1 => next + 1,
            _ => next,
        };
    }
}

/// Runs one seed; returns the most pending acks any consumer had.
fn run(seed: u64, ops: usize, retention: Retention) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let crash_dir = tempfile::tempdir().unwrap();
    let mut file = open_file_replica(dir.path(), config(retention));
    let mut mem = Stream::new(config(retention), 1, Box::new(MemStore::new()), None);
    let mut crashing = open_file_replica(crash_dir.path(), config(retention));
    let mut gen = Gen::new(seed, retention);
    let mut peak = 0;
    let mut pending_peak = 0;
    let mut previous: Option<(u64, Op)> = None;
    // Its own generator, so the op stream is the same as without sequence faults and replays.
    let mut side = StdRng::seed_from_u64(!seed);
    for i in 0..ops {
        let index = i as u64 + 1;
        let mut op = gen.op();
        assign(&mut op, &mem, &mut side);
        let creates = matches!(op, Op::ConsumerCreate { .. });
        let replicated = codec::decode(&codec::encode(&op)).unwrap();
        let a = mem.apply_at(index, op.clone()).map(|r| format!("{r:?}"));
        let b = file.apply_at(index, replicated).map(|r| format!("{r:?}"));
        let c = crashing
            .apply_at(index, op.clone())
            .map(|r| format!("{r:?}"));
        assert_eq!(a, b, "seed {seed}, op {i}: different outcomes");
        assert_eq!(
            a, c,
            "seed {seed}, op {i}: different outcomes after a crash"
        );
        // A replayed entry (at or below the applied index) changes nothing anywhere.
        if let Some((at, again)) = previous.replace((index, op)) {
            if side.random_bool(0.05) {
                let before = snapshot(&mem);
                for r in [&mut mem, &mut file, &mut crashing] {
                    let replayed = r.apply_at(at, again.clone()).map(|r| format!("{r:?}"));
                    assert_eq!(replayed, Ok("Skipped".to_string()), "seed {seed}, op {i}");
                }
                assert_eq!(
                    before,
                    snapshot(&mem),
                    "seed {seed}: a replay changed state"
                );
            }
        }
        let pending = mem.consumers.values().map(|c| c.state().pending.len());
        pending_peak = pending_peak.max(pending.max().unwrap_or(0));
        like_the_runner(&mut file, creates, false);
        like_the_runner(&mut crashing, creates, i % 97 == 0);
        if i % 50 == 0 {
            file.store.sync().unwrap();
            let snap = snapshot(&mem);
            peak = peak.max(snap.msgs.len());
            assert_eq!(snap, snapshot(&file), "seed {seed}, after op {i}");
        }
        if i % 61 == 60 {
            crashing.store.sync().unwrap();
            let cfg = crashing.config.clone();
            drop(crashing);
            crashing = open_file_replica(crash_dir.path(), cfg);
            crashing.dedup = mem.dedup.clone();
            crashing.last_msg_id = mem.last_msg_id.clone();
            assert_eq!(
                durable_part(&mem),
                durable_part(&crashing),
                "seed {seed}, reopened after op {i}"
            );
        }
    }
    assert_eq!(snapshot(&mem), snapshot(&file), "seed {seed}, at the end");
    assert_eq!((mem.applied(), file.applied()), (ops as u64, ops as u64));
    // An interest stream drops what no consumer matches, so it holds fewer.
    let least = if retention == Retention::Limits {
        10
    } else {
        5
    };
    assert!(
        peak >= least,
        "seed {seed}: the stream never held {least} messages ({peak})"
    );
    pending_peak
}

/// The generator must exercise acks: most seeds see consumers with several pending.
fn assert_acks_exercised(peaks: &[usize]) {
    let busy = peaks.iter().filter(|p| **p >= 2).count();
    assert!(
        busy * 2 > peaks.len(),
        "pending-ack peaks per seed: {peaks:?}"
    );
}

#[test]
fn memory_and_file_replicas_stay_identical() {
    let peaks: Vec<usize> = (0..20)
        .map(|seed| run(seed, 400, Retention::Limits))
        .collect();
    assert_acks_exercised(&peaks);
}

#[test]
fn interest_streams_stay_identical_too() {
    let peaks: Vec<usize> = (100..110)
        .map(|seed| run(seed, 400, Retention::Interest))
        .collect();
    assert_acks_exercised(&peaks);
}

/// A replicated stream: its leader applies consumer ops to its consumers at once and queues
/// them to propose; every replica applies the committed entries (batches, through the codec)
/// to its committed consumers. Those match the leader's, and a replica that takes over
/// starts with the leader's consumers. (Ops the leader proposes wait behind what it proposed
/// before; here what is pending commits before a consumer op applies, as when no publish is
/// in flight.)
#[test]
fn committed_consumers_follow_the_leaders() {
    use super::is_consumer_op;
    type States = Vec<(String, crate::jetstream::consumer::ConsumerState)>;
    fn states<'a>(m: impl Iterator<Item = &'a crate::jetstream::consumer::Consumer>) -> States {
        m.map(|c| (c.name.clone(), c.state().clone())).collect()
    }
    for seed in 200..210 {
        let replica = || {
            let mut s = Stream::new(
                config(Retention::Limits),
                1,
                Box::new(MemStore::new()),
                None,
            );
            s.replicated = true;
            s
        };
        let (mut leader, mut follower) = (replica(), replica());
        let mut gen = Gen::new(seed, Retention::Limits);
        let mut side = StdRng::seed_from_u64(!seed);
        let (mut index, mut batch, mut multi) = (0, Vec::<Op>::new(), 0);
        let mut commit = |leader: &mut Stream, follower: &mut Stream, batch: &mut Vec<Op>| {
            if batch.is_empty() {
                return;
            }
            index += 1;
            multi += usize::from(batch.len() > 1);
            let entries: Vec<Vec<u8>> = batch.iter().map(codec::encode).collect();
            let ops = codec::decode_ops(&codec::encode_batch(&entries)).unwrap();
            let a = leader
                .apply_all_at(index, ops)
                .into_iter()
                .map(|r| format!("{r:?}"));
            let b = follower.apply_all_at(index, std::mem::take(batch));
            let b: Vec<String> = b.into_iter().map(|r| format!("{r:?}")).collect();
            assert_eq!(a.collect::<Vec<_>>(), b, "seed {seed}, entry {index}");
        };
        for _ in 0..400 {
            let mut op = gen.op();
            if is_consumer_op(&op) {
                if batch.iter().any(|o| !is_consumer_op(o)) {
                    commit(&mut leader, &mut follower, &mut batch);
                }
                let _ = leader.apply(op);
                batch.extend(leader.take_outbox());
            } else {
                assign(&mut op, &leader, &mut side);
                batch.push(op);
            }
            if side.random_bool(0.3) {
                commit(&mut leader, &mut follower, &mut batch);
            }
        }
        commit(&mut leader, &mut follower, &mut batch);
        let live = states(leader.consumers.values());
        assert!(!live.is_empty(), "seed {seed}: no consumers");
        assert_eq!(
            live,
            states(leader.committed_consumers().values()),
            "seed {seed}"
        );
        assert_eq!(
            live,
            states(follower.committed_consumers().values()),
            "seed {seed}"
        );
        assert!(follower.consumers.is_empty());
        follower.lead();
        assert_eq!(
            live,
            states(follower.consumers.values()),
            "seed {seed}: took over"
        );
        assert_eq!(snapshot(&leader), snapshot(&follower), "seed {seed}");
        follower.follow();
        assert!(follower.consumers.is_empty());
        assert!(multi > 10, "seed {seed}: few batch entries ({multi})");
    }
}

#[test]
fn a_snapshot_restores_a_replica_exactly() {
    use crate::store::SharedStore;
    let committed = |s: &Stream| -> Vec<(String, i64, crate::jetstream::consumer::ConsumerState)> {
        s.committed_consumers()
            .values()
            .map(|c| (c.name.clone(), c.created, c.state().clone()))
            .collect()
    };
    let mut with_consumers = 0;
    for seed in 300..306 {
        let dir = tempfile::tempdir().unwrap();
        let mut leader = Stream::new(
            config(Retention::Limits),
            1,
            Box::new(MemStore::new()),
            None,
        );
        leader.replicated = true;
        let mut gen = Gen::new(seed, Retention::Limits);
        let mut side = StdRng::seed_from_u64(!seed);
        let mut follower: Option<Stream> = None;
        let mut restores = 0;
        for index in 1..=800u64 {
            let mut op = gen.op();
            assign(&mut op, &leader, &mut side);
            let a = format!("{:?}", leader.apply_all_at(index, vec![op.clone()]));
            if let Some(f) = &mut follower {
                let b = format!("{:?}", f.apply_all_at(index, vec![op]));
                assert_eq!(a, b, "seed {seed}, index {index}");
            }
            if index % 150 == 0 {
                // A fresh replica (memory, then file) restores the leader's snapshot and
                // follows the rest of the log.
                let bytes = leader.export().unwrap();
                let store: Box<dyn crate::store::MsgStore> = if restores % 2 == 0 {
                    Box::new(MemStore::new())
                } else {
                    let path = dir.path().join(format!("r{restores}"));
                    let open = move || -> Result<Box<dyn crate::store::MsgStore + Sync>, crate::store::StoreError> {
                        std::fs::create_dir_all(&path)?;
                        Ok(Box::new(FileStore::open(&path, FileStoreOptions::default())?.0))
                    };
                    Box::new(SharedStore::new(open().unwrap()).reopen_with(Box::new(open)))
                };
                let mut f = Stream::new(config(Retention::Limits), 1, store, None);
                f.replicated = true;
                f.import(&bytes).unwrap();
                assert_eq!(snapshot(&leader), snapshot(&f), "seed {seed}, at {index}");
                assert_eq!(committed(&leader), committed(&f), "seed {seed}, at {index}");
                // The schedule index as it is, stale entries too (what a new leader fires).
                assert_eq!(
                    leader.schedules.export(),
                    f.schedules.export(),
                    "seed {seed}"
                );
                assert_eq!(f.applied, index);
                with_consumers += usize::from(!committed(&f).is_empty());
                assert!(f.import(b"not a snapshot").is_err());
                follower = Some(f);
                restores += 1;
            }
        }
        let f = follower.expect("restored");
        assert_eq!(snapshot(&leader), snapshot(&f), "seed {seed}");
        assert_eq!(committed(&leader), committed(&f), "seed {seed}");
    }
    assert!(
        with_consumers > 10,
        "snapshots with consumers: {with_consumers}"
    );
}
