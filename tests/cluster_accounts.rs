//! Accounts in a cluster: three in-process servers with the same `accounts {}`, clients of
//! each account spread over them (async-nats). Each account's interest and messages cross
//! routes in that account only; stream and service imports deliver once cluster-wide however
//! many servers bridge them; the system account gathers every server's answer to a ping and
//! its connect events.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use async_nats::ConnectOptions;
use bytes::Bytes;
use causeway::config::ClusterConfig;
use causeway::ServerHandle;
use common::{assert_no_msg, loopback_conf, next_msg, start, within, TIMEOUT};
use futures::StreamExt;

const ACCOUNTS: &str = r#"
accounts {
  A: {
    users: [ { user: a, password: a } ]
    exports: [ { stream: "news.>" }, { service: "svc.time" } ]
  }
  B: {
    users: [ { user: b, password: b } ]
    imports: [
      { stream: { account: A, subject: "news.>" } }
      { service: { account: A, subject: "svc.time" } }
    ]
  }
  SYS: { users: [ { user: sys, password: sys } ] }
}
system_account: SYS
"#;

fn node(routes: &[String]) -> causeway::Config {
    let cluster = ClusterConfig::loopback("acc").with_routes(routes.iter().cloned());
    loopback_conf(ACCOUNTS).with_cluster(cluster)
}

async fn three() -> Vec<ServerHandle> {
    let a = start(node(&[])).await;
    let seed = [format!("nats-route://{}", a.cluster_addr().unwrap())];
    let b = start(node(&seed)).await;
    let c = start(node(&seed)).await;
    let servers = vec![a, b, c];
    let deadline = Instant::now() + TIMEOUT;
    while servers.iter().any(|s| s.num_routes() != 2) {
        assert!(Instant::now() < deadline, "no full mesh");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    servers
}

async fn login(server: &ServerHandle, user: &str, name: &str) -> async_nats::Client {
    let opts = ConnectOptions::with_user_and_password(user.into(), user.into()).name(name);
    within(TIMEOUT, "connect", opts.connect(server.client_url()))
        .await
        .expect("connect")
}

/// Waits until `subscriber`'s interest so far is known where `publisher` is (same account).
async fn propagated(subscriber: &async_nats::Client, publisher: &async_nats::Client) {
    let subject = subscriber.new_inbox();
    let mut probe = subscriber.subscribe(subject.clone()).await.unwrap();
    subscriber.flush().await.unwrap();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        publisher
            .publish(subject.clone(), Bytes::from_static(b"probe"))
            .await
            .unwrap();
        publisher.flush().await.unwrap();
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(50), probe.next()).await {
            return;
        }
        assert!(Instant::now() < deadline, "interest never propagated");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accounts_stay_apart_and_imports_deliver_once_across_servers() {
    let servers = three().await;
    let a1 = login(&servers[0], "a", "a1").await;
    let a2 = login(&servers[1], "a", "a2").await;
    let b3 = login(&servers[2], "b", "b3").await;
    let b2 = login(&servers[1], "b", "b2").await;

    // Plain pub/sub in A across servers; B (with a catch-all) and nobody else sees it.
    let mut orders = a1.subscribe("orders.>").await.unwrap();
    let mut b_everything = b3.subscribe(">").await.unwrap();
    propagated(&a1, &a2).await;
    a2.publish("orders.1", "o".into()).await.unwrap();
    assert_eq!(next_msg(&mut orders).await.subject.as_str(), "orders.1");

    // A stream import: published in A on server 3, B's subscriber on server 2 gets it once
    // (servers 1, 2 and 3 all bridge news.> into B).
    let mut news = b2.subscribe("news.>").await.unwrap();
    propagated(&b2, &b3).await;
    let a3 = login(&servers[2], "a", "a3").await;
    a3.publish("news.today", "n".into()).await.unwrap();
    assert_eq!(next_msg(&mut news).await.subject.as_str(), "news.today");
    assert_no_msg(&mut news, Duration::from_millis(300)).await;

    // A service import: B requests on server 3, A answers on server 1; one request reaches
    // the responder and one reply the requester.
    let mut service = a1.subscribe("svc.time").await.unwrap();
    propagated(&a1, &a3).await;
    let requester = b3.clone();
    let asked = tokio::spawn(async move { requester.request("svc.time", "now?".into()).await });
    let req = next_msg(&mut service).await;
    a1.publish(req.reply.clone().unwrap(), "noon".into())
        .await
        .unwrap();
    let reply = within(TIMEOUT, "the reply", asked).await.unwrap().unwrap();
    assert_eq!(reply.payload, "noon");
    assert_no_msg(&mut service, Duration::from_millis(300)).await;

    // B's catch-all saw B's own traffic (its request, inboxes) and what was imported into B
    // (news), never A's orders.
    let mut seen = Vec::new();
    while let Ok(Some(m)) =
        tokio::time::timeout(Duration::from_millis(200), b_everything.next()).await
    {
        seen.push(m.subject.to_string());
    }
    assert!(
        seen.iter()
            .all(|s| s == "news.today" || s == "svc.time" || s.starts_with("_INBOX")),
        "{seen:?}"
    );
    assert_eq!(
        seen.iter().filter(|s| *s == "news.today").count(),
        1,
        "{seen:?}"
    );

    // The system account: a ping from server 1 is answered by all three servers, and the
    // connect event of a client of server 3 reaches a subscriber on server 1.
    let sys = login(&servers[0], "sys", "ops").await;
    let mut connects = sys.subscribe("$SYS.ACCOUNT.A.CONNECT").await.unwrap();
    let sys3 = login(&servers[2], "sys", "ops3").await;
    propagated(&sys, &sys3).await;
    let inbox = sys.new_inbox();
    let mut replies = sys.subscribe(inbox.clone()).await.unwrap();
    sys.publish_with_reply("$SYS.REQ.SERVER.PING.IDZ", inbox, "".into())
        .await
        .unwrap();
    let mut ids = HashSet::new();
    while ids.len() < 3 {
        let m = next_msg(&mut replies).await;
        let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        ids.insert(v["id"].as_str().unwrap().to_string());
    }
    let want: HashSet<String> = servers.iter().map(|s| s.server_id().to_string()).collect();
    assert_eq!(ids, want);
    let _late = login(&servers[2], "a", "late").await;
    let event = next_msg(&mut connects).await;
    let v: serde_json::Value = serde_json::from_slice(&event.payload).unwrap();
    assert_eq!(v["client"]["name"], "late");
    assert_eq!(v["server"]["id"], servers[2].server_id());
    for s in servers {
        s.shutdown().await;
    }
}
