//! `hivelog`, the operator's tool: `hivelog check` answers "will this service's logs arrive?"
//! before the service runs, from the same environment the service gets.
//!
//! It reads the environment exactly as `hivelog::init()` does, prints the resolved
//! configuration (each variable, its effective value, and whether it came from the environment
//! or the default; secrets as `***`), validates it with `try_init`'s own code (so the messages
//! are the same), then sends one test event to each configured destination and reports whether
//! it was reachable, authenticated, and accepted the event, with the round-trip time.
//!
//! Why it is built this way:
//! - **No second parser.** Validation is `hivelog::builder().validate()`, and the sink
//!   configurations come from the sink crates' own `from_env`: a variable the library rejects
//!   is rejected here with the same words, and one it accepts is accepted.
//! - **The real sinks, without the pipeline.** Each destination is tested with its sink's
//!   `start` and `send` called directly, once, under a deadline (`--timeout`): the pipeline
//!   would retry and back off, hiding the first answer this tool exists to show.
//! - **Exit codes for machines.** 0: everything works; 1: a destination failed; 2: the
//!   configuration (or the command line) is invalid. That makes it a container health check
//!   or a CI step as it is; `--json` gives the same report as one JSON object.
//!
//! The binary is `hivelog_cli::main()`; a program with destinations of its own registers them
//! first, and `hivelog check` then shows and probes them too:
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     // hivelog::register_destination(&my_sink::DESTINATION);
//!     hivelog_cli::main()
//! }
//! ```
#![warn(missing_docs)]

mod args;
mod check;
mod exit;
mod probe;
mod report;
mod scrub;
mod settings;
mod spill;

use std::process::ExitCode;

use args::Command;

/// Runs the `hivelog` command with the process's arguments and environment.
pub fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match args::parse(&argv) {
        Ok(Command::Help(text)) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Ok(Command::Version) => {
            println!("hivelog {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Ok(Command::Check(opts)) => ExitCode::from(check::run(&opts)),
        Err(e) => {
            eprintln!("hivelog: {e}\n\n{}", args::USAGE);
            ExitCode::from(exit::EXIT_CONFIG)
        }
    }
}
