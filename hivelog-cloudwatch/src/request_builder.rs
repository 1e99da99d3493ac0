//! Records → PutLogEvents requests that CloudWatch accepts as they are.
//!
//! Every limit of [`crate::limits`] is enforced here, before anything is sent, because a
//! request that breaks one fails as a whole (and moto, the test server, would not notice):
//!
//! 1. Each record becomes one message: the formatter's JSON line or `LEVEL message`. A message
//!    longer than the event size limit is cut at a UTF-8 boundary and ends with
//!    [`limits::TRUNCATION_MARKER`]; an empty one becomes [`limits::EMPTY_MESSAGE`]. A cut JSON
//!    line is no longer valid JSON (Logs Insights then shows it as text): cutting loudly beats
//!    losing the event, and `HIVELOG_CLOUDWATCH_MAX_EVENT_BYTES=1MiB` makes it rare.
//! 2. Records outside CloudWatch's time window (14 days or the retention back, 2 hours ahead)
//!    are [`Outcome::Rejected`](hivelog_core::Outcome) right away: sending them would only get
//!    them refused one by one.
//! 3. Records are grouped by stream name (the template rendered for each record), each group
//!    sorted by timestamp (stably), then cut greedily into requests of at most 10,000 events,
//!    1,048,576 bytes (message bytes + 26 each) and less than 24 hours between first and last.
//! 4. Requests beyond the per-send cap are not sent: their records are
//!    [`Outcome::Deferred`](hivelog_core::Outcome) and come back first in the next batch.
//! 5. Batch fill: greedy filling in timestamp order keeps every request but the last of each
//!    stream within one event of the byte limit. The last one, when it follows a full one, is
//!    deferred once (see [`RequestBuilder::build`]): under a steady stream its records fill the
//!    next request instead of going out in a small one. The pipeline resends deferred records
//!    at once, without backoff, so this costs no latency worth counting.

use hivelog_core::format::time::civil_from_days;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hivelog_core::record::floor_char_boundary;
use hivelog_core::{Format, Outcome, Outcomes, Record};

use crate::config::{MessageFormat, Part, StreamTemplate};
use crate::limits;

/// One log event, ready to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Event {
    /// Position of its record in the batch handed to `send`.
    pub index: usize,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// Never empty, at most the configured event size minus 26 bytes.
    pub message: String,
    /// The message is an embedded-metric-format document (`HIVELOG_METRICS=emf`).
    pub emf: bool,
}

/// One PutLogEvents request.
#[derive(Debug)]
pub(crate) struct Put {
    /// The log stream.
    pub stream: Arc<str>,
    /// In chronological order.
    pub events: Vec<Event>,
    /// Sum of message bytes + 26 per event, as CloudWatch counts.
    pub bytes: usize,
    /// Some event is an EMF document: the request carries `x-amzn-logs-format: json/emf`.
    pub emf: bool,
}

/// What one batch becomes: the requests to send, and the outcomes already known
/// (rejected before sending, deferred); every other record is `Delivered` until a response
/// says otherwise.
#[derive(Debug)]
pub(crate) struct Plan {
    pub puts: Vec<Put>,
    pub outcomes: Outcomes,
}

/// Builds requests from records; holds everything that does not change between batches.
#[derive(Debug)]
pub(crate) struct RequestBuilder {
    format: Arc<Format>,
    message_format: MessageFormat,
    max_message_bytes: usize,
    template: StreamTemplate,
    instance: String,
    pid: String,
    max_age_ms: i64,
    max_puts: usize,
    /// The rendered name when it does not depend on the record.
    fixed_stream: Option<Arc<str>>,
}

thread_local! {
    // `encoded_len` formats the record to measure it; reusing one buffer per thread keeps
    // that free of allocations.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl RequestBuilder {
    /// A builder; `instance` is the `{instance}` value when already known.
    pub(crate) fn new(
        format: Arc<Format>,
        message_format: MessageFormat,
        max_event_bytes: usize,
        template: StreamTemplate,
        retention_days: Option<u32>,
        max_puts: usize,
        instance: Option<String>,
    ) -> Self {
        let max_event_bytes =
            max_event_bytes.clamp(limits::MIN_EVENT_BYTES, limits::MAX_EVENT_BYTES);
        let retention_ms = retention_days.map_or(i64::MAX, |d| i64::from(d) * 86_400_000);
        let mut b = RequestBuilder {
            format,
            message_format,
            max_message_bytes: max_event_bytes - limits::EVENT_OVERHEAD,
            template,
            instance: String::new(),
            pid: std::process::id().to_string(),
            max_age_ms: limits::MAX_EVENT_AGE_MS.min(retention_ms),
            max_puts: max_puts.max(1),
            fixed_stream: None,
        };
        if let Some(instance) = instance {
            b.set_instance(instance);
        }
        b
    }

    /// Sets the resolved `{instance}`.
    pub(crate) fn set_instance(&mut self, instance: String) {
        self.instance = instance;
        self.fixed_stream = (!self.template.per_record()).then(|| self.render_stream("", 0).into());
    }

    /// Whether `{instance}` is known (streams can be named).
    pub(crate) fn has_instance(&self) -> bool {
        !self.instance.is_empty()
    }

    /// The host name, the last fallback for `{instance}`.
    pub(crate) fn hostname(&self) -> &str {
        self.format.hostname()
    }

    /// The single stream of a template without `{target}` or `{date}`.
    pub(crate) fn fixed_stream(&self) -> Option<Arc<str>> {
        self.fixed_stream.clone()
    }

    /// The stream a record goes to.
    pub(crate) fn stream_of(&self, record: &Record) -> String {
        match &self.fixed_stream {
            Some(s) => s.to_string(),
            None => {
                self.render_stream(record.target(), unix_ms(record.time).div_euclid(86_400_000))
            }
        }
    }

    /// The record's message, before truncation.
    pub(crate) fn message(&self, record: &Record) -> String {
        match self.message_format {
            MessageFormat::Json => {
                let mut out = Vec::with_capacity(256);
                self.format.write_json(record, &mut out);
                match String::from_utf8(out) {
                    Ok(s) => s,
                    Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
                }
            }
            MessageFormat::Text => {
                // Built from `&str`s, so no UTF-8 validation pass is needed.
                let message = record.message();
                let level = record.level.as_str();
                let mut out = String::with_capacity(level.len() + 1 + message.len());
                out.push_str(level);
                if !message.is_empty() {
                    out.push(' ');
                    out.push_str(message);
                }
                out
            }
        }
    }

    /// The record's exact size toward a request's byte limit (message bytes + 26).
    pub(crate) fn encoded_len(&self, record: &Record) -> usize {
        let len = match self.message_format {
            MessageFormat::Text => {
                let m = record.message().len();
                record.level.as_str().len() + if m == 0 { 0 } else { m + 1 }
            }
            MessageFormat::Json => SCRATCH.with(|s| {
                let mut s = s.borrow_mut();
                s.clear();
                self.format.write_json(record, &mut s);
                let len = s.len();
                if s.capacity() > 64 * 1024 {
                    // Do not keep a huge event's buffer for the life of the thread.
                    *s = Vec::new();
                }
                len
            }),
        };
        let len = if len == 0 {
            limits::EMPTY_MESSAGE.len()
        } else {
            len.min(self.max_message_bytes)
        };
        len + limits::EVENT_OVERHEAD
    }

    /// Turns a batch into requests, rejecting what CloudWatch would refuse at `now`.
    ///
    /// Batch fill: when a stream's records fill one request or more, the partly filled last one
    /// is deferred, so its records lead the next batch and fill a request with newer ones.
    /// `deferred` holds the `seq` of the records deferred that way before: a record is held
    /// back at most once (a flush, or a record far ahead in time that always sorts last,
    /// must not wait forever), and a lone partial request is always sent.
    pub(crate) fn build(
        &self,
        batch: &[Record],
        now: SystemTime,
        deferred: &mut HashSet<u64>,
    ) -> Plan {
        let now_ms = unix_ms(now);
        let mut outcomes = Outcomes::delivered(batch.len());
        let mut streams: Vec<(Arc<str>, Vec<Event>)> = Vec::new();
        let mut by_name: HashMap<(&str, i64), usize> = HashMap::new();
        let mut last: Option<((&str, i64), usize)> = None;
        for (index, record) in batch.iter().enumerate() {
            let timestamp = unix_ms(record.time);
            if timestamp < now_ms.saturating_sub(self.max_age_ms) {
                outcomes.reject(index, limits::reason::TOO_OLD);
                continue;
            }
            if timestamp > now_ms.saturating_add(limits::MAX_EVENT_AHEAD_MS) {
                outcomes.reject(index, limits::reason::TOO_NEW);
                continue;
            }
            let message = prepare_message(self.message(record), self.max_message_bytes);
            let emf = self.message_format == MessageFormat::Json && self.format.has_metrics(record);
            let event = Event {
                index,
                timestamp,
                message,
                emf,
            };
            let slot = match &self.fixed_stream {
                // One stream for the process: no per-record lookup.
                Some(name) => {
                    if streams.is_empty() {
                        streams.push((name.clone(), Vec::with_capacity(batch.len())));
                    }
                    0
                }
                None => {
                    let key = (record.target(), timestamp.div_euclid(86_400_000));
                    // Consecutive records mostly share a logger (its target is the same
                    // `&'static str`): compare pointers before hashing.
                    match last {
                        Some(((t, d), i)) if std::ptr::eq(t, key.0) && d == key.1 => i,
                        _ => {
                            let i = *by_name.entry(key).or_insert_with(|| {
                                let name: Arc<str> = self.render_stream(key.0, key.1).into();
                                // Two keys can render the same name (no {date} in the template).
                                if let Some(i) = streams.iter().position(|(n, _)| *n == name) {
                                    return i;
                                }
                                streams.push((name, Vec::new()));
                                streams.len() - 1
                            });
                            last = Some((key, i));
                            i
                        }
                    }
                }
            };
            streams[slot].1.push(event);
        }
        let held_before = std::mem::take(deferred);
        let may_defer = |e: &Event| !held_before.contains(&batch[e.index].seq);
        let puts = pack(streams, self.max_puts, &may_defer, &mut outcomes);
        for (record, outcome) in batch.iter().zip(outcomes.as_slice()) {
            if *outcome == Outcome::Deferred {
                deferred.insert(record.seq);
            }
        }
        Plan { puts, outcomes }
    }

    /// The stream name for a record of `target` on day `day` (days since the epoch).
    fn render_stream(&self, target: &str, day: i64) -> String {
        let mut name = String::with_capacity(64);
        for part in &self.template.parts {
            match part {
                Part::Literal(s) => name.push_str(s),
                Part::Instance => name.push_str(&self.instance),
                Part::Service => name.push_str(self.format.service()),
                Part::Hostname => name.push_str(self.format.hostname()),
                Part::Pid => name.push_str(&self.pid),
                Part::Target => name.push_str(target),
                Part::Date => {
                    let (y, m, d) = civil_from_days(day);
                    let _ = write!(name, "{y:04}-{m:02}-{d:02}");
                }
            }
        }
        sanitize_stream_name(name)
    }
}

/// Replaces the characters CloudWatch forbids, caps the length, and never returns "".
pub(crate) fn sanitize_stream_name(name: String) -> String {
    let mut name: String = name
        .chars()
        .map(|c| {
            if limits::STREAM_NAME_FORBIDDEN.contains(&c) {
                limits::STREAM_NAME_REPLACEMENT
            } else {
                c
            }
        })
        .collect();
    name.truncate(floor_char_boundary(&name, limits::MAX_STREAM_NAME_LEN));
    if name.is_empty() {
        name.push(limits::STREAM_NAME_REPLACEMENT);
    }
    name
}

/// A message → one CloudWatch accepts: not empty, at most `max_bytes`, cut at a char
/// boundary with the marker when longer.
pub(crate) fn prepare_message(mut s: String, max_bytes: usize) -> String {
    if s.is_empty() {
        s.push_str(limits::EMPTY_MESSAGE);
    }
    if s.len() > max_bytes {
        let keep = floor_char_boundary(&s, max_bytes - limits::TRUNCATION_MARKER.len());
        s.truncate(keep);
        s.push_str(limits::TRUNCATION_MARKER);
    }
    s
}

/// Cuts each stream's events, in timestamp order, into requests within every limit; events
/// beyond `max_puts` requests are deferred. A stream's last request, when it follows one that
/// was closed full (count or bytes), is deferred too if `may_defer` allows it for every one of
/// its events (see [`RequestBuilder::build`]).
pub(crate) fn pack(
    streams: Vec<(Arc<str>, Vec<Event>)>,
    max_puts: usize,
    may_defer: &dyn Fn(&Event) -> bool,
    outcomes: &mut Outcomes,
) -> Vec<Put> {
    let mut puts: Vec<Put> = Vec::new();
    for (stream, mut events) in streams {
        events.sort_by_key(|e| e.timestamp);
        // Whether the stream's previous request was closed because it was full (not because
        // of the 24 h span): only then is a partial last request worth holding back.
        let mut after_full = false;
        let mut current: Option<Put> = None;
        let mut left = events.len();
        for event in events {
            left -= 1;
            let size = event.message.len() + limits::EVENT_OVERHEAD;
            let full = current.as_ref().is_some_and(|p| {
                p.events.len() >= limits::MAX_BATCH_EVENTS
                    || p.bytes + size > limits::MAX_BATCH_BYTES
            });
            let fits = !full
                && current.as_ref().is_some_and(|p| {
                    event.timestamp - p.events[0].timestamp < limits::MAX_BATCH_SPAN_MS
                });
            if !fits {
                after_full = full;
                if let Some(full) = current.take() {
                    puts.push(full);
                }
                if puts.len() >= max_puts {
                    outcomes.defer(event.index);
                    continue;
                }
                current = Some(Put {
                    stream: stream.clone(),
                    events: Vec::with_capacity((left + 1).min(limits::MAX_BATCH_EVENTS)),
                    bytes: 0,
                    emf: false,
                });
            }
            let put = current.as_mut().expect("a request is open");
            put.bytes += size;
            put.emf |= event.emf;
            put.events.push(event);
        }
        if let Some(last) = current {
            if after_full && last.events.iter().all(may_defer) {
                for e in &last.events {
                    outcomes.defer(e.index);
                }
            } else {
                puts.push(last);
            }
        }
    }
    puts
}

/// Milliseconds since the Unix epoch (negative before it).
pub(crate) fn unix_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hivelog_core::record::Str;
    use proptest::prelude::*;
    use std::time::Duration;
    use tracing_core::Level;

    impl RequestBuilder {
        /// `build` for tests of one batch: nothing deferred before.
        fn build_once(&self, batch: &[Record], now: SystemTime) -> Plan {
            self.build(batch, now, &mut HashSet::new())
        }
    }

    fn record(target: &'static str, message: &str, time: SystemTime) -> Record {
        let mut r = Record::new(Level::INFO, Str::Static(target), 4 << 20, 0);
        r.message = Some(r.fields.push_str(message));
        r.time = time;
        r
    }

    fn builder(fmt: MessageFormat, template: &str, max_event: usize) -> RequestBuilder {
        let format = Arc::new(Format::builder().service("svc").build());
        RequestBuilder::new(
            format,
            fmt,
            max_event,
            StreamTemplate::parse(template).unwrap(),
            None,
            64,
            Some("i-0abc".into()),
        )
    }

    #[test]
    fn text_messages_are_level_space_message() {
        let b = builder(MessageFormat::Text, "s", limits::DEFAULT_MAX_EVENT_BYTES);
        let now = SystemTime::now();
        let plan = b.build_once(
            &[record("app", "article hit", now), record("app", "", now)],
            now,
        );
        let msgs: Vec<&str> = plan.puts[0]
            .events
            .iter()
            .map(|e| e.message.as_str())
            .collect();
        assert_eq!(msgs, ["INFO article hit", "INFO"]);
        assert_eq!(
            plan.puts[0].bytes,
            b.encoded_len(&record("app", "article hit", now)) + 4 + 26
        );
    }

    #[test]
    fn json_messages_are_the_formatters_line_and_encoded_len_is_exact() {
        let b = builder(MessageFormat::Json, "s", limits::DEFAULT_MAX_EVENT_BYTES);
        let now = SystemTime::now();
        let r = record("app", "héllo \"x\"", now);
        let plan = b.build_once(std::slice::from_ref(&r), now);
        let msg = &plan.puts[0].events[0].message;
        let v: serde_json::Value = serde_json::from_str(msg).unwrap();
        assert_eq!(v["message"], "héllo \"x\"");
        assert_eq!(b.encoded_len(&r), msg.len() + 26);
    }

    #[test]
    fn long_messages_are_cut_at_a_char_boundary_with_a_marker() {
        let b = builder(MessageFormat::Text, "s", 1024);
        let now = SystemTime::now();
        let r = record("app", &"é".repeat(2000), now);
        let plan = b.build_once(std::slice::from_ref(&r), now);
        let msg = &plan.puts[0].events[0].message;
        assert!(msg.len() <= 1024 - 26);
        assert!(msg.ends_with(limits::TRUNCATION_MARKER));
        assert!(msg.starts_with("INFO éé"));
        assert_eq!(b.encoded_len(&r), 1024);
    }

    #[test]
    fn stream_names_render_placeholders_and_replace_forbidden_characters() {
        let b = builder(
            MessageFormat::Text,
            "{instance}/{target}/{date}/{service}*{pid}",
            1024,
        );
        let t = UNIX_EPOCH + Duration::from_secs(1_743_435_910); // 2025-03-31T15:45:10Z
        let plan = b.build_once(&[record("my_svc::db", "x", t)], t);
        assert_eq!(
            &*plan.puts[0].stream,
            format!("i-0abc/my_svc__db/2025-03-31/svc_{}", std::process::id())
        );
        assert_eq!(sanitize_stream_name(String::new()), "_");
        assert_eq!(sanitize_stream_name("é".repeat(400)).len(), 512);
    }

    #[test]
    fn one_stream_per_target_with_the_target_placeholder() {
        let b = builder(MessageFormat::Text, "{target}", 1024);
        let now = SystemTime::now();
        let batch = [
            record("a", "1", now),
            record("b", "2", now),
            record("a", "3", now),
        ];
        let plan = b.build_once(&batch, now);
        let got: Vec<(&str, Vec<usize>)> = plan
            .puts
            .iter()
            .map(|p| (&*p.stream, p.events.iter().map(|e| e.index).collect()))
            .collect();
        assert_eq!(got, [("a", vec![0, 2]), ("b", vec![1])]);
    }

    #[test]
    fn events_outside_the_time_window_are_rejected_before_sending() {
        let b = builder(MessageFormat::Text, "s", 1024);
        let now = SystemTime::now();
        let batch = [
            record("a", "old", now - Duration::from_secs(15 * 86_400)),
            record("a", "ok", now - Duration::from_secs(13 * 86_400)),
            record("a", "new", now + Duration::from_secs(3 * 3600)),
            record("a", "ok2", now + Duration::from_secs(3600)),
        ];
        let plan = b.build_once(&batch, now);
        let o = plan.outcomes.as_slice();
        assert!(
            matches!(o[0], Outcome::Rejected(r) if plan.outcomes.reason(r) == limits::reason::TOO_OLD)
        );
        assert!(
            matches!(o[2], Outcome::Rejected(r) if plan.outcomes.reason(r) == limits::reason::TOO_NEW)
        );
        assert_eq!((o[1], o[3]), (Outcome::Delivered, Outcome::Delivered));
        let sent: usize = plan.puts.iter().map(|p| p.events.len()).sum();
        assert_eq!(sent, 2);
    }

    #[test]
    fn retention_shortens_the_window() {
        let format = Arc::new(Format::builder().service("svc").build());
        let b = RequestBuilder::new(
            format,
            MessageFormat::Text,
            1024,
            StreamTemplate::parse("s").unwrap(),
            Some(1),
            8,
            Some("i".into()),
        );
        let now = SystemTime::now();
        let plan = b.build_once(
            &[record(
                "a",
                "2 days old",
                now - Duration::from_secs(2 * 86_400),
            )],
            now,
        );
        assert!(matches!(plan.outcomes.as_slice()[0], Outcome::Rejected(_)));
    }

    #[test]
    fn requests_beyond_the_cap_are_deferred() {
        let events: Vec<Event> = (0..25_000)
            .map(|i| Event {
                index: i,
                timestamp: 1,
                message: "x".into(),
                emf: false,
            })
            .collect();
        let mut outcomes = Outcomes::delivered(25_000);
        let puts = pack(vec![("s".into(), events)], 2, &|_| false, &mut outcomes);
        assert_eq!(puts.len(), 2);
        assert_eq!(puts.iter().map(|p| p.events.len()).sum::<usize>(), 20_000);
        let deferred = outcomes
            .as_slice()
            .iter()
            .filter(|o| **o == Outcome::Deferred)
            .count();
        assert_eq!(deferred, 5_000);
    }

    #[test]
    fn a_steady_stream_of_200_byte_events_fills_requests_to_the_byte_limit() {
        let events: Vec<Event> = (0..30_000)
            .map(|i| Event {
                index: i,
                timestamp: i as i64,
                message: "m".repeat(200),
                emf: false,
            })
            .collect();
        let mut outcomes = Outcomes::delivered(30_000);
        let puts = pack(vec![("s".into(), events)], 64, &|_| true, &mut outcomes);
        for p in &puts[..puts.len() - 1] {
            assert!(
                p.bytes as f64 >= 0.99 * limits::MAX_BATCH_BYTES as f64,
                "{}",
                p.bytes
            );
        }
    }

    #[test]
    fn a_partial_last_request_after_a_full_one_is_deferred_once() {
        let b = builder(MessageFormat::Text, "s", 1024);
        let now = SystemTime::now();
        let batch: Vec<Record> = (0..12_000u64)
            .map(|i| {
                let mut r = record("app", "m", now);
                r.seq = i;
                r
            })
            .collect();
        let mut deferred = HashSet::new();
        let plan = b.build(&batch, now, &mut deferred);
        assert_eq!(plan.puts.len(), 1);
        assert_eq!(plan.puts[0].events.len(), limits::MAX_BATCH_EVENTS);
        assert_eq!(deferred.len(), 2_000);
        // The deferred records lead the next batch; now they go, even in a partial request.
        let again: Vec<Record> = batch[10_000..].to_vec();
        let plan = b.build(&again, now, &mut deferred);
        assert_eq!(plan.puts.len(), 1);
        assert_eq!(plan.puts[0].events.len(), 2_000);
        assert!(deferred.is_empty());
        // A lone partial request is never held back.
        let plan = b.build(&batch[..10], now, &mut deferred);
        assert_eq!(plan.puts[0].events.len(), 10);
    }

    /// Event streams: mostly short messages, some multi-byte, some huge, some empty; timestamps
    /// jittered (out of order) over up to three days.
    fn events() -> impl Strategy<Value = (Vec<(i64, String)>, usize)> {
        let message = prop_oneof![
            8 => "[a-z]{0,40}",
            3 => "[αβγ€😀a-z]{0,60}",
            1 => Just(String::new()),
            1 => (1usize..400_000).prop_map(|n| "€".repeat(n / 3)),
            1 => (1usize..5).prop_map(|n| "x".repeat(n * 100_000)),
        ];
        let ts = prop_oneof![
            4 => 0i64..5_000,
            1 => 0i64..(3 * limits::MAX_BATCH_SPAN_MS),
        ];
        let count = prop_oneof![3 => 0usize..200, 1 => 9_000usize..25_000];
        let max_event = prop_oneof![
            Just(limits::DEFAULT_MAX_EVENT_BYTES),
            Just(limits::MAX_EVENT_BYTES),
            Just(limits::MIN_EVENT_BYTES),
        ];
        (count, max_event).prop_flat_map(move |(n, max)| {
            (
                proptest::collection::vec((ts.clone(), message.clone()), n),
                Just(max),
            )
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

        #[test]
        fn no_request_ever_breaks_a_putlogevents_limit((input, max_event) in events(), max_puts in 1usize..8) {
            let max_msg = max_event - limits::EVENT_OVERHEAD;
            let n = input.len();
            let half = n / 2;
            let mut streams: Vec<(Arc<str>, Vec<Event>)> = vec![("a".into(), Vec::new()), ("b".into(), Vec::new())];
            for (index, (timestamp, text)) in input.into_iter().enumerate() {
                let message = prepare_message(text, max_msg);
                streams[usize::from(index >= half)].1.push(Event { index, timestamp, message, emf: false });
            }
            let mut outcomes = Outcomes::delivered(n);
            let puts = pack(streams, max_puts, &|e: &Event| e.index % 3 != 0, &mut outcomes);
            prop_assert!(puts.len() <= max_puts);
            let mut seen = vec![false; n];
            for p in &puts {
                prop_assert!(!p.events.is_empty());
                prop_assert!(p.events.len() <= limits::MAX_BATCH_EVENTS);
                let bytes: usize = p.events.iter().map(|e| e.message.len() + limits::EVENT_OVERHEAD).sum();
                prop_assert_eq!(bytes, p.bytes);
                prop_assert!(bytes <= limits::MAX_BATCH_BYTES);
                prop_assert!(p.events.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
                let span = p.events.last().unwrap().timestamp - p.events[0].timestamp;
                prop_assert!(span < limits::MAX_BATCH_SPAN_MS);
                for e in &p.events {
                    prop_assert!(!e.message.is_empty());
                    prop_assert!(e.message.len() + limits::EVENT_OVERHEAD <= max_event);
                    prop_assert!(!seen[e.index]);
                    seen[e.index] = true;
                }
            }
            for (i, o) in outcomes.as_slice().iter().enumerate() {
                // Every record is either in exactly one request or deferred, never lost.
                prop_assert_eq!(seen[i], *o == Outcome::Delivered);
                prop_assert!(seen[i] || *o == Outcome::Deferred);
            }
        }

        #[test]
        fn truncation_keeps_valid_utf8_and_marks_the_cut(text in "[a€😀]{0,400}", max in 30usize..300) {
            let msg = prepare_message(text.clone(), max);
            prop_assert!(msg.len() <= max.max(limits::EMPTY_MESSAGE.len()));
            if text.len() > max {
                prop_assert!(msg.ends_with(limits::TRUNCATION_MARKER));
                let kept = &msg[..msg.len() - limits::TRUNCATION_MARKER.len()];
                prop_assert!(text.starts_with(kept));
                prop_assert!(kept.len() + 4 > max - limits::TRUNCATION_MARKER.len());
            } else if !text.is_empty() {
                prop_assert_eq!(msg, text);
            }
        }

        #[test]
        fn records_become_requests_within_the_limits(
            msgs in proptest::collection::vec(("[a-zé€😀]{0,30}", 0u64..(3 * 86_400_000), 0usize..3), 0..300)
        ) {
            let b = builder(MessageFormat::Json, "{target}-{date}", 512);
            let base = SystemTime::now() - Duration::from_secs(4 * 86_400);
            let targets = ["app::a", "app::b", "c"];
            let batch: Vec<Record> = msgs
                .iter()
                .map(|(m, off, t)| record(targets[*t], m, base + Duration::from_millis(*off)))
                .collect();
            let plan = b.build_once(&batch, SystemTime::now());
            let mut count = 0;
            for p in &plan.puts {
                prop_assert!(!p.stream.contains(':') && !p.stream.contains('*'));
                prop_assert!(p.bytes <= limits::MAX_BATCH_BYTES);
                prop_assert!(p.events.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
                for e in &p.events {
                    prop_assert_eq!(e.message.len() + 26, b.encoded_len(&batch[e.index]).min(512));
                }
                count += p.events.len();
            }
            let deferred = plan.outcomes.as_slice().iter().filter(|o| **o == Outcome::Deferred).count();
            prop_assert_eq!(count + deferred, batch.len());
        }
    }
}
