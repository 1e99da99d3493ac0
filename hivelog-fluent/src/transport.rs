//! Connections to the receiver: TCP, TLS (rustls) and Unix sockets behind one type.
//!
//! - **Timeouts everywhere.** Connecting (DNS, TCP, TLS) is bounded by the connect timeout and
//!   every write by the write timeout: a receiver that stops reading fills the socket buffer,
//!   and the write timeout turns that into a retry instead of a stuck sink thread.
//! - **Half-open sockets.** A receiver that vanished without a FIN leaves a socket that accepts
//!   writes into the kernel buffer. Three things catch it: TCP keepalive (30 s idle, 10 s
//!   probes, instead of Linux's 2 h default), a non-blocking read before each send on a reused
//!   connection (which sees a FIN or RST that arrived while idle), and, with acks on, the ack
//!   timeout.
//! - **Reconnects** happen lazily, when a message needs the server again; [`crate::service`]
//!   decides when a server that failed is tried again.
//! - **TLS trust** is the webpki roots plus the system's roots plus `HIVELOG_FLUENT_CA_CERT`;
//!   loaded once, at the first TLS connect, so a sink that never connects never reads them.

use hivelog_core::FailureKind;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::config::{Address, FluentConfig};

/// Most bytes buffered from the receiver for one unfinished answer (ack, HELO, PONG): a few of
/// those fit in well under 1 KiB; anything beyond is a broken or hostile peer.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Why a connection could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The connection could not be established.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The receiver's address.
        addr: String,
        /// The cause.
        source: io::Error,
    },
    /// Connecting took longer than the connect timeout.
    #[error(
        "cannot connect to {addr}: no answer within {after:?} (HIVELOG_FLUENT_CONNECT_TIMEOUT)"
    )]
    ConnectTimeout {
        /// The receiver's address.
        addr: String,
        /// The timeout.
        after: Duration,
    },
    /// TLS could not be set up (trust store, server name, handshake).
    #[error("TLS with {addr}: {message}")]
    Tls {
        /// The receiver's address.
        addr: String,
        /// What went wrong.
        message: String,
    },
    /// A write did not complete within the write timeout.
    #[error("write to {addr} blocked for {after:?}: the receiver is not reading (HIVELOG_FLUENT_WRITE_TIMEOUT)")]
    WriteTimeout {
        /// The receiver's address.
        addr: String,
        /// The timeout.
        after: Duration,
    },
    /// The receiver closed the connection.
    #[error("{addr} closed the connection")]
    Closed {
        /// The receiver's address.
        addr: String,
    },
    /// Reading or writing failed.
    #[error("I/O with {addr}: {source}")]
    Io {
        /// The receiver's address.
        addr: String,
        /// The cause.
        source: io::Error,
    },
    /// The receiver sent something that is not msgpack.
    #[error("{addr} sent bytes that are not msgpack: {message}")]
    Garbage {
        /// The receiver's address.
        addr: String,
        /// The decoder's message.
        message: String,
    },
}

impl TransportError {
    /// The kind of failure, for the report and `hivelog check`.
    pub fn kind(&self) -> FailureKind {
        match self {
            TransportError::Connect { .. }
            | TransportError::Closed { .. }
            | TransportError::Io { .. } => FailureKind::Unreachable,
            TransportError::ConnectTimeout { .. } | TransportError::WriteTimeout { .. } => {
                FailureKind::TimedOut
            }
            TransportError::Tls { .. } | TransportError::Garbage { .. } => FailureKind::Protocol,
        }
    }
}

/// A byte stream to the receiver.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Where one connection goes: a resolved socket address, a name still to resolve, or a path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// A resolved TCP address (for `tcp://` and `tls://`).
    Socket(std::net::SocketAddr),
    /// A host name that did not resolve yet: connecting resolves it again.
    Name(String, u16),
    /// A Unix socket.
    Unix(std::path::PathBuf),
}

/// Opens connections; one per sink, shared by every server (the TLS trust store is loaded once).
pub struct Connector {
    ca_cert: Option<std::path::PathBuf>,
    tls: Option<tokio_rustls::TlsConnector>,
    connect_timeout: Duration,
    write_timeout: Duration,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl Connector {
    /// A connector with the configured timeouts and TLS trust.
    pub fn new(config: &FluentConfig) -> Connector {
        Connector {
            ca_cert: config.ca_cert.clone(),
            tls: None,
            connect_timeout: config.connect_timeout,
            write_timeout: config.write_timeout,
        }
    }

    /// The connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Connects to `target` of the server at `addr` within the connect timeout; `name` is how
    /// errors and the connection name it.
    pub async fn connect(
        &mut self,
        addr: &Address,
        target: &Target,
        name: &str,
    ) -> Result<Connection, TransportError> {
        let after = self.connect_timeout;
        match tokio::time::timeout(after, self.connect_inner(addr, target, name)).await {
            Ok(r) => r,
            Err(_) => Err(TransportError::ConnectTimeout {
                addr: name.to_owned(),
                after,
            }),
        }
    }

    async fn connect_inner(
        &mut self,
        addr: &Address,
        target: &Target,
        name: &str,
    ) -> Result<Connection, TransportError> {
        let connect_err = |source| TransportError::Connect {
            addr: name.to_owned(),
            source,
        };
        let io: Box<dyn Io> = match target {
            Target::Unix(path) => Box::new(
                tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(connect_err)?,
            ),
            Target::Socket(_) | Target::Name(..) => {
                let stream = tcp(target).await.map_err(connect_err)?;
                match addr {
                    Address::Tls { host, .. } => Box::new(self.tls(stream, host, name).await?),
                    _ => Box::new(stream),
                }
            }
        };
        Ok(Connection {
            io,
            addr: name.to_owned(),
            rbuf: Vec::new(),
            write_timeout: self.write_timeout,
            opened: Instant::now(),
        })
    }

    async fn tls(
        &mut self,
        stream: tokio::net::TcpStream,
        host: &str,
        name: &str,
    ) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, TransportError> {
        let tls = self.tls_connector(name)?;
        let server = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| {
            TransportError::Tls {
                addr: name.to_owned(),
                message: format!("'{host}' is not a valid server name: {e}"),
            }
        })?;
        tls.connect(server, stream)
            .await
            .map_err(|e| TransportError::Tls {
                addr: name.to_owned(),
                message: e.to_string(),
            })
    }

    fn tls_connector(&mut self, name: &str) -> Result<tokio_rustls::TlsConnector, TransportError> {
        if let Some(c) = &self.tls {
            return Ok(c.clone());
        }
        let tls_err = |message: String| TransportError::Tls {
            addr: name.to_owned(),
            message,
        };
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        if let Some(path) = &self.ca_cert {
            load_ca(&mut roots, path).map_err(tls_err)?;
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let c = tokio_rustls::TlsConnector::from(Arc::new(config));
        self.tls = Some(c.clone());
        Ok(c)
    }
}

/// Adds the certificates of `HIVELOG_FLUENT_CA_CERT` to `roots`.
fn load_ca(roots: &mut rustls::RootCertStore, path: &std::path::Path) -> Result<(), String> {
    let pem = std::fs::read(path)
        .map_err(|e| format!("cannot read HIVELOG_FLUENT_CA_CERT {}: {e}", path.display()))?;
    let mut n = 0;
    for cert in rustls_pemfile::certs(&mut &pem[..]) {
        let cert = cert.map_err(|e| format!("HIVELOG_FLUENT_CA_CERT {}: {e}", path.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("HIVELOG_FLUENT_CA_CERT {}: {e}", path.display()))?;
        n += 1;
    }
    if n == 0 {
        return Err(format!(
            "HIVELOG_FLUENT_CA_CERT {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(())
}

/// Opens a plain socket to `target` (no TLS, no handshake): what the heartbeat checks.
pub async fn probe(target: &Target, timeout: Duration) -> bool {
    let attempt = async {
        match target {
            Target::Unix(p) => tokio::net::UnixStream::connect(p).await.map(drop),
            _ => tcp(target).await.map(drop),
        }
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Ok(())))
}

async fn tcp(target: &Target) -> io::Result<tokio::net::TcpStream> {
    let s = match target {
        Target::Socket(a) => tokio::net::TcpStream::connect(a).await?,
        Target::Name(host, port) => tokio::net::TcpStream::connect((host.as_str(), *port)).await?,
        Target::Unix(_) => return Err(io::Error::other("a Unix path is not a TCP target")),
    };
    s.set_nodelay(true)?;
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(30))
        .with_interval(Duration::from_secs(10));
    socket2::SockRef::from(&s).set_tcp_keepalive(&keepalive)?;
    Ok(s)
}

/// An open connection, with a read buffer for the receiver's msgpack answers.
pub struct Connection {
    io: Box<dyn Io>,
    addr: String,
    rbuf: Vec<u8>,
    write_timeout: Duration,
    /// When it was opened.
    pub opened: Instant,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.addr)
            .finish()
    }
}

/// What a non-blocking look at a connection found.
#[derive(Debug)]
pub enum Idle {
    /// Nothing to read: the connection looks usable.
    Quiet,
    /// The receiver closed it or it failed.
    Dead(TransportError),
}

impl Connection {
    /// The receiver's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Writes all of `data` and flushes, within the write timeout.
    pub async fn write_all(&mut self, data: &[u8]) -> Result<(), TransportError> {
        let after = self.write_timeout;
        let io = &mut self.io;
        let fut = async {
            io.write_all(data).await?;
            io.flush().await
        };
        match tokio::time::timeout(after, fut).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(self.io_err(source)),
            Err(_) => Err(TransportError::WriteTimeout {
                addr: self.addr.clone(),
                after,
            }),
        }
    }

    fn io_err(&self, source: io::Error) -> TransportError {
        match source.kind() {
            io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof => TransportError::Closed {
                addr: self.addr.clone(),
            },
            _ => TransportError::Io {
                addr: self.addr.clone(),
                source,
            },
        }
    }

    /// Reads the next msgpack value the receiver sends; `Ok(None)` when `deadline` passes first.
    pub async fn read_value(
        &mut self,
        deadline: Instant,
    ) -> Result<Option<rmpv::Value>, TransportError> {
        loop {
            if let Some(v) = self.take_value()? {
                return Ok(Some(v));
            }
            let mut chunk = [0u8; 1024];
            let read = tokio::time::timeout_at(deadline.into(), self.io.read(&mut chunk)).await;
            match read {
                Err(_) => return Ok(None),
                Ok(Ok(0)) => {
                    return Err(TransportError::Closed {
                        addr: self.addr.clone(),
                    })
                }
                Ok(Ok(n)) => self.append(&chunk[..n])?,
                Ok(Err(e)) => return Err(self.io_err(e)),
            }
        }
    }

    /// Buffers bytes from the receiver, refusing to hold more than [`MAX_ANSWER_BYTES`] of an
    /// unfinished value: a receiver's answers (acks, HELO, PONG) are tiny, and a hostile or
    /// broken one must not make the service's memory grow.
    fn append(&mut self, data: &[u8]) -> Result<(), TransportError> {
        if self.rbuf.len() + data.len() > MAX_ANSWER_BYTES {
            self.rbuf.clear();
            return Err(TransportError::Garbage {
                addr: self.addr.clone(),
                message: format!(
                    "the receiver sent more than {MAX_ANSWER_BYTES} bytes without completing an answer (acks and handshake messages are under 1 KiB)"
                ),
            });
        }
        self.rbuf.extend_from_slice(data);
        Ok(())
    }

    /// Decodes a whole value from the read buffer, if one is there.
    fn take_value(&mut self) -> Result<Option<rmpv::Value>, TransportError> {
        if self.rbuf.is_empty() {
            return Ok(None);
        }
        let mut cur = &self.rbuf[..];
        match rmpv::decode::read_value(&mut cur) {
            Ok(v) => {
                let used = self.rbuf.len() - cur.len();
                self.rbuf.drain(..used);
                Ok(Some(v))
            }
            Err(
                rmpv::decode::Error::InvalidMarkerRead(e) | rmpv::decode::Error::InvalidDataRead(e),
            ) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(TransportError::Garbage {
                addr: self.addr.clone(),
                message: e.to_string(),
            }),
        }
    }

    /// Looks at the connection without waiting: a reused connection whose receiver closed it
    /// while idle shows up here, before a batch is written into it.
    pub async fn check_idle(&mut self) -> (Idle, Vec<rmpv::Value>) {
        let mut late = Vec::new();
        loop {
            let mut chunk = [0u8; 1024];
            match tokio::time::timeout(Duration::ZERO, self.io.read(&mut chunk)).await {
                Err(_) => break,
                Ok(Ok(0)) => {
                    return (
                        Idle::Dead(TransportError::Closed {
                            addr: self.addr.clone(),
                        }),
                        late,
                    )
                }
                Ok(Ok(n)) => {
                    if let Err(e) = self.append(&chunk[..n]) {
                        return (Idle::Dead(e), late);
                    }
                }
                Ok(Err(e)) => return (Idle::Dead(self.io_err(e)), late),
            }
        }
        loop {
            match self.take_value() {
                Ok(Some(v)) => late.push(v),
                Ok(None) => break,
                Err(e) => return (Idle::Dead(e), late),
            }
        }
        (Idle::Quiet, late)
    }

    /// Closes the write side gracefully (TLS close_notify), waiting at most `timeout`.
    pub async fn shutdown(mut self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.io.shutdown()).await;
    }
}
