//! hivelog's own diagnostics: one line on stderr, `hivelog[<sink>]: <message>`, at most once
//! per cause per [`INTERVAL`].
//!
//! Why not `tracing`: a diagnostic about a sink emitted through `tracing` would be captured by
//! hivelog's own layer and queued to the very sink that is failing, a feedback loop that grows
//! with the outage. Stderr is what container platforms (ECS, Kubernetes) already collect.
//!
//! Why rate-limited: a destination that is down produces the same error for every batch; one
//! line per cause per interval, with the number of lines held back, says as much without
//! flooding the terminal or the platform's log driver. Exact numbers live in the counters
//! ([`crate::Stats`]).
//!
//! ```
//! hivelog_core::diag::warn("elasticsearch", "auth", "401 Unauthorized: check HIVELOG_ES_API_KEY");
//! ```

use std::collections::HashMap;
use std::fmt::Display;
use std::io::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Shortest time between two lines with the same sink and cause: 10 seconds.
pub const INTERVAL: Duration = Duration::from_secs(10);

struct Slot {
    last: Instant,
    suppressed: u64,
}

type Slots = HashMap<String, HashMap<String, Slot>>;

static SLOTS: Mutex<Option<Slots>> = Mutex::new(None);

/// Writes `hivelog[<sink>]: <message>` to stderr unless a line with the same `sink` and
/// `cause` was written less than [`INTERVAL`] ago; returns whether it was written.
///
/// `message` is only formatted when the line is written. A line written after others were
/// held back ends with `(N similar messages suppressed)`.
///
/// ```
/// let shown = hivelog_core::diag::warn("fluent", "connect", format_args!("connection refused"));
/// let again = hivelog_core::diag::warn("fluent", "connect", "connection refused");
/// assert!(shown && !again);
/// ```
pub fn warn(sink: &str, cause: &str, message: impl Display) -> bool {
    warn_every(sink, cause, INTERVAL, message)
}

/// [`warn`] with an explicit interval for this cause.
pub fn warn_every(sink: &str, cause: &str, interval: Duration, message: impl Display) -> bool {
    let now = Instant::now();
    let suppressed = {
        let mut slots = SLOTS.lock().unwrap_or_else(|e| e.into_inner());
        let slots = slots.get_or_insert_with(HashMap::new);
        if !slots.contains_key(sink) {
            slots.insert(sink.to_owned(), HashMap::new());
        }
        let causes = slots.get_mut(sink).expect("inserted above");
        // Lookups by `&str`, so the common (suppressed) path allocates nothing.
        match causes.get_mut(cause) {
            Some(slot) if now.duration_since(slot.last) < interval => {
                slot.suppressed += 1;
                return false;
            }
            Some(slot) => {
                slot.last = now;
                std::mem::take(&mut slot.suppressed)
            }
            None => {
                causes.insert(
                    cause.to_owned(),
                    Slot {
                        last: now,
                        suppressed: 0,
                    },
                );
                0
            }
        }
    };
    let line = if suppressed > 0 {
        format!("hivelog[{sink}]: {message} ({suppressed} similar messages suppressed)\n")
    } else {
        format!("hivelog[{sink}]: {message}\n")
    };
    // Ignore write errors: a closed stderr must not take the application down (eprintln! panics).
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
    true
}

/// `head` (the caller's words for `error`) followed by each of `error`'s sources not already
/// in the text, joined by `: `: an HTTP client's own message alone ("error sending request")
/// says little, its causes say why.
///
/// ```
/// #[derive(Debug)]
/// struct Send(std::io::Error);
/// impl std::fmt::Display for Send {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("error sending request")
///     }
/// }
/// impl std::error::Error for Send {
///     fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
///         Some(&self.0)
///     }
/// }
/// let e = Send(std::io::Error::other("connection refused"));
/// let line = hivelog_core::diag::with_sources(e.to_string(), &e);
/// assert_eq!(line, "error sending request: connection refused");
/// ```
pub fn with_sources(head: String, error: &(dyn std::error::Error + 'static)) -> String {
    let mut s = head;
    let mut next = error.source();
    while let Some(cause) = next {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        next = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_cause_per_interval() {
        assert!(warn("diag-test", "a", "first"));
        assert!(!warn("diag-test", "a", "again"));
        assert!(warn("diag-test", "b", "another cause"));
        assert!(warn("diag-test-2", "a", "another sink"));
        assert!(warn_every("diag-test", "c", Duration::ZERO, "no limit"));
        assert!(warn_every("diag-test", "c", Duration::ZERO, "no limit"));
    }
}
