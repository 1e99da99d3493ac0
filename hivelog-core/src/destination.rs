//! The config-side contract of a destination: what a sink crate registers so that `init`, the
//! unknown-variable warnings, `hivelog check`, the README test and the fuzz list know about it.
//!
//! As `sentry-core`'s `Integration`, a sink crate exports one value implementing
//! [`Destination`]: its name, its variables (one [`Var`] table: name, documented default,
//! secret or not, one line of doc), how to read and validate them from an [`Env`], and, once
//! configured, how to start its [`Pipeline`] and how to probe it once for `hivelog check`.
//! The facade keeps a list of these values; adding a destination is one line in that list
//! (or one `hivelog::register_destination` call for a destination outside hivelog).
//!
//! Why a table of [`Var`] and not a list of names: every place that shows or checks a
//! variable (the warnings, `hivelog check`'s settings, the README test, the fuzz list) needs
//! the same facts about it; listing them once is what keeps them from drifting.
//!
//! Why [`Configured`] is a trait object and not the sink itself: [`Sink`] is generic (its
//! futures are `impl Future`), so the facade cannot hold a list of sinks; it holds a list of
//! configurations that know how to start or probe their own sink.
//!
//! Most sink crates write neither trait by hand: their configuration type implements
//! [`SinkConfig`] (read the variables, build the sink), which gives it [`Configured`], and a
//! `static DESTINATION: SinkDestination<TheirConfig>` gives the [`Destination`].

use std::any::{Any, TypeId};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::env::{ConfigError, Env};
use crate::format::Format;
use crate::pipeline::{Pipeline, PipelineConfig};
use crate::record::Record;
use crate::sink::{FailureKind, Outcome, Outcomes, Sink};
pub use crate::var::Var;

/// A future a [`Configured`] destination returns (boxed: trait objects cannot return
/// `impl Future`).
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A destination as a sink crate registers it.
///
/// ```
/// use std::sync::Arc;
/// use hivelog_core::destination::{Configured, Destination, probe_sink, Probe, BoxFuture};
/// use hivelog_core::{BatchLimits, ConfigError, Env, Format, Outcomes, Pipeline, PipelineConfig, Record, Sink, Var};
///
/// struct Counter;
/// impl Sink for Counter {
///     fn name(&self) -> &'static str { "counter" }
///     fn limits(&self) -> BatchLimits { BatchLimits { max_events: 100, max_bytes: 1 << 20 } }
///     async fn send(&mut self, batch: &[Record]) -> Outcomes { Outcomes::delivered(batch.len()) }
/// }
///
/// struct CounterConfig;
/// impl Configured for CounterConfig {
///     fn target(&self) -> String { "memory".into() }
///     fn start(self: Box<Self>, _: Arc<Format>, p: PipelineConfig) -> std::io::Result<Pipeline> {
///         Pipeline::spawn(Counter, p)
///     }
///     fn probe(self: Box<Self>, _: Arc<Format>, r: Record, t: std::time::Duration) -> BoxFuture<Probe> {
///         Box::pin(probe_sink(Counter, "memory".into(), r, t))
///     }
/// }
///
/// struct CounterDestination;
/// const VARS: &[Var] = &[
///     Var::new("HIVELOG_COUNTER", "off", "count events in memory"),
///     Var::new("HIVELOG_COUNTER_LEVEL", "(HIVELOG_LEVEL)", "filter for this destination"),
/// ];
/// impl Destination for CounterDestination {
///     fn name(&self) -> &'static str { "counter" }
///     fn vars(&self) -> &'static [Var] { VARS }
///     fn switches(&self) -> &'static [&'static str] { &["HIVELOG_COUNTER"] }
///     fn configure(&self, env: &Env, _code: Option<Box<dyn std::any::Any + Send>>)
///         -> Result<Option<Box<dyn Configured>>, ConfigError> {
///         Ok(env.bool("HIVELOG_COUNTER")?.unwrap_or(false).then(|| Box::new(CounterConfig) as _))
///     }
/// }
/// let env = Env::from_pairs([("HIVELOG_COUNTER", "true")]);
/// assert!(CounterDestination.configure(&env, None).unwrap().is_some());
/// assert_eq!(CounterDestination.level_var(), Some("HIVELOG_COUNTER_LEVEL"));
/// ```
pub trait Destination: Sync + 'static {
    /// Its short name (`fluent`, `elasticsearch`, `cloudwatch`), as in the report.
    fn name(&self) -> &'static str;

    /// Every variable it reads, its switches and its level variable included.
    fn vars(&self) -> &'static [Var];

    /// The variables that switch it on (any one of them set means "on").
    fn switches(&self) -> &'static [&'static str];

    /// The variable with this destination's own level filter: the one of [`Destination::vars`]
    /// ending in `_LEVEL` (`HIVELOG_FLUENT_LEVEL`); its value is parsed by the facade. `None`
    /// when it has none: it then follows the main level, changes at run time included.
    fn level_var(&self) -> Option<&'static str> {
        self.vars()
            .iter()
            .map(|v| v.name)
            .find(|n| n.ends_with("_LEVEL"))
    }

    /// The type of the configuration a program may set in code (`FluentConfig`), so that the
    /// builder hands it to this destination; `None` when there is none.
    fn config_type(&self) -> Option<TypeId> {
        None
    }

    /// Reads and validates its variables over `code` (a value of [`Destination::config_type`]
    /// set in code, which the variables override); `None` when it is off. Every one of its
    /// variables is read even when it is off, so none is reported as unknown.
    fn configure(
        &self,
        env: &Env,
        code: Option<Box<dyn Any + Send>>,
    ) -> Result<Option<Box<dyn Configured>>, ConfigError>;
}

/// A destination's validated configuration.
pub trait Configured: Send {
    /// Where it sends (address, node URLs, log group), for `hivelog check`.
    fn target(&self) -> String;

    /// Starts its sink on its own [`Pipeline`].
    fn start(
        self: Box<Self>,
        format: Arc<Format>,
        pipeline: PipelineConfig,
    ) -> std::io::Result<Pipeline>;

    /// Sends `record` once, without the pipeline, within `timeout` (`hivelog check`); most
    /// implementations are `Box::pin(probe_sink(TheSink::new(..), self.target(), record, timeout))`.
    fn probe(
        self: Box<Self>,
        format: Arc<Format>,
        record: Record,
        timeout: Duration,
    ) -> BoxFuture<Probe>;
}

/// A sink crate's configuration type: implementing it (and declaring a [`SinkDestination`])
/// is all a sink crate writes to become a destination; [`Configured`] comes with it.
pub trait SinkConfig: Send + Sized + 'static {
    /// The sink this configuration builds.
    type Sink: Sink;

    /// Reads the destination's variables over its defaults; `None` when it is off.
    fn from_env(env: &Env) -> Result<Option<Self>, ConfigError>;

    /// These settings (made in code) with every variable that is set applied over them.
    fn apply_env(self, env: &Env) -> Result<Self, ConfigError>;

    /// Where it sends (address, node URLs, log group), for `hivelog check`.
    fn target(&self) -> String;

    /// Builds the sink.
    fn into_sink(self, format: Arc<Format>) -> Self::Sink;

    /// A caveat `hivelog check` adds to a successful probe (an event written, not confirmed).
    fn probe_note(&self) -> Option<String> {
        None
    }
}

impl<C: SinkConfig> Configured for C {
    fn target(&self) -> String {
        SinkConfig::target(self)
    }

    fn start(
        self: Box<Self>,
        format: Arc<Format>,
        pipeline: PipelineConfig,
    ) -> std::io::Result<Pipeline> {
        Pipeline::spawn(self.into_sink(format), pipeline)
    }

    fn probe(
        self: Box<Self>,
        format: Arc<Format>,
        record: Record,
        timeout: Duration,
    ) -> BoxFuture<Probe> {
        let target = SinkConfig::target(&*self);
        let note = self.probe_note();
        let sink = self.into_sink(format);
        Box::pin(async move {
            let mut p = probe_sink(sink, target, record, timeout).await;
            if p.accepted {
                p.note = note;
            }
            p
        })
    }
}

/// A destination made of a [`SinkConfig`]: its name, its variables and its switches.
///
/// ```ignore
/// pub static DESTINATION: SinkDestination<FluentConfig> =
///     SinkDestination::new("fluent", VARS, &["HIVELOG_FLUENT_ADDR"]);
/// ```
pub struct SinkDestination<C> {
    name: &'static str,
    vars: &'static [Var],
    switches: &'static [&'static str],
    config: std::marker::PhantomData<fn() -> C>,
}

impl<C> SinkDestination<C> {
    /// The destination `name`, reading `vars`, switched on by any of `switches`.
    pub const fn new(
        name: &'static str,
        vars: &'static [Var],
        switches: &'static [&'static str],
    ) -> Self {
        SinkDestination {
            name,
            vars,
            switches,
            config: std::marker::PhantomData,
        }
    }
}

impl<C: SinkConfig> Destination for SinkDestination<C> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn vars(&self) -> &'static [Var] {
        self.vars
    }

    fn switches(&self) -> &'static [&'static str] {
        self.switches
    }

    fn config_type(&self) -> Option<TypeId> {
        Some(TypeId::of::<C>())
    }

    fn configure(
        &self,
        env: &Env,
        code: Option<Box<dyn Any + Send>>,
    ) -> Result<Option<Box<dyn Configured>>, ConfigError> {
        let config = match code.and_then(|c| c.downcast::<C>().ok()) {
            Some(code) => Some(code.apply_env(env)?),
            None => C::from_env(env)?,
        };
        Ok(config.map(|c| Box::new(c) as Box<dyn Configured>))
    }
}

/// Takes the configuration set in code for `dest` out of `code`, if one is there.
pub fn take_code(
    dest: &dyn Destination,
    code: &mut Vec<Box<dyn Any + Send>>,
) -> Option<Box<dyn Any + Send>> {
    let ty = dest.config_type()?;
    let at = code.iter().position(|c| (**c).type_id() == ty)?;
    Some(code.remove(at))
}

/// What one destination did with `hivelog check`'s test event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// The destination's name.
    pub sink: &'static str,
    /// Where it sends.
    pub target: String,
    /// Whether the destination answered; `None` when this cannot be told.
    pub reachable: Option<bool>,
    /// Whether it accepted our credentials; `None` when it never got to check them.
    pub authenticated: Option<bool>,
    /// Whether it accepted the test event.
    pub accepted: bool,
    /// How long `send` took (the event's round trip), when it finished in time.
    pub round_trip: Option<Duration>,
    /// How long `start` took (connection, handshake, setup calls).
    pub start: Option<Duration>,
    /// Why it failed, in the sink's words.
    pub detail: Option<String>,
    /// The kind of failure, when there was one.
    pub failure: Option<FailureKind>,
    /// A caveat about a success (an event written but not acknowledged).
    pub note: Option<String>,
    /// Per-server figures, for a destination with several servers (Fluentd).
    pub endpoints: Vec<crate::endpoints::EndpointStats>,
}

/// Time given to `Sink::close` after the test (closing a connection cleanly).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Runs `start` and one `send` of `record` on `sink`, directly (no pipeline: it would retry
/// and hide the first answer), within `timeout`, and reads the outcome.
pub async fn probe_sink<S: Sink>(
    mut sink: S,
    target: String,
    record: Record,
    timeout: Duration,
) -> Probe {
    let name = sink.name();
    let endpoints = sink.endpoints();
    let deadline = tokio::time::Instant::now() + timeout;
    let t0 = Instant::now();
    let mut start = None;
    let mut round_trip = None;
    let run = async {
        sink.start().await;
        start = Some(t0.elapsed());
        let t1 = Instant::now();
        let outcomes = sink.send(std::slice::from_ref(&record)).await;
        round_trip = Some(t1.elapsed());
        outcomes
    };
    let mut p = match tokio::time::timeout_at(deadline, run).await {
        Ok(outcomes) => classify(name, target, &outcomes),
        Err(_) => {
            let mut p = classify(
                name,
                target,
                &Outcomes::retry_all(1, FailureKind::TimedOut, ""),
            );
            p.detail = Some(if start.is_some() {
                format!("the test event was not confirmed within {timeout:?} (--timeout)")
            } else {
                format!("no connection within {timeout:?} (--timeout)")
            });
            p
        }
    };
    p.start = start;
    p.round_trip = round_trip;
    p.endpoints = endpoints.map(|e| e.snapshot()).unwrap_or_default();
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.close()).await;
    p
}

/// Reads one test event's outcome: reachability and authentication come from the failure's
/// [`FailureKind`], never from its text.
pub fn classify(sink: &'static str, target: String, o: &Outcomes) -> Probe {
    let mut p = Probe {
        sink,
        target,
        reachable: Some(true),
        authenticated: Some(true),
        accepted: false,
        round_trip: None,
        start: None,
        detail: None,
        failure: None,
        note: None,
        endpoints: Vec::new(),
    };
    match o.as_slice().first() {
        Some(Outcome::Delivered) => p.accepted = true,
        Some(Outcome::Rejected(i)) => {
            p.detail = Some(format!("the event was rejected: {}", o.reason(*i)));
        }
        None => p.detail = Some("the sink reported no outcome".to_owned()),
        Some(Outcome::Retry | Outcome::Failed | Outcome::Deferred) => {
            let kind = o.failure().unwrap_or(FailureKind::Internal);
            match kind {
                FailureKind::NoCredentials => {
                    p.reachable = None;
                    p.authenticated = Some(false);
                }
                FailureKind::Credentials => p.authenticated = Some(false),
                _ if kind.reached() == Some(false) => {
                    p.reachable = Some(false);
                    p.authenticated = None;
                }
                _ => p.authenticated = None,
            }
            p.failure = Some(kind);
            p.detail = Some(o.error().unwrap_or("failed without a message").to_owned());
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_read_from_their_kind_not_their_text() {
        let read = |kind| {
            let p = classify(
                "x",
                "h".into(),
                &Outcomes::retry_all(1, kind, "401 timed out"),
            );
            (p.reachable, p.authenticated, p.failure)
        };
        assert_eq!(
            read(FailureKind::Credentials),
            (Some(true), Some(false), Some(FailureKind::Credentials))
        );
        assert_eq!(
            read(FailureKind::NoCredentials),
            (None, Some(false), Some(FailureKind::NoCredentials))
        );
        assert_eq!(
            read(FailureKind::Unreachable),
            (Some(false), None, Some(FailureKind::Unreachable))
        );
        assert_eq!(
            read(FailureKind::TimedOut),
            (Some(false), None, Some(FailureKind::TimedOut))
        );
        assert_eq!(
            read(FailureKind::Unavailable),
            (Some(true), None, Some(FailureKind::Unavailable))
        );
    }

    #[test]
    fn a_rejected_event_was_reachable_and_authenticated() {
        let mut o = Outcomes::delivered(1);
        o.reject(0, "mapper_parsing_exception: bad");
        let p = classify("elasticsearch", "h".into(), &o);
        assert_eq!(
            (p.reachable, p.authenticated, p.accepted),
            (Some(true), Some(true), false)
        );
        assert!(p.detail.unwrap().contains("mapper_parsing_exception"));
        let p = classify("elasticsearch", "h".into(), &Outcomes::delivered(1));
        assert!(p.accepted && p.detail.is_none());
    }
}
