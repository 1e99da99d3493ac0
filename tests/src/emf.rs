//! A checker for CloudWatch embedded-metric-format documents, written from the specification
//! ("Specification: Embedded metric format", CloudWatch user guide): its rules and the
//! constraints of its published JSON schema, checked by hand so the tests need no schema crate.
//! moto stores EMF lines without extracting metrics, so this is what tells a valid document.
//!
//! ```
//! let line = serde_json::json!({
//!     "latency_ms": 12.5, "route": "/a",
//!     "_aws": {"Timestamp": 1764750000123u64, "CloudWatchMetrics": [{
//!         "Namespace": "web", "Dimensions": [["route"]],
//!         "Metrics": [{"Name": "latency_ms", "Unit": "Milliseconds"}]}]}
//! });
//! let doc = hivelog_tests::emf::validate(&line).unwrap();
//! assert_eq!(doc.metrics, ["latency_ms"]);
//! ```

use serde_json::{Map, Value};

/// The schema's `MetricUnit` values.
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

/// What a valid document declares (its single directive's content, flattened).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Doc {
    pub timestamp: u64,
    pub namespace: String,
    /// The dimension sets, each a list of keys.
    pub dimensions: Vec<Vec<String>>,
    /// Metric names, in order.
    pub metrics: Vec<String>,
    /// Each metric's unit (`None` when absent).
    pub units: Vec<Option<String>>,
    /// Each metric's storage resolution (`None` when absent).
    pub resolutions: Vec<Option<u64>>,
}

fn obj<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>, String> {
    v.as_object()
        .ok_or_else(|| format!("{what} is not an object: {v}"))
}

fn only_members(o: &Map<String, Value>, allowed: &[&str], what: &str) -> Result<(), String> {
    match o.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!(
            "{what} has a member the specification does not define: {k}"
        )),
        None => Ok(()),
    }
}

fn name(v: &Value, max: usize, what: &str) -> Result<String, String> {
    let s = v
        .as_str()
        .ok_or_else(|| format!("{what} is not a string: {v}"))?;
    let n = s.chars().count();
    if n == 0 || n > max || s.trim().is_empty() {
        return Err(format!(
            "{what} must be 1 to {max} characters, not blank: {s:?}"
        ));
    }
    Ok(s.to_owned())
}

/// Checks one log line (a parsed JSON object) as an EMF document; returns what it declares.
pub fn validate(line: &Value) -> Result<Doc, String> {
    let root = obj(line, "the root node")?;
    let aws = obj(
        root.get("_aws").ok_or("no _aws member at the root")?,
        "_aws",
    )?;
    only_members(
        aws,
        &["Timestamp", "CloudWatchMetrics", "LogGroupName"],
        "_aws",
    )?;
    let timestamp = aws
        .get("Timestamp")
        .and_then(Value::as_u64)
        .ok_or("_aws.Timestamp must be a non-negative integer (ms since the epoch)")?;
    let directives = aws
        .get("CloudWatchMetrics")
        .and_then(Value::as_array)
        .ok_or("_aws.CloudWatchMetrics must be an array")?;
    let mut doc = Doc {
        timestamp,
        ..Doc::default()
    };
    for d in directives {
        let d = obj(d, "a MetricDirective")?;
        only_members(
            d,
            &["Namespace", "Dimensions", "Metrics"],
            "a MetricDirective",
        )?;
        doc.namespace = name(
            d.get("Namespace").ok_or("a directive without Namespace")?,
            255,
            "Namespace",
        )?;
        let sets = d
            .get("Dimensions")
            .and_then(Value::as_array)
            .ok_or("Dimensions must be an array")?;
        if sets.is_empty() {
            return Err("Dimensions must hold at least one dimension set".into());
        }
        for set in sets {
            let set = set
                .as_array()
                .ok_or_else(|| format!("a DimensionSet is not an array: {set}"))?;
            if set.len() > 30 {
                return Err(format!(
                    "a DimensionSet holds {} keys (at most 30)",
                    set.len()
                ));
            }
            let mut keys = Vec::new();
            for k in set {
                let k = name(k, 250, "a DimensionReference")?;
                match root.get(&k) {
                    Some(Value::String(_)) => {}
                    other => {
                        return Err(format!(
                            "dimension {k} must be a string member of the root, is {other:?}"
                        ))
                    }
                }
                keys.push(k);
            }
            doc.dimensions.push(keys);
        }
        let metrics = d
            .get("Metrics")
            .and_then(Value::as_array)
            .ok_or("Metrics must be an array")?;
        if metrics.len() > 100 {
            return Err(format!(
                "a directive holds {} metrics (at most 100)",
                metrics.len()
            ));
        }
        for m in metrics {
            let m = obj(m, "a MetricDefinition")?;
            only_members(
                m,
                &["Name", "Unit", "StorageResolution"],
                "a MetricDefinition",
            )?;
            let n = name(m.get("Name").ok_or("a metric without Name")?, 1024, "Name")?;
            match root.get(&n) {
                Some(Value::Number(_)) => {}
                Some(Value::Array(a)) if a.len() <= 100 && a.iter().all(Value::is_number) => {}
                other => {
                    return Err(format!(
                        "metric {n} must be a number member of the root, is {other:?}"
                    ))
                }
            }
            if doc.metrics.contains(&n) {
                return Err(format!("metric {n} declared twice"));
            }
            let unit = match m.get("Unit") {
                None => None,
                Some(Value::String(u)) if UNITS.contains(&u.as_str()) => Some(u.clone()),
                Some(u) => return Err(format!("Unit {u} is not a CloudWatch unit")),
            };
            let resolution = match m.get("StorageResolution") {
                None => None,
                Some(r) if r.as_u64() == Some(1) || r.as_u64() == Some(60) => r.as_u64(),
                Some(r) => return Err(format!("StorageResolution must be 1 or 60, is {r}")),
            };
            doc.metrics.push(n);
            doc.units.push(unit);
            doc.resolutions.push(resolution);
        }
    }
    Ok(doc)
}
