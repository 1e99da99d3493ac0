//! Where the external test servers listen. `scripts/test.sh` starts them and exports:
//!
//! - `HIVELOG_TEST_MOTO`: moto_server's base URL (CloudWatch Logs), e.g. `http://127.0.0.1:41234`
//! - `HIVELOG_TEST_ES`: noida-db's Elasticsearch API base URL
//! - `HIVELOG_TEST_PYTHON`: a python with `fluent-logger`, `msgpack` and `boto3` installed
//!
//! A test that needs one of them and does not find it fails with a message saying how to run
//! the suite; it never passes silently.

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the test suite with `scripts/test.sh`, which starts the test servers")
    })
}

/// moto_server's base URL.
pub fn moto_url() -> String {
    var("HIVELOG_TEST_MOTO")
}

/// noida-db's Elasticsearch base URL.
pub fn es_url() -> String {
    var("HIVELOG_TEST_ES")
}

/// A python interpreter with the peer clients installed.
pub fn python() -> String {
    var("HIVELOG_TEST_PYTHON")
}
