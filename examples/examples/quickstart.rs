//! The smallest hivelog service: JSON lines on stdout, shaped by environment variables.
//!
//! ```sh
//! HIVELOG_FIELDS='timestamp=timestamp,loggerName=target,level=level,message=message,function=span,module=module,line=line' \
//! HIVELOG_EXTRA='service=quickstart,environment=dev' \
//! cargo run -p hivelog-examples --example quickstart
//! ```

use std::error::Error;
use std::fmt;

#[derive(Debug)]
struct Timeout;
impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("upstream timed out after 2s")
    }
}
impl Error for Timeout {}

#[derive(Debug)]
struct FetchError(Timeout);
impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("could not fetch the article")
    }
}
impl Error for FetchError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.0)
    }
}

#[tracing::instrument(fields(request_id = 42))]
fn hit(user: &str, article: &str) {
    tracing::info!(user, article, "article hit");
    let err = FetchError(Timeout);
    tracing::warn!(error = &err as &dyn Error, retry = true, "fetch failed");
}

fn main() {
    let _logs = hivelog::init();
    tracing::info!(port = 8080, "listening");
    hit("a@b.c", "https://example.com/x");
    tracing::debug!("not shown at the default level");
}
