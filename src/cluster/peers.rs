//! The registry of live routes, one per peer server (by server id): registering a route
//! after its handshake (refusing a route to oneself, another cluster's server, or a second
//! route to a peer, keeping the same one of two at both ends), gossip (every change is sent
//! as `INFO` to every peer, and peers we have no route to are dialed), and what clients are
//! told (`connect_urls`, `cluster`).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use super::info::{PeerUrl, RouteInfo};
use super::{dial, Inner};
use crate::protocol::encode;
use crate::protocol::info::PROTOCOL_VERSION;
use crate::server::{CloseReason, Outbound};

/// Why a route was refused after its handshake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Reject {
    /// The peer is this server (a routes list that names every node, this one included).
    #[error("route to self")]
    SelfRoute,
    /// Another route to this peer is kept.
    #[error("duplicate route to {0}")]
    Duplicate(String),
    /// The peer belongs to another cluster.
    #[error("cluster name mismatch: ours {ours:?}, the peer's {theirs:?}")]
    ClusterName {
        /// Our cluster name.
        ours: String,
        /// The peer's.
        theirs: String,
    },
}

/// Orders two routes to the same peer: (the dialing server's id, the dialer's token). Both
/// ends know both parts, so both keep the route with the smaller key.
pub(crate) type RouteKey = (String, u64);

/// One live route.
struct PeerRoute {
    cid: u64,
    out: Arc<Outbound>,
    key: RouteKey,
    info: RouteInfo,
    local_ip: IpAddr,
}

#[derive(Default)]
struct State {
    routes: HashMap<String, PeerRoute>,
    /// Peers learnt from gossip that a dial task is working on.
    dialing: HashSet<String>,
}

/// One live route as `/routez` shows it.
#[derive(Debug, Clone)]
pub(crate) struct RouteSummary {
    /// The route connection's id.
    pub rid: u64,
    pub remote_id: String,
    pub remote_name: String,
    /// Where the peer accepts routes.
    pub route_url: String,
    pub pending: usize,
    pub out_msgs: u64,
    pub out_bytes: u64,
}

/// The live routes.
pub(crate) struct Peers {
    state: Mutex<State>,
    /// Moves on every change of the live routes.
    changed: watch::Sender<u64>,
}

impl Peers {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::default(),
            changed: watch::channel(0).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of live routes.
    pub(crate) fn len(&self) -> usize {
        self.lock().routes.len()
    }

    /// The live routes as monitoring shows them.
    pub(crate) fn summaries(&self) -> Vec<RouteSummary> {
        self.lock()
            .routes
            .values()
            .map(|r| RouteSummary {
                rid: r.cid,
                remote_id: r.info.server_id.clone(),
                remote_name: r.info.server_name.clone(),
                route_url: r.info.route_url.clone(),
                pending: r.out.pending(),
                out_msgs: r.out.out_msgs.load(std::sync::atomic::Ordering::Relaxed),
                out_bytes: r.out.out_bytes.load(std::sync::atomic::Ordering::Relaxed),
            })
            .collect()
    }

    /// Whether a route to server `id` is live.
    pub(crate) fn is_connected(&self, id: &str) -> bool {
        self.lock().routes.contains_key(id)
    }

    /// A receiver that sees every change of the live routes.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Marks peer `id` as being dialed; false if it already is.
    pub(crate) fn start_dialing(&self, id: &str) -> bool {
        self.lock().dialing.insert(id.to_string())
    }

    /// The dial of peer `id` ended.
    pub(crate) fn stop_dialing(&self, id: &str) {
        self.lock().dialing.remove(id);
    }
}

impl Inner {
    /// Checks a route whose handshake completed and makes it the route to its peer.
    pub(crate) fn register(
        self: &Arc<Self>,
        cid: u64,
        out: &Arc<Outbound>,
        key: RouteKey,
        info: RouteInfo,
        local_ip: IpAddr,
    ) -> Result<(), Reject> {
        if info.server_id == self.my_id() {
            return Err(Reject::SelfRoute);
        }
        if let (Some(ours), Some(theirs)) = (&self.config.name, &info.cluster) {
            if ours != theirs {
                return Err(Reject::ClusterName {
                    ours: ours.clone(),
                    theirs: theirs.clone(),
                });
            }
        }
        {
            let mut st = self.peers.lock();
            if let Some(existing) = st.routes.get(&info.server_id) {
                if existing.key <= key {
                    return Err(Reject::Duplicate(info.server_id.clone()));
                }
                tracing::debug!(peer = %info.server_id, "replacing a duplicate route");
                existing.out.close(CloseReason::DuplicateRoute);
            }
            st.routes.insert(
                info.server_id.clone(),
                PeerRoute {
                    cid,
                    out: out.clone(),
                    key,
                    info: info.clone(),
                    local_ip,
                },
            );
        }
        self.routes_changed();
        self.gossip(&info);
        Ok(())
    }

    /// Forgets the route `cid` to peer `id` (if it is still the live one).
    pub(crate) fn unregister(self: &Arc<Self>, id: &str, cid: u64) {
        let removed = {
            let mut st = self.peers.lock();
            match st.routes.get(id) {
                Some(r) if r.cid == cid => st.routes.remove(id).is_some(),
                _ => false,
            }
        };
        if removed {
            self.routes_changed();
        }
    }

    /// A peer sent a new `INFO` on its live route.
    pub(crate) fn update_info(self: &Arc<Self>, cid: u64, info: RouteInfo) {
        let changed = {
            let mut st = self.peers.lock();
            match st.routes.get_mut(&info.server_id) {
                Some(r) if r.cid == cid && r.info != info => {
                    let urls_changed = r.info.connect_urls != info.connect_urls
                        || r.info.route_url != info.route_url;
                    r.info = info.clone();
                    urls_changed
                }
                _ => false,
            }
        };
        if changed {
            self.routes_changed();
        }
        self.gossip(&info);
    }

    /// Dials the servers a peer has routes to and we have not.
    fn gossip(self: &Arc<Self>, info: &RouteInfo) {
        for PeerUrl { id, url } in &info.peers {
            if id == self.my_id() || url.is_empty() || self.peers.is_connected(id) {
                continue;
            }
            if self.peers.start_dialing(id) {
                tracing::debug!(peer = %id, %url, "dialing a route learnt from {}", info.server_id);
                self.shared
                    .tasks
                    .spawn(dial::implicit(self.clone(), url.clone(), id.clone()));
            }
        }
    }

    /// After a route came or went: tell clients, tell every peer, wake waiting dialers.
    fn routes_changed(self: &Arc<Self>) {
        self.publish_view();
        let targets: Vec<(Arc<Outbound>, IpAddr)> = self
            .peers
            .lock()
            .routes
            .values()
            .map(|r| (r.out.clone(), r.local_ip))
            .collect();
        for (out, ip) in targets {
            let json = self.info_json(ip);
            out.send(|b| encode::write_info(b, &json));
        }
        self.peers.changed.send_modify(|n| *n += 1);
    }

    /// Sets the cluster name and `connect_urls` clients see: this server's client URL and
    /// every peer's.
    pub(crate) fn publish_view(&self) {
        let st = self.peers.lock();
        let any_ip = st.routes.values().next().map(|r| r.local_ip);
        let mut urls: Vec<String> = self.client_url(any_ip).into_iter().collect();
        for r in st.routes.values() {
            urls.extend(r.info.connect_urls.iter().cloned());
        }
        let name = self
            .config
            .name
            .clone()
            .or_else(|| st.routes.values().find_map(|r| r.info.cluster.clone()));
        drop(st);
        urls.sort();
        urls.dedup();
        self.shared.set_cluster_view(name, urls);
    }

    /// This server's route `INFO`, as sent on a route whose local address is `local_ip`.
    pub(crate) fn info_json(&self, local_ip: IpAddr) -> String {
        let peers = self
            .peers
            .lock()
            .routes
            .iter()
            .map(|(id, r)| PeerUrl {
                id: id.clone(),
                url: r.info.route_url.clone(),
            })
            .collect();
        let info = RouteInfo {
            server_id: self.my_id().to_string(),
            server_name: self.shared.server_name.clone(),
            cluster: self.config.name.clone(),
            route_url: self.route_url(local_ip),
            connect_urls: self.client_url(Some(local_ip)).into_iter().collect(),
            peers,
            auth_required: self.config.auth.is_some(),
            version: PROTOCOL_VERSION.to_string(),
        };
        serde_json::to_string(&info).unwrap_or_default()
    }
}
