//! Structured JSON logging for Rust services in one call.
//!
//! ```no_run
//! let _logs = hivelog::init(); // at the top of main: reads HIVELOG_*; flushes when dropped
//! tracing::info!(user = "a@b.c", article = "https://example.com/x", "article hit");
//! ```
//! prints
//! ```text
//! {"timestamp":"2025-03-31T15:45:10.621Z","level":"INFO","target":"app","message":"article hit","user":"a@b.c","article":"https://example.com/x"}
//! ```
//!
//! Every `tracing` event, and every `log` record from dependencies, becomes one JSON object on
//! one line: the basic fields (`HIVELOG_FIELDS`), the extras (`HIVELOG_EXTRA`), the event's own
//! fields with their JSON types, the enclosing spans' fields, and errors with their source chain.
//! See [`hivelog_core::format`] for the output rules (order, collisions, errors).
//!
//! With the `fluent`, `elk` and `cloudwatch` features, `HIVELOG_FLUENT_ADDR`, `HIVELOG_ES_URL`
//! and `HIVELOG_CLOUDWATCH_GROUP` switch on sinks that batch events on a background thread and
//! ship them; the log call only enqueues.
//!
//! A service that builds its own `tracing_subscriber::registry()` adds hivelog as one layer
//! among the others with [`layer`]; `init()` is that same layer in a registry of its own.
#![warn(missing_docs)]

mod atexit;
mod builder;
mod config;
mod destinations;
mod file;
mod filter;
mod guard;
mod heartbeat;
mod layer;
mod level;
mod line_queue;
#[cfg(feature = "otel")]
mod otel;
mod output;
mod panic;
mod prefetch;
mod pretty;
mod ratelimit;
mod report;
pub mod request_buffer;
mod route;
mod target;
#[cfg(feature = "tower")]
pub mod tower;
pub mod trace;
mod writer;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

pub use builder::Builder;
pub use destinations::{destinations, register_destination, variables};
pub use file::Rotation;
pub use filter::HivelogFilter;
pub use guard::Guard;
pub use hivelog_core::format::{Schema, TimestampFormat};
pub use hivelog_core::{ConfigError, Env, PipelineConfig, Stats};
pub use layer::HivelogLayer;
pub use report::Report;

/// hivelog as one layer of a `tracing_subscriber` stack: [`HivelogLayer`] under its own
/// per-layer [`HivelogFilter`], for a subscriber of type `S` (what [`layer`] returns).
pub type Layer<S = tracing_subscriber::Registry> =
    tracing_subscriber::filter::Filtered<HivelogLayer, HivelogFilter, S>;

/// The record model, format and `Sink` contract, for writing destinations of your own
/// ([`Builder::sink`]).
pub use hivelog_core as core;
pub use output::{LocalReport, Output, OutputMode, Style};
pub use request_buffer::{RequestBufferConfig, RequestBufferReport};

#[cfg(feature = "cloudwatch")]
pub use hivelog_cloudwatch as cloudwatch;
#[cfg(feature = "elk")]
pub use hivelog_elk as elk;
#[cfg(feature = "fluent")]
pub use hivelog_fluent as fluent;

use guard::Outputs;

static CLAIMED: AtomicBool = AtomicBool::new(false);
static GLOBAL: OnceLock<Outputs> = OnceLock::new();

/// Configures logging from `HIVELOG_*` variables and installs it for the whole process.
///
/// A bad variable is reported on stderr and the defaults (JSON lines on stdout, level `info`)
/// are used instead: a logging mistake never stops the service. Use [`try_init`] to fail instead.
pub fn init() -> Guard {
    builder().init()
}

/// Like [`init`], but returns the configuration error (naming the variable, its value and what
/// was expected), or [`ConfigError::AlreadyInitialized`] when called twice.
///
/// ```
/// std::env::set_var("HIVELOG_TIMESTAMP", "rfc3339micro");
/// let err = hivelog::try_init().err().unwrap();
/// assert_eq!(
///     err.to_string(),
///     "HIVELOG_TIMESTAMP: 'rfc3339micro' is not a timestamp format; expected one of rfc3339ms, rfc3339ns, epoch_ms, epoch_ns"
/// );
/// ```
pub fn try_init() -> Result<Guard, ConfigError> {
    builder().try_init()
}

/// hivelog as one layer of a subscriber you build, configured from the same `HIVELOG_*`
/// variables as [`init`], with the [`Guard`] that flushes it.
///
/// ```no_run
/// use tracing_subscriber::prelude::*;
///
/// let (hivelog, _logs) = hivelog::layer();
/// tracing_subscriber::registry()
///     .with(hivelog)                                                   // HIVELOG_LEVEL, sinks, …
///     .with(tracing_subscriber::fmt::layer().with_filter(tracing_subscriber::filter::LevelFilter::WARN))
///     .init(); // also installs the `log` bridge (tracing-subscriber's `tracing-log` feature)
/// tracing::debug!("to neither layer at their default levels");
/// ```
///
/// - **Its filters are its own.** `HIVELOG_LEVEL`, `HIVELOG_<SINK>_LEVEL`, the level file,
///   [`set_level`] and `HIVELOG_RATE_LIMIT` decide what hivelog writes and never what the other
///   layers receive (a per-layer filter, [`HivelogFilter`]): with `HIVELOG_LEVEL=info` a layer
///   beside it still gets every `debug!`. It goes before or after the other layers.
/// - **What `init` does that the caller now does**: install the subscriber, and bridge the
///   `log` crate. `tracing_subscriber`'s `.init()`/`.try_init()` install the bridge when its
///   `tracing-log` feature is on (the default); after `set_global_default`, call
///   [`log_bridge`].
/// - **What it still does itself**, as the process's first hivelog (the first `layer` or
///   `init`): [`set_level`], [`stats`], [`flush`] and the level file act on it, the panic hook
///   logs a panic through the installed subscriber and flushes, and the local output is
///   drained at `exit`. Trace ids ([`trace`], the tower layer) work in any stack, and with
///   `tracing-opentelemetry`'s layer in the stack (feature `otel`), lines carry its ids.
///
/// A bad variable is reported on stderr and the defaults are used, as with [`init`]; use
/// [`try_layer`] to fail instead.
pub fn layer<S>() -> (Layer<S>, Guard)
where
    S: tracing_core::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    match builder().layer() {
        Ok(built) => built,
        Err(e) => {
            eprintln!(
                "hivelog: {e}; using the defaults (JSON lines on stdout, level info) instead"
            );
            let defaults = Builder::default().env(Env::from_pairs(Vec::<(String, String)>::new()));
            defaults.layer().unwrap_or_else(|_| inert_layer())
        }
    }
}

/// Like [`layer`], but returns the configuration error (naming the variable, its value and
/// what was expected).
///
/// ```
/// std::env::set_var("HIVELOG_OUTPUT", "printer");
/// let err = hivelog::try_layer::<tracing_subscriber::Registry>().err().unwrap();
/// assert!(err.to_string().starts_with("HIVELOG_OUTPUT: 'printer' is not"));
/// ```
pub fn try_layer<S>() -> Result<(Layer<S>, Guard), ConfigError>
where
    S: tracing_core::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    builder().layer()
}

/// Sends records of the `log` crate (from dependencies) to the installed `tracing`
/// subscriber, for a subscriber installed with `set_global_default` ([`init`] and
/// `tracing_subscriber`'s `.init()` do it already). Each layer's filter then decides on them
/// like on events.
///
/// ```no_run
/// use tracing_subscriber::prelude::*;
///
/// let (hivelog, _logs) = hivelog::layer();
/// tracing::subscriber::set_global_default(tracing_subscriber::registry().with(hivelog)).unwrap();
/// hivelog::log_bridge().unwrap();
/// log::info!("from a dependency");
/// ```
pub fn log_bridge() -> Result<(), ConfigError> {
    tracing_log::LogTracer::init().map_err(|_| {
        ConfigError::conflict(
            "log",
            "another `log` logger is installed; its records do not reach tracing",
        )
    })
}

/// Code defaults that `HIVELOG_*` variables override.
pub fn builder() -> Builder {
    Builder::default()
}

/// The counters of the installed outputs (empty before `init`).
pub fn stats() -> Report {
    GLOBAL.get().map(Outputs::report).unwrap_or_default()
}

/// Sends everything queued, waiting at most `timeout`: call it before `std::process::exit`,
/// which skips the guard's destructor (the local output is waited for at exit anyway; the
/// sinks are not).
pub fn flush(timeout: Duration) -> Report {
    GLOBAL.get().map(|o| o.flush(timeout)).unwrap_or_default()
}

/// Sets the main level of the installed subscriber at run time, as if `HIVELOG_LEVEL` had
/// been `directives` (destinations with their own `HIVELOG_<SINK>_LEVEL` keep theirs).
///
/// The directives are checked like `HIVELOG_LEVEL`; on error nothing changes. A change is one
/// stderr line, and costs the log call nothing: callsites are re-asked once, no lock is added.
/// Meant for a service's own admin endpoint; `HIVELOG_LEVEL_FILE` does the same from a file
/// (with both, the latest change wins: the file applies again only when its contents change).
///
/// ```no_run
/// let _logs = hivelog::init();
/// hivelog::set_level("info,my_service::db=debug").unwrap();
/// let err = hivelog::set_level("info,=what[").unwrap_err();
/// assert!(err.to_string().starts_with("hivelog::set_level: 'info,=what[' is not a level filter"));
/// ```
pub fn set_level(directives: &str) -> Result<(), ConfigError> {
    GLOBAL.get().map_or_else(
        || Outputs::default().set_level(directives),
        |o| o.set_level(directives),
    )
}

/// The installed subscriber's main level directives now (`None` before `init`).
pub fn level() -> Option<String> {
    GLOBAL.get()?.level.as_ref().map(|l| l.current())
}

fn try_init_with(builder: Builder) -> Result<Guard, ConfigError> {
    if CLAIMED.swap(true, Ordering::SeqCst) || tracing::dispatcher::has_been_set() {
        return Err(ConfigError::AlreadyInitialized);
    }
    let hook = builder.wants_panic_hook();
    let mut builder = builder;
    let under = builder.take_under();
    let built = builder
        .build_layer(false)
        .inspect_err(|_| CLAIMED.store(false, Ordering::SeqCst))?;
    let max = built.filter.max_level();
    let outputs = built.outputs.clone();
    if tracing::dispatcher::set_global_default(builder::dispatch(built, under)).is_err() {
        outputs.shutdown(Duration::ZERO);
        return Err(ConfigError::AlreadyInitialized);
    }
    if tracing_log::LogTracer::builder()
        .with_max_level(level::log_level(max))
        .init()
        .is_err()
    {
        hivelog_core::diag::warn("config", "log", "another `log` logger is installed; `log` records from dependencies will not reach hivelog");
    } else if let Some(level) = &outputs.level {
        level.global.store(true, Ordering::SeqCst);
    }
    claim(&outputs, hook);
    Ok(Guard {
        outputs,
        done: false,
    })
}

fn try_layer_with<S>(builder: Builder) -> Result<(Layer<S>, Guard), ConfigError>
where
    S: tracing_core::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let hook = builder.wants_panic_hook();
    let mut builder = builder;
    builder.refuse_under("layer()")?;
    let built = builder.build_layer(false)?;
    let outputs = built.outputs.clone();
    if !CLAIMED.swap(true, Ordering::SeqCst) {
        claim(&outputs, hook);
    }
    Ok((
        built.layer(),
        Guard {
            outputs,
            done: false,
        },
    ))
}

/// Makes `outputs` the process's hivelog: what [`set_level`], [`stats`] and [`flush`] act on,
/// drained at `exit`, flushed by the panic hook (when `hook`).
fn claim(outputs: &Outputs, hook: bool) {
    let _ = GLOBAL.set(outputs.clone());
    let timeout = outputs.shutdown_timeout;
    atexit::register(move || {
        if let Some(o) = GLOBAL.get() {
            o.flush_local(timeout);
        }
    });
    if hook {
        panic::install(
            |timeout| {
                if let Some(o) = GLOBAL.get() {
                    o.flush(timeout);
                }
            },
            outputs.shutdown_timeout,
        );
    }
}

/// The layer of a `layer()` whose defaults could not be built either: it takes nothing.
fn inert_layer<S>() -> (Layer<S>, Guard)
where
    S: tracing_core::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let built = builder::Built::inert();
    (
        built.layer(),
        Guard {
            outputs: Outputs::default(),
            done: true,
        },
    )
}

fn init_with(builder: Builder) -> Guard {
    match try_init_with(builder) {
        Ok(guard) => guard,
        Err(ConfigError::AlreadyInitialized) => {
            eprintln!("hivelog: {}", ConfigError::AlreadyInitialized);
            Guard {
                outputs: Outputs::default(),
                done: true,
            }
        }
        Err(e) => {
            eprintln!(
                "hivelog: {e}; using the defaults (JSON lines on stdout, level info) instead"
            );
            let defaults = Builder::default().env(Env::from_pairs(Vec::<(String, String)>::new()));
            try_init_with(defaults).unwrap_or(Guard {
                outputs: Outputs::default(),
                done: true,
            })
        }
    }
}
