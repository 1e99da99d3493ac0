//! The level at run time: [`crate::set_level`], `HIVELOG_LEVEL_FILE`, and the filter set the
//! layer reads.
//!
//! Why not `tracing_subscriber::reload`: its layer takes a read lock on every callback, and
//! services measured that as a large throughput loss. Here the log call takes no lock and
//! does no atomic read-modify-write for the level:
//! - a filtered-out event never reaches the layer at all: changing the level swaps the filters
//!   and then calls [`tracing_core::callsite::rebuild_interest_cache`], which re-asks every
//!   callsite's interest and the global max level, so a disabled `debug!` is rejected by the
//!   macro's own cached check exactly as with a static level (and `log`'s max level is set to
//!   match, for records from dependencies);
//! - where the layer does read the filters (several destinations, span callbacks, span-based
//!   directives) it reads a per-thread copy of the current `Arc`, checked against a
//!   generation number with one atomic load; only the first event on a thread after a change
//!   takes the lock, to refresh its copy.
//!
//! The file is polled every [`POLL`]: a change is applied within one poll, logged as one
//! stderr line before it takes effect (so no event of the new level precedes the line), and
//! invalid contents give one stderr line naming the file and the problem while the current
//! level stays. Span-based directives apply to spans created after the change.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use hivelog_core::{ConfigError, Env};
use tracing::dispatcher::WeakDispatch;
use tracing::Dispatch;
use tracing_core::callsite::rebuild_interest_cache;
use tracing_subscriber::filter::{EnvFilter, LevelFilter};

use crate::config;

/// How often `HIVELOG_LEVEL_FILE` is read: a change applies within this (the contract is 2 s).
pub const POLL: Duration = Duration::from_millis(500);

/// One destination's level: the main level (which changes at run time) or its own variable.
#[derive(Clone, Debug)]
pub(crate) enum RouteLevel {
    /// Follows `HIVELOG_LEVEL`, the level file and [`crate::set_level`].
    Main,
    /// `HIVELOG_<SINK>_LEVEL`: fixed.
    Own {
        var: &'static str,
        directives: String,
    },
}

/// The filters of every destination, in route order, built from one main level.
pub(crate) struct Filters {
    pub(crate) by_route: Vec<EnvFilter>,
    /// The main directives these were built from.
    pub(crate) main: String,
    /// When every route's directives are one bare level (`info`): the most verbose of them,
    /// which then decides alone whether hivelog takes an event (see [`FilterCell::simple`]).
    simple: Option<LevelFilter>,
}

impl Filters {
    /// Parses every route's filter; `var` names the main level's source in errors.
    pub(crate) fn build(levels: &[RouteLevel], main: &str, var: &str) -> Result<Self, ConfigError> {
        let bare = |d: &str| d.trim().parse::<LevelFilter>().ok();
        let simple = levels
            .iter()
            .map(|l| match l {
                RouteLevel::Main => bare(main),
                RouteLevel::Own { directives, .. } => bare(directives),
            })
            .try_fold(LevelFilter::OFF, |max, l| Some(max.max(l?)));
        let by_route = levels
            .iter()
            .map(|l| match l {
                RouteLevel::Main => config::parse_filter(var, main),
                RouteLevel::Own { var, directives } => config::parse_filter(var, directives),
            })
            .collect::<Result<_, _>>()?;
        Ok(Filters {
            by_route,
            main: main.to_owned(),
            simple,
        })
    }

    /// The most verbose level any destination wants.
    pub(crate) fn max_level(&self) -> LevelFilter {
        self.by_route
            .iter()
            .map(|f| f.max_level_hint().unwrap_or(LevelFilter::TRACE))
            .max()
            .unwrap_or(LevelFilter::OFF)
    }
}

/// The current [`Filters`], replaceable while threads log.
pub(crate) struct FilterCell {
    id: u64,
    generation: AtomicU64,
    /// [`Filters::simple`] of the current filters, encoded by [`encode`]: read with one load.
    simple: AtomicU8,
    current: Mutex<(u64, Arc<Filters>)>,
}

/// [`Filters::simple`] as a byte: 0 for none, else 1 + the level's verbosity (`OFF` = 1).
fn encode(simple: Option<LevelFilter>) -> u8 {
    const ORDER: [LevelFilter; 6] = [
        LevelFilter::OFF,
        LevelFilter::ERROR,
        LevelFilter::WARN,
        LevelFilter::INFO,
        LevelFilter::DEBUG,
        LevelFilter::TRACE,
    ];
    simple.map_or(0, |l| {
        1 + ORDER.iter().position(|o| *o == l).unwrap_or(5) as u8
    })
}

fn decode(b: u8) -> Option<LevelFilter> {
    match b {
        0 => None,
        1 => Some(LevelFilter::OFF),
        2 => Some(LevelFilter::ERROR),
        3 => Some(LevelFilter::WARN),
        4 => Some(LevelFilter::INFO),
        5 => Some(LevelFilter::DEBUG),
        _ => Some(LevelFilter::TRACE),
    }
}

/// A thread's copy of one cell's filters (one slot: a process has one layer, tests a few).
struct Cached {
    cell: u64,
    generation: u64,
    filters: Arc<Filters>,
}

thread_local! {
    static CACHE: RefCell<Option<Cached>> = const { RefCell::new(None) };
}

static NEXT_CELL: AtomicU64 = AtomicU64::new(1);

impl FilterCell {
    pub(crate) fn new(filters: Filters) -> Self {
        FilterCell {
            id: NEXT_CELL.fetch_add(1, Ordering::Relaxed),
            generation: AtomicU64::new(0),
            simple: AtomicU8::new(encode(filters.simple)),
            current: Mutex::new((0, Arc::new(filters))),
        }
    }

    /// When every destination's level is one bare level, the most verbose of them: then an
    /// event is taken exactly when its level is at most this, and the per-event question a
    /// composed subscriber asks (`enabled`, for callsites another layer's filter made
    /// `sometimes`) costs one load and a compare instead of reading the filters.
    #[inline]
    pub(crate) fn simple(&self) -> Option<LevelFilter> {
        decode(self.simple.load(Ordering::Acquire))
    }

    /// The current filters, under the lock (for rare callers: a level change, registration).
    pub(crate) fn load(&self) -> (u64, Arc<Filters>) {
        let cur = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        (cur.0, cur.1.clone())
    }

    /// Replaces the filters; threads see them at their next read.
    fn store(&self, filters: Filters) {
        let mut cur = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        cur.0 += 1;
        self.simple.store(encode(filters.simple), Ordering::Release);
        cur.1 = Arc::new(filters);
        self.generation.store(cur.0, Ordering::Release);
    }

    /// Runs `f` on the current filters: from the thread's copy when it is current (one atomic
    /// load), else after refreshing the copy under the lock.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&Filters) -> R) -> R {
        let generation = self.generation.load(Ordering::Acquire);
        let mut f = Some(f);
        let hit = CACHE
            .try_with(|c| {
                let c = c.try_borrow().ok()?;
                let k = c.as_ref()?;
                (k.cell == self.id && k.generation == generation)
                    .then(|| f.take().map(|f| f(&k.filters)))
                    .flatten()
            })
            .ok()
            .flatten();
        if let Some(r) = hit {
            return r;
        }
        let (generation, filters) = self.load();
        // Refresh the copy unless this is a nested call (a `Display` that logs) holding it.
        let _ = CACHE.try_with(|c| {
            if let Ok(mut c) = c.try_borrow_mut() {
                *c = Some(Cached {
                    cell: self.id,
                    generation,
                    filters: filters.clone(),
                });
            }
        });
        match f.take() {
            Some(f) => f(&filters),
            None => unreachable!("f runs once: the fast path returned if it ran"),
        }
    }
}

/// Changes the main level of one built layer.
pub(crate) struct LevelControl {
    cell: Arc<FilterCell>,
    levels: Vec<RouteLevel>,
    /// `HIVELOG_LEVEL` (else `RUST_LOG`, the builder's, `info`): what an empty file means.
    pub(crate) default: String,
    /// Whether this layer is the global subscriber, whose max level `log` must follow.
    pub(crate) global: AtomicBool,
    changes: Mutex<()>,
    stopped: Mutex<bool>,
    wake: Condvar,
    /// The dispatch the layer is in, once built (see [`LevelControl::bind`]).
    dispatch: OnceLock<WeakDispatch>,
    /// The most verbose level the layer asks for whatever the destinations' levels (the
    /// request buffer's), which `log`'s max level must not go below.
    floor: LevelFilter,
}

impl LevelControl {
    pub(crate) fn new(cell: Arc<FilterCell>, levels: Vec<RouteLevel>, default: String) -> Self {
        LevelControl {
            cell,
            levels,
            default,
            global: AtomicBool::new(false),
            changes: Mutex::new(()),
            stopped: Mutex::new(false),
            wake: Condvar::new(),
            dispatch: OnceLock::new(),
            floor: LevelFilter::OFF,
        }
    }

    /// The same control with a floor under the max level given to `log` (see `floor`).
    pub(crate) fn floor(mut self, floor: LevelFilter) -> Self {
        self.floor = floor;
        self
    }

    /// Remembers the dispatch the layer is in. Needed because when it is the only dispatch,
    /// `rebuild_interest_cache` asks the *calling thread's* default dispatch for interest and
    /// max level: from a thread outside `with_default` (the file watcher, an admin handler)
    /// that would be the no-op dispatch, which disables every callsite.
    pub(crate) fn bind(&self, dispatch: &Dispatch) {
        let _ = self.dispatch.set(dispatch.downgrade());
    }

    /// The main level's directives now.
    pub(crate) fn current(&self) -> String {
        self.cell.load().1.main.clone()
    }

    /// Checks `directives`, then (after `announce` ran) makes them the main level.
    pub(crate) fn set(
        &self,
        directives: &str,
        source: &str,
        announce: impl FnOnce(),
    ) -> Result<(), ConfigError> {
        let _one_at_a_time = self.changes.lock().unwrap_or_else(PoisonError::into_inner);
        let filters = Filters::build(&self.levels, directives.trim(), source)?;
        announce();
        let max = filters.max_level().max(self.floor);
        self.cell.store(filters);
        match self.dispatch.get().and_then(WeakDispatch::upgrade) {
            Some(d) => tracing::dispatcher::with_default(&d, rebuild_interest_cache),
            None => rebuild_interest_cache(),
        }
        if self.global.load(Ordering::SeqCst) {
            log::set_max_level(log_level(max));
        }
        Ok(())
    }

    /// Ends the file watcher, if any.
    pub(crate) fn stop(&self) {
        *self.stopped.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.wake.notify_all();
    }

    /// Waits one poll; false once stopped.
    fn sleep(&self) -> bool {
        let stopped = self.stopped.lock().unwrap_or_else(PoisonError::into_inner);
        let (stopped, _) = self
            .wake
            .wait_timeout_while(stopped, POLL, |s| !*s)
            .unwrap_or_else(PoisonError::into_inner);
        !*stopped
    }
}

/// `log`'s max level for a `tracing` max level.
pub(crate) fn log_level(max: LevelFilter) -> log::LevelFilter {
    match max.into_level() {
        None => log::LevelFilter::Off,
        Some(tracing::Level::ERROR) => log::LevelFilter::Error,
        Some(tracing::Level::WARN) => log::LevelFilter::Warn,
        Some(tracing::Level::INFO) => log::LevelFilter::Info,
        Some(tracing::Level::DEBUG) => log::LevelFilter::Debug,
        Some(_) => log::LevelFilter::Trace,
    }
}

/// The directives in a level file: lines joined by `,`, blank lines and `#` comments skipped;
/// `None` when the file is missing or holds none (then `HIVELOG_LEVEL` applies).
pub(crate) fn read_file(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let joined = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join(",");
    (!joined.is_empty()).then_some(joined)
}

/// `HIVELOG_LEVEL_FILE /path`: how errors and notices name the file.
pub(crate) fn file_source(path: &Path) -> String {
    format!("HIVELOG_LEVEL_FILE {}", path.display())
}

/// Starts the thread that applies `path`'s changes; `seen` is what was read at start.
pub(crate) fn watch(
    control: Arc<LevelControl>,
    path: PathBuf,
    seen: Option<String>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("hivelog-level".into())
        .spawn(move || {
            let mut seen = seen;
            while control.sleep() {
                let now = read_file(&path);
                if now != seen {
                    apply_file(&control, &path, now.as_deref());
                    seen = now;
                }
            }
        })?;
    Ok(())
}

/// Applies the file's new contents (`None`: missing or empty), with one stderr line either way.
fn apply_file(control: &LevelControl, path: &Path, contents: Option<&str>) {
    let source = file_source(path);
    let (directives, origin) = match contents {
        Some(d) => (d, source.clone()),
        None => (
            control.default.as_str(),
            format!("{} is missing or empty, so HIVELOG_LEVEL", path.display()),
        ),
    };
    let result = control.set(directives, &source, || {
        eprintln!("hivelog: level changed to '{directives}' (from {origin})");
    });
    if let Err(e) = result {
        eprintln!("hivelog: {e}; the level stays '{}'", control.current());
    }
}

/// The main level as configured at start.
pub(crate) struct MainLevel {
    /// What applies now: the level file's directives when it holds valid ones, else `default`.
    pub(crate) directives: String,
    /// The variable `directives` came from, for error messages.
    pub(crate) var: String,
    /// `HIVELOG_LEVEL` (else `RUST_LOG`, the builder's level, `info`).
    pub(crate) default: String,
    /// `HIVELOG_LEVEL_FILE` and what it held at start.
    pub(crate) file: Option<(PathBuf, Option<String>)>,
}

/// Reads `HIVELOG_LEVEL`/`RUST_LOG`/`code` and `HIVELOG_LEVEL_FILE`. A bad `HIVELOG_LEVEL` is an
/// error; a bad file is one stderr line and `HIVELOG_LEVEL` applies, since the file may be
/// fixed while the service runs. A `dry_run` (`validate`) does not read the file.
pub(crate) fn resolve(
    env: &Env,
    code: Option<&str>,
    dry_run: bool,
) -> Result<MainLevel, ConfigError> {
    let (default, var) = config::level(env, code);
    config::parse_filter(var, &default)?;
    let path = env.get("HIVELOG_LEVEL_FILE").map(PathBuf::from);
    let mut main = MainLevel {
        directives: default.clone(),
        var: var.to_owned(),
        default,
        file: None,
    };
    if let Some(path) = path {
        let seen = if dry_run { None } else { read_file(&path) };
        if let Some(d) = &seen {
            let source = file_source(&path);
            match config::parse_filter(&source, d) {
                Ok(_) => (main.directives, main.var) = (d.clone(), source),
                Err(e) => eprintln!("hivelog: {e}; using '{}'", main.default),
            }
        }
        main.file = Some((path, seen));
    }
    Ok(main)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn simple(levels: &[RouteLevel], main: &str) -> Option<LevelFilter> {
        let cell = FilterCell::new(Filters::build(levels, main, "HIVELOG_LEVEL").unwrap());
        cell.simple()
    }

    #[test]
    fn one_bare_level_per_destination_is_decided_by_the_most_verbose() {
        let own = |d: &str| RouteLevel::Own {
            var: "HIVELOG_ES_LEVEL",
            directives: d.to_owned(),
        };
        assert_eq!(simple(&[RouteLevel::Main], "info"), Some(LevelFilter::INFO));
        assert_eq!(simple(&[RouteLevel::Main], "off"), Some(LevelFilter::OFF));
        assert_eq!(
            simple(&[RouteLevel::Main, own("trace")], "warn"),
            Some(LevelFilter::TRACE)
        );
        assert_eq!(simple(&[RouteLevel::Main], "info,db=debug"), None);
        assert_eq!(
            simple(&[RouteLevel::Main, own("[req]=debug")], "info"),
            None
        );
        assert_eq!(simple(&[], "info"), Some(LevelFilter::OFF));
    }

    #[test]
    fn a_level_change_updates_the_one_level_answer() {
        let cell = FilterCell::new(Filters::build(&[RouteLevel::Main], "info", "v").unwrap());
        cell.store(Filters::build(&[RouteLevel::Main], "debug", "v").unwrap());
        assert_eq!(cell.simple(), Some(LevelFilter::DEBUG));
        cell.store(Filters::build(&[RouteLevel::Main], "info,a=trace", "v").unwrap());
        assert_eq!(cell.simple(), None);
    }
}
