//! Retention: logs older than N days are deleted once at start and then every hour.
//! Deletes run in small transactions (see `LogStore::purge_older_than`) so the writer
//! keeps flushing while a large backlog is purged.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::LogStore;

const EVERY: Duration = Duration::from_secs(3600);
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// Spawns the retention task. `days == 0` keeps logs forever (the task exits at once).
pub fn spawn_retention(store: Arc<LogStore>, days: u32) -> JoinHandle<()> {
    tokio::spawn(async move {
        if days == 0 {
            return;
        }
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // The first tick completes immediately: the purge at start.
            tick.tick().await;
            let cutoff = crate::now_ms().saturating_sub(i64::from(days) * DAY_MS);
            match store.purge_older_than(cutoff).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, days, "log retention purged old logs"),
                Err(e) => tracing::warn!(error = %e, "log retention failed; retrying next hour"),
            }
        }
    })
}
