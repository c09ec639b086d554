//! Per-client request rates: a `[[serve.token]]` with `requests_per_second` may send that
//! many scoring requests a second on average, and `burst` at once (a token bucket), so one
//! client cannot take every scoring slot from the others. A request over its client's
//! rate is refused with 429 and a `Retry-After` of when the next one would be let in,
//! before its body is read or a slot is taken.

use std::time::Instant;

use parking_lot::Mutex;

use super::errors::ApiError;

/// One client's bucket: `burst` requests, refilled at `per_second`.
#[derive(Debug)]
pub struct Quota {
    client: String,
    per_second: f64,
    burst: f64,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    requests: f64,
    at: Instant,
}

impl Quota {
    /// `per_second` requests a second for `client`, `burst` at once (at least one).
    pub fn new(client: &str, per_second: f64, burst: Option<u32>) -> Self {
        let burst = burst.map_or(per_second.ceil(), f64::from).max(1.0);
        Self {
            client: client.to_string(),
            per_second,
            burst,
            bucket: Mutex::new(Bucket {
                requests: burst,
                at: Instant::now(),
            }),
        }
    }

    /// Takes one request from the bucket at `now`, or refuses with 429 and how long
    /// until the next request would be let in.
    pub fn take(&self, now: Instant) -> Result<(), ApiError> {
        let mut bucket = self.bucket.lock();
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.requests = (bucket.requests + elapsed * self.per_second).min(self.burst);
        bucket.at = now;
        if bucket.requests >= 1.0 {
            bucket.requests -= 1.0;
            return Ok(());
        }
        let wait_seconds = (1.0 - bucket.requests) / self.per_second;
        let retry_after = (wait_seconds.ceil() as u64).max(1);
        Err(ApiError::Overloaded {
            message: format!(
                "client '{}' is over its rate of {} requests a second (burst {}; [[serve.token]] requests_per_second and burst); try again in {retry_after} s",
                self.client, self.per_second, self.burst
            ),
            retry_after,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_is_let_in_then_requests_at_the_rate() {
        let quota = Quota::new("crm", 2.0, Some(3));
        let start = Instant::now();
        for _ in 0..3 {
            assert!(quota.take(start).is_ok());
        }
        let refused = quota.take(start).unwrap_err();
        assert!(
            matches!(&refused, ApiError::Overloaded { retry_after: 1, .. }),
            "{refused:?}"
        );
        assert!(
            refused
                .to_string()
                .starts_with("client 'crm' is over its rate of 2 requests a second (burst 3;"),
            "{refused}"
        );
        // Half a second later one request is back, not two.
        let later = start + Duration::from_millis(500);
        assert!(quota.take(later).is_ok());
        assert!(quota.take(later).is_err());
        // A long pause refills to the burst, never past it.
        let much_later = later + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(quota.take(much_later).is_ok());
        }
        assert!(quota.take(much_later).is_err());
    }

    #[test]
    fn requests_racing_on_many_threads_get_exactly_the_burst() {
        let quota = Quota::new("crm", 1.0, Some(50));
        let now = Instant::now();
        let admitted: usize = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| (0..100).filter(|_| quota.take(now).is_ok()).count()))
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).sum()
        });
        assert_eq!(admitted, 50);
    }

    #[test]
    fn a_slow_rate_says_how_long_to_wait() {
        let quota = Quota::new("batch", 0.1, None);
        let start = Instant::now();
        assert!(quota.take(start).is_ok());
        assert!(matches!(
            quota.take(start),
            Err(ApiError::Overloaded {
                retry_after: 10,
                ..
            })
        ));
    }
}
