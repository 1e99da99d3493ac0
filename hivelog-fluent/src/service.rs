//! The transport as the sink sees it: a tier of servers, their connections, and where each
//! message goes, is acked, or goes again.
//!
//! - **Servers and endpoints.** Each `HIVELOG_FLUENT_ADDR` entry is a server; a host name is
//!   resolved, and every address it resolves to is an endpoint of its own with the server's
//!   weight and role (aggregators behind one service-discovery name all take traffic). Names
//!   are resolved again when an endpoint needs a new connection (at most once a second per
//!   name), so a replaced aggregator is found without a restart.
//! - **Weighted spread.** New records are cut into one message per healthy primary endpoint,
//!   sized by weight (default 60, as Fluentd's `out_forward`), with a running deficit so that
//!   small batches even out over time; the messages are in flight together and their acks
//!   awaited together, so two receivers work in parallel. Standby servers take traffic only
//!   while no primary is up.
//! - **Down and back.** An endpoint is marked down on a refused or timed-out connect, a failed
//!   write, a reset, and silence; it is tried again after a backoff (250 ms doubling to 30 s,
//!   [`crate::retry::server_backoff`]) once the heartbeat finds it reachable, and is up again
//!   when a connection (and handshake) succeeds. What each failure does is the table of
//!   [`crate::retry`].
//! - **Heartbeat.** With several endpoints, a background task opens a plain connection to each
//!   endpoint every `HIVELOG_FLUENT_HEARTBEAT_INTERVAL` (1 s), as Fluentd's `out_forward`
//!   does, so a dead standby or an idle server that went away is known (and shown) before it is
//!   needed, and a recovered server rejoins without a failed batch first.
//!
//! **The silence rule.** A connection is silent when its oldest unacked message has waited
//! longer than `max(1 s, 10 × p99)` of its server's last 128 ack latencies, and never longer
//! than `HIVELOG_FLUENT_ACK_TIMEOUT` (a server that never acked yet gets the whole ack
//! timeout: there is nothing to compare with). Its unacked messages are written again, whole
//! and under the same chunk ids, on another connection: another endpoint when one is up, else
//! a new connection to the same one (a middlebox that dropped the flow, a hung worker behind a
//! load balancer). Why ten times the p99: Fluentd's ack latency is steady for a given load and
//! message size, so a tenfold outlier is not a slow ack but a lost one, and waiting the full ack
//! timeout (30 s) would outlive most shutdown deadlines.
//!
//! **Shutdown.** Once the pipeline's shutdown began, every wait is bounded by the time left:
//! an ack is awaited at most half the time that remained when the wait began, then the message
//! is resent on another connection, so the resend happens before the deadline rather than the
//! process waiting out the ack timeout with its events unsent.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::Poll;
use std::time::{Duration, Instant};

use hivelog_core::endpoints::{EndpointState, EndpointStats, Endpoints};
use hivelog_core::sink::shutdown_deadline;
use hivelog_core::FailureKind;

use crate::ack::{self, AckError, Answer, Latency};
use crate::config::{Address, FluentConfig, Server};
use crate::handshake::{self, Credentials};
use crate::request_builder::Message;
use crate::retry::{self, Failure, Verdict};
use crate::transport::{self, Connection, Connector, Idle, Target};

/// Shortest silence limit: 1 s, whatever the recent latencies.
pub const SILENCE_FLOOR: Duration = Duration::from_secs(1);
/// The silence limit in multiples of the recent p99 ack latency.
pub const SILENCE_FACTOR: u32 = 10;
/// Rounds of resending within one send before the rest goes back to the pipeline.
const MAX_ROUNDS: usize = 8;
/// How often a wait for acks looks whether shutdown began.
const SHUTDOWN_POLL: Duration = Duration::from_millis(50);
/// A name is resolved again at most this often.
const RESOLVE_INTERVAL: Duration = Duration::from_secs(1);

/// Addresses a host name and port resolve to, in the resolver's order.
type Lookup = Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send>>;
/// How names are resolved: the system's resolver, or a test's fixed answers.
type Resolver = Arc<dyn Fn(String, u16) -> Lookup + Send + Sync>;

/// The system's resolver, as `tokio::net::lookup_host`.
fn system_resolver() -> Resolver {
    Arc::new(|host: String, port: u16| -> Lookup {
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), port))
                .await?
                .collect())
        })
    })
}

#[derive(Clone, Debug)]
enum Health {
    Up,
    Down { since: Instant, retry_at: Instant },
    Refused { until: Instant, failure: Failure },
}

/// A message written on an endpoint and not acked yet.
#[derive(Debug)]
struct InFlight {
    msg: usize,
    chunk: String,
    written: Instant,
    acked: bool,
}

/// One resolved address of a server.
#[derive(Debug)]
struct Endpoint {
    server: usize,
    target: Target,
    name: String,
    conn: Option<Connection>,
    health: Health,
    /// Failures since the last ack.
    failures: u32,
    latency: Latency,
    inflight: Vec<InFlight>,
    delivered: u64,
    resent: u64,
    /// Connections opened during the current send.
    connects: u32,
    /// Whether the current send used it (connected or wrote).
    tried: bool,
}

impl Endpoint {
    fn new(server: usize, target: Target, name: String) -> Endpoint {
        Endpoint {
            server,
            target,
            name,
            conn: None,
            health: Health::Up,
            failures: 0,
            latency: Latency::default(),
            inflight: Vec::new(),
            delivered: 0,
            resent: 0,
            connects: 0,
            tried: false,
        }
    }

    fn is_up(&self) -> bool {
        matches!(self.health, Health::Up)
    }
}

/// What identifies an endpoint across resolutions: its server and its address.
type EndpointKey = (usize, Target);

/// A wait for one endpoint's acks, borrowing it.
type Wait<'a> = Pin<Box<dyn Future<Output = Option<Failure>> + Send + 'a>>;

/// What the heartbeat task shares with the service.
#[derive(Debug, Default)]
struct Board {
    /// Endpoints to check: name and target.
    targets: Mutex<Vec<(String, Target)>>,
    /// The last check of each: reachable, and when.
    results: Mutex<HashMap<String, (bool, Instant)>>,
}

/// The servers of one sink, their endpoints and connections.
pub struct Service {
    servers: Vec<Server>,
    endpoints: Vec<Endpoint>,
    connector: Connector,
    creds: Option<Credentials>,
    ack: bool,
    ack_timeout: Duration,
    heartbeat_interval: Duration,
    published: Endpoints,
    board: Option<Arc<Board>>,
    resolved_at: Vec<Option<Instant>>,
    resolver: Resolver,
    /// The endpoints the running deficit is kept for, by identity (server and address, not
    /// index: a new resolution reorders the list), and the events given to each.
    spread: Vec<(EndpointKey, u64)>,
    /// The most telling failure of the current send.
    failure: Option<Failure>,
    bytes_sent: u64,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.endpoints.iter().map(|e| e.name.as_str()).collect();
        f.debug_struct("Service")
            .field("endpoints", &names)
            .finish()
    }
}

/// How informative a failure is: what the destination said beats "unreachable".
fn rank(f: &Failure) -> u8 {
    match (f.verdict, f.kind.reached()) {
        (Verdict::CredentialsRefused, _) => 3,
        (_, Some(true)) => 2,
        _ => 1,
    }
}

impl Service {
    /// The service for `config`'s servers, authenticating with `creds` when set.
    pub fn new(config: &FluentConfig, creds: Option<Credentials>) -> Service {
        let servers = config.servers().to_vec();
        let endpoints = servers
            .iter()
            .enumerate()
            .map(|(i, s)| Endpoint::new(i, initial_target(&s.address), s.address.to_string()))
            .collect();
        Service {
            resolved_at: vec![None; servers.len()],
            resolver: system_resolver(),
            servers,
            endpoints,
            connector: Connector::new(config),
            creds,
            ack: config.ack,
            ack_timeout: config.ack_timeout,
            heartbeat_interval: config.heartbeat_interval,
            published: Endpoints::default(),
            board: None,
            spread: Vec::new(),
            failure: None,
            bytes_sent: 0,
        }
    }

    /// The handle per-endpoint figures are published on.
    pub fn endpoints(&self) -> Option<Endpoints> {
        Some(self.published.clone())
    }

    /// Before a send: resolves names that need it, applies the heartbeat's findings, lets
    /// endpoints whose backoff passed rejoin, and starts the heartbeat.
    pub async fn prepare(&mut self) {
        self.failure = None;
        self.bytes_sent = 0;
        for i in 0..self.servers.len() {
            self.resolve(i).await;
        }
        self.start_heartbeat();
        let now = Instant::now();
        let results = self
            .board
            .as_ref()
            .map(|b| lock(&b.results).clone())
            .unwrap_or_default();
        let alone = self.endpoints.len() == 1;
        for e in &mut self.endpoints {
            e.connects = 0;
            e.tried = false;
            if !e.inflight.is_empty() {
                // A send cut off at the shutdown deadline: its acks would be stale.
                e.inflight.clear();
                e.conn = None;
            }
            let seen = results.get(&e.name).copied();
            let interval = self.heartbeat_interval;
            match e.health.clone() {
                // With a heartbeat, only an endpoint it found reachable rejoins.
                Health::Down { since, retry_at }
                    if retry_at <= now
                        && (alone || seen.is_some_and(|(ok, at)| ok && at > since)) =>
                {
                    e.health = Health::Up;
                }
                Health::Refused { until, .. } if until <= now => e.health = Health::Up,
                Health::Up
                    if e.conn.is_none()
                        && seen.is_some_and(|(ok, at)| !ok && at + interval > now) =>
                {
                    e.health = Health::Down {
                        since: now,
                        retry_at: now + retry::server_backoff(e.failures.max(1)),
                    };
                }
                _ => {}
            }
        }
    }

    /// Resolves server `i`'s name again when one of its endpoints needs a connection.
    async fn resolve(&mut self, i: usize) {
        let (host, port) = match &self.servers[i].address {
            Address::Tcp { host, port } | Address::Tls { host, port } => (host.clone(), *port),
            Address::Unix(_) => return,
        };
        if host.parse::<std::net::IpAddr>().is_ok() {
            return;
        }
        let needed = self
            .endpoints
            .iter()
            .any(|e| e.server == i && e.conn.is_none());
        let recent = self.resolved_at[i].is_some_and(|t| t.elapsed() < RESOLVE_INTERVAL);
        if !needed || recent {
            return;
        }
        self.resolved_at[i] = Some(Instant::now());
        let timeout = self.connector.connect_timeout();
        let lookup = tokio::time::timeout(timeout, (self.resolver)(host, port));
        let Ok(Ok(mut addrs)) = lookup.await else {
            return; // Keep what we have; connecting will say why the name does not resolve.
        };
        // A resolver may repeat an address anywhere in its answer (one per A record, per
        // search domain): keep the first of each, in the resolver's order.
        let mut seen = HashSet::new();
        addrs.retain(|a| seen.insert(*a));
        if addrs.is_empty() {
            return;
        }
        self.reconcile(i, &addrs);
    }

    /// Makes server `i`'s endpoints the resolved `addrs`, keeping those still there.
    fn reconcile(&mut self, i: usize, addrs: &[SocketAddr]) {
        let base = self.servers[i].address.to_string();
        let several = addrs.len() > 1;
        self.endpoints.retain(|e| {
            e.server != i || matches!(e.target, Target::Socket(a) if addrs.contains(&a))
        });
        for a in addrs {
            let name = if several {
                format!("{base} ({a})")
            } else {
                base.clone()
            };
            match self
                .endpoints
                .iter_mut()
                .find(|e| e.server == i && e.target == Target::Socket(*a))
            {
                Some(e) => e.name = name,
                None => self
                    .endpoints
                    .push(Endpoint::new(i, Target::Socket(*a), name)),
            }
        }
        self.endpoints.sort_by_key(|e| e.server);
    }

    /// Starts the heartbeat task once, with several endpoints.
    fn start_heartbeat(&mut self) {
        if self.board.is_some() || self.endpoints.len() < 2 {
            return;
        }
        let board = Arc::new(Board::default());
        let weak = Arc::downgrade(&board);
        self.board = Some(board);
        let every = self.heartbeat_interval;
        let timeout = self
            .connector
            .connect_timeout()
            .min(every.max(SILENCE_FLOOR));
        let published = self.published.clone();
        tokio::spawn(heartbeat(weak, every, timeout, published));
    }

    /// Whether every endpoint refused our credentials; the failure if so.
    pub fn all_refused(&self) -> Option<Failure> {
        let mut failure = None;
        for e in &self.endpoints {
            match &e.health {
                Health::Refused { failure: f, .. } => failure = Some(f.clone()),
                _ => return None,
            }
        }
        failure
    }

    /// Splits `events` new records among the endpoints taking traffic, by weight and running
    /// deficit: `(endpoint, count)` pieces, or nothing when no endpoint is up.
    pub fn apportion(&mut self, events: usize, min_piece: usize) -> Vec<(usize, usize)> {
        let active = self.active();
        if active.is_empty() || events == 0 {
            return Vec::new();
        }
        let keys: Vec<EndpointKey> = active.iter().map(|&i| self.key(i)).collect();
        if !self.spread.iter().map(|(k, _)| k).eq(keys.iter()) {
            self.spread = keys.into_iter().map(|k| (k, 0)).collect();
        }
        let weights: Vec<u64> = active.iter().map(|&i| self.weight(i)).collect();
        let sent: Vec<u64> = self.spread.iter().map(|(_, n)| *n).collect();
        let pieces = split_by_deficit(events, &weights, &sent, min_piece);
        let mut out = Vec::new();
        for (k, n) in pieces.into_iter().enumerate() {
            if n > 0 {
                self.spread[k].1 += n as u64;
                out.push((active[k], n));
            }
        }
        out
    }

    /// Endpoint `i`'s identity, which survives a reordering of the list.
    fn key(&self, i: usize) -> EndpointKey {
        let e = &self.endpoints[i];
        (e.server, e.target.clone())
    }

    fn weight(&self, endpoint: usize) -> u64 {
        u64::from(self.servers[self.endpoints[endpoint].server].weight)
    }

    fn is_standby(&self, endpoint: usize) -> bool {
        self.servers[self.endpoints[endpoint].server].standby
    }

    /// Endpoints that take traffic now: the primaries that are up, else the standbys that are.
    fn active(&self) -> Vec<usize> {
        let up = |standby: bool| -> Vec<usize> {
            (0..self.endpoints.len())
                .filter(|&i| self.endpoints[i].is_up() && self.is_standby(i) == standby)
                .collect()
        };
        let primaries = up(false);
        if primaries.is_empty() {
            up(true)
        } else {
            primaries
        }
    }

    /// Endpoints to try for a message, best first: the planned one if up, the active ones
    /// by deficit, endpoints whose backoff passed, and, when nothing is up, any endpoint not
    /// tried yet in this send.
    fn candidates(&self, planned: Option<usize>) -> Vec<usize> {
        let now = Instant::now();
        let mut out: Vec<usize> = planned
            .filter(|&p| p < self.endpoints.len() && self.endpoints[p].is_up())
            .into_iter()
            .collect();
        let mut active = self.active();
        active.sort_by(|&a, &b| {
            let load = |i: usize| {
                let key = self.key(i);
                let sent = self
                    .spread
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map_or(0, |(_, n)| *n);
                sent as f64 / self.weight(i) as f64
            };
            load(a).total_cmp(&load(b))
        });
        out.extend(active);
        let mut due: Vec<usize> = (0..self.endpoints.len())
            .filter(|&i| {
                let e = &self.endpoints[i];
                matches!(e.health, Health::Down { retry_at, .. } if retry_at <= now)
                    && e.connects < 2
            })
            .collect();
        due.sort_by_key(|&i| self.is_standby(i));
        out.extend(due);
        if out.iter().all(|&i| !self.endpoints[i].is_up()) {
            out.extend((0..self.endpoints.len()).filter(|&i| {
                let e = &self.endpoints[i];
                matches!(e.health, Health::Down { .. }) && !e.tried
            }));
        }
        let mut seen = Vec::new();
        out.retain(|i| {
            let new = !seen.contains(i);
            seen.push(*i);
            new
        });
        out
    }

    /// A usable connection to endpoint `i`: the open one if still alive, else a new one
    /// (with the handshake).
    async fn connect(&mut self, i: usize) -> Result<(), Failure> {
        let e = &mut self.endpoints[i];
        e.tried = true;
        if let Some(c) = &mut e.conn {
            if !e.inflight.is_empty() {
                return Ok(());
            }
            // Acks that arrive after their send gave up are stale: ignore them.
            if let (Idle::Dead(_), _) = c.check_idle().await {
                e.conn = None;
            }
        }
        if e.conn.is_some() {
            return Ok(());
        }
        e.connects += 1;
        let deadline = Instant::now() + self.connector.connect_timeout();
        let address = &self.servers[e.server].address;
        let mut c = self.connector.connect(address, &e.target, &e.name).await?;
        if let Some(creds) = &self.creds {
            handshake::handshake(&mut c, creds, deadline).await?;
        }
        e.conn = Some(c);
        e.health = Health::Up;
        Ok(())
    }

    /// Writes message `m` on the best endpoint that takes it; false when none does (the
    /// message stays pending, and the failures are recorded).
    pub async fn dispatch(&mut self, msgs: &mut [Message], m: usize) -> bool {
        for i in self.candidates(msgs[m].node) {
            if let Err(f) = self.connect(i).await {
                self.fail(i, f, msgs);
                continue;
            }
            let conn = self.endpoints[i].conn.as_mut().expect("connected above");
            if let Err(err) = conn.write_all(&msgs[m].bytes).await {
                self.fail(i, err.into(), msgs);
                continue;
            }
            self.bytes_sent += msgs[m].bytes.len() as u64;
            let e = &mut self.endpoints[i];
            let msg = &mut msgs[m];
            if msg.sends > 0 || msg.resend {
                e.resent += msg.records.len() as u64;
            }
            msg.sends += 1;
            if self.ack {
                msg.at = Some(i);
                e.inflight.push(InFlight {
                    msg: m,
                    chunk: msg.chunk.clone(),
                    written: Instant::now(),
                    acked: false,
                });
            } else {
                // Without acks, written and flushed is all there is (at-most-once).
                msg.acked = true;
                e.delivered += msg.records.len() as u64;
            }
            return true;
        }
        false
    }

    /// Endpoint `i` failed: its connection is dropped, its unacked messages are pending again,
    /// and its health follows the failure's verdict ([`crate::retry`]).
    fn fail(&mut self, i: usize, f: Failure, msgs: &mut [Message]) {
        let now = Instant::now();
        let e = &mut self.endpoints[i];
        e.conn = None;
        for fl in e.inflight.drain(..) {
            if !fl.acked {
                msgs[fl.msg].at = None;
            }
        }
        e.failures += 1;
        e.health = match f.verdict {
            Verdict::CredentialsRefused => Health::Refused {
                until: now + retry::AUTH_RETRY_INTERVAL,
                failure: f.clone(),
            },
            // The first silence since an ack: a new connection is worth trying at once.
            Verdict::Silent if e.failures == 1 => Health::Down {
                since: now,
                retry_at: now,
            },
            _ => Health::Down {
                since: now,
                retry_at: now + retry::server_backoff(e.failures),
            },
        };
        if self
            .failure
            .as_ref()
            .is_none_or(|old| rank(&f) >= rank(old))
        {
            self.failure = Some(f);
        }
    }

    /// Until every written message is acked, or nothing usable is left: waits for acks on
    /// every endpoint at once, and writes what a failed endpoint had again elsewhere.
    pub async fn settle(&mut self, msgs: &mut [Message]) {
        for _ in 0..MAX_ROUNDS {
            for m in 0..msgs.len() {
                if !msgs[m].acked && msgs[m].at.is_none() && !self.dispatch(msgs, m).await {
                    break;
                }
            }
            if self.endpoints.iter().all(|e| e.inflight.is_empty()) {
                return;
            }
            let failed = self.wait_acks().await;
            self.apply_acks(msgs);
            for (i, f) in failed {
                self.fail(i, f, msgs);
            }
        }
        // Out of rounds: what is still in flight goes back to the pipeline, on new connections.
        for e in &mut self.endpoints {
            if !e.inflight.is_empty() {
                e.inflight.clear();
                e.conn = None;
            }
        }
    }

    /// Moves acked messages out of the endpoints' in-flight lists.
    fn apply_acks(&mut self, msgs: &mut [Message]) {
        for e in &mut self.endpoints {
            e.inflight.retain(|fl| {
                if fl.acked {
                    let m = &mut msgs[fl.msg];
                    m.acked = true;
                    m.at = None;
                    e.delivered += m.records.len() as u64;
                }
                !fl.acked
            });
        }
    }

    /// Waits on every endpoint with messages in flight until all are acked or one fails;
    /// returns the failures.
    async fn wait_acks(&mut self) -> Vec<(usize, Failure)> {
        let ack_timeout = self.ack_timeout;
        let mut waits: Vec<(usize, Wait<'_>)> = self
            .endpoints
            .iter_mut()
            .enumerate()
            .filter(|(_, e)| !e.inflight.is_empty())
            .map(|(i, e)| (i, Box::pin(wait_endpoint(e, ack_timeout)) as Wait<'_>))
            .collect();
        std::future::poll_fn(move |cx| {
            let mut failed = Vec::new();
            waits.retain_mut(|(i, w)| match w.as_mut().poll(cx) {
                Poll::Ready(Some(f)) => {
                    failed.push((*i, f));
                    false
                }
                Poll::Ready(None) => false,
                Poll::Pending => true,
            });
            if !failed.is_empty() || waits.is_empty() {
                Poll::Ready(failed)
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// The most telling failure of this send, if any.
    pub fn failure(&self) -> Option<&Failure> {
        self.failure.as_ref()
    }

    /// Bytes written during this send.
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent
    }

    /// Publishes every endpoint's state and totals, and tells the heartbeat what to check.
    pub fn publish(&self) {
        if let Some(b) = &self.board {
            let targets = self
                .endpoints
                .iter()
                .filter(|e| !matches!(e.health, Health::Refused { .. }))
                .map(|e| (e.name.clone(), e.target.clone()))
                .collect();
            *lock(&b.targets) = targets;
        }
        let primary_up = self
            .endpoints
            .iter()
            .enumerate()
            .any(|(i, e)| e.is_up() && !self.is_standby(i));
        let list = self
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| EndpointStats {
                endpoint: e.name.clone(),
                state: match e.health {
                    Health::Up if self.is_standby(i) && primary_up => EndpointState::Standby,
                    Health::Up => EndpointState::Up,
                    Health::Down { .. } => EndpointState::Down,
                    Health::Refused { .. } => EndpointState::CredentialsRefused,
                },
                delivered: e.delivered,
                resent: e.resent,
            })
            .collect();
        self.published.publish(list);
    }

    /// Connects to every primary endpoint, so the first batch does not wait; failures only
    /// mark endpoints down.
    pub async fn start(&mut self) {
        self.prepare().await;
        for i in 0..self.endpoints.len() {
            if !self.is_standby(i) {
                if let Err(f) = self.connect(i).await {
                    self.fail(i, f, &mut []);
                }
            }
        }
        self.failure = None;
        self.publish();
    }

    /// Closes every connection gracefully, sharing `timeout`.
    pub async fn close(&mut self, timeout: Duration) {
        let until = Instant::now() + timeout;
        for e in &mut self.endpoints {
            if let Some(c) = e.conn.take() {
                c.shutdown(until.saturating_duration_since(Instant::now()))
                    .await;
            }
        }
        self.publish();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The target of a server before any resolution.
fn initial_target(a: &Address) -> Target {
    match a {
        Address::Unix(p) => Target::Unix(p.clone()),
        Address::Tcp { host, port } | Address::Tls { host, port } => {
            match host.parse::<std::net::IpAddr>() {
                Ok(ip) => Target::Socket(std::net::SocketAddr::new(ip, *port)),
                Err(_) => Target::Name(host.clone(), *port),
            }
        }
    }
}

/// How `events` are cut among endpoints of `weights` that were given `sent` so far: each
/// gets what brings it closest to its weight's share of the total; a batch smaller than two
/// `min_piece`s goes whole to the endpoint furthest behind.
pub fn split_by_deficit(
    events: usize,
    weights: &[u64],
    sent: &[u64],
    min_piece: usize,
) -> Vec<usize> {
    let total_w: u64 = weights.iter().sum::<u64>().max(1);
    let total = sent.iter().sum::<u64>() + events as u64;
    let want: Vec<f64> = weights
        .iter()
        .zip(sent)
        .map(|(&w, &s)| (total as f64 * w as f64 / total_w as f64 - s as f64).max(0.0))
        .collect();
    let mut out = vec![0usize; weights.len()];
    let behind = (0..want.len())
        .max_by(|&a, &b| want[a].total_cmp(&want[b]))
        .unwrap_or(0);
    if events < 2 * min_piece.max(1) || weights.len() == 1 {
        out[behind] = events;
        return out;
    }
    let sum: f64 = want.iter().sum::<f64>().max(f64::MIN_POSITIVE);
    let mut given = 0;
    for (k, w) in want.iter().enumerate() {
        out[k] = ((w / sum) * events as f64).floor() as usize;
        given += out[k];
    }
    out[behind] += events - given;
    // A piece too small to be worth a message of its own joins the largest.
    for k in 0..out.len() {
        if out[k] > 0 && out[k] < min_piece {
            let n = std::mem::take(&mut out[k]);
            let big = (0..out.len()).max_by_key(|&j| out[j]).unwrap_or(0);
            out[big] += n;
        }
    }
    out
}

/// Waits for the acks of endpoint `e`'s messages in flight: `None` once all are acked, or
/// the failure that ended the wait (silence, timeout, shutdown, a closed connection, HELO).
async fn wait_endpoint(e: &mut Endpoint, ack_timeout: Duration) -> Option<Failure> {
    let p99 = e.latency.p99();
    let limit = p99.map_or(ack_timeout, |p| {
        (p * SILENCE_FACTOR).max(SILENCE_FLOOR).min(ack_timeout)
    });
    let mut shutdown_seen: Option<Instant> = None;
    let Some(conn) = e.conn.as_mut() else {
        let addr = e.name.clone();
        return Some(AckError::Transport(crate::transport::TransportError::Closed { addr }).into());
    };
    loop {
        let oldest = e
            .inflight
            .iter()
            .filter(|f| !f.acked)
            .map(|f| f.written)
            .min()?;
        let now = Instant::now();
        let mut until = oldest + limit;
        let mut cut_by_shutdown = false;
        if let Some(d) = shutdown_deadline() {
            let t0 = (*shutdown_seen.get_or_insert(now)).max(oldest);
            let half = t0 + d.saturating_duration_since(t0) / 2;
            if half < until {
                (until, cut_by_shutdown) = (half, true);
            }
        }
        if now >= until {
            let waited = now - oldest;
            return Some(ack_failure(
                &e.inflight,
                conn.addr(),
                p99,
                limit,
                cut_by_shutdown,
                waited,
            ));
        }
        let wake = if shutdown_seen.is_none() {
            until.min(now + SHUTDOWN_POLL)
        } else {
            until
        };
        match conn.read_value(wake).await {
            Ok(None) => {}
            Ok(Some(v)) => match ack::answer(&v) {
                Answer::Ack(c) => {
                    let now = Instant::now();
                    if let Some(f) = e
                        .inflight
                        .iter_mut()
                        .find(|f| !f.acked && f.chunk.as_bytes() == c)
                    {
                        f.acked = true;
                        e.latency.record(now - f.written);
                        e.failures = 0;
                    }
                }
                Answer::Helo => {
                    let addr = conn.addr().to_owned();
                    return Some(AckError::HandshakeRequired { addr }.into());
                }
                Answer::Other => {}
            },
            Err(err) => return Some(AckError::from(err).into()),
        }
    }
}

/// The failure of a wait that ran out: silence, the ack timeout, or the shutdown's share.
fn ack_failure(
    inflight: &[InFlight],
    addr: &str,
    p99: Option<Duration>,
    limit: Duration,
    by_shutdown: bool,
    waited: Duration,
) -> Failure {
    let missing = inflight.iter().filter(|f| !f.acked).count();
    let total = inflight.len();
    let addr = addr.to_owned();
    if by_shutdown {
        let message = format!(
            "{addr} did not ack {missing} of {total} messages within {waited:?}, half the time left before the shutdown deadline: resending on another connection"
        );
        return Failure::new(FailureKind::TimedOut, message, Verdict::Silent);
    }
    match p99 {
        Some(p99) => AckError::Silent {
            addr,
            missing,
            total,
            after: waited.max(limit),
            p99,
        }
        .into(),
        None => AckError::Timeout {
            addr,
            missing,
            total,
            timeout: limit,
        }
        .into(),
    }
}

/// The heartbeat: every `every`, opens a plain connection to each endpoint the service asks
/// about, and records whether it answered; marks unreachable ones down in the published list.
async fn heartbeat(board: Weak<Board>, every: Duration, timeout: Duration, published: Endpoints) {
    loop {
        tokio::time::sleep(every).await;
        let Some(b) = board.upgrade() else {
            return;
        };
        let targets = lock(&b.targets).clone();
        drop(b);
        let mut checks = Vec::new();
        for (name, target) in targets {
            checks.push(tokio::spawn(async move {
                let ok = transport::probe(&target, timeout).await;
                (name, ok)
            }));
        }
        let mut found = Vec::new();
        for c in checks {
            if let Ok(r) = c.await {
                found.push(r);
            }
        }
        let Some(b) = board.upgrade() else {
            return;
        };
        let now = Instant::now();
        let mut results = lock(&b.results);
        let mut list = published.snapshot();
        for (name, ok) in found {
            results.insert(name.clone(), (ok, now));
            if let Some(s) = list.iter_mut().find(|s| s.endpoint == name && !ok) {
                s.state = EndpointState::Down;
            }
        }
        if !list.is_empty() {
            published.publish(list);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_resolved_address_is_an_endpoint_and_a_new_resolution_keeps_the_known_ones() {
        let config = FluentConfig::new("tcp://agg:24224,10.0.0.9:1?standby").unwrap();
        let mut s = Service::new(&config, None);
        let addr = |last: u8| std::net::SocketAddr::from(([10, 0, 0, last], 24224));
        s.reconcile(0, &[addr(1), addr(2)]);
        s.endpoints[1].delivered = 7;
        let names =
            |s: &Service| -> Vec<String> { s.endpoints.iter().map(|e| e.name.clone()).collect() };
        assert_eq!(
            names(&s),
            [
                "tcp://agg:24224 (10.0.0.1:24224)",
                "tcp://agg:24224 (10.0.0.2:24224)",
                "tcp://10.0.0.9:1"
            ]
        );
        // The name now resolves to .2 and .3: .1 goes, .2 keeps its figures, .3 joins.
        s.reconcile(0, &[addr(2), addr(3)]);
        assert_eq!(
            names(&s),
            [
                "tcp://agg:24224 (10.0.0.2:24224)",
                "tcp://agg:24224 (10.0.0.3:24224)",
                "tcp://10.0.0.9:1"
            ]
        );
        assert_eq!(s.endpoints[0].delivered, 7);
        // Both addresses of the primary take traffic; the standby waits.
        assert_eq!(s.active(), [0, 1]);
    }

    /// A resolver that gives `answers` in turn, the last one from then on.
    fn answering(answers: Vec<Vec<SocketAddr>>) -> Resolver {
        let answers = Arc::new(Mutex::new(answers));
        Arc::new(move |_host: String, _port: u16| -> Lookup {
            let mut a = lock(&answers);
            let next = if a.len() > 1 {
                a.remove(0)
            } else {
                a[0].clone()
            };
            Box::pin(async move { Ok(next) })
        })
    }

    fn at(last: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, last], 24224))
    }

    fn names(s: &Service) -> Vec<String> {
        s.endpoints.iter().map(|e| e.name.clone()).collect()
    }

    /// Resolves server 0 again now, as a connection attempt would after a second.
    fn resolve_now(s: &mut Service) {
        s.resolved_at[0] = None;
        for e in &mut s.endpoints {
            e.conn = None;
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(s.resolve(0));
    }

    #[test]
    fn a_dns_answer_that_repeats_addresses_gives_one_endpoint_per_address_in_its_order() {
        let config = FluentConfig::new("tcp://agg:24224").unwrap();
        let mut s = Service::new(&config, None);
        s.resolver = answering(vec![
            vec![at(2), at(1), at(2), at(1), at(2)],
            vec![at(3), at(4), at(3)],
        ]);
        resolve_now(&mut s);
        assert_eq!(
            names(&s),
            [
                "tcp://agg:24224 (10.0.0.2:24224)",
                "tcp://agg:24224 (10.0.0.1:24224)"
            ]
        );
        resolve_now(&mut s);
        assert_eq!(
            names(&s),
            [
                "tcp://agg:24224 (10.0.0.3:24224)",
                "tcp://agg:24224 (10.0.0.4:24224)"
            ]
        );
    }

    #[test]
    fn a_changed_dns_answer_never_credits_one_address_with_what_another_was_given() {
        let config = FluentConfig::new("tcp://agg:24224,10.0.0.9:24224").unwrap();
        let mut s = Service::new(&config, None);
        s.resolver = answering(vec![vec![at(1), at(2)], vec![at(3), at(2)]]);
        resolve_now(&mut s);
        // Single events go whole to whoever is furthest behind: what each address was given.
        let mut given: HashMap<String, u64> = HashMap::new();
        for _ in 0..5 {
            for (i, n) in s.apportion(1, 64) {
                *given.entry(s.endpoints[i].name.clone()).or_default() += n as u64;
            }
        }
        assert_eq!(given.values().sum::<u64>(), 5);
        // .1 leaves and .3 joins: the list is re-sorted, and each address that stays keeps at
        // most its own share; the newcomer starts from nothing.
        resolve_now(&mut s);
        let shares: Vec<(String, u64)> = (0..s.endpoints.len())
            .map(|i| {
                let key = s.key(i);
                let n = s
                    .spread
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map_or(0, |(_, n)| *n);
                (s.endpoints[i].name.clone(), n)
            })
            .collect();
        for (name, n) in &shares {
            let had = given.get(name).copied().unwrap_or(0);
            assert!(
                *n <= had,
                "{name} is credited with {n} but was given {had}: {shares:?}"
            );
        }
        // And the next events go by the new spread: 300 equal shares over three endpoints.
        let mut after: HashMap<String, usize> = HashMap::new();
        for (i, n) in s.apportion(300, 64) {
            *after.entry(s.endpoints[i].name.clone()).or_default() += n;
        }
        assert_eq!(after.values().sum::<usize>(), 300, "{after:?}");
    }

    #[test]
    fn events_are_split_by_weight_and_even_out_over_small_batches() {
        assert_eq!(
            split_by_deficit(1000, &[60, 20], &[0, 0], 64),
            vec![750, 250]
        );
        // Small batches go whole to whoever is furthest behind its share.
        let mut sent = [0u64, 0];
        for _ in 0..400 {
            let p = split_by_deficit(10, &[60, 20], &sent, 64);
            sent[0] += p[0] as u64;
            sent[1] += p[1] as u64;
        }
        assert_eq!(sent, [3000, 1000]);
        // A piece under the minimum joins the largest.
        assert_eq!(split_by_deficit(130, &[1000, 1], &[0, 0], 64), vec![130, 0]);
    }
}
