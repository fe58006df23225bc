//! One publish, measured: the publish-and-wait loop that watches the
//! receiver, what arrived (turned into a [`Measured`] row with its notes),
//! and the wait for wasmhook's outbox to drain after a warm-up, so that no
//! row starts its clock with the warm-up's work still going.
//!
//! The clock runs from the first publish to the last arrival, so the rate
//! covers the whole path: bus, wasmhook (or the reference subscriber) and
//! the receiver.

use std::future::Future;
use std::time::Duration;

use anyhow::Result;

use crate::processes::{ProcStats, Wasmhook};
use crate::receiver::{now_ns, Receiver, Snapshot};
use crate::scenarios::{Latency, Measured};

/// What arrived for one publish.
pub struct Flow {
    expected: u64,
    start_ns: u64,
    /// How long publishing took; `None` if it never finished.
    publish_s: Option<f64>,
    /// Set when nothing arrived for this long and the run was given up.
    pub stuck: Option<Duration>,
    snapshot: Snapshot,
}

impl Flow {
    /// Publishes while watching `receiver`, until `expected` requests
    /// arrived or nothing arrived for `stall`
    /// ([`Sizes::stall`](crate::scenarios::Sizes::stall)). The watch
    /// runs during the publish too, so a wasmhook that stops answering the
    /// publisher (HTTP ingest waits for its 202) ends the run instead of
    /// hanging it. `alive` reports a process that died meanwhile.
    pub async fn watch(
        receiver: &Receiver,
        stall: Duration,
        expected: u64,
        publish: impl Future<Output = Result<()>>,
        mut alive: impl FnMut() -> Result<()>,
    ) -> Result<Flow> {
        receiver.reset();
        let start_ns = now_ns();
        let mut publish = std::pin::pin!(publish);
        let mut publish_s = None;
        let mut last_count = 0;
        let mut last_change = tokio::time::Instant::now();
        let stuck = loop {
            if publish_s.is_none() {
                tokio::select! {
                    result = &mut publish => {
                        result?;
                        publish_s = Some((now_ns() - start_ns) as f64 / 1e9);
                    }
                    _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                }
            } else {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let count = receiver.count();
            if count >= expected && publish_s.is_some() {
                break false;
            }
            alive()?;
            if count != last_count {
                last_count = count;
                last_change = tokio::time::Instant::now();
            } else if last_change.elapsed() > stall {
                break true;
            }
        };
        // Stragglers (duplicates, over-delivery) would show up here.
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(Flow {
            expected,
            start_ns,
            publish_s,
            stuck: stuck.then_some(stall),
            snapshot: receiver.snapshot(),
        })
    }

    /// `flooded`: the publisher ran at full speed, so it may be what bounds
    /// the rate (worth a note when it took nearly the whole run).
    pub fn measured(
        self,
        events: String,
        stats: Option<(ProcStats, ProcStats)>,
        flooded: bool,
    ) -> Measured {
        let s = &self.snapshot;
        let elapsed = s.last_ns.saturating_sub(self.start_ns) as f64 / 1e9;
        let mut notes = Vec::new();
        let incomplete = s.count < self.expected;
        // A run that got stuck has no meaningful rate, and its note says
        // how far it got.
        let stuck = self.stuck.is_some() && self.publish_s.is_none();
        if incomplete && !stuck {
            notes.push(format!(
                "only {} of {} deliveries arrived",
                s.count, self.expected
            ));
        } else if s.count > self.expected {
            notes.push(format!(
                "{} deliveries for {} expected (duplicates)",
                s.count, self.expected
            ));
        }
        if let Some(stall) = self.stuck {
            notes.push(match self.publish_s {
                Some(_) => format!("gave up after {} s without a new delivery", stall.as_secs()),
                None => format!(
                    "STUCK: {} of {} deliveries arrived, then nothing for {} s while the publisher was still blocked",
                    s.count,
                    self.expected,
                    stall.as_secs()
                ),
            });
        }
        if s.requests != s.count {
            notes.push(format!(
                "{} requests carried the {} events",
                s.requests, s.count
            ));
        }
        if s.bad > 0 {
            notes.push(format!(
                "{} of {} sampled signatures did NOT verify",
                s.bad, s.checked
            ));
        }
        if let (Some(publish_s), true) = (self.publish_s, flooded) {
            if publish_s > elapsed * 0.9 && elapsed > 0.0 {
                notes.push(format!(
                    "publishing took {publish_s:.2} s of {elapsed:.2} s: the publisher may bound this row"
                ));
            }
        }
        Measured {
            events,
            rate: (elapsed > 0.0 && s.count > 0 && !stuck).then(|| s.count as f64 / elapsed),
            latency: Latency::of(&s.latencies),
            rss_mb: stats.map(|(_, after)| after.peak_rss as f64 / 1e6),
            cpu_s: stats.map(|(before, after)| after.cpu_s - before.cpu_s),
            notes,
            incomplete,
            stuck,
        }
    }
}

/// Waits until wasmhook's outbox is empty after the warm-up, so that no row
/// starts its clock with the warm-up's work still going. The receiver
/// having every healthy delivery is not enough: a hostile observer's
/// warm-up deliveries, accepted before its plugin was suspended, wait in
/// the outbox and are buried after that (seen on 2026-12-04: when the
/// measured publishing of a `nats-hostile-memory` run had begun, 205 of
/// the warm-up's 1,000 hostile letters were in the DLQ; in `trap`'s, whose
/// plugin fails in microseconds, all 1,000). Returns a note when the
/// outbox did not drain within `limit` or could not be read.
pub async fn settle(wasmhook: &Wasmhook, limit: Duration) -> Option<String> {
    let started = tokio::time::Instant::now();
    loop {
        match wasmhook.metric("wasmhook_outbox_size").await {
            Ok(size) if size < 1.0 => return None,
            Ok(size) if started.elapsed() > limit => {
                return Some(format!(
                    "the outbox still held {size:.0} deliveries {} s after the warm-up; measured anyway",
                    limit.as_secs()
                ))
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => return Some(format!("cannot read the outbox size after the warm-up: {e:#}")),
        }
    }
}
