//! Shared test helpers (test servers, fault injection).
