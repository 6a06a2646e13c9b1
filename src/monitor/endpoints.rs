//! The smaller endpoints: `/` (the index), `/routez`, `/gatewayz`, `/leafz`, `/subsz` and
//! `/accountz`. Gateways and leaf nodes are not implemented (their configuration refuses to
//! start), so their endpoints truthfully list none.

use std::time::SystemTime;

use serde_json::{json, Value};

use super::connz::{SubDetail, DEFAULT_LIMIT};
use super::format::timestamp;
use super::query::Query;
use super::Monitor;

/// The index page's list of endpoints.
pub(super) fn index() -> Value {
    json!({
        "endpoints": ["/varz", "/connz", "/routez", "/gatewayz", "/leafz", "/subsz",
                      "/accountz", "/jsz", "/healthz", "/metrics"]
    })
}

fn now() -> String {
    timestamp(SystemTime::now())
}

impl Monitor {
    pub(crate) fn routez(&self) -> Value {
        let routes: Vec<Value> = self
            .cluster
            .as_ref()
            .map(|c| c.routes())
            .unwrap_or_default()
            .into_iter()
            .map(|r| {
                json!({
                    "rid": r.rid,
                    "remote_id": r.remote_id,
                    "remote_name": r.remote_name,
                    "route_url": r.route_url,
                    "pending_size": r.pending,
                    "out_msgs": r.out_msgs,
                    "out_bytes": r.out_bytes,
                })
            })
            .collect();
        json!({
            "server_id": self.shared.server_id,
            "server_name": self.shared.server_name,
            "now": now(),
            "num_routes": routes.len(),
            "routes": routes,
        })
    }

    pub(crate) fn gatewayz(&self) -> Value {
        json!({
            "server_id": self.shared.server_id,
            "now": now(),
            "outbound_gateways": {},
            "inbound_gateways": {},
        })
    }

    pub(crate) fn leafz(&self) -> Value {
        let leafs = self.shared.leafs.json();
        json!({
            "server_id": self.shared.server_id,
            "now": now(),
            "leafnodes": leafs.len(),
            "leafs": leafs,
        })
    }

    /// `/subsz`: the subscription count, and with `subs=true` the subscriptions (paged,
    /// optionally those matching the literal subject `test`, or of account `acc`).
    pub(crate) fn subsz(&self, q: &Query) -> Result<Value, String> {
        let with_list = q.bool("subs").map_err(|e| e.0)?;
        let offset = q.int("offset").map_err(|e| e.0)?.max(0) as usize;
        let limit = match q.int("limit").map_err(|e| e.0)? {
            n if n <= 0 => DEFAULT_LIMIT,
            n => n as usize,
        };
        let test = q.get("test").filter(|t| !t.is_empty());
        if let Some(t) = test {
            if !crate::protocol::subject::is_valid_literal_subject(t.as_bytes()) {
                return Err(format!(
                    "invalid test subject, must be valid publish subject: {t}"
                ));
            }
        }
        let account = q.get("acc").filter(|a| !a.is_empty());
        let mut v = json!({
            "server_id": self.shared.server_id,
            "now": now(),
            "num_subscriptions": self.shared.num_subscriptions(),
            "total": 0,
            "offset": offset,
            "limit": limit,
        });
        if with_list {
            let mut all: Vec<SubDetail> = Vec::new();
            for meta in self.shared.conns.open() {
                let snap = meta.snapshot(true);
                if account.is_some_and(|a| a != snap.identity.account) {
                    continue;
                }
                for s in snap.subs {
                    let matches =
                        test.is_none_or(|t| crate::protocol::subject::matches(&s.subject, t));
                    if matches {
                        all.push(SubDetail {
                            account: Some(snap.identity.account.clone()),
                            account_tag: Some(snap.identity.account.clone()),
                            subject: s.subject,
                            qgroup: s.queue,
                            sid: s.sid,
                            msgs: s.msgs,
                            max: s.max,
                            cid: snap.cid,
                        });
                    }
                }
            }
            v["total"] = json!(all.len());
            let page: Vec<SubDetail> = all.into_iter().skip(offset).take(limit).collect();
            if !page.is_empty() {
                v["subscriptions_list"] = serde_json::to_value(page).unwrap_or_default();
            }
        }
        Ok(v)
    }

    /// `/accountz`: the account names, or with `acc` one account's detail.
    pub(crate) fn accountz(&self, q: &Query) -> Result<Value, String> {
        let system = self.shared.config.system_account.clone();
        let mut v = json!({
            "server_id": self.shared.server_id,
            "now": now(),
        });
        if let Some(sys) = &system {
            v["system_account"] = json!(sys);
        }
        let mut names: Vec<String> = self.shared.accounts.keys().cloned().collect();
        names.push("$G".into());
        names.sort();
        let Some(acc) = q.get("acc").filter(|a| !a.is_empty()) else {
            v["accounts"] = json!(names);
            return Ok(v);
        };
        if !names.iter().any(|n| n == acc) {
            return Err(format!("Account {acc} does not exist"));
        }
        let conns = self
            .shared
            .conns
            .open()
            .into_iter()
            .map(|m| m.snapshot(false))
            .filter(|s| s.identity.account == acc)
            .count();
        let subs = if acc == "$G" {
            self.shared.router.count()
        } else {
            self.shared.accounts.get(acc).map_or(0, |r| r.count())
        };
        let jetstream = if acc == "$G" {
            self.js.is_some()
        } else {
            self.shared
                .config
                .accounts
                .iter()
                .any(|a| a.name == acc && a.jetstream.is_some())
                && self.shared.config.jetstream.enabled
        };
        let mut detail = json!({
            "account_name": acc,
            "update_time": timestamp(self.shared.start_time),
            "expired": false,
            "complete": true,
            "jetstream_enabled": jetstream,
            "leafnode_connections": 0,
            "client_connections": conns,
            "subscriptions": subs,
        });
        if system.as_deref() == Some(acc) {
            detail["is_system"] = json!(true);
        }
        v["account_detail"] = detail;
        Ok(v)
    }
}
