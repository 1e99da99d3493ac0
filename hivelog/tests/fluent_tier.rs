//! A Fluentd tier seen from the facade: the report and the heartbeat show each server's state,
//! events delivered and events resent. (Requires the `fluent` feature: `--all-features`.)
#![cfg(feature = "fluent")]

mod support;

use std::time::Duration;

use hivelog_tests::forward::{ForwardReceiver, ReceiverConfig};
use hivelog_tests::wait_until;
use tracing::info;

#[test]
fn the_report_and_the_heartbeat_show_each_fluentd_server() {
    let a = ForwardReceiver::start(ReceiverConfig::default());
    let mut b = ForwardReceiver::start(ReceiverConfig::default());
    let buf = support::Buf::default();
    let addr = format!("{},{}", a.url(), b.url());
    let env = hivelog::Env::from_pairs([
        ("HIVELOG_FLUENT_ADDR", addr.as_str()),
        ("HIVELOG_HEARTBEAT", "1s"),
        ("HIVELOG_FLUENT_HEARTBEAT_INTERVAL", "100ms"),
    ]);
    let (dispatch, guard) = hivelog::builder()
        .env(env)
        .writer(buf.clone())
        .try_build()
        .unwrap();
    tracing::dispatcher::with_default(&dispatch, || {
        for i in 0..1000 {
            info!(i, "work");
        }
    });
    let report = guard.flush(Duration::from_secs(5));
    let received = a.count() + b.count();
    b.stop();
    let shown = report.to_string();
    for r in [&a, &b] {
        assert!(
            shown.contains(&format!("{} up, delivered ", r.url())),
            "{shown}"
        );
    }
    let delivered: u64 = report.sinks[0].endpoints.iter().map(|e| e.delivered).sum();
    assert_eq!(delivered, report.sinks[0].delivered, "{shown}");
    assert_eq!(received, delivered);
    assert!(a.count() > 0 && b.count() > 0, "{shown}");
    // The second server was stopped while idle: the sink's own check finds it down, and a
    // heartbeat line after that shows it (whichever heartbeat that is on a slow machine).
    let b_down = format!("{} down, delivered ", b.url());
    let beats = || -> Vec<String> {
        let text = buf.text();
        // Whole lines only: the writer may be in the middle of one.
        let whole = &text[..text.rfind('\n').map_or(0, |at| at + 1)];
        support::parse(whole)
            .into_iter()
            .filter(|l| l["message"] == "hivelog.heartbeat")
            .map(|l| {
                l["endpoints"]
                    .as_str()
                    .expect("endpoints in the heartbeat")
                    .to_owned()
            })
            .collect()
    };
    let shown_down = wait_until(Duration::from_secs(15), || {
        beats().iter().any(|e| e.contains(&b_down))
    });
    assert!(shown_down, "no heartbeat shows {b_down}: {:?}", beats());
    let endpoints = beats().into_iter().find(|e| e.contains(&b_down)).unwrap();
    assert!(
        endpoints.starts_with(&format!("fluent [{} up, delivered ", a.url())),
        "{endpoints}"
    );
    drop(guard);
}
