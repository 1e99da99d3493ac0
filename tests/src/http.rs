//! A scripted HTTP/1.1 server for fault injection: 429, 413, 5xx, slow answers, resets, hangs.
//!
//! Real services (noida-db, moto) never throttle, never answer 413 and never drop a connection
//! halfway, so the sinks' handling of those answers is proven against this server instead. It
//! is deliberately small and strict: it speaks HTTP/1.1 with keep-alive (what `reqwest` and the
//! AWS SDK use), reads `Content-Length` and `chunked` bodies, keeps every request it received
//! (raw body bytes and headers, so a gzip body can be checked byte for byte), and answers each
//! one with whatever a closure returns.
//!
//! The server runs on its own thread with its own tokio runtime, so it keeps answering while the
//! test thread blocks (for example in `Pipeline::flush`) and works from sync and async tests
//! alike. It listens on `127.0.0.1` on a port chosen by the OS; it stops when dropped.
//! [`HttpServer::start_tls`] serves the same over HTTPS (custom-CA tests).
//!
//! ```no_run
//! use hivelog_tests::http::{HttpServer, Response};
//!
//! // 500 for the first request, then 200 with a JSON body.
//! let server = HttpServer::start(|req| {
//!     if req.index == 0 {
//!         Response::new(500).body("try again")
//!     } else {
//!         Response::json(200, r#"{"ok":true}"#)
//!     }
//! });
//! let url = server.url(); // "http://127.0.0.1:PORT"
//! // … point the client at `url`, run it …
//! let reqs = server.requests();
//! assert_eq!(reqs[1].method, "POST");
//! assert_eq!(reqs[1].header("content-type"), Some("application/json"));
//! ```
//!
//! Faults, set on the [`Response`] the closure returns:
//! - [`Response::delay`]: wait before answering (client timeouts).
//! - [`Response::reset`]: read the request, then reset the connection (TCP RST) without answering.
//! - [`Response::reset_mid_body`]: send the status line, headers and half the body, then reset.
//! - [`Response::hang`]: never answer; the connection stays open until the server is dropped.
//! - [`Response::close`]: answer with `Connection: close` and close the connection afterwards.

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Largest request head (request line and headers) the server accepts.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// One request as received.
#[derive(Clone, Debug)]
pub struct Request {
    /// Position of this request among all requests the server received, from 0.
    pub index: usize,
    /// Which connection it came on, numbered from 0 in the order they were accepted.
    pub connection: usize,
    /// `GET`, `POST`, ….
    pub method: String,
    /// The request target as sent: path and query (`/_bulk?filter_path=errors`).
    pub target: String,
    /// Headers in the order sent; names lowercased, values trimmed.
    pub headers: Vec<(String, String)>,
    /// The body exactly as sent (still gzip-compressed if it was); chunked framing removed.
    pub body: Vec<u8>,
}

impl Request {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The path part of the target (before `?`).
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The query string (after `?`), or `""`.
    pub fn query(&self) -> &str {
        self.target.split_once('?').map(|(_, q)| q).unwrap_or("")
    }

    /// The value of query parameter `name`, not percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query()
            .split('&')
            .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    /// The body with `Content-Encoding: gzip` undone (the raw body otherwise).
    ///
    /// Panics if the header says gzip and the body is not valid gzip: that is a test failure.
    pub fn decoded_body(&self) -> Vec<u8> {
        match self.header("content-encoding") {
            Some(enc) if enc.eq_ignore_ascii_case("gzip") => {
                let mut out = Vec::new();
                flate2::read::MultiGzDecoder::new(&self.body[..])
                    .read_to_end(&mut out)
                    .expect("request says Content-Encoding: gzip but its body is not gzip");
                out
            }
            _ => self.body.clone(),
        }
    }

    /// The decoded body as UTF-8 text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.decoded_body()).into_owned()
    }

    /// The decoded body parsed as one JSON value. Panics if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.decoded_body()).expect("request body is not JSON")
    }

    /// The decoded body as NDJSON: one JSON value per line. Panics on a line that is not JSON.
    /// Whether the body ends with a newline is not checked here; look at [`Request::body`].
    pub fn ndjson(&self) -> Vec<serde_json::Value> {
        self.decoded_body()
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).expect("NDJSON line is not JSON"))
            .collect()
    }
}

/// What the server does instead of (or while) answering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Fault {
    /// Answer normally.
    #[default]
    None,
    /// Reset the connection (TCP RST) without answering.
    Reset,
    /// Send the head and half the body, then reset the connection.
    ResetMidBody,
    /// Never answer; keep the connection open.
    Hang,
}

/// The answer to one request, built by the test's closure.
#[derive(Clone, Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Extra headers (`Content-Length` is added unless given).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
    /// Wait this long before answering.
    pub delay: Duration,
    /// A fault to inject.
    pub fault: Fault,
    /// Close the connection after this answer.
    pub close: bool,
}

impl Response {
    /// A response with `status` and an empty body.
    pub fn new(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            delay: Duration::ZERO,
            fault: Fault::None,
            close: false,
        }
    }

    /// `status` with a JSON body and `Content-Type: application/json`.
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Response::new(status)
            .header("content-type", "application/json")
            .body(body)
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Waits `d` before answering (or before the fault).
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }

    /// Resets the connection instead of answering.
    pub fn reset(mut self) -> Self {
        self.fault = Fault::Reset;
        self
    }

    /// Sends the head and half the body, then resets the connection.
    pub fn reset_mid_body(mut self) -> Self {
        self.fault = Fault::ResetMidBody;
        self
    }

    /// Never answers.
    pub fn hang(mut self) -> Self {
        self.fault = Fault::Hang;
        self
    }

    /// Closes the connection after answering (`Connection: close`).
    pub fn close(mut self) -> Self {
        self.close = true;
        self
    }
}

type Handler = dyn Fn(&Request) -> Response + Send + Sync + 'static;

struct Shared {
    handler: Box<Handler>,
    requests: Mutex<Vec<Request>>,
    keep: AtomicBool,
    next_index: AtomicUsize,
    connections: AtomicUsize,
}

/// A running scripted server; stops (closing every connection) when dropped.
pub struct HttpServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl HttpServer {
    /// Starts a server on `127.0.0.1:0` that answers every request with `handler`.
    ///
    /// The handler runs on the server's thread; keep it quick (use [`Response::delay`] for
    /// slowness rather than sleeping in it). Use [`Request::index`] or your own counters to
    /// script a sequence of answers.
    pub fn start<F>(handler: F) -> HttpServer
    where
        F: Fn(&Request) -> Response + Send + Sync + 'static,
    {
        HttpServer::start_inner(None, Box::new(handler))
    }

    /// Like [`HttpServer::start`], but speaking HTTPS with the certificate chain and key in
    /// these PEM files (see [`crate::forward::tls_material`] for a throwaway CA and a
    /// `localhost` certificate). Use [`HttpServer::https_url`].
    pub fn start_tls<F>(cert_pem: &Path, key_pem: &Path, handler: F) -> HttpServer
    where
        F: Fn(&Request) -> Response + Send + Sync + 'static,
    {
        let certs: Vec<_> = rustls_pemfile::certs(&mut &std::fs::read(cert_pem).unwrap()[..])
            .collect::<Result<_, _>>()
            .expect("certificate PEM");
        let key = rustls_pemfile::private_key(&mut &std::fs::read(key_pem).unwrap()[..])
            .expect("key PEM")
            .expect("a private key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("certificate and key");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        HttpServer::start_inner(Some(acceptor), Box::new(handler))
    }

    fn start_inner(tls: Option<tokio_rustls::TlsAcceptor>, handler: Box<Handler>) -> HttpServer {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            handler,
            requests: Mutex::new(Vec::new()),
            keep: AtomicBool::new(true),
            next_index: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
        });
        let (stop, stop_rx) = watch::channel(false);
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("http-server-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("server runtime");
                rt.block_on(serve(std_listener, tls, thread_shared, stop_rx));
            })
            .expect("spawn server thread");
        HttpServer {
            addr,
            shared,
            stop,
            thread: Some(thread),
        }
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `https://localhost:PORT` (no trailing slash), for a server started with
    /// [`HttpServer::start_tls`].
    pub fn https_url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// Whether received requests are kept (default true). Benchmarks turn it off so memory
    /// stays flat; [`Request::index`] still counts.
    pub fn keep_requests(&self, keep: bool) {
        self.shared.keep.store(keep, Ordering::Relaxed);
    }

    /// Every request received so far (kept ones), in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// How many requests were received so far (kept or not).
    pub fn request_count(&self) -> usize {
        self.shared.next_index.load(Ordering::SeqCst)
    }

    /// How many connections were accepted so far.
    pub fn connection_count(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests have arrived, or `timeout`; returns whether they did.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        crate::wait_until(timeout, || self.request_count() >= n)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let listener = TcpListener::from_std(listener).expect("tokio listener");
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let id = shared.connections.fetch_add(1, Ordering::SeqCst);
                let shared = Arc::clone(&shared);
                let mut stop = stop.clone();
                let tls = tls.clone();
                conns.spawn(async move {
                    tokio::select! {
                        _ = stop.changed() => {}
                        _ = async {
                            match tls {
                                None => connection(stream, id, &shared).await,
                                Some(acceptor) => {
                                    if let Ok(s) = acceptor.accept(stream).await {
                                        connection(s, id, &shared).await
                                    }
                                }
                            }
                        } => {}
                    }
                });
            }
        }
    }
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

/// Serves one keep-alive connection until the peer closes it or a fault ends it.
async fn connection<S: Stream>(mut stream: S, id: usize, shared: &Shared) {
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    loop {
        let Some(mut req) = read_request(&mut stream, &mut buf).await else {
            return;
        };
        req.connection = id;
        req.index = shared.next_index.fetch_add(1, Ordering::SeqCst);
        let resp = (shared.handler)(&req);
        let client_close = req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        if shared.keep.load(Ordering::Relaxed) {
            shared.requests.lock().unwrap().push(req);
        }
        if !resp.delay.is_zero() {
            tokio::time::sleep(resp.delay).await;
        }
        match resp.fault {
            Fault::None => {}
            Fault::Reset => return reset(stream),
            Fault::Hang => return std::future::pending().await,
            Fault::ResetMidBody => {
                let head = response_head(&resp, true);
                let _ = stream.write_all(&head).await;
                let _ = stream.write_all(&resp.body[..resp.body.len() / 2]).await;
                let _ = stream.flush().await;
                // Give the client time to read the head so it fails mid-body, not before.
                tokio::time::sleep(Duration::from_millis(20)).await;
                return reset(stream);
            }
        }
        let close = resp.close || client_close;
        let mut out = response_head(&resp, close);
        out.extend_from_slice(&resp.body);
        if stream.write_all(&out).await.is_err() || close {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

/// A connection the server can answer on and reset: plain TCP or TLS over TCP.
trait Stream: AsyncRead + AsyncWrite + Unpin {
    fn tcp(&self) -> &TcpStream;
}

impl Stream for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Stream for tokio_rustls::server::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

fn reset<S: Stream>(stream: S) {
    // SO_LINGER 0 makes close() send RST instead of FIN.
    let _ = stream.tcp().set_zero_linger();
    drop(stream);
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

fn response_head(resp: &Response, close: bool) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    let has = |n: &str| resp.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has("content-length") {
        head.push_str(&format!("content-length: {}\r\n", resp.body.len()));
    }
    if close && !has("connection") {
        head.push_str("connection: close\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// Reads one request from `stream`; `buf` carries bytes already read past the previous one.
/// `None` when the peer closed the connection or sent something that is not HTTP/1.1.
async fn read_request<S: Stream>(stream: &mut S, buf: &mut Vec<u8>) -> Option<Request> {
    let head_end = loop {
        if let Some(p) = find(buf, b"\r\n\r\n") {
            break p;
        }
        if buf.len() > MAX_HEAD_BYTES {
            return None;
        }
        if !fill(stream, buf).await {
            return None;
        }
    };
    let head = std::str::from_utf8(&buf[..head_end]).ok()?.to_owned();
    buf.drain(..head_end + 4);
    let mut lines = head.split("\r\n");
    let mut parts = lines.next()?.split(' ');
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    if get("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        stream
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .ok()?;
    }
    let body =
        if get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
            read_chunked(stream, buf).await?
        } else {
            let len: usize = get("content-length").map_or(Some(0), |v| v.parse().ok())?;
            while buf.len() < len {
                if !fill(stream, buf).await {
                    return None;
                }
            }
            buf.drain(..len).collect()
        };
    Some(Request {
        index: 0,
        connection: 0,
        method,
        target,
        headers,
        body,
    })
}

async fn read_chunked<S: Stream>(stream: &mut S, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(p) = find(buf, b"\r\n") {
                break p;
            }
            if !fill(stream, buf).await {
                return None;
            }
        };
        let line = std::str::from_utf8(&buf[..line_end]).ok()?;
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        buf.drain(..line_end + 2);
        if size == 0 {
            // Trailers (ignored) up to the empty line.
            loop {
                if let Some(p) = find(buf, b"\r\n") {
                    buf.drain(..p + 2);
                    if p == 0 {
                        return Some(body);
                    }
                    continue;
                }
                if !fill(stream, buf).await {
                    return None;
                }
            }
        }
        while buf.len() < size + 2 {
            if !fill(stream, buf).await {
                return None;
            }
        }
        body.extend_from_slice(&buf[..size]);
        buf.drain(..size + 2);
    }
}

async fn fill<S: Stream>(stream: &mut S, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 64 * 1024];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};

    fn raw(addr: SocketAddr, req: &[u8]) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(req).unwrap();
        let mut out = String::new();
        let _ = BufReader::new(s).read_to_string(&mut out);
        out
    }

    #[test]
    fn answers_with_the_closure_and_records_requests() {
        let server = HttpServer::start(|req| {
            Response::json(
                if req.index == 0 { 500 } else { 200 },
                format!("{{\"n\":{}}}", req.index),
            )
        });
        let a = raw(
            server.addr(),
            b"POST /x/_bulk?filter_path=errors HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc\
              GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
        );
        assert!(
            a.starts_with("HTTP/1.1 500 Internal Server Error\r\n"),
            "{a}"
        );
        assert!(a.contains("HTTP/1.1 200 OK\r\n"), "{a}");
        assert!(a.ends_with("{\"n\":1}"), "{a}");
        let reqs = server.requests();
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0].path(), "/x/_bulk");
        assert_eq!(reqs[0].query_param("filter_path"), Some("errors"));
        assert_eq!(reqs[0].body, b"abc");
        assert_eq!(reqs[0].header("HOST"), Some("a"));
        assert_eq!(reqs[1].connection, 0);
    }

    #[test]
    fn chunked_and_gzip_bodies_are_exposed_raw_and_decoded() {
        let server = HttpServer::start(|_| Response::new(204).close());
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"{\"a\":1}\n{\"b\":2}\n").unwrap();
        let gz = gz.finish().unwrap();
        let mut req =
            b"POST / HTTP/1.1\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec();
        let (x, y) = gz.split_at(5);
        for part in [x, y] {
            req.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
            req.extend_from_slice(part);
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"0\r\n\r\n");
        let a = raw(server.addr(), &req);
        assert!(a.starts_with("HTTP/1.1 204"), "{a}");
        let r = &server.requests()[0];
        assert_eq!(r.body, gz);
        assert_eq!(r.ndjson().len(), 2);
    }

    #[test]
    fn faults_reset_and_hang() {
        let server = HttpServer::start(|req| match req.path() {
            "/reset" => Response::new(200).reset(),
            "/mid" => Response::new(200).body(vec![b'x'; 1000]).reset_mid_body(),
            _ => Response::new(200).hang(),
        });
        let a = raw(server.addr(), b"GET /reset HTTP/1.1\r\n\r\n");
        assert_eq!(a, "");
        let mut s = std::net::TcpStream::connect(server.addr()).unwrap();
        s.write_all(b"GET /mid HTTP/1.1\r\n\r\n").unwrap();
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert!(line.starts_with("HTTP/1.1 200"));
        let mut rest = Vec::new();
        let res = r.read_to_end(&mut rest);
        assert!(res.is_err() || rest.len() < 1000 + 20);
        let mut s = std::net::TcpStream::connect(server.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        s.write_all(b"GET /hang HTTP/1.1\r\n\r\n").unwrap();
        let mut b = [0u8; 1];
        assert!(s.read(&mut b).is_err(), "hang must not answer");
        assert_eq!(server.request_count(), 3);
    }
}
