//! Test servers and helpers shared by hivelog's tests (never shipped).
//!
//! - [`peers`]: where the external test servers started by `scripts/test.sh` listen.
//! - [`forward`]: a Fluentd Forward protocol v1 receiver written from the specification.
//! - [`http`]: a scripted HTTP/1.1 server for fault injection (429, 413, 5xx, resets, slowness).
//! - [`wait`]: [`wait_until`], waiting on an event rather than on time.
//! - [`emf`]: a checker for CloudWatch embedded-metric-format documents.
#![allow(missing_docs)]

pub mod collect;
pub mod emf;
pub mod forward;
pub mod http;
pub mod peers;
pub mod proxy;
pub mod wait;
pub mod webhook;

pub use wait::wait_until;
