//! hivelog's sink for Fluentd and Fluent Bit, over the Forward protocol v1.
//!
//! Enabled by `HIVELOG_FLUENT_ADDR` through the `hivelog` crate's `fluent` feature; it replaces
//! `fluent.sender.FluentSender(tag, host, port)` with batched, acknowledged delivery that never
//! runs on the application's threads.
//!
//! What goes on the wire, and why:
//! - **PackedForward** `[tag, bin(entries), {"size", "chunk"}]`, one message per tag per batch:
//!   the receiver stores the entry stream as-is, the cheapest mode for both sides.
//!   `HIVELOG_FLUENT_COMPRESS=gzip` sends CompressedPackedForward for slow links.
//! - **Records are msgpack maps with the JSON output's fields and types** ([`encode`]), and
//!   times are EventTime with nanoseconds (`HIVELOG_FLUENT_TIME=integer` for Fluentd v0.12).
//! - **At-least-once with acks** (`HIVELOG_FLUENT_ACK=true`, the default): every message has a
//!   `chunk` id derived from its records, so a resend carries the same id; unacked messages are
//!   resent after the ack timeout or a disconnect ([`ack`]).
//! - **Shared-key handshake** (HELO/PING/PONG) when `HIVELOG_FLUENT_SHARED_KEY` is set, with the
//!   server's digest verified ([`handshake`]); tcp, tls (rustls) and unix sockets ([`transport`]).
//! - **Messages stay under `HIVELOG_FLUENT_MAX_MESSAGE_BYTES`** (default 4 MiB, under Fluent Bit's
//!   6 MB and Fluentd's 8 MB), so a receiver never refuses one for its size.
//!
//! A service reaches a Fluentd that has `<source> @type forward </source>` with:
//!
//! ```text
//! HIVELOG_FLUENT_ADDR=tcp://127.0.0.1:24224 HIVELOG_FLUENT_TAG='{service}.{target}' ./my-service
//! ```
//!
//! and, in code, [`FluentConfig::from_env`] gives the same configuration:
//!
//! ```
//! use hivelog_core::Env;
//! use hivelog_fluent::FluentConfig;
//!
//! let env = Env::from_pairs([("HIVELOG_FLUENT_ADDR", "tcp://127.0.0.1:24224")]);
//! let config = FluentConfig::from_env(&env)?.expect("HIVELOG_FLUENT_ADDR is set");
//! assert_eq!(config.address().to_string(), "tcp://127.0.0.1:24224");
//! # Ok::<(), hivelog_core::ConfigError>(())
//! ```
//!
//! The module split is the other sinks': [`config`] (options, defaults, validation; [`tag`]
//! for the tag template), [`request_builder`] (messages under the receiver's limits, with
//! [`encode`] for the msgpack entries), [`service`] (the servers and their connections, with
//! [`transport`], [`handshake`] and [`ack`]), [`retry`] (what is retried, where), and [`sink`]
//! which ties them to the pipeline.
#![warn(missing_docs)]

pub mod ack;
pub mod config;
pub mod destination;
pub mod encode;
pub mod handshake;
pub mod request_builder;
pub mod retry;
pub mod service;
pub mod sink;
pub mod tag;
pub mod transport;

pub use config::{Address, Compression, FluentConfig, Server, TimeFormat};
pub use destination::{DESTINATION, VARS};
pub use sink::FluentSink;
