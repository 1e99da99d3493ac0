//! Runs code under a hivelog subscriber built from given variables and returns the parsed lines.
#![allow(dead_code)]

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use serde_json::Value;

/// A writer tests can read back.
#[derive(Clone, Default)]
pub struct Buf(pub Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Buf {
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).expect("output is UTF-8")
    }
}

/// Builds hivelog from `vars` (and nothing from the process environment), runs `f`, returns
/// every output line parsed as JSON (panicking on any line that is not one JSON object).
pub fn json_lines(vars: &[(&str, &str)], f: impl FnOnce()) -> Vec<Value> {
    parse(&raw(hivelog::builder(), vars, f))
}

/// Like [`json_lines`] with a builder carrying code defaults.
pub fn json_lines_with(b: hivelog::Builder, vars: &[(&str, &str)], f: impl FnOnce()) -> Vec<Value> {
    parse(&raw(b, vars, f))
}

/// The raw output text.
pub fn raw(b: hivelog::Builder, vars: &[(&str, &str)], f: impl FnOnce()) -> String {
    let buf = Buf::default();
    let env = hivelog::Env::from_pairs(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let (dispatch, guard) = b
        .env(env)
        .writer(buf.clone())
        .try_build()
        .expect("valid configuration");
    tracing::dispatcher::with_default(&dispatch, f);
    drop(guard);
    buf.text()
}

pub fn parse(text: &str) -> Vec<Value> {
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "output ends with a newline: {text:?}"
    );
    text.lines()
        .map(|l| {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            assert!(v.is_object(), "not an object: {l}");
            v
        })
        .collect()
}

/// The keys of a JSON object, in output order (serde_json is built with `preserve_order`).
pub fn keys(v: &Value) -> Vec<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

/// Builds with `vars` and returns the configuration error's message.
pub fn config_error(vars: &[(&str, &str)]) -> String {
    let env = hivelog::Env::from_pairs(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    match hivelog::builder().env(env).writer(io::sink()).try_build() {
        Ok(_) => panic!("{vars:?} should be rejected"),
        Err(e) => e.to_string(),
    }
}
