//! `lakescore scheduler`: runs every scheduled job at its fire times until stopped.
//!
//! Fire times come from each job's cron expression in its time zone. A fire is claimed
//! through the job's lease, so schedulers on several machines share the jobs without
//! running a fire twice or overlapping two runs of a job. At start-up, a fire missed while
//! no scheduler ran is made up once (`catch_up = true`) or skipped. Stopping lets running
//! steps finish (a second signal cancels them); the scheduler waits for its runs to end.

use std::collections::HashMap;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use lakescore_engine::config::Schedule;
use lakescore_engine::run::RunContext;
use lakescore_engine::{Lakehouse, Project};
use tokio::task::JoinHandle;

use crate::error::Result;
use crate::history::Trigger;
use crate::lease::Leases;
use crate::runner::{RunJob, RunOutcome, Shutdown};

/// What a scheduler did before it stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchedulerReport {
    /// Runs it started and finished.
    pub runs: usize,
    /// Fires another scheduler had already claimed, or that came while the job's
    /// previous run was still going.
    pub skipped: usize,
}

/// The scheduler: build it, then `.await` it; it returns once `shutdown.stop` fires and
/// its runs have ended.
pub struct Scheduler {
    project: Arc<Project>,
    lakehouse: Arc<Lakehouse>,
    shutdown: Shutdown,
}

/// One scheduled job's next fire.
struct Plan {
    job: String,
    schedule: Schedule,
    zone: Tz,
    next_fire: Option<DateTime<Utc>>,
    catch_up: Option<DateTime<Utc>>,
}

/// The fire a job missed before `now`, when the scheduler was not running: its last fire
/// time at or before `now`, if later than the last fire a run was started for.
pub fn missed_fire(
    schedule: &Schedule,
    zone: Tz,
    last_scheduled_for: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let last_fire = schedule.last_at_or_before(now, zone)?;
    (last_scheduled_for? < last_fire).then_some(last_fire)
}

impl Scheduler {
    /// Schedules every job of `project` that has a `schedule`.
    pub fn new(project: Arc<Project>, lakehouse: Arc<Lakehouse>, shutdown: Shutdown) -> Self {
        Self {
            project,
            lakehouse,
            shutdown,
        }
    }

    async fn run(self) -> Result<SchedulerReport> {
        let mut plans = self.plans().await?;
        tracing::info!(
            jobs = plans.len(),
            next = %plans
                .iter()
                .map(|p| format!("{} at {}", p.job, p.next_fire.map(|t| t.to_rfc3339()).unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(", "),
            "scheduler started"
        );
        let poll = self.project.config.scheduler.poll_interval;
        let mut running: HashMap<String, JoinHandle<Result<RunOutcome>>> = HashMap::new();
        let mut report = SchedulerReport::default();
        while !self.shutdown.stop.is_cancelled() {
            let now = Utc::now();
            self.reap(&mut running, &mut report, false).await;
            for plan in &mut plans {
                let due = match plan.catch_up.take() {
                    Some(fire) => Some((fire, Trigger::CatchUp)),
                    None => match plan.next_fire {
                        Some(fire) if fire <= now => {
                            plan.next_fire = plan.schedule.next_after(now, plan.zone);
                            Some((fire, Trigger::Schedule))
                        }
                        _ => None,
                    },
                };
                let Some((fire, trigger)) = due else { continue };
                if running.contains_key(&plan.job) {
                    tracing::warn!(job = %plan.job, fire = %fire, "fire skipped: the job's previous run is still going");
                    report.skipped += 1;
                    continue;
                }
                running.insert(plan.job.clone(), self.start(&plan.job, fire, trigger));
            }
            let next_fire = plans.iter().filter_map(|p| p.next_fire).min();
            let wait = next_fire
                .and_then(|t| (t - Utc::now()).to_std().ok())
                .map_or(poll, |until| until.min(poll));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.shutdown.stop.cancelled() => {}
            }
        }
        if !running.is_empty() {
            tracing::info!(
                runs = running.len(),
                "stopping: running steps finish first (signal again to cancel them)"
            );
        }
        self.reap(&mut running, &mut report, true).await;
        tracing::info!(runs = report.runs, "scheduler stopped");
        Ok(report)
    }

    /// The scheduled jobs with their next fire and any fire to make up.
    async fn plans(&self) -> Result<Vec<Plan>> {
        let leases = Leases::new(&self.lakehouse, self.project.config.scheduler.lease_ttl)?;
        let now = Utc::now();
        let mut plans = Vec::new();
        for job in &self.project.config.jobs {
            let Some(schedule) = job.schedule.clone() else {
                continue;
            };
            let zone = job.timezone.0;
            let last_scheduled_for = leases
                .current(&job.name)
                .await?
                .and_then(|r| r.last_scheduled_for);
            let missed = missed_fire(&schedule, zone, last_scheduled_for, now);
            if let Some(fire) = missed {
                if job.catch_up {
                    tracing::info!(job = %job.name, fire = %fire, "making up a fire missed while no scheduler ran");
                } else {
                    tracing::info!(job = %job.name, fire = %fire, "skipping a fire missed while no scheduler ran (catch_up = false)");
                }
            }
            plans.push(Plan {
                job: job.name.clone(),
                next_fire: schedule.next_after(now, zone),
                catch_up: missed.filter(|_| job.catch_up),
                schedule,
                zone,
            });
        }
        Ok(plans)
    }

    fn start(
        &self,
        job: &str,
        fire: DateTime<Utc>,
        trigger: Trigger,
    ) -> JoinHandle<Result<RunOutcome>> {
        let cx = RunContext::new(self.project.clone(), self.lakehouse.clone());
        let run = RunJob::new(&cx, job)
            .with_schedule(fire, trigger)
            .with_shutdown(self.shutdown.clone());
        tokio::spawn(run.into_future())
    }

    /// Collects finished runs (all of them, waiting, when `wait`).
    async fn reap(
        &self,
        running: &mut HashMap<String, JoinHandle<Result<RunOutcome>>>,
        report: &mut SchedulerReport,
        wait: bool,
    ) {
        let finished: Vec<String> = running
            .iter()
            .filter(|(_, handle)| wait || handle.is_finished())
            .map(|(job, _)| job.clone())
            .collect();
        for job in finished {
            let Some(handle) = running.remove(&job) else {
                continue;
            };
            match handle.await {
                Ok(Ok(RunOutcome::Ran(_))) => report.runs += 1,
                Ok(Ok(RunOutcome::Busy(record))) => {
                    report.skipped += 1;
                    tracing::info!(job = %job, run_id = %record.run_id, holder = %record.holder, "fire skipped: another process is running the job");
                }
                Ok(Ok(RunOutcome::AlreadyScheduled(fire))) => {
                    report.skipped += 1;
                    tracing::info!(job = %job, fire = %fire, "fire skipped: another scheduler already ran it");
                }
                Ok(Err(error)) => tracing::error!(job = %job, "run could not start: {error}"),
                Err(panic) => tracing::error!(job = %job, "run crashed: {panic}"),
            }
        }
    }
}

impl IntoFuture for Scheduler {
    type Output = Result<SchedulerReport>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missed_fire_is_the_last_one_not_yet_run() {
        let hourly: Schedule = "0 * * * *".parse().unwrap();
        let at = |h: u32, m: u32| {
            DateTime::parse_from_rfc3339(&format!("2026-05-01T{h:02}:{m:02}:00Z"))
                .unwrap()
                .with_timezone(&Utc)
        };
        // Down from 09:30 to 12:10: the fires at 10, 11 and 12 were missed; one run makes
        // them up, for 12:00.
        assert_eq!(
            missed_fire(&hourly, Tz::UTC, Some(at(9, 0)), at(12, 10)),
            Some(at(12, 0))
        );
        // The 12:00 fire already ran: nothing missed.
        assert_eq!(
            missed_fire(&hourly, Tz::UTC, Some(at(12, 0)), at(12, 10)),
            None
        );
        // A job never scheduled before has missed nothing.
        assert_eq!(missed_fire(&hourly, Tz::UTC, None, at(12, 10)), None);
    }
}
