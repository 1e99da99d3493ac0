//! Example services (see `examples/`).
