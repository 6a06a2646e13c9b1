//! The entry codec: every op round-trips, the bytes match the golden file (so the replicated
//! format cannot drift silently; rewrite it with `CAUSEWAY_BLESS=1` when a change is meant),
//! an `Append` stays compact, and damaged entries are errors, never panics.

use super::*;
use crate::jetstream::config::{ConsumerConfig, StreamConfig};

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/src/jetstream/stream/golden/ops_v1.hex"
);

fn stream_config() -> StreamConfig {
    let cfg: StreamConfig = serde_json::from_str(
        r#"{"name":"S","subjects":["s.>"],"max_msgs_per_subject":5,"allow_rollup_hdrs":true,
            "allow_msg_ttl":true,"metadata":{"k":"v"}}"#,
    )
    .unwrap();
    cfg.normalize().unwrap()
}

fn consumer_config() -> ConsumerConfig {
    let cfg: ConsumerConfig = serde_json::from_str(
        r#"{"durable_name":"D","filter_subjects":["s.a","s.b"],"ack_policy":"explicit","ack_wait":1000000000,
            "backoff":[1000000000,2000000000],"max_deliver":3}"#,
    )
    .unwrap();
    cfg.normalize().unwrap()
}

/// One op of each kind, with the optional parts both absent and present.
pub(super) fn samples() -> Vec<(&'static str, Op)> {
    vec![
        (
            "append",
            Op::Append {
                seq: 1,
                subject: "s.a".into(),
                headers: None,
                payload: b"hello".to_vec(),
                time: 1_700_000_000_000_000_000,
                msg_id: None,
                rollup: None,
                expect: Expect::default(),
            },
        ),
        (
            "append-full",
            Op::Append {
                seq: u64::MAX,
                subject: "s.b".into(),
                headers: Some(b"NATS/1.0\r\nNats-Msg-Id: m1\r\n\r\n".to_vec()),
                payload: vec![0, 1, 2, 255],
                time: -5,
                msg_id: Some("m1".into()),
                rollup: Some(Rollup::Subject),
                expect: Expect {
                    last_seq: Some(3),
                    last_subject_seq: Some(2),
                    last_subject: Some("s.x".into()),
                    last_msg_id: Some("m0".into()),
                },
            },
        ),
        (
            "append-rollup-all",
            Op::Append {
                seq: 0,
                subject: "s.c".into(),
                headers: Some(Vec::new()),
                payload: Vec::new(),
                time: 0,
                msg_id: Some(String::new()),
                rollup: Some(Rollup::All),
                expect: Expect::default(),
            },
        ),
        ("delete", Op::Delete { seq: u64::MAX }),
        (
            "purge",
            Op::Purge {
                filter: None,
                seq: None,
                keep: None,
            },
        ),
        (
            "purge-full",
            Op::Purge {
                filter: Some("s.*".into()),
                seq: Some(10),
                keep: Some(2),
            },
        ),
        ("expire", Op::Expire { before: 42 }),
        ("expire-ttl", Op::ExpireTtl { now: -42 }),
        ("update", Op::UpdateConfig(Box::new(stream_config()))),
        (
            "consumer-create",
            Op::ConsumerCreate {
                name: "D".into(),
                config: Box::new(consumer_config()),
                created: 1_700_000_000_123_456_789,
            },
        ),
        ("consumer-delete", Op::ConsumerDelete { name: "D".into() }),
        (
            "ack",
            Op::Ack {
                consumer: "D".into(),
                seq: 7,
                kind: crate::jetstream::consumer::AckKind::Ack,
            },
        ),
        (
            "ack-term",
            Op::Ack {
                consumer: "D".into(),
                seq: u64::MAX,
                kind: crate::jetstream::consumer::AckKind::Term,
            },
        ),
        (
            "delivered",
            Op::Delivered {
                consumer: "D".into(),
                deliveries: crate::jetstream::consumer::Deliveries {
                    cursor: 9,
                    dseq: 12,
                    initial_taken: 2,
                    sent: vec![crate::jetstream::consumer::Sent {
                        sseq: 9,
                        dseq: 12,
                        count: 2,
                        time: -1,
                    }],
                    dropped: vec![3, 4],
                },
            },
        ),
        (
            "delivered-empty",
            Op::Delivered {
                consumer: String::new(),
                deliveries: crate::jetstream::consumer::Deliveries::default(),
            },
        ),
        (
            "consumer-reset",
            Op::ConsumerReset {
                consumer: "D".into(),
                seq: 42,
            },
        ),
    ]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn every_op_round_trips() {
    for (name, op) in samples() {
        let bytes = encode(&op);
        assert_eq!(bytes[0], VERSION, "{name}");
        assert_eq!(decode(&bytes).as_ref(), Ok(&op), "{name}");
    }
}

#[test]
fn entries_match_the_golden_file() {
    let mut now: String = samples()
        .iter()
        .map(|(name, op)| format!("{name} {}\n", hex(&encode(op))))
        .collect();
    now.push_str(&format!("batch {}\n", hex(&sample_batch().0)));
    if std::env::var_os("CAUSEWAY_BLESS").is_some() {
        std::fs::write(GOLDEN, &now).unwrap();
    }
    let golden = std::fs::read_to_string(GOLDEN).expect("golden file (CAUSEWAY_BLESS=1 writes it)");
    assert_eq!(
        now, golden,
        "the entry format changed: bump VERSION and keep decoding v1, or bless the file"
    );
}

/// A batch entry of the first three samples, and them.
fn sample_batch() -> (Vec<u8>, Vec<Op>) {
    let ops: Vec<Op> = samples().into_iter().take(3).map(|(_, op)| op).collect();
    let entries: Vec<Vec<u8>> = ops.iter().map(encode).collect();
    (encode_batch(&entries), ops)
}

#[test]
fn batches_and_single_ops_decode_as_lists() {
    let (bytes, ops) = sample_batch();
    assert_eq!(decode_ops(&bytes), Ok(ops.clone()));
    assert_eq!(decode_ops(&encode(&ops[1])), Ok(vec![ops[1].clone()]));
    assert_eq!(decode_ops(&encode_batch(&[])), Ok(Vec::new()));
    for cut in 2..bytes.len() {
        assert!(
            decode_ops(&bytes[..cut]).is_err(),
            "batch cut at {cut} decoded"
        );
    }
    // A batch inside a batch is not an op.
    assert_eq!(
        decode_ops(&encode_batch(&[bytes])),
        Err(CodecError::Tag(11))
    );
}

#[test]
fn an_append_is_compact() {
    let op = Op::Append {
        seq: 1,
        subject: "bench.js.x".into(),
        headers: None,
        payload: vec![b'x'; 128],
        time: 1,
        msg_id: None,
        rollup: None,
        expect: Expect::default(),
    };
    let n = encode(&op).len();
    assert!(n <= 128 + 48, "a 128-byte append encodes to {n} bytes");
}

#[test]
fn damaged_entries_are_errors() {
    for (name, op) in samples() {
        let bytes = encode(&op);
        for cut in 0..bytes.len() {
            assert!(
                decode(&bytes[..cut]).is_err(),
                "{name} cut at {cut} decoded"
            );
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(decode(&long), Err(CodecError::Trailing(1)), "{name}");
    }
    assert_eq!(decode(&[2, 1]), Err(CodecError::Version(2)));
    assert_eq!(decode(&[VERSION, 99]), Err(CodecError::Tag(99)));
    let mut bad_flag = encode(&Op::Purge {
        filter: None,
        seq: None,
        keep: None,
    });
    bad_flag[2] = 7;
    assert_eq!(decode(&bad_flag), Err(CodecError::Malformed("option flag")));
}

/// An `UpdateConfig` written before `consumer_limits` was part of the configuration's JSON
/// still decodes (the JSON inside an entry may gain fields; the framing did not change).
#[test]
fn an_older_configuration_entry_still_decodes() {
    const BEFORE: &str = "0105910100007b226e616d65223a2253222c227375626a65637473223a5b22732e3e225d2c22726574656e74696f6e223a226c696d697473222c226d61785f636f6e73756d657273223a2d312c226d61785f6d736773223a2d312c226d61785f6279746573223a2d312c226d61785f616765223a302c226d61785f6d7367735f7065725f7375626a656374223a352c226d61785f6d73675f73697a65223a2d312c2264697363617264223a226f6c64222c2273746f72616765223a2266696c65222c226e756d5f7265706c69636173223a312c226475706c69636174655f77696e646f77223a3132303030303030303030302c227365616c6564223a66616c73652c2264656e795f64656c657465223a66616c73652c2264656e795f7075726765223a66616c73652c22616c6c6f775f726f6c6c75705f68647273223a747275652c22616c6c6f775f646972656374223a66616c73652c226d6972726f725f646972656374223a66616c73652c226d65746164617461223a7b226b223a2276227d2c22616c6c6f775f6d73675f74746c223a747275657d";
    let bytes: Vec<u8> = (0..BEFORE.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&BEFORE[i..i + 2], 16).unwrap())
        .collect();
    match decode(&bytes) {
        Ok(Op::UpdateConfig(cfg)) => {
            assert_eq!(cfg.name, "S");
            assert_eq!(cfg.consumer_limits, Default::default());
        }
        other => panic!("{other:?}"),
    }
}
