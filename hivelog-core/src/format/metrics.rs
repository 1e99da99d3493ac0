//! CloudWatch embedded metric format (EMF): `HIVELOG_METRICS=emf` makes an event's
//! `metric.<name>` fields CloudWatch metrics of the very line they are on.
//!
//! Why in the formatter: EMF is a property of the JSON line (CloudWatch Logs extracts the
//! metrics when it ingests the line), so every output that writes the line (stdout read by
//! `awslogs`, a file, the CloudWatch sink, Fluentd, Elasticsearch) carries the same document and
//! no metrics agent or second SDK is involved. The line keeps everything it has; each metric's
//! value is written at the root under `<name>` (prefix removed) and an `_aws` block is added
//! last:
//!
//! ```json
//! {"timestamp":"…","level":"INFO","target":"web","message":"served","route":"/a",
//!  "latency_ms":12.5,
//!  "_aws":{"Timestamp":1764750000123,"CloudWatchMetrics":[{"Namespace":"web",
//!   "Dimensions":[["route"]],"Metrics":[{"Name":"latency_ms","Unit":"Milliseconds"}]}]}}
//! ```
//!
//! Rules, from the specification ("Specification: Embedded metric format", CloudWatch user
//! guide) and where hivelog had to decide:
//! - Only the event's own fields are metrics; a span's `metric.*` field is written as usual.
//! - A metric's value must be a finite number. Anything else (a string, a bool, NaN, ±inf, a
//!   redacted field) stays a plain field under its full name, is left out of `_aws`, and is
//!   counted ([`Format::metrics_skipped`], in the guard's report): a silent gap in a graph is
//!   the pitfall the AWS libraries are known for.
//! - When `<name>` is already a key of the line (hivelog's own field, an extra, another field
//!   of the event or its spans), the member and the metric keep the full name `metric.<name>`,
//!   so nothing is overwritten and the metric still points at its own value.
//! - `Dimensions` is one dimension set: the `HIVELOG_METRICS_DIMENSIONS` keys whose value on
//!   this line is a string written at the root (an event or span field, an extra, or the
//!   level/target/service/hostname basic fields), in the configured order; with none present
//!   it is `[[]]`, which the specification allows (a metric with no dimension). hivelog's own
//!   lines (target `hivelog`: the heartbeat) use the dimension `destination` instead.
//! - At most [`MAX_METRICS_PER_DOCUMENT`] metrics per directive: an event with more is cut,
//!   before it is queued, into several records of at most 100 metrics each (as
//!   aws-embedded-metrics' `log_serializer.py` splits), each carrying all the event's other
//!   fields, so every output writes complete documents and nothing is dropped
//!   ([`Format::metric_parts`]).
//! - On a line with metrics `_aws` is hivelog's key: a user field of that name is written as
//!   `fields._aws`. A line without metrics has no `_aws` block and is byte for byte the line
//!   written with metrics off.

use std::sync::atomic::{AtomicU64, Ordering};

use super::emit::{Emit, Key};
use super::{Attr, Extra, Format};
use crate::env::ConfigError;
use crate::record::{Field, Record, Value};

/// The prefix that marks a field as a metric.
pub const PREFIX: &str = "metric.";

/// "The Metrics array MUST NOT contain more than 100 MetricDefinition objects."
pub const MAX_METRICS_PER_DOCUMENT: usize = 100;

/// "A DimensionSet MUST NOT contain more than 30 dimension keys."
pub const MAX_DIMENSIONS: usize = 30;

/// CloudWatch namespaces are 1 to 255 characters.
pub const MAX_NAMESPACE_CHARS: usize = 255;

/// The JSON schema's `DimensionReference` `maxLength`.
pub const MAX_DIMENSION_NAME_CHARS: usize = 250;

/// The units CloudWatch accepts (the JSON schema's `MetricUnit` pattern).
pub const UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// Units read from a metric name's suffix (`latency_ms`); other names get `None`.
pub const SUFFIX_UNITS: &[(&str, &str)] = &[
    ("_ms", "Milliseconds"),
    ("_us", "Microseconds"),
    ("_s", "Seconds"),
    ("_bytes", "Bytes"),
    ("_pct", "Percent"),
    ("_count", "Count"),
];

/// The dimension of hivelog's own metric lines (the heartbeat): which output the figures are of.
pub const OWN_DIMENSION: &str = "destination";

/// What `HIVELOG_METRICS=emf` is configured with, from code or the `HIVELOG_METRICS_*` variables.
///
/// ```
/// use hivelog_core::format::{Format, MetricsConfig};
/// let format = Format::builder()
///     .service("web")
///     .metrics(MetricsConfig {
///         dimensions: vec!["route".into()],
///         ..MetricsConfig::default()
///     })
///     .unwrap()
///     .build();
/// assert!(format.metrics_enabled());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricsConfig {
    /// `HIVELOG_METRICS_NAMESPACE`; `None`: the service name.
    pub namespace: Option<String>,
    /// `HIVELOG_METRICS_DIMENSIONS`: field names forming the one dimension set.
    pub dimensions: Vec<String>,
    /// `HIVELOG_METRICS_UNITS`: a unit per metric name (without the prefix), over the suffixes.
    pub units: Vec<(String, &'static str)>,
    /// `HIVELOG_METRICS_RESOLUTION=1s`: `StorageResolution: 1` on every metric.
    pub high_resolution: bool,
}

impl MetricsConfig {
    /// Checks the limits the specification sets (the variable named in the error is `var`'s).
    pub(crate) fn validate(&self, var: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        if self.dimensions.len() > MAX_DIMENSIONS {
            return Err(ConfigError::invalid(
                &var("HIVELOG_METRICS_DIMENSIONS"),
                &self.dimensions.join(","),
                "a dimension set",
                &format!(
                    "at most {MAX_DIMENSIONS} comma-separated field names (CloudWatch's limit per dimension set; {} given)",
                    self.dimensions.len()
                ),
            ));
        }
        for (i, d) in self.dimensions.iter().enumerate() {
            let bad = if d.is_empty() || d.chars().count() > MAX_DIMENSION_NAME_CHARS {
                Some(format!("field names of 1 to {MAX_DIMENSION_NAME_CHARS} characters"))
            } else if self.dimensions[..i].contains(d) {
                Some(format!("each field name once ('{d}' repeats)"))
            } else {
                None
            };
            if let Some(expected) = bad {
                return Err(ConfigError::invalid(
                    &var("HIVELOG_METRICS_DIMENSIONS"),
                    &self.dimensions.join(","),
                    "a dimension set",
                    &expected,
                ));
            }
        }
        for (name, unit) in &self.units {
            if name.is_empty() || !UNITS.contains(unit) {
                return Err(ConfigError::invalid(
                    &var("HIVELOG_METRICS_UNITS"),
                    &format!("{name}={unit}"),
                    "a metric unit",
                    &units_form(),
                ));
            }
        }
        Ok(())
    }
}

/// The resolved EMF settings of a [`Format`].
#[derive(Debug)]
pub(crate) struct Metrics {
    namespace: String,
    dimensions: Vec<String>,
    units: Vec<(String, &'static str)>,
    high_resolution: bool,
    /// `metric.*` fields that were not numbers (see the module docs).
    skipped: AtomicU64,
    keys: AwsKeys,
}

/// The `_aws` block's keys, rendered once.
#[derive(Debug)]
struct AwsKeys {
    aws: Key,
    timestamp: Key,
    directives: Key,
    namespace: Key,
    dimensions: Key,
    metrics: Key,
    name: Key,
    unit: Key,
    resolution: Key,
}

impl Metrics {
    pub(crate) fn new(config: MetricsConfig, service: &str) -> Metrics {
        Metrics {
            namespace: config.namespace.unwrap_or_else(|| service.to_owned()),
            dimensions: config.dimensions,
            units: config.units,
            high_resolution: config.high_resolution,
            skipped: AtomicU64::new(0),
            keys: AwsKeys {
                aws: Key::new("_aws"),
                timestamp: Key::new("Timestamp"),
                directives: Key::new("CloudWatchMetrics"),
                namespace: Key::new("Namespace"),
                dimensions: Key::new("Dimensions"),
                metrics: Key::new("Metrics"),
                name: Key::new("Name"),
                unit: Key::new("Unit"),
                resolution: Key::new("StorageResolution"),
            },
        }
    }

    /// The unit of the metric `name` (prefix removed): the override, else its suffix's.
    fn unit(&self, name: &str) -> &'static str {
        if let Some((_, u)) = self.units.iter().find(|(n, _)| n == name) {
            return u;
        }
        SUFFIX_UNITS
            .iter()
            .find(|(suffix, _)| name.len() > suffix.len() && name.ends_with(suffix))
            .map_or("None", |(_, u)| u)
    }
}

/// `Unit` names, for error messages.
fn units_form() -> String {
    format!("comma-separated 'name=Unit' pairs, Unit one of {}", UNITS.join(", "))
}

/// Parses `HIVELOG_METRICS_UNITS` (`latency=Milliseconds,size=Bytes`).
pub(crate) fn parse_units(v: &str) -> Result<Vec<(String, &'static str)>, String> {
    let mut out = Vec::new();
    for pair in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let parsed = pair.split_once('=').and_then(|(n, u)| {
            let n = n.trim();
            let n = n.strip_prefix(PREFIX).unwrap_or(n);
            let unit = UNITS.iter().find(|x| **x == u.trim())?;
            (!n.is_empty()).then(|| (n.to_owned(), *unit))
        });
        match parsed {
            Some(p) => out.push(p),
            None => return Err(format!("{} ('{pair}' is not one)", units_form())),
        }
    }
    Ok(out)
}

/// Parses `HIVELOG_METRICS_DIMENSIONS` (field names, comma-separated; limits checked later).
pub(crate) fn parse_dimensions(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Parses `HIVELOG_METRICS_RESOLUTION`: whether metrics are high-resolution.
pub(crate) fn parse_resolution(v: &str) -> Result<bool, String> {
    match v {
        "1s" | "1" => Ok(true),
        "60s" | "60" | "1m" => Ok(false),
        _ => Err("1s (high resolution, StorageResolution 1) or 60s (standard)".to_owned()),
    }
}

/// Whether `f` is a numeric `metric.*` field's value CloudWatch can take.
#[inline]
fn finite_number(v: &Value) -> bool {
    match v {
        Value::I64(_) | Value::U64(_) => true,
        Value::F64(x) => x.is_finite(),
        _ => false,
    }
}

/// Whether `fields[i]`'s name was already given by an earlier field (only the first is written).
fn repeated(fields: &[Field], i: usize) -> bool {
    let name = fields[i].name;
    fields[..i]
        .iter()
        .any(|p| p.name == name && !matches!(p.value, Value::Source(_)))
}

impl Format {
    /// Whether `HIVELOG_METRICS=emf` is on.
    pub fn metrics_enabled(&self) -> bool {
        self.metrics.is_some()
    }

    /// Whether `r`'s line is an EMF document (metrics on, and at least one metric on it): what
    /// the CloudWatch sink marks its requests by.
    pub fn has_metrics(&self, r: &Record) -> bool {
        self.metrics.is_some() && self.has_metric(r)
    }

    /// `metric.*` fields seen by [`Format::metric_parts`] that could not be metrics (not a
    /// finite number, redacted, or without a usable name): kept as plain fields, counted here.
    pub fn metrics_skipped(&self) -> u64 {
        self.metrics
            .as_ref()
            .map_or(0, |m| m.skipped.load(Ordering::Relaxed))
    }

    /// Run once per event, before it is queued: counts its `metric.*` fields that cannot be
    /// metrics, and when it has more than [`MAX_METRICS_PER_DOCUMENT`] metrics returns the
    /// records to write instead of it (each with at most 100 of its metrics and all its other
    /// fields). Empty (no allocation) in the common case: write `r` itself.
    pub fn metric_parts(&self, r: &Record) -> Vec<Record> {
        let Some(m) = &self.metrics else {
            return Vec::new();
        };
        let own = r.fields.as_slice();
        let (mut metrics, mut skipped) = (0usize, 0u64);
        for (i, f) in own.iter().enumerate() {
            if !f.name.starts_with(PREFIX) || matches!(f.value, Value::Source(_)) || repeated(own, i)
            {
                continue;
            }
            if self.metric_key(r, f).is_some() {
                metrics += 1;
            } else {
                skipped += 1;
            }
        }
        if skipped > 0 {
            m.skipped.fetch_add(skipped, Ordering::Relaxed);
        }
        if metrics <= MAX_METRICS_PER_DOCUMENT {
            return Vec::new();
        }
        // Index of each metric field, in order; repeated `metric.*` names are never written, so
        // they go too (a part must not write one whose first occurrence went to another part).
        let mut is_metric = vec![false; own.len()];
        let mut drop_always = vec![false; own.len()];
        for (i, f) in own.iter().enumerate() {
            if f.name.starts_with(PREFIX) && !matches!(f.value, Value::Source(_)) {
                if repeated(own, i) {
                    drop_always[i] = true;
                } else if self.metric_key(r, f).is_some() {
                    is_metric[i] = true;
                }
            }
        }
        let metric_at: Vec<usize> = (0..own.len()).filter(|&i| is_metric[i]).collect();
        metric_at
            .chunks(MAX_METRICS_PER_DOCUMENT)
            .map(|chunk| {
                let (lo, hi) = (chunk[0], chunk[chunk.len() - 1]);
                let mut part = r.clone();
                let mut i = 0;
                part.fields.retain(|_| {
                    let keep = !drop_always[i] && (!is_metric[i] || (lo..=hi).contains(&i));
                    i += 1;
                    keep
                });
                part
            })
            .collect()
    }

    /// The root key a field's value is written under when it is a metric, `None` when it is not
    /// one (see the module docs). Only for the event's own fields.
    pub(super) fn metric_key(&self, r: &Record, f: &Field) -> Option<&'static str> {
        let full: &'static str = f.name;
        let name = full.strip_prefix(PREFIX)?;
        if name.is_empty() || !finite_number(&f.value) || self.is_redacted(full) {
            return None;
        }
        // `_aws` itself is never a metric's key: the block is.
        if name != "_aws" && !self.owned_by_hivelog(r, name) && !self.is_user_field(r, name) {
            return Some(name);
        }
        (!self.owned_by_hivelog(r, full)).then_some(full)
    }

    /// Whether the line has at least one metric (then it has an `_aws` block).
    pub(super) fn has_metric(&self, r: &Record) -> bool {
        r.fields
            .iter()
            .any(|f| f.name.starts_with(PREFIX) && self.metric_key(r, f).is_some())
    }

    /// Writes a metric field's member (`"latency_ms":12.5`) when `f` is one; false otherwise.
    #[inline]
    pub(super) fn emit_metric_member<E: Emit>(&self, r: &Record, f: &Field, e: &mut E) -> bool {
        if !f.name.starts_with(PREFIX) {
            return false;
        }
        let Some(key) = self.metric_key(r, f) else {
            return false;
        };
        e.key(key);
        match f.value {
            Value::I64(v) => e.i64(v),
            Value::U64(v) => e.u64(v),
            Value::F64(v) => e.f64(v),
            _ => e.null(),
        }
        true
    }

    /// Writes the `_aws` block when the event has at least one metric.
    pub(super) fn emit_aws<E: Emit>(&self, r: &Record, e: &mut E) {
        let Some(m) = &self.metrics else {
            return;
        };
        let own = r.fields.as_slice();
        let metric = |i: usize| -> Option<(&'static str, &'static str)> {
            let f = &own[i];
            if !f.name.starts_with(PREFIX) || repeated(own, i) {
                return None;
            }
            self.metric_key(r, f).map(|k| (k, &f.name[PREFIX.len()..]))
        };
        let Some(first) = (0..own.len()).find(|&i| metric(i).is_some()) else {
            return;
        };
        let k = &m.keys;
        e.key_static(&k.aws);
        e.begin_map();
        e.key_static(&k.timestamp);
        let (secs, nanos) = r.unix_time();
        e.u64(secs * 1000 + u64::from(nanos / 1_000_000));
        e.key_static(&k.directives);
        e.begin_array();
        e.begin_map();
        e.key_static(&k.namespace);
        e.str(&m.namespace);
        e.key_static(&k.dimensions);
        e.begin_array();
        e.begin_array();
        if r.target() == "hivelog" {
            if self.dimension_present(r, OWN_DIMENSION) {
                e.str(OWN_DIMENSION);
            }
        } else {
            for d in &m.dimensions {
                if self.dimension_present(r, d) {
                    e.str(d);
                }
            }
        }
        e.end_array();
        e.end_array();
        e.key_static(&k.metrics);
        e.begin_array();
        for (key, name) in (first..own.len()).filter_map(metric) {
            e.begin_map();
            e.key_static(&k.name);
            e.str(key);
            e.key_static(&k.unit);
            e.str_plain(m.unit(name));
            if m.high_resolution {
                e.key_static(&k.resolution);
                e.u64(1);
            }
            e.end_map();
        }
        e.end_array();
        e.end_map();
        e.end_array();
        e.end_map();
    }

    /// Whether the line has a string value at the root under `key` (a dimension must).
    fn dimension_present(&self, r: &Record, key: &str) -> bool {
        if !self.owned_by_hivelog(r, key) {
            // The value written under `key`: the event's own field, else the innermost span's.
            let own = r.fields.iter().find(|f| f.name == key);
            let found = own.or_else(|| {
                r.span.as_ref().and_then(|s| {
                    s.ancestry()
                        .find_map(|node| node.fields.iter().find(|f| f.name == key))
                })
            });
            return found
                .is_some_and(|f| matches!(f.value, Value::Str(_)) && !self.is_redacted(key));
        }
        self.extras.iter().any(|(k, x)| {
            k.as_str() == key
                && matches!(x, Extra::Str(_) | Extra::Json(serde_json::Value::String(_)))
        }) || self.basic.iter().any(|(k, a)| {
            k.as_str() == key
                && matches!(
                    a,
                    Attr::Level | Attr::Target | Attr::Service | Attr::Hostname | Attr::Const(_)
                )
        })
    }

    /// Whether a field of the event or of its spans is named `name`.
    pub(super) fn is_user_field(&self, r: &Record, name: &str) -> bool {
        r.fields.iter().any(|f| f.name == name)
            || r.span.as_ref().is_some_and(|s| {
                s.ancestry()
                    .any(|node| node.fields.iter().any(|f| f.name == name))
            })
    }
}
