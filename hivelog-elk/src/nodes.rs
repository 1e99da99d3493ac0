//! Node URLs and Elastic Cloud IDs: parsing `HIVELOG_ES_URL` into node base URLs (moving any
//! credentials out of them) and decoding `HIVELOG_ES_CLOUD_ID` into a URL.

use hivelog_core::{ConfigError, Secret};

use crate::auth::{decode_base64_lenient, Auth};

/// `user:pass@host` (a URL that did not parse) with the credentials masked: `***@host`.
fn mask_userinfo(raw: &str) -> String {
    let (scheme, rest) = match raw.find("://") {
        Some(i) => raw.split_at(i + 3),
        None => ("", raw),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}***{}", &rest[at..]),
        None => raw.to_owned(),
    }
}

/// Splits a comma-separated node list; credentials found in a URL are moved out of it.
pub(crate) fn parse_nodes(var: &str, urls: &str) -> Result<(Vec<String>, Auth), ConfigError> {
    let mut nodes = Vec::new();
    let mut auth = Auth::None;
    for raw in urls.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad = |why: &str| {
            // Never echo a password embedded in the URL.
            let shown = match reqwest::Url::parse(raw) {
                Ok(mut u) if u.password().is_some() => {
                    let _ = u.set_password(Some("***"));
                    u.to_string()
                }
                _ => mask_userinfo(raw),
            };
            ConfigError::invalid(var, &shown, "a node URL", why)
        };
        let mut url = reqwest::Url::parse(raw).map_err(|_| {
            bad("comma-separated http:// or https:// URLs such as https://es.internal:9200")
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(bad(
                "comma-separated http:// or https:// URLs such as https://es.internal:9200",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad(
                "a URL without ?query or #fragment (a path prefix is fine)",
            ));
        }
        if !url.username().is_empty() {
            auth = Auth::Basic {
                username: decode_pct(url.username()),
                password: Secret::new(decode_pct(url.password().unwrap_or(""))),
            };
            let _ = url.set_username("");
            let _ = url.set_password(None);
        }
        nodes.push(url.as_str().trim_end_matches('/').to_owned());
    }
    if nodes.is_empty() {
        return Err(ConfigError::invalid(
            var,
            urls,
            "a node URL",
            "http:// or https:// URLs",
        ));
    }
    Ok((nodes, auth))
}

fn decode_pct(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decodes an Elastic Cloud ID, `name:base64(host[:port]$es_uuid[:port]$kibana_uuid)`, into
/// the Elasticsearch URL `https://es_uuid.host[:port]`, as Elastic's own clients do. The
/// port defaults to 443; a port on the `es_uuid` part wins over one on the host.
pub fn decode_cloud_id(cloud_id: &str) -> Result<String, String> {
    const FORM: &str = "'name:base64(host$es_uuid$kibana_uuid)', as shown on the deployment's page in Elastic Cloud";
    let encoded = match cloud_id.rsplit_once(':') {
        Some((_, e)) => e,
        None => cloud_id,
    };
    let decoded = decode_base64_lenient(encoded).ok_or_else(|| FORM.to_owned())?;
    let decoded = String::from_utf8(decoded).map_err(|_| FORM.to_owned())?;
    let mut parts = decoded.trim_end().split('$');
    let host = parts.next().unwrap_or("");
    let es = parts.next().unwrap_or("");
    let (host, mut port) = match host.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => (h, p),
        _ => (host, "443"),
    };
    let es = match es.rsplit_once(':') {
        Some((u, p)) if p.parse::<u16>().is_ok() => {
            port = p;
            u
        }
        _ => es,
    };
    let valid = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
    };
    if !valid(host) || !valid(es) {
        return Err(FORM.to_owned());
    }
    Ok(if port == "443" {
        format!("https://{es}.{host}")
    } else {
        format!("https://{es}.{host}:{port}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    #[test]
    fn cloud_ids_decode_as_elastics_clients_do() {
        use base64::engine::general_purpose::STANDARD;
        let id = format!(
            "my-deploy:{}",
            STANDARD.encode("us-east-1.aws.found.io$abc123$kib456")
        );
        assert_eq!(
            decode_cloud_id(&id).unwrap(),
            "https://abc123.us-east-1.aws.found.io"
        );
        let id = format!("x:{}", STANDARD.encode("eu.cloud.es.io:9243$es1$kb"));
        assert_eq!(
            decode_cloud_id(&id).unwrap(),
            "https://es1.eu.cloud.es.io:9243"
        );
        let id = format!("x:{}", STANDARD.encode("eu.cloud.es.io$es1:9244$kb:9245"));
        assert_eq!(
            decode_cloud_id(&id).unwrap(),
            "https://es1.eu.cloud.es.io:9244"
        );
        // Unpadded base64 and a name containing ':' are accepted.
        let enc = STANDARD_NO_PAD_ENC("host.io$uuid$k");
        assert_eq!(
            decode_cloud_id(&format!("a:b:{enc}")).unwrap(),
            "https://uuid.host.io"
        );
    }

    #[allow(non_snake_case)]
    fn STANDARD_NO_PAD_ENC(s: &str) -> String {
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(s)
    }
}
