//! The command line, parsed by hand: two commands and three options do not justify a parser
//! dependency in a tool that ships next to every service image.

use std::time::Duration;

/// Deadline per destination when `--timeout` is not given: above the sinks' own connect
/// timeouts (5 s), under the usual 30 s health-check interval.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// `hivelog --help`.
pub const USAGE: &str = "\
hivelog: the operator tool of the hivelog logging library

Usage:
  hivelog check [--timeout DURATION] [--service NAME] [--json]
  hivelog --help | --version

Commands:
  check   Print the resolved HIVELOG_* configuration, validate it as hivelog::try_init does,
          send one test event to each configured destination and report what happened.
          `hivelog check --help` for details.
";

/// `hivelog check --help`.
pub const CHECK_USAGE: &str = "\
Usage: hivelog check [--timeout DURATION] [--service NAME] [--json]

Reads the environment a service would (HIVELOG_*, RUST_LOG, and for CloudWatch the AWS chain:
AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL, task role, ...), prints every setting with its
effective value and where it came from (secrets as ***), validates it with the same messages as
hivelog::try_init, then sends one INFO event (target hivelog::check) to each configured
destination and reports: reachable, authenticated, event accepted, round-trip time.

Options:
  --timeout DURATION  deadline per destination for connecting and sending (default 10s)
  --service NAME      service name used when HIVELOG_SERVICE is unset, as the service's code
                      would set with hivelog::builder().service(..) (default: hivelog)
  --json              print the report as one JSON object
  -h, --help          print this help

Exit status:
  0  the configuration is valid and every destination accepted the test event
  1  a destination is unreachable, refused the credentials or did not accept the event
  2  the configuration (or the command line) is invalid
";

/// What to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Print this text and exit 0.
    Help(&'static str),
    /// Print the version.
    Version,
    /// Run `hivelog check`.
    Check(CheckOptions),
}

/// `hivelog check`'s options.
#[derive(Debug, PartialEq, Eq)]
pub struct CheckOptions {
    /// Deadline per destination.
    pub timeout: Duration,
    /// The service name when `HIVELOG_SERVICE` is unset.
    pub service: Option<String>,
    /// One JSON object instead of text.
    pub json: bool,
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Command, String> {
    let mut it = args.iter().map(String::as_str);
    match it.next() {
        None | Some("-h" | "--help" | "help") => Ok(Command::Help(USAGE)),
        Some("-V" | "--version") => Ok(Command::Version),
        Some("check") => parse_check(it),
        Some(other) => Err(format!("unknown command '{other}'")),
    }
}

fn parse_check<'a>(mut it: impl Iterator<Item = &'a str>) -> Result<Command, String> {
    let mut opts = CheckOptions {
        timeout: DEFAULT_TIMEOUT,
        service: None,
        json: false,
    };
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v)),
            _ => (arg, None),
        };
        let mut value = |name: &str| {
            inline
                .map(str::to_owned)
                .or_else(|| it.next().map(str::to_owned))
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match name {
            "-h" | "--help" => return Ok(Command::Help(CHECK_USAGE)),
            "--json" => opts.json = true,
            "--timeout" => {
                let v = value(name)?;
                opts.timeout = hivelog_core::env::parse_duration(&v)
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| {
                        format!("--timeout: '{v}' is not a duration above zero (500ms, 10s, 1m)")
                    })?;
            }
            "--service" => {
                let v = value(name)?;
                if v.trim().is_empty() {
                    return Err("--service needs a non-empty name".to_owned());
                }
                opts.service = Some(v);
            }
            _ => return Err(format!("unknown option '{arg}' for check")),
        }
    }
    Ok(Command::Check(opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Result<Command, String> {
        let v: Vec<String> = s.split_whitespace().map(str::to_owned).collect();
        parse(&v)
    }

    #[test]
    fn check_options_parse_in_both_forms() {
        assert_eq!(
            parse_str("check --timeout 2s --json --service=web"),
            Ok(Command::Check(CheckOptions {
                timeout: Duration::from_secs(2),
                service: Some("web".into()),
                json: true
            }))
        );
        assert_eq!(
            parse_str("check --timeout=250ms"),
            Ok(Command::Check(CheckOptions {
                timeout: Duration::from_millis(250),
                service: None,
                json: false
            }))
        );
    }

    #[test]
    fn bad_arguments_are_errors_and_help_is_not() {
        assert!(parse_str("check --timeout soon").is_err());
        assert!(parse_str("check --timeout 0").is_err());
        assert!(parse_str("check --timeout").is_err());
        assert!(parse_str("check --verbose").is_err());
        assert!(parse_str("frobnicate").is_err());
        assert_eq!(parse_str(""), Ok(Command::Help(USAGE)));
        assert_eq!(parse_str("check -h"), Ok(Command::Help(CHECK_USAGE)));
    }
}
