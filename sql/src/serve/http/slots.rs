//! How many requests score at once, and how many may wait: a request takes a place in
//! the queue or is refused at once with 429 (so overload costs no memory), then waits
//! for one of `max_in_flight` slots and scores on a blocking thread, off the threads
//! that accept and answer requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Semaphore;

use super::errors::ApiError;

/// Seconds a refused client is told to wait.
const RETRY_AFTER_SECONDS: u64 = 1;

/// The scoring slots and the queue in front of them.
#[derive(Debug)]
pub struct Slots {
    admitted: AtomicUsize,
    most_admitted: usize,
    running: Arc<Semaphore>,
}

/// A request's place in the queue, given back when it ends (answered, failed or
/// abandoned).
pub struct Place<'a>(&'a AtomicUsize);

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Slots {
    /// `in_flight` slots and `queued` places to wait in.
    pub fn new(in_flight: usize, queued: usize) -> Self {
        Self {
            admitted: AtomicUsize::new(0),
            most_admitted: in_flight + queued,
            running: Arc::new(Semaphore::new(in_flight)),
        }
    }

    /// A place in the queue, or 429 when every slot is busy and the queue is full. A
    /// request takes its place before its body is read, so refused requests never hold
    /// a body.
    pub fn admit(&self) -> Result<Place<'_>, ApiError> {
        let admitted = self.admitted.fetch_add(1, Ordering::AcqRel);
        let place = Place(&self.admitted);
        if admitted >= self.most_admitted {
            return Err(ApiError::Overloaded {
                message: format!(
                    "the server is busy: {} requests are scoring or waiting; try again in {RETRY_AFTER_SECONDS} s",
                    self.most_admitted
                ),
                retry_after: RETRY_AFTER_SECONDS,
            });
        }
        Ok(place)
    }

    /// Runs `work` in a slot once one is free, holding `place` until it ends.
    pub async fn run<T: Send + 'static>(
        &self,
        place: Place<'_>,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let _place = place;
        let slot = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ApiError::Unavailable(String::from("the server is stopping")))?;
        // The slot is held by the work itself: a request that times out while its rows
        // are scoring frees its slot only when the scoring ends.
        let working = move || {
            let _slot = slot;
            work()
        };
        tokio::task::spawn_blocking(working).await.map_err(|error| {
            tracing::error!("scoring failed: {error}");
            ApiError::Internal(String::from("scoring failed; the server log says why"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_past_the_slots_and_the_queue_are_refused_at_once_and_the_rest_run() {
        let slots = Arc::new(Slots::new(1, 2));
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(std::sync::Mutex::new(gate));
        let mut running = Vec::new();
        for _ in 0..3 {
            let slots = slots.clone();
            let gate = gate.clone();
            running.push(tokio::spawn(async move {
                let place = slots.admit().unwrap();
                slots
                    .run(place, move || {
                        let _ = gate.lock().map(|g| g.recv_timeout(Duration::from_secs(10)));
                        7
                    })
                    .await
            }));
        }
        // Let the three take the slot and the two queue places.
        while slots.admitted.load(Ordering::Acquire) < 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let refused = slots.admit().err().unwrap();
        assert!(
            matches!(refused, ApiError::Overloaded { retry_after: 1, .. }),
            "{refused}"
        );
        for _ in 0..3 {
            release.send(()).unwrap();
        }
        for task in running {
            assert_eq!(task.await.unwrap().unwrap(), 7);
        }
        assert_eq!(slots.admitted.load(Ordering::Acquire), 0);
        let place = slots.admit().unwrap();
        assert_eq!(slots.run(place, || 1).await.unwrap(), 1);
    }
}
