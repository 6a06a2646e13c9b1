//! The library's top-level error type.

/// Errors starting or running a server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A listener could not bind its address.
    #[error("can't listen on {addr}: {source} (is the port already in use?)")]
    Bind {
        /// The address that failed.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A TLS certificate, key or CA file could not be used.
    #[error("TLS: {path}: {msg}")]
    Tls {
        /// The file (or setting) at fault.
        path: String,
        /// What is wrong with it.
        msg: String,
    },
    /// Configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// An in-process client operation failed.
    #[error(transparent)]
    Client(#[from] crate::server::ClientError),
    /// The JetStream store directory holds data causeway cannot read (nats-server's layout).
    #[error("{0}")]
    Store(String),
    /// An I/O error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
