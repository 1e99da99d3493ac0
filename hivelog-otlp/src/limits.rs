//! What an OpenTelemetry collector accepts, as constants beside where they come from.
//!
//! The OTLP specification sets no size limit of its own; the limits that bite are the
//! receivers' defaults, which most collectors (and the vendors' OTLP endpoints) copy from the
//! OpenTelemetry Collector's `otlpreceiver`.

/// The most bytes one HTTP request body may hold once decompressed: the Collector's
/// `confighttp` `max_request_body_size` default, "20MiB". Kept a little below.
pub const MAX_HTTP_BODY: usize = 20 * 1024 * 1024 - 64 * 1024;

/// The most bytes of one gRPC message: the Collector's `configgrpc` `max_recv_msg_size_mib`
/// default, 4 MiB (gRPC's own default). Kept a little below.
pub const MAX_GRPC_MESSAGE: usize = 4 * 1024 * 1024 - 64 * 1024;

/// Most records per request: the Collector's batch processor default `send_batch_size`,
/// 8192, so a collector behind hivelog forwards what it receives without splitting it.
pub const MAX_BATCH_RECORDS: usize = 8192;

/// The most bytes of an answer read (a partial success or a `google.rpc.Status` are small;
/// a proxy's error page is cut here).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The longest `Retry-After` honoured: a server asking for more gets this, so a wrong header
/// cannot stall the pipeline for hours (the pipeline's own retry budget still applies).
pub const MAX_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

/// Why a record alone was refused before sending.
pub(crate) const TOO_LARGE: &str =
    "record larger than the collector's request limit (20 MiB over HTTP, 4 MiB over gRPC)";
