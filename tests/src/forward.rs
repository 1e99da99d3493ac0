//! A Fluentd Forward protocol v1 receiver, written from the Forward Protocol Specification v1
//! (fluent/fluentd wiki), for tests.
//!
//! It accepts all four carrier modes — Message `[tag, time, record, option?]`, Forward
//! `[tag, [[time, record], …], option?]`, PackedForward `[tag, bin, option?]` and
//! CompressedPackedForward (`option.compressed == "gzip"`, concatenated gzip members) — with
//! `time` as an integer or an EventTime (ext type 0: big-endian u32 seconds, u32 nanoseconds).
//! When an option carries `chunk`, it answers `{"ack": chunk}` echoing the chunk's msgpack type,
//! as Fluentd does. With a shared key it runs the HELO/PING/PONG handshake first and drops
//! events sent before a successful PING, like Fluentd's `<security>` section.
//!
//! Fault modes ([`Fault`]) make it misbehave on purpose: never ack, drop the connection in the
//! middle of a message, stall, wrong PONG digest, close after HELO. [`ForwardReceiver::stop`] and
//! [`ForwardReceiver::start_again`] kill and restart it on the same port;
//! [`ForwardReceiver::down`] reserves a port nobody listens on yet.
//!
//! Every complete message is recorded *before* it is acked, so a receiver killed between the
//! two produces exactly the duplicates at-least-once delivery allows, and tests can tell them
//! apart by chunk ([`ForwardReceiver::messages`]).
//!
//! The receiver runs on its own thread with its own tokio runtime, so it serves sync tests and
//! tokio tests alike.

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rmpv::Value;
use sha2::{Digest, Sha512};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How the receiver misbehaves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fault {
    /// Behave.
    #[default]
    None,
    /// Record messages but never send `{"ack": …}`.
    NeverAck,
    /// Close the connection on the n-th event message (counted over the receiver's life, from
    /// 1) as if the receiver died while reading it: that message is neither recorded nor acked.
    DropMessage(u64),
    /// Accept connections and never read from them.
    Stall,
    /// Answer a correct PING with `PONG true` but a digest computed with another key.
    WrongServerDigest,
    /// Send HELO, read the PING, and close without a PONG.
    CloseAfterHelo,
}

/// The receiver's behaviour.
#[derive(Clone, Debug)]
pub struct ReceiverConfig {
    /// Answer `chunk` options with acks (default true).
    pub ack: bool,
    /// Misbehaviour.
    pub fault: Fault,
    /// Require the HELO/PING/PONG handshake with this shared key.
    pub shared_key: Option<String>,
    /// Also require this username and password (`auth` salt in HELO).
    pub user: Option<(String, String)>,
    /// The hostname the server reports in PONG (default `forward-test-receiver`).
    pub hostname: String,
    /// Keep every decoded event (default true); false only counts entries, for benchmarks.
    pub keep_events: bool,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        ReceiverConfig {
            ack: true,
            fault: Fault::None,
            shared_key: None,
            user: None,
            hostname: "forward-test-receiver".to_owned(),
            keep_events: true,
        }
    }
}

impl ReceiverConfig {
    /// With a fault.
    pub fn fault(mut self, fault: Fault) -> Self {
        self.fault = fault;
        self
    }
    /// With a shared key.
    pub fn shared_key(mut self, key: &str) -> Self {
        self.shared_key = Some(key.to_owned());
        self
    }
    /// Counting only.
    pub fn count_only(mut self) -> Self {
        self.keep_events = false;
        self
    }
}

/// Which carrier mode a message used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `[tag, time, record, option?]`.
    Message,
    /// `[tag, [[time, record], …], option?]`.
    Forward,
    /// `[tag, bin, option?]`.
    PackedForward,
    /// `[tag, bin(gzip), {"compressed": "gzip", …}]`.
    CompressedPackedForward,
}

/// One received event.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Its tag.
    pub tag: String,
    /// Seconds since the epoch.
    pub secs: u64,
    /// Nanoseconds (0 for integer times).
    pub nanos: u32,
    /// Whether the time was an EventTime (ext 0) rather than an integer.
    pub event_time: bool,
    /// The record.
    pub record: Value,
    /// The chunk of the message it came in.
    pub chunk: Option<String>,
}

impl Event {
    /// A string field of the record.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }
    /// A field of the record.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.record
            .as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }
}

/// One received message (a frame).
#[derive(Clone, Debug, PartialEq)]
pub struct MessageInfo {
    /// Its mode.
    pub mode: Mode,
    /// Its tag.
    pub tag: String,
    /// Entries it carried.
    pub entries: usize,
    /// Its `size` option.
    pub size: Option<u64>,
    /// Its `chunk` option, as a string (base64 text, or bin bytes lossily decoded).
    pub chunk: Option<String>,
    /// Whether the ack was written.
    pub acked: bool,
    /// Bytes of the frame.
    pub bytes: usize,
    /// Gzip members in a CompressedPackedForward payload.
    pub gzip_members: usize,
}

#[derive(Default)]
struct Inner {
    events: Vec<Event>,
    count: u64,
    messages: Vec<MessageInfo>,
    errors: Vec<String>,
    connections: u64,
    handshakes_ok: u64,
    handshakes_failed: u64,
    frames_seen: u64,
}

#[derive(Default)]
struct State {
    inner: Mutex<Inner>,
    changed: Condvar,
}

impl State {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn error(&self, e: impl Into<String>) {
        self.lock().errors.push(e.into());
        self.changed.notify_all();
    }
}

#[derive(Clone, Debug)]
enum Bind {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

struct Running {
    stop: tokio::sync::watch::Sender<bool>,
    thread: std::thread::JoinHandle<()>,
}

/// A running (or stopped) Forward receiver.
pub struct ForwardReceiver {
    bind: Bind,
    tls: Option<tokio_rustls::TlsAcceptor>,
    config: Arc<ReceiverConfig>,
    state: Arc<State>,
    running: Option<Running>,
}

impl std::fmt::Debug for ForwardReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardReceiver")
            .field("bind", &self.bind)
            .field("running", &self.running.is_some())
            .finish()
    }
}

impl ForwardReceiver {
    /// Listens on a free 127.0.0.1 port.
    pub fn start(config: ReceiverConfig) -> ForwardReceiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let mut r = ForwardReceiver::new(Bind::Tcp(addr), config);
        r.spawn(Some(Listener::Tcp(listener)));
        r
    }

    /// Listens on a free 127.0.0.1 port with TLS, presenting `cert_pem` (chain) and `key_pem`.
    pub fn start_tls(config: ReceiverConfig, cert_pem: &Path, key_pem: &Path) -> ForwardReceiver {
        let certs: Vec<_> = rustls_pemfile::certs(&mut &std::fs::read(cert_pem).unwrap()[..])
            .collect::<Result<_, _>>()
            .unwrap();
        let key = rustls_pemfile::private_key(&mut &std::fs::read(key_pem).unwrap()[..])
            .unwrap()
            .expect("a private key");
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let mut r = ForwardReceiver::new(Bind::Tcp(addr), config);
        r.tls = Some(tokio_rustls::TlsAcceptor::from(Arc::new(server)));
        r.spawn(Some(Listener::Tcp(listener)));
        r
    }

    /// `tls://localhost:PORT`, for a receiver started with [`ForwardReceiver::start_tls`].
    pub fn tls_url(&self) -> String {
        format!("tls://localhost:{}", self.port())
    }

    /// Listens on a Unix socket at `path`.
    pub fn start_unix(path: &Path, config: ReceiverConfig) -> ForwardReceiver {
        let mut r = ForwardReceiver::new(Bind::Unix(path.to_owned()), config);
        r.spawn(None);
        r
    }

    /// Reserves a free port without listening on it: clients get "connection refused" until
    /// [`ForwardReceiver::start_again`].
    pub fn down(config: ReceiverConfig) -> ForwardReceiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        drop(listener);
        ForwardReceiver::new(Bind::Tcp(addr), config)
    }

    fn new(bind: Bind, config: ReceiverConfig) -> ForwardReceiver {
        ForwardReceiver {
            bind,
            tls: None,
            config: Arc::new(config),
            state: Arc::default(),
            running: None,
        }
    }

    /// The TCP address (panics for a Unix receiver).
    pub fn addr(&self) -> SocketAddr {
        match &self.bind {
            Bind::Tcp(a) => *a,
            Bind::Unix(p) => panic!("unix receiver at {}", p.display()),
        }
    }

    /// `tcp://127.0.0.1:PORT` or `unix:///path`, as `HIVELOG_FLUENT_ADDR` takes it.
    pub fn url(&self) -> String {
        match &self.bind {
            Bind::Tcp(a) => format!("tcp://{a}"),
            Bind::Unix(p) => format!("unix://{}", p.display()),
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr().port()
    }

    /// Kills the receiver: closes the listener and every connection at once (no acks for what
    /// is in flight). Recorded events are kept.
    pub fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            let _ = r.stop.send(true);
            let _ = r.thread.join();
        }
    }

    /// Starts listening again on the same address.
    pub fn start_again(&mut self) {
        self.stop();
        let listener = match &self.bind {
            Bind::Tcp(a) => {
                // The port may linger for a moment after the previous listener closed.
                let deadline = Instant::now() + Duration::from_secs(5);
                loop {
                    match std::net::TcpListener::bind(a) {
                        Ok(l) => break Some(Listener::Tcp(l)),
                        Err(e) if Instant::now() < deadline => {
                            let _ = e;
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(e) => panic!("rebind {a}: {e}"),
                    }
                }
            }
            Bind::Unix(_) => None,
        };
        self.spawn(listener);
    }

    fn spawn(&mut self, tcp: Option<Listener>) {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let bind = self.bind.clone();
        let config = self.config.clone();
        let state = self.state.clone();
        let tls = self.tls.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("forward-receiver".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let listener = match (tcp, &bind) {
                        (Some(Listener::Tcp(l)), _) => {
                            l.set_nonblocking(true).unwrap();
                            AsyncListener::Tcp(tokio::net::TcpListener::from_std(l).unwrap())
                        }
                        (_, Bind::Unix(p)) => {
                            let _ = std::fs::remove_file(p);
                            AsyncListener::Unix(tokio::net::UnixListener::bind(p).unwrap())
                        }
                        _ => unreachable!(),
                    };
                    let _ = ready_tx.send(());
                    let mut conns = tokio::task::JoinSet::new();
                    loop {
                        tokio::select! {
                            _ = stopped.changed() => break,
                            accepted = listener.accept() => {
                                match accepted {
                                    Ok(Conn::Tcp(s)) => {
                                        let _ = s.set_nodelay(true);
                                        let (config, state) = (config.clone(), state.clone());
                                        match tls.clone() {
                                            None => {
                                                conns.spawn(serve(s, config, state));
                                            }
                                            Some(acceptor) => {
                                                conns.spawn(async move {
                                                    match acceptor.accept(s).await {
                                                        Ok(s) => serve(s, config, state).await,
                                                        Err(e) => state.error(format!("TLS accept: {e}")),
                                                    }
                                                });
                                            }
                                        }
                                    }
                                    Ok(Conn::Unix(s)) => {
                                        conns.spawn(serve(s, config.clone(), state.clone()));
                                    }
                                    Err(e) => state.error(format!("accept: {e}")),
                                }
                            }
                            Some(_) = conns.join_next(), if !conns.is_empty() => {}
                        }
                    }
                    // Dropping the set aborts the connection tasks, closing their sockets.
                    conns.abort_all();
                    while conns.join_next().await.is_some() {}
                });
            })
            .unwrap();
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("receiver did not start");
        self.running = Some(Running { stop, thread });
    }

    /// Every event received so far, in arrival order.
    pub fn events(&self) -> Vec<Event> {
        self.state.lock().events.clone()
    }

    /// Number of entries received (also counted with `keep_events == false`).
    pub fn count(&self) -> u64 {
        self.state.lock().count
    }

    /// Every message received so far.
    pub fn messages(&self) -> Vec<MessageInfo> {
        self.state.lock().messages.clone()
    }

    /// Protocol violations seen (a conforming client causes none).
    pub fn errors(&self) -> Vec<String> {
        self.state.lock().errors.clone()
    }

    /// Connections accepted.
    pub fn connections(&self) -> u64 {
        self.state.lock().connections
    }

    /// Successful and failed handshakes.
    pub fn handshakes(&self) -> (u64, u64) {
        let s = self.state.lock();
        (s.handshakes_ok, s.handshakes_failed)
    }

    /// Waits (blocking) until `count() >= n` or the timeout passes; returns the count.
    pub fn wait_for(&self, n: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        let mut s = self.state.lock();
        while s.count < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            s = self
                .state
                .changed
                .wait_timeout(s, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        s.count
    }

    /// Like [`ForwardReceiver::wait_for`] without blocking an async runtime.
    pub async fn wait_for_async(&self, n: u64, timeout: Duration) -> u64 {
        crate::wait::wait_until_async(timeout, || self.count() >= n).await;
        self.count()
    }
}

impl Drop for ForwardReceiver {
    fn drop(&mut self) {
        self.stop();
        if let Bind::Unix(p) = &self.bind {
            let _ = std::fs::remove_file(p);
        }
    }
}

enum Listener {
    Tcp(std::net::TcpListener),
}

enum AsyncListener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

enum Conn {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

impl AsyncListener {
    async fn accept(&self) -> std::io::Result<Conn> {
        match self {
            AsyncListener::Tcp(l) => l.accept().await.map(|(s, _)| Conn::Tcp(s)),
            AsyncListener::Unix(l) => l.accept().await.map(|(s, _)| Conn::Unix(s)),
        }
    }
}

/// Writes a throwaway CA and a `localhost`/127.0.0.1 server certificate signed by it into
/// `dir` with the `openssl` command; returns `(ca.pem, server-chain.pem, server-key.pem)`.
pub fn tls_material(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=hivelog test CA",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

/// The SHA-512 of the parts, concatenated, in lowercase hex.
pub fn sha512_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha512::new();
    for p in parts {
        h.update(p);
    }
    hex::encode(h.finalize())
}

fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).unwrap();
    out
}

fn bytes_of(v: &Value) -> Option<&[u8]> {
    match v {
        Value::String(s) => Some(s.as_bytes()),
        Value::Binary(b) => Some(b),
        _ => None,
    }
}

/// The result of scanning for one msgpack value.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan {
    /// A whole value of this many bytes is at the start of the buffer.
    Complete(usize),
    /// More bytes are needed.
    Incomplete,
    /// Not msgpack (marker 0xc1 or an absurd length).
    Invalid,
}

/// Finds the length of the msgpack value at the start of `b` without decoding it, so a large
/// message arriving in many reads is parsed once, not once per read.
pub fn scan(b: &[u8]) -> Scan {
    let mut need: u64 = 1;
    let mut i: usize = 0;
    macro_rules! be {
        ($n:expr) => {{
            let n = $n;
            if i + n > b.len() {
                return Scan::Incomplete;
            }
            let mut v: u64 = 0;
            for &x in &b[i..i + n] {
                v = (v << 8) | u64::from(x);
            }
            i += n;
            v as usize
        }};
    }
    while need > 0 {
        need -= 1;
        let Some(&m) = b.get(i) else {
            return Scan::Incomplete;
        };
        i += 1;
        match m {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => {}
            0x80..=0x8f => need += 2 * u64::from(m & 0x0f),
            0x90..=0x9f => need += u64::from(m & 0x0f),
            0xa0..=0xbf => i += usize::from(m & 0x1f),
            0xc4 | 0xd9 => i += be!(1),
            0xc5 | 0xda => i += be!(2),
            0xc6 | 0xdb => i += be!(4),
            0xc7 => i += be!(1) + 1,
            0xc8 => i += be!(2) + 1,
            0xc9 => i += be!(4) + 1,
            0xca => i += 4,
            0xcb => i += 8,
            0xcc | 0xd0 => i += 1,
            0xcd | 0xd1 => i += 2,
            0xce | 0xd2 => i += 4,
            0xcf | 0xd3 => i += 8,
            0xd4 => i += 2,
            0xd5 => i += 3,
            0xd6 => i += 5,
            0xd7 => i += 9,
            0xd8 => i += 17,
            0xdc => need += be!(2) as u64,
            0xdd => need += be!(4) as u64,
            0xde => need += 2 * be!(2) as u64,
            0xdf => need += 2 * be!(4) as u64,
            0xc1 => return Scan::Invalid,
        }
        if need > (b.len() as u64) + 1 {
            // Every pending value needs at least one more byte.
            return Scan::Incomplete;
        }
    }
    if i > b.len() {
        Scan::Incomplete
    } else {
        Scan::Complete(i)
    }
}

/// Parses `[time, record]` entries or counts them.
fn time_of(v: &Value) -> Option<(u64, u32, bool)> {
    match v {
        Value::Ext(0, d) if d.len() == 8 => Some((
            u64::from(u32::from_be_bytes(d[0..4].try_into().unwrap())),
            u32::from_be_bytes(d[4..8].try_into().unwrap()),
            true,
        )),
        Value::Integer(i) => i.as_u64().map(|s| (s, 0, false)),
        Value::F64(f) if *f >= 0.0 => Some((f.trunc() as u64, (f.fract() * 1e9) as u32, false)),
        _ => None,
    }
}

struct Session {
    config: Arc<ReceiverConfig>,
    state: Arc<State>,
    nonce: [u8; 16],
    auth_salt: [u8; 16],
    authenticated: bool,
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    config: Arc<ReceiverConfig>,
    state: Arc<State>,
) {
    state.lock().connections += 1;
    state.changed.notify_all();
    if config.fault == Fault::Stall {
        std::future::pending::<()>().await;
    }
    let mut session = Session {
        nonce: rand_bytes(),
        auth_salt: rand_bytes(),
        authenticated: config.shared_key.is_none(),
        config,
        state,
    };
    if session.config.shared_key.is_some() {
        let helo = Value::Array(vec![
            "HELO".into(),
            Value::Map(vec![
                ("nonce".into(), Value::Binary(session.nonce.to_vec())),
                (
                    "auth".into(),
                    if session.config.user.is_some() {
                        Value::Binary(session.auth_salt.to_vec())
                    } else {
                        "".into()
                    },
                ),
                ("keepalive".into(), true.into()),
            ]),
        ]);
        if s.write_all(&encode(&helo)).await.is_err() {
            return;
        }
    }
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut start = 0;
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        loop {
            match scan(&buf[start..]) {
                Scan::Complete(n) => {
                    let frame = &buf[start..start + n];
                    start += n;
                    match session.frame(frame) {
                        Reply::None => {}
                        Reply::Write(bytes) => {
                            if s.write_all(&bytes).await.is_err() {
                                return;
                            }
                        }
                        Reply::WriteAndClose(bytes) => {
                            let _ = s.write_all(&bytes).await;
                            let _ = s.shutdown().await;
                            return;
                        }
                        Reply::Close => return,
                    }
                }
                Scan::Incomplete => break,
                Scan::Invalid => {
                    session.state.error("invalid msgpack from client");
                    return;
                }
            }
        }
        buf.drain(..start);
        start = 0;
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                if !buf.is_empty() {
                    session.state.error(format!(
                        "connection closed with {} bytes of a partial message",
                        buf.len()
                    ));
                }
                return;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn rand_bytes() -> [u8; 16] {
    // Test-only randomness: the time and an address are enough to make nonces differ.
    use std::hash::{BuildHasher, Hasher};
    let mut out = [0u8; 16];
    for (i, c) in out.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos(),
        );
        c.copy_from_slice(&h.finish().to_le_bytes());
    }
    out
}

enum Reply {
    None,
    Write(Vec<u8>),
    WriteAndClose(Vec<u8>),
    Close,
}

impl Session {
    fn frame(&mut self, frame: &[u8]) -> Reply {
        let value = match rmpv::decode::read_value(&mut &frame[..]) {
            Ok(v) => v,
            Err(e) => {
                self.state.error(format!("undecodable frame: {e}"));
                return Reply::Close;
            }
        };
        let Value::Array(items) = value else {
            // Heartbeats are `nil`; anything else that is not an array is ignored (spec).
            if !value.is_nil() {
                self.state
                    .error(format!("non-array frame ignored: {value}"));
            }
            return Reply::None;
        };
        if !self.authenticated {
            return self.ping(&items);
        }
        self.message(items, frame.len())
    }

    fn ping(&mut self, items: &[Value]) -> Reply {
        if items.first().and_then(Value::as_str) != Some("PING") {
            self.state
                .error("event message before PING was dropped".to_owned());
            return Reply::None;
        }
        if self.config.fault == Fault::CloseAfterHelo {
            self.state.lock().handshakes_failed += 1;
            return Reply::Close;
        }
        let key = self.config.shared_key.clone().unwrap_or_default();
        let field = |i: usize| items.get(i).and_then(bytes_of).unwrap_or_default();
        let (client_host, salt, digest) = (field(1), field(2), field(3));
        let mut failure = None;
        if items.len() != 6 {
            failure = Some("invalid PING message".to_owned());
        } else if sha512_hex(&[salt, client_host, &self.nonce, key.as_bytes()]).as_bytes() != digest
        {
            failure = Some("shared_key mismatch".to_owned());
        } else if let Some((user, pass)) = &self.config.user {
            let (u, pd) = (field(4), field(5));
            if u != user.as_bytes()
                || sha512_hex(&[&self.auth_salt, u, pass.as_bytes()]).as_bytes() != pd
            {
                failure = Some("username/password mismatch".to_owned());
            }
        }
        let host = self.config.hostname.as_bytes();
        match failure {
            Some(reason) => {
                self.state.lock().handshakes_failed += 1;
                self.state.changed.notify_all();
                let pong = Value::Array(vec![
                    "PONG".into(),
                    false.into(),
                    reason.into(),
                    self.config.hostname.clone().into(),
                    "".into(),
                ]);
                Reply::WriteAndClose(encode(&pong))
            }
            None => {
                let digest = if self.config.fault == Fault::WrongServerDigest {
                    sha512_hex(&[salt, host, &self.nonce, b"not-the-key"])
                } else {
                    sha512_hex(&[salt, host, &self.nonce, key.as_bytes()])
                };
                self.authenticated = true;
                self.state.lock().handshakes_ok += 1;
                self.state.changed.notify_all();
                let pong = Value::Array(vec![
                    "PONG".into(),
                    true.into(),
                    "".into(),
                    self.config.hostname.clone().into(),
                    digest.into(),
                ]);
                Reply::Write(encode(&pong))
            }
        }
    }

    fn message(&mut self, items: Vec<Value>, bytes: usize) -> Reply {
        if let Fault::DropMessage(n) = self.config.fault {
            let mut st = self.state.lock();
            st.frames_seen += 1;
            if st.frames_seen == n {
                // As if the receiver died while reading it: neither recorded nor acked.
                return Reply::Close;
            }
        }
        let mut it = items.into_iter();
        let (Some(tag), Some(second)) = (it.next(), it.next()) else {
            self.state.error("message with fewer than 2 elements");
            return Reply::None;
        };
        let Some(tag) = tag.as_str().map(str::to_owned) else {
            self.state.error(format!("tag is not a string: {tag}"));
            return Reply::None;
        };
        let keep = self.config.keep_events;
        let mut events = Vec::new();
        let mut entries = 0usize;
        let mut gzip_members = 0;
        let mode;
        let option;
        match second {
            Value::Array(list) => {
                mode = Mode::Forward;
                option = it.next();
                for e in list {
                    match self.entry(&tag, e) {
                        Some(ev) => {
                            entries += 1;
                            if keep {
                                events.push(ev);
                            }
                        }
                        None => return Reply::None,
                    }
                }
            }
            Value::Binary(_) | Value::String(_) => {
                option = it.next();
                let compressed = option
                    .as_ref()
                    .and_then(|o| map_get(o, "compressed"))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let raw = match second {
                    Value::Binary(b) => b,
                    Value::String(s) => s.into_bytes(),
                    _ => unreachable!(),
                };
                let data = match compressed.as_deref() {
                    None | Some("text") => {
                        mode = Mode::PackedForward;
                        raw
                    }
                    Some("gzip") => {
                        mode = Mode::CompressedPackedForward;
                        match gunzip(&raw) {
                            Ok((d, members)) => {
                                gzip_members = members;
                                d
                            }
                            Err(e) => {
                                self.state.error(format!("bad gzip payload: {e}"));
                                return Reply::None;
                            }
                        }
                    }
                    Some(other) => {
                        self.state.error(format!("unknown compression {other:?}"));
                        return Reply::None;
                    }
                };
                let mut pos = 0;
                while pos < data.len() {
                    let Scan::Complete(n) = scan(&data[pos..]) else {
                        self.state.error("truncated entry in packed stream");
                        return Reply::None;
                    };
                    if keep {
                        let v = match rmpv::decode::read_value(&mut &data[pos..pos + n]) {
                            Ok(v) => v,
                            Err(e) => {
                                self.state.error(format!("bad entry: {e}"));
                                return Reply::None;
                            }
                        };
                        match self.entry(&tag, v) {
                            Some(ev) => events.push(ev),
                            None => return Reply::None,
                        }
                    } else if !matches!(data[pos], 0x92) {
                        self.state.error("entry is not a 2-element array");
                        return Reply::None;
                    }
                    entries += 1;
                    pos += n;
                }
            }
            time => {
                mode = Mode::Message;
                let record = it.next().unwrap_or(Value::Nil);
                option = it.next();
                match self.entry(&tag, Value::Array(vec![time, record])) {
                    Some(ev) => {
                        entries = 1;
                        if keep {
                            events.push(ev);
                        }
                    }
                    None => return Reply::None,
                }
            }
        }
        let opt = option.unwrap_or(Value::Nil);
        let size = map_get(&opt, "size").and_then(Value::as_u64);
        if let Some(size) = size {
            if size != entries as u64 {
                self.state
                    .error(format!("size option {size} but {entries} entries"));
            }
        }
        let chunk = map_get(&opt, "chunk").cloned();
        let chunk_text = chunk
            .as_ref()
            .and_then(bytes_of)
            .map(|b| String::from_utf8_lossy(b).into_owned());
        for ev in &mut events {
            ev.chunk = chunk_text.clone();
        }
        let ack = chunk.is_some() && self.config.ack && self.config.fault != Fault::NeverAck;
        {
            let mut st = self.state.lock();
            st.count += entries as u64;
            st.events.extend(events);
            st.messages.push(MessageInfo {
                mode,
                tag,
                entries,
                size,
                chunk: chunk_text,
                acked: ack,
                bytes,
                gzip_members,
            });
        }
        self.state.changed.notify_all();
        match chunk {
            Some(c) if ack => Reply::Write(encode(&Value::Map(vec![("ack".into(), c)]))),
            _ => Reply::None,
        }
    }

    fn entry(&self, tag: &str, e: Value) -> Option<Event> {
        let Value::Array(mut pair) = e else {
            self.state.error(format!("entry is not an array: {e}"));
            return None;
        };
        if pair.len() != 2 {
            self.state
                .error(format!("entry has {} elements, not 2", pair.len()));
            return None;
        }
        let record = pair.pop().unwrap();
        let time = pair.pop().unwrap();
        let Some((secs, nanos, event_time)) = time_of(&time) else {
            self.state.error(format!("bad time {time}"));
            return None;
        };
        if !record.is_map() {
            self.state.error(format!("record is not a map: {record}"));
            return None;
        }
        Some(Event {
            tag: tag.to_owned(),
            secs,
            nanos,
            event_time,
            record,
            chunk: None,
        })
    }
}

fn map_get<'a>(m: &'a Value, key: &str) -> Option<&'a Value> {
    m.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

/// Decompresses concatenated gzip members; returns the data and the number of members.
fn gunzip(mut data: &[u8]) -> std::io::Result<(Vec<u8>, usize)> {
    let mut out = Vec::new();
    let mut members = 0;
    while !data.is_empty() {
        let mut d = flate2::bufread::GzDecoder::new(data);
        d.read_to_end(&mut out)?;
        members += 1;
        data = d.into_inner();
    }
    Ok((out, members))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_finds_whole_values_and_asks_for_more_on_partial_ones() {
        let v = Value::Array(vec![
            "tag".into(),
            Value::Binary(vec![1; 300]),
            Value::Map(vec![("size".into(), 3.into())]),
        ]);
        let b = encode(&v);
        assert_eq!(scan(&b), Scan::Complete(b.len()));
        for cut in 0..b.len() {
            assert_eq!(scan(&b[..cut]), Scan::Incomplete, "cut at {cut}");
        }
        let mut two = b.clone();
        two.extend_from_slice(&b);
        assert_eq!(scan(&two), Scan::Complete(b.len()));
        assert_eq!(scan(&[0xc1]), Scan::Invalid);
    }
}
