//! hivelog as one layer of a subscriber the service builds itself: hivelog's JSON lines to
//! their destination (stdout here; a Fluentd, Elasticsearch or CloudWatch sink with its
//! variable set), and `tracing_subscriber::fmt` for a developer's terminal on stderr, each with
//! its own level.
//!
//! ```sh
//! HIVELOG_LEVEL=info TERMINAL_LEVEL=debug cargo run -p hivelog-examples --example layer
//! ```
//! prints the JSON lines of INFO and up on stdout, and every line from DEBUG up, as text, on
//! stderr: hivelog's level decides only what hivelog writes.

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::prelude::*;

fn main() {
    // The same HIVELOG_* variables as `hivelog::init()`; the guard flushes at the end of main.
    let (hivelog, _logs) = hivelog::layer();
    let terminal_level: LevelFilter = std::env::var("TERMINAL_LEVEL")
        .ok()
        .and_then(|l| l.parse().ok())
        .unwrap_or(LevelFilter::WARN);
    tracing_subscriber::registry()
        .with(hivelog)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(terminal_level),
        )
        // Installs the subscriber and the `log` bridge (tracing-subscriber's default features).
        .init();

    let request = tracing::info_span!("request", route = "/articles/7");
    hivelog::trace::start(&request, None);
    request.in_scope(|| {
        tracing::debug!(cache = "miss", "looking up the article");
        tracing::info!(user = "a@b.c", article = 7, "article hit");
        tracing::warn!(elapsed_ms = 950, "slow upstream");
    });
}
