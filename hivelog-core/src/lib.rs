//! The parts of hivelog that every output shares: the [`Record`] model and its capture from
//! `tracing`, the field mapping ([`Format`]), `HIVELOG_*` parsing ([`Env`]), the [`Sink`]
//! contract and the delivery [`Pipeline`].
//!
//! Applications depend on the `hivelog` crate; this crate is for sink crates.
#![warn(missing_docs)]

pub mod capture;
pub mod destination;
pub mod diag;
pub mod endpoints;
pub mod env;
pub mod format;
pub mod pipeline;
pub mod record;
pub mod sink;
pub mod spill;
pub mod trace;
pub mod var;

pub use env::{ConfigError, Env, Secret};
pub use format::{Format, FormatBuilder};
pub use pipeline::{Pipeline, PipelineConfig, Stats};
pub use record::{Record, RecordId};
pub use sink::{BatchLimits, FailureKind, Outcome, Outcomes, Sink};
pub use var::Var;
