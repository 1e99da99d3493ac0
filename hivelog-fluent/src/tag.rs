//! Tags: the `HIVELOG_FLUENT_TAG` template and the tag-safe rendering of its placeholders.
//!
//! Its own module because both the configuration (which validates a template once, at init)
//! and the request builder (which renders it per target) need it, and neither should import
//! the other.

/// The longest tag (a longer rendered tag is cut): keeps a message's framing small.
pub const MAX_TAG_LEN: usize = 512;

/// A parsed `HIVELOG_FLUENT_TAG` template.
///
/// ```
/// use hivelog_fluent::tag::TagTemplate;
/// let t = TagTemplate::parse("{service}.{target}").unwrap();
/// assert_eq!(t.render("checkout", "app::db"), "checkout.app.db");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagTemplate {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Service,
    Target,
}

impl TagTemplate {
    /// Parses literal text with `{service}` and `{target}`; `Err` holds what was expected.
    pub fn parse(s: &str) -> Result<TagTemplate, String> {
        let expected = || "text with the placeholders {service} and {target}".to_owned();
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let close = rest[open..].find('}').ok_or_else(expected)? + open;
            parts.push(match &rest[open + 1..close] {
                "service" => Part::Service,
                "target" => Part::Target,
                _ => return Err(expected()),
            });
            rest = &rest[close + 1..];
        }
        if rest.contains('}') {
            return Err(expected());
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        if parts.is_empty() {
            return Err(expected());
        }
        Ok(TagTemplate { parts })
    }

    /// Whether the tag depends on the record's target.
    pub fn uses_target(&self) -> bool {
        self.parts.contains(&Part::Target)
    }

    /// The tag for a service and a target: `::` becomes `.`, and characters other than
    /// letters, digits, `.`, `_` and `-` become `_`, so tags route with Fluentd's `<match>`
    /// patterns.
    pub fn render(&self, service: &str, target: &str) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Service => push_tag_safe(&mut out, service),
                Part::Target => push_tag_safe(&mut out, target),
            }
        }
        if out.len() > MAX_TAG_LEN {
            let cut = hivelog_core::record::floor_char_boundary(&out, MAX_TAG_LEN);
            out.truncate(cut);
        }
        out
    }
}

fn push_tag_safe(out: &mut String, s: &str) {
    let s = s.replace("::", ".");
    out.extend(s.chars().map(|c| {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
            c
        } else {
            '_'
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_templates_render_service_and_tag_safe_targets() {
        let t = TagTemplate::parse("{service}.{target}").unwrap();
        assert!(t.uses_target());
        assert_eq!(
            t.render("checkout", "app::db::pool"),
            "checkout.app.db.pool"
        );
        assert_eq!(t.render("my svc", "a b"), "my_svc.a_b");
        let t = TagTemplate::parse("logs.{service}").unwrap();
        assert!(!t.uses_target());
        assert_eq!(t.render("api", "x"), "logs.api");
        for bad in ["{pid}", "{service", "service}", ""] {
            assert!(TagTemplate::parse(bad).is_err(), "{bad}");
        }
    }
}
