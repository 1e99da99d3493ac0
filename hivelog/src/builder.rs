//! Code defaults for everything `init` configures; `HIVELOG_*` variables override them.

use std::any::Any;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use hivelog_core::destination::take_code;
use hivelog_core::format::{Schema, TimestampFormat};
use hivelog_core::{ConfigError, Env, Format, FormatBuilder, Pipeline, PipelineConfig, Sink};
use tracing::Dispatch;
use tracing_core::Subscriber;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Layer as _, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

use crate::config;
use crate::filter::HivelogFilter;
use crate::guard::{Guard, Outputs};
use crate::layer::HivelogLayer;
use crate::level::{self, FilterCell, Filters, LevelControl, RouteLevel};
use crate::output::{Local, Output, OutputMode, Style};
use crate::ratelimit::{self, Limiter, Router};
use crate::request_buffer::{self, Buffers, RequestBufferConfig};
use crate::route::Dest;

/// What [`Builder::take_under`] takes out: the layers under hivelog's.
#[cfg(feature = "otel")]
pub(crate) type Under = Option<crate::otel::OtelLayer>;
/// What [`Builder::take_under`] takes out: nothing without the `otel` feature.
#[cfg(not(feature = "otel"))]
pub(crate) struct Under;

/// The subscriber `init` installs: the registry, the layers under hivelog's (filtered by
/// hivelog's levels, as they were when hivelog's filter was the subscriber's), hivelog's layer.
#[cfg(feature = "otel")]
pub(crate) fn dispatch(built: Built, under: Under) -> Dispatch {
    let under = under.map(|otel| otel.with_filter(built.filter.levels_only()));
    Dispatch::new(
        tracing_subscriber::registry()
            .with(under)
            .with(built.layer()),
    )
}

/// The subscriber `init` installs: the registry and hivelog's layer.
#[cfg(not(feature = "otel"))]
pub(crate) fn dispatch(built: Built, _: Under) -> Dispatch {
    Dispatch::new(tracing_subscriber::registry().with(built.layer()))
}

/// What [`Builder::build_layer`] makes: hivelog's layer, its filter, and its outputs.
pub(crate) struct Built {
    pub(crate) layer: HivelogLayer,
    pub(crate) filter: HivelogFilter,
    pub(crate) outputs: Outputs,
}

impl Built {
    /// The layer with its per-layer filter, for a subscriber of type `S`.
    pub(crate) fn layer<S>(self) -> crate::Layer<S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        self.layer.with_filter(self.filter)
    }

    /// A layer that takes nothing and writes nowhere.
    pub(crate) fn inert() -> Self {
        let filters = Filters::build(&[], "off", "HIVELOG_LEVEL")
            .unwrap_or_else(|_| unreachable!("no route, nothing to parse"));
        let cell = Arc::new(FilterCell::new(filters));
        let capture = FormatBuilder::default().build().capture_options();
        Built {
            layer: HivelogLayer::new(Vec::new(), cell.clone(), capture, None, None, None),
            filter: HivelogFilter::new(cell, None),
            outputs: Outputs::default(),
        }
    }
}

/// Configures hivelog in code; every setting can still be overridden by its `HIVELOG_*` variable.
///
/// ```
/// let _logs = hivelog::builder()
///     .service("checkout")
///     .extra("environment", "staging")
///     .fields("timestamp,loggerName=target,level,message")
///     .level("info,checkout::db=debug")
///     .init();
/// tracing::info!(user = "a@b.c", "article hit");
/// ```
#[must_use]
pub struct Builder {
    format: FormatBuilder,
    fields: Option<String>,
    level: Option<String>,
    style: Option<Style>,
    output: Option<Output>,
    output_mode: Option<OutputMode>,
    writer: Option<Box<dyn Write + Send>>,
    pipeline: PipelineConfig,
    env: Option<Env>,
    panic_hook: bool,
    heartbeat: Option<Duration>,
    request_buffer: Option<RequestBufferConfig>,
    custom: Vec<CustomSink>,
    code: Vec<Box<dyn Any + Send>>,
    #[cfg(feature = "otel")]
    otel: Option<crate::otel::OtelLayer>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            format: FormatBuilder::default(),
            fields: None,
            level: None,
            style: None,
            output: None,
            output_mode: None,
            writer: None,
            pipeline: PipelineConfig::default(),
            env: None,
            panic_hook: true,
            heartbeat: None,
            request_buffer: None,
            custom: Vec::new(),
            code: Vec::new(),
            #[cfg(feature = "otel")]
            otel: None,
        }
    }
}

impl Builder {
    /// The service name (`HIVELOG_SERVICE`; default: the executable's name).
    pub fn service(mut self, name: impl Into<String>) -> Self {
        self.format = self.format.service(name);
        self
    }

    /// A static field on every event (`HIVELOG_EXTRA` adds to and overrides these).
    pub fn extra(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.format = self.format.extra(key, value);
        self
    }

    /// Basic fields, in `HIVELOG_FIELDS` syntax: `timestamp,loggerName=target,level,message`.
    pub fn fields(mut self, spec: impl Into<String>) -> Self {
        self.fields = Some(spec.into());
        self
    }

    /// Filter directives (`HIVELOG_LEVEL`, then `RUST_LOG`, override them; default `info`).
    pub fn level(mut self, directives: impl Into<String>) -> Self {
        self.level = Some(directives.into());
        self
    }

    /// JSON lines or pretty text (`HIVELOG_FORMAT`).
    pub fn style(mut self, style: Style) -> Self {
        self.style = Some(style);
        self
    }

    /// Where local lines go (`HIVELOG_OUTPUT`).
    pub fn output(mut self, output: Output) -> Self {
        self.output = Some(output);
        self
    }

    /// Who writes local lines (`HIVELOG_OUTPUT_MODE`; default [`OutputMode::Async`]).
    ///
    /// ```
    /// let (dispatch, guard) = hivelog::builder()
    ///     .output_mode(hivelog::OutputMode::Sync)
    ///     .output(hivelog::Output::Stderr)
    ///     .try_build()
    ///     .unwrap();
    /// tracing::dispatcher::with_default(&dispatch, || tracing::info!("written before this returns"));
    /// assert_eq!(guard.report().local.unwrap().written, 1);
    /// ```
    pub fn output_mode(mut self, mode: OutputMode) -> Self {
        self.output_mode = Some(mode);
        self
    }

    /// Writes local lines to `w` instead of `HIVELOG_OUTPUT` (tests, benchmarks, custom targets).
    pub fn writer(mut self, w: impl Write + Send + 'static) -> Self {
        self.writer = Some(Box::new(w));
        self
    }

    /// Elastic Common Schema or the default mapping (`HIVELOG_SCHEMA`).
    pub fn schema(mut self, schema: Schema) -> Self {
        self.format = self.format.schema(schema);
        self
    }

    /// The timestamp format (`HIVELOG_TIMESTAMP`).
    pub fn timestamp(mut self, ts: TimestampFormat) -> Self {
        self.format = self.format.timestamp(ts);
        self
    }

    /// Field names whose values print as `"[redacted]"` everywhere (`HIVELOG_REDACT` adds more).
    pub fn redact<I: IntoIterator<Item = S>, S: Into<String>>(mut self, names: I) -> Self {
        self.format = self.format.redact(names);
        self
    }

    /// Queue, batching, retry and shutdown settings for the sinks (`HIVELOG_BUFFER_BYTES`, …);
    /// the local output's queue uses the same budget and overflow policy.
    pub fn pipeline(mut self, config: PipelineConfig) -> Self {
        self.pipeline = config;
        self
    }

    /// Reads configuration from `env` instead of the process environment (tests, `hivelog check`).
    pub fn env(mut self, env: Env) -> Self {
        self.env = Some(env);
        self
    }

    /// Whether `init` installs the panic hook (default: yes).
    pub fn panic_hook(mut self, on: bool) -> Self {
        self.panic_hook = on;
        self
    }

    /// Emits a `hivelog.heartbeat` INFO event with the counters this often (`HIVELOG_HEARTBEAT`).
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = Some(every);
        self
    }

    /// Holds each request's lines below the destinations' levels, down to `config.level`, and
    /// writes them only if the request logs an error (see [`crate::request_buffer`]);
    /// `HIVELOG_REQUEST_BUFFER_*` override each part (`HIVELOG_REQUEST_BUFFER_LEVEL=off`
    /// switches it off).
    ///
    /// ```
    /// let _logs = hivelog::builder()
    ///     .request_buffer(hivelog::RequestBufferConfig::new(tracing::Level::DEBUG))
    ///     .init();
    /// let request = tracing::info_span!("request");
    /// let _in = request.enter();
    /// tracing::debug!("held: written only if this request logs an error");
    /// ```
    pub fn request_buffer(mut self, config: RequestBufferConfig) -> Self {
        self.request_buffer = Some(config);
        self
    }

    /// Adds a destination of your own: `make` builds it from the resolved [`Format`], and it runs
    /// on its own pipeline (queue, batching, retries, counters) under the main level filter.
    ///
    /// ```
    /// use hivelog::core::{BatchLimits, Outcomes, Record, Sink};
    ///
    /// struct Counter;
    /// impl Sink for Counter {
    ///     fn name(&self) -> &'static str { "counter" }
    ///     fn limits(&self) -> BatchLimits { BatchLimits { max_events: 1000, max_bytes: 1 << 20 } }
    ///     async fn send(&mut self, batch: &[Record]) -> Outcomes { Outcomes::delivered(batch.len()) }
    /// }
    /// let (dispatch, guard) = hivelog::builder().output(hivelog::Output::None).sink(|_format| Counter).try_build().unwrap();
    /// tracing::dispatcher::with_default(&dispatch, || tracing::info!("counted"));
    /// assert_eq!(guard.shutdown(std::time::Duration::from_secs(5)).sinks[0].delivered, 1);
    /// ```
    pub fn sink<S: Sink>(mut self, make: impl FnOnce(Arc<Format>) -> S + 'static) -> Self {
        self.custom
            .push(Box::new(move |format, p| Pipeline::spawn(make(format), p)));
        self
    }

    /// Ships to a registered destination with settings made in code (`FluentConfig`,
    /// `EsConfig`, `CloudWatchConfig`, or a registered destination's own configuration type);
    /// each of its variables that is set overrides its part. A value no registered destination
    /// takes is ignored.
    ///
    /// ```
    /// # #[cfg(feature = "elk")] {
    /// let es = hivelog::elk::EsConfig::new("http://127.0.0.1:9200").unwrap();
    /// let env = hivelog::Env::from_pairs([("HIVELOG_ES_INDEX", "from-env")]);
    /// hivelog::builder().env(env).destination(es).validate().unwrap();
    /// # }
    /// ```
    pub fn destination(mut self, config: impl Any + Send) -> Self {
        self.code.push(Box::new(config));
        self
    }

    /// Puts an OpenTelemetry layer (`tracing-opentelemetry`, exporting through `tracer`) under
    /// hivelog's: spans are exported, and each line's `trace_id`/`span_id` are its span's
    /// OpenTelemetry ids.
    ///
    /// ```
    /// # fn f(tracer: opentelemetry::trace::noop::NoopTracer) {
    /// let _logs = hivelog::builder().otel(tracer).init();
    /// # }
    /// ```
    #[cfg(feature = "otel")]
    pub fn otel<T>(mut self, tracer: T) -> Self
    where
        T: opentelemetry::trace::Tracer + Send + Sync + 'static,
        T::Span: Send + Sync,
    {
        self.otel = Some(crate::otel::layer(tracer));
        self
    }

    /// Installs hivelog as the global subscriber; on a configuration error, prints it to stderr
    /// and falls back to the defaults (JSON to stdout) rather than failing the service.
    pub fn init(self) -> Guard {
        crate::init_with(self)
    }

    /// Installs hivelog as the global subscriber, or says what is wrong.
    pub fn try_init(self) -> Result<Guard, ConfigError> {
        crate::try_init_with(self)
    }

    /// Checks the whole configuration (code defaults and `HIVELOG_*`) with the messages
    /// `try_init` would give, without opening files, starting threads or connecting anywhere.
    ///
    /// ```
    /// let env = hivelog::Env::from_pairs([("HIVELOG_OVERFLOW", "sometimes")]);
    /// let err = hivelog::builder().env(env).validate().unwrap_err();
    /// assert!(err.to_string().starts_with("HIVELOG_OVERFLOW: 'sometimes' is not an overflow policy"));
    /// ```
    pub fn validate(self) -> Result<(), ConfigError> {
        self.build_layer(true).map(|_| ())
    }

    /// Builds the subscriber without installing it: for tests (`tracing::dispatcher::with_default`)
    /// and programs that install their own. Starts the sinks' threads.
    pub fn try_build(mut self) -> Result<(Dispatch, Guard), ConfigError> {
        let under = self.take_under();
        let built = self.build_layer(false)?;
        let outputs = built.outputs.clone();
        Ok((
            dispatch(built, under),
            Guard {
                outputs,
                done: false,
            },
        ))
    }

    /// Builds hivelog as one layer of a subscriber of your own, or says what is wrong; see
    /// [`crate::layer`] for what the layer does and what the caller adds.
    ///
    /// ```
    /// use tracing_subscriber::prelude::*;
    ///
    /// let (hivelog, guard) = hivelog::builder()
    ///     .output(hivelog::Output::Stderr)
    ///     .level("warn")
    ///     .layer()
    ///     .unwrap();
    /// let subscriber = tracing_subscriber::registry()
    ///     .with(hivelog)
    ///     .with(tracing_subscriber::fmt::layer().with_filter(tracing_subscriber::filter::LevelFilter::DEBUG));
    /// tracing::subscriber::with_default(subscriber, || tracing::info!("to fmt only"));
    /// # drop(guard);
    /// ```
    pub fn layer<S>(self) -> Result<(crate::Layer<S>, Guard), ConfigError>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        crate::try_layer_with(self)
    }

    /// The layers that go under hivelog's (OpenTelemetry's, with the `otel` feature).
    #[cfg(feature = "otel")]
    pub(crate) fn take_under(&mut self) -> Under {
        self.otel.take()
    }

    /// The layers that go under hivelog's: none without the `otel` feature.
    #[cfg(not(feature = "otel"))]
    pub(crate) fn take_under(&mut self) -> Under {
        Under
    }

    /// Fails when layers were given to go under hivelog's, which `api` cannot install: with
    /// [`Builder::layer`], the caller adds `tracing-opentelemetry`'s layer to the stack.
    #[cfg(feature = "otel")]
    pub(crate) fn refuse_under(&mut self, api: &str) -> Result<(), ConfigError> {
        match self.otel.is_some() {
            true => Err(ConfigError::conflict(
                "Builder::otel",
                format!("{api} returns hivelog's layer alone; add tracing_opentelemetry::layer() to your subscriber instead (hivelog's lines carry its ids)"),
            )),
            false => Ok(()),
        }
    }

    /// Nothing goes under hivelog's layer without the `otel` feature.
    #[cfg(not(feature = "otel"))]
    pub(crate) fn refuse_under(&mut self, _: &str) -> Result<(), ConfigError> {
        Ok(())
    }

    /// Builds the layer, its filter and its outputs (threads start only when not a `dry_run`).
    pub(crate) fn build_layer(mut self, dry_run: bool) -> Result<Built, ConfigError> {
        let env = self.env.take().unwrap_or_else(Env::from_process);
        let format = self.build_format(&env)?;
        let main = level::resolve(&env, self.level.as_deref(), dry_run)?;
        // Read even without sinks: the local output has the same budget and overflow policy,
        // and a bad value is an error whether or not it is used yet.
        let pipeline = self
            .pipeline
            .clone()
            .apply_env(&env)?
            .for_service(format.service());
        let mut outputs = Outputs {
            shutdown_timeout: pipeline.shutdown_timeout,
            ..Outputs::default()
        };
        let mut routes = Routes::default();
        self.add_local(&env, &format, &pipeline, dry_run, &mut routes, &mut outputs)?;
        self.add_sinks(&env, &format, &pipeline, dry_run, &mut routes, &mut outputs)?;
        let requests = request_buffer::from_env(&env, self.request_buffer)?.map(Buffers::new);
        let floor = requests.as_ref().map_or(LevelFilter::OFF, |rb| {
            LevelFilter::from_level(rb.config.level)
        });
        let cell = volume(
            &env,
            main,
            routes.levels,
            &routes.dests,
            format.max_event_bytes(),
            floor,
            (!dry_run).then_some(&mut outputs),
        )?;
        outputs.requests = requests.clone();
        outputs.heartbeat_every = env
            .parse(
                "HIVELOG_HEARTBEAT",
                "a heartbeat interval",
                crate::heartbeat::parse,
            )?
            .unwrap_or(self.heartbeat);
        crate::destinations::warn_unused(&env);
        outputs.format = Some(format.clone());
        let filter = HivelogFilter::new(cell.clone(), requests.clone());
        // Once in a subscriber: level changes re-ask its callsites, the heartbeat logs to it.
        let joined = outputs.clone();
        let on_dispatch: crate::layer::OnDispatch = Box::new(move |dispatch| {
            joined.bind_level(dispatch);
            joined.start_heartbeat(dispatch.clone());
        });
        let layer = HivelogLayer::new(
            routes.dests,
            cell,
            format.capture_options(),
            outputs.limiter.clone(),
            requests,
            (!dry_run).then_some(on_dispatch),
        )
        .with_metrics(&format);
        Ok(Built {
            layer,
            filter,
            outputs,
        })
    }

    /// The format: the builder's defaults, then `HIVELOG_*`.
    fn build_format(&self, env: &Env) -> Result<Arc<Format>, ConfigError> {
        let mut format = self.format.clone();
        if let Some(spec) = &self.fields {
            format = format
                .fields(spec)
                .map_err(|e| rename_var(e, "builder fields"))?;
        }
        Ok(Arc::new(format.apply_env(env)?.build()))
    }

    /// Opens the local output (not in a dry run) as the first destination.
    fn add_local(
        &mut self,
        env: &Env,
        format: &Arc<Format>,
        pipeline: &PipelineConfig,
        dry_run: bool,
        routes: &mut Routes,
        outputs: &mut Outputs,
    ) -> Result<(), ConfigError> {
        let style = config::style(env)?.or(self.style).unwrap_or_default();
        let output = config::output(env, self.output.take())?;
        let mode = config::output_mode(env)?
            .or(self.output_mode)
            .unwrap_or_default();
        let local = match self.writer.take() {
            _ if dry_run => None,
            Some(w) => Some(Local::writer(w, style, format.clone(), mode, pipeline)),
            None => Local::open(&output, style, format.clone(), mode, pipeline).transpose(),
        }
        .transpose()
        .map_err(|e| {
            ConfigError::conflict("HIVELOG_OUTPUT", format!("cannot open {output:?}: {e}"))
        })?;
        if let Some(local) = local {
            let local = Arc::new(local);
            outputs.local = Some(local.clone());
            routes.dests.push(Dest::Local(local));
            routes.levels.push(RouteLevel::Main);
        }
        Ok(())
    }

    /// Configures every registered destination and starts the enabled ones (not in a dry run).
    fn add_sinks(
        &mut self,
        env: &Env,
        format: &Arc<Format>,
        pipeline: &PipelineConfig,
        dry_run: bool,
        routes: &mut Routes,
        outputs: &mut Outputs,
    ) -> Result<(), ConfigError> {
        for (level_var, spawn) in self.sinks(env, format)? {
            let level = route_level(env, level_var)?;
            if dry_run {
                continue;
            }
            let p = spawn(pipeline.clone()).map_err(|e| {
                ConfigError::conflict(
                    level_var.unwrap_or("sink"),
                    format!("cannot start the sink's thread: {e}"),
                )
            })?;
            outputs.sinks.push(p.clone());
            routes.dests.push(Dest::Sink(p));
            routes.levels.push(level);
        }
        Ok(())
    }

    /// Each enabled sink: its level variable and how to start its pipeline.
    fn sinks(
        &mut self,
        env: &Env,
        format: &Arc<Format>,
    ) -> Result<Vec<(Option<&'static str>, SpawnSink)>, ConfigError> {
        let mut sinks: Vec<(Option<&'static str>, SpawnSink)> = Vec::new();
        for custom in self.custom.drain(..) {
            let format = format.clone();
            sinks.push((None, Box::new(move |p| custom(format, p))));
        }
        for dest in crate::destinations::all() {
            let code = take_code(dest, &mut self.code);
            if let Some(configured) = dest.configure(env, code)? {
                let format = format.clone();
                sinks.push((
                    dest.level_var(),
                    Box::new(move |p| configured.start(format, p)),
                ));
            }
        }
        Ok(sinks)
    }

    pub(crate) fn wants_panic_hook(&self) -> bool {
        self.panic_hook
    }
}

/// A sink's level: its own `HIVELOG_<SINK>_LEVEL` when set (checked now), else the main level.
fn route_level(env: &Env, var: Option<&'static str>) -> Result<RouteLevel, ConfigError> {
    match var.and_then(|var| env.get(var).map(|v| (var, v))) {
        Some((var, v)) => {
            config::parse_filter(var, v)?;
            Ok(RouteLevel::Own {
                var,
                directives: v.to_owned(),
            })
        }
        None => Ok(RouteLevel::Main),
    }
}

/// Builds the routes' filters with the main level's control (and its file watcher) and the
/// rate limiter, stored in `outputs` (threads start only when `outputs` is given, not for a
/// dry run); returns the filters for the layer.
fn volume(
    env: &Env,
    main: level::MainLevel,
    levels: Vec<RouteLevel>,
    dests: &[Dest],
    max_text: usize,
    floor: LevelFilter,
    outputs: Option<&mut Outputs>,
) -> Result<Arc<FilterCell>, ConfigError> {
    let filters = Filters::build(&levels, &main.directives, &main.var)?;
    let cell = Arc::new(FilterCell::new(filters));
    let rate_limit = env.parse("HIVELOG_RATE_LIMIT", "a rate limit", ratelimit::parse)?;
    let Some(outputs) = outputs else {
        return Ok(cell);
    };
    let control = Arc::new(LevelControl::new(cell.clone(), levels, main.default).floor(floor));
    if let Some((path, seen)) = main.file {
        if let Err(e) = level::watch(control.clone(), path, seen) {
            hivelog_core::diag::warn(
                "config",
                "HIVELOG_LEVEL_FILE",
                format!("cannot start the level file's thread: {e}; the level stays fixed"),
            );
        }
    }
    outputs.level = Some(control);
    if let Some(limit) = rate_limit {
        let router = Router {
            dests: dests.to_vec(),
            filters: cell.clone(),
            max_text,
        };
        let limiter = Limiter::start(limit, router).map_err(|e| {
            ConfigError::conflict(
                "HIVELOG_RATE_LIMIT",
                format!("cannot start the rate limit's thread: {e}"),
            )
        })?;
        outputs.limiter = Some(limiter);
    }
    Ok(cell)
}

/// The destinations of the layer, each with the level that filters it.
#[derive(Default)]
struct Routes {
    dests: Vec<Dest>,
    levels: Vec<RouteLevel>,
}

type SpawnSink = Box<dyn FnOnce(PipelineConfig) -> std::io::Result<Pipeline>>;
type CustomSink = Box<dyn FnOnce(Arc<Format>, PipelineConfig) -> std::io::Result<Pipeline>>;

fn rename_var(e: ConfigError, var: &str) -> ConfigError {
    match e {
        ConfigError::Invalid {
            value,
            what,
            expected,
            ..
        } => ConfigError::Invalid {
            var: var.to_owned(),
            value,
            what,
            expected,
        },
        other => other,
    }
}
