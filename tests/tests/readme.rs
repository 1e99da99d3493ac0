//! The README's configuration reference cannot drift from the parsers.
//!
//! "The parsers know" is measured, not listed: hivelog is validated (nothing started) with every
//! sink switched on, and [`Env::names_read`] gives every `HIVELOG_*` name the parsers looked up.
//! Then:
//! - every such name is in the first column of one of the README's tables;
//! - every `HIVELOG_*` name the README mentions anywhere is one of them;
//! - the one table of variables (`hivelog::variables()`: the facade's, the format's, the
//!   pipeline's and each destination's), which the warnings, `hivelog check` and the fuzz list
//!   read, holds exactly the names the parsers read, and `hivelog check` shows no other.

use std::collections::BTreeSet;
use std::path::Path;

use hivelog::Env;

fn readme() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `HIVELOG_*` tokens in `text`; a token ending in `_` (`HIVELOG_ES_*`) is a prefix, not a name.
fn names_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("HIVELOG_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        if !name.ends_with('_') {
            out.insert(name.to_owned());
        }
        rest = &tail[end..];
    }
    out
}

/// Names in the first column of the README's tables (`| `HIVELOG_A`, `HIVELOG_B` | … |`).
fn documented(readme: &str) -> BTreeSet<String> {
    readme
        .lines()
        .filter(|l| l.starts_with("| `HIVELOG_"))
        .flat_map(|l| names_in(l.split('|').nth(1).unwrap_or("")))
        .collect()
}

/// Every `HIVELOG_*` name hivelog's parsers look up, with every sink on, in a few shapes of
/// configuration so that variables read only in some (a file output, a shared key) are seen.
fn known() -> BTreeSet<String> {
    let dir = tempfile::tempdir().unwrap();
    let log = format!("file:{}", dir.path().join("app.log").display());
    let all_on = [
        ("HIVELOG_FLUENT_ADDR", "tcp://127.0.0.1:9"),
        ("HIVELOG_ES_URL", "http://127.0.0.1:9"),
        ("HIVELOG_CLOUDWATCH_GROUP", "readme"),
        ("OTEL_LOGS_EXPORTER", "otlp"),
    ];
    let shapes: [&[(&str, &str)]; 3] = [
        &[],
        &[("HIVELOG_OUTPUT", &log), ("HIVELOG_FORMAT", "pretty")],
        &[
            ("HIVELOG_FLUENT_SHARED_KEY", "k"),
            ("HIVELOG_SCHEMA", "ecs"),
            ("HIVELOG_OUTPUT", "none"),
        ],
    ];
    let mut names = BTreeSet::new();
    for shape in shapes {
        let env = Env::from_pairs(all_on.iter().chain(shape).copied());
        hivelog::builder()
            .env(env.clone())
            .validate()
            .unwrap_or_else(|e| panic!("{shape:?}: {e}"));
        names.extend(
            env.names_read()
                .into_iter()
                .filter(|n| n.starts_with("HIVELOG_")),
        );
    }
    names
}

#[test]
fn every_variable_the_parsers_read_is_in_the_readme_tables() {
    let known = known();
    assert!(known.len() > 40, "suspiciously few names read: {known:?}");
    let documented = documented(&readme());
    let missing: Vec<_> = known.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "read by hivelog but missing from the README's configuration tables: {missing:?}"
    );
}

#[test]
fn every_variable_the_readme_names_is_read_by_the_parsers() {
    let known = known();
    let unknown: Vec<_> = names_in(&readme())
        .into_iter()
        .filter(|n| !known.contains(n))
        .collect();
    assert!(
        unknown.is_empty(),
        "named in the README but read by no parser: {unknown:?}"
    );
}

/// The `HIVELOG_*` names of the one table.
fn table() -> BTreeSet<String> {
    hivelog::variables()
        .into_iter()
        .flat_map(|(_, vars)| vars)
        .map(|v| v.name.to_owned())
        .filter(|n| n.starts_with("HIVELOG_"))
        .collect()
}

#[test]
fn the_table_of_variables_holds_exactly_what_the_parsers_read() {
    let known = known();
    let table = table();
    let stale: Vec<_> = table.difference(&known).collect();
    assert!(
        stale.is_empty(),
        "in the table, read by no parser: {stale:?}"
    );
    let unlisted: Vec<_> = known.difference(&table).collect();
    assert!(
        unlisted.is_empty(),
        "read, but missing from the table (no unknown-variable warning, no `hivelog check` row): {unlisted:?}"
    );
    assert_eq!(documented(&readme()), table, "README tables vs the table");
}

#[test]
fn hivelog_check_shows_the_variables_of_the_table_and_no_other() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hivelog-with-webhook"))
        .args(["check", "--json", "--timeout", "1ms"])
        .env_clear()
        .envs([
            ("HIVELOG_FLUENT_ADDR", "tcp://127.0.0.1:9"),
            ("HIVELOG_ES_URL", "http://127.0.0.1:9"),
            ("HIVELOG_CLOUDWATCH_GROUP", "readme"),
            ("HIVELOG_WEBHOOK_URL", "http://127.0.0.1:9"),
            ("OTEL_LOGS_EXPORTER", "otlp"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s3cr3t-header"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let shown: BTreeSet<String> = v["config"]["sections"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["settings"].as_array().unwrap().clone())
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .filter(|n| n.starts_with("HIVELOG_"))
        .collect();
    // The webhook is registered by that binary only (and is not in the README).
    let (webhook, shown): (BTreeSet<String>, BTreeSet<String>) = shown
        .into_iter()
        .partition(|n| n.starts_with("HIVELOG_WEBHOOK_"));
    assert_eq!(shown, table());
    let webhook_table: BTreeSet<String> = hivelog_tests::webhook::VARS
        .iter()
        .map(|v| v.name.to_owned())
        .collect();
    assert_eq!(webhook, webhook_table);
    // The OTLP destination's standard OTEL_* variables are shown too, the headers masked.
    let otlp = v["config"]["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "otlp")
        .expect("an otlp section");
    let rows: Vec<(String, String)> = otlp["settings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["value"].to_string(),
            )
        })
        .collect();
    let names: BTreeSet<&str> = rows.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, otlp_table().iter().map(String::as_str).collect());
    let headers = rows
        .iter()
        .find(|(n, _)| n == "OTEL_EXPORTER_OTLP_HEADERS")
        .unwrap();
    assert!(!headers.1.contains("s3cr3t"), "{headers:?}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("s3cr3t-header"));
}

/// Every name of the OTLP destination's table.
fn otlp_table() -> BTreeSet<String> {
    hivelog::variables()
        .into_iter()
        .find(|(name, _)| *name == "otlp")
        .expect("built with the otlp feature")
        .1
        .into_iter()
        .map(|v| v.name.to_owned())
        .collect()
}

#[test]
fn the_readme_s_otlp_table_lists_exactly_the_destination_s_variables() {
    let readme = readme();
    let start = readme.find("### OpenTelemetry collector, OTLP").unwrap();
    let end = start + readme[start..].find("\n### ").unwrap();
    let documented: BTreeSet<String> = readme[start..end]
        .lines()
        .filter(|l| l.starts_with("| `"))
        .flat_map(|l| {
            l.split('|')
                .nth(1)
                .unwrap_or("")
                .split('`')
                .filter(|t| t.starts_with("OTEL_") || t.starts_with("HIVELOG_"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(documented, otlp_table());
}

#[test]
fn names_in_reads_names_and_skips_prefixes() {
    let got = names_in("set `HIVELOG_ES_URL` (or any `HIVELOG_ES_*`), HIVELOG_LEVEL=debug");
    assert_eq!(
        got.into_iter().collect::<Vec<_>>(),
        ["HIVELOG_ES_URL", "HIVELOG_LEVEL"]
    );
}
