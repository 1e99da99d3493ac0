//! Resolving `{instance}`: `HIVELOG_INSTANCE`, else the ECS task id, else the EC2 instance id,
//! else the host name — so a stream name says which task or machine wrote it, as our first
//! users' `<EC2 instance id>/...` streams did.
//!
//! Each lookup has a short timeout and runs on the sink's thread when it starts, never in
//! `init()`: outside ECS and EC2 (a laptop, CI) the fallback to the host name costs at most
//! [`LOOKUP_TIMEOUT`] per source, once. `AWS_EC2_METADATA_DISABLED=true` skips IMDS entirely,
//! as it does for the AWS SDKs.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one metadata lookup may take before the next source is tried.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(1);

/// The `{instance}` value: `configured` when set, else the first metadata source that answers.
pub(crate) async fn resolve(configured: Option<&str>, hostname: &str) -> String {
    if let Some(i) = configured {
        return i.to_owned();
    }
    if let Ok(uri) = std::env::var("ECS_CONTAINER_METADATA_URI_V4") {
        if let Some(id) = ecs_task_id(&uri).await {
            return id;
        }
    }
    if !imds_disabled() {
        if let Some(id) = ec2_instance_id().await {
            return id;
        }
    }
    hostname.to_owned()
}

fn imds_disabled() -> bool {
    std::env::var("AWS_EC2_METADATA_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// The task id: the last segment of `TaskARN` in the task metadata endpoint's answer.
async fn ecs_task_id(base: &str) -> Option<String> {
    let body = tokio::time::timeout(
        LOOKUP_TIMEOUT,
        http_get(&format!("{}/task", base.trim_end_matches('/'))),
    )
    .await
    .ok()??;
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    task_id_from_arn(v.get("TaskARN")?.as_str()?)
}

fn task_id_from_arn(arn: &str) -> Option<String> {
    // arn:aws:ecs:REGION:ACCOUNT:task/CLUSTER/TASK_ID (or task/TASK_ID, the old format)
    let id = arn.rsplit('/').next()?;
    (!id.is_empty() && arn.contains(":task/")).then(|| id.to_owned())
}

async fn ec2_instance_id() -> Option<String> {
    let client = aws_config::imds::Client::builder()
        .max_attempts(1)
        .connect_timeout(LOOKUP_TIMEOUT / 2)
        .read_timeout(LOOKUP_TIMEOUT / 2)
        .build();
    let id = tokio::time::timeout(
        LOOKUP_TIMEOUT * 2,
        client.get("/latest/meta-data/instance-id"),
    )
    .await
    .ok()?
    .ok()?;
    let id = String::from(id);
    (!id.is_empty()).then_some(id)
}

/// A plain `GET` over HTTP/1.0 (so the answer is never chunked), for the link-local ECS
/// metadata endpoint only: no TLS, no redirects. Returns the body of a 200 answer.
async fn http_get(url: &str) -> Option<Vec<u8>> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let mut conn = TcpStream::connect(addr).await.ok()?;
    let req =
        format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\nAccept: application/json\r\n\r\n");
    conn.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    conn.take(1 << 20).read_to_end(&mut buf).await.ok()?;
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let status_line = buf[..head_end].split(|b| *b == b'\n').next()?;
    let status_ok = std::str::from_utf8(status_line)
        .ok()?
        .split_whitespace()
        .nth(1)
        == Some("200");
    status_ok.then(|| buf[head_end + 4..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn task_ids_come_from_both_arn_formats() {
        assert_eq!(
            task_id_from_arn("arn:aws:ecs:us-east-1:012345678910:task/my-cluster/9781c248-0edd-4cdb-9a93-f63cb662a5d3").as_deref(),
            Some("9781c248-0edd-4cdb-9a93-f63cb662a5d3")
        );
        assert_eq!(
            task_id_from_arn("arn:aws:ecs:us-east-1:0123:task/abc").as_deref(),
            Some("abc")
        );
        assert_eq!(task_id_from_arn("nonsense"), None);
    }

    #[test]
    fn the_ecs_task_metadata_endpoint_gives_the_task_id() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let server = tokio::spawn(async move {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut req = vec![0u8; 1024];
                let n = s.read(&mut req).await.unwrap();
                assert!(String::from_utf8_lossy(&req[..n]).starts_with("GET /v4/abc/task HTTP/1.0"));
                let body = r#"{"Cluster":"c","TaskARN":"arn:aws:ecs:us-west-2:111122223333:task/default/158d1c8083dd49d6b527399fd6414f5c"}"#;
                let resp = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                s.write_all(resp.as_bytes()).await.unwrap();
            });
            let id = ecs_task_id(&format!("http://127.0.0.1:{port}/v4/abc")).await;
            assert_eq!(id.as_deref(), Some("158d1c8083dd49d6b527399fd6414f5c"));
            server.await.unwrap();
        });
    }

    #[test]
    fn an_unreachable_endpoint_falls_back_quickly() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // A port nobody listens on: connection refused at once.
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            drop(listener);
            let started = std::time::Instant::now();
            assert_eq!(
                ecs_task_id(&format!("http://127.0.0.1:{port}/v4")).await,
                None
            );
            assert!(started.elapsed() < LOOKUP_TIMEOUT * 2);
            assert_eq!(resolve(Some("mine"), "host").await, "mine");
        });
    }
}
