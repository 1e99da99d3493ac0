//! hivelog's sink for Elasticsearch and OpenSearch: documents through the `_bulk` API.
//!
//! Enabled by `HIVELOG_ES_URL` (comma-separated nodes, a path prefix allowed) or
//! `HIVELOG_ES_CLOUD_ID`, through the `hivelog` crate's `elk` feature; this crate is the
//! protocol only, and the delivery pipeline of `hivelog-core` does the queueing, batching and
//! retrying.
//!
//! Why it is shaped this way:
//! - **Idempotent retries.** Every document carries a client-made `_id` (a per-sink random
//!   salt and the record's pipeline sequence number), and the default action is `create`: a
//!   document resent after a timeout whose first attempt had landed answers 409, which counts
//!   as delivered. Nothing is stored twice and nothing is counted as lost.
//! - **Item-level outcomes.** A bulk answer is read item by item: only the items that were
//!   throttled or hit a server error are retried; documents the cluster refuses (a mapping
//!   conflict) are rejected with their `error.type: reason`, counted, optionally written to a
//!   dead-letter file, and never hold up the rest.
//! - **Never loop on what cannot succeed.** 401/403 fail the batch (never retried) with a message
//!   saying which variables to check; a
//!   413 splits the batch instead of resending it as is.
//! - **Fail at `init`.** URLs, the Cloud ID, the index template (against Elasticsearch's
//!   index-name rules), the API key and the CA file are checked when the configuration is
//!   read, with messages naming the variable.
//!
//! One file per concern: [`config`] (options), `request` (batch → NDJSON), [`response`]
//! (what each answer means), `service` (HTTP, nodes, failover), `dead_letter`, `setup` (index
//! template) and `sink` (ties them together).
#![warn(missing_docs)]

pub mod config;
mod dead_letter;
mod request;
pub mod response;
mod service;
mod setup;
mod sink;

pub use config::{
    decode_cloud_id, validate_index_name, Action, Auth, Compression, EsConfig, DEFAULT_INDEX,
    DEFAULT_MAX_BATCH_BYTES, DEFAULT_MAX_BATCH_DOCS, DEFAULT_TIMEOUT, ENV_VARS,
};
pub use request::{BULK_PATH, NDJSON};
pub use setup::TEMPLATE_PRIORITY;
pub use sink::EsSink;
