//! The transport as the sink sees it: a tier of servers, their connections, and where each
//! message goes, is acked, or goes again.
//!
//! - **Servers and endpoints** (`endpoints`). Each `HIVELOG_FLUENT_ADDR` entry is a server;
//!   a host name is resolved, and every address it resolves to is an endpoint of its own with
//!   the server's weight and role.
//! - **Weighted spread** (`balancing`). New records are cut into one message per healthy
//!   primary endpoint, sized by weight, with a running deficit; standby servers take traffic
//!   only while no primary is up.
//! - **Down and back.** An endpoint is marked down on a refused or timed-out connect, a failed
//!   write, a reset, and silence; it is tried again after a backoff (250 ms doubling to 30 s,
//!   [`crate::retry::server_backoff`]) once the `heartbeat` finds it reachable, and is up
//!   again when a connection (and handshake) succeeds. What each failure does is the table of
//!   [`crate::retry`].
//! - **Silence and shutdown** (`silence`). A connection whose acks stopped is given up on
//!   after `max(1 s, 10 × p99)` of its recent ack latencies, or half the time left once
//!   shutdown began, and its messages are written again elsewhere under the same chunk ids.
//!
//! This module ties them together for one send: [`Service::prepare`], then
//! [`Service::apportion`], [`Service::dispatch`] and [`Service::settle`], then
//! [`Service::publish`].

mod balancing;
mod endpoints;
mod heartbeat;
mod silence;

use std::time::{Duration, Instant};

use hivelog_core::endpoints::{EndpointState, EndpointStats, Endpoints};

use crate::config::{FluentConfig, Server};
use crate::handshake::{self, Credentials};
use crate::request_builder::Message;
use crate::retry::{self, Failure, Verdict};
use crate::transport::{Connector, Idle};

use balancing::{Spread, Tier};
use endpoints::{Endpoint, Health, InFlight, Names};
use heartbeat::Board;

pub use balancing::split_by_deficit;
pub use silence::{SILENCE_FACTOR, SILENCE_FLOOR};

/// Rounds of resending within one send before the rest goes back to the pipeline.
const MAX_ROUNDS: usize = 8;

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
    board: Option<std::sync::Arc<Board>>,
    names: Names,
    spread: Spread,
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
            .map(|(i, s)| {
                Endpoint::new(
                    i,
                    endpoints::initial_target(&s.address),
                    s.address.to_string(),
                )
            })
            .collect();
        Service {
            names: Names::new(servers.len()),
            servers,
            endpoints,
            connector: Connector::new(config),
            creds,
            ack: config.ack,
            ack_timeout: config.ack_timeout,
            heartbeat_interval: config.heartbeat_interval,
            published: Endpoints::default(),
            board: None,
            spread: Spread::default(),
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
        let results = self.board.as_ref().map(|b| b.results()).unwrap_or_default();
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
        let needed = self
            .endpoints
            .iter()
            .any(|e| e.server == i && e.conn.is_none());
        if !needed {
            return;
        }
        let timeout = self.connector.connect_timeout();
        let address = &self.servers[i].address;
        if let Some(addrs) = self.names.resolve(i, address, timeout).await {
            let base = address.to_string();
            endpoints::reconcile(&mut self.endpoints, i, &base, &addrs);
        }
    }

    /// Starts the heartbeat task once, with several endpoints.
    fn start_heartbeat(&mut self) {
        if self.board.is_some() || self.endpoints.len() < 2 {
            return;
        }
        let every = self.heartbeat_interval;
        let timeout = self
            .connector
            .connect_timeout()
            .min(every.max(SILENCE_FLOOR));
        self.board = Some(Board::start(every, timeout, self.published.clone()));
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
        let tier = Tier {
            servers: &self.servers,
            endpoints: &self.endpoints,
        };
        self.spread.apportion(tier, events, min_piece)
    }

    /// The servers and endpoints, as the balancing reads them.
    fn tier(&self) -> Tier<'_> {
        Tier {
            servers: &self.servers,
            endpoints: &self.endpoints,
        }
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
        let candidates = self.tier().candidates(&self.spread, msgs[m].node);
        for i in candidates {
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
            let failed = silence::wait_acks(&mut self.endpoints, self.ack_timeout).await;
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
            b.check(targets);
        }
        let primary_up = self
            .endpoints
            .iter()
            .enumerate()
            .any(|(i, e)| e.is_up() && !self.tier().is_standby(i));
        let list = self
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| EndpointStats {
                endpoint: e.name.clone(),
                state: match e.health {
                    Health::Up if self.tier().is_standby(i) && primary_up => EndpointState::Standby,
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
            if !self.tier().is_standby(i) {
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};

    use super::endpoints::{Lookup, Resolver};
    use super::*;

    #[test]
    fn every_resolved_address_is_an_endpoint_and_a_new_resolution_keeps_the_known_ones() {
        let config = FluentConfig::new("tcp://agg:24224,10.0.0.9:1?standby").unwrap();
        let mut s = Service::new(&config, None);
        let addr = |last: u8| std::net::SocketAddr::from(([10, 0, 0, last], 24224));
        let base = s.servers[0].address.to_string();
        endpoints::reconcile(&mut s.endpoints, 0, &base, &[addr(1), addr(2)]);
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
        endpoints::reconcile(&mut s.endpoints, 0, &base, &[addr(2), addr(3)]);
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
        assert_eq!(s.tier().active(), [0, 1]);
    }

    /// A resolver that gives `answers` in turn, the last one from then on.
    fn answering(answers: Vec<Vec<SocketAddr>>) -> Resolver {
        let answers = Arc::new(Mutex::new(answers));
        Arc::new(move |_host: String, _port: u16| -> Lookup {
            let mut a = answers.lock().unwrap();
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
        s.names.resolved_at[0] = None;
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
        s.names.resolver = answering(vec![
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
        s.names.resolver = answering(vec![vec![at(1), at(2)], vec![at(3), at(2)]]);
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
                let n = s.spread.given(&s.endpoints[i].key());
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
}
