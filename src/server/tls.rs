//! TLS for client connections (rustls with the ring provider): the acceptor built from a
//! [`TlsConfig`] (certificate files checked at start, errors naming the file), the handshake
//! with its timeout, pinned certificates, and the identities a client certificate offers to
//! `verify_and_map`: its e-mail, URI and DNS names, then its subject in RFC 2253 form.
//!
//! [`serve`] runs one accepted TCP connection through nats-server's orders: INFO in the clear
//! then the upgrade (the default), TLS first, TLS first with a fallback after a short wait,
//! and `allow_non_tls`, where a client that does not upgrade stays in plaintext.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate, X509Name};

use super::client::{self, Accepted};
use super::conns::TlsDetail;
use super::Shared;
use crate::config::{HandshakeFirst, TlsConfig};
use crate::Error;

/// The first byte of a TLS record carrying a handshake (a ClientHello).
const TLS_HANDSHAKE: u8 = 0x16;

/// A configured TLS acceptor.
pub(crate) struct TlsServer {
    acceptor: TlsAcceptor,
    cfg: TlsConfig,
}

impl TlsServer {
    /// Loads the certificate, key and CA files of `cfg`; an error names the file at fault.
    pub fn new(cfg: &TlsConfig) -> Result<Arc<Self>, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions(cfg))
            .map_err(|e| tls_err("min_version", e))?;
        let builder = if cfg.verifies_clients() {
            let roots = Arc::new(client_roots(cfg.ca_file.as_deref())?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| tls_err(ca_name(cfg), e))?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let certs = load_certs(&cfg.cert_file)?;
        let key = load_key(&cfg.key_file)?;
        let config = builder
            .with_single_cert(certs, key)
            .map_err(|e| tls_err(&cfg.key_file.display().to_string(), e))?;
        Ok(Arc::new(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            cfg: cfg.clone(),
        }))
    }

    /// The configuration this acceptor was built from.
    pub fn config(&self) -> &TlsConfig {
        &self.cfg
    }

    /// Runs the server side of the handshake on `io` within the configured timeout, then
    /// checks pinned certificates. Returns the stream and, with `verify_and_map`, the
    /// identities the client certificate names.
    pub async fn handshake<S>(&self, io: S) -> io::Result<(TlsStream<S>, Option<Vec<String>>)>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let stream = tokio::time::timeout(self.cfg.timeout, self.acceptor.accept(io))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timeout"))??;
        let leaf = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.as_ref().to_vec());
        check_pinned(&self.cfg.pinned_certs, leaf.as_deref())?;
        let ids = self
            .cfg
            .map_users
            .then(|| leaf.as_deref().map(identities).unwrap_or_default());
        Ok((stream, ids))
    }
}

/// The dialing side of TLS (routes): trusts `ca_file` (or the system's roots) and presents
/// the configured certificate, so a listener that verifies peers admits it.
pub(crate) struct TlsClient {
    connector: tokio_rustls::TlsConnector,
    timeout: Duration,
    /// If non-empty, the peer's certificate must be one of these (SPKI SHA-256).
    pinned: Vec<String>,
}

impl TlsClient {
    /// Loads the files of `cfg`; an error names the file at fault.
    pub fn new(cfg: &TlsConfig) -> Result<Arc<Self>, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions(cfg))
            .map_err(|e| tls_err("min_version", e))?
            .with_root_certificates(client_roots(cfg.ca_file.as_deref())?);
        // A leaf node remote need not present a certificate (its hub may not ask for one).
        let config = if cfg.cert_file.as_os_str().is_empty() {
            builder.with_no_client_auth()
        } else {
            builder
                .with_client_auth_cert(load_certs(&cfg.cert_file)?, load_key(&cfg.key_file)?)
                .map_err(|e| tls_err(&cfg.key_file.display().to_string(), e))?
        };
        Ok(Arc::new(Self {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            timeout: cfg.timeout,
            pinned: cfg.pinned_certs.clone(),
        }))
    }

    /// Runs the client side of the handshake with `host` (a DNS name or an IP address that
    /// the peer's certificate must name), within the configured timeout.
    pub async fn connect<S>(
        &self,
        host: &str,
        io: S,
    ) -> io::Result<tokio_rustls::client::TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let name = rustls::pki_types::ServerName::try_from(host)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let stream = tokio::time::timeout(self.timeout, self.connector.connect(name, io))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timeout"))??;
        let leaf = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first());
        check_pinned(&self.pinned, leaf.map(|c| c.as_ref()))?;
        Ok(stream)
    }
}

/// Serves one accepted TCP connection of the TLS client listener.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    tls: Arc<TlsServer>,
    stream: TcpStream,
    peer: SocketAddr,
    cid: u64,
) {
    let shutdown = shared.shutdown.clone();
    let ready = tokio::select! {
        _ = shutdown.cancelled() => return,
        r = prepare(&shared, &tls, stream, peer, cid) => r,
    };
    match ready {
        Some(Ready::Plain(stream, hello)) => client::serve(shared, stream, peer, cid, hello).await,
        Some(Ready::Secure(stream, hello)) => {
            client::serve(shared, *stream, peer, cid, hello).await
        }
        None => {}
    }
}

/// A connection ready for the client protocol.
enum Ready {
    /// `allow_non_tls`: the client did not upgrade.
    Plain(TcpStream, Accepted),
    /// The handshake is done.
    Secure(Box<TlsStream<TcpStream>>, Accepted),
}

/// The handshake phase, in the order the configuration asks for; `None` if it failed.
async fn prepare(
    shared: &Shared,
    tls: &TlsServer,
    mut stream: TcpStream,
    peer: SocketAddr,
    cid: u64,
) -> Option<Ready> {
    let first = match tls.cfg.handshake_first {
        HandshakeFirst::Off => false,
        HandshakeFirst::On => true,
        HandshakeFirst::Fallback(wait) => first_byte(&stream, wait).await == Some(TLS_HANDSHAKE),
    };
    let mut hello = Accepted::plain();
    if !first {
        let mut info = bytes::BytesMut::new();
        hello.write_info(shared, cid, &peer, &mut info);
        hello = hello.info_sent();
        stream.write_all(&info).await.ok()?;
        if shared.config.allow_non_tls {
            let wait = shared.auth_timeout() + tls.cfg.timeout;
            if first_byte(&stream, wait).await != Some(TLS_HANDSHAKE) {
                // With certificates mapped to users, a client without one maps to nobody:
                // it does not fall back to a password.
                let none = tls.cfg.map_users.then(Vec::new);
                return Some(Ready::Plain(stream, hello.with_identities(none)));
            }
        }
    }
    match tls.handshake(stream).await {
        Ok((stream, ids)) => {
            let detail = session_detail(stream.get_ref().1, first);
            let hello = hello.with_identities(ids).with_tls(detail);
            Some(Ready::Secure(Box::new(stream), hello))
        }
        Err(e) => {
            tracing::debug!(%peer, "TLS handshake error: {e}");
            None
        }
    }
}

/// Waits up to `wait` for the client's first byte without consuming it.
async fn first_byte(stream: &TcpStream, wait: Duration) -> Option<u8> {
    let mut byte = [0u8; 1];
    match tokio::time::timeout(wait, stream.peek(&mut byte)).await {
        Ok(Ok(1)) => Some(byte[0]),
        _ => None,
    }
}

/// With `pinned_certs`, the peer's certificate (DER) must be one of them.
fn check_pinned(pinned: &[String], leaf: Option<&[u8]>) -> io::Result<()> {
    if pinned.is_empty()
        || leaf
            .and_then(spki_sha256)
            .is_some_and(|d| pinned.contains(&d))
    {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::PermissionDenied,
        "peer certificate is not in the pinned certificates",
    ))
}

/// The TLS versions `min_version` allows.
fn versions(cfg: &TlsConfig) -> &'static [&'static rustls::SupportedProtocolVersion] {
    static TLS13_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    if cfg.tls13_only {
        &TLS13_ONLY
    } else {
        rustls::ALL_VERSIONS
    }
}

fn tls_err(path: &str, e: impl std::fmt::Display) -> Error {
    Error::Tls {
        path: path.to_string(),
        msg: e.to_string(),
    }
}

fn ca_name(cfg: &TlsConfig) -> &str {
    cfg.ca_file
        .as_deref()
        .and_then(Path::to_str)
        .unwrap_or("system trust store")
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let name = path.display().to_string();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_err(&name, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err(&name, e))?;
    if certs.is_empty() {
        return Err(tls_err(&name, "no PEM certificate found"));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| tls_err(&path.display().to_string(), e))
}

/// The roots client certificates must chain to: `ca_file`, else the system's.
fn client_roots(ca_file: Option<&Path>) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in load_certs(path)? {
                roots
                    .add(cert)
                    .map_err(|e| tls_err(&path.display().to_string(), e))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(tls_err("system trust store", "no CA certificates found"));
            }
        }
    }
    Ok(roots)
}

/// Lower-case hex SHA-256 of a certificate's SubjectPublicKeyInfo (what `pinned_certs` holds).
pub(crate) fn spki_sha256(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.public_key().raw);
    Some(digest.as_ref().iter().map(|b| format!("{b:02x}")).collect())
}

/// The names a client certificate offers, in the order `verify_and_map` tries them: e-mail
/// addresses, URIs and DNS names from its SubjectAltName, then its subject (RFC 2253).
pub(crate) fn identities(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let mut emails = Vec::new();
    let mut uris = Vec::new();
    let mut dns = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::RFC822Name(s) => emails.push(s.to_string()),
                GeneralName::URI(s) => uris.push(s.to_string()),
                GeneralName::DNSName(s) => dns.push(s.to_string()),
                _ => {}
            }
        }
    }
    let mut ids: Vec<String> = emails.into_iter().chain(uris).chain(dns).collect();
    let subject = rfc2253(cert.subject());
    if !subject.is_empty() {
        ids.push(subject);
    }
    ids
}

/// A distinguished name as RFC 2253 writes it: last RDN first, `,` between RDNs, `+` inside
/// one, the usual short names (`CN`, `O`, `OU`, ...), dotted OIDs for the rest.
fn rfc2253(name: &X509Name) -> String {
    let rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| {
                    let oid = atv.attr_type();
                    let key = short_name(&oid.to_id_string());
                    let value = atv.as_str().map(escape).unwrap_or_default();
                    format!("{key}={value}")
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

fn short_name(oid: &str) -> String {
    match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.5" => "SERIALNUMBER",
        "2.5.4.17" => "POSTALCODE",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        other => other,
    }
    .to_string()
}

/// Escapes an attribute value as RFC 2253 asks.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// What monitoring shows of a server-side TLS session, named as Go names them (`1.3`,
/// `TLS_AES_128_GCM_SHA256`).
pub(crate) fn session_detail(conn: &rustls::ServerConnection, first: bool) -> TlsDetail {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "1.2",
        _ => "",
    };
    let cipher = conn
        .negotiated_cipher_suite()
        .and_then(|s| s.suite().as_str())
        .map(|n| n.replacen("TLS13_", "TLS_", 1))
        .unwrap_or_default();
    TlsDetail {
        version: version.into(),
        cipher,
        first,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with(sans: Vec<rcgen::SanType>, dn: &[(rcgen::DnType, &str)]) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::default();
        params.subject_alt_names = sans;
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (t, v) in dn {
            params.distinguished_name.push(t.clone(), *v);
        }
        let key = rcgen::KeyPair::generate().expect("key");
        params.self_signed(&key).expect("cert").der().to_vec()
    }

    #[test]
    fn identities_come_in_nats_servers_order() {
        let der = cert_with(
            vec![
                rcgen::SanType::DnsName("app.local".try_into().expect("dns")),
                rcgen::SanType::Rfc822Name("ops@example.com".try_into().expect("mail")),
                rcgen::SanType::URI("spiffe://x/app".try_into().expect("uri")),
            ],
            &[
                (rcgen::DnType::OrganizationName, "Acme, Inc"),
                (rcgen::DnType::CommonName, "app"),
            ],
        );
        assert_eq!(
            identities(&der),
            [
                "ops@example.com",
                "spiffe://x/app",
                "app.local",
                "CN=app,O=Acme\\, Inc"
            ]
        );
    }

    #[test]
    fn spki_digest_is_hex_sha256() {
        let der = cert_with(Vec::new(), &[(rcgen::DnType::CommonName, "x")]);
        let d = spki_sha256(&der).expect("digest");
        assert_eq!(d.len(), 64);
        assert!(d.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(spki_sha256(b"not a cert"), None);
    }
}
