//! Where new records go: the weighted spread over the endpoints that take traffic, and the
//! order in which endpoints are tried for one message.
//!
//! New records are cut into one message per healthy primary endpoint, sized by weight
//! (default 60, as Fluentd's `out_forward`), with a running deficit so that small batches even
//! out over time; the messages are in flight together and their acks awaited together, so two
//! receivers work in parallel. Standby servers take traffic only while no primary is up.
//!
//! Why the deficit is kept by endpoint identity ([`EndpointKey`]) and not by index: a new
//! resolution re-sorts the endpoint list, and an index would then credit one address with what
//! another was given. When the set of endpoints taking traffic changes, the deficit starts
//! afresh, so a newcomer does not take everything until it caught up.

use std::time::Instant;

use crate::config::Server;

use super::endpoints::{Endpoint, EndpointKey, Health};

/// The servers and their endpoints, as the balancing reads them.
#[derive(Clone, Copy)]
pub(super) struct Tier<'a> {
    pub(super) servers: &'a [Server],
    pub(super) endpoints: &'a [Endpoint],
}

impl Tier<'_> {
    pub(super) fn weight(&self, endpoint: usize) -> u64 {
        u64::from(self.servers[self.endpoints[endpoint].server].weight)
    }

    pub(super) fn is_standby(&self, endpoint: usize) -> bool {
        self.servers[self.endpoints[endpoint].server].standby
    }

    /// Endpoints that take traffic now: the primaries that are up, else the standbys that are.
    pub(super) fn active(&self) -> Vec<usize> {
        let up = |standby: bool| -> Vec<usize> {
            (0..self.endpoints.len())
                .filter(|&i| self.endpoints[i].is_up() && self.is_standby(i) == standby)
                .collect()
        };
        let primaries = up(false);
        if primaries.is_empty() {
            up(true)
        } else {
            primaries
        }
    }

    /// Endpoints to try for a message, best first: the planned one if up, the active ones
    /// by deficit, endpoints whose backoff passed, and, when nothing is up, any endpoint not
    /// tried yet in this send.
    pub(super) fn candidates(&self, spread: &Spread, planned: Option<usize>) -> Vec<usize> {
        let now = Instant::now();
        let mut out: Vec<usize> = planned
            .filter(|&p| p < self.endpoints.len() && self.endpoints[p].is_up())
            .into_iter()
            .collect();
        let mut active = self.active();
        active.sort_by(|&a, &b| {
            let load = |i: usize| {
                let sent = spread.given(&self.endpoints[i].key());
                sent as f64 / self.weight(i) as f64
            };
            load(a).total_cmp(&load(b))
        });
        out.extend(active);
        let mut due: Vec<usize> = (0..self.endpoints.len())
            .filter(|&i| {
                let e = &self.endpoints[i];
                matches!(e.health, Health::Down { retry_at, .. } if retry_at <= now)
                    && e.connects < 2
            })
            .collect();
        due.sort_by_key(|&i| self.is_standby(i));
        out.extend(due);
        if out.iter().all(|&i| !self.endpoints[i].is_up()) {
            out.extend((0..self.endpoints.len()).filter(|&i| {
                let e = &self.endpoints[i];
                matches!(e.health, Health::Down { .. }) && !e.tried
            }));
        }
        let mut seen = Vec::new();
        out.retain(|i| {
            let new = !seen.contains(i);
            seen.push(*i);
            new
        });
        out
    }
}

/// The running deficit: the endpoints it is kept for, by identity, and the events given to
/// each since the set last changed.
#[derive(Debug, Default)]
pub(super) struct Spread {
    pub(super) given: Vec<(EndpointKey, u64)>,
}

impl Spread {
    /// Splits `events` new records among `tier`'s endpoints taking traffic, by weight and
    /// running deficit: `(endpoint, count)` pieces, or nothing when no endpoint is up.
    pub(super) fn apportion(
        &mut self,
        tier: Tier<'_>,
        events: usize,
        min_piece: usize,
    ) -> Vec<(usize, usize)> {
        let active = tier.active();
        if active.is_empty() || events == 0 {
            return Vec::new();
        }
        let keys: Vec<EndpointKey> = active.iter().map(|&i| tier.endpoints[i].key()).collect();
        if !self.given.iter().map(|(k, _)| k).eq(keys.iter()) {
            self.given = keys.into_iter().map(|k| (k, 0)).collect();
        }
        let weights: Vec<u64> = active.iter().map(|&i| tier.weight(i)).collect();
        let sent: Vec<u64> = self.given.iter().map(|(_, n)| *n).collect();
        let pieces = split_by_deficit(events, &weights, &sent, min_piece);
        let mut out = Vec::new();
        for (k, n) in pieces.into_iter().enumerate() {
            if n > 0 {
                self.given[k].1 += n as u64;
                out.push((active[k], n));
            }
        }
        out
    }

    /// The events given to the endpoint `key` since the set last changed.
    pub(super) fn given(&self, key: &EndpointKey) -> u64 {
        self.given
            .iter()
            .find(|(k, _)| k == key)
            .map_or(0, |(_, n)| *n)
    }
}

/// How `events` are cut among endpoints of `weights` that were given `sent` so far: each
/// gets what brings it closest to its weight's share of the total; a batch smaller than two
/// `min_piece`s goes whole to the endpoint furthest behind.
pub fn split_by_deficit(
    events: usize,
    weights: &[u64],
    sent: &[u64],
    min_piece: usize,
) -> Vec<usize> {
    let total_w: u64 = weights.iter().sum::<u64>().max(1);
    let total = sent.iter().sum::<u64>() + events as u64;
    let want: Vec<f64> = weights
        .iter()
        .zip(sent)
        .map(|(&w, &s)| (total as f64 * w as f64 / total_w as f64 - s as f64).max(0.0))
        .collect();
    let mut out = vec![0usize; weights.len()];
    let behind = (0..want.len())
        .max_by(|&a, &b| want[a].total_cmp(&want[b]))
        .unwrap_or(0);
    if events < 2 * min_piece.max(1) || weights.len() == 1 {
        out[behind] = events;
        return out;
    }
    let sum: f64 = want.iter().sum::<f64>().max(f64::MIN_POSITIVE);
    let mut given = 0;
    for (k, w) in want.iter().enumerate() {
        out[k] = ((w / sum) * events as f64).floor() as usize;
        given += out[k];
    }
    out[behind] += events - given;
    // A piece too small to be worth a message of its own joins the largest.
    for k in 0..out.len() {
        if out[k] > 0 && out[k] < min_piece {
            let n = std::mem::take(&mut out[k]);
            let big = (0..out.len()).max_by_key(|&j| out[j]).unwrap_or(0);
            out[big] += n;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_split_by_weight_and_even_out_over_small_batches() {
        assert_eq!(
            split_by_deficit(1000, &[60, 20], &[0, 0], 64),
            vec![750, 250]
        );
        // Small batches go whole to whoever is furthest behind its share.
        let mut sent = [0u64, 0];
        for _ in 0..400 {
            let p = split_by_deficit(10, &[60, 20], &sent, 64);
            sent[0] += p[0] as u64;
            sent[1] += p[1] as u64;
        }
        assert_eq!(sent, [3000, 1000]);
        // A piece under the minimum joins the largest.
        assert_eq!(split_by_deficit(130, &[1000, 1], &[0, 0], 64), vec![130, 0]);
    }
}
