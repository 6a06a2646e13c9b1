//! The network glue on its own: how wire failures reach openraft, and frames that are not
//! RPCs.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::RPCError;
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, VoteRequest};
use openraft::{CommittedLeaderId, EntryPayload};

use super::net::{decode_reply, encode_rpc, Host, Network, Reply, Rpc, Wire, WireError};
use super::{Entry, LogId, Node, NodeId, Vote};

/// A wire that carries at most two entries per append and refuses votes.
struct Tight;

impl Wire for Tight {
    async fn call(&self, _target: NodeId, _group: &str, rpc: Rpc) -> Result<Reply, WireError> {
        match rpc {
            Rpc::Append(r) if r.entries.len() > 2 => Err(WireError::TooLarge),
            Rpc::Append(_) => Ok(Reply::Append(Ok(AppendEntriesResponse::Success))),
            _ => Ok(Reply::Refused("no such group".into())),
        }
    }
}

fn append(n: u64) -> AppendEntriesRequest<super::TypeConfig> {
    let entries = (1..=n)
        .map(|i| Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), i),
            payload: EntryPayload::Normal(vec![0; 8]),
        })
        .collect();
    AppendEntriesRequest {
        vote: Vote::new_committed(1, 1),
        prev_log_id: None,
        leader_commit: None,
        entries,
    }
}

fn option() -> RPCOption {
    RPCOption::new(Duration::from_secs(1))
}

#[tokio::test]
async fn wire_failures_become_the_errors_openraft_retries_on() {
    let mut net = Network::new(Arc::new(Tight), "g", 1);
    let mut peer = net.new_client(2, &Node::default()).await;
    let ok = peer.append_entries(append(2), option()).await.unwrap();
    assert_eq!(ok, AppendEntriesResponse::Success);
    match peer.append_entries(append(8), option()).await {
        Err(RPCError::PayloadTooLarge(p)) => assert_eq!(p.entries_hint(), 4),
        other => panic!("{other:?}"),
    }
    let vote = VoteRequest::new(Vote::new(2, 1), None);
    let refused = peer.vote(vote.clone(), option()).await;
    assert!(
        matches!(refused, Err(RPCError::Unreachable(_))),
        "{refused:?}"
    );
    let mut me = net.new_client(1, &Node::default()).await;
    let to_self = me.vote(vote, option()).await;
    assert!(
        matches!(to_self, Err(RPCError::Unreachable(_))),
        "{to_self:?}"
    );
}

#[tokio::test]
async fn frames_round_trip_and_bad_ones_are_refused() {
    let host = Host::new(1);
    for frame in [&b""[..], b"garbage", &[0xff; 64]] {
        let reply = decode_reply(&host.handle_frame("g", frame).await).unwrap();
        assert!(matches!(reply, Reply::Refused(_)));
    }
    let frame = encode_rpc(&Rpc::Append(append(3))).unwrap();
    let reply = decode_reply(&host.handle_frame("g", &frame).await).unwrap();
    assert!(matches!(reply, Reply::Refused(ref why) if why.contains("not open")));
    // Truncated frames of a real RPC are refused too, at every length.
    for len in 0..frame.len() {
        let reply = decode_reply(&host.handle_frame("g", &frame[..len]).await).unwrap();
        assert!(matches!(reply, Reply::Refused(_)), "at {len}");
    }
    assert!(decode_reply(b"\x09").is_err());
}
