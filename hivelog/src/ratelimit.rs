//! `HIVELOG_RATE_LIMIT=N/s` (or `N/m`): at most N events per callsite per window; the rest
//! are suppressed and counted, and one summary event per callsite and window says how many.
//!
//! Why per callsite: the usual log bill is one noisy line (a retry loop logging each attempt),
//! and limiting it must not silence the lines around it. Why fixed windows advanced by a
//! thread: the log call then reads no clock. Its whole cost under the limit is a lookup in a
//! lock-free table keyed by the callsite's address (usually one probe), one load of the
//! window number and one compare-and-swap of the callsite's `(window, count)` word.
//!
//! Exact: every event either wins that compare-and-swap (it is logged) or adds one to the
//! callsite's `suppressed` counter, which only the summaries take (`swap(0)`), so lines written
//! plus the summaries' `suppressed` equal the events logged. A summary is an event at the
//! callsite's level and target, with the integer field `suppressed` and `callsite`
//! (`file:line`), sent to every destination whose filter takes that callsite. Counts still
//! open at shutdown are emitted before the final flush.
//!
//! Not limited: `log` records (the `log` bridge gives every record of a level one shared
//! callsite, so a per-callsite count would limit all of a level's records at once), and
//! callsites beyond the table's [`CAPACITY`] (one stderr line says so).

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use hivelog_core::record::{Str, Value};
use hivelog_core::Record;
use tracing_core::Metadata;
use tracing_subscriber::filter::EnvFilter;
use tracing_subscriber::layer::Layer;

use crate::layer::Dest;
use crate::level::FilterCell;

/// Callsites the limiter can follow (2¹²); later ones are not limited.
pub const CAPACITY: usize = 1 << 12;
/// Slots tried from a callsite's hash before giving up.
const PROBES: usize = 64;
/// The exempt tag in a slot's key (callsite addresses are aligned, so bit 0 is free).
const EXEMPT: usize = 1;

const FORM: &str = "a number of events per second or minute, such as 100/s or 600/m";

/// At most `events` per callsite in each `per`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RateLimit {
    pub(crate) events: u32,
    pub(crate) per: Duration,
}

/// Parses `HIVELOG_RATE_LIMIT`: `N/s` or `N/m` with N ≥ 1.
pub(crate) fn parse(v: &str) -> Result<RateLimit, String> {
    let (n, unit) = v.trim().split_once('/').ok_or(FORM)?;
    let per = match unit.trim() {
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        _ => return Err(FORM.to_owned()),
    };
    match n.trim().parse::<u32>() {
        Ok(events) if events > 0 => Ok(RateLimit { events, per }),
        _ => Err(FORM.to_owned()),
    }
}

/// One callsite's counters.
#[derive(Default)]
struct Slot {
    /// The callsite's metadata address (with [`EXEMPT`]), 0 while free.
    key: AtomicUsize,
    meta: OnceLock<&'static Metadata<'static>>,
    /// `window << 32 | events logged in it`.
    state: AtomicU64,
    suppressed: AtomicU64,
}

/// Where summaries go: the layer's destinations and filters.
pub(crate) struct Router {
    pub(crate) dests: Vec<Dest>,
    pub(crate) filters: Arc<FilterCell>,
    pub(crate) max_text: usize,
}

/// The per-callsite limiter shared by the layer and its window thread.
pub(crate) struct Limiter {
    limit: RateLimit,
    window: AtomicU32,
    slots: Box<[Slot]>,
    router: Router,
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl Limiter {
    /// Creates the limiter and starts its window thread (`hivelog-ratelimit`).
    pub(crate) fn start(limit: RateLimit, router: Router) -> std::io::Result<Arc<Limiter>> {
        let limiter = Arc::new(Limiter {
            limit,
            window: AtomicU32::new(0),
            slots: (0..CAPACITY).map(|_| Slot::default()).collect(),
            router,
            stopped: Mutex::new(false),
            wake: Condvar::new(),
        });
        let me = limiter.clone();
        std::thread::Builder::new()
            .name("hivelog-ratelimit".into())
            .spawn(move || me.run())?;
        Ok(limiter)
    }

    /// Whether an event of `meta` may be logged; if not, it is counted as suppressed.
    #[inline]
    pub(crate) fn admit(&self, meta: &'static Metadata<'static>) -> bool {
        let Some(slot) = self.slot(meta) else {
            return true;
        };
        let window = self.window.load(Ordering::Relaxed);
        let mut cur = slot.state.load(Ordering::Relaxed);
        loop {
            let (w, n) = ((cur >> 32) as u32, cur as u32);
            let next = if w >= window {
                if n >= self.limit.events {
                    slot.suppressed.fetch_add(1, Ordering::Relaxed);
                    return false;
                }
                cur + 1
            } else {
                (u64::from(window) << 32) | 1
            };
            match slot
                .state
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    /// The slot of a limited callsite, claiming a free one on its first event.
    #[inline]
    fn slot(&self, meta: &'static Metadata<'static>) -> Option<&Slot> {
        let key = std::ptr::from_ref(meta) as usize;
        // Fibonacci hashing: the top 12 bits of the address times 2⁶⁴/φ.
        let mut i = ((key as u64 >> 3).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 52) as usize;
        for _ in 0..PROBES {
            i &= CAPACITY - 1;
            let slot = &self.slots[i];
            let mut k = slot.key.load(Ordering::Acquire);
            if k == 0 {
                let tagged = key | if is_log(meta) { EXEMPT } else { 0 };
                k = match slot
                    .key
                    .compare_exchange(0, tagged, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => {
                        let _ = slot.meta.set(meta);
                        tagged
                    }
                    Err(other) => other,
                };
            }
            if k & !EXEMPT == key {
                return (k & EXEMPT == 0).then_some(slot);
            }
            i += 1;
        }
        hivelog_core::diag::warn_every(
            "config",
            "HIVELOG_RATE_LIMIT",
            Duration::from_secs(3600),
            format_args!("HIVELOG_RATE_LIMIT follows at most {CAPACITY} callsites; later ones are not limited"),
        );
        None
    }

    /// Advances the window at each boundary and reports what it suppressed, until stopped.
    fn run(&self) {
        let start = Instant::now();
        let mut window = 0u32;
        loop {
            let next = start + self.limit.per * (window + 1);
            let stopped = self.stopped.lock().unwrap_or_else(PoisonError::into_inner);
            let wait = next.saturating_duration_since(Instant::now());
            let (stopped, _) = self
                .wake
                .wait_timeout_while(stopped, wait, |s| !*s)
                .unwrap_or_else(PoisonError::into_inner);
            if *stopped {
                return;
            }
            drop(stopped);
            if Instant::now() < next {
                continue;
            }
            window += 1;
            self.window.store(window, Ordering::Relaxed);
            self.report();
        }
    }

    /// Emits one summary per callsite with suppressed events.
    fn report(&self) {
        for slot in self.slots.iter() {
            if slot.suppressed.load(Ordering::Relaxed) == 0 {
                continue;
            }
            let Some(meta) = slot.meta.get() else {
                continue; // claimed a moment ago: reported at the next window
            };
            let n = slot.suppressed.swap(0, Ordering::Relaxed);
            if n > 0 {
                self.router
                    .route(summary(meta, n, self.limit, self.router.max_text), meta);
            }
        }
    }

    /// Stops the window thread and emits the counts still open (before the final flush).
    pub(crate) fn finish(&self) {
        *self.stopped.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.wake.notify_all();
        self.report();
    }
}

/// Whether `meta` is the `log` bridge's shared per-level callsite.
fn is_log(meta: &Metadata<'_>) -> bool {
    meta.fields().field("log.target").is_some()
}

impl Router {
    /// Sends a hivelog-made record of `meta`'s callsite to the destinations that take it.
    fn route(&self, record: Record, meta: &'static Metadata<'static>) {
        let wanted: Vec<bool> = self.filters.with(|f| {
            f.by_route
                .iter()
                .map(|filter| {
                    !<EnvFilter as Layer<tracing_subscriber::Registry>>::register_callsite(
                        filter, meta,
                    )
                    .is_never()
                })
                .collect()
        });
        for (dest, wanted) in self.dests.iter().zip(wanted) {
            match dest {
                Dest::Local(l) if wanted => l.write(&record),
                Dest::Sink(p) if wanted => p.push(record.clone()),
                _ => {}
            }
        }
    }
}

/// The summary event: the callsite's level, target and location, `suppressed` and `callsite`.
fn summary(meta: &'static Metadata<'static>, n: u64, limit: RateLimit, max_text: usize) -> Record {
    let mut r = Record::new(*meta.level(), Str::Static(meta.target()), max_text, 2);
    r.module = meta.module_path().map(Str::Static);
    r.file = meta.file().map(Str::Static);
    r.line = meta.line();
    let per = if limit.per == Duration::from_secs(1) {
        "s"
    } else {
        "m"
    };
    let message = r.fields.push_fmt(format_args!(
        "{n} events from this callsite were suppressed (HIVELOG_RATE_LIMIT={}/{per})",
        limit.events
    ));
    r.message = Some(message);
    r.fields.push("suppressed", Value::U64(n));
    let callsite = r.fields.push_fmt(format_args!(
        "{}:{}",
        meta.file().unwrap_or("?"),
        meta.line().unwrap_or(0)
    ));
    r.fields.push("callsite", Value::Str(callsite));
    r
}
