//! HTTP monitoring (`-m` / `http_port`): `/healthz`, `/varz`, `/connz` and `/subsz` with
//! nats-server's field names, enough for harnesses that poll the server's health and version.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;

use crate::jetstream::JetStream;
use crate::protocol::info::PROTOCOL_VERSION;
use crate::server::Shared;
use crate::Error;

/// Binds the monitoring listener and serves it until shutdown; returns its address.
pub(crate) async fn start(
    shared: Arc<Shared>,
    jetstream: Option<Arc<JetStream>>,
    port: u16,
) -> Result<SocketAddr, Error> {
    let listener = crate::server::bind(shared.config.monitor_host(), port).await?;
    let addr = listener.local_addr()?;
    tracing::info!("Starting http monitor on http://{addr}");
    let tasks = shared.tasks.clone();
    tasks.spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = shared.shutdown.cancelled() => break,
                r = listener.accept() => r,
            };
            let Ok((stream, _)) = accepted else { continue };
            let (shared, js) = (shared.clone(), jetstream.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let (shared, js) = (shared.clone(), js.clone());
                    async move { Ok::<_, Infallible>(route(&shared, js.as_deref(), &req)) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

fn route(
    shared: &Shared,
    js: Option<&JetStream>,
    req: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    let body = match req.uri().path() {
        "/healthz" => json!({"status": "ok"}),
        "/varz" => varz(shared),
        "/connz" => json!({
            "server_id": shared.server_id,
            "num_connections": shared.num_connections(),
            "total": shared.num_connections(),
            "offset": 0,
            "limit": 1024,
        }),
        "/subsz" | "/subscriptionsz" => json!({
            "server_id": shared.server_id,
            "num_subscriptions": shared.num_subscriptions(),
        }),
        "/jsz" => jsz(shared, js),
        "/" => json!({"endpoints": ["/varz", "/connz", "/subsz", "/jsz", "/healthz"]}),
        _ => {
            return Response::builder()
                .status(StatusCode::NOT_FOUND)
                .body(Full::new(Bytes::from_static(b"404 page not found\n")))
                .unwrap_or_default()
        }
    };
    Response::builder()
        .header("Content-Type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_default()
}

fn jsz(shared: &Shared, js_state: Option<&JetStream>) -> serde_json::Value {
    let js = &shared.config.jetstream;
    let mut v = json!({
        "server_id": shared.server_id,
        "disabled": !js.enabled,
        "config": {
            "store_dir": js.store_dir.display().to_string(),
            "max_memory": js.max_memory,
            "max_storage": js.max_file,
        },
        "streams": js_state.map_or(0, JetStream::num_streams),
    });
    if let Some(meta) = js_state.and_then(JetStream::meta_cluster) {
        v["meta_cluster"] = meta;
    }
    v
}

fn varz(shared: &Shared) -> serde_json::Value {
    let cfg = &shared.config;
    let uptime = shared.start_time.elapsed().unwrap_or_default();
    let (cluster_name, connect_urls) = shared.cluster_view();
    let cluster = match (&cfg.cluster, cluster_name) {
        (Some(c), name) => json!({ "name": name, "addr": c.host, "cluster_port": c.port }),
        (None, _) => json!({}),
    };
    json!({
        "server_id": shared.server_id,
        "server_name": shared.server_name,
        "version": PROTOCOL_VERSION,
        "proto": 1,
        "host": cfg.host,
        "port": cfg.port,
        "max_connections": cfg.max_connections,
        "max_payload": cfg.max_payload,
        "max_pending": cfg.max_pending,
        "max_control_line": cfg.max_control_line,
        "ping_interval": cfg.ping_interval.as_nanos() as u64,
        "ping_max": cfg.ping_max,
        "write_deadline": cfg.write_deadline.as_nanos() as u64,
        "auth_required": shared.auth.required(),
        "connections": shared.num_connections(),
        "total_connections": shared.stats.total_connections.load(Ordering::Relaxed),
        "subscriptions": shared.num_subscriptions(),
        "in_msgs": shared.stats.in_msgs.load(Ordering::Relaxed),
        "in_bytes": shared.stats.in_bytes.load(Ordering::Relaxed),
        "uptime": format!("{}s", uptime.as_secs()),
        "connect_urls": connect_urls,
        "cluster": cluster,
    })
}
