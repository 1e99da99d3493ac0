//! A pipeline's settings, their defaults, and how `HIVELOG_*` variables override them.
//!
//! Every default is a constant documented next to its value, so the table in the design
//! document, the rustdoc and the code cannot disagree.

use std::time::Duration;

use crate::env::{parse_duration, ConfigError, Env};
use crate::var::Var;

/// The variables [`PipelineConfig::apply_env`] reads: every destination's delivery settings.
pub const PIPELINE_VARS: &[Var] = &[
    Var::new(
        "HIVELOG_BUFFER_BYTES",
        "64MB",
        "memory budget per destination, in bytes of queued events",
    ),
    Var::new(
        "HIVELOG_OVERFLOW",
        "drop_lowest",
        "when the budget is full: drop_lowest, drop_newest, drop_oldest, block:250ms",
    ),
    Var::new(
        "HIVELOG_FLUSH_INTERVAL",
        "1s",
        "longest wait before a partial batch is sent",
    ),
    Var::new(
        "HIVELOG_SHUTDOWN_TIMEOUT",
        "5s",
        "deadline for the final flush when the guard drops",
    ),
    Var::new("HIVELOG_RETRY_BASE", "100ms", "first backoff ceiling"),
    Var::new("HIVELOG_RETRY_CAP", "30s", "largest backoff ceiling"),
    Var::new(
        "HIVELOG_RETRY_MAX_ELAPSED",
        "5m",
        "how long an event keeps being retried before it counts as failed",
    ),
    Var::new(
        "HIVELOG_SPILL_DIR",
        "off",
        "folder for a disk buffer per destination",
    ),
    Var::new("HIVELOG_SPILL_BYTES", "1GB", "disk budget per destination"),
    Var::new("HIVELOG_SPILL_MODE", "overflow", "overflow or always"),
    Var::new(
        "HIVELOG_SPILL_FSYNC",
        "1s",
        "longest time a written event waits for fsync",
    ),
];

/// Default per-sink memory budget (`HIVELOG_BUFFER_BYTES`): 64 MB.
pub const DEFAULT_BUFFER_BYTES: usize = 64_000_000;
/// Default longest wait before a partial batch is sent (`HIVELOG_FLUSH_INTERVAL`).
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Default deadline for the final flush when the guard drops (`HIVELOG_SHUTDOWN_TIMEOUT`).
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// Default first backoff ceiling (`HIVELOG_RETRY_BASE`): 100 ms.
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_millis(100);
/// Default largest backoff ceiling (`HIVELOG_RETRY_CAP`): 30 s.
pub const DEFAULT_RETRY_CAP: Duration = Duration::from_secs(30);
/// Default time an event may keep being retried (`HIVELOG_RETRY_MAX_ELAPSED`): 5 min.
pub const DEFAULT_RETRY_MAX_ELAPSED: Duration = Duration::from_secs(300);

/// Default disk budget per destination (`HIVELOG_SPILL_BYTES`): 1 GB.
pub const DEFAULT_SPILL_BYTES: u64 = 1_000_000_000;
/// Default longest time a spilled event waits before `fsync` (`HIVELOG_SPILL_FSYNC`): 1 s.
pub const DEFAULT_SPILL_FSYNC: Duration = Duration::from_secs(1);

const OVERFLOW_FORMS: &str = "one of drop_lowest, drop_newest, drop_oldest, block:<duration>";

/// What the caller does when a pipeline's budget is full (`HIVELOG_OVERFLOW`).
///
/// ```
/// use hivelog_core::pipeline::Overflow;
/// use std::time::Duration;
/// assert_eq!("block:250ms".parse(), Ok(Overflow::Block(Duration::from_millis(250))));
/// assert_eq!("drop_oldest".parse(), Ok(Overflow::DropOldest));
/// assert_eq!(Overflow::default(), Overflow::DropLowest);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Drop the least important event (default): the newest queued event of the lowest level
    /// below the new one's, else the new event itself. An ERROR or WARN is dropped only when
    /// nothing below its level is queued; the log call never waits.
    #[default]
    DropLowest,
    /// Drop the new event whatever its level: the log call never waits.
    DropNewest,
    /// Drop the oldest queued events to make room.
    DropOldest,
    /// Wait up to this long for room, then drop the new event.
    Block(Duration),
}

impl std::fmt::Display for Overflow {
    /// The `HIVELOG_OVERFLOW` form: `drop_lowest`, `drop_newest`, `drop_oldest`, `block:250ms`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Overflow::DropLowest => f.write_str("drop_lowest"),
            Overflow::DropNewest => f.write_str("drop_newest"),
            Overflow::DropOldest => f.write_str("drop_oldest"),
            Overflow::Block(d) => write!(f, "block:{}ms", d.as_millis()),
        }
    }
}

impl std::str::FromStr for Overflow {
    /// The accepted forms, for an error message.
    type Err = &'static str;

    fn from_str(v: &str) -> Result<Self, Self::Err> {
        let v = v.trim();
        if v.eq_ignore_ascii_case("drop_lowest") {
            Ok(Overflow::DropLowest)
        } else if v.eq_ignore_ascii_case("drop_newest") {
            Ok(Overflow::DropNewest)
        } else if v.eq_ignore_ascii_case("drop_oldest") {
            Ok(Overflow::DropOldest)
        } else {
            match v.split_once(':') {
                Some((policy, d)) if policy.trim().eq_ignore_ascii_case("block") => {
                    parse_duration(d).map(Overflow::Block).ok_or(OVERFLOW_FORMS)
                }
                _ => Err(OVERFLOW_FORMS),
            }
        }
    }
}

/// When events go to the spill folder (`HIVELOG_SPILL_MODE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SpillMode {
    /// Only what the memory budget cannot hold, and what is pending at the shutdown deadline
    /// (default): a healthy destination never touches the disk.
    #[default]
    Overflow,
    /// Every event is written before it is sent: a `SIGKILL` loses at most the last
    /// [`SpillConfig::fsync`] interval (and nothing at all unless the machine loses power).
    Always,
}

impl std::fmt::Display for SpillMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SpillMode::Overflow => "overflow",
            SpillMode::Always => "always",
        })
    }
}

/// The disk buffer of each destination (see [`crate::spill`]).
///
/// ```
/// use hivelog_core::{Env, PipelineConfig};
/// use hivelog_core::pipeline::SpillMode;
///
/// let env = Env::from_pairs([("HIVELOG_SPILL_DIR", "/var/spool/app"), ("HIVELOG_SPILL_MODE", "always")]);
/// let spill = PipelineConfig::default().apply_env(&env).unwrap().spill.unwrap();
/// assert_eq!((spill.max_bytes, spill.mode), (1_000_000_000, SpillMode::Always));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpillConfig {
    /// The folder holding one sub-folder per service and destination (`HIVELOG_SPILL_DIR`).
    pub dir: std::path::PathBuf,
    /// Disk budget per destination (`HIVELOG_SPILL_BYTES`, default [`DEFAULT_SPILL_BYTES`]).
    pub max_bytes: u64,
    /// When events are written (`HIVELOG_SPILL_MODE`, default [`SpillMode::Overflow`]).
    pub mode: SpillMode,
    /// Longest time written events wait for `fsync` (`HIVELOG_SPILL_FSYNC`, default
    /// [`DEFAULT_SPILL_FSYNC`]).
    pub fsync: Duration,
    /// The service name, part of the destination's folder name (set from the format's service).
    pub service: String,
}

impl SpillConfig {
    /// A spill configuration with the defaults, under `dir`.
    pub fn new(dir: impl Into<std::path::PathBuf>) -> Self {
        SpillConfig {
            dir: dir.into(),
            max_bytes: DEFAULT_SPILL_BYTES,
            mode: SpillMode::default(),
            fsync: DEFAULT_SPILL_FSYNC,
            service: String::new(),
        }
    }

    /// Reads `HIVELOG_SPILL_DIR`, `_BYTES`, `_MODE`, `_FSYNC` over `spill` (`None`: no folder yet).
    fn apply_env(spill: Option<Self>, env: &Env) -> Result<Option<Self>, ConfigError> {
        let mut spill = match env.get("HIVELOG_SPILL_DIR") {
            Some(dir) => Some(SpillConfig {
                dir: dir.into(),
                ..spill.unwrap_or_else(|| SpillConfig::new(dir))
            }),
            None => spill,
        };
        let bytes = env.bytes("HIVELOG_SPILL_BYTES")?;
        let mode = env.choice(
            "HIVELOG_SPILL_MODE",
            "a spill mode",
            &[
                ("overflow", SpillMode::Overflow),
                ("always", SpillMode::Always),
            ],
        )?;
        let fsync = env.duration("HIVELOG_SPILL_FSYNC")?;
        if let Some(s) = &mut spill {
            if let Some(b) = bytes {
                if b == 0 {
                    let v = env.get("HIVELOG_SPILL_BYTES").unwrap_or_default();
                    return Err(ConfigError::invalid(
                        "HIVELOG_SPILL_BYTES",
                        v,
                        "a usable disk budget",
                        "a size above zero (1GB)",
                    ));
                }
                s.max_bytes = b;
            }
            s.mode = mode.unwrap_or(s.mode);
            s.fsync = fsync.unwrap_or(s.fsync);
        }
        Ok(spill)
    }
}

/// Backoff for retryable failures: exponential with full jitter.
///
/// The n-th consecutive failed attempt waits a random time in `[0, min(cap, base × 2ⁿ)]`,
/// and never less than a server's `Retry-After`. An event that would still be retried
/// `max_elapsed` after its first failure counts as failed instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// First backoff ceiling (`HIVELOG_RETRY_BASE`, default 100ms).
    pub base: Duration,
    /// Largest backoff ceiling (`HIVELOG_RETRY_CAP`, default 30s).
    pub cap: Duration,
    /// How long an event may keep being retried before it counts as failed
    /// (`HIVELOG_RETRY_MAX_ELAPSED`, default 5m); not applied while a spill folder is in use,
    /// where the disk budget bounds the backlog instead.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: DEFAULT_RETRY_BASE,
            cap: DEFAULT_RETRY_CAP,
            max_elapsed: DEFAULT_RETRY_MAX_ELAPSED,
        }
    }
}

/// A pipeline's settings.
///
/// ```
/// use hivelog_core::{Env, PipelineConfig};
/// use hivelog_core::pipeline::Overflow;
///
/// let env = Env::from_pairs([("HIVELOG_BUFFER_BYTES", "8MB"), ("HIVELOG_OVERFLOW", "drop_oldest")]);
/// let config = PipelineConfig::default().apply_env(&env).unwrap();
/// assert_eq!(config.buffer_bytes, 8_000_000);
/// assert_eq!(config.overflow, Overflow::DropOldest);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipelineConfig {
    /// Memory budget in bytes ([`Record::size`](crate::Record::size) of everything queued or
    /// in flight; default [`DEFAULT_BUFFER_BYTES`]).
    pub buffer_bytes: usize,
    /// Overflow policy (default [`Overflow::DropLowest`]).
    pub overflow: Overflow,
    /// Longest age of a partial batch (default [`DEFAULT_FLUSH_INTERVAL`]).
    pub flush_interval: Duration,
    /// Deadline for the final flush on drop (default [`DEFAULT_SHUTDOWN_TIMEOUT`]).
    pub shutdown_timeout: Duration,
    /// Backoff.
    pub retry: RetryPolicy,
    /// The disk buffer (`HIVELOG_SPILL_DIR`; default none: memory only).
    pub spill: Option<SpillConfig>,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            buffer_bytes: DEFAULT_BUFFER_BYTES,
            overflow: Overflow::default(),
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            retry: RetryPolicy::default(),
            spill: None,
        }
    }
}

impl PipelineConfig {
    /// Reads `HIVELOG_BUFFER_BYTES`, `HIVELOG_OVERFLOW`, `HIVELOG_FLUSH_INTERVAL`,
    /// `HIVELOG_SHUTDOWN_TIMEOUT`, `HIVELOG_RETRY_BASE`, `_CAP`, `_MAX_ELAPSED` and
    /// `HIVELOG_SPILL_DIR`, `_BYTES`, `_MODE`, `_FSYNC` over `self`.
    ///
    /// A bad value is an error naming the variable, the value and the accepted forms:
    ///
    /// ```
    /// use hivelog_core::{Env, PipelineConfig};
    /// let env = Env::from_pairs([("HIVELOG_OVERFLOW", "x")]);
    /// let err = PipelineConfig::default().apply_env(&env).unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "HIVELOG_OVERFLOW: 'x' is not an overflow policy; expected one of drop_lowest, drop_newest, drop_oldest, block:<duration>"
    /// );
    /// ```
    pub fn apply_env(mut self, env: &Env) -> Result<Self, ConfigError> {
        if let Some(v) = env.get("HIVELOG_BUFFER_BYTES") {
            let bytes = env.bytes("HIVELOG_BUFFER_BYTES")?.unwrap_or(0);
            if bytes == 0 {
                return Err(ConfigError::invalid(
                    "HIVELOG_BUFFER_BYTES",
                    v,
                    "a usable budget",
                    "a size above zero (64MB)",
                ));
            }
            self.buffer_bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
        }
        if let Some(o) = env.parse("HIVELOG_OVERFLOW", "an overflow policy", |v| {
            v.parse::<Overflow>().map_err(str::to_owned)
        })? {
            self.overflow = o;
        }
        if let Some(d) = env.duration("HIVELOG_FLUSH_INTERVAL")? {
            self.flush_interval = d;
        }
        if let Some(d) = env.duration("HIVELOG_SHUTDOWN_TIMEOUT")? {
            self.shutdown_timeout = d;
        }
        if let Some(d) = env.duration("HIVELOG_RETRY_BASE")? {
            self.retry.base = d;
        }
        if let Some(d) = env.duration("HIVELOG_RETRY_CAP")? {
            self.retry.cap = d;
        }
        if let Some(d) = env.duration("HIVELOG_RETRY_MAX_ELAPSED")? {
            self.retry.max_elapsed = d;
        }
        self.spill = SpillConfig::apply_env(self.spill.take(), env)?;
        if self.retry.base > self.retry.cap {
            return Err(ConfigError::conflict(
                "HIVELOG_RETRY_BASE",
                format!(
                    "{:?} is larger than HIVELOG_RETRY_CAP ({:?}); the first backoff cannot exceed the largest",
                    self.retry.base, self.retry.cap
                ),
            ));
        }
        Ok(self)
    }

    /// Names the service whose spill folders this configuration opens (`<dir>/<service>.<sink>`).
    pub fn for_service(mut self, service: &str) -> Self {
        if let Some(s) = &mut self.spill {
            s.service = service.to_owned();
        }
        self
    }
}
