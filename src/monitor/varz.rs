//! `/varz`: the server's configuration, limits and counters, with nats-server's field names
//! (durations in nanoseconds, `auth_timeout` in seconds, nested blocks always present).

use std::time::SystemTime;

use serde_json::{json, Value};

use super::format::{nanos, timestamp, uptime};
use super::process::{cores, rss_bytes};
use super::Monitor;
use crate::protocol::info::PROTOCOL_VERSION;

impl Monitor {
    pub(crate) fn varz(&self) -> Value {
        let shared = &self.shared;
        let cfg = &shared.config;
        let now = SystemTime::now();
        let totals = shared.conns.totals();
        let (in_msgs, in_bytes) = shared.stats.in_totals();
        let (_, connect_urls) = shared.cluster_view();
        let mut v = json!({
            "server_id": shared.server_id,
            "server_name": shared.server_name,
            "version": PROTOCOL_VERSION,
            "proto": 1,
            "go": format!("causeway {}", env!("CARGO_PKG_VERSION")),
            "host": cfg.host,
            "port": shared.local_addr().port(),
            "max_connections": cfg.max_connections,
            "ping_interval": nanos(cfg.ping_interval),
            "ping_max": cfg.ping_max,
            "http_host": cfg.monitor_host(),
            "http_port": self.addr.map_or(0, |a| a.port()),
            "http_base_path": "",
            "https_port": 0,
            "auth_timeout": shared.auth_timeout_secs(),
            "max_control_line": cfg.max_control_line,
            "max_payload": cfg.max_payload,
            "max_pending": cfg.max_pending,
            "cluster": self.cluster_block(),
            "gateway": {},
            "leaf": {},
            "mqtt": {},
            "websocket": self.websocket_block(),
            "jetstream": self.jetstream_block(),
            "tls_timeout": cfg.tls.as_ref().map_or(0.0, |t| t.timeout.as_secs_f64()),
            "write_deadline": nanos(cfg.write_deadline),
        });
        let counters = json!({
            "start": timestamp(shared.start_time),
            "now": timestamp(now),
            "uptime": uptime(now.duration_since(shared.start_time).unwrap_or_default()),
            "mem": rss_bytes(),
            "cores": cores(),
            "gomaxprocs": cores(),
            "cpu": self.cpu.percent(),
            "connections": shared.num_connections(),
            "total_connections": shared.conns.total(),
            "routes": self.cluster.as_ref().map_or(0, |c| c.num_routes()),
            "remotes": self.cluster.as_ref().map_or(0, |c| c.num_routes()),
            "leafnodes": 0,
            "in_msgs": in_msgs,
            "in_bytes": in_bytes,
            "in_client_msgs": in_msgs,
            "in_client_bytes": in_bytes,
            "out_msgs": totals.out_msgs,
            "out_bytes": totals.out_bytes,
            "out_client_msgs": totals.out_msgs,
            "out_client_bytes": totals.out_bytes,
            "slow_consumers": totals.slow_consumers,
            "stale_connections": totals.stale_connections,
            "stalled_clients": 0,
            "subscriptions": shared.num_subscriptions(),
            "http_req_stats": self.req_stats(),
            "config_load_time": timestamp(shared.config_loaded()),
            "slow_consumer_stats": {
                "clients": totals.slow_consumers, "routes": 0, "gateways": 0, "leafs": 0,
            },
            "stale_connection_stats": {
                "clients": totals.stale_connections, "routes": 0, "gateways": 0, "leafs": 0,
            },
        });
        if let (Some(map), Value::Object(more)) = (v.as_object_mut(), counters) {
            map.extend(more);
        }
        let flags = [
            ("auth_required", shared.auth().required()),
            ("tls_required", cfg.tls.is_some() && !cfg.allow_non_tls),
            (
                "tls_verify",
                cfg.tls.as_ref().is_some_and(|t| t.verify || t.map_users),
            ),
        ];
        for (key, on) in flags {
            if on {
                v[key] = json!(true);
            }
        }
        if !connect_urls.is_empty() {
            v["connect_urls"] = json!(connect_urls);
        }
        if cfg.max_subs > 0 {
            v["max_subscriptions"] = json!(cfg.max_subs);
        }
        if let Some(sys) = &cfg.system_account {
            v["system_account"] = json!(sys);
        }
        v
    }

    fn cluster_block(&self) -> Value {
        let Some(c) = &self.shared.config.cluster else {
            return json!({});
        };
        let (name, _) = self.shared.cluster_view();
        let mut v = json!({
            "addr": c.host,
            "cluster_port": self.cluster.as_ref().map_or(c.port, |cl| cl.local_addr().port()),
            "auth_timeout": self.shared.auth_timeout_secs(),
            "urls": c.routes.iter().map(ToString::to_string).collect::<Vec<_>>(),
        });
        if let Some(name) = name {
            v["name"] = json!(name);
        }
        if c.tls.is_some() {
            v["tls_required"] = json!(true);
            v["tls_verify"] = json!(true);
        }
        v
    }

    fn websocket_block(&self) -> Value {
        let (Some(ws), Some(addr)) = (&self.shared.config.websocket, self.shared.websocket_addr())
        else {
            return json!({});
        };
        json!({
            "host": ws.host,
            "port": addr.port(),
            "no_tls": ws.no_tls,
            "same_origin": ws.same_origin,
            "allowed_origins": ws.allowed_origins,
            "handshake_timeout": super::format::nanos(ws.handshake_timeout),
        })
    }

    /// `/varz`'s `jetstream` (and STATSZ's): config, usage, meta group.
    pub(crate) fn jetstream_block(&self) -> Value {
        let Some(js) = &self.js else {
            return json!({});
        };
        let usage = js.usage();
        let mut stats = json!({ "accounts": 1, "api": js.api_stats() });
        for key in ["memory", "storage", "reserved_memory", "reserved_storage"] {
            stats[key] = usage[key].clone();
        }
        let mut v = json!({
            "config": self.jetstream_config(),
            "stats": stats,
        });
        if let Some(meta) = js.meta_cluster() {
            v["meta"] = meta;
        }
        v
    }
}
