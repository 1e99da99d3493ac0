//! The facade's own variables: level filters, local output and style. The format's variables
//! are read by `hivelog_core::FormatBuilder`, the pipeline's by `PipelineConfig`, each sink's by
//! its crate; all of them through one [`Env`], which then knows which `HIVELOG_*` names nobody read.

use std::path::PathBuf;

use hivelog_core::{ConfigError, Env, Var};
use tracing_subscriber::filter::{EnvFilter, LevelFilter};

use crate::file::{parse_rotation, Rotation, DEFAULT_KEEP};
use crate::output::{Output, OutputMode, Style};

/// The facade's own variables (the format's and the pipeline's are in `hivelog_core`).
pub const VARS: &[Var] = &[
    Var::new(
        "HIVELOG_LEVEL",
        "info",
        "filter directives: info, or warn,my_service::db=debug",
    ),
    Var::new("RUST_LOG", "unset", "used when HIVELOG_LEVEL is unset"),
    Var::new(
        "HIVELOG_LEVEL_FILE",
        "none",
        "file of directives in HIVELOG_LEVEL syntax, re-read when it changes",
    ),
    Var::new(
        "HIVELOG_RATE_LIMIT",
        "off",
        "events per callsite per window (100/s, 1000/m); the rest suppressed and counted",
    ),
    Var::new("HIVELOG_FORMAT", "json", "json or pretty"),
    Var::new(
        "HIVELOG_OUTPUT",
        "stdout",
        "stdout, stderr, none or file:PATH",
    ),
    Var::new(
        "HIVELOG_OUTPUT_MODE",
        "async",
        "async (a writer thread writes the lines) or sync (the calling thread does)",
    ),
    Var::new(
        "HIVELOG_FILE_ROTATION",
        "never",
        "never, hourly, daily or a size (100MB)",
    ),
    Var::new("HIVELOG_FILE_KEEP", "10", "rotated files kept"),
    Var::new(
        "HIVELOG_HEARTBEAT",
        "off",
        "every so often, an INFO event with the counters",
    ),
];

const LEVEL_FORM: &str = "filter directives such as info or warn,my_service::db=debug";

/// Parses `EnvFilter` directives, naming `var` in the error.
pub(crate) fn parse_filter(var: &str, directives: &str) -> Result<EnvFilter, ConfigError> {
    EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .parse(directives)
        .map_err(|e| {
            ConfigError::invalid(
                var,
                directives,
                "a level filter",
                &format!("{LEVEL_FORM} ({e})"),
            )
        })
}

/// The main level: `HIVELOG_LEVEL`, else `RUST_LOG`, else the builder's, else `info`.
/// Returns the directives and the variable they came from (for error messages).
pub(crate) fn level(env: &Env, code: Option<&str>) -> (String, &'static str) {
    if let Some(v) = env.get("HIVELOG_LEVEL") {
        (v.to_owned(), "HIVELOG_LEVEL")
    } else if let Some(v) = env.get("RUST_LOG") {
        (v.to_owned(), "RUST_LOG")
    } else if let Some(v) = code {
        (v.to_owned(), "builder level")
    } else {
        ("info".to_owned(), "default level")
    }
}

/// `HIVELOG_FORMAT`.
pub(crate) fn style(env: &Env) -> Result<Option<Style>, ConfigError> {
    env.choice(
        "HIVELOG_FORMAT",
        "an output format",
        &[("json", Style::Json), ("pretty", Style::Pretty)],
    )
}

/// `HIVELOG_OUTPUT_MODE`.
pub(crate) fn output_mode(env: &Env) -> Result<Option<OutputMode>, ConfigError> {
    env.choice(
        "HIVELOG_OUTPUT_MODE",
        "an output mode",
        &[("async", OutputMode::Async), ("sync", OutputMode::Sync)],
    )
}

/// `HIVELOG_OUTPUT`, `HIVELOG_FILE_ROTATION`, `HIVELOG_FILE_KEEP`.
pub(crate) fn output(env: &Env, code: Option<Output>) -> Result<Output, ConfigError> {
    let rotation = env
        .parse("HIVELOG_FILE_ROTATION", "a rotation", parse_rotation)?
        .unwrap_or(Rotation::Never);
    let keep = env
        .integer("HIVELOG_FILE_KEEP", 1..=100_000)?
        .map(|n| n as usize);
    let out = env.parse("HIVELOG_OUTPUT", "an output", |v| match v {
        "stdout" => Ok(Output::Stdout),
        "stderr" => Ok(Output::Stderr),
        "none" => Ok(Output::None),
        _ => match v.strip_prefix("file:") {
            Some(p) if !p.is_empty() => Ok(Output::File {
                path: PathBuf::from(p),
                rotation,
                keep: keep.unwrap_or(DEFAULT_KEEP),
            }),
            _ => Err("stdout, stderr, none, or file:PATH".to_owned()),
        },
    })?;
    Ok(match (out, code) {
        (Some(o), _) => o,
        (
            None,
            Some(Output::File {
                path,
                rotation: r,
                keep: k,
            }),
        ) => Output::File {
            path,
            rotation: if rotation == Rotation::Never {
                r
            } else {
                rotation
            },
            keep: keep.unwrap_or(k),
        },
        (None, Some(o)) => o,
        (None, None) => Output::Stdout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default the table documents for `name`.
    fn documented(name: &str) -> &'static str {
        VARS.iter()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("{name} is not in the table"))
            .default
    }

    fn set(name: &str) -> Env {
        Env::from_pairs([(name, documented(name))])
    }

    #[test]
    fn every_default_in_the_table_is_the_one_the_code_uses() {
        let unset = Env::from_pairs::<&str, &str>([]);
        assert_eq!(documented("HIVELOG_FILE_KEEP").parse(), Ok(DEFAULT_KEEP));
        assert_eq!(
            parse_rotation(documented("HIVELOG_FILE_ROTATION")),
            Ok(Rotation::default())
        );
        assert_eq!(level(&unset, None).0, documented("HIVELOG_LEVEL"));
        assert_eq!(style(&set("HIVELOG_FORMAT")), Ok(Some(Style::default())));
        assert_eq!(
            output_mode(&set("HIVELOG_OUTPUT_MODE")),
            Ok(Some(OutputMode::default()))
        );
        assert_eq!(output(&set("HIVELOG_OUTPUT"), None), output(&unset, None));
        assert_eq!(output(&unset, None), Ok(Output::default()));
    }
}
