//! Where the layer sends an event once a destination's filter takes it.
//!
//! Its own module so that the layer and the rate limiter (whose summaries go to the same
//! destinations) both name it without importing each other.

use std::sync::Arc;

use hivelog_core::Pipeline;

use crate::output::Local;

/// Where a route sends what its filter lets through.
#[derive(Clone)]
pub(crate) enum Dest {
    Local(Arc<Local>),
    Sink(Pipeline),
}
