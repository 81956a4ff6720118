//! Login rate limiting: after `max_failures` consecutive failed logins for an account name or
//! from a client address, further attempts for that key are refused (429) for the lockout
//! period without checking the secret; a success clears the account's and address's
//! counts. Memory stays bounded: at most [`MAX_KEYS`] keys are tracked.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MAX_KEYS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    locked_until: Option<Instant>,
    last: Instant,
}

pub struct LoginLimiter {
    entries: Mutex<HashMap<String, Entry>>,
    max_failures: u32,
    lockout: Duration,
}

impl LoginLimiter {
    pub fn new(max_failures: u32, lockout: Duration) -> Self {
        Self { entries: Mutex::new(HashMap::new()), max_failures: max_failures.max(1), lockout }
    }

    /// How long until any of `keys` may try again (`None`: go ahead).
    pub fn locked_for(&self, keys: &[&str]) -> Option<Duration> {
        let now = Instant::now();
        let map = self.lock();
        keys.iter()
            .filter_map(|k| map.get(*k)?.locked_until)
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max()
    }

    /// Counts a failure against each key; locks the ones that reached the limit.
    pub fn failed(&self, keys: &[&str]) {
        let now = Instant::now();
        let mut map = self.lock();
        if map.len() + keys.len() > MAX_KEYS {
            // Forget keys idle longer than a lockout, then the oldest, to stay bounded.
            let lockout = self.lockout;
            map.retain(|_, e| now.duration_since(e.last) < lockout);
            while map.len() + keys.len() > MAX_KEYS {
                let Some(oldest) = map.iter().min_by_key(|(_, e)| e.last).map(|(k, _)| k.clone())
                else {
                    break;
                };
                map.remove(&oldest);
            }
        }
        for key in keys {
            let e = map.entry((*key).to_string()).or_insert(Entry {
                failures: 0,
                locked_until: None,
                last: now,
            });
            if e.locked_until.is_some_and(|u| u <= now) {
                e.failures = 0;
                e.locked_until = None;
            }
            e.failures += 1;
            e.last = now;
            if e.failures >= self.max_failures {
                e.locked_until = Some(now + self.lockout);
            }
        }
    }

    /// Clears the counts of `keys` after a successful login.
    pub fn succeeded(&self, keys: &[&str]) {
        let mut map = self.lock();
        for key in keys {
            map.remove(*key);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_the_limit_and_unlocks_after_the_lockout() {
        let l = LoginLimiter::new(3, Duration::from_millis(60));
        for _ in 0..2 {
            l.failed(&["user:a", "ip:1"]);
            assert!(l.locked_for(&["user:a"]).is_none());
        }
        l.failed(&["user:a", "ip:1"]);
        assert!(l.locked_for(&["user:a"]).is_some());
        assert!(l.locked_for(&["ip:1"]).is_some());
        assert!(l.locked_for(&["user:b", "ip:2"]).is_none());
        std::thread::sleep(Duration::from_millis(80));
        assert!(l.locked_for(&["user:a"]).is_none());
        l.failed(&["user:a"]);
        assert!(l.locked_for(&["user:a"]).is_none(), "count restarts after a lockout");
        l.succeeded(&["user:a"]);
    }
}
