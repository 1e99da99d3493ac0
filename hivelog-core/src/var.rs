//! The description of one variable, as every variable table holds it.
//!
//! Its own module because everything that reads variables has a table of them (the format, the
//! pipeline, each destination) and everything that lists them reads those tables (warnings,
//! `hivelog check`, the README test): none of them should depend on the destination contract
//! to name a variable.

/// One `HIVELOG_*` variable (or another variable a destination reads, such as `AWS_REGION`).
///
/// ```
/// use hivelog_core::Var;
/// const TOKEN: Var = Var::new("HIVELOG_WEBHOOK_TOKEN", "none", "bearer token").secret();
/// assert!(TOKEN.secret && TOKEN.default == "none");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Var {
    /// The variable's name.
    pub name: &'static str,
    /// The documented default, as a user would write it (`30s`, `4MiB`), or what applies when
    /// it is unset (`off`, `(HIVELOG_LEVEL)`).
    pub default: &'static str,
    /// Whether its value must never be shown (`hivelog check` prints `***`).
    pub secret: bool,
    /// One line: what it sets.
    pub doc: &'static str,
}

impl Var {
    /// A variable that is not secret.
    pub const fn new(name: &'static str, default: &'static str, doc: &'static str) -> Var {
        Var {
            name,
            default,
            secret: false,
            doc,
        }
    }

    /// The same variable, marked secret.
    pub const fn secret(self) -> Var {
        Var {
            secret: true,
            ..self
        }
    }
}
