//! `/metrics`: the Prometheus text format (prometheus-client), built from the same readings
//! as `/varz` and `/jsz` at each scrape: connections, messages and bytes in and out, slow
//! consumers, memory; per stream messages, bytes, first and last sequence; per
//! consumer pending, ack pending and redelivered; each replicated stream's Raft leadership
//! and, on its leader, each replica's lag;
//! and the histogram of stream commits' `fdatasync` latency.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::Value;

use super::process::rss_bytes;
use super::Monitor;

type Labels = Vec<(&'static str, String)>;

/// A counter read off a running total.
fn counter(value: u64) -> Counter {
    let c = Counter::default();
    c.inc_by(value);
    c
}

fn gauge(value: i64) -> Gauge {
    let g = Gauge::default();
    g.set(value);
    g
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

impl Monitor {
    pub(crate) fn metrics(&self) -> String {
        let mut reg = Registry::with_prefix("nats");
        self.server_metrics(&mut reg);
        if let Some(js) = &self.js {
            self.stream_metrics(&mut reg, &js.stream_details());
            reg.register(
                "jetstream_fsync_seconds",
                "Time each stream commit's fdatasync took",
                js.sync_latency(),
            );
        }
        let mut out = String::new();
        if encode(&mut out, &reg).is_err() {
            tracing::warn!("could not encode /metrics");
        }
        out
    }

    fn server_metrics(&self, reg: &mut Registry) {
        let shared = &self.shared;
        let totals = shared.conns.totals();
        let (in_msgs, in_bytes) = shared.stats.in_totals();
        let server = reg.sub_registry_with_prefix("server");
        let gauges = [
            (
                "connections",
                "Open client connections",
                shared.num_connections() as i64,
            ),
            (
                "subscriptions",
                "Subscriptions",
                shared.num_subscriptions() as i64,
            ),
            (
                "routes",
                "Live routes to other servers of the cluster",
                self.cluster.as_ref().map_or(0, |c| c.num_routes()) as i64,
            ),
            (
                "mem_bytes",
                "Resident memory of the process",
                rss_bytes() as i64,
            ),
        ];
        for (name, help, value) in gauges {
            server.register(name, help, gauge(value));
        }
        let counters = [
            (
                "connections",
                "Client connections accepted since start",
                shared.conns.total(),
            ),
            ("in_msgs", "Messages received from clients", in_msgs),
            ("in_bytes", "Bytes received from clients", in_bytes),
            ("out_msgs", "Messages sent to clients", totals.out_msgs),
            ("out_bytes", "Bytes sent to clients", totals.out_bytes),
            (
                "slow_consumers",
                "Clients closed as slow consumers",
                totals.slow_consumers,
            ),
            (
                "stale_connections",
                "Clients closed as stale",
                totals.stale_connections,
            ),
        ];
        for (name, help, value) in counters {
            server.register(name, help, counter(value));
        }
    }

    fn stream_metrics(&self, reg: &mut Registry, streams: &[Value]) {
        let family = || Family::<Labels, Gauge>::default();
        let (msgs, bytes, first, last, consumers, leader) =
            (family(), family(), family(), family(), family(), family());
        let lag = family();
        let (pending, ack_pending, redelivered, waiting) = (family(), family(), family(), family());
        for info in streams {
            let name = info["config"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let labels: Labels = vec![("stream", name.clone())];
            let state = &info["state"];
            msgs.get_or_create(&labels).set(int(&state["messages"]));
            bytes.get_or_create(&labels).set(int(&state["bytes"]));
            first.get_or_create(&labels).set(int(&state["first_seq"]));
            last.get_or_create(&labels).set(int(&state["last_seq"]));
            consumers
                .get_or_create(&labels)
                .set(int(&state["consumer_count"]));
            if let Some(l) = info["cluster"]["leader"].as_str() {
                let mine = l == self.shared.server_name;
                leader.get_or_create(&labels).set(i64::from(mine));
            }
            // On the leader: how many entries each other replica is behind.
            for r in info["cluster"]["replicas"].as_array().into_iter().flatten() {
                let peer = r["name"].as_str().unwrap_or_default().to_string();
                let labels: Labels = vec![("stream", name.clone()), ("replica", peer)];
                lag.get_or_create(&labels).set(int(&r["lag"]));
            }
            for c in info["consumer_detail"].as_array().into_iter().flatten() {
                let labels: Labels = vec![
                    ("stream", name.clone()),
                    (
                        "consumer",
                        c["name"].as_str().unwrap_or_default().to_string(),
                    ),
                ];
                pending.get_or_create(&labels).set(int(&c["num_pending"]));
                ack_pending
                    .get_or_create(&labels)
                    .set(int(&c["num_ack_pending"]));
                redelivered
                    .get_or_create(&labels)
                    .set(int(&c["num_redelivered"]));
                waiting.get_or_create(&labels).set(int(&c["num_waiting"]));
            }
        }
        let js = reg.sub_registry_with_prefix("jetstream");
        js.register("stream_messages", "Messages in the stream", msgs);
        js.register("stream_bytes", "Bytes in the stream", bytes);
        js.register("stream_first_seq", "First sequence in the stream", first);
        js.register("stream_last_seq", "Last sequence in the stream", last);
        js.register("stream_consumers", "Consumers of the stream", consumers);
        js.register(
            "stream_raft_leader",
            "1 if this server leads the replicated stream's Raft group",
            leader,
        );
        js.register(
            "stream_replica_lag",
            "Raft entries a replica is behind the leader (on the leader)",
            lag,
        );
        js.register(
            "consumer_num_pending",
            "Messages not yet delivered",
            pending,
        );
        js.register(
            "consumer_num_ack_pending",
            "Delivered messages awaiting an ack",
            ack_pending,
        );
        js.register(
            "consumer_num_redelivered",
            "Messages redelivered",
            redelivered,
        );
        js.register("consumer_num_waiting", "Pull requests waiting", waiting);
    }
}
