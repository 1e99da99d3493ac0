//! The deployment assets in `deploy/` are specifications too. No Docker engine or AWS account
//! is needed: each file is parsed, and every `HIVELOG_*` variable it sets is read by hivelog's
//! own parsers (the same code `init()` runs in the container), so a typo in a name or a value
//! fails here instead of in a task that starts with default logging.
//!
//! What "known" means: the variable is in `hivelog_core::format::FORMAT_VARS` or a sink crate's
//! `VARS`, or the facade / pipeline reads it, which is shown by building hivelog with that
//! variable set to a bad value and getting an error that names it (the facade has no public list
//! of its names, and a list copied here could drift).
//!
//! Sinks started by these checks point at a closed 127.0.0.1 port: the destination hosts in the
//! files (`fluentd`, AWS) are never contacted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use hivelog::Env;
use hivelog_core::env::parse_duration;
use hivelog_core::format::FORMAT_VARS;
use hivelog_core::{FormatBuilder, PipelineConfig};

/// How long the example service drains requests after SIGTERM (`DRAIN_TIMEOUT` in webapp.rs).
const DRAIN: Duration = Duration::from_secs(10);

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(file)
}

fn read(file: &str) -> String {
    std::fs::read_to_string(deploy(file))
        .unwrap_or_else(|e| panic!("cannot read deploy/{file}: {e}"))
}

fn compose() -> serde_yaml::Value {
    serde_yaml::from_str(&read("docker-compose.yml")).expect("docker-compose.yml is YAML")
}

fn json(file: &str) -> serde_json::Value {
    serde_json::from_str(&read(file)).unwrap_or_else(|e| panic!("deploy/{file} is not JSON: {e}"))
}

/// A compose service's `environment`, in either of compose's forms (map or `K=V` list).
fn compose_env(compose: &serde_yaml::Value, service: &str) -> Vec<(String, String)> {
    let env = &compose["services"][service]["environment"];
    let scalar = |v: &serde_yaml::Value| match v {
        serde_yaml::Value::String(s) => s.clone(),
        serde_yaml::Value::Null => String::new(),
        other => serde_yaml::to_string(other).unwrap().trim().to_owned(),
    };
    match env {
        serde_yaml::Value::Mapping(m) => m.iter().map(|(k, v)| (scalar(k), scalar(v))).collect(),
        serde_yaml::Value::Sequence(s) => s
            .iter()
            .map(|item| {
                let item = scalar(item);
                let (k, v) = item.split_once('=').unwrap_or((&item, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        serde_yaml::Value::Null => Vec::new(),
        other => panic!("services.{service}.environment is neither a map nor a list: {other:?}"),
    }
}

/// The task definition's containers, each with its `environment` pairs.
fn task_containers(task: &serde_json::Value) -> Vec<(String, Vec<(String, String)>)> {
    task["containerDefinitions"]
        .as_array()
        .expect("containerDefinitions is a list")
        .iter()
        .map(|c| {
            let env = c["environment"]
                .as_array()
                .map(|pairs| {
                    pairs
                        .iter()
                        .map(|p| {
                            let name = p["name"].as_str().expect("environment entries have a name");
                            let value = p["value"].as_str().unwrap_or_else(|| {
                                panic!("{name}: ECS environment values must be strings")
                            });
                            (name.to_owned(), value.to_owned())
                        })
                        .collect()
                })
                .unwrap_or_default();
            (c["name"].as_str().unwrap_or("?").to_owned(), env)
        })
        .collect()
}

fn hivelog_vars(pairs: &[(String, String)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .filter(|(k, _)| k.starts_with("HIVELOG_"))
        .cloned()
        .collect()
}

/// Where sinks started by these tests go: a 127.0.0.1 port nothing listens on, and no AWS
/// metadata service. Set once per test process, before any sink thread exists.
fn closed_port() -> u16 {
    static PORT: OnceLock<u16> = OnceLock::new();
    *PORT.get_or_init(|| {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        // Once, before this process starts any sink thread.
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        std::env::set_var("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"));
        std::env::set_var("AWS_REGION", "eu-west-1");
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
        std::env::remove_var("ECS_CONTAINER_METADATA_URI_V4");
        std::env::remove_var("AWS_PROFILE");
        port
    })
}

/// `vars` with each destination moved to the closed loopback port (values already checked).
fn on_loopback(vars: &[(String, String)]) -> Vec<(String, String)> {
    let port = closed_port();
    vars.iter()
        .filter(|(k, _)| k != "HIVELOG_ES_CLOUD_ID")
        .map(|(k, v)| match k.as_str() {
            "HIVELOG_FLUENT_ADDR" => (k.clone(), format!("tcp://127.0.0.1:{port}")),
            "HIVELOG_ES_URL" => (k.clone(), format!("http://127.0.0.1:{port}")),
            _ => (k.clone(), v.clone()),
        })
        .chain(
            vars.iter()
                .any(|(k, _)| k == "HIVELOG_ES_CLOUD_ID")
                .then(|| {
                    (
                        "HIVELOG_ES_URL".to_owned(),
                        format!("http://127.0.0.1:{port}"),
                    )
                }),
        )
        .collect()
}

/// Builds hivelog (without installing it) from exactly `vars`; stops its sinks at once.
fn build(vars: &[(String, String)]) -> Result<(), hivelog::ConfigError> {
    let (_dispatch, guard) = hivelog::builder()
        .panic_hook(false)
        .output(hivelog::Output::None)
        .env(Env::from_pairs(vars.to_vec()))
        .try_build()?;
    let _ = guard.shutdown(Duration::from_millis(200));
    Ok(())
}

/// Checks `pairs` (one container's environment) the way the service would read them at start;
/// returns the problems, each naming the file and the variable.
fn problems(file: &str, pairs: &[(String, String)]) -> Vec<String> {
    let vars = hivelog_vars(pairs);
    let mut problems = Vec::new();

    // The parsers behind the public lists: values as written in the file, destinations included.
    let env = Env::from_pairs(vars.clone());
    let results = [
        FormatBuilder::default().apply_env(&env).map(drop),
        PipelineConfig::default().apply_env(&env).map(drop),
        hivelog::fluent::FluentConfig::from_env(&env).map(drop),
        hivelog::elk::EsConfig::from_env(&env).map(drop),
        hivelog::cloudwatch::CloudWatchConfig::from_env(&env).map(drop),
    ];
    problems.extend(
        results
            .into_iter()
            .filter_map(|r| r.err())
            .map(|e| format!("{file}: {e}")),
    );
    let listed: BTreeSet<&str> = FORMAT_VARS
        .iter()
        .chain(hivelog::fluent::VARS)
        .chain(hivelog::elk::VARS)
        .chain(hivelog::cloudwatch::VARS)
        .map(|v| v.name)
        .filter(|n| !n.ends_with("_LEVEL"))
        .collect();

    // The rest must be read by the facade or the pipeline: a bad value must be an error naming it.
    for name in env.unused() {
        assert!(
            !listed.contains(name.as_str()),
            "{name} is listed but was not read"
        );
        let mut bad = on_loopback(&vars);
        for (k, v) in &mut bad {
            if *k == name {
                *v = "?not=valid?".to_owned();
            }
        }
        match build(&bad) {
            Err(e) if e.to_string().starts_with(&format!("{name}:")) => {}
            Err(e) => problems.push(format!(
                "{file}: {name}: a bad value gave an error about something else: {e}"
            )),
            Ok(()) => problems.push(format!(
                "{file}: {name} is not a variable hivelog reads (a typo, or a sink not compiled in?)"
            )),
        }
    }

    // And the whole environment together, as `init()` would see it.
    if let Err(e) = build(&on_loopback(&vars)) {
        problems.push(format!("{file}: {e}"));
    }
    // A bad sink value is reported by its parser and again by the whole build.
    let mut seen = BTreeSet::new();
    problems.retain(|p| seen.insert(p.clone()));
    problems
}

fn assert_no_problems(problems: Vec<String>) {
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn compose_sets_only_hivelog_variables_that_exist_with_values_they_accept() {
    let compose = compose();
    let services = compose["services"].as_mapping().expect("services");
    let mut checked = 0;
    for (name, _) in services {
        let name = name.as_str().unwrap();
        let pairs = compose_env(&compose, name);
        checked += hivelog_vars(&pairs).len();
        assert_no_problems(problems(&format!("docker-compose.yml ({name})"), &pairs));
    }
    assert!(checked >= 5, "the compose file sets hivelog's variables");
}

#[test]
fn task_definition_sets_only_hivelog_variables_that_exist_with_values_they_accept() {
    let task = json("ecs-task-definition.json");
    let containers = task_containers(&task);
    assert!(!containers.is_empty());
    for (name, pairs) in containers {
        assert_no_problems(problems(
            &format!("ecs-task-definition.json ({name})"),
            &pairs,
        ));
    }
}

#[test]
fn the_checker_catches_unknown_names_and_bad_values() {
    let pairs = |p: &[(&str, &str)]| -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let typo = problems("t", &pairs(&[("HIVELOG_LEVLE", "debug")]));
    assert_eq!(
        typo,
        ["t: HIVELOG_LEVLE is not a variable hivelog reads (a typo, or a sink not compiled in?)"]
    );
    let bad = problems("t", &pairs(&[("HIVELOG_CLOUDWATCH_RETENTION_DAYS", "2")]));
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(
        bad[0].starts_with("t: HIVELOG_CLOUDWATCH_RETENTION_DAYS: '2' is not"),
        "{bad:?}"
    );
    let facade = problems("t", &pairs(&[("HIVELOG_FORMAT", "yaml")]));
    assert_eq!(facade.len(), 1, "{facade:?}");
    assert!(
        facade[0].starts_with("t: HIVELOG_FORMAT: 'yaml' is not"),
        "{facade:?}"
    );
    assert!(problems(
        "t",
        &pairs(&[
            ("HIVELOG_LEVEL", "info"),
            ("HIVELOG_FLUENT_ADDR", "tcp://fluentd:24224"),
            ("HIVELOG_FLUENT_LEVEL", "warn"),
        ])
    )
    .is_empty());
}

/// The task definition's container for the service, and its environment as a map.
fn webapp_task() -> (serde_json::Value, BTreeMap<String, String>) {
    let task = json("ecs-task-definition.json");
    let container = task["containerDefinitions"][0].clone();
    let env = task_containers(&task).remove(0).1.into_iter().collect();
    (container, env)
}

#[test]
fn task_definition_is_a_fargate_task_whose_logs_survive_the_stop() {
    let task = json("ecs-task-definition.json");
    assert_eq!(
        task["requiresCompatibilities"],
        serde_json::json!(["FARGATE"])
    );
    assert_eq!(task["networkMode"], "awsvpc", "Fargate requires awsvpc");
    assert!(
        task["taskRoleArn"]
            .as_str()
            .is_some_and(|a| a.starts_with("arn:aws:iam::")),
        "the task role carries the CloudWatch permissions (iam-policy.json)"
    );
    let (container, env) = webapp_task();
    assert!(env.contains_key("HIVELOG_CLOUDWATCH_GROUP"));
    assert!(env.contains_key("HIVELOG_CLOUDWATCH_RETENTION_DAYS"));
    assert!(
        env.get("BIND").is_some_and(|b| b.starts_with("0.0.0.0")),
        "a container must listen on all interfaces"
    );
    // ECS sends SIGTERM, waits stopTimeout, then SIGKILL: draining plus the final flush must fit.
    let stop = Duration::from_secs(container["stopTimeout"].as_u64().unwrap_or(30));
    let flush = env
        .get("HIVELOG_SHUTDOWN_TIMEOUT")
        .map(|v| parse_duration(v).unwrap())
        .unwrap_or(PipelineConfig::default().shutdown_timeout);
    assert!(
        DRAIN + flush < stop,
        "drain {DRAIN:?} + flush {flush:?} must fit in stopTimeout {stop:?}"
    );
    assert!(
        stop <= Duration::from_secs(120),
        "Fargate's stopTimeout is at most 120 s"
    );
}

#[test]
fn compose_stop_grace_period_covers_drain_and_flush() {
    let compose = compose();
    let env: BTreeMap<_, _> = compose_env(&compose, "webapp").into_iter().collect();
    let grace = compose["services"]["webapp"]["stop_grace_period"]
        .as_str()
        .map(|v| parse_duration(v).unwrap())
        .unwrap_or(Duration::from_secs(10));
    let flush = env
        .get("HIVELOG_SHUTDOWN_TIMEOUT")
        .map(|v| parse_duration(v).unwrap())
        .unwrap_or(PipelineConfig::default().shutdown_timeout);
    assert!(
        DRAIN + flush < grace,
        "drain {DRAIN:?} + flush {flush:?} must fit in {grace:?}"
    );
}

/// Every CloudWatch Logs operation a log shipper could call, as the SDK's method name.
const LOGS_OPERATIONS: &[&str] = &[
    "create_log_group",
    "create_log_stream",
    "put_log_events",
    "put_retention_policy",
    "delete_retention_policy",
    "describe_log_groups",
    "describe_log_streams",
    "delete_log_group",
    "delete_log_stream",
    "associate_kms_key",
    "tag_log_group",
    "tag_resource",
    "put_subscription_filter",
    "get_log_events",
    "filter_log_events",
    "start_live_tail",
];

/// `put_log_events` → `logs:PutLogEvents`.
fn iam_action(method: &str) -> String {
    let camel: String = method
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    format!("logs:{camel}")
}

/// The IAM actions the CloudWatch sink's code calls, read from its source.
fn actions_the_sink_calls() -> BTreeSet<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hivelog-cloudwatch/src");
    let mut calls = BTreeSet::new();
    for entry in std::fs::read_dir(&src).expect("hivelog-cloudwatch/src") {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in text.lines().map(str::trim) {
            if line.starts_with("//") {
                continue;
            }
            for op in LOGS_OPERATIONS {
                if line.contains(&format!(".{op}()")) {
                    calls.insert(iam_action(op));
                }
            }
        }
    }
    calls
}

fn as_list(v: &serde_json::Value) -> Vec<String> {
    match v {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(a) => a
            .iter()
            .filter_map(|s| s.as_str())
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

#[test]
fn iam_policy_grants_exactly_what_the_cloudwatch_sink_calls_on_the_task_group() {
    let expected = actions_the_sink_calls();
    assert_eq!(
        expected,
        BTreeSet::from([
            "logs:CreateLogGroup".to_owned(),
            "logs:CreateLogStream".to_owned(),
            "logs:PutLogEvents".to_owned(),
            "logs:PutRetentionPolicy".to_owned(),
        ]),
        "the sink's calls changed: update deploy/iam-policy.json and docs/deploying.md"
    );
    let policy = json("iam-policy.json");
    assert_eq!(policy["Version"], "2012-10-17");
    let statements = policy["Statement"].as_array().expect("Statement is a list");
    let mut granted = BTreeSet::new();
    let (_, env) = webapp_task();
    let group = &env["HIVELOG_CLOUDWATCH_GROUP"];
    for s in statements {
        assert_eq!(s["Effect"], "Allow");
        granted.extend(as_list(&s["Action"]));
        for resource in as_list(&s["Resource"]) {
            assert!(
                resource.starts_with("arn:aws:logs:")
                    && resource.contains(&format!(":log-group:{group}")),
                "{resource} is scoped to the task's group {group}"
            );
        }
    }
    assert_eq!(granted, expected);
}

/// Fluentd's tag glob: `*` is one part, `**` zero or more.
fn tag_matches(pattern: &str, tag: &str) -> bool {
    fn go(p: &[&str], t: &[&str]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(&"**"), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some(&"*"), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) => a == b && go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    let p: Vec<&str> = pattern.split('.').collect();
    let t: Vec<&str> = tag.split('.').collect();
    go(&p, &t)
}

#[test]
fn fluentd_listens_where_the_service_sends_and_matches_its_tag() {
    let compose = compose();
    let env: BTreeMap<_, _> = compose_env(&compose, "webapp").into_iter().collect();
    let addr = env["HIVELOG_FLUENT_ADDR"]
        .strip_prefix("tcp://")
        .expect("tcp address");
    let (host, port) = addr.split_once(':').unwrap();
    assert!(
        compose["services"][host].is_mapping(),
        "{host} is a compose service"
    );

    let conf = read("fluentd/fluent.conf");
    let directive = |name: &str| -> Vec<String> {
        conf.lines()
            .map(str::trim)
            .filter_map(|l| l.strip_prefix(&format!("<{name}")))
            .map(|rest| rest.trim_end_matches('>').trim().to_owned())
            .collect()
    };
    let setting = |key: &str| -> Vec<String> {
        conf.lines()
            .map(str::trim)
            .filter_map(|l| l.strip_prefix(&format!("{key} ")))
            .map(|v| v.trim().to_owned())
            .collect()
    };
    assert!(setting("@type").contains(&"forward".to_owned()));
    assert!(
        setting("port").contains(&port.to_owned()),
        "Fluentd listens on {port}"
    );
    let service = env.get("HIVELOG_SERVICE").cloned().unwrap_or_default();
    let tag = env
        .get("HIVELOG_FLUENT_TAG")
        .map(String::as_str)
        .unwrap_or("{service}")
        .replace("{service}", &service);
    let matches = directive("match");
    assert!(
        matches
            .iter()
            .any(|m| m.split_whitespace().any(|p| tag_matches(p, &tag))),
        "no <match> in fluent.conf takes the tag {tag:?}: {matches:?}"
    );
    let es_host = setting("host");
    assert!(
        es_host
            .iter()
            .all(|h| compose["services"][h.as_str()].is_mapping()),
        "Fluentd's Elasticsearch host {es_host:?} is a compose service"
    );
    assert!(tag_matches("app.**", "app"), "`**` matches zero parts");
    assert!(!tag_matches("app.*", "app"));
}
