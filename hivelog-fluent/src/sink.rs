//! The sink: ties the request builder (batch → messages) to the service (servers, acks,
//! resends) for the pipeline.
//!
//! A send plans the batch's messages, writes each as soon as it is encoded (so a receiver
//! reads one while the next is encoded), waits for every ack at once, and reports per record:
//! acked → `Delivered`; not acked anywhere → `Retry` (the same messages, same chunks, next
//! time); refused credentials on every server → `Failed` with the reason; too large →
//! `Rejected`. What is retried and where is [`crate::retry`]'s table.

use std::sync::Arc;
use std::time::Duration;

use hivelog_core::endpoints::Endpoints;
use hivelog_core::sink::{BatchLimits, FailureKind, Outcome, Outcomes, Sink};
use hivelog_core::{Format, Record};

use crate::config::FluentConfig;
use crate::handshake::Credentials;
use crate::request_builder::{RequestBuilder, FRAMING_ROOM, MAX_EVENTS_PER_BATCH, MIN_PIECE};
use crate::retry::Verdict;
use crate::service::Service;

pub use crate::retry::AUTH_RETRY_INTERVAL;

/// Sends records to Fluentd or Fluent Bit with the Forward protocol v1.
///
/// Built by the `hivelog` crate from [`FluentConfig::from_env`]; run by a
/// [`hivelog_core::Pipeline`].
///
/// ```no_run
/// use std::sync::Arc;
/// use hivelog_core::{Format, Pipeline, PipelineConfig};
/// use hivelog_fluent::{FluentConfig, FluentSink};
///
/// let format = Arc::new(Format::builder().service("checkout").build());
/// let config = FluentConfig::new("tcp://127.0.0.1:24224").unwrap();
/// let pipeline = Pipeline::spawn(FluentSink::new(config, format), PipelineConfig::default()).unwrap();
/// ```
pub struct FluentSink {
    config: FluentConfig,
    builder: RequestBuilder,
    service: Service,
}

impl std::fmt::Debug for FluentSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FluentSink")
            .field("config", &self.config)
            .field("service", &self.service)
            .finish()
    }
}

impl FluentSink {
    /// A sink sending records written with `format`, as configured.
    pub fn new(config: FluentConfig, format: Arc<Format>) -> FluentSink {
        let creds = config.shared_key.clone().map(|shared_key| Credentials {
            shared_key,
            hostname: config
                .hostname
                .clone()
                .unwrap_or_else(|| format.hostname().to_owned()),
            username: config.username.clone(),
            password: config.password.clone(),
        });
        FluentSink {
            builder: RequestBuilder::new(&config, format),
            service: Service::new(&config, creds),
            config,
        }
    }

    /// Per-server state, delivered and resent events (one entry per resolved address); also
    /// in the pipeline's `Stats::endpoints`.
    pub fn endpoints(&self) -> Option<Endpoints> {
        self.service.endpoints()
    }

    /// Plans, encodes and writes the batch's messages, then settles their acks.
    async fn write_and_settle(
        &mut self,
        batch: &[Record],
        outcomes: &mut Outcomes,
    ) -> Vec<crate::request_builder::Message> {
        let service = &mut self.service;
        let plan = self
            .builder
            .plan(batch, &mut |n| service.apportion(n, MIN_PIECE));
        let mut msgs = Vec::with_capacity(plan.len());
        let mut full: Vec<&str> = Vec::new();
        for p in &plan {
            if full.contains(&p.tag.as_str()) {
                p.records.iter().for_each(|&i| outcomes.defer(i));
                continue;
            }
            let (msg, fits) = self.builder.encode(p, batch, outcomes);
            if !fits {
                full.push(&p.tag);
            }
            if let Some(m) = msg {
                msgs.push(m);
                let last = msgs.len() - 1;
                self.service.dispatch(&mut msgs, last).await;
            }
        }
        self.service.settle(&mut msgs).await;
        msgs
    }
}

impl Sink for FluentSink {
    fn name(&self) -> &'static str {
        "fluent"
    }

    fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_events: MAX_EVENTS_PER_BATCH,
            max_bytes: self.config.max_message_bytes - FRAMING_ROOM,
        }
    }

    fn encoded_len(&self, record: &Record) -> usize {
        self.builder.bound(record)
    }

    fn endpoints(&self) -> Option<Endpoints> {
        self.service.endpoints()
    }

    async fn start(&mut self) {
        // Connect early so the first batch does not wait; failures are retried by `send`.
        self.service.start().await;
    }

    async fn send(&mut self, batch: &[Record]) -> Outcomes {
        let n = batch.len();
        self.service.prepare().await;
        if let Some(f) = self.service.all_refused() {
            return Outcomes::fail_all(n, f.kind, f.message);
        }
        let mut outcomes = Outcomes::delivered(n);
        let msgs = self.write_and_settle(batch, &mut outcomes).await;
        outcomes.add_bytes_sent(self.service.bytes_sent());
        if msgs.iter().any(|m| !m.acked) {
            // Credentials refused everywhere is permanent; anything else is worth a retry.
            let refused = self.service.all_refused().is_some();
            let (kind, error) = match self.service.failure() {
                Some(f) => (f.kind, f.message.clone()),
                None => (
                    FailureKind::Unreachable,
                    "no Fluentd server is usable".to_owned(),
                ),
            };
            let permanent = refused
                && self
                    .service
                    .failure()
                    .is_some_and(|f| f.verdict == Verdict::CredentialsRefused);
            for m in msgs.iter().filter(|m| !m.acked) {
                for &i in &m.records {
                    if permanent {
                        outcomes.fail(i);
                    } else {
                        outcomes.retry(i);
                    }
                }
            }
            outcomes.set_error(kind, error);
        }
        self.builder.finish(msgs);
        self.service.publish();
        outcomes
    }

    async fn close(&mut self) {
        self.service.close(Duration::from_secs(1)).await;
    }
}

/// Counts outcomes of each kind, for tests and diagnostics.
pub fn tally(o: &Outcomes) -> [usize; 5] {
    let mut t = [0; 5];
    for x in o.as_slice() {
        t[match x {
            Outcome::Delivered => 0,
            Outcome::Deferred => 1,
            Outcome::Retry => 2,
            Outcome::Rejected(_) => 3,
            Outcome::Failed => 4,
        }] += 1;
    }
    t
}
