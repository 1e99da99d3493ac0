//! The heartbeat: with several endpoints, a background task opens a plain connection to each
//! endpoint every `HIVELOG_FLUENT_HEARTBEAT_INTERVAL` (1 s), as Fluentd's `out_forward` does.
//!
//! Why: a dead standby or an idle server that went away is known (and shown in the report)
//! before it is needed, and a server that is down rejoins only once the heartbeat found it
//! reachable, so a recovered server rejoins without a failed batch first. The task holds the
//! board weakly: it ends when the service is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use hivelog_core::endpoints::{EndpointState, Endpoints};

use crate::transport::{self, Target};

/// What the heartbeat task shares with the service.
#[derive(Debug, Default)]
pub(super) struct Board {
    /// Endpoints to check: name and target.
    targets: Mutex<Vec<(String, Target)>>,
    /// The last check of each: reachable, and when.
    results: Mutex<HashMap<String, (bool, Instant)>>,
}

impl Board {
    /// Starts the task checking what [`Board::check`] lists every `every`, each connection
    /// given `timeout`; unreachable endpoints are shown down on `published`.
    pub(super) fn start(every: Duration, timeout: Duration, published: Endpoints) -> Arc<Board> {
        let board = Arc::new(Board::default());
        tokio::spawn(heartbeat(Arc::downgrade(&board), every, timeout, published));
        board
    }

    /// The endpoints (name and target) to check from now on.
    pub(super) fn check(&self, targets: Vec<(String, Target)>) {
        *lock(&self.targets) = targets;
    }

    /// The last finding for each endpoint name: reachable, and when.
    pub(super) fn results(&self) -> HashMap<String, (bool, Instant)> {
        lock(&self.results).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The heartbeat: every `every`, opens a plain connection to each endpoint the service asks
/// about, and records whether it answered; marks unreachable ones down in the published list.
async fn heartbeat(board: Weak<Board>, every: Duration, timeout: Duration, published: Endpoints) {
    loop {
        tokio::time::sleep(every).await;
        let Some(b) = board.upgrade() else {
            return;
        };
        let targets = lock(&b.targets).clone();
        drop(b);
        let mut checks = Vec::new();
        for (name, target) in targets {
            checks.push(tokio::spawn(async move {
                let ok = transport::probe(&target, timeout).await;
                (name, ok)
            }));
        }
        let mut found = Vec::new();
        for c in checks {
            if let Ok(r) = c.await {
                found.push(r);
            }
        }
        let Some(b) = board.upgrade() else {
            return;
        };
        let now = Instant::now();
        let mut results = lock(&b.results);
        let mut list = published.snapshot();
        for (name, ok) in found {
            results.insert(name.clone(), (ok, now));
            if let Some(s) = list.iter_mut().find(|s| s.endpoint == name && !ok) {
                s.state = EndpointState::Down;
            }
        }
        if !list.is_empty() {
            published.publish(list);
        }
    }
}
