//! The sink: ties the request builder, the service and the retry rules to the pipeline.
//!
//! `CloudWatchSink::new` only stores settings. The first `start` (or `send`) on the sink's
//! thread builds the AWS client and resolves `{instance}`; streams are created as they are
//! first used.
//!
//! Concurrency: the pipeline hands over batches of up to [`DEFAULT_MAX_CONCURRENCY`] full
//! requests' worth (its byte count is each record's exact message size + 26), and the requests
//! of one batch — across streams, and several per stream — run at the same time, at most
//! `max_concurrency` in flight. Parallel puts to one stream are allowed since sequence tokens
//! were retired; they are what lets one process keep up with a busy service.
//!
//! [`DEFAULT_MAX_CONCURRENCY`]: crate::DEFAULT_MAX_CONCURRENCY

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use hivelog_core::{BatchLimits, FailureKind, Format, Outcomes, Record, Sink};
use tokio::task::JoinSet;

use crate::config::CloudWatchConfig;
use crate::limits;
use crate::request_builder::RequestBuilder;
use crate::retry::{apply_rejected, Disposition};
use crate::service::Service;

/// Requests one `send` may make, per unit of concurrency, before the rest is deferred.
const PUTS_PER_SLOT: usize = 4;

/// Ships records to a CloudWatch Logs group.
///
/// ```no_run
/// use std::sync::Arc;
/// use hivelog_cloudwatch::{CloudWatchConfig, CloudWatchSink};
/// use hivelog_core::{Env, Format, Pipeline, PipelineConfig};
///
/// let env = Env::from_process();
/// if let Some(config) = CloudWatchConfig::from_env(&env).unwrap() {
///     let format = Arc::new(Format::builder().build());
///     let sink = CloudWatchSink::new(config, format);
///     let _pipeline = Pipeline::spawn(sink, PipelineConfig::default()).unwrap();
/// }
/// ```
#[derive(Debug)]
pub struct CloudWatchSink {
    config: CloudWatchConfig,
    builder: RequestBuilder,
    service: Option<Arc<Service>>,
    /// `seq` of the records whose partial request was deferred by the last send.
    deferred: HashSet<u64>,
}

impl CloudWatchSink {
    /// A sink for `config`, writing messages with `format`. Does no I/O.
    pub fn new(config: CloudWatchConfig, format: Arc<Format>) -> CloudWatchSink {
        // The configuration holds the template parsed and validated: no fallback is needed.
        let template = config.parsed_stream().clone();
        let builder = RequestBuilder::new(
            format,
            config.message_format(),
            config.event_bytes(),
            template,
            config.retention(),
            (config.concurrency() * PUTS_PER_SLOT).max(16),
            config.instance_override().map(str::to_owned),
        );
        CloudWatchSink {
            config,
            builder,
            service: None,
            deferred: HashSet::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &CloudWatchConfig {
        &self.config
    }

    async fn ensure_started(&mut self) -> Arc<Service> {
        if let Some(s) = &self.service {
            return s.clone();
        }
        if !self.builder.has_instance() {
            let instance = crate::instance::resolve(None, self.builder.hostname()).await;
            self.builder.set_instance(instance);
        }
        let service = Arc::new(Service::connect(&self.config).await);
        self.service = Some(service.clone());
        service
    }

    /// The stream a record would go to (`{instance}` must be resolved: after `start`).
    pub fn stream_name(&self, record: &Record) -> String {
        self.builder.stream_of(record)
    }
}

impl Sink for CloudWatchSink {
    fn name(&self) -> &'static str {
        "cloudwatch"
    }

    fn limits(&self) -> BatchLimits {
        let slots = self.config.concurrency();
        BatchLimits {
            max_events: limits::MAX_BATCH_EVENTS * slots,
            max_bytes: limits::MAX_BATCH_BYTES * slots,
        }
    }

    fn encoded_len(&self, record: &Record) -> usize {
        self.builder.encoded_len(record)
    }

    async fn start(&mut self) {
        let service = self.ensure_started().await;
        if let Some(stream) = self.builder.fixed_stream() {
            // Failures are retried by the first send.
            let _ = service.ensure_stream(&stream).await;
        }
    }

    async fn send(&mut self, batch: &[Record]) -> Outcomes {
        let service = self.ensure_started().await;
        let plan = self
            .builder
            .build(batch, SystemTime::now(), &mut self.deferred);
        let mut outcomes = plan.outcomes;
        let mut puts = plan.puts.into_iter();
        let mut running = JoinSet::new();
        let mut carried: HashMap<tokio::task::Id, Vec<usize>> = HashMap::new();
        loop {
            while running.len() < self.config.concurrency() {
                let Some(put) = puts.next() else { break };
                let indices: Vec<usize> = put.events.iter().map(|e| e.index).collect();
                let service = service.clone();
                let handle = running.spawn(async move { service.deliver(put).await });
                carried.insert(handle.id(), indices);
            }
            let Some(done) = running.join_next_with_id().await else {
                break;
            };
            match done {
                Ok((id, delivery)) => {
                    carried.remove(&id);
                    match delivery.result {
                        Ok(None) => outcomes.add_bytes_sent(delivery.bytes as u64),
                        Ok(Some(info)) => {
                            outcomes.add_bytes_sent(delivery.bytes as u64);
                            apply_rejected(&info, &delivery.indices, &mut outcomes);
                        }
                        Err(e) => {
                            for &i in &delivery.indices {
                                match e.disposition {
                                    Disposition::Retry | Disposition::NotFound => outcomes.retry(i),
                                    Disposition::Reject => outcomes.reject(i, e.message.clone()),
                                    Disposition::Fail => outcomes.fail(i),
                                }
                            }
                            outcomes.set_error(e.kind, e.message);
                        }
                    }
                }
                Err(join) => {
                    // A request's task panicked: its records are retried, never lost silently.
                    for i in carried.remove(&join.id()).unwrap_or_default() {
                        outcomes.retry(i);
                    }
                    outcomes.set_error(
                        FailureKind::Internal,
                        format!("PutLogEvents task failed: {join}"),
                    );
                }
            }
        }
        outcomes
    }
}
