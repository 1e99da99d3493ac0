//! `HIVELOG_FORMAT=pretty`: one readable line per event for a human at a terminal.
//!
//! `2025-03-31T15:45:10.621Z  INFO checkout::api: article hit user="a@b.c" in handle{id=7}`
//! Redaction applies as in JSON. Colors only when the output is a terminal and `NO_COLOR` is unset.

use std::io::Write;

use hivelog_core::format::emit::write_json_str;
use hivelog_core::format::time::write_rfc3339;
use hivelog_core::format::REDACTED;
use hivelog_core::record::{Fields, Value};
use hivelog_core::{Format, Record};
use tracing_core::Level;

const RESET: &str = "\x1b[0m";
const DIM: &str = "\x1b[2m";

fn level_color(level: Level) -> &'static str {
    match level {
        Level::ERROR => "\x1b[31m",
        Level::WARN => "\x1b[33m",
        Level::INFO => "\x1b[32m",
        Level::DEBUG => "\x1b[34m",
        Level::TRACE => "\x1b[35m",
    }
}

/// Writes the pretty line for `r` (without the newline).
pub(crate) fn write(format: &Format, r: &Record, color: bool, out: &mut Vec<u8>) {
    let paint = |out: &mut Vec<u8>, code: &str| {
        if color {
            out.extend_from_slice(code.as_bytes());
        }
    };
    let (secs, nanos) = r.unix_time();
    paint(out, DIM);
    write_rfc3339(out, secs, nanos, 3);
    paint(out, RESET);
    out.push(b' ');
    paint(out, level_color(r.level));
    let _ = write!(out, "{:>5}", r.level.as_str());
    paint(out, RESET);
    out.push(b' ');
    paint(out, DIM);
    out.extend_from_slice(r.target().as_bytes());
    out.push(b':');
    paint(out, RESET);
    out.push(b' ');
    out.extend_from_slice(sanitize(r.message()).as_bytes());
    write_fields(format, &r.fields, color, out);
    if let Some(span) = &r.span {
        let mut nodes: Vec<_> = span.ancestry().collect();
        nodes.reverse();
        paint(out, DIM);
        out.extend_from_slice(b" in ");
        paint(out, RESET);
        for (i, node) in nodes.iter().enumerate() {
            if i > 0 {
                out.push(b':');
            }
            out.extend_from_slice(node.name.as_bytes());
            if node.fields.as_slice().is_empty() {
                continue;
            }
            out.push(b'{');
            let start = out.len();
            write_fields(format, &node.fields, false, out);
            // `write_fields` starts each pair with a space; inside braces drop the first.
            if out.len() > start {
                out.remove(start);
            }
            out.push(b'}');
        }
    }
}

fn write_fields(format: &Format, fields: &Fields, color: bool, out: &mut Vec<u8>) {
    for f in fields.iter() {
        out.push(b' ');
        if color {
            out.extend_from_slice(DIM.as_bytes());
        }
        out.extend_from_slice(f.name.as_bytes());
        out.push(b'=');
        if color {
            out.extend_from_slice(RESET.as_bytes());
        }
        if format.is_redacted(f.name) {
            out.extend_from_slice(REDACTED.as_bytes());
            continue;
        }
        match f.value {
            Value::Bool(v) => {
                let _ = write!(out, "{v}");
            }
            Value::I64(v) => {
                let _ = write!(out, "{v}");
            }
            Value::U64(v) => {
                let _ = write!(out, "{v}");
            }
            Value::F64(v) => {
                let _ = write!(out, "{v}");
            }
            Value::Str(t) => write_json_str(out, fields.text(t)),
            Value::Error { message, .. } => write_json_str(out, fields.text(message)),
            Value::Source(t) => {
                // Shown as `error="outer" error="caused by: inner"`.
                let mut s = String::from("caused by: ");
                s.push_str(fields.text(t));
                write_json_str(out, &s);
            }
        }
    }
}

/// Control characters in a message would let a value forge extra lines; escape them.
fn sanitize(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes().any(|b| b < 0x20 && b != b'\t') {
        s.chars()
            .map(|c| {
                if c.is_control() && c != '\t' {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect::<String>()
            .into()
    } else {
        s.into()
    }
}
