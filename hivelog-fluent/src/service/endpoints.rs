//! A server's endpoints: one per address its name resolves to, each with its connection, its
//! health and its messages in flight.
//!
//! Why every address is an endpoint of its own: aggregators behind one service-discovery name
//! all take traffic, and one of them failing must not take the others down with it. Names are
//! resolved again when an endpoint needs a new connection (at most once a second per name), so
//! a replaced aggregator is found without a restart. A resolution that repeats an address
//! gives it once; the endpoints still there keep their figures and their place in the spread,
//! which knows them by [`EndpointKey`], not by index (the list is re-sorted by server).

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ack::Latency;
use crate::config::Address;
use crate::retry::Failure;
use crate::transport::{Connection, Target};

/// A name is resolved again at most this often.
const RESOLVE_INTERVAL: Duration = Duration::from_secs(1);

/// Addresses a host name and port resolve to, in the resolver's order.
pub(super) type Lookup = Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send>>;
/// How names are resolved: the system's resolver, or a test's fixed answers.
pub(super) type Resolver = Arc<dyn Fn(String, u16) -> Lookup + Send + Sync>;

/// What identifies an endpoint across resolutions: its server and its address.
pub(super) type EndpointKey = (usize, Target);

/// Whether an endpoint takes traffic, and if not, until when.
#[derive(Clone, Debug)]
pub(super) enum Health {
    Up,
    Down { since: Instant, retry_at: Instant },
    Refused { until: Instant, failure: Failure },
}

/// A message written on an endpoint and not acked yet.
#[derive(Debug)]
pub(super) struct InFlight {
    pub(super) msg: usize,
    pub(super) chunk: String,
    pub(super) written: Instant,
    pub(super) acked: bool,
}

/// One resolved address of a server.
#[derive(Debug)]
pub(super) struct Endpoint {
    pub(super) server: usize,
    pub(super) target: Target,
    pub(super) name: String,
    pub(super) conn: Option<Connection>,
    pub(super) health: Health,
    /// Failures since the last ack.
    pub(super) failures: u32,
    pub(super) latency: Latency,
    pub(super) inflight: Vec<InFlight>,
    pub(super) delivered: u64,
    pub(super) resent: u64,
    /// Connections opened during the current send.
    pub(super) connects: u32,
    /// Whether the current send used it (connected or wrote).
    pub(super) tried: bool,
}

impl Endpoint {
    /// Server `server`'s endpoint at `target`, up, with nothing sent yet.
    pub(super) fn new(server: usize, target: Target, name: String) -> Endpoint {
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

    pub(super) fn is_up(&self) -> bool {
        matches!(self.health, Health::Up)
    }

    /// Its identity, which survives a reordering of the list.
    pub(super) fn key(&self) -> EndpointKey {
        (self.server, self.target.clone())
    }
}

/// The target of a server before any resolution.
pub(super) fn initial_target(a: &Address) -> Target {
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

/// The system's resolver, as `tokio::net::lookup_host`.
pub(super) fn system_resolver() -> Resolver {
    Arc::new(|host: String, port: u16| -> Lookup {
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), port))
                .await?
                .collect())
        })
    })
}

/// Resolves the servers' names, each at most once per [`RESOLVE_INTERVAL`].
pub(super) struct Names {
    pub(super) resolver: Resolver,
    pub(super) resolved_at: Vec<Option<Instant>>,
}

impl Names {
    /// Names for `servers` servers, resolved by the system's resolver.
    pub(super) fn new(servers: usize) -> Names {
        Names {
            resolver: system_resolver(),
            resolved_at: vec![None; servers],
        }
    }

    /// The addresses server `i` at `address` resolves to now, each once, in the resolver's
    /// order; `None` when it is not a name, was resolved less than a second ago, or the
    /// lookup failed or timed out (the endpoints stay as they are: connecting will say why).
    pub(super) async fn resolve(
        &mut self,
        i: usize,
        address: &Address,
        timeout: Duration,
    ) -> Option<Vec<SocketAddr>> {
        let (host, port) = match address {
            Address::Tcp { host, port } | Address::Tls { host, port } => (host.clone(), *port),
            Address::Unix(_) => return None,
        };
        if host.parse::<std::net::IpAddr>().is_ok() {
            return None;
        }
        if self.resolved_at[i].is_some_and(|t| t.elapsed() < RESOLVE_INTERVAL) {
            return None;
        }
        self.resolved_at[i] = Some(Instant::now());
        let lookup = tokio::time::timeout(timeout, (self.resolver)(host, port));
        let Ok(Ok(mut addrs)) = lookup.await else {
            return None;
        };
        // A resolver may repeat an address anywhere in its answer (one per A record, per
        // search domain): keep the first of each, in the resolver's order.
        let mut seen = HashSet::new();
        addrs.retain(|a| seen.insert(*a));
        (!addrs.is_empty()).then_some(addrs)
    }
}

/// Makes server `i`'s endpoints the resolved `addrs` (named after `base`), keeping those
/// still there with their figures; the list stays sorted by server.
pub(super) fn reconcile(endpoints: &mut Vec<Endpoint>, i: usize, base: &str, addrs: &[SocketAddr]) {
    let several = addrs.len() > 1;
    endpoints
        .retain(|e| e.server != i || matches!(e.target, Target::Socket(a) if addrs.contains(&a)));
    for a in addrs {
        let name = if several {
            format!("{base} ({a})")
        } else {
            base.to_owned()
        };
        match endpoints
            .iter_mut()
            .find(|e| e.server == i && e.target == Target::Socket(*a))
        {
            Some(e) => e.name = name,
            None => endpoints.push(Endpoint::new(i, Target::Socket(*a), name)),
        }
    }
    endpoints.sort_by_key(|e| e.server);
}
