//! The job lease: the one record, kept in the lakehouse, that says who is running a job.
//!
//! No two runs of a job may overlap, even from schedulers on two machines. The lease lives
//! under `<root>/_jobs/<job>/lease/` as numbered generations: every acquisition, renewal
//! and release writes the next generation with a create-only put, so of two processes
//! racing for it exactly one succeeds (the same trick Delta's own log uses). A lease
//! expires unless its holder renews it, so a process that dies holding it blocks the job
//! for at most the lease's time to live. The lease also remembers the last scheduled fire
//! time claimed, so two schedulers never both run the same fire.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use lakescore_engine::Lakehouse;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Generations kept behind the newest; older ones are deleted.
const KEEP_GENERATIONS: u64 = 8;

/// One generation of a job's lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// Its generation number, from 1.
    pub generation: u64,
    /// The job.
    pub job: String,
    /// The process that wrote it: host, process id and a random suffix.
    pub holder: String,
    /// The run it is held for.
    pub run_id: String,
    /// When the holder acquired it.
    pub acquired_at: DateTime<Utc>,
    /// When it runs out unless renewed.
    pub expires_at: DateTime<Utc>,
    /// True once the holder gave it back.
    pub released: bool,
    /// The newest scheduled fire time a run was started for.
    pub last_scheduled_for: Option<DateTime<Utc>>,
}

impl LeaseRecord {
    /// True while a live holder has it.
    pub fn is_held(&self, now: DateTime<Utc>) -> bool {
        !self.released && self.expires_at > now
    }
}

/// The outcome of trying to take a job's lease.
#[derive(Debug)]
pub enum Acquired {
    /// Taken: the run may start.
    Lease(Lease),
    /// Another run holds it.
    Busy(LeaseRecord),
    /// A run was already started for this scheduled fire time (or a later one).
    AlreadyScheduled(DateTime<Utc>),
}

/// A held lease.
#[derive(Debug, Clone)]
pub struct Lease {
    /// The job.
    pub job: String,
    /// The run holding it.
    pub run_id: String,
    /// The previous holder's record when it expired without being released (that
    /// process died or hung mid-run).
    pub abandoned: Option<LeaseRecord>,
    record: LeaseRecord,
}

/// Reads and writes the leases of one lakehouse, as one holder.
pub struct Leases {
    store: Arc<dyn ObjectStore>,
    holder: String,
    ttl: Duration,
}

impl Leases {
    /// Leases in `lakehouse`, held for `ttl` between renewals, by this process.
    pub fn new(lakehouse: &Lakehouse, ttl: Duration) -> Result<Self> {
        let host = std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| String::from("localhost"));
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        Ok(Self {
            store: lakehouse.store()?,
            holder: format!("{host}:{}:{}", std::process::id(), &suffix[..8]),
            ttl,
        })
    }

    /// Who this process is, as written into leases.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// How long a lease lasts between renewals.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The newest generation of `job`'s lease, None when the job never ran.
    pub async fn current(&self, job: &str) -> Result<Option<LeaseRecord>> {
        let Some(generation) = self.newest_generation(job).await? else {
            return Ok(None);
        };
        let path = generation_path(job, generation);
        let bytes = self
            .store
            .get(&path)
            .await
            .map_err(|e| state_error(&path, e))?
            .bytes()
            .await
            .map_err(|e| state_error(&path, e))?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| state_error(&path, e))
    }

    /// Takes `job`'s lease for `run_id`. With `scheduled_for`, refuses when a run was
    /// already started for that fire time or a later one.
    pub async fn acquire(
        &self,
        job: &str,
        run_id: &str,
        scheduled_for: Option<DateTime<Utc>>,
    ) -> Result<Acquired> {
        loop {
            let now = Utc::now();
            let current = self.current(job).await?;
            if let Some(record) = &current {
                if record.is_held(now) {
                    return Ok(Acquired::Busy(record.clone()));
                }
                if let (Some(wanted), Some(last)) = (scheduled_for, record.last_scheduled_for)
                    && wanted <= last
                {
                    return Ok(Acquired::AlreadyScheduled(last));
                }
            }
            let record = LeaseRecord {
                generation: current.as_ref().map_or(1, |r| r.generation + 1),
                job: job.to_string(),
                holder: self.holder.clone(),
                run_id: run_id.to_string(),
                acquired_at: now,
                expires_at: now + self.ttl,
                released: false,
                last_scheduled_for: scheduled_for
                    .or_else(|| current.as_ref().and_then(|r| r.last_scheduled_for)),
            };
            if self.write(&record).await? {
                return Ok(Acquired::Lease(Lease {
                    job: job.to_string(),
                    run_id: run_id.to_string(),
                    abandoned: current.filter(|r| !r.released),
                    record,
                }));
            }
            // Another process wrote this generation first: look again.
        }
    }

    /// Extends a held lease by its time to live. Fails with [`Error::LeaseLost`] when
    /// another process took it over in the meantime.
    pub async fn renew(&self, lease: &mut Lease) -> Result<()> {
        let now = Utc::now();
        let next = LeaseRecord {
            generation: lease.record.generation + 1,
            expires_at: now + self.ttl,
            ..lease.record.clone()
        };
        if self.write(&next).await? {
            lease.record = next;
            Ok(())
        } else {
            let holder = self
                .current(&lease.job)
                .await?
                .map(|r| r.holder)
                .unwrap_or_default();
            Err(Error::LeaseLost {
                job: lease.job.clone(),
                reason: format!("{holder} took it over after it expired"),
            })
        }
    }

    /// Gives the lease back so the next run may start at once.
    pub async fn release(&self, lease: Lease) -> Result<()> {
        let released = LeaseRecord {
            generation: lease.record.generation + 1,
            expires_at: Utc::now(),
            released: true,
            ..lease.record
        };
        if !self.write(&released).await? {
            tracing::warn!(job = %lease.job, "the lease was taken over before it was released");
        }
        Ok(())
    }

    /// Writes `record` as its generation; false when that generation already exists.
    async fn write(&self, record: &LeaseRecord) -> Result<bool> {
        let path = generation_path(&record.job, record.generation);
        let body = serde_json::to_vec_pretty(record).map_err(|e| state_error(&path, e))?;
        match self
            .store
            .put_opts(&path, PutPayload::from(body), PutMode::Create.into())
            .await
        {
            Ok(_) => {
                self.forget_before(&record.job, record.generation).await;
                Ok(true)
            }
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(error) => Err(state_error(&path, error)),
        }
    }

    /// Deletes generations older than the few kept behind `newest` (best effort: a
    /// leftover generation is harmless).
    async fn forget_before(&self, job: &str, newest: u64) {
        if newest <= KEEP_GENERATIONS || !newest.is_multiple_of(KEEP_GENERATIONS) {
            return;
        }
        let Ok(generations) = self.generations(job).await else {
            return;
        };
        for old in generations
            .into_iter()
            .filter(|g| *g + KEEP_GENERATIONS < newest)
        {
            let _ = self.store.delete(&generation_path(job, old)).await;
        }
    }

    async fn newest_generation(&self, job: &str) -> Result<Option<u64>> {
        Ok(self.generations(job).await?.into_iter().max())
    }

    async fn generations(&self, job: &str) -> Result<Vec<u64>> {
        let folder = lease_folder(job);
        let objects: Vec<_> = self
            .store
            .list(Some(&folder))
            .try_collect()
            .await
            .map_err(|e| state_error(&folder, e))?;
        Ok(objects
            .iter()
            .filter_map(|object| {
                object
                    .location
                    .filename()?
                    .strip_suffix(".json")?
                    .parse()
                    .ok()
            })
            .collect())
    }
}

fn lease_folder(job: &str) -> StorePath {
    StorePath::from_iter(["_jobs", job, "lease"])
}

fn generation_path(job: &str, generation: u64) -> StorePath {
    lease_folder(job).join(format!("{generation:020}.json"))
}

fn state_error(path: &StorePath, error: impl std::fmt::Display) -> Error {
    Error::State {
        path: path.to_string(),
        message: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lakehouse(dir: &std::path::Path) -> Lakehouse {
        let config = lakescore_engine::config::LakehouseConfig::default();
        Lakehouse::new(&config, dir).unwrap()
    }

    fn lease(acquired: Acquired) -> Lease {
        match acquired {
            Acquired::Lease(lease) => lease,
            other => panic!("expected the lease, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn one_holder_at_a_time_and_release_frees_it() {
        let dir = tempfile::tempdir().unwrap();
        let lakehouse = lakehouse(dir.path());
        let first = Leases::new(&lakehouse, Duration::from_secs(60)).unwrap();
        let second = Leases::new(&lakehouse, Duration::from_secs(60)).unwrap();
        assert_ne!(first.holder(), second.holder());

        let held = lease(first.acquire("nightly", "run-1", None).await.unwrap());
        assert!(held.abandoned.is_none());
        match second.acquire("nightly", "run-2", None).await.unwrap() {
            Acquired::Busy(record) => {
                assert_eq!(record.run_id, "run-1");
                assert_eq!(record.holder, first.holder());
            }
            other => panic!("expected busy, got {other:?}"),
        }
        // Another job is independent.
        lease(second.acquire("hourly", "run-3", None).await.unwrap());

        first.release(held).await.unwrap();
        let taken = lease(second.acquire("nightly", "run-2", None).await.unwrap());
        assert!(
            taken.abandoned.is_none(),
            "a released lease is not abandoned"
        );
    }

    #[tokio::test]
    async fn an_expired_lease_is_taken_over_and_its_holder_loses_it() {
        let dir = tempfile::tempdir().unwrap();
        let lakehouse = lakehouse(dir.path());
        let crashed = Leases::new(&lakehouse, Duration::from_millis(200)).unwrap();
        let survivor = Leases::new(&lakehouse, Duration::from_secs(60)).unwrap();
        let mut stale = lease(crashed.acquire("nightly", "run-1", None).await.unwrap());
        tokio::time::sleep(Duration::from_millis(300)).await;

        let taken = lease(survivor.acquire("nightly", "run-2", None).await.unwrap());
        let abandoned = taken.abandoned.expect("the dead holder's record");
        assert_eq!(abandoned.run_id, "run-1");

        let error = crashed.renew(&mut stale).await.unwrap_err();
        assert!(
            error
                .to_string()
                .contains(&format!("{} took it over", survivor.holder())),
            "{error}"
        );
    }

    #[tokio::test]
    async fn renewal_keeps_the_lease_and_a_scheduled_fire_runs_once() {
        let dir = tempfile::tempdir().unwrap();
        let lakehouse = lakehouse(dir.path());
        let leases = Leases::new(&lakehouse, Duration::from_millis(300)).unwrap();
        let other = Leases::new(&lakehouse, Duration::from_secs(60)).unwrap();
        let fire = Utc::now();
        let mut held = lease(
            leases
                .acquire("nightly", "run-1", Some(fire))
                .await
                .unwrap(),
        );
        for _ in 0..12 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            leases.renew(&mut held).await.unwrap();
        }
        assert!(matches!(
            other.acquire("nightly", "run-2", Some(fire)).await.unwrap(),
            Acquired::Busy(_)
        ));
        leases.release(held).await.unwrap();
        match other.acquire("nightly", "run-2", Some(fire)).await.unwrap() {
            Acquired::AlreadyScheduled(last) => assert_eq!(last, fire),
            other => panic!("expected already scheduled, got {other:?}"),
        }
        // A manual run (no fire time) may run; it keeps the fire time for the next check.
        let manual = lease(other.acquire("nightly", "run-3", None).await.unwrap());
        assert_eq!(manual.record.last_scheduled_for, Some(fire));
        // Old generations were pruned as renewals went on.
        assert!(
            leases.generations("nightly").await.unwrap().len() <= 2 * KEEP_GENERATIONS as usize
        );
    }
}
