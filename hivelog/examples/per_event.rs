//! Runs one benchmark event N times under one subscriber, for instruction counting with
//! callgrind (repeatable on a noisy machine, unlike wall time):
//!
//! ```sh
//! cargo build --release -p hivelog --example per_event
//! for s in hivelog tracing_subscriber; do for c in event span filtered nested nested_after_record; do
//!   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$s.$c target/release/examples/per_event $s $c 200000
//! done; done
//! ```
//! and divide each total by N (the setup is a fixed few hundred thousand instructions; run
//! with N=0 to subtract it). `hivelog_pipeline` is capture + enqueue into a pipeline with a
//! counting sink and no local output; run it with `--separate-threads=yes` and read the main
//! thread's file, to count the caller's work only (`tracing_subscriber_plain` is its baseline,
//! `fmt().json()`). `hivelog_async_file` is the default local output (writer thread) into a
//! file in the temp directory, the same way; its `paced` case pauses 1 ms every 100 events, so
//! that the writer formats every record and hands it back for reuse, as in a service's steady
//! state (the calling thread's count is then the log call's alone), and `paced_span` is the
//! same inside the span. `hivelog_level_file` and
//! `hivelog_rate_limit` are `hivelog` with
//! `HIVELOG_LEVEL_FILE` (after a change and back) and with `HIVELOG_RATE_LIMIT` never reached.
//! `traced_span` (hivelog only) is `span` with the span in a trace
//! (`hivelog::trace::start`), so its lines carry `trace_id` and `span_id`.
//!
//! The request buffer (issue 20): `hivelog_buffer` (sync local output) and
//! `hivelog_async_buffer` (writer thread, `--separate-threads=yes`) are `hivelog` and
//! `hivelog_async_file` with `HIVELOG_REQUEST_BUFFER_LEVEL=debug`. Their cases: `held` is the
//! `span` event at DEBUG inside the span (held; one long request, so past 64 KiB each line also
//! evicts the oldest), `held_requests` the same in requests of 10 lines (a new span each, then
//! discarded; `requests` is the same with INFO lines, written), `outside` is `filtered` (a `debug!` outside any span, not held), and `span` /
//! `filtered` as above for the written INFO line and the buffer's cost to everything else.
//!
//! `hivelog_two` is `hivelog_async_file` plus a sink that counts: every event goes to both.
//!
//! `hivelog_layer` is `hivelog` as one layer (`Builder::layer`) of a registry that also has a
//! `fmt().json()` layer filtered at WARN (to `io::sink()`), each with its own filter.
//! `noop` is a registry with only a layer that takes every event and does nothing, and
//! `hivelog_layer_noop` the same plus hivelog's layer: with `filtered`, their difference is
//! what hivelog adds to a `debug!` it filters out that another layer wants.
//!
//! `hivelog_metrics` is `hivelog` with `HIVELOG_METRICS=emf` (and a dimension); with it,
//! `plain3` is the benchmark event with three more numeric fields and `metric3` the same event
//! with those three as `metric.*` fields (an EMF document); `plain1`/`metric1` the same with
//! one field; `hivelog_metrics_nodim` is `hivelog_metrics` without the dimension.

use std::io;

use tracing::{debug, info, info_span, Dispatch};
use tracing_subscriber::layer::{Layer, SubscriberExt};

/// A layer that takes every event and does nothing with it.
struct Noop;

impl<S: tracing::Subscriber> Layer<S> for Noop {}

/// hivelog's builder as the `hivelog` case has it, writing to `io::sink()` on the calling thread.
fn sync_builder() -> hivelog::Builder {
    hivelog::builder()
        .env(hivelog::Env::from_pairs(Vec::<(String, String)>::new()))
        .extra("service", "bench")
        .extra("environment", "prod")
        .output_mode(hivelog::OutputMode::Sync)
        .writer(io::sink())
}

/// A sink that accepts everything.
struct Counting;

impl hivelog::core::Sink for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }
    fn limits(&self) -> hivelog::core::BatchLimits {
        hivelog::core::BatchLimits {
            max_events: 10_000,
            max_bytes: 8 << 20,
        }
    }
    async fn send(&mut self, batch: &[hivelog::core::Record]) -> hivelog::core::Outcomes {
        hivelog::core::Outcomes::delivered(batch.len())
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (sub, case, n) = (
        args[1].as_str(),
        args[2].as_str(),
        args[3].parse::<u64>().unwrap(),
    );
    let file = std::env::temp_dir().join(format!("per_event_level.{}", std::process::id()));
    let (dispatch, _guard) = match sub {
        // Capture + enqueue into a pipeline whose sink only counts (no local output).
        "hivelog_pipeline" => {
            let (d, g) = hivelog::builder()
                .env(hivelog::Env::from_pairs(Vec::<(String, String)>::new()))
                .extra("service", "bench")
                .extra("environment", "prod")
                .output(hivelog::Output::None)
                .sink(|_| Counting)
                .try_build()
                .unwrap();
            (d, Some(g))
        }
        // Volume control (issue 15): `hivelog` plus a level file changed to `debug` and back,
        // or plus a rate limit never reached.
        "hivelog"
        | "hivelog_level_file"
        | "hivelog_rate_limit"
        | "hivelog_buffer"
        | "hivelog_metrics"
        | "hivelog_metrics_nodim" => {
            let vars: Vec<(String, String)> = match sub {
                "hivelog_buffer" => vec![("HIVELOG_REQUEST_BUFFER_LEVEL".into(), "debug".into())],
                "hivelog_level_file" => {
                    std::fs::write(&file, "info\n").unwrap();
                    vec![("HIVELOG_LEVEL_FILE".into(), file.display().to_string())]
                }
                "hivelog_rate_limit" => vec![("HIVELOG_RATE_LIMIT".into(), "1000000000/s".into())],
                "hivelog_metrics_nodim" => vec![("HIVELOG_METRICS".into(), "emf".into())],
                "hivelog_metrics" => vec![
                    ("HIVELOG_METRICS".into(), "emf".into()),
                    ("HIVELOG_METRICS_DIMENSIONS".into(), "route".into()),
                ],
                _ => Vec::new(),
            };
            let (d, g) = hivelog::builder()
                .env(hivelog::Env::from_pairs(vars))
                .extra("service", "bench")
                .extra("environment", "prod")
                .output_mode(hivelog::OutputMode::Sync)
                .writer(io::sink())
                .try_build()
                .unwrap();
            if sub == "hivelog_level_file" {
                g.set_level("debug").unwrap();
                g.set_level("info").unwrap();
            }
            (d, Some(g))
        }
        // hivelog as one layer beside `fmt().json()` at WARN, each with its own filter.
        "hivelog_layer" => {
            let (layer, g) = sync_builder().layer().unwrap();
            let fmt = tracing_subscriber::fmt::layer()
                .json()
                .with_writer(io::sink)
                .with_filter(tracing_subscriber::filter::LevelFilter::WARN);
            let d = Dispatch::new(tracing_subscriber::registry().with(layer).with(fmt));
            (d, Some(g))
        }
        "noop" => (
            Dispatch::new(tracing_subscriber::registry().with(Noop)),
            None,
        ),
        "hivelog_layer_noop" => {
            let (layer, g) = sync_builder().layer().unwrap();
            let d = Dispatch::new(tracing_subscriber::registry().with(layer).with(Noop));
            (d, Some(g))
        }
        // The default local output (writer thread) into a file: run with
        // `--separate-threads=yes` to count the caller's and the writer's work apart.
        // `hivelog_two` adds a sink: each event goes to both.
        "hivelog_async_file" | "hivelog_async_buffer" | "hivelog_two" => {
            let mut vars = vec![("HIVELOG_BUFFER_BYTES", "1GB")];
            if sub == "hivelog_async_buffer" {
                vars.push(("HIVELOG_REQUEST_BUFFER_LEVEL", "debug"));
            }
            let mut builder = hivelog::builder()
                .env(hivelog::Env::from_pairs(vars))
                .extra("service", "bench")
                .extra("environment", "prod")
                .output(hivelog::Output::File {
                    path: std::env::temp_dir().join("per_event_async.log"),
                    rotation: hivelog::Rotation::Never,
                    keep: 1,
                });
            if sub == "hivelog_two" {
                builder = builder.sink(|_| Counting);
            }
            let (d, g) = builder.try_build().unwrap();
            (d, Some(g))
        }
        _ => {
            let b = tracing_subscriber::fmt()
                .json()
                .flatten_event(true)
                .with_writer(io::sink);
            let d = if case == "span" {
                Dispatch::new(b.with_current_span(true).with_span_list(false).finish())
            } else {
                Dispatch::new(b.finish())
            };
            (d, None)
        }
    };
    tracing::dispatcher::with_default(&dispatch, || {
        let span = info_span!("handle", request_id = 42, route = "/hit");
        if case == "traced_span" {
            hivelog::trace::start(&span, None);
        }
        let nested = case.starts_with("nested");
        let in_span = matches!(case, "span" | "traced_span" | "held" | "paced_span");
        let _entered = (in_span || nested).then(|| span.enter());
        let inner = info_span!("load", article = 7);
        let _inner = nested.then(|| inner.enter());
        if case == "nested_after_record" {
            // The process's first Span::record, on an unrelated span: from now on capture
            // checks that an event's span chain is current.
            let s = info_span!("recorded", status = tracing::field::Empty);
            s.record("status", 200);
        }
        if case == "held_requests" || case == "requests" {
            for _ in 0..n / 10 {
                let request = info_span!("handle", request_id = 42, route = "/hit");
                let _in = request.enter();
                for _ in 0..10 {
                    if case == "requests" {
                        info!(
                            user = "a@b.c",
                            article = "https://example.com/x",
                            "article hit"
                        );
                    } else {
                        debug!(
                            user = "a@b.c",
                            article = "https://example.com/x",
                            "article hit"
                        );
                    }
                }
            }
            return;
        }
        // One loop per case, so that a loop iteration is the log call alone.
        match case {
            "filtered" | "outside" => {
                for _ in 0..n {
                    debug!(x = 1, "filtered")
                }
            }
            "held" => {
                for _ in 0..n {
                    debug!(
                        user = "a@b.c",
                        article = "https://example.com/x",
                        "article hit"
                    )
                }
            }
            "plain3" => {
                for _ in 0..n {
                    info!(
                        user = "a@b.c",
                        article = "https://example.com/x",
                        latency_ms = 12.5,
                        body_bytes = 512u64,
                        retries_count = 1,
                        "article hit"
                    )
                }
            }
            "plain1" => {
                for _ in 0..n {
                    info!(
                        user = "a@b.c",
                        article = "https://example.com/x",
                        latency_ms = 12.5,
                        "article hit"
                    )
                }
            }
            "metric1" => {
                for _ in 0..n {
                    info!(
                        user = "a@b.c",
                        article = "https://example.com/x",
                        metric.latency_ms = 12.5,
                        "article hit"
                    )
                }
            }
            "metric3" => {
                for _ in 0..n {
                    info!(
                        user = "a@b.c",
                        article = "https://example.com/x",
                        metric.latency_ms = 12.5,
                        metric.body_bytes = 512u64,
                        metric.retries_count = 1,
                        "article hit"
                    )
                }
            }
            // The `event` case with a pause of 1 ms every 100 events, so that a writer thread
            // drains between them and the caller's thread counts a log call in a service's
            // steady state (`hivelog_async_file`, `--separate-threads=yes`).
            "paced" | "paced_span" => {
                for i in 0..n {
                    if i % 100 == 0 {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    info!(
                        user = "a@b.c",
                        article = "https://example.com/x",
                        "article hit"
                    )
                }
            }
            _ => {
                for _ in 0..n {
                    info!(
                        user = "a@b.c",
                        article = "https://example.com/x",
                        "article hit"
                    )
                }
            }
        }
    });
    let _ = std::fs::remove_file(&file);
}
