//! HTTP monitoring (`-m` / `http_port`) with nats-server's endpoints, field names and query
//! parameters: `/varz`, `/connz`, `/routez`, `/gatewayz`, `/leafz`, `/subsz`, `/accountz`,
//! `/jsz`, `/healthz`, and `/metrics` in the Prometheus text format. The same answers serve
//! the `$SYS.REQ.SERVER` requests of [`events`].
//!
//! Layout: [`format`] (Go's time and duration texts), [`query`] (query strings), [`connz`],
//! [`varz`], [`jsz`] (JetStream and health), [`endpoints`] (the smaller ones), [`metrics`],
//! [`events`] (system events), `process` (memory and CPU of this process).

pub(crate) mod connz;
mod endpoints;
pub(crate) mod events;

mod format;
mod jsz;
mod metrics;
mod process;
mod query;
mod varz;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::cluster::Cluster;
use crate::jetstream::JetStream;
use crate::server::Shared;
use crate::Error;
use query::Query;

/// What the endpoints read: the server, its JetStream and cluster, and the monitor's own
/// counters.
pub(crate) struct Monitor {
    shared: Arc<Shared>,
    js: Option<Arc<JetStream>>,
    cluster: Option<Cluster>,
    /// The monitoring listener's address (none: system requests only).
    addr: Option<SocketAddr>,
    /// Requests served, by path (`/varz` `http_req_stats`).
    requests: Mutex<BTreeMap<String, u64>>,
    cpu: process::CpuMeter,
}

/// An endpoint's answer: JSON, or a plain-text error with its status.
pub(crate) enum Answer {
    Json(Value),
    /// `/metrics`: the Prometheus text format.
    Text(String),
    /// `/healthz`: compact JSON with its own status.
    Health(StatusCode, Value),
    Error(StatusCode, String),
}

impl Monitor {
    pub fn new(
        shared: Arc<Shared>,
        js: Option<Arc<JetStream>>,
        cluster: Option<Cluster>,
        addr: Option<SocketAddr>,
    ) -> Arc<Self> {
        Arc::new(Self {
            shared,
            js,
            cluster,
            addr,
            requests: Mutex::default(),
            cpu: process::CpuMeter::default(),
        })
    }

    fn req_stats(&self) -> BTreeMap<String, u64> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Answers one endpoint (blocking: JetStream answers come from stream tasks).
    fn answer(&self, path: &str, query: &Query) -> Answer {
        let path = match path {
            "/subscriptionsz" => "/subsz",
            p => p,
        };
        let known = [
            "/",
            "/varz",
            "/connz",
            "/routez",
            "/gatewayz",
            "/leafz",
            "/subsz",
            "/accountz",
            "/jsz",
            "/healthz",
            "/metrics",
        ];
        if !known.contains(&path) {
            return Answer::Error(StatusCode::NOT_FOUND, "404 page not found\n".into());
        }
        *self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(path.to_string())
            .or_default() += 1;
        let result = match path {
            "/varz" => Ok(self.varz()),
            "/connz" => connz::ConnzOptions::from_query(query)
                .map_err(|e| e.0)
                .and_then(|o| connz::connz(&self.shared, &o))
                .and_then(|c| serde_json::to_value(c).map_err(|e| e.to_string())),
            "/routez" => Ok(self.routez()),
            "/gatewayz" => Ok(self.gatewayz()),
            "/leafz" => Ok(self.leafz()),
            "/subsz" => self.subsz(query),
            "/accountz" => self.accountz(query),
            "/jsz" => self.jsz(query),
            "/healthz" => return self.healthz(query),
            "/metrics" => return Answer::Text(self.metrics()),
            _ => Ok(endpoints::index()),
        };
        match result {
            Ok(v) => Answer::Json(v),
            Err(text) => Answer::Error(StatusCode::BAD_REQUEST, text),
        }
    }
}

/// Binds the monitoring listener and serves it until shutdown; returns its address.
pub(crate) async fn start(
    shared: Arc<Shared>,
    jetstream: Option<Arc<JetStream>>,
    cluster: Option<Cluster>,
    port: u16,
) -> Result<(SocketAddr, Arc<Monitor>), Error> {
    let listener = crate::server::bind(shared.config.monitor_host(), port).await?;
    let addr = listener.local_addr()?;
    tracing::info!("Starting http monitor on http://{addr}");
    let monitor = Monitor::new(shared.clone(), jetstream, cluster, Some(addr));
    let serving = monitor.clone();
    shared.tasks.spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = serving.shared.shutdown.cancelled() => break,
                r = listener.accept() => r,
            };
            let Ok((stream, _)) = accepted else { continue };
            let monitor = serving.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let monitor = monitor.clone();
                    async move { Ok::<_, Infallible>(serve(monitor, &req).await) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok((addr, monitor))
}

async fn serve(monitor: Arc<Monitor>, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let query = Query::parse(req.uri().query());
    let answer = tokio::task::spawn_blocking(move || monitor.answer(&path, &query))
        .await
        .unwrap_or_else(|e| Answer::Error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()));
    let (status, kind, body) = match answer {
        Answer::Json(v) => (
            StatusCode::OK,
            "application/json",
            serde_json::to_string_pretty(&v).unwrap_or_default(),
        ),
        Answer::Text(t) => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            t,
        ),
        Answer::Health(status, v) => (status, "application/json", v.to_string()),
        Answer::Error(status, text) => (status, "text/plain; charset=utf-8", text),
    };
    Response::builder()
        .status(status)
        .header("Content-Type", kind)
        .header("Access-Control-Allow-Origin", "*")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}
