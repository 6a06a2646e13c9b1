//! The determinism harness: seeded streams of ops (publishes with and without `Nats-Msg-Id`,
//! TTLs and rollups, deletes, purges, expiry, config updates, consumer creates and deletes)
//! applied to a memory replica and to a file replica (whose ops first round-trip through the
//! entry codec) must leave identical messages, subject state, consumers and dedup window.
//! What replicas may not yet share is listed in the issue notes: acks and deliveries are not
//! ops, so consumer cursors are compared only as their creates left them.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{codec, Op, Rollup, Stream};
use crate::jetstream::config::{ConsumerConfig, DeliverPolicy, StreamConfig};
use crate::store::{FileStore, FileStoreOptions, MemStore};

const SUBJECTS: [&str; 4] = ["s.a", "s.b", "s.c.x", "s.c.y"];
const SECOND: i64 = 1_000_000_000;

fn config() -> StreamConfig {
    let cfg: StreamConfig = serde_json::from_str(
        r#"{"name":"D","subjects":["s.>"],"allow_rollup_hdrs":true,"allow_msg_ttl":true,
            "duplicate_window":10000000000}"#,
    )
    .unwrap();
    cfg.normalize().unwrap()
}

/// A seeded generator of plausible op streams, with its own clock.
struct Gen {
    rng: StdRng,
    now: i64,
    last_seq: u64,
}

impl Gen {
    fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            now: 1_800_000_000 * SECOND,
            last_seq: 0,
        }
    }

    fn op(&mut self) -> Op {
        self.now += self.rng.random_range(1..2 * SECOND);
        match self.rng.random_range(0..100) {
            0..=64 => self.append(),
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
            78..=82 => Op::Expire {
                before: self.now - self.rng.random_range(30 * SECOND..300 * SECOND),
            },
            83..=87 => {
                let mut cfg = config();
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
                let name = ["C1", "C2", "C3"][self.rng.random_range(0..3)].to_string();
                let config = ConsumerConfig {
                    durable_name: Some(name.clone()),
                    deliver_policy: policy,
                    filter_subject: self.rng.random_bool(0.5).then(|| "s.c.>".to_string()),
                    ..ConsumerConfig::default()
                };
                Op::ConsumerCreate {
                    name,
                    config: Box::new(config.normalize().unwrap()),
                    created: self.now,
                }
            }
            _ => Op::ConsumerDelete {
                name: ["C1", "C2", "C3"][self.rng.random_range(0..3)].to_string(),
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
        let rollup = self.rng.random_bool(0.05).then_some(Rollup::Subject);
        let len = self.rng.random_range(0..64);
        let payload = (0..len).map(|_| self.rng.random()).collect();
        self.last_seq += 1;
        Op::Append {
            subject,
            headers: (!hdrs.is_empty()).then(|| format!("NATS/1.0\r\n{hdrs}\r\n").into_bytes()),
            payload,
            time: self.now,
            msg_id,
            rollup,
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
    consumers: Vec<(String, i64, u64, u64, Vec<u64>)>,
    dedup: Vec<(String, u64, i64)>,
    last_msg_id: Option<String>,
    ttl: Vec<(i64, u64)>,
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
            .map(|c| {
                let initial = c.state.initial.iter().copied().collect();
                (
                    c.name.clone(),
                    c.created,
                    c.state.sseq,
                    c.state.dseq,
                    initial,
                )
            })
            .collect(),
        dedup,
        last_msg_id: s.last_msg_id.clone(),
        ttl: s.ttl.iter().copied().collect(),
        config: s.config.clone(),
    }
}

fn run(seed: u64, ops: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (fs, _) = FileStore::open(&dir.path().join("store"), FileStoreOptions::default()).unwrap();
    let mut file = Stream::new(config(), 1, Box::new(fs), Some(dir.path().to_path_buf()));
    let mut mem = Stream::new(config(), 1, Box::new(MemStore::new()), None);
    let mut gen = Gen::new(seed);
    let mut peak = 0;
    for i in 0..ops {
        let op = gen.op();
        let replicated = codec::decode(&codec::encode(&op)).unwrap();
        let a = mem.apply(op).map(|r| format!("{r:?}"));
        let b = file.apply(replicated).map(|r| format!("{r:?}"));
        assert_eq!(a, b, "seed {seed}, op {i}: different outcomes");
        if i % 50 == 0 {
            file.store.sync().unwrap();
            let snap = snapshot(&mem);
            peak = peak.max(snap.msgs.len());
            assert_eq!(snap, snapshot(&file), "seed {seed}, after op {i}");
        }
    }
    assert_eq!(snapshot(&mem), snapshot(&file), "seed {seed}, at the end");
    assert!(
        peak >= 10,
        "seed {seed}: the stream never held 10 messages ({peak})"
    );
}

#[test]
fn memory_and_file_replicas_stay_identical() {
    for seed in 0..20 {
        run(seed, 400);
    }
}
