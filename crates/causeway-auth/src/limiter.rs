//! Brute-force protection for the admin login: per client address, after a few failures every
//! further failure locks the address out for a doubling delay (1 s, 2 s, 4 s, … 5 min). Memory is
//! bounded: the map is capped and the stalest entries are dropped first.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Failures allowed before the first lockout.
const FAILURE_THRESHOLD: u32 = 5;
/// Failures older than this (since the last one) are forgotten, so an occasional typo never adds up.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
const MAX_DELAY: Duration = Duration::from_secs(5 * 60);
/// About 1 MB of entries; far more than the distinct addresses that fail a login legitimately.
const DEFAULT_MAX_ENTRIES: usize = 10_000;

#[derive(Clone, Copy, Debug)]
struct Entry {
    failures: u32,
    last_failure: Instant,
    locked_until: Option<Instant>,
}

/// Per-address login failure tracker. `Send + Sync`; share one per server.
#[derive(Debug)]
pub struct LoginLimiter {
    entries: Mutex<HashMap<IpAddr, Entry>>,
    max_entries: usize,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl LoginLimiter {
    pub fn new() -> Self {
        Self::with_max_entries(DEFAULT_MAX_ENTRIES)
    }

    /// A limiter that tracks at most `max_entries` addresses (at least 1).
    pub fn with_max_entries(max_entries: usize) -> Self {
        LoginLimiter {
            entries: Mutex::new(HashMap::new()),
            max_entries: max_entries.max(1),
        }
    }

    /// `Err(retry_after)` while the address is locked out; check before looking at the password so
    /// a locked-out guesser learns nothing, even when the guess is right.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let entries = self.lock();
        match entries.get(&bucket(ip)).and_then(|e| e.locked_until) {
            Some(until) if until > now => Err(until.saturating_duration_since(now)),
            _ => Ok(()),
        }
    }

    pub fn record_failure(&self, ip: IpAddr, now: Instant) {
        let key = bucket(ip);
        let mut entries = self.lock();
        if !entries.contains_key(&key) && entries.len() >= self.max_entries {
            evict(&mut entries, self.max_entries, now);
        }
        let e = entries.entry(key).or_insert(Entry {
            failures: 0,
            last_failure: now,
            locked_until: None,
        });
        if now.saturating_duration_since(e.last_failure) > FORGET_AFTER {
            e.failures = 0;
            e.locked_until = None;
        }
        e.failures = e.failures.saturating_add(1);
        e.last_failure = now;
        if e.failures >= FAILURE_THRESHOLD {
            let delay = lockout_delay(e.failures - FAILURE_THRESHOLD);
            e.locked_until = Some(now.checked_add(delay).unwrap_or(now));
        }
    }

    /// A successful login clears the address's history.
    pub fn record_success(&self, ip: IpAddr) {
        self.lock().remove(&bucket(ip));
    }

    /// Number of addresses currently tracked (for metrics and tests).
    pub fn tracked(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Entry>> {
        // The map holds plain counters; a panic elsewhere while holding the lock cannot leave it
        // in a state worth refusing logins over.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// 1 s after the 5th failure, doubling per further failure, capped at 5 minutes.
fn lockout_delay(extra_failures: u32) -> Duration {
    let secs = 1u64 << extra_failures.min(16);
    Duration::from_secs(secs).min(MAX_DELAY)
}

/// IPv6 clients usually own a whole /64, so counting per address would let one client rotate
/// through 2^64 addresses; IPv4-mapped IPv6 counts as the IPv4 address.
fn bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Drops forgotten entries, then, if still full, the stalest tenth (at least one). Entries still
/// locked out are kept by the first pass but can go in the second: a bounded map has to give way
/// somewhere, and the oldest failure is the least informative.
fn evict(entries: &mut HashMap<IpAddr, Entry>, max_entries: usize, now: Instant) {
    entries.retain(|_, e| {
        now.saturating_duration_since(e.last_failure) <= FORGET_AFTER
            || e.locked_until.is_some_and(|t| t > now)
    });
    if entries.len() < max_entries {
        return;
    }
    let mut by_age: Vec<(Instant, IpAddr)> = entries
        .iter()
        .map(|(ip, e)| (e.last_failure, *ip))
        .collect();
    let drop = (max_entries / 10).max(1).min(by_age.len());
    by_age.select_nth_unstable_by_key(drop - 1, |(t, _)| *t);
    for (_, ip) in &by_age[..drop] {
        entries.remove(ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_and_cap() {
        assert_eq!(lockout_delay(0), Duration::from_secs(1));
        assert_eq!(lockout_delay(1), Duration::from_secs(2));
        assert_eq!(lockout_delay(8), Duration::from_secs(256));
        assert_eq!(lockout_delay(9), MAX_DELAY);
        assert_eq!(lockout_delay(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn ipv6_buckets_by_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(bucket(a), bucket(b));
        assert_ne!(bucket(a), bucket(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(bucket(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
    }
}
