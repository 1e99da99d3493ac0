//! A cap on how much of any CloudWatch answer is read into memory.
//!
//! The AWS SDK reads a whole response body before deserializing it, error bodies included, so
//! a broken or hostile endpoint (a proxy, a misconfigured `AWS_ENDPOINT_URL`) answering with a
//! gigabyte would make the service's memory grow by a gigabyte. Real PutLogEvents,
//! CreateLogStream and PutRetentionPolicy answers are a few hundred bytes; beyond
//! [`MAX_RESPONSE_BYTES`] the body read fails, which the sink treats as a network error
//! (retried with backoff, counted).

use aws_sdk_cloudwatchlogs::config::interceptors::BeforeDeserializationInterceptorContextMut;
use aws_sdk_cloudwatchlogs::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_types::body::SdkBody;

/// Most bytes of one answer read into memory.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Wraps each response body so that reading more than [`MAX_RESPONSE_BYTES`] fails.
#[derive(Debug)]
pub(crate) struct CapResponseBody;

impl Intercept for CapResponseBody {
    fn name(&self) -> &'static str {
        "hivelog::CapResponseBody"
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_cloudwatchlogs::error::BoxError> {
        let response = context.response_mut();
        let body = response.take_body();
        *response.body_mut() =
            SdkBody::from_body_1_x(http_body_util::Limited::new(body, MAX_RESPONSE_BYTES));
        Ok(())
    }
}
