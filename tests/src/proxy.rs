//! A TCP fault proxy: sits between hivelog and a test server and misbehaves on command.
//!
//! ```no_run
//! use std::time::Duration;
//! use hivelog_tests::proxy::{FaultProxy, Mode};
//!
//! # let server_addr: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
//! let proxy = FaultProxy::start(server_addr);
//! let url = format!("http://{}", proxy.addr()); // point the sink here
//! proxy.set(Mode::Blackhole);                   // the network swallows everything
//! // … log, wait …
//! proxy.heal();                                 // back to `Pass`, listening again
//! ```
//!
//! Modes ([`Mode`]), switchable at run time from the test thread; a switch applies to new
//! connections *and* to the bytes that existing connections carry from then on:
//! - `Pass`: forward both ways.
//! - `Delay(d)`: wait `d` before connecting upstream and before forwarding each chunk read.
//! - `Blackhole`: accept, read and discard everything, answer nothing, forward nothing; the
//!   client sees a silent peer (only its own timeouts get it out).
//! - `ResetAfter(n)`: forward `n` more bytes client→server on each connection, then reset both
//!   sides (TCP RST) in the middle of whatever message was in flight.
//! - `ResetOnAnswer`: forward client→server, and reset both sides as soon as the server starts
//!   answering: the request landed, the client never learns it (a lost ack or response, the
//!   case idempotent retries exist for).
//! - `Refuse`: reset every open connection and close the listening socket, so connecting gets
//!   `ECONNREFUSED` (the server process is gone).
//! - `Silent`: the connections open at the switch stay open and carry nothing either way from
//!   then on (a hung receiver, a middlebox that dropped the flow), while new connections are
//!   forwarded as in `Pass`: the case where reconnecting would have worked.
//!
//! [`FaultProxy::heal`] goes back to `Pass`, listens again on the same port, and resets the
//! connections that were blackholed (a partition that heals without the end hosts' TCP state,
//! as a NAT or stateful firewall that lost it does): their data was swallowed, and a client that
//! waits for an answer on them would otherwise only be freed by its own timeout.
//!
//! [`FaultProxy::record`] keeps what clients send in `Pass` mode, so a test can read the HTTP
//! requests that went through ([`FaultProxy::recorded_requests`]): headers a server such as
//! moto does not echo back.
//!
//! Like the other servers here it runs on its own thread with its own tokio runtime, listens on
//! a port the OS picks on 127.0.0.1, and stops when dropped.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How the proxy treats traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Forward both ways.
    #[default]
    Pass,
    /// Wait this long before connecting upstream and before forwarding each chunk.
    Delay(Duration),
    /// Accept and read, never answer, never forward.
    Blackhole,
    /// Forward this many more client→server bytes per connection, then reset both sides.
    ResetAfter(u64),
    /// Forward requests; reset both sides when the server starts answering.
    ResetOnAnswer,
    /// Reset open connections and stop listening.
    Refuse,
    /// Connections open at the switch forward nothing; new ones pass.
    Silent,
}

/// Counters, for assertions that the fault was actually hit.
#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    up_bytes: AtomicU64,
    down_bytes: AtomicU64,
    swallowed_bytes: AtomicU64,
    resets: AtomicU64,
}

struct Shared {
    counters: Counters,
    /// Bumped by each switch to `Silent`: connections accepted before it go silent.
    silent_gen: AtomicU64,
    listening: AtomicBool,
    upstream: Mutex<SocketAddr>,
    /// Whether new connections' client→server bytes are kept ([`FaultProxy::record`]).
    recording: AtomicBool,
    /// Per recorded connection, the bytes the client sent.
    recorded: Mutex<Vec<Vec<u8>>>,
}

/// One HTTP/1.1 request a client sent through the proxy.
#[derive(Clone, Debug, Default)]
pub struct RecordedRequest {
    /// The request line (`POST / HTTP/1.1`).
    pub line: String,
    /// Header names (lowercase) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body (`content-length` bytes).
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Splits a connection's bytes into requests (bodies sized by `content-length`).
fn parse_requests(mut bytes: &[u8]) -> Vec<RecordedRequest> {
    let mut out = Vec::new();
    while let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let mut req = RecordedRequest {
            line: lines.next().unwrap_or_default().to_owned(),
            ..RecordedRequest::default()
        };
        for l in lines {
            if let Some((n, v)) = l.split_once(':') {
                req.headers
                    .push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let len: usize = req
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let body_end = (end + 4 + len).min(bytes.len());
        req.body = bytes[end + 4..body_end].to_vec();
        bytes = &bytes[body_end..];
        out.push(req);
    }
    out
}

/// What the proxy has seen so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Bytes forwarded client→server.
    pub up_bytes: u64,
    /// Bytes forwarded server→client.
    pub down_bytes: u64,
    /// Bytes read and discarded while blackholed.
    pub swallowed_bytes: u64,
    /// Connections reset by `ResetAfter`, `ResetOnAnswer`, `Refuse` or healing a blackhole.
    pub resets: u64,
}

/// A TCP proxy on 127.0.0.1 with switchable faults; see the module docs.
pub struct FaultProxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    /// Bumped by `heal`: connections blackholed before it are reset.
    heal_epoch: watch::Sender<u64>,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy in `Pass` mode forwarding to `upstream`.
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let (mode, mode_rx) = watch::channel(Mode::Pass);
        let (heal_epoch, heal_rx) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            counters: Counters::default(),
            silent_gen: AtomicU64::new(0),
            listening: AtomicBool::new(true),
            upstream: Mutex::new(upstream),
            recording: AtomicBool::new(false),
            recorded: Mutex::new(Vec::new()),
        });
        let (stop, stop_rx) = tokio::sync::oneshot::channel();
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("fault-proxy-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let listener = TcpListener::from_std(std_listener).unwrap();
                    tokio::select! {
                        _ = accept_loop(listener, addr, mode_rx, heal_rx, sh) => {}
                        _ = stop_rx => {}
                    }
                });
                rt.shutdown_timeout(Duration::from_millis(100));
            })
            .unwrap();
        FaultProxy {
            addr,
            mode,
            heal_epoch,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `tcp://127.0.0.1:PORT` (a Fluentd Forward address).
    pub fn tcp_url(&self) -> String {
        format!("tcp://{}", self.addr)
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        *self.mode.borrow()
    }

    /// Switches mode; returns once the listening socket is in the state the mode asks for.
    pub fn set(&self, mode: Mode) {
        if mode == Mode::Silent {
            self.shared.silent_gen.fetch_add(1, Ordering::SeqCst);
        }
        self.mode.send_replace(mode);
        let want = mode != Mode::Refuse;
        let switched = crate::wait_until(Duration::from_secs(5), || {
            self.shared.listening.load(Ordering::SeqCst) == want
        });
        assert!(switched, "fault proxy did not switch to {mode:?}");
    }

    /// Back to `Pass`: listening again, blackholed connections reset.
    pub fn heal(&self) {
        // Pass first, then the epoch: a connection accepted in between sees `Pass`, and one
        // that saw `Blackhole` saw the old epoch and is reset by the bump.
        self.set(Mode::Pass);
        self.heal_epoch.send_modify(|e| *e += 1);
    }

    /// Sends new connections to another upstream (e.g. a restarted server on a new port).
    pub fn set_upstream(&self, upstream: SocketAddr) {
        *self.shared.upstream.lock().unwrap() = upstream;
    }

    /// Keeps what clients send on connections opened from now on.
    pub fn record(&self) {
        self.shared.recording.store(true, Ordering::SeqCst);
    }

    /// The HTTP requests sent through recorded connections, connection by connection.
    pub fn recorded_requests(&self) -> Vec<RecordedRequest> {
        let recorded = self.shared.recorded.lock().unwrap();
        recorded.iter().flat_map(|c| parse_requests(c)).collect()
    }

    /// The counters now.
    pub fn stats(&self) -> ProxyStats {
        let c = &self.shared.counters;
        ProxyStats {
            accepted: c.accepted.load(Ordering::SeqCst),
            up_bytes: c.up_bytes.load(Ordering::SeqCst),
            down_bytes: c.down_bytes.load(Ordering::SeqCst),
            swallowed_bytes: c.swallowed_bytes.load(Ordering::SeqCst),
            resets: c.resets.load(Ordering::SeqCst),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    mut mode_rx: watch::Receiver<Mode>,
    heal_rx: watch::Receiver<u64>,
    shared: Arc<Shared>,
) {
    let mut listener = Some(listener);
    loop {
        let mode = *mode_rx.borrow_and_update();
        match (mode == Mode::Refuse, listener.is_some()) {
            (true, true) => {
                listener = None;
                shared.listening.store(false, Ordering::SeqCst);
            }
            (false, false) => {
                // The port was ours a moment ago; retry briefly if the kernel still holds it.
                for _ in 0..500 {
                    match bind_reuse(addr) {
                        Ok(l) => {
                            listener = Some(l);
                            break;
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
                shared.listening.store(listener.is_some(), Ordering::SeqCst);
            }
            _ => {}
        }
        match &listener {
            Some(l) => {
                tokio::select! {
                    r = l.accept() => {
                        if let Ok((client, _)) = r {
                            shared.counters.accepted.fetch_add(1, Ordering::SeqCst);
                            let _ = client.set_nodelay(true);
                            tokio::spawn(connection(
                                client,
                                mode_rx.clone(),
                                heal_rx.clone(),
                                shared.clone(),
                            ));
                        }
                    }
                    r = mode_rx.changed() => if r.is_err() { return },
                }
            }
            None => {
                if mode_rx.changed().await.is_err() {
                    return;
                }
            }
        }
    }
}

fn bind_reuse(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let s = tokio::net::TcpSocket::new_v4()?;
    s.set_reuseaddr(true)?;
    s.bind(addr)?;
    s.listen(1024)
}

/// Ends a connection with RST rather than FIN.
fn reset(s: &TcpStream) {
    let _ = s.set_zero_linger();
}

async fn connection(
    client: TcpStream,
    mut mode_rx: watch::Receiver<Mode>,
    mut heal_rx: watch::Receiver<u64>,
    shared: Arc<Shared>,
) {
    let c = &shared.counters;
    let born = shared.silent_gen.load(Ordering::SeqCst);
    let silenced = || shared.silent_gen.load(Ordering::SeqCst) > born;
    let epoch = *heal_rx.borrow_and_update();
    let mode = *mode_rx.borrow_and_update();
    match mode {
        Mode::Refuse => {
            reset(&client);
            c.resets.fetch_add(1, Ordering::SeqCst);
            return;
        }
        Mode::Blackhole => {
            swallow(client, heal_rx, epoch, &shared).await;
            return;
        }
        Mode::Delay(d) => tokio::time::sleep(d).await,
        _ => {}
    }
    let upstream_addr = *shared.upstream.lock().unwrap();
    let Ok(upstream) = TcpStream::connect(upstream_addr).await else {
        // Upstream is down: the client sees what it would see connecting there directly.
        reset(&client);
        c.resets.fetch_add(1, Ordering::SeqCst);
        return;
    };
    let _ = upstream.set_nodelay(true);
    let mut client = client;
    let mut upstream = upstream;
    let (mut cr, mut cw) = client.split();
    let (mut ur, mut uw) = upstream.split();
    let mut up_buf = vec![0u8; 16 * 1024];
    let mut down_buf = vec![0u8; 16 * 1024];
    let (mut client_eof, mut upstream_eof) = (false, false);
    // Client→server bytes forwarded since `ResetAfter` took effect.
    let mut since_reset_mode = 0u64;
    let slot = shared.recording.load(Ordering::SeqCst).then(|| {
        let mut r = shared.recorded.lock().unwrap();
        r.push(Vec::new());
        r.len() - 1
    });
    let mut must_reset = false;
    let mut swallowing_since: Option<u64> = None;
    'conn: loop {
        if client_eof && upstream_eof {
            break;
        }
        tokio::select! {
            r = cr.read(&mut up_buf), if !client_eof => {
                let n = match r { Ok(n) => n, Err(_) => { must_reset = true; break 'conn } };
                if n == 0 {
                    client_eof = true;
                    let _ = uw.shutdown().await;
                    continue;
                }
                let mode = match *mode_rx.borrow() {
                    Mode::Silent if silenced() => Mode::Blackhole,
                    Mode::Silent => Mode::Pass,
                    m => m,
                };
                match mode {
                    Mode::Pass | Mode::ResetOnAnswer | Mode::Silent => {
                        if let Some(i) = slot {
                            shared.recorded.lock().unwrap()[i].extend_from_slice(&up_buf[..n]);
                        }
                        if uw.write_all(&up_buf[..n]).await.is_err() { must_reset = true; break 'conn }
                        c.up_bytes.fetch_add(n as u64, Ordering::SeqCst);
                    }
                    Mode::Delay(d) => {
                        tokio::time::sleep(d).await;
                        if uw.write_all(&up_buf[..n]).await.is_err() { must_reset = true; break 'conn }
                        c.up_bytes.fetch_add(n as u64, Ordering::SeqCst);
                    }
                    Mode::Blackhole => {
                        swallowing_since.get_or_insert(*heal_rx.borrow());
                        c.swallowed_bytes.fetch_add(n as u64, Ordering::SeqCst);
                    }
                    Mode::ResetAfter(limit) => {
                        let take = (limit.saturating_sub(since_reset_mode)).min(n as u64) as usize;
                        if take > 0 {
                            let _ = uw.write_all(&up_buf[..take]).await;
                            c.up_bytes.fetch_add(take as u64, Ordering::SeqCst);
                            since_reset_mode += take as u64;
                        }
                        if take < n || since_reset_mode >= limit {
                            must_reset = true;
                            break 'conn;
                        }
                    }
                    Mode::Refuse => { must_reset = true; break 'conn }
                }
            }
            r = ur.read(&mut down_buf), if !upstream_eof => {
                let n = match r { Ok(n) => n, Err(_) => { must_reset = true; break 'conn } };
                if n == 0 {
                    upstream_eof = true;
                    let _ = cw.shutdown().await;
                    continue;
                }
                let mode = match *mode_rx.borrow() {
                    Mode::Silent if silenced() => Mode::Blackhole,
                    Mode::Silent => Mode::Pass,
                    m => m,
                };
                match mode {
                    Mode::Pass | Mode::ResetAfter(_) | Mode::Silent => {
                        if cw.write_all(&down_buf[..n]).await.is_err() { must_reset = true; break 'conn }
                        c.down_bytes.fetch_add(n as u64, Ordering::SeqCst);
                    }
                    Mode::Delay(d) => {
                        tokio::time::sleep(d).await;
                        if cw.write_all(&down_buf[..n]).await.is_err() { must_reset = true; break 'conn }
                        c.down_bytes.fetch_add(n as u64, Ordering::SeqCst);
                    }
                    Mode::Blackhole => {
                        swallowing_since.get_or_insert(*heal_rx.borrow());
                        c.swallowed_bytes.fetch_add(n as u64, Ordering::SeqCst);
                    }
                    Mode::Refuse | Mode::ResetOnAnswer => { must_reset = true; break 'conn }
                }
            }
            r = mode_rx.changed() => {
                if r.is_err() { break 'conn }
                match *mode_rx.borrow_and_update() {
                    Mode::Refuse => { must_reset = true; break 'conn }
                    Mode::ResetAfter(_) => since_reset_mode = 0,
                    Mode::Blackhole => { swallowing_since.get_or_insert(*heal_rx.borrow()); }
                    Mode::Silent if silenced() => { swallowing_since.get_or_insert(*heal_rx.borrow()); }
                    _ => {}
                }
            }
            r = heal_rx.changed() => {
                if r.is_err() { break 'conn }
                let now = *heal_rx.borrow_and_update();
                if swallowing_since.is_some_and(|e| e < now) {
                    must_reset = true;
                    break 'conn;
                }
            }
        }
    }
    if must_reset {
        c.resets.fetch_add(1, Ordering::SeqCst);
        reset(&client);
        reset(&upstream);
    }
}

/// A connection accepted while blackholed: read and discard until the client gives up or a heal.
async fn swallow(
    client: TcpStream,
    mut heal_rx: watch::Receiver<u64>,
    epoch: u64,
    shared: &Shared,
) {
    let mut client = client;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            r = client.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => { shared.counters.swallowed_bytes.fetch_add(n as u64, Ordering::SeqCst); }
            },
            r = heal_rx.changed() => {
                if r.is_err() || *heal_rx.borrow_and_update() > epoch {
                    shared.counters.resets.fetch_add(1, Ordering::SeqCst);
                    reset(&client);
                    return;
                }
            }
        }
    }
}
