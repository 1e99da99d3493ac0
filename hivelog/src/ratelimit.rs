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
//! `log` records: the `log` bridge gives every record of a level one shared callsite, so for
//! those the call site is the record's own target, file and line (hashed, one more table entry
//! per site; the record's fields are visited once more for it). Callsites beyond the table's
//! [`CAPACITY`] are not limited (one stderr line says so).

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use hivelog_core::record::{Str, Value};
use hivelog_core::Record;
use tracing_core::{Event, Metadata};
use tracing_log::NormalizeEvent;
use tracing_subscriber::filter::EnvFilter;
use tracing_subscriber::layer::Layer;

use crate::level::FilterCell;
use crate::route::Dest;

/// Callsites the limiter can follow (2¹²); later ones are not limited.
pub const CAPACITY: usize = 1 << 12;
/// Slots tried from a callsite's hash before giving up.
const PROBES: usize = 64;
/// Tags a slot's key as the `log` bridge's shared callsite, whose records are counted per
/// call site instead (callsite addresses are aligned, so bits 0 and 1 are free).
const BRIDGE: usize = 1;
/// Marks a key as a `log` call site's hash rather than a callsite address.
const LOG_SITE: usize = 2;

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

/// What a slot counts, for its summary.
enum Site {
    /// A `tracing` callsite.
    Callsite(&'static Metadata<'static>),
    /// One `log` call site; `bridge` is the `log` bridge's callsite of its level.
    Log {
        target: String,
        module: Option<String>,
        file: Option<String>,
        line: Option<u32>,
        bridge: &'static Metadata<'static>,
    },
}

/// One callsite's counters.
#[derive(Default)]
struct Slot {
    /// The callsite's metadata address (maybe tagged [`BRIDGE`]) or a `log` site's hash
    /// (tagged [`LOG_SITE`]); 0 while free.
    key: AtomicUsize,
    site: OnceLock<Site>,
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

    /// Whether `event` may be logged; if not, it is counted as suppressed.
    #[inline]
    pub(crate) fn admit(&self, event: &Event<'_>) -> bool {
        let meta = event.metadata();
        let key = std::ptr::from_ref(meta) as usize;
        let Some((slot, tagged)) = self.slot(key, || match is_log(meta) {
            true => (key | BRIDGE, None),
            false => (key, Some(Site::Callsite(meta))),
        }) else {
            return true;
        };
        if tagged & BRIDGE == 0 {
            return self.count(slot);
        }
        let Some(normalized) = event.normalized_metadata() else {
            return true;
        };
        let key = log_key(&normalized);
        match self.slot(key, || (key, Some(log_site(&normalized, meta)))) {
            Some((slot, _)) => self.count(slot),
            None => true,
        }
    }

    /// Whether a held line of the request buffer, written now, may be logged: it counts as an
    /// event of its callsite at the time it is written, not when it was held. `log` records
    /// are not limited here (their call site is in fields that are no longer at hand).
    pub(crate) fn admit_callsite(&self, meta: &'static Metadata<'static>) -> bool {
        if is_log(meta) {
            return true;
        }
        let key = std::ptr::from_ref(meta) as usize;
        match self.slot(key, || (key, Some(Site::Callsite(meta)))) {
            Some((slot, _)) => self.count(slot),
            None => true,
        }
    }

    /// Counts one event in `slot`'s window: true if under the limit, else suppressed.
    #[inline]
    fn count(&self, slot: &Slot) -> bool {
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

    /// The slot whose key is `key` (ignoring the [`BRIDGE`] tag) and its tagged key, claiming a
    /// free one with `make()`'s tagged key and site on the first event.
    #[inline]
    fn slot(
        &self,
        key: usize,
        make: impl FnOnce() -> (usize, Option<Site>),
    ) -> Option<(&Slot, usize)> {
        // Fibonacci hashing: the top 12 bits of the key times 2⁶⁴/φ.
        let mut i = ((key as u64 >> 2).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 52) as usize;
        let mut make = Some(make);
        let mut made: Option<(usize, Option<Site>)> = None;
        for _ in 0..PROBES {
            i &= CAPACITY - 1;
            let slot = &self.slots[i];
            let mut k = slot.key.load(Ordering::Acquire);
            if k == 0 {
                if let Some(m) = make.take() {
                    made = Some(m());
                }
                let tagged = made.as_ref().map_or(key, |m| m.0);
                k = match slot
                    .key
                    .compare_exchange(0, tagged, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => {
                        if let Some((_, Some(site))) = made.take() {
                            let _ = slot.site.set(site);
                        }
                        tagged
                    }
                    // Another callsite took it: `made` waits for the next free slot.
                    Err(other) => other,
                };
            }
            if k & !BRIDGE == key {
                return Some((slot, k));
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
            let Some(site) = slot.site.get() else {
                continue; // claimed a moment ago: reported at the next window
            };
            let n = slot.suppressed.swap(0, Ordering::Relaxed);
            if n > 0 {
                let record = summary(site, n, self.limit, self.router.max_text);
                self.router.route(record, site.interest_meta());
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

/// A `log` call site's key: a hash of its level, target, file and line, tagged [`LOG_SITE`].
fn log_key(m: &Metadata<'_>) -> usize {
    let mut h = std::hash::DefaultHasher::new();
    (m.level(), m.target(), m.file(), m.line()).hash(&mut h);
    (h.finish() as usize & !(BRIDGE | LOG_SITE)) | LOG_SITE
}

/// The site a `log` record came from, owned for its summaries.
fn log_site(m: &Metadata<'_>, bridge: &'static Metadata<'static>) -> Site {
    Site::Log {
        target: m.target().to_owned(),
        module: m.module_path().map(str::to_owned),
        file: m.file().map(str::to_owned),
        line: m.line(),
        bridge,
    }
}

impl Site {
    /// The callsite whose interest decides which destinations get the summary.
    fn interest_meta(&self) -> &'static Metadata<'static> {
        match self {
            Site::Callsite(meta) => meta,
            Site::Log { bridge, .. } => bridge,
        }
    }
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

/// The summary event: the site's level, target and location, `suppressed` and `callsite`.
fn summary(site: &Site, n: u64, limit: RateLimit, max_text: usize) -> Record {
    let meta = site.interest_meta();
    let mut r = Record::new(*meta.level(), Str::Static(meta.target()), max_text, 2);
    match site {
        Site::Callsite(meta) => {
            r.module = meta.module_path().map(Str::Static);
            r.file = meta.file().map(Str::Static);
            r.line = meta.line();
        }
        Site::Log {
            target,
            module,
            file,
            line,
            ..
        } => {
            r.target = Str::Owned(r.fields.push_str(target));
            r.module = module.as_deref().map(|m| Str::Owned(r.fields.push_str(m)));
            r.file = file.as_deref().map(|f| Str::Owned(r.fields.push_str(f)));
            r.line = *line;
        }
    }
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
    let file = r
        .file
        .map_or_else(|| "?".to_owned(), |f| r.fields.str(f).to_owned());
    let callsite = r
        .fields
        .push_fmt(format_args!("{file}:{}", r.line.unwrap_or(0)));
    r.fields.push("callsite", Value::Str(callsite));
    r
}
