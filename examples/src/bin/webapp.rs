//! A small web service logging through hivelog, modeled on our first users' web app.
//!
//! ```sh
//! cargo run -p hivelog-examples            # JSON lines on stdout, http://127.0.0.1:3000
//! curl -b email=a@b.c localhost:3000/      # {"message":"visit","user":"a@b.c",...}
//! curl -b email=a@b.c localhost:3000/hit/7 # {"message":"article hit","user":"a@b.c","article":...}
//! curl localhost:3000/article/7            # an ERROR line with the error's source chain
//! ```
//!
//! With our first users' field names:
//!
//! ```sh
//! HIVELOG_FIELDS='timestamp=timestamp,loggerName=target,level=level,message=message,function=span,module=module,line=line' \
//! HIVELOG_EXTRA='environment=dev' cargo run -p hivelog-examples
//! ```
//!
//! The binary is built with hivelog's `fluent`, `elk`, `cloudwatch` and `otlp` features, so
//! setting `HIVELOG_FLUENT_ADDR`, `HIVELOG_ES_URL`, `HIVELOG_CLOUDWATCH_GROUP` or
//! `OTEL_LOGS_EXPORTER=otlp` (with the standard `OTEL_EXPORTER_OTLP_*` variables) ships the
//! same events there too (see `deploy/` and `docs/deploying.md`):
//!
//! ```sh
//! OTEL_LOGS_EXPORTER=otlp OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 cargo run -p hivelog-examples
//! ```
//!
//! # Routes
//! - `GET /` logs the visitor: `user` comes from the `email` cookie (`anonymous` without one).
//! - `GET /hit/{id}` logs `user` and `article`, then redirects to the article.
//! - `GET /article/{id}` fails: the (simulated) CMS does not answer, and the error is logged
//!   with its source chain (`error = &e as &dyn Error`) before a 502 is returned.
//!
//! # Request buffer
//! The handlers log DEBUG lines, and the service turns hivelog's request buffer on in code
//! (`HIVELOG_REQUEST_BUFFER_LEVEL=off` turns it off): at level `info`, `/article/{id}`'s DEBUG
//! lines (what was asked of the CMS, how long it waited) are written just before its error, in
//! stdout and in every sink, and `/hit/{id}`'s are never written.
//!
//! Every handler is `#[tracing::instrument]`ed, so the `span` attribute (`function=span` in
//! `HIVELOG_FIELDS`) names the handler, and the span's fields (`id`, recorded as a number with
//! `fields(id = id)` rather than as the argument's `Debug` text) appear on its events. Outside
//! any span (`listening`, `stopped`) `function` is `null`.
//!
//! # Trace correlation
//! Every route runs behind [`hivelog::tower::TraceLayer`]: a request continues the caller's
//! W3C `traceparent` (or AWS `X-Amzn-Trace-Id`, as an ALB sets it) or starts a new trace, every
//! line it logs carries `trace_id` and `span_id`, the layer logs `request completed` with
//! `status` and `latency_ms`, and the response carries the request's `traceparent`.
//!
//! # Latency as a CloudWatch metric
//! The latency is recorded as the metric field `metric.latency_ms`
//! ([`hivelog::tower::TraceLayer::latency_metric`]). Run with `HIVELOG_METRICS=emf
//! HIVELOG_METRICS_DIMENSIONS=route,method` and each `request completed` line is also a
//! CloudWatch embedded-metric-format document: CloudWatch Logs (the `awslogs` driver, or
//! `HIVELOG_CLOUDWATCH_GROUP`) turns it into the metric `latency_ms` per route and method,
//! ready for an alarm, with no metrics agent.
//!
//! ```sh
//! curl -i -H 'traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' localhost:3000/article/7
//! ```
//!
//! # Configuration
//! `BIND` is the listen address, `host` or `host:port` (default `127.0.0.1:3000`; containers
//! need `0.0.0.0`); `PORT` overrides the port (`0` picks a free one; the `listening` event says
//! which). Everything about logs is `HIVELOG_*`.
//!
//! # Admin listener (off by default)
//! `ADMIN_BIND=127.0.0.1:3001` serves `GET /level` (the current level) and `PUT /level` (the
//! body is the new level, in `HIVELOG_LEVEL` syntax: `curl -X PUT -d debug localhost:3001/level`)
//! through [`hivelog::set_level`], on its own address so it can stay unreachable from outside.
//! A bad level is a 400 with the reason, and the level stays. `HIVELOG_LEVEL_FILE` does the
//! same without a listener.
//!
//! # Stopping: why the order matters
//! ECS stops a task by sending SIGTERM to the container, waiting `stopTimeout` (30 s by
//! default), then sending SIGKILL; `docker stop` and Kubernetes do the same. Events still queued
//! for a sink when SIGKILL arrives are lost. So on SIGTERM (or Ctrl-C) the service:
//! 1. stops accepting connections and lets in-flight requests finish (axum's graceful
//!    shutdown), for at most [`DRAIN_TIMEOUT`];
//! 2. logs `stopped`, the last event, and shuts its runtime down;
//! 3. drops the hivelog guard, which sends everything still queued to the sinks within
//!    `HIVELOG_SHUTDOWN_TIMEOUT` (default 5 s) and prints a report on stderr if something
//!    could not be delivered; then `main` returns and the process exits with status 0.
//!
//! Keep `DRAIN_TIMEOUT + HIVELOG_SHUTDOWN_TIMEOUT` below the platform's grace period.
//! The guard is created in a synchronous `main`, outside the tokio runtime, so it outlives the
//! runtime and its final flush never runs on (or waits for) the service's own worker threads.

use std::error::Error;
use std::fmt;
use std::future::IntoFuture;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use axum::extract::{MatchedPath, Path};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Redirect;
use axum::routing::get;
use axum::Router;

/// The listen address when neither `BIND` nor `PORT` is set.
pub const DEFAULT_BIND: &str = "127.0.0.1:3000";

/// How long in-flight requests may take to finish after SIGTERM before the service stops anyway.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    // First thing, bound to a name for the whole of main: dropping it flushes the sinks.
    // The request buffer is on in code (HIVELOG_REQUEST_BUFFER_LEVEL=off switches it off): a
    // request's DEBUG lines are written only when it fails.
    let _logs = hivelog::builder()
        .request_buffer(hivelog::RequestBufferConfig::new(tracing::Level::DEBUG))
        .init();
    let addr = match listen_addr(std::env::var("BIND").ok(), std::env::var("PORT").ok()) {
        Ok(addr) => addr,
        Err(e) => {
            tracing::error!(error = %e, "bad listen address");
            return ExitCode::from(2);
        }
    };
    let admin = match std::env::var("ADMIN_BIND")
        .ok()
        .filter(|v| !v.trim().is_empty())
    {
        None => None,
        Some(v) => match admin_addr(&v) {
            Ok(a) => Some(a),
            Err(e) => {
                tracing::error!(error = %e, "bad admin address");
                return ExitCode::from(2);
            }
        },
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = &e as &dyn Error, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(serve(addr, admin));
    // Requests still running past the drain timeout are abandoned here, not waited for.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = &e as &dyn Error, %addr, "cannot serve");
            ExitCode::FAILURE
        }
    }
    // `_logs` drops here: the final flush, after the runtime is gone.
}

/// Serves until SIGTERM or Ctrl-C, then drains for at most [`DRAIN_TIMEOUT`]; the admin
/// listener, if any, stops with the runtime.
async fn serve(addr: SocketAddr, admin: Option<SocketAddr>) -> std::io::Result<()> {
    let signals = StopSignals::install()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    if let Some(admin) = admin {
        let admin = tokio::net::TcpListener::bind(admin).await?;
        tracing::info!(addr = %admin.local_addr()?, "admin listening");
        tokio::spawn(axum::serve(admin, admin_app()).into_future());
    }
    tracing::info!(addr = %local, "listening");
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, app()).with_graceful_shutdown(async move {
        let signal = signals.recv().await;
        tracing::info!(signal, "shutdown requested; finishing in-flight requests");
        let _ = stopping_tx.send(());
    });
    let drain_deadline = async move {
        match stopping_rx.await {
            Ok(()) => tokio::time::sleep(DRAIN_TIMEOUT).await,
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        served = server.into_future() => served,
        () = drain_deadline => {
            tracing::warn!(timeout = ?DRAIN_TIMEOUT, "requests still running after the drain timeout; stopping anyway");
            Ok(())
        }
    }
}

/// The routes.
fn app() -> Router {
    Router::new()
        .route("/", get(index))
        .route("/hit/{id}", get(hit))
        .route("/article/{id}", get(article))
        .layer(
            hivelog::tower::TraceLayer::new()
                .route(matched_route)
                .latency_metric(),
        )
}

/// The route template (`/article/{id}`) as the request span's `route`.
fn matched_route(parts: &axum::http::request::Parts) -> Option<String> {
    parts
        .extensions
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
}

/// The admin routes: `GET /level`, `PUT /level`.
fn admin_app() -> Router {
    Router::new().route("/level", get(current_level).put(set_level))
}

/// `GET /level`: the main level's directives now.
async fn current_level() -> String {
    format!("{}\n", hivelog::level().unwrap_or_default())
}

/// `PUT /level`: the body becomes the main level, checked like `HIVELOG_LEVEL`.
async fn set_level(body: String) -> (StatusCode, String) {
    let level = body.trim();
    match hivelog::set_level(level) {
        Ok(()) => {
            tracing::info!(directives = level, "level changed by the admin endpoint");
            (StatusCode::OK, format!("{level}\n"))
        }
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")),
    }
}

/// `ADMIN_BIND`: `host:port` (`0` as the port picks a free one; `admin listening` says which).
fn admin_addr(v: &str) -> Result<SocketAddr, String> {
    v.trim()
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| {
            format!("ADMIN_BIND: '{v}' is not an address; expected host:port (127.0.0.1:3001)")
        })
}

/// SIGTERM (how ECS, Docker and Kubernetes stop a container) and Ctrl-C, listened for from
/// the moment this is created: a signal that arrives before the server is running still
/// counts, instead of killing the process with the default action.
struct StopSignals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Installs the handlers (needs the runtime).
    fn install() -> std::io::Result<StopSignals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(StopSignals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(StopSignals {})
    }

    /// Resolves at the first signal; returns its name.
    async fn recv(mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

/// `GET /`: logs who visited.
#[tracing::instrument(skip_all)]
async fn index(headers: HeaderMap) -> &'static str {
    let user = visitor(&headers);
    tracing::info!(user, "visit");
    "Hello from hivelog's example service. Try /hit/7 and /article/7.\n"
}

/// `GET /hit/{id}`: logs the article hit, then redirects to the article.
#[tracing::instrument(skip_all, fields(id = id))]
async fn hit(Path(id): Path<u64>, headers: HeaderMap) -> Redirect {
    let user = visitor(&headers);
    let article = format!("https://example.com/articles/{id}");
    tracing::debug!(cache = "miss", "looking up the article's address");
    tracing::info!(user, article, "article hit");
    Redirect::to(&article)
}

/// `GET /article/{id}`: loading the article from the CMS fails; the error is logged with its
/// source chain and the client gets a 502.
#[tracing::instrument(skip_all, fields(id = id))]
async fn article(Path(id): Path<u64>) -> Result<String, (StatusCode, &'static str)> {
    match load_article(id).await {
        Ok(body) => Ok(body),
        Err(e) => {
            tracing::error!(error = &e as &dyn Error, "could not serve the article");
            Err((StatusCode::BAD_GATEWAY, "the article is unavailable\n"))
        }
    }
}

/// Stands for a call to a content service that is down: the error has two causes below it.
async fn load_article(id: u64) -> Result<String, ArticleError> {
    tracing::debug!(
        cms = "http://cms.internal",
        attempt = 1,
        "asking the CMS for the article"
    );
    tracing::debug!(waited_ms = 2000, "the CMS did not answer; no retry left");
    let timeout = std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer within 2s");
    Err(ArticleError {
        id,
        source: CmsError(timeout),
    })
}

/// The user's email from the `email` cookie, or `anonymous`.
fn visitor(headers: &HeaderMap) -> &str {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == "email")
        .map(|(_, value)| value.trim_matches('"'))
        .filter(|v| !v.is_empty())
        .unwrap_or("anonymous")
}

/// `BIND` (`host` or `host:port`) and `PORT` into one address.
fn listen_addr(bind: Option<String>, port: Option<String>) -> Result<SocketAddr, String> {
    let bind = bind
        .filter(|b| !b.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_BIND.to_owned());
    let port = match port.filter(|p| !p.trim().is_empty()) {
        Some(p) => Some(
            p.trim()
                .parse::<u16>()
                .map_err(|_| format!("PORT: '{p}' is not a port; expected 0 to 65535"))?,
        ),
        None => None,
    };
    let with_port = if bind.parse::<SocketAddr>().is_ok() || has_port(&bind) {
        bind.clone()
    } else {
        format!("{bind}:3000")
    };
    let mut addr = with_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| {
            format!("BIND: '{bind}' is not an address; expected host or host:port (0.0.0.0:3000)")
        })?;
    if let Some(p) = port {
        addr.set_port(p);
    }
    Ok(addr)
}

fn has_port(bind: &str) -> bool {
    bind.rsplit_once(':')
        .is_some_and(|(host, port)| !host.contains(':') && port.parse::<u16>().is_ok())
}

/// Loading an article failed.
#[derive(Debug)]
struct ArticleError {
    id: u64,
    source: CmsError,
}

impl fmt::Display for ArticleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "could not load article {}", self.id)
    }
}

impl Error for ArticleError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.source)
    }
}

/// The content service did not answer.
#[derive(Debug)]
struct CmsError(std::io::Error);

impl fmt::Display for CmsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the CMS did not answer")
    }
}

impl Error for CmsError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_address_comes_from_bind_and_port() {
        let addr = |b: Option<&str>, p: Option<&str>| {
            listen_addr(b.map(str::to_owned), p.map(str::to_owned))
        };
        assert_eq!(addr(None, None).unwrap().to_string(), "127.0.0.1:3000");
        assert_eq!(
            addr(None, Some("8080")).unwrap().to_string(),
            "127.0.0.1:8080"
        );
        assert_eq!(
            addr(Some("0.0.0.0"), None).unwrap().to_string(),
            "0.0.0.0:3000"
        );
        assert_eq!(
            addr(Some("0.0.0.0:80"), Some("81")).unwrap().to_string(),
            "0.0.0.0:81"
        );
        assert_eq!(
            addr(Some("[::1]:9000"), None).unwrap().to_string(),
            "[::1]:9000"
        );
        assert_eq!(
            addr(None, Some("http")).unwrap_err(),
            "PORT: 'http' is not a port; expected 0 to 65535"
        );
    }

    #[test]
    fn the_visitor_is_the_email_cookie() {
        let mut h = HeaderMap::new();
        assert_eq!(visitor(&h), "anonymous");
        h.insert(header::COOKIE, "theme=dark; email=a@b.c".parse().unwrap());
        assert_eq!(visitor(&h), "a@b.c");
    }
}
