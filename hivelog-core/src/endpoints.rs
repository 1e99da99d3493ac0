//! Per-endpoint figures a sink publishes: which of its servers are up, and what each carried.
//!
//! A sink that spreads its records over several servers (a tier of Fluentd aggregators, the
//! nodes of a cluster) knows things the pipeline's counters cannot show: that one server is
//! down, or that another one received the resends. The sink keeps an [`Endpoints`] handle and
//! replaces the list whenever something changes (a few times per batch at most); the pipeline
//! copies the list into every [`Stats`](crate::Stats) snapshot, so the guard's report, the
//! heartbeat and `hivelog check` show it without knowing the sink.
//!
//! Why a shared handle rather than a field of [`Outcomes`](crate::Outcomes): a server's state
//! changes between batches too (a heartbeat finds a standby dead), and the figures are totals
//! over the sink's life, not per batch.
//!
//! ```
//! use hivelog_core::endpoints::{EndpointState, EndpointStats, Endpoints};
//!
//! let handle = Endpoints::default();
//! handle.publish(vec![EndpointStats {
//!     endpoint: "tcp://10.0.0.1:24224".into(),
//!     state: EndpointState::Up,
//!     delivered: 42,
//!     resent: 0,
//! }]);
//! assert_eq!(handle.snapshot()[0].to_string(), "tcp://10.0.0.1:24224 up, delivered 42, resent 0");
//! ```

use std::fmt;
use std::sync::{Arc, Mutex};

/// Whether an endpoint takes traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EndpointState {
    /// Reachable and taking traffic.
    Up,
    /// Reachable, kept in reserve: takes traffic only while no primary endpoint is up.
    Standby,
    /// Not usable now (refused, timed out, reset, silent); retried with backoff.
    Down,
    /// Refused our credentials: not retried until the sink's own retry interval passes.
    CredentialsRefused,
}

impl EndpointState {
    /// The state's stable name, as in the report: `up`, `standby`, `down`,
    /// `credentials_refused`.
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointState::Up => "up",
            EndpointState::Standby => "standby",
            EndpointState::Down => "down",
            EndpointState::CredentialsRefused => "credentials_refused",
        }
    }
}

impl fmt::Display for EndpointState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One endpoint's state and totals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointStats {
    /// The endpoint as the user wrote it, with the resolved address when a name resolves to
    /// several (`tcp://agg:24224 (10.0.0.7:24224)`).
    pub endpoint: String,
    /// Whether it takes traffic now.
    pub state: EndpointState,
    /// Events it acknowledged (or, without acks, that were written to it).
    pub delivered: u64,
    /// Events sent to it again because an earlier attempt (there or elsewhere) was not acked.
    pub resent: u64,
}

impl fmt::Display for EndpointStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}, delivered {}, resent {}",
            self.endpoint, self.state, self.delivered, self.resent
        )
    }
}

/// A shared list of [`EndpointStats`]: the sink publishes, the pipeline reads.
#[derive(Clone, Debug, Default)]
pub struct Endpoints {
    list: Arc<Mutex<Vec<EndpointStats>>>,
}

impl Endpoints {
    /// Replaces the list.
    pub fn publish(&self, list: Vec<EndpointStats>) {
        *self.list.lock().unwrap_or_else(|p| p.into_inner()) = list;
    }

    /// A copy of the list as last published.
    pub fn snapshot(&self) -> Vec<EndpointStats> {
        self.list.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
