//! A minimal blocking HTTP/1.1 client over one keep-alive connection, enough for the load
//! generator and the example's tests.
//!
//! Why not reqwest: the load generator measures the service, so its client should cost as
//! little as possible per request and add no runtime of its own; a raw `TcpStream` with
//! keep-alive does that in a few lines. It understands only what the example service sends:
//! responses with a `Content-Length` (axum sets one on every response here).
//!
//! ```no_run
//! use hivelog_examples::http::Connection;
//! let mut conn = Connection::open("127.0.0.1:3000").unwrap();
//! let res = conn.get("/hit/7", Some("email=a@b.c")).unwrap();
//! assert_eq!(res.status, 303);
//! assert_eq!(res.header("location"), Some("https://example.com/articles/7"));
//! ```

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// How long one request may wait for the server before failing.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// One keep-alive connection to a server.
#[derive(Debug)]
pub struct Connection {
    reader: BufReader<TcpStream>,
    host: String,
}

/// A response: status, headers (names lowercased) and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code (`200`, `303`, `502`).
    pub status: u16,
    /// Header names (lowercase) and values, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of the header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Connection {
    /// Connects to `addr` (`host:port`) with [`TIMEOUT`] for every read and write.
    pub fn open(addr: impl ToSocketAddrs + ToString) -> io::Result<Connection> {
        let host = addr.to_string();
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        stream.set_write_timeout(Some(TIMEOUT))?;
        Ok(Connection {
            reader: BufReader::new(stream),
            host,
        })
    }

    /// Sends `GET path`, with `cookie` as the `Cookie` header when given, and reads the answer.
    pub fn get(&mut self, path: &str, cookie: Option<&str>) -> io::Result<Response> {
        match cookie {
            Some(c) => self.get_with(path, &[("Cookie", c)]),
            None => self.get_with(path, &[]),
        }
    }

    /// Sends `GET path` with these headers (a name may repeat) and reads the answer.
    pub fn get_with(&mut self, path: &str, headers: &[(&str, &str)]) -> io::Result<Response> {
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        for (name, value) in headers {
            request.push_str(name);
            request.push_str(": ");
            request.push_str(value);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        self.reader.get_mut().write_all(request.as_bytes())?;
        self.read_response()
    }

    fn read_response(&mut self) -> io::Result<Response> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| invalid(format!("not an HTTP status line: {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(invalid("the headers end early".to_owned()));
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (name, value) = l
                .split_once(':')
                .ok_or_else(|| invalid(format!("not a header: {l:?}")))?;
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
        let response = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if response.header("transfer-encoding").is_some() {
            return Err(invalid("chunked bodies are not supported".to_owned()));
        }
        let len = match response.header("content-length") {
            Some(v) => v
                .parse::<usize>()
                .map_err(|_| invalid(format!("bad content-length {v:?}")))?,
            None => 0,
        };
        let mut body = vec![0; len];
        self.reader.read_exact(&mut body)?;
        Ok(Response { body, ..response })
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}
