//! hivelog's sink for Elasticsearch and OpenSearch: documents through the `_bulk` API.
//!
//! Enabled by `HIVELOG_ES_URL` (comma-separated nodes, a path prefix allowed) or
//! `HIVELOG_ES_CLOUD_ID`, through the `hivelog` crate's `elk` feature; this crate is the
//! protocol only, and the delivery pipeline of `hivelog-core` does the queueing, batching and
//! retrying.
//!
//! Why it is shaped this way:
//! - **Idempotent retries.** Every document carries a client-made `_id` (a per-sink random
//!   origin and sequence number of the record's `RecordId`, kept in the spill folder across
//!   restarts), and the default action is `create`: a
//!   document resent after a timeout whose first attempt had landed answers 409, which counts
//!   as delivered. Nothing is stored twice and nothing is counted as lost.
//! - **Item-level outcomes.** A bulk answer is read item by item: only the items that were
//!   throttled or hit a server error are retried; documents the cluster refuses (a mapping
//!   conflict) are rejected with their `error.type: reason`, counted, optionally written to a
//!   dead-letter file, and never hold up the rest.
//! - **Never loop on what cannot succeed.** 401/403 fail the batch (never retried) with a
//!   message saying which variables to check; a 413 splits the batch instead of resending it.
//! - **Fail at `init`.** URLs, the Cloud ID, the index template (against Elasticsearch's
//!   index-name rules), the API key and the CA file are checked when the configuration is
//!   read, with messages naming the variable.
//!
//! One file per concern, in the order a record travels, as in every hivelog sink crate:
//! - [`config`]: variables, defaults, validation (with `nodes` for node URLs and the Cloud ID,
//!   `index` for index names, `auth` for credentials and CA certificates);
//! - [`limits`]: what Elasticsearch accepts, quoted from its reference, and the sink's bounds;
//! - `request_builder`: records → `_bulk` NDJSON bodies within the byte and document limits;
//! - `service`: the transport (HTTP, the nodes in turn, failover, capped responses);
//! - `retry`: which answers and items are retried, rejected, or fatal;
//! - `sink`: the [`Sink`](hivelog_core::Sink) implementation tying them together;
//! - `dead_letter` (rejected documents to a file), `setup` (the index template), `destination`.
#![warn(missing_docs)]

mod auth;
pub mod config;
mod dead_letter;
pub mod destination;
mod index;
pub mod limits;
mod nodes;
mod request_builder;
mod retry;
mod service;
mod setup;
mod sink;

pub use config::{
    decode_cloud_id, validate_index_name, Action, Auth, Compression, EsConfig, DEFAULT_INDEX,
    DEFAULT_MAX_BATCH_BYTES, DEFAULT_MAX_BATCH_DOCS, DEFAULT_TIMEOUT,
};
pub use destination::{DESTINATION, VARS};
pub use request_builder::{BULK_PATH, NDJSON};
pub use setup::TEMPLATE_PRIORITY;
pub use sink::EsSink;

/// The sink's encoder on its own, for benchmarks (not a stable API).
#[doc(hidden)]
pub mod bench {
    use std::sync::Arc;

    use hivelog_core::{Format, Record};

    use crate::config::EsConfig;
    use crate::request_builder::{BulkEncoder, Encoded};

    /// Encodes batches exactly as [`crate::EsSink`] does before sending.
    #[derive(Debug)]
    pub struct Encoder {
        inner: BulkEncoder,
        out: Encoded,
        max_bytes: usize,
        max_docs: usize,
    }

    impl Encoder {
        /// An encoder for `config` and `format`.
        pub fn new(config: &EsConfig, format: Arc<Format>) -> Self {
            Encoder {
                inner: BulkEncoder::new(format, config.action, config.index.clone()),
                out: Encoded::default(),
                max_bytes: config.max_batch_bytes,
                max_docs: config.max_batch_docs,
            }
        }

        /// Encodes as much of `batch` as one request takes; returns (documents, bytes).
        pub fn encode(&mut self, batch: &[Record]) -> (usize, usize) {
            self.inner
                .encode(batch, self.max_bytes, self.max_docs, &mut self.out);
            (self.out.len(), self.out.body.len())
        }

        /// The last body.
        pub fn body(&self) -> &[u8] {
            &self.out.body
        }
    }
}
