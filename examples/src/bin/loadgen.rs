//! Load generator for the benchmarks: drives the example service over HTTP, or hivelog
//! directly, at a given rate for a given time, and prints what it achieved.
//!
//! ```sh
//! # the service (one "article hit" event per request), 2,000 requests/s for 10 s over 4 connections
//! cargo run -p hivelog-examples --release --bin webapp > /dev/null &
//! cargo run -p hivelog-examples --release --bin loadgen -- --target 127.0.0.1:3000 --rate 2000 --seconds 10 --connections 4
//!
//! # hivelog alone, as fast as possible, shipping to Fluentd and not printing lines
//! HIVELOG_OUTPUT=none HIVELOG_FLUENT_ADDR=tcp://127.0.0.1:24224 \
//!   cargo run -p hivelog-examples --release --bin loadgen -- --target direct --rate 0 --seconds 10
//! ```
//!
//! The summary is one line on stderr (stdout may carry the log lines in direct mode):
//!
//! ```text
//! loadgen: http 127.0.0.1:3000: 20000 events in 10.00 s = 2000 events/s (rate 2000/s, 4 connections); errors 0; latency p50 0.21 ms, p99 0.90 ms, max 3.10 ms
//! loadgen: direct: 2411250 events in 10.00 s = 241125 events/s (rate unlimited, 1 thread); flush 0.02 s; stdout: written 2411250, failed 0; fluent: delivered 2411250, …
//! ```
//!
//! `--rate 0` means as fast as possible. Each worker (`--connections`, one thread each) sends
//! its share of the rate on a fixed schedule, so a slow answer is followed by a burst that
//! catches up rather than a lower rate (open-loop for the overall rate, closed-loop per
//! connection). In direct mode, the events count as done when `tracing::info!` returns (hivelog
//! only enqueues); the time the sinks then need to deliver them is reported as `flush`.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hivelog_examples::http::{Connection, Response};

const USAGE: &str = "usage: loadgen [--target direct|HOST:PORT] [--rate EVENTS_PER_S, 0 = unlimited] [--seconds N] [--connections N]
defaults: --target 127.0.0.1:3000 --rate 1000 --seconds 10 --connections 1";

/// The longest time the direct mode waits for the sinks to deliver after the run.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq)]
struct Args {
    target: Target,
    rate: f64,
    seconds: f64,
    workers: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Target {
    Direct,
    Http(String),
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut out = Args {
        target: Target::Http("127.0.0.1:3000".to_owned()),
        rate: 1000.0,
        seconds: 10.0,
        workers: 1,
    };
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            return Err(USAGE.to_owned());
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let number = |what: &str| {
            value
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| format!("{flag}: '{value}' is not {what}\n{USAGE}"))
        };
        match flag.as_str() {
            "--target" => {
                out.target = match value.as_str() {
                    "direct" => Target::Direct,
                    v => Target::Http(
                        v.trim_start_matches("http://")
                            .trim_end_matches('/')
                            .to_owned(),
                    ),
                }
            }
            "--rate" => out.rate = number("a rate")?,
            "--seconds" => out.seconds = number("a duration in seconds")?,
            "--connections" | "--threads" => {
                out.workers = number("a count")? as usize;
                if out.workers == 0 {
                    return Err(format!("{flag} must be at least 1\n{USAGE}"));
                }
            }
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    Ok(out)
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match &args.target {
        Target::Direct => direct(&args),
        Target::Http(addr) => http(&args, addr),
    }
}

/// When worker `i` of `workers` should send its `n`-th event (`None`: no schedule).
fn due(args: &Args, start: Instant, n: u64) -> Option<Instant> {
    (args.rate > 0.0)
        .then(|| start + Duration::from_secs_f64(n as f64 * args.workers as f64 / args.rate))
}

/// Waits until `at` when it is more than a millisecond away (sleeping any less is too coarse
/// to help: being slightly behind is caught up by the next events).
fn wait_until(at: Option<Instant>) {
    if let Some(at) = at {
        let now = Instant::now();
        if at > now + Duration::from_millis(1) {
            std::thread::sleep(at - now);
        }
    }
}

fn direct(args: &Args) -> ExitCode {
    let logs = hivelog::init();
    let run = Duration::from_secs_f64(args.seconds);
    let start = Instant::now();
    let total = Arc::new(AtomicU64::new(0));
    std::thread::scope(|s| {
        for w in 0..args.workers {
            let total = total.clone();
            s.spawn(move || {
                let span = tracing::info_span!("hit", id = w);
                let _entered = span.enter();
                let mut n = 0u64;
                while start.elapsed() < run {
                    wait_until(due(args, start, n));
                    tracing::info!(
                        user = "load@example.com",
                        article = "https://example.com/articles/7",
                        n,
                        "article hit"
                    );
                    n += 1;
                }
                total.fetch_add(n, Ordering::Relaxed);
            });
        }
    });
    let elapsed = start.elapsed();
    let flush_start = Instant::now();
    let report = logs.shutdown(FLUSH_TIMEOUT);
    let events = total.load(Ordering::Relaxed);
    let outputs = match report.to_string() {
        s if s.is_empty() => "no outputs (HIVELOG_OUTPUT=none and no sink)".to_owned(),
        s => s.trim_start_matches("; ").to_owned(),
    };
    eprintln!(
        "loadgen: direct: {events} events in {:.2} s = {:.0} events/s ({}, {} thread{}); flush {:.2} s; {outputs}",
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64(),
        rate_text(args.rate),
        args.workers,
        if args.workers == 1 { "" } else { "s" },
        flush_start.elapsed().as_secs_f64(),
    );
    if report.is_complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn http(args: &Args, addr: &str) -> ExitCode {
    let run = Duration::from_secs_f64(args.seconds);
    let start = Instant::now();
    let results: Vec<(Vec<Duration>, u64, Option<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..args.workers)
            .map(|w| {
                s.spawn(move || {
                    let mut latencies = Vec::new();
                    let mut errors = 0u64;
                    let mut last_error = None;
                    let mut conn = None;
                    let mut n = 0u64;
                    while start.elapsed() < run {
                        wait_until(due(args, start, n));
                        n += 1;
                        let sent = Instant::now();
                        let path = format!("/hit/{}", n * 16 + w as u64);
                        let result = hit(&mut conn, addr, &path);
                        match result {
                            Ok(r) if r.status == 303 => latencies.push(sent.elapsed()),
                            Ok(r) => {
                                errors += 1;
                                last_error = Some(format!("status {}", r.status));
                            }
                            Err(e) => {
                                errors += 1;
                                last_error = Some(e.to_string());
                                // A refused connection fails at once: do not spin on it.
                                std::thread::sleep(Duration::from_millis(10));
                            }
                        }
                    }
                    (latencies, errors, last_error)
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let elapsed = start.elapsed();
    let errors: u64 = results.iter().map(|r| r.1).sum();
    let last_error = results.iter().find_map(|r| r.2.clone());
    let mut latencies: Vec<Duration> = results.into_iter().flat_map(|r| r.0).collect();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    eprintln!(
        "loadgen: http {addr}: {} events in {:.2} s = {:.0} events/s ({}, {} connection{}); errors {errors}{}; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        rate_text(args.rate),
        args.workers,
        if args.workers == 1 { "" } else { "s" },
        last_error.map(|e| format!(" (last: {e})")).unwrap_or_default(),
        pct(0.5),
        pct(0.99),
        pct(1.0),
    );
    if errors == 0 && !latencies.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `GET path` on the worker's connection, opening it first when there is none.
fn hit(conn: &mut Option<Connection>, addr: &str, path: &str) -> std::io::Result<Response> {
    let mut c = match conn.take() {
        Some(c) => c,
        None => Connection::open(addr)?,
    };
    let response = c.get(path, Some("email=load@example.com"))?;
    *conn = Some(c);
    Ok(response)
}

fn rate_text(rate: f64) -> String {
    if rate > 0.0 {
        format!("rate {rate:.0}/s")
    } else {
        "rate unlimited".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Args, String> {
        parse_args(s.split_whitespace().map(str::to_owned))
    }

    #[test]
    fn options_have_defaults_and_are_checked() {
        let a = args("").unwrap();
        assert_eq!(a.target, Target::Http("127.0.0.1:3000".to_owned()));
        assert_eq!((a.rate, a.seconds, a.workers), (1000.0, 10.0, 1));
        let a = args("--target direct --rate 0 --seconds 2 --threads 4").unwrap();
        assert_eq!(
            (a.target, a.rate, a.seconds, a.workers),
            (Target::Direct, 0.0, 2.0, 4)
        );
        let a = args("--target http://127.0.0.1:8080/").unwrap();
        assert_eq!(a.target, Target::Http("127.0.0.1:8080".to_owned()));
        assert!(args("--rate fast")
            .unwrap_err()
            .starts_with("--rate: 'fast' is not a rate"));
        assert!(args("--connections 0").is_err());
        assert!(args("--seconds").is_err());
        assert!(args("--bogus 1")
            .unwrap_err()
            .starts_with("unknown option --bogus"));
    }

    #[test]
    fn each_worker_gets_its_share_of_the_rate() {
        let a = Args {
            target: Target::Direct,
            rate: 1000.0,
            seconds: 1.0,
            workers: 4,
        };
        let start = Instant::now();
        assert_eq!(due(&a, start, 10), Some(start + Duration::from_millis(40)));
        assert_eq!(due(&Args { rate: 0.0, ..a }, start, 10), None);
    }
}
