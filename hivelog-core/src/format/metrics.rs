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
//!   of the event or its spans, `_aws`, or a `fields.…` name where renamed fields go), the
//!   member and the metric keep the full name `metric.<name>`, so nothing is overwritten and
//!   the metric still points at its own value. hivelog's own keys (extras, `HIVELOG_FIELDS`
//!   names) may not start with `metric.` while metrics are on (a configuration error).
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
                Some(format!(
                    "field names of 1 to {MAX_DIMENSION_NAME_CHARS} characters"
                ))
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
    json: AwsJson,
    /// [`name_bit`]s of every key hivelog may write itself (basic fields, extras, trace keys,
    /// `truncated`, `_aws`): with the line's field names, see [`Found::taken`].
    owned_names: u64,
    /// [`name_bit`] of each configured dimension, and of [`OWN_DIMENSION`].
    dimension_bits: Vec<u64>,
    own_dimension_bit: u64,
}

/// The `_aws` block's constant JSON text, rendered once (the JSON output copies it).
#[derive(Debug)]
struct AwsJson {
    /// `,"CloudWatchMetrics":[{"Namespace":"…","Dimensions":[[`
    directive: Vec<u8>,
    /// Each configured dimension as a JSON string.
    dimensions: Vec<Vec<u8>>,
    /// [`OWN_DIMENSION`] as a JSON string.
    own_dimension: Vec<u8>,
    /// Per entry of [`UNITS`]: `,"Unit":"…"` (`,"StorageResolution":1`) `}` and the next
    /// metric's [`NEXT_METRIC`] (cut after the last one): one copy per metric besides its name.
    unit_tails: Vec<Vec<u8>>,
}

/// How many [`Found`] entries live inline; a line with more metrics (rare) spills to a `Vec`.
const INLINE_METRICS: usize = 8;

/// The metrics one line has written so far. For the JSON output each entry is where its
/// escaped key already is in the output (offset, length) and its unit (a [`UNITS`] position),
/// so the `_aws` block copies rather than re-escapes; for other formats it is the field's index
/// in the event's own fields, times two, plus one when the member kept its full name.
///
/// Made for every line that has `metric.*` fields, so it costs no allocation and no large
/// zeroing in the common case of a few metrics.
#[derive(Debug)]
pub(super) struct Found {
    at: [u64; INLINE_METRICS],
    more: Vec<u64>,
    len: usize,
    /// [`name_bit`]s of every key the line may hold besides its metric members (hivelog's
    /// own and the names of the event's and its spans' fields): a metric name or dimension
    /// whose bit is clear is none of them, and needs no name comparisons.
    taken: u64,
}

impl Found {
    /// Nothing found yet on `r`'s line, with the names it holds noted (see [`Found::taken`]).
    #[inline]
    pub(super) fn new(m: &Metrics, r: &Record) -> Found {
        let mut taken = m.owned_names;
        for f in r.fields.as_slice() {
            taken |= name_bit(f.name);
        }
        if let Some(span) = &r.span {
            for node in span.ancestry() {
                for f in node.fields.as_slice() {
                    taken |= name_bit(f.name);
                }
            }
        }
        Found {
            at: [0; INLINE_METRICS],
            more: Vec::new(),
            len: 0,
            taken,
        }
    }

    /// Notes a metric; past 100 (a record that did not go through `metric_parts`) only the
    /// first 100 are declared.
    #[inline]
    fn push(&mut self, entry: u64) {
        if self.len < INLINE_METRICS {
            self.at[self.len] = entry;
        } else if self.len < MAX_METRICS_PER_DOCUMENT {
            self.more.push(entry);
        } else {
            return;
        }
        self.len += 1;
    }

    /// The entries, in order.
    fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.at[..self.len.min(INLINE_METRICS)]
            .iter()
            .chain(&self.more)
            .copied()
    }

    /// Whether `name` may be a key of the line other than a metric member (false: surely not).
    #[inline]
    fn may_be_taken(&self, name: &str) -> bool {
        self.taken & name_bit(name) != 0
    }
}

/// One bit of a 64-bit set of names, from a name's length and first and last bytes: equal
/// names have equal bits, so a name whose bit is missing from a set is not in it (a few
/// instructions, where comparing with each name costs tens).
#[inline]
fn name_bit(name: &str) -> u64 {
    let b = name.as_bytes();
    match (b.first(), b.last()) {
        (Some(&first), Some(&last)) => {
            let h = (first as usize).wrapping_mul(5) ^ (last as usize).wrapping_mul(3) ^ b.len();
            1u64 << (h & 63)
        }
        _ => 1,
    }
}

/// Whether a field name has the metric prefix (a first-byte test first: most names fail it).
#[inline]
fn is_metric_name(name: &str) -> bool {
    name.len() > PREFIX.len() && name.as_bytes()[0] == b'm' && name.starts_with(PREFIX)
}

/// Whether any of `fields` is named `metric.…`: the one test a line without metrics pays.
#[inline]
pub(super) fn any_metric_name(fields: &[Field]) -> bool {
    fields.iter().any(|f| is_metric_name(f.name))
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
    /// The settings of `config`; `owned` are the keys hivelog writes itself (besides `_aws`
    /// and `truncated`), for the collision filter of [`Found`].
    pub(crate) fn new<'a>(
        config: MetricsConfig,
        service: &str,
        owned: impl Iterator<Item = &'a str>,
    ) -> Metrics {
        let namespace = config.namespace.unwrap_or_else(|| service.to_owned());
        let quoted = |s: &str| {
            let mut v = Vec::new();
            super::emit::write_json_str(&mut v, s);
            v
        };
        let mut directive = br#","CloudWatchMetrics":[{"Namespace":"#.to_vec();
        directive.extend(quoted(&namespace));
        directive.extend_from_slice(br#","Dimensions":[["#);
        let json = AwsJson {
            directive,
            dimensions: config.dimensions.iter().map(|d| quoted(d)).collect(),
            own_dimension: quoted(OWN_DIMENSION),
            unit_tails: UNITS
                .iter()
                .map(|u| {
                    let mut t = br#","Unit":"#.to_vec();
                    t.extend(quoted(u));
                    if config.high_resolution {
                        t.extend_from_slice(br#","StorageResolution":1"#);
                    }
                    t.push(b'}');
                    t.extend_from_slice(NEXT_METRIC);
                    t
                })
                .collect(),
        };
        Metrics {
            json,
            owned_names: owned
                .chain(["truncated", "_aws"])
                .fold(0, |set, k| set | name_bit(k)),
            dimension_bits: config.dimensions.iter().map(|d| name_bit(d)).collect(),
            own_dimension_bit: name_bit(OWN_DIMENSION),
            namespace,
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
        UNITS[self.unit_index(name)]
    }

    /// [`Metrics::unit`]'s position in [`UNITS`] (no string search on the common path).
    #[inline]
    fn unit_index(&self, name: &str) -> usize {
        if !self.units.is_empty() {
            if let Some((_, u)) = self.units.iter().find(|(n, _)| n == name) {
                return UNITS.iter().position(|x| x == u).unwrap_or(NONE);
            }
        }
        suffix_unit(name.as_bytes())
    }
}

/// The `_aws` block's JSON up to its timestamp.
const AWS_HEAD: &[u8] = br#""_aws":{"Timestamp":"#;

/// The JSON between the dimension set and the first metric's name.
const METRICS_HEAD: &[u8] = br#"]],"Metrics":[{"Name":"#;

/// The JSON between one metric definition and the next one's name.
const NEXT_METRIC: &[u8] = br#",{"Name":"#;

/// Positions in [`UNITS`] of the suffix units and `None`.
const SECONDS: usize = 0;
const MICROSECONDS: usize = 1;
const MILLISECONDS: usize = 2;
const BYTES: usize = 3;
const PERCENT: usize = 13;
const COUNT: usize = 14;
const NONE: usize = 26;

/// [`SUFFIX_UNITS`] as literal comparisons (each a few instructions), as a [`UNITS`] position.
#[inline]
fn suffix_unit(n: &[u8]) -> usize {
    let ends = |s: &[u8]| n.len() > s.len() && n.ends_with(s);
    match n.last() {
        Some(b's') if ends(b"_ms") => MILLISECONDS,
        Some(b's') if ends(b"_us") => MICROSECONDS,
        Some(b's') if ends(b"_s") => SECONDS,
        Some(b's') if ends(b"_bytes") => BYTES,
        Some(b't') if ends(b"_pct") => PERCENT,
        Some(b't') if ends(b"_count") => COUNT,
        _ => NONE,
    }
}

/// `Unit` names, for error messages.
fn units_form() -> String {
    format!(
        "comma-separated 'name=Unit' pairs, Unit one of {}",
        UNITS.join(", ")
    )
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

    /// An upper bound of the bytes the `_aws` block adds to `r`'s line in JSON or msgpack (for
    /// sinks that size records without encoding them, as [`Format::trace_bound`] does); 0 on a
    /// line without metrics.
    pub fn metrics_bound(&self, r: &Record) -> usize {
        let Some(m) = &self.metrics else {
            return 0;
        };
        if !self.has_metric(r) {
            return 0;
        }
        // Escaping can make a string 6 times longer (`\u00XX`); keys and punctuation ~110 bytes.
        let string = |s: &str| 6 * s.len() + 8;
        let dimensions: usize =
            m.dimensions.iter().map(|d| string(d)).sum::<usize>() + string(OWN_DIMENSION);
        let metrics: usize = r
            .fields
            .iter()
            .filter(|f| self.is_metric(f))
            .map(|f| string(f.name) + 64)
            .sum();
        128 + string(&m.namespace) + dimensions + metrics
    }

    /// `metric.*` fields seen by [`Format::metric_parts`] that could not be metrics (not a
    /// finite number, redacted, or `metric.` alone): kept as plain fields, counted here.
    pub fn metrics_skipped(&self) -> u64 {
        self.metrics
            .as_ref()
            .map_or(0, |m| m.skipped.load(Ordering::Relaxed))
    }

    /// Run once per event, before it is queued: counts its `metric.*` fields that cannot be
    /// metrics, and when it has more than [`MAX_METRICS_PER_DOCUMENT`] metrics returns the
    /// records to write instead of it (each with at most 100 of its metrics and all its other
    /// fields). Empty (no allocation) in the common case: write `r` itself.
    #[inline]
    pub fn metric_parts(&self, r: &Record) -> Vec<Record> {
        let Some(m) = &self.metrics else {
            return Vec::new();
        };
        // One pass decides the common case: every `metric.*` field a finite number, nothing
        // redacted, at most 100 of them (counting a repeated name twice only errs towards
        // the exact count below).
        let (mut named, mut numbers) = (0usize, 0usize);
        for f in r.fields.as_slice() {
            if is_metric_name(f.name) {
                named += 1;
                numbers += usize::from(finite_number(&f.value));
            }
        }
        if named == 0
            || (named == numbers && named <= MAX_METRICS_PER_DOCUMENT && self.redact.is_empty())
        {
            return Vec::new();
        }
        self.count_and_split(m, r)
    }

    /// [`Format::metric_parts`] for a record with `metric.*` fields that are not all plain
    /// metrics, or too many.
    #[cold]
    #[inline(never)]
    fn count_and_split(&self, m: &Metrics, r: &Record) -> Vec<Record> {
        let own = r.fields.as_slice();
        let (mut metrics, mut skipped) = (0usize, 0u64);
        for (i, f) in own.iter().enumerate() {
            if !is_metric_name(f.name) || matches!(f.value, Value::Source(_)) {
                continue;
            }
            // A repeated name is written once, with its first value: count that one only
            // (the metric count is exact below whenever it matters).
            if self.is_metric(f) {
                metrics += 1;
            } else if !repeated(own, i) {
                skipped += 1;
            }
        }
        if skipped > 0 {
            m.skipped.fetch_add(skipped, Ordering::Relaxed);
        }
        if metrics <= MAX_METRICS_PER_DOCUMENT {
            return Vec::new();
        }
        self.split(r)
    }

    /// The parts of a record with more than 100 metrics (see [`Format::metric_parts`]).
    #[cold]
    #[inline(never)]
    fn split(&self, r: &Record) -> Vec<Record> {
        let own = r.fields.as_slice();
        let exact = (0..own.len())
            .filter(|&i| self.is_metric(&own[i]) && !repeated(own, i))
            .count();
        if exact <= MAX_METRICS_PER_DOCUMENT {
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
                } else if self.is_metric(f) {
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

    /// Whether the own field `f` is a metric: `metric.<name>` with a name, a finite number,
    /// not redacted (see the module docs).
    #[inline]
    fn is_metric(&self, f: &Field) -> bool {
        is_metric_name(f.name) && finite_number(&f.value) && !self.is_redacted(f.name)
    }

    /// The root key the metric field `f` (`metric.<name>`, a metric) is written under on the
    /// line `found` is of: `<name>`, or its full name when `<name>` is already a key of the
    /// line.
    #[inline]
    fn metric_key(&self, r: &Record, f: &Field, found: &Found) -> &'static str {
        let full: &'static str = f.name;
        let name = &full[PREFIX.len()..];
        // The full name cannot be taken: hivelog's own keys never start with `metric.`
        // (checked at configuration).
        let taken = if found.may_be_taken(name) {
            self.key_taken(r, name)
        } else {
            name.starts_with("fields.")
        };
        if taken {
            full
        } else {
            name
        }
    }

    /// Whether a metric may not be written under `name` on `r`'s line: a key of the line
    /// (hivelog's own or a field of the event or its spans), `_aws` (the block's), or a
    /// `fields.…` name (where renamed user fields go).
    #[inline(never)]
    fn key_taken(&self, r: &Record, name: &str) -> bool {
        name == "_aws"
            || name.starts_with("fields.")
            || self.owned_by_hivelog(r, name)
            || self.is_user_field(r, name)
    }

    /// Whether the line has at least one metric (then it has an `_aws` block).
    pub(super) fn has_metric(&self, r: &Record) -> bool {
        r.fields.iter().any(|f| self.is_metric(f))
    }

    /// Writes the own field `fields[i]`'s member (`"latency_ms":12.5`) when it is a metric, and
    /// notes it in `found`; false when it is not one.
    #[inline]
    pub(super) fn emit_metric_member<E: Emit>(
        &self,
        r: &Record,
        i: usize,
        f: &Field,
        found: &mut Found,
        e: &mut E,
    ) -> bool {
        if !self.is_metric(f) {
            return false;
        }
        let key = self.metric_key(r, f, found);
        if let Some(out) = e.json_member() {
            let start = out.len();
            super::emit::write_json_str(out, key);
            let len = out.len() - start;
            out.push(b':');
            match f.value {
                Value::I64(v) => out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes()),
                Value::U64(v) => out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes()),
                Value::F64(v) => {
                    out.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes())
                }
                _ => out.extend_from_slice(b"null"),
            }
            let unit = self
                .metrics
                .as_ref()
                .map_or(NONE, |m| m.unit_index(&f.name[PREFIX.len()..]));
            found.push((start as u64) << 32 | (len.min(0xff_ffff) as u64) << 8 | unit as u64);
            return true;
        }
        e.key(key);
        match f.value {
            Value::I64(v) => e.i64(v),
            Value::U64(v) => e.u64(v),
            Value::F64(v) => e.f64(v),
            _ => e.null(),
        }
        found.push((i as u64) << 1 | u64::from(key.len() == f.name.len()));
        true
    }

    /// Writes the `_aws` block for the metrics `found` on the line (nothing when none).
    pub(super) fn emit_aws<E: Emit>(&self, r: &Record, found: &Found, e: &mut E) {
        let Some(m) = &self.metrics else {
            return;
        };
        if found.len == 0 {
            return;
        }
        let (secs, nanos) = r.unix_time();
        let timestamp = secs * 1000 + u64::from(nanos / 1_000_000);
        let own_line = r.target() == "hivelog";
        if let Some(out) = e.json_member() {
            let j = &m.json;
            out.extend_from_slice(AWS_HEAD);
            out.extend_from_slice(itoa::Buffer::new().format(timestamp).as_bytes());
            out.extend_from_slice(&j.directive);
            let mut first = true;
            let mut dimension = |out: &mut Vec<u8>, json: &[u8]| {
                if !std::mem::take(&mut first) {
                    out.push(b',');
                }
                out.extend_from_slice(json);
            };
            if own_line {
                if self.dimension_present(r, found, OWN_DIMENSION, m.own_dimension_bit) {
                    dimension(out, &j.own_dimension);
                }
            } else {
                for ((d, json), &bit) in m
                    .dimensions
                    .iter()
                    .zip(&j.dimensions)
                    .zip(&m.dimension_bits)
                {
                    if self.dimension_present(r, found, d, bit) {
                        dimension(out, json);
                    }
                }
            }
            out.extend_from_slice(METRICS_HEAD);
            for at in found.iter() {
                let start = (at >> 32) as usize;
                out.extend_from_within(start..start + ((at >> 8) & 0xff_ffff) as usize);
                out.extend_from_slice(&j.unit_tails[(at & 0xff) as usize]);
            }
            out.truncate(out.len() - NEXT_METRIC.len());
            out.extend_from_slice(b"]}]}");
            return;
        }
        let own = r.fields.as_slice();
        // (key, name without the prefix) of each metric.
        let metrics = found.iter().map(|at| {
            let name = own[(at >> 1) as usize].name;
            let short = &name[PREFIX.len()..];
            (if at & 1 == 1 { name } else { short }, short)
        });
        let k = &m.keys;
        e.key_static(&k.aws);
        e.begin_map();
        e.key_static(&k.timestamp);
        e.u64(timestamp);
        e.key_static(&k.directives);
        e.begin_array();
        e.begin_map();
        e.key_static(&k.namespace);
        e.str(&m.namespace);
        e.key_static(&k.dimensions);
        e.begin_array();
        e.begin_array();
        if own_line {
            if self.dimension_present(r, found, OWN_DIMENSION, m.own_dimension_bit) {
                e.str(OWN_DIMENSION);
            }
        } else {
            for (d, &bit) in m.dimensions.iter().zip(&m.dimension_bits) {
                if self.dimension_present(r, found, d, bit) {
                    e.str(d);
                }
            }
        }
        e.end_array();
        e.end_array();
        e.key_static(&k.metrics);
        e.begin_array();
        for (key, short) in metrics {
            e.begin_map();
            e.key_static(&k.name);
            e.str(key);
            e.key_static(&k.unit);
            e.str_plain(m.unit(short));
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

    /// Whether the line has a string value at the root under `key` (a dimension must);
    /// `bit` is its [`name_bit`].
    #[inline]
    fn dimension_present(&self, r: &Record, found: &Found, key: &str, bit: u64) -> bool {
        found.taken & bit != 0 && self.dimension_lookup(r, key)
    }

    /// [`Format::dimension_present`] for a name the line may have.
    #[inline(never)]
    fn dimension_lookup(&self, r: &Record, key: &str) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Fields, SpanNode, Str};
    use std::sync::Arc;
    use tracing::Level;

    #[test]
    fn the_name_filter_never_hides_a_key_of_the_line() {
        let format = Format::builder()
            .service("web")
            .extra("environment", "prod")
            .metrics(MetricsConfig {
                dimensions: vec![
                    "route".into(),
                    "user".into(),
                    "level".into(),
                    "absent".into(),
                ],
                ..MetricsConfig::default()
            })
            .unwrap()
            .build();
        // hivelog's keys, the event's and its span's fields, `_aws`, `fields.…`, free names.
        let names = [
            "timestamp",
            "level",
            "target",
            "message",
            "environment",
            "truncated",
            "trace_id",
            "span_id",
            "_aws",
            "fields.user",
            "user",
            "route",
            "latency_ms",
            "body_bytes",
            "retries_count",
            "a",
            "b_s",
            "queue_depth",
            "errors_count",
            "cpu_pct",
            "x",
        ];
        let mut span_fields = Fields::with_limit(1024, 1);
        let route = span_fields.push_str("/a");
        span_fields.push("route", Value::Str(route));
        let mut r = Record::new(Level::INFO, Str::Static("web"), 1024, names.len() + 1);
        r.span = Some(Arc::new(SpanNode::new("request", span_fields, None)));
        let user = r.fields.push_str("u");
        r.fields.push("user", Value::Str(user));
        for n in names {
            let full: &'static str = Box::leak(format!("{PREFIX}{n}").into_boxed_str());
            r.fields.push(full, Value::F64(1.0));
        }
        let m = format.metrics.as_ref().unwrap();
        let found = Found::new(m, &r);
        let mut hidden = 0;
        for f in r.fields.as_slice().iter().filter(|f| format.is_metric(f)) {
            let name = &f.name[PREFIX.len()..];
            let expected = if format.key_taken(&r, name) {
                f.name
            } else {
                name
            };
            assert_eq!(format.metric_key(&r, f, &found), expected, "{}", f.name);
            hidden += usize::from(!found.may_be_taken(name));
        }
        assert!(
            hidden > 0,
            "the filter answers some names without comparing"
        );
        for (d, &bit) in m.dimensions.iter().zip(&m.dimension_bits) {
            assert_eq!(
                format.dimension_present(&r, &found, d, bit),
                format.dimension_lookup(&r, d),
                "{d}"
            );
        }
    }

    #[test]
    fn the_fast_suffix_match_agrees_with_the_documented_table() {
        assert_eq!(
            [
                SECONDS,
                MICROSECONDS,
                MILLISECONDS,
                BYTES,
                PERCENT,
                COUNT,
                NONE
            ]
            .map(|i| UNITS[i]),
            [
                "Seconds",
                "Microseconds",
                "Milliseconds",
                "Bytes",
                "Percent",
                "Count",
                "None"
            ]
        );
        for name in [
            "a_ms", "a_us", "a_s", "a_bytes", "a_pct", "a_count", "a", "_ms", "ms", "a_x",
        ] {
            let table = SUFFIX_UNITS
                .iter()
                .find(|(s, _)| name.len() > s.len() && name.ends_with(s))
                .map_or("None", |(_, u)| u);
            assert_eq!(UNITS[suffix_unit(name.as_bytes())], table, "{name}");
        }
    }
}
