//! Index names: the `HIVELOG_ES_INDEX` template (`{service}`, `{date:…}`), its rendering per
//! event, and Elasticsearch's index-name rules.

use hivelog_core::format::time::civil_from_days;
use hivelog_core::ConfigError;

use crate::limits::{FORBIDDEN_INDEX_CHARS, MAX_INDEX_NAME_BYTES};

/// One piece of an index template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Segment {
    Literal(String),
    Service,
    Date(Vec<DatePart>),
}

/// One piece of a `{date:…}` format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DatePart {
    Year,
    Month,
    Day,
    Hour,
    DayOfYear,
    Char(char),
}

/// A parsed, validated `HIVELOG_ES_INDEX`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct IndexTemplate {
    pub(crate) source: String,
    pub(crate) segments: Vec<Segment>,
}

const INDEX_FORM: &str = "an index name with optional {service} and {date:%Y.%m.%d} placeholders: lowercase, without \\ / * ? \" < > | , # : or space, not starting with - _ +, at most 255 bytes (logs-{service})";

impl IndexTemplate {
    /// Parses and validates `template` (the error names `var`).
    pub(crate) fn parse(var: &str, template: &str) -> Result<Self, ConfigError> {
        let bad = || ConfigError::invalid(var, template, "a valid index name", INDEX_FORM);
        let mut segments = Vec::new();
        let mut rest = template;
        while !rest.is_empty() {
            match rest.find('{') {
                Some(0) => {
                    let end = rest.find('}').ok_or_else(bad)?;
                    let inner = &rest[1..end];
                    segments.push(match inner {
                        "service" => Segment::Service,
                        "date" => Segment::Date(parse_date_format("%Y.%m.%d").ok_or_else(bad)?),
                        _ => match inner.strip_prefix("date:") {
                            Some(f) => Segment::Date(parse_date_format(f).ok_or_else(bad)?),
                            None => return Err(bad()),
                        },
                    });
                    rest = &rest[end + 1..];
                }
                Some(i) => {
                    segments.push(Segment::Literal(rest[..i].to_owned()));
                    rest = &rest[i..];
                }
                None => {
                    segments.push(Segment::Literal(rest.to_owned()));
                    rest = "";
                }
            }
        }
        if segments
            .iter()
            .any(|s| matches!(s, Segment::Literal(l) if l.contains('}')))
        {
            return Err(bad());
        }
        let t = IndexTemplate {
            source: template.to_owned(),
            segments,
        };
        // Validate with the longest values the placeholders can take, and a sample service
        // name (service names are made index-safe when the sink starts).
        let sample = t.render("s", 253_402_300_799);
        validate_index_name(&sample).map_err(|_| bad())?;
        let sample = t.render("", 0);
        if sample.is_empty() {
            return Err(bad());
        }
        Ok(t)
    }

    /// Whether the name depends on the event's time, and at what granularity (seconds).
    pub(crate) fn time_granularity(&self) -> Option<u64> {
        let mut g = None;
        for s in &self.segments {
            if let Segment::Date(parts) = s {
                let hourly = parts.contains(&DatePart::Hour);
                let this = if hourly { 3600 } else { 86_400 };
                g = Some(g.map_or(this, |x: u64| x.min(this)));
            }
        }
        g
    }

    /// The index name for `service` at `secs` since the epoch (UTC).
    pub(crate) fn render(&self, service: &str, secs: u64) -> String {
        let mut out = String::new();
        for s in &self.segments {
            match s {
                Segment::Literal(l) => out.push_str(l),
                Segment::Service => out.push_str(service),
                Segment::Date(parts) => write_date(&mut out, parts, secs),
            }
        }
        out
    }

    /// A wildcard pattern matching every name the template can produce for `service`.
    pub(crate) fn pattern(&self, service: &str) -> String {
        let mut out = String::new();
        for s in &self.segments {
            match s {
                Segment::Literal(l) => out.push_str(l),
                Segment::Service => out.push_str(service),
                Segment::Date(_) => {
                    if !out.ends_with('*') {
                        out.push('*')
                    }
                }
            }
        }
        out
    }
}

fn parse_date_format(f: &str) -> Option<Vec<DatePart>> {
    let mut parts = Vec::new();
    let mut chars = f.chars();
    while let Some(c) = chars.next() {
        parts.push(if c == '%' {
            match chars.next()? {
                'Y' => DatePart::Year,
                'm' => DatePart::Month,
                'd' => DatePart::Day,
                'H' => DatePart::Hour,
                'j' => DatePart::DayOfYear,
                '%' => DatePart::Char('%'),
                _ => return None,
            }
        } else {
            DatePart::Char(c)
        });
    }
    (!parts.is_empty()).then_some(parts)
}

fn write_date(out: &mut String, parts: &[DatePart], secs: u64) {
    use std::fmt::Write as _;
    let days = (secs / 86_400) as i64;
    let (y, m, d) = civil_from_days(days);
    for p in parts {
        let _ = match p {
            DatePart::Year => write!(out, "{:04}", y.clamp(0, 9999)),
            DatePart::Month => write!(out, "{m:02}"),
            DatePart::Day => write!(out, "{d:02}"),
            DatePart::Hour => write!(out, "{:02}", secs % 86_400 / 3600),
            DatePart::DayOfYear => {
                let jan1 = days_from_civil(y, 1, 1);
                write!(out, "{:03}", days - jan1 + 1)
            }
            DatePart::Char(c) => {
                out.push(*c);
                Ok(())
            }
        };
    }
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Checks a concrete index name against Elasticsearch's rules; `Err` says which one it breaks.
pub fn validate_index_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("must not be empty");
    }
    if name == "." || name == ".." {
        return Err("must not be '.' or '..'");
    }
    if name.len() > MAX_INDEX_NAME_BYTES {
        return Err("must be at most 255 bytes");
    }
    if name.starts_with(['-', '_', '+']) {
        return Err("must not start with '-', '_' or '+'");
    }
    if name.contains(FORBIDDEN_INDEX_CHARS) || name.contains(char::is_control) {
        return Err("must not contain \\ / * ? \" < > | , # : or space");
    }
    if name.to_lowercase() != name {
        return Err("must be lowercase");
    }
    Ok(())
}

/// Makes a service name safe inside an index name: lowercase, forbidden characters replaced by
/// `-`, no leading `-_+.`; `unknown` if nothing is left. Elasticsearch would reject every
/// document of a service called `MyApp`, so the name is adapted rather than refused.
pub fn index_safe_service(service: &str) -> String {
    let s: String = service
        .to_lowercase()
        .chars()
        .map(|c| {
            if FORBIDDEN_INDEX_CHARS.contains(&c) || c.is_control() {
                '-'
            } else {
                c
            }
        })
        .collect();
    let s = s.trim_start_matches(['-', '_', '+', '.']);
    let mut s = if s.is_empty() {
        "unknown".to_owned()
    } else {
        s.to_owned()
    };
    s.truncate(hivelog_core::record::floor_char_boundary(&s, 200));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn templates_render_each_events_own_time() {
        let t = IndexTemplate::parse("v", "logs-{service}-{date:%Y.%m.%d}").unwrap();
        // 2025-03-31T15:45:10Z
        assert_eq!(t.render("web", 1_743_435_910), "logs-web-2025.03.31");
        assert_eq!(t.pattern("web"), "logs-web-*");
        let t = IndexTemplate::parse("v", "l-{date:%Y%j-%H}").unwrap();
        assert_eq!(t.render("web", 1_743_435_910), "l-2025090-15");
        assert_eq!(t.time_granularity(), Some(3600));
        assert_eq!(
            IndexTemplate::parse("v", "l-{date}").unwrap().render("", 0),
            "l-1970.01.01"
        );
    }

    #[test]
    fn service_names_are_made_index_safe() {
        assert_eq!(index_safe_service("MyApp"), "myapp");
        assert_eq!(index_safe_service("_my app/x"), "my-app-x");
        assert_eq!(index_safe_service("--"), "unknown");
    }
}
