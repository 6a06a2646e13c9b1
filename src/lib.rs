//! # causeway
//!
//! A NATS-compatible message broker that runs as the `causeway` binary or embedded in another
//! Rust program on its tokio runtime.
//!
//! ## Layout
//! - [`protocol`]: the client wire protocol — zero-copy parser, frame encoders, subject syntax,
//!   INFO/CONNECT JSON.
//! - [`server`]: the broker core — listener, connections, subject routing, delivery, auth, the
//!   in-process client. It knows nothing of JetStream or monitoring.
//! - `cluster`: routes between the servers of a cluster (core NATS interest and messages).
//! - `node`: the embeddable [`Server`] / [`ServerHandle`], which start the core, JetStream and
//!   monitoring and stop them in order.
//! - [`config`]: [`Config`] with nats-server's defaults, its config-file syntax and CLI flags.
//! - [`jetstream`]: the `$JS.API` surface, streams and consumers (state machines driven
//!   through one `apply(op)` path per stream).
//! - [`store`]: message storage — the append-only, CRC-checked segment log with sled indexes,
//!   and the in-memory store.
//! - [`monitor`]: the HTTP monitoring endpoints, `/metrics`, and the `$SYS` system events.
//! - [`signal`]: `--signal`: sending a running server reload, stop, lame duck and friends.
//! - [`logging`]: nats-server's log line format and the rotating log file.
//! - [`raft`]: Raft groups on openraft (log, state-machine adapter, group transport), for
//!   the replicated catalogue and streams.
//!
//! ## Embedding
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let server = causeway::Server::start(causeway::Config::loopback()).await?;
//! let client = server.client();
//! let reply = client.request("svc.echo", "ping".into()).await;
//! server.shutdown().await;
//! # Ok(()) }
//! ```

mod cluster;
pub mod config;
mod error;
pub mod jetstream;
mod leaf;
pub mod logging;
pub mod monitor;
mod node;
pub mod protocol;
pub mod raft;
pub mod server;
pub mod signal;
pub mod store;

pub use config::Config;
pub use error::Error;
pub use node::{Server, ServerHandle};
pub use server::{Client, ClientError, Message, Subscriber};
