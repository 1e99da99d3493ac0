//! Building a [`Format`] from code defaults, then `HIVELOG_*` overrides.

use super::metrics::{self, Metrics, MetricsConfig, MAX_NAMESPACE_CHARS};
use super::{
    Attr, Extra, Format, Key, Schema, TimestampFormat, TraceFormat, DEFAULT_MAX_EVENT_BYTES,
    ECS_VERSION,
};
use crate::env::{ConfigError, Env};
use crate::var::Var;

/// Code defaults for the format; [`FormatBuilder::apply_env`] lets variables override them.
#[derive(Clone, Debug, Default)]
pub struct FormatBuilder {
    fields: Option<Vec<(String, Attr)>>,
    extras: Vec<(String, Extra)>,
    schema: Schema,
    timestamp: TimestampFormat,
    redact: Vec<String>,
    service: Option<String>,
    max_event_bytes: Option<usize>,
    trace_format: TraceFormat,
    metrics: Option<MetricsConfig>,
}

/// The variables this builder reads.
pub const FORMAT_VARS: &[Var] = &[
    Var::new(
        "HIVELOG_SERVICE",
        "(the executable's name)",
        "service name (service attr, {service} in templates)",
    ),
    Var::new(
        "HIVELOG_FIELDS",
        "timestamp,level,target,message",
        "basic fields, out=attr pairs",
    ),
    Var::new(
        "HIVELOG_EXTRA",
        "none",
        "static fields: k=v,k2=v2 or a JSON object",
    ),
    Var::new(
        "HIVELOG_SCHEMA",
        "default",
        "default or ecs (Elastic Common Schema)",
    ),
    Var::new(
        "HIVELOG_TIMESTAMP",
        "rfc3339ms",
        "rfc3339ms, rfc3339ns, epoch_ms or epoch_ns",
    ),
    Var::new(
        "HIVELOG_REDACT",
        "none",
        "field names printed as \"[redacted]\"",
    ),
    Var::new("HIVELOG_MAX_EVENT_BYTES", "1MiB", "text kept per event"),
    Var::new(
        "HIVELOG_TRACE_FORMAT",
        "w3c",
        "trace id form: w3c (32 hex) or xray (1-xxxxxxxx-…)",
    ),
    Var::new(
        "HIVELOG_METRICS",
        "off",
        "emf: metric.<name> fields become CloudWatch embedded-metric-format metrics of their line",
    ),
    Var::new(
        "HIVELOG_METRICS_NAMESPACE",
        "(HIVELOG_SERVICE)",
        "CloudWatch namespace of the metrics, at most 255 characters",
    ),
    Var::new(
        "HIVELOG_METRICS_DIMENSIONS",
        "none",
        "field names (route,status) forming the metrics' dimension set, at most 30",
    ),
    Var::new(
        "HIVELOG_METRICS_UNITS",
        "(from the name's suffix)",
        "name=Unit pairs over the suffix units (_ms _us _s _bytes _pct _count)",
    ),
    Var::new(
        "HIVELOG_METRICS_RESOLUTION",
        "60s",
        "1s: high-resolution metrics (StorageResolution 1); 60s: standard",
    ),
];

const FIELDS_FORM: &str = "comma-separated 'out=attr' pairs or attrs, attrs being timestamp, level, target, message, module, file, line, span, spans, thread, thread_id, pid, hostname, service, trace_id, span_id";

impl FormatBuilder {
    /// Sets the basic fields from `HIVELOG_FIELDS` syntax (`timestamp,loggerName=target`).
    pub fn fields(mut self, spec: &str) -> Result<Self, ConfigError> {
        self.fields = Some(parse_fields("fields", spec)?);
        Ok(self)
    }

    /// Adds a static extra field.
    pub fn extra(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        self.extras.retain(|(k, _)| *k != key);
        self.extras.push((key, Extra::Str(value.into())));
        self
    }

    /// Sets the schema.
    pub fn schema(mut self, schema: Schema) -> Self {
        self.schema = schema;
        self
    }

    /// Sets the timestamp format.
    pub fn timestamp(mut self, ts: TimestampFormat) -> Self {
        self.timestamp = ts;
        self
    }

    /// Adds field names whose values are written as `"[redacted]"`.
    pub fn redact<I: IntoIterator<Item = S>, S: Into<String>>(mut self, names: I) -> Self {
        self.redact.extend(names.into_iter().map(Into::into));
        self
    }

    /// Sets the service name (default: the executable's name).
    pub fn service(mut self, name: impl Into<String>) -> Self {
        self.service = Some(name.into());
        self
    }

    /// Sets the cap on one event's text.
    pub fn max_event_bytes(mut self, n: usize) -> Self {
        self.max_event_bytes = Some(n);
        self
    }

    /// Sets how trace ids are written (default [`TraceFormat::W3c`]).
    pub fn trace_format(mut self, f: TraceFormat) -> Self {
        self.trace_format = f;
        self
    }

    /// Turns on CloudWatch embedded-metric-format metrics (`HIVELOG_METRICS=emf`), with these
    /// settings; the `HIVELOG_METRICS_*` variables override them.
    pub fn metrics(mut self, config: MetricsConfig) -> Result<Self, ConfigError> {
        config.validate(&|v: &str| v.to_owned())?;
        self.metrics = Some(config);
        Ok(self)
    }

    /// Applies the `HIVELOG_*` format variables over the code defaults.
    pub fn apply_env(mut self, env: &Env) -> Result<Self, ConfigError> {
        if let Some(v) = env.get("HIVELOG_FIELDS") {
            self.fields = Some(parse_fields("HIVELOG_FIELDS", v)?);
        }
        if let Some(v) = env.get("HIVELOG_EXTRA") {
            for (k, x) in parse_extras(v)? {
                self.extras.retain(|(old, _)| *old != k);
                self.extras.push((k, x));
            }
        }
        if let Some(s) = env.choice(
            "HIVELOG_SCHEMA",
            "a schema",
            &[("default", Schema::Default), ("ecs", Schema::Ecs)],
        )? {
            self.schema = s;
        }
        if let Some(t) = env.choice(
            "HIVELOG_TIMESTAMP",
            "a timestamp format",
            TimestampFormat::CHOICES,
        )? {
            self.timestamp = t;
        }
        if let Some(f) = env.choice(
            "HIVELOG_TRACE_FORMAT",
            "a trace id format",
            TraceFormat::CHOICES,
        )? {
            self.trace_format = f;
        }
        if let Some(v) = env.get("HIVELOG_REDACT") {
            self.redact.extend(
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from),
            );
        }
        if let Some(v) = env.get("HIVELOG_SERVICE") {
            self.service = Some(v.to_owned());
        }
        if let Some(n) = env.parse("HIVELOG_MAX_EVENT_BYTES", "an event size", |v| {
            crate::env::parse_bytes(v)
                .filter(|n| (1024..=64 * 1024 * 1024).contains(n))
                .ok_or_else(|| "a size from 1KiB to 64MiB (1MiB)".to_owned())
        })? {
            self.max_event_bytes = Some(n as usize);
        }
        self.apply_metrics_env(env)?;
        if self.schema == Schema::Ecs && env.get("HIVELOG_FIELDS").is_some() {
            return Err(ConfigError::conflict(
                "HIVELOG_FIELDS",
                "cannot be combined with HIVELOG_SCHEMA=ecs, which fixes the basic fields; unset one of them",
            ));
        }
        if self.schema == Schema::Ecs
            && !matches!(
                self.timestamp,
                TimestampFormat::Rfc3339Ms | TimestampFormat::Rfc3339Ns
            )
        {
            return Err(ConfigError::conflict(
                "HIVELOG_TIMESTAMP",
                "ECS's @timestamp is an RFC 3339 date; use rfc3339ms or rfc3339ns with HIVELOG_SCHEMA=ecs",
            ));
        }
        Ok(self)
    }

    /// `HIVELOG_METRICS` and its settings, checked against CloudWatch's limits.
    fn apply_metrics_env(&mut self, env: &Env) -> Result<(), ConfigError> {
        if let Some(on) = env.choice(
            "HIVELOG_METRICS",
            "a metrics mode",
            &[("off", false), ("emf", true)],
        )? {
            self.metrics = on.then(|| self.metrics.take().unwrap_or_default());
        }
        let namespace = env.get("HIVELOG_METRICS_NAMESPACE").map(str::to_owned);
        let dimensions = env.get("HIVELOG_METRICS_DIMENSIONS");
        let units = env.parse("HIVELOG_METRICS_UNITS", "a list of metric units", |v| {
            metrics::parse_units(v)
        })?;
        let resolution = env.parse(
            "HIVELOG_METRICS_RESOLUTION",
            "a metric resolution",
            metrics::parse_resolution,
        )?;
        let service = self.service_name();
        let Some(m) = self.metrics.as_mut() else {
            return Ok(());
        };
        if namespace.is_some() {
            m.namespace = namespace;
        }
        if let Some(d) = dimensions {
            m.dimensions = metrics::parse_dimensions(d);
        }
        if let Some(u) = units {
            m.units.retain(|(n, _)| !u.iter().any(|(x, _)| x == n));
            m.units.extend(u);
        }
        if let Some(high) = resolution {
            m.high_resolution = high;
        }
        m.validate(&|v: &str| v.to_owned())?;
        // A metric whose short name is taken keeps its full name: hivelog's keys must not be one.
        let taken = |k: &str| k.starts_with(metrics::PREFIX);
        if let Some((k, _)) = self.extras.iter().find(|(k, _)| taken(k)) {
            return Err(ConfigError::conflict(
                "HIVELOG_EXTRA",
                format!("the key '{k}' starts with 'metric.', which HIVELOG_METRICS=emf reserves for metric fields; rename it"),
            ));
        }
        if let Some((k, _)) = self.fields.iter().flatten().find(|(k, _)| taken(k)) {
            return Err(ConfigError::conflict(
                "HIVELOG_FIELDS",
                format!("the output name '{k}' starts with 'metric.', which HIVELOG_METRICS=emf reserves for metric fields; rename it"),
            ));
        }
        let (var, ns) = match &m.namespace {
            Some(ns) => ("HIVELOG_METRICS_NAMESPACE", ns.as_str()),
            None => ("HIVELOG_SERVICE", service.as_str()),
        };
        if ns.trim().is_empty() || ns.chars().count() > MAX_NAMESPACE_CHARS {
            return Err(ConfigError::invalid(
                var,
                ns,
                "a CloudWatch metrics namespace",
                &format!(
                    "1 to {MAX_NAMESPACE_CHARS} characters, not all spaces ({} given); set HIVELOG_METRICS_NAMESPACE",
                    ns.chars().count()
                ),
            ));
        }
        Ok(())
    }

    /// The service name this builder will use.
    pub fn service_name(&self) -> String {
        self.service.clone().unwrap_or_else(default_service)
    }

    /// Resolves the format.
    pub fn build(self) -> Format {
        let service = self.service_name();
        let basic: Vec<(Key, Attr)> = match self.schema {
            Schema::Ecs => [
                ("@timestamp", Attr::Timestamp),
                ("log.level", Attr::Level),
                ("message", Attr::Message),
                ("ecs.version", Attr::Const(ECS_VERSION)),
                ("log.logger", Attr::Target),
                ("log.origin.file.name", Attr::File),
                ("log.origin.file.line", Attr::Line),
                ("log.origin.function", Attr::Span),
                ("service.name", Attr::Service),
                ("process.pid", Attr::Pid),
                ("host.hostname", Attr::Hostname),
                ("trace.id", Attr::TraceId),
                ("span.id", Attr::SpanId),
            ]
            .iter()
            .map(|(k, a)| (Key::new(k), *a))
            .collect(),
            Schema::Default => self
                .fields
                .unwrap_or_else(|| {
                    parse_fields("", "timestamp,level,target,message").expect("valid default")
                })
                .iter()
                .map(|(k, a)| (Key::new(k), *a))
                .collect(),
        };
        let trace_keys = [("trace_id", Attr::TraceId), ("span_id", Attr::SpanId)]
            .into_iter()
            // Placed by HIVELOG_FIELDS, or the name is an extra's: not written a second time.
            .filter(|(k, a)| {
                !basic.iter().any(|(_, b)| b == a) && !self.extras.iter().any(|(x, _)| x == k)
            })
            .map(|(k, a)| (Key::new(k), a))
            .collect::<Vec<_>>();
        let trace_key_starts = first_bytes(trace_keys.iter().map(|(k, _)| k.as_str()));
        let owned_key_starts = trace_key_starts
            | first_bytes(
                basic
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .chain(self.extras.iter().map(|(k, _)| k.as_str()))
                    .chain(["truncated"])
                    .chain(self.metrics.is_some().then_some("_aws")),
            );
        let metrics = self.metrics.map(|m| {
            let owned = basic
                .iter()
                .chain(&trace_keys)
                .map(|(k, _)| k.as_str())
                .chain(self.extras.iter().map(|(k, _)| k.as_str()));
            Metrics::new(m, &service, owned)
        });
        Format {
            metrics,
            trace_key_starts,
            owned_key_starts,
            trace_format: self.trace_format,
            trace_keys,
            basic,
            extras: self
                .extras
                .iter()
                .map(|(k, v)| (Key::new(k), v.clone()))
                .collect(),
            schema: self.schema,
            timestamp: self.timestamp,
            redact: self.redact,
            service,
            hostname: hostname(),
            pid: std::process::id(),
            max_event_bytes: self.max_event_bytes.unwrap_or(DEFAULT_MAX_EVENT_BYTES),
            error_keys: [
                Key::new("error.type"),
                Key::new("error.message"),
                Key::new("error.stack_trace"),
            ],
        }
    }
}

fn parse_fields(var: &str, spec: &str) -> Result<Vec<(String, Attr)>, ConfigError> {
    let mut out: Vec<(String, Attr)> = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, attr) = item.split_once('=').unwrap_or((item, item));
        let (name, attr) = (name.trim(), attr.trim());
        let attr = Attr::NAMES
            .iter()
            .find(|(n, _)| *n == attr)
            .map(|(_, a)| *a)
            .ok_or_else(|| {
                ConfigError::invalid(
                    var,
                    spec,
                    "a field mapping",
                    &format!("{FIELDS_FORM} ('{attr}' is not an attr)"),
                )
            })?;
        if name.is_empty() {
            return Err(ConfigError::invalid(
                var,
                spec,
                "a field mapping",
                FIELDS_FORM,
            ));
        }
        if out.iter().any(|(n, _)| n == name) {
            return Err(ConfigError::invalid(
                var,
                spec,
                "a field mapping",
                &format!("{FIELDS_FORM}, each output name once ('{name}' repeats)"),
            ));
        }
        out.push((name.to_owned(), attr));
    }
    if out.is_empty() {
        return Err(ConfigError::invalid(
            var,
            spec,
            "a field mapping",
            FIELDS_FORM,
        ));
    }
    Ok(out)
}

fn parse_extras(v: &str) -> Result<Vec<(String, Extra)>, ConfigError> {
    const FORM: &str = "'k=v,k2=v2' or a JSON object";
    if v.starts_with('{') {
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(v).map_err(|e| {
                ConfigError::invalid(
                    "HIVELOG_EXTRA",
                    v,
                    "valid extra fields",
                    &format!("{FORM} ({e})"),
                )
            })?;
        return Ok(map.into_iter().map(|(k, x)| (k, Extra::Json(x))).collect());
    }
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, x)) if !k.trim().is_empty() => {
                Ok((k.trim().to_owned(), Extra::Str(x.trim().to_owned())))
            }
            _ => Err(ConfigError::invalid(
                "HIVELOG_EXTRA",
                v,
                "valid extra fields",
                &format!("{FORM} ('{pair}' has no key=value)"),
            )),
        })
        .collect()
}

fn default_service() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The host's name: `/proc/sys/kernel/hostname`, else `$HOSTNAME`, else `localhost`.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The first bytes of `names` as an ASCII bit set; a name starting with a non-ASCII byte (or
/// an empty one) sets bit 0, which [`Format`] reads as "may be any name".
fn first_bytes<'a>(names: impl Iterator<Item = &'a str>) -> u128 {
    names.fold(0u128, |set, n| match n.bytes().next() {
        Some(b) if b < 128 => set | (1u128 << b),
        _ => set | 1,
    })
}
