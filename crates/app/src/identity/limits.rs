//! In-process guards of the credential endpoints: one sign-in attempt at a time per account, and
//! a request budget per source address. The counts that must hold across replicas and restarts
//! (failures, lock-outs) are in the log; these only keep one replica from doing wasted work.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use idstream_domain::UserId;

/// Serialises sign-in attempts per account: a flood of parallel guesses waits in line, and each
/// one sees the failures (and lock-out) its predecessors recorded before running argon2.
#[derive(Default)]
pub struct AccountLocks {
    locks: Mutex<HashMap<UserId, Arc<tokio::sync::Mutex<()>>>>,
}

impl AccountLocks {
    /// Waits for the account's turn. Hold the guard for the whole attempt.
    pub async fn lock(&self, user: UserId) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
            // Forget the locks nobody holds or waits for, now and then, so the map stays small.
            if locks.len() > 10_000 {
                locks.retain(|_, l| Arc::strong_count(l) > 1);
            }
            locks.entry(user).or_default().clone()
        };
        lock.lock_owned().await
    }
}

/// A token bucket per key (endpoint and source address): `per_minute` requests a minute, with
/// bursts of up to half that.
pub struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> RateLimiter {
        RateLimiter {
            per_minute: per_minute.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `key`'s budget; if it is spent, how long until one is free.
    pub fn take(&self, key: &str) -> Result<(), Duration> {
        let rate = f64::from(self.per_minute) / 60.0;
        let burst = (f64::from(self.per_minute) / 2.0).max(1.0);
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() > 100_000 {
            buckets.retain(|_, b| now.duration_since(b.at) < Duration::from_secs(120));
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate).max(Duration::from_secs(1)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_gets_its_burst_then_waits() {
        let limiter = RateLimiter::new(10);
        for _ in 0..5 {
            assert!(limiter.take("sign-in:1.2.3.4").is_ok());
        }
        let wait = limiter.take("sign-in:1.2.3.4").unwrap_err();
        assert!(wait >= Duration::from_secs(1) && wait <= Duration::from_secs(7));
        // Other sources and endpoints have their own budgets.
        assert!(limiter.take("sign-in:5.6.7.8").is_ok());
        assert!(limiter.take("refresh:1.2.3.4").is_ok());
    }

    #[tokio::test]
    async fn one_attempt_at_a_time_per_account() {
        let locks = Arc::new(AccountLocks::default());
        let user = UserId::new(ulid::Ulid::new());
        let first = locks.lock(user).await;
        let waiting = {
            let locks = locks.clone();
            tokio::spawn(async move {
                let _second = locks.lock(user).await;
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        // Another account is not held up.
        let _other = locks.lock(UserId::new(ulid::Ulid::new())).await;
        drop(first);
        waiting.await.unwrap();
    }
}
