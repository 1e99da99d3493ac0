//! The destinations this program can ship to: the ones compiled in (one line per sink crate
//! below) and the ones registered at run time with [`register_destination`].
//!
//! Everything that needs to know the destinations or their variables reads this list: the
//! builder (which ones to configure), the unknown-variable warnings, `hivelog check`, the
//! README test and the fuzz list ([`variables`]). A destination whose feature is off still
//! names its variable prefix, so `HIVELOG_ES_URL` in a build without `elk` gets a warning that
//! says which feature is missing.

use std::sync::RwLock;

use hivelog_core::destination::Destination;
use hivelog_core::format::FORMAT_VARS;
use hivelog_core::pipeline::PIPELINE_VARS;
use hivelog_core::{Env, Var};

/// A sink crate, compiled in or not.
// Which variant is ever built depends on the features.
#[allow(dead_code)]
enum Entry {
    On(&'static dyn Destination),
    Off {
        prefix: &'static str,
        feature: &'static str,
    },
}

/// One registration line: the `hivelog` feature, the variables' prefix, the crate's value.
macro_rules! destination {
    ($feature:literal, $prefix:literal, $value:path) => {{
        #[cfg(feature = $feature)]
        let entry = Entry::On(&$value);
        #[cfg(not(feature = $feature))]
        let entry = Entry::Off {
            prefix: $prefix,
            feature: $feature,
        };
        entry
    }};
}

fn built_in() -> [Entry; 4] {
    [
        destination!("fluent", "HIVELOG_FLUENT_", hivelog_fluent::DESTINATION),
        destination!("elk", "HIVELOG_ES_", hivelog_elk::DESTINATION),
        destination!(
            "cloudwatch",
            "HIVELOG_CLOUDWATCH_",
            hivelog_cloudwatch::DESTINATION
        ),
        destination!("otlp", "HIVELOG_OTLP_", hivelog_otlp::DESTINATION),
    ]
}

static REGISTERED: RwLock<Vec<&'static dyn Destination>> = RwLock::new(Vec::new());

/// Adds a destination of your own, configured from its variables like the built-in ones:
/// call it before [`crate::init`]. Registering the same value twice has no effect.
///
/// ```
/// # use hivelog::core::destination::{Configured, Destination};
/// # use hivelog::core::{ConfigError, Env, Var};
/// struct Nowhere;
/// const VARS: &[Var] = &[Var::new("HIVELOG_NOWHERE", "off", "never on")];
/// impl Destination for Nowhere {
///     fn name(&self) -> &'static str { "nowhere" }
///     fn vars(&self) -> &'static [Var] { VARS }
///     fn switches(&self) -> &'static [&'static str] { &["HIVELOG_NOWHERE"] }
///     fn configure(&self, env: &Env, _: Option<Box<dyn std::any::Any + Send>>)
///         -> Result<Option<Box<dyn Configured>>, ConfigError> { env.get("HIVELOG_NOWHERE"); Ok(None) }
/// }
/// static NOWHERE: Nowhere = Nowhere;
/// hivelog::register_destination(&NOWHERE);
/// assert!(hivelog::destinations().iter().any(|d| d.name() == "nowhere"));
/// ```
pub fn register_destination(dest: &'static dyn Destination) {
    let mut list = REGISTERED.write().unwrap_or_else(|e| e.into_inner());
    if !list.iter().any(|d| d.name() == dest.name()) {
        list.push(dest);
    }
}

/// Every destination this program can ship to: compiled in, then registered.
pub fn destinations() -> Vec<&'static dyn Destination> {
    let mut out: Vec<&'static dyn Destination> = built_in()
        .into_iter()
        .filter_map(|e| match e {
            Entry::On(d) => Some(d),
            Entry::Off { .. } => None,
        })
        .collect();
    out.extend(REGISTERED.read().unwrap_or_else(|e| e.into_inner()).iter());
    out
}

pub(crate) fn all() -> Vec<&'static dyn Destination> {
    destinations()
}

/// The feature a variable needs when its destination is not compiled in.
pub(crate) fn missing_feature(var: &str) -> Option<&'static str> {
    built_in().into_iter().find_map(|e| match e {
        Entry::Off { prefix, feature } if var.starts_with(prefix) => Some(feature),
        _ => None,
    })
}

/// Every variable hivelog reads, in sections: `general` (the facade's and the format's),
/// `delivery` (every destination's queue and retries), then one per destination.
///
/// ```
/// let names: Vec<&str> = hivelog::variables().iter().flat_map(|(_, v)| v.iter().map(|v| v.name)).collect();
/// assert!(names.contains(&"HIVELOG_LEVEL") && names.contains(&"HIVELOG_BUFFER_BYTES"));
/// ```
pub fn variables() -> Vec<(&'static str, Vec<Var>)> {
    let general = crate::config::VARS
        .iter()
        .chain(crate::request_buffer::VARS)
        .chain(FORMAT_VARS)
        .copied()
        .collect();
    let mut out = vec![("general", general), ("delivery", PIPELINE_VARS.to_vec())];
    for d in destinations() {
        out.push((d.name(), d.vars().to_vec()));
    }
    out
}

/// One warning per `HIVELOG_*` variable nothing read (a typo, or a sink not compiled in).
pub(crate) fn warn_unused(env: &Env) {
    let destinations = all();
    for var in env.unused() {
        let of_a_destination = destinations
            .iter()
            .any(|d| d.vars().iter().any(|v| v.name == var));
        let msg = match missing_feature(&var) {
            Some(feature) => format!(
                "{var} is set but this program was built without hivelog's `{feature}` feature; it is ignored"
            ),
            None if of_a_destination => format!(
                "{var} is set but that sink is not enabled (its address, URL or group is not set); it is ignored"
            ),
            None => format!("{var} is not a hivelog variable; it is ignored (typo?)"),
        };
        hivelog_core::diag::warn("config", &var, &msg);
    }
}
