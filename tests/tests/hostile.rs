//! Hostile and broken servers: whatever a destination answers, hivelog must not crash the
//! service, must not grow memory without bound, and must still account for every event
//! (`enqueued = delivered + rejected + dropped + failed + pending`).
//!
//! Each case points a sink (through the facade) at a raw TCP server of this file that answers
//! on purpose wrongly: a 1 GB bulk response, a never-ending chunked body, a slowloris server,
//! invalid JSON, a HELO with a 4 GB nonce, acks for chunks never sent, invalid msgpack. The
//! retry window is short (`HIVELOG_RETRY_MAX_ELAPSED=2s`) so events end up `failed` quickly.
//! How much the server managed to push into the client's socket is measured: it bounds what
//! the client read and therefore what it could have buffered.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use hivelog::Env;

/// Counters of a hostile server.
#[derive(Default)]
struct Pushed {
    /// Bytes written on the connection that took the most.
    max_conn: AtomicU64,
    /// Bytes written in all.
    total: AtomicU64,
    connections: AtomicU64,
}

/// A raw TCP server running `handler` on a thread per connection.
struct RawServer {
    addr: SocketAddr,
    pushed: Arc<Pushed>,
    stop: Arc<AtomicBool>,
}

impl RawServer {
    fn start<F>(handler: F) -> RawServer
    where
        F: Fn(TcpStream, &Counter) + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let pushed = Arc::new(Pushed::default());
        let stop = Arc::new(AtomicBool::new(false));
        let handler = Arc::new(handler);
        let (p, s) = (pushed.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                p.connections.fetch_add(1, Ordering::SeqCst);
                let (h, p, s) = (handler.clone(), p.clone(), s.clone());
                std::thread::spawn(move || {
                    conn.set_write_timeout(Some(Duration::from_secs(5))).ok();
                    let c = Counter {
                        n: AtomicU64::new(0),
                        pushed: p.clone(),
                        stop: s,
                    };
                    h(conn, &c);
                });
            }
        });
        RawServer { addr, pushed, stop }
    }

    fn max_conn(&self) -> u64 {
        self.pushed.max_conn.load(Ordering::SeqCst)
    }
    fn total(&self) -> u64 {
        self.pushed.total.load(Ordering::SeqCst)
    }
    fn connections(&self) -> u64 {
        self.pushed.connections.load(Ordering::SeqCst)
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// Counts what one connection's handler wrote.
struct Counter {
    n: AtomicU64,
    pushed: Arc<Pushed>,
    stop: Arc<AtomicBool>,
}

impl Counter {
    /// Writes `b`; false once the client is gone (or the server stops).
    fn write(&self, s: &mut TcpStream, b: &[u8]) -> bool {
        if self.stop.load(Ordering::SeqCst) || s.write_all(b).is_err() {
            return false;
        }
        let n = self.n.fetch_add(b.len() as u64, Ordering::SeqCst) + b.len() as u64;
        self.pushed.max_conn.fetch_max(n, Ordering::SeqCst);
        self.pushed
            .total
            .fetch_add(b.len() as u64, Ordering::SeqCst);
        true
    }
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// Reads one HTTP/1.1 request (headers and a `Content-Length` body); false on EOF.
fn read_request(s: &mut TcpStream) -> bool {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return false,
        }
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).is_ok()
}

/// Settings for hostile cases: quick batches and retries, a 2 s retry window.
fn hostile_env(extra: &[(&str, &str)]) -> Env {
    let mut pairs: Vec<(String, String)> = [
        ("HIVELOG_OUTPUT", "none"),
        ("HIVELOG_SERVICE", "svc"),
        ("HIVELOG_FLUSH_INTERVAL", "50ms"),
        ("HIVELOG_RETRY_BASE", "10ms"),
        ("HIVELOG_RETRY_CAP", "200ms"),
        ("HIVELOG_RETRY_MAX_ELAPSED", "2s"),
        ("HIVELOG_SHUTDOWN_TIMEOUT", "2s"),
    ]
    .iter()
    .chain(extra)
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    pairs.dedup_by(|a, b| a.0 == b.0);
    Env::from_pairs(pairs)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or(0)
}

/// Logs `n` events through a facade built from `builder`, flushes for up to `wait`, checks the
/// identity with nothing delivered, and returns the sink's counters.
fn run_hostile(builder: hivelog::Builder, n: u64, wait: Duration) -> (hivelog::Stats, Duration) {
    let (dispatch, guard) = builder.try_build().unwrap_or_else(|e| panic!("{e}"));
    let run = unique("hostile");
    log_events(&dispatch, &run, 0..n, 0);
    let t = Instant::now();
    let report = guard.flush(wait);
    let took = t.elapsed();
    let s = only_sink(&report);
    assert_balanced(&s, n);
    let s2 = only_sink(&guard.shutdown(Duration::from_millis(500)));
    assert_balanced(&s2, n);
    (s2, took)
}

fn es_builder(addr: SocketAddr, extra: &[(&str, &str)]) -> hivelog::Builder {
    let url = format!("http://{addr}");
    let mut pairs = vec![
        ("HIVELOG_ES_URL", url.as_str()),
        ("HIVELOG_ES_TIMEOUT", "1s"),
    ];
    pairs.extend_from_slice(extra);
    hivelog::builder().env(hostile_env(&pairs))
}

fn fluent_builder(addr: SocketAddr, extra: &[(&str, &str)]) -> hivelog::Builder {
    let url = format!("tcp://{addr}");
    let mut pairs = vec![
        ("HIVELOG_FLUENT_ADDR", url.as_str()),
        ("HIVELOG_FLUENT_ACK_TIMEOUT", "500ms"),
        ("HIVELOG_FLUENT_CONNECT_TIMEOUT", "500ms"),
        ("HIVELOG_FLUENT_WRITE_TIMEOUT", "500ms"),
    ];
    pairs.extend_from_slice(extra);
    hivelog::builder().env(hostile_env(&pairs))
}

fn cloudwatch_builder(addr: SocketAddr) -> hivelog::Builder {
    hivelog::builder()
        .env(hostile_env(&[]))
        .destination(cloudwatch_config(&format!("http://{addr}"), "hostile"))
}

const GB: u64 = 1 << 30;

/// `200 OK` with `Content-Length: 1 GiB` of a valid-looking bulk answer, streamed.
fn gigabyte_bulk_answer(mut s: TcpStream, c: &Counter) {
    while read_request(&mut s) {
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {GB}\r\n\r\n"
        );
        if !c.write(&mut s, head.as_bytes()) {
            return;
        }
        let mut body = br#"{"errors":false,"items":["#.to_vec();
        let item = br#"{"create":{"status":201}},"#;
        while body.len() < 64 * 1024 {
            body.extend_from_slice(item);
        }
        let mut sent = 0u64;
        while sent < GB {
            let take = body.len().min((GB - sent) as usize);
            if !c.write(&mut s, &body[..take]) {
                return;
            }
            sent += take as u64;
        }
    }
}

#[test]
fn es_a_1gb_bulk_response_is_not_read_whole_and_the_events_are_counted() {
    let server = RawServer::start(gigabyte_bulk_answer);
    let before = rss_kib();
    let (s, took) = run_hostile(es_builder(server.addr, &[]), 20, Duration::from_secs(10));
    let after = rss_kib();
    eprintln!(
        "FIGURE hostile es 1GB bulk answer: {s:?}; server pushed max {} MiB on one connection, \
         {} MiB in all over {} connections; flush took {took:?}; test RSS {} → {} MiB",
        server.max_conn() >> 20,
        server.total() >> 20,
        server.connections(),
        before >> 10,
        after >> 10
    );
    assert_eq!(s.delivered, 0, "{s:?}");
    assert!(
        server.max_conn() < 64 << 20,
        "the client read {} bytes of one answer",
        server.max_conn()
    );
}

#[test]
fn es_a_never_ending_chunked_body_is_cut_off() {
    let server = RawServer::start(|mut s, c| {
        if !read_request(&mut s) {
            return;
        }
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
        if !c.write(&mut s, head.as_bytes()) {
            return;
        }
        let data = "[".repeat(8192);
        let chunk = format!("{:x}\r\n{data}\r\n", data.len());
        while c.write(&mut s, chunk.as_bytes()) {}
    });
    let (s, took) = run_hostile(es_builder(server.addr, &[]), 20, Duration::from_secs(10));
    eprintln!(
        "FIGURE hostile es never-ending body: {s:?}; max {} MiB on one connection, {} MiB in all; flush {took:?}",
        server.max_conn() >> 20,
        server.total() >> 20
    );
    assert_eq!(s.delivered, 0);
    assert!(server.max_conn() < 64 << 20, "{}", server.max_conn());
}

#[test]
fn es_a_slowloris_server_is_timed_out() {
    let server = RawServer::start(|mut s, c| {
        if !read_request(&mut s) {
            return;
        }
        for b in b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"errors\":false" {
            if c.stopped() || !c.write(&mut s, &[*b]) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let (s, took) = run_hostile(es_builder(server.addr, &[]), 20, Duration::from_secs(10));
    eprintln!("FIGURE hostile es slowloris: {s:?}; flush {took:?}");
    assert_eq!((s.delivered, s.failed), (0, 20), "{s:?}");
    assert!(took < Duration::from_secs(6), "{took:?}");
}

#[test]
fn es_invalid_json_answers_are_not_counted_as_delivered() {
    for body in [
        &br#"{"errors":fals"#[..],
        b"<html>502 Bad Gateway</html>",
        br#"{"errors":true,"items":[{"create":{"status":"x"}}]}"#,
        br#"{"errors":true,"items":"nope"}"#,
        br#"{"errors":true}"#,
        b"\xff\xfe\x00",
    ] {
        let body = body.to_vec();
        let server = RawServer::start(move |mut s, c| {
            while read_request(&mut s) {
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                );
                if !c.write(&mut s, head.as_bytes()) || !c.write(&mut s, &body) {
                    return;
                }
            }
        });
        let (s, _) = run_hostile(es_builder(server.addr, &[]), 5, Duration::from_secs(5));
        assert_eq!(s.delivered, 0, "{s:?}");
        eprintln!("FIGURE hostile es invalid json: {s:?}");
    }
}

/// Writes a msgpack bin32 header announcing `len` bytes.
fn bin32(out: &mut Vec<u8>, len: u32) {
    out.push(0xc6);
    out.extend_from_slice(&len.to_be_bytes());
}

#[test]
fn fluent_a_helo_with_a_4gb_nonce_does_not_grow_memory_without_bound() {
    let server = RawServer::start(|mut s, c| {
        // ["HELO", {"nonce": bin(4 GiB - 1) …}] and then zeros, as fast as the client reads.
        let mut head = vec![0x92, 0xa4];
        head.extend_from_slice(b"HELO");
        head.push(0x81);
        head.push(0xa5);
        head.extend_from_slice(b"nonce");
        bin32(&mut head, u32::MAX);
        if !c.write(&mut s, &head) {
            return;
        }
        let zeros = vec![0u8; 64 * 1024];
        while c.write(&mut s, &zeros) {}
    });
    let before = rss_kib();
    let (s, took) = run_hostile(
        fluent_builder(server.addr, &[("HIVELOG_FLUENT_SHARED_KEY", "k")]),
        10,
        Duration::from_secs(4),
    );
    eprintln!(
        "FIGURE hostile fluent 4GB HELO nonce: {s:?}; server pushed max {} KiB on one connection, {} MiB in all over {} connections; flush {took:?}; RSS {} → {} MiB",
        server.max_conn() >> 10,
        server.total() >> 20,
        server.connections(),
        before >> 10,
        rss_kib() >> 10
    );
    assert_eq!(s.delivered, 0);
    // What the server manages to push is mostly the kernel's socket buffers (tcp_rmem allows up
    // to 32 MiB); what the client process holds shows in its RSS.
    let grown = rss_kib().saturating_sub(before);
    assert!(
        grown < 32 << 10,
        "BUG: the client's memory grew by {grown} KiB reading one HELO (a HELO is < 1 KiB)"
    );
    assert!(
        s.retried + s.failed > 0,
        "BUG: the handshake never timed out (HIVELOG_FLUENT_CONNECT_TIMEOUT=500ms) while the \
         server kept sending one endless HELO: {s:?}"
    );
}

/// Reads and discards what a Forward client sends, answering each read with `answer`.
fn answer_every_read(answer: Vec<u8>) -> impl Fn(TcpStream, &Counter) + Send + Sync {
    move |mut s, c| {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if !c.write(&mut s, &answer) {
                        return;
                    }
                }
            }
        }
    }
}

#[test]
fn fluent_acks_for_unknown_chunks_are_not_deliveries() {
    // {"ack": "not-a-chunk-we-sent"}
    let mut ack = vec![0x81, 0xa3];
    ack.extend_from_slice(b"ack");
    ack.push(0xb3);
    ack.extend_from_slice(b"not-a-chunk-we-sent");
    let server = RawServer::start(answer_every_read(ack));
    let (s, took) = run_hostile(
        fluent_builder(server.addr, &[]),
        10,
        Duration::from_secs(10),
    );
    eprintln!("FIGURE hostile fluent unknown ack: {s:?}; flush {took:?}");
    assert_eq!((s.delivered, s.failed), (0, 10), "{s:?}");
}

#[test]
fn fluent_invalid_msgpack_answers_are_errors_not_deliveries() {
    for garbage in [
        vec![0xc1u8],                       // never-used marker
        vec![0x81, 0xa3, b'a', b'c'],       // truncated map, then silence
        vec![0xdd, 0xff, 0xff, 0xff, 0xff], // array32 of 4 G elements, no elements
        b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec(),
    ] {
        let server = RawServer::start(answer_every_read(garbage.clone()));
        let (s, _) = run_hostile(fluent_builder(server.addr, &[]), 5, Duration::from_secs(10));
        eprintln!("FIGURE hostile fluent garbage {garbage:02x?}: {s:?}");
        assert_eq!(s.delivered, 0, "{garbage:02x?}: {s:?}");
    }
}

#[test]
fn fluent_an_endless_ack_is_cut_off() {
    let server = RawServer::start(|mut s, c| {
        let mut buf = vec![0u8; 64 * 1024];
        if !matches!(s.read(&mut buf), Ok(n) if n > 0) {
            return;
        }
        // {"ack": str32(4 GiB - 1) …}: an ack that never ends, as fast as the client reads.
        let mut head = vec![0x81, 0xa3];
        head.extend_from_slice(b"ack");
        head.push(0xdb);
        head.extend_from_slice(&u32::MAX.to_be_bytes());
        if !c.write(&mut s, &head) {
            return;
        }
        let a = vec![b'a'; 64 * 1024];
        while c.write(&mut s, &a) {}
    });
    let before = rss_kib();
    let (s, took) = run_hostile(fluent_builder(server.addr, &[]), 10, Duration::from_secs(4));
    eprintln!(
        "FIGURE hostile fluent endless ack: {s:?}; server pushed max {} KiB on one connection; flush {took:?}; RSS {} → {} MiB",
        server.max_conn() >> 10,
        before >> 10,
        rss_kib() >> 10
    );
    let grown = rss_kib().saturating_sub(before);
    assert!(
        grown < 32 << 10,
        "BUG: the client's memory grew by {grown} KiB reading one ack (an ack is < 100 bytes)"
    );
    assert!(
        s.retried + s.failed > 0,
        "BUG: the ack wait never timed out (HIVELOG_FLUENT_ACK_TIMEOUT=500ms) while the \
         server kept sending one endless ack: {s:?}"
    );
}

#[test]
fn fluent_a_slowloris_ack_is_timed_out() {
    let server = RawServer::start(|mut s, c| {
        let mut buf = vec![0u8; 64 * 1024];
        if !matches!(s.read(&mut buf), Ok(n) if n > 0) {
            return;
        }
        // A map header, then one byte of key every 200 ms, forever.
        if !c.write(&mut s, &[0x81, 0xd9, 0xff]) {
            return;
        }
        while !c.stopped() && c.write(&mut s, b"a") {
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let (s, took) = run_hostile(
        fluent_builder(server.addr, &[]),
        10,
        Duration::from_secs(10),
    );
    eprintln!("FIGURE hostile fluent slowloris: {s:?}; flush {took:?}");
    assert_eq!((s.delivered, s.failed), (0, 10), "{s:?}");
}

#[test]
fn cloudwatch_a_1gb_error_body_is_not_read_whole() {
    let server = RawServer::start(|mut s, c| {
        while read_request(&mut s) {
            let head = format!(
                "HTTP/1.1 400 Bad Request\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: {GB}\r\n\r\n"
            );
            if !c.write(&mut s, head.as_bytes()) {
                return;
            }
            let mut body = br#"{"__type":"ThrottlingException","message":""#.to_vec();
            body.resize(64 * 1024, b'x');
            let mut sent = 0u64;
            while sent < GB {
                if !c.write(&mut s, &body) {
                    return;
                }
                sent += body.len() as u64;
            }
        }
    });
    let before = rss_kib();
    let (s, took) = run_hostile(cloudwatch_builder(server.addr), 10, Duration::from_secs(8));
    eprintln!(
        "FIGURE hostile cloudwatch 1GB error body: {s:?}; server pushed max {} MiB on one connection, {} MiB in all over {} connections; flush {took:?}; RSS {} → {} MiB",
        server.max_conn() >> 20,
        server.total() >> 20,
        server.connections(),
        before >> 10,
        rss_kib() >> 10
    );
    assert_eq!(s.delivered, 0);
    assert!(
        server.max_conn() < 256 << 20,
        "BUG: the CloudWatch sink (AWS SDK) read {} MiB of one error answer into memory",
        server.max_conn() >> 20
    );
}

#[test]
fn cloudwatch_invalid_json_and_unknown_errors_are_not_deliveries() {
    for (status, body) in [
        (200u16, &b"{not json"[..]),
        (400, br#"{"__type":"#),
        (400, br#"{"__type":"SomethingNewException","message":"?"}"#),
        (500, b"<html>oops</html>"),
        (
            200,
            br#"{"rejectedLogEventsInfo":{"tooOldLogEventEndIndex":99999999}}"#,
        ),
    ] {
        let shown = String::from_utf8_lossy(body).into_owned();
        let body = body.to_vec();
        let server = RawServer::start(move |mut s, c| {
            while read_request(&mut s) {
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                );
                if !c.write(&mut s, head.as_bytes()) || !c.write(&mut s, &body) {
                    return;
                }
            }
        });
        // Retries give up after 1 s, so that a retried answer ends as `failed` within the flush.
        let builder = hivelog::builder()
            .env(hostile_env(&[
                ("HIVELOG_RETRY_BASE", "10ms"),
                ("HIVELOG_RETRY_MAX_ELAPSED", "1s"),
            ]))
            .destination(cloudwatch_config(
                &format!("http://{}", server.addr),
                "hostile",
            ));
        let (s, _) = run_hostile(builder, 5, Duration::from_secs(10));
        eprintln!("FIGURE hostile cloudwatch {status} {shown:?}: {s:?}");
        assert_eq!(s.delivered, 0, "{status} {shown:?}: {s:?}");
        if status == 200 && shown.starts_with("{not") {
            // A 200 nobody can read may have stored the events: retried, never "refused".
            assert_eq!((s.rejected, s.failed), (0, 5), "{shown:?}: {s:?}");
            assert!(s.retried > 0, "{s:?}");
        }
    }
}
