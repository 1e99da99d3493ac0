//! The Forward protocol's optional authentication: HELO / PING / PONG.
//!
//! A receiver with a `<security>` section speaks first: `["HELO", {"nonce", "auth",
//! "keepalive"}]`. The client answers `["PING", hostname, salt, sha512_hex(salt + hostname +
//! nonce + shared_key), username, sha512_hex(auth + username + password)]`, and the server
//! replies `["PONG", ok, reason, server_hostname, sha512_hex(salt + server_hostname + nonce +
//! shared_key)]`.
//!
//! The server's digest is verified too: without that check anyone listening on the address
//! could collect the logs. Events are never written before a verified PONG, because Fluentd
//! silently drops what arrives before PING. Every failure says what to check, since the usual
//! cause is a configuration mismatch between the two sides, which no retry can fix.

use std::time::Instant;

use hivelog_core::Secret;
use rand::RngCore as _;
use rmpv::Value;
use sha2::{Digest, Sha512};

use crate::transport::{Connection, TransportError};

/// What the client proves.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// The shared key.
    pub shared_key: Secret,
    /// The hostname sent in PING.
    pub hostname: String,
    /// Username, when the receiver has `<user>` sections.
    pub username: Option<String>,
    /// Password.
    pub password: Option<Secret>,
}

/// Why the handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The receiver refused our PING (`PONG false`).
    #[error("{addr} refused the handshake: {reason}; check HIVELOG_FLUENT_SHARED_KEY (and _USERNAME/_PASSWORD) against the receiver's <security> section")]
    Refused {
        /// The receiver's address.
        addr: String,
        /// The receiver's reason (`shared_key mismatch`).
        reason: String,
    },
    /// The receiver's PONG digest is wrong: it does not know our shared key.
    #[error("{addr} answered PONG with a digest that does not match HIVELOG_FLUENT_SHARED_KEY: the receiver has another key or is not the expected server; nothing was sent")]
    ServerDigest {
        /// The receiver's address.
        addr: String,
    },
    /// No HELO arrived in time.
    #[error("{addr} sent no HELO: HIVELOG_FLUENT_SHARED_KEY is set but the receiver does not seem to have a <security> section with shared_key")]
    NoHelo {
        /// The receiver's address.
        addr: String,
    },
    /// The receiver closed the connection during the handshake.
    #[error("{addr} closed the connection during the handshake ({stage}); check HIVELOG_FLUENT_SHARED_KEY (and _USERNAME/_PASSWORD) against the receiver's <security> section")]
    ClosedDuring {
        /// The receiver's address.
        addr: String,
        /// `after HELO`, `before PONG`.
        stage: &'static str,
    },
    /// The receiver sent something that is not a handshake message.
    #[error("{addr} sent an unexpected handshake message: {message}")]
    Protocol {
        /// The receiver's address.
        addr: String,
        /// What arrived.
        message: String,
    },
    /// The connection failed otherwise.
    #[error(transparent)]
    Transport(#[from] TransportError),
}

impl HandshakeError {
    /// The kind of failure, for the report and `hivelog check`.
    pub fn kind(&self) -> hivelog_core::FailureKind {
        use hivelog_core::FailureKind;
        match self {
            HandshakeError::Refused { .. }
            | HandshakeError::ServerDigest { .. }
            | HandshakeError::NoHelo { .. }
            | HandshakeError::ClosedDuring { .. } => FailureKind::Credentials,
            HandshakeError::Protocol { .. } => FailureKind::Protocol,
            HandshakeError::Transport(t) => t.kind(),
        }
    }

    /// Whether the failure is a configuration mismatch that retrying will not fix soon.
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            HandshakeError::Refused { .. }
                | HandshakeError::ServerDigest { .. }
                | HandshakeError::NoHelo { .. }
        )
    }
}

/// `sha512_hex(a + b + …)`, lowercase.
pub fn sha512_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha512::new();
    for p in parts {
        h.update(p);
    }
    hex::encode(h.finalize())
}

fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::String(s) => Some(s.as_bytes()),
        Value::Binary(b) => Some(b),
        _ => None,
    }
}

fn field<'a>(map: &'a Value, key: &str) -> Option<&'a Value> {
    map.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

/// Runs the client side of the handshake on a fresh connection, by `deadline`.
pub async fn handshake(
    conn: &mut Connection,
    creds: &Credentials,
    deadline: Instant,
) -> Result<(), HandshakeError> {
    let (nonce, auth) = read_helo(conn, deadline).await?;
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = hex::encode(salt);
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut out, &ping(creds, &salt, &nonce, &auth));
    conn.write_all(&out).await?;
    read_pong(conn, deadline, creds, &salt, &nonce).await
}

/// Reads HELO: the nonce and the user-auth salt.
async fn read_helo(
    conn: &mut Connection,
    deadline: Instant,
) -> Result<(Vec<u8>, Vec<u8>), HandshakeError> {
    let addr = conn.addr().to_owned();
    let helo = match conn.read_value(deadline).await {
        Ok(Some(v)) => v,
        Ok(None) => return Err(HandshakeError::NoHelo { addr }),
        Err(TransportError::Closed { .. }) => {
            return Err(HandshakeError::ClosedDuring {
                addr,
                stage: "before HELO",
            })
        }
        Err(e) => return Err(e.into()),
    };
    let items = helo.as_array().map(Vec::as_slice).unwrap_or_default();
    if items.len() != 2 || items[0].as_str() != Some("HELO") {
        return Err(HandshakeError::Protocol {
            addr,
            message: format!("expected HELO, got {helo}"),
        });
    }
    let get = |k| {
        field(&items[1], k)
            .and_then(bytes)
            .unwrap_or_default()
            .to_vec()
    };
    Ok((get("nonce"), get("auth")))
}

/// `["PING", hostname, salt, digest, username, password digest]`.
fn ping(creds: &Credentials, salt: &str, nonce: &[u8], auth: &[u8]) -> Value {
    let key = creds.shared_key.expose().as_bytes();
    let host = creds.hostname.as_bytes();
    let digest = sha512_hex(&[salt.as_bytes(), host, nonce, key]);
    let (user, pass_digest) = match (&creds.username, auth.is_empty()) {
        (Some(u), false) => {
            let p = creds.password.as_ref().map(Secret::expose).unwrap_or("");
            (u.clone(), sha512_hex(&[auth, u.as_bytes(), p.as_bytes()]))
        }
        _ => (String::new(), String::new()),
    };
    Value::Array(vec![
        "PING".into(),
        creds.hostname.clone().into(),
        salt.to_owned().into(),
        digest.into(),
        user.into(),
        pass_digest.into(),
    ])
}

/// Reads PONG and verifies the server's digest.
async fn read_pong(
    conn: &mut Connection,
    deadline: Instant,
    creds: &Credentials,
    salt: &str,
    nonce: &[u8],
) -> Result<(), HandshakeError> {
    let addr = conn.addr().to_owned();
    let pong = match conn.read_value(deadline).await {
        Ok(Some(v)) => v,
        Ok(None) => {
            return Err(HandshakeError::Protocol {
                addr,
                message: "no PONG before the connect timeout".to_owned(),
            })
        }
        Err(TransportError::Closed { .. }) => {
            return Err(HandshakeError::ClosedDuring {
                addr,
                stage: "after HELO, before PONG",
            })
        }
        Err(e) => return Err(e.into()),
    };
    let p = pong.as_array().map(Vec::as_slice).unwrap_or_default();
    if p.len() != 5 || p[0].as_str() != Some("PONG") {
        return Err(HandshakeError::Protocol {
            addr,
            message: format!("expected PONG, got {pong}"),
        });
    }
    if p[1].as_bool() != Some(true) {
        let reason = p[2].as_str().unwrap_or("no reason given").to_owned();
        return Err(HandshakeError::Refused { addr, reason });
    }
    let key = creds.shared_key.expose().as_bytes();
    let server_host = bytes(&p[3]).unwrap_or_default();
    let expected = sha512_hex(&[salt.as_bytes(), server_host, nonce, key]);
    if bytes(&p[4]) != Some(expected.as_bytes()) {
        return Err(HandshakeError::ServerDigest { addr });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_sha512_hex_of_the_concatenation() {
        assert_eq!(sha512_hex(&[b"a", b"bc"]), sha512_hex(&[b"abc"]));
        assert_eq!(sha512_hex(&[b"abc"]).len(), 128);
        assert!(sha512_hex(&[b"abc"]).starts_with("ddaf35a193617aba"));
    }
}
