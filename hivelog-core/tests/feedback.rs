//! No feedback loop: what the sink's own code logs through `tracing` or `log` on the
//! pipeline's thread (and on its runtime's tasks and blocking threads) never reaches the
//! application's subscriber. A separate test binary, because it installs a global subscriber.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use hivelog_core::Pipeline;
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

#[derive(Clone, Default)]
struct Counts {
    from_sink: Arc<AtomicUsize>,
    from_app: Arc<AtomicUsize>,
}

impl<S: Subscriber> Layer<S> for Counts {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        match event.metadata().target() {
            "noisy_sink" => self.from_sink.fetch_add(1, Ordering::SeqCst),
            _ => self.from_app.fetch_add(1, Ordering::SeqCst),
        };
    }
}

#[test]
fn events_logged_by_the_sink_never_reach_the_global_subscriber() {
    let counts = Counts::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(counts.clone()))
        .unwrap();
    tracing_log::LogTracer::init().unwrap();

    let ctl = Control::new();
    ctl.script().noisy = true;
    let p = Pipeline::spawn(TestSink::new(&ctl).max_events(5), fast_config()).unwrap();
    for i in 0..20 {
        p.push(numbered(i));
    }
    let report = p.shutdown(secs(10.0));
    assert_eq!(report.delivered, 20);
    assert!(ctl.seen().attempts.len() >= 4, "the sink's code ran");
    assert!(ctl.closed.load(Ordering::SeqCst));

    // The subscriber works: events from the test's own thread are seen, `log` ones too.
    tracing::info!("from the application");
    tracing_log::log::info!("from the application, through log");
    assert_eq!(counts.from_app.load(Ordering::SeqCst), 2);
    assert_eq!(counts.from_sink.load(Ordering::SeqCst), 0);
}
