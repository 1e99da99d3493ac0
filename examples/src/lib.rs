//! Example services using hivelog, and the few helpers they share.
//!
//! - `webapp` (`src/bin/webapp.rs`, the default binary): an axum service that logs visits,
//!   article hits and failures, and flushes on SIGTERM. `cargo run -p hivelog-examples`.
//! - `loadgen` (`src/bin/loadgen.rs`): drives the service, or hivelog directly, at a given
//!   rate and prints events/s. `cargo run -p hivelog-examples --release --bin loadgen -- --help`.
//! - `quickstart` (`examples/quickstart.rs`): the smallest hivelog program.
//!
//! The deployment assets next to them (`deploy/`) are checked by `tests/deploy.rs`.
#![deny(missing_docs)]

pub mod http;
