//! The last line of defence against printing a secret.
//!
//! Secrets are masked where they are displayed (the configs' `Debug` shows `Secret` as `***`,
//! secret variables are shown as `***`), but the report also carries text this tool does not
//! control: errors from HTTP clients, the AWS SDK and receivers. Every string of the report is
//! therefore passed through a [`Scrubber`] that knows the secret values of this environment
//! and replaces any occurrence with `***`.

/// Whether a variable holds a secret, by its name.
pub fn is_secret_var(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    n.contains("PASSWORD")
        || n.contains("SECRET")
        || n.contains("TOKEN")
        || n.ends_with("_KEY")
        || n.contains("CREDENTIAL")
}

/// Shortest secret value that is scrubbed from free text: shorter ones would mangle ordinary
/// words (and protect nothing worth protecting).
const MIN_SCRUBBED_LEN: usize = 6;

/// Replaces known secret values in text.
#[derive(Debug, Default)]
pub struct Scrubber {
    secrets: Vec<String>,
}

impl Scrubber {
    /// Collects the secrets among `vars`: values of secret-named variables and passwords
    /// embedded in URLs (`https://user:pass@host`).
    pub fn new<'a>(vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> Scrubber {
        let mut secrets = Vec::new();
        for (name, value) in vars {
            let value = value.trim();
            if is_secret_var(name) {
                secrets.push(value.to_owned());
                // `id:api_key`: the part after the colon is the secret.
                if let Some((_, key)) = value.split_once(':') {
                    secrets.push(key.to_owned());
                }
            }
            for part in value.split(',') {
                if let Some(userinfo) = url_userinfo(part.trim()) {
                    if let Some((_, password)) = userinfo.split_once(':') {
                        secrets.push(password.to_owned());
                    }
                    secrets.push(userinfo.to_owned());
                }
            }
        }
        secrets.retain(|s| s.len() >= MIN_SCRUBBED_LEN);
        // Longest first, so a secret containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Scrubber { secrets }
    }

    /// `text` with every known secret replaced by `***`.
    pub fn clean(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "***");
            }
        }
        out
    }
}

/// The `user:pass` of `scheme://user:pass@host/...` (or of `user:pass@host`, a URL missing its
/// scheme, which the parsers reject while quoting it), if any.
fn url_userinfo(url: &str) -> Option<&str> {
    let (schemeless, rest) = match url.split_once("://") {
        Some((_, rest)) => (false, rest),
        None => (true, url),
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let (userinfo, _) = authority.rsplit_once('@')?;
    // Without a scheme, only `user:password` in URL characters: not an e-mail address or an
    // `HIVELOG_EXTRA` value that happens to hold an `@`.
    let plausible = !schemeless
        || (userinfo.contains(':')
            && userinfo
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._~:%!$&*+;".contains(c)));
    (!userinfo.is_empty() && plausible).then_some(userinfo)
}

/// `value` with the credentials of any `scheme://user:pass@host` URL in it shown as `***`.
pub fn mask_url_credentials(value: &str) -> String {
    value
        .split(',')
        .map(|part| match url_userinfo(part.trim()) {
            Some(userinfo) => part.replacen(userinfo, "***", 1),
            None => part.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_and_url_passwords_are_scrubbed() {
        let s = Scrubber::new([
            ("HIVELOG_ES_PASSWORD", "hunter22"),
            ("HIVELOG_ES_URL", "https://elastic:changeme@es:9200/"),
            ("HIVELOG_SERVICE", "checkout"),
        ]);
        assert_eq!(
            s.clean("hunter22 at https://elastic:changeme@es:9200 for checkout"),
            "*** at https://***@es:9200 for checkout"
        );
    }

    #[test]
    fn secret_names_and_url_masking() {
        for n in [
            "HIVELOG_FLUENT_SHARED_KEY",
            "HIVELOG_ES_API_KEY",
            "HIVELOG_FLUENT_PASSWORD",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
        ] {
            assert!(is_secret_var(n), "{n}");
        }
        assert!(!is_secret_var("HIVELOG_ES_USERNAME"));
        assert_eq!(
            mask_url_credentials("https://u:p@a:9200,http://b:9200"),
            "https://***@a:9200,http://b:9200"
        );
        assert_eq!(mask_url_credentials("u:p@a:9200"), "***@a:9200");
        assert_eq!(mask_url_credentials("a@b.c"), "a@b.c");
        assert_eq!(
            mask_url_credentials(r#"{"owner":"a@b.c"}"#),
            r#"{"owner":"a@b.c"}"#
        );
        assert_eq!(
            mask_url_credentials("tcp://fluentd:24224"),
            "tcp://fluentd:24224"
        );
    }
}
