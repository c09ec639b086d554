//! Running one job once: the lease, the steps in order with retries, backoff and time
//! limits, the run history, and the failure alert.
//!
//! Every commit a step makes carries the run's id. A step that is cancelled (time limit,
//! a second shutdown signal, a lost lease) is dropped between commits, and lakescore's
//! operations commit once at their end, so every table stays at a committed version.

use std::future::IntoFuture;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lakescore_engine::Project;
use lakescore_engine::config::{JobConfig, StepConfig};
use lakescore_engine::run::{OperationFuture, Report, RunContext};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::alerts::{Alert, AlertKind, Alerts};
use crate::error::{Error, Result};
use crate::history::{
    DataMoved, JobRunRecord, RunStatus, StepRunRecord, Trigger, record_job_run, record_step_run,
};
use crate::lease::{Acquired, Lease, LeaseRecord, Leases};
use crate::steps::run_step;

/// How a running job is asked to stop: `stop` lets the running step finish and starts no
/// other; `cancel` cancels the running step at once.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    /// Finish the running step, then stop.
    pub stop: CancellationToken,
    /// Stop now.
    pub cancel: CancellationToken,
}

/// One step's outcome in a run.
#[derive(Debug, Clone)]
pub struct StepReport {
    /// The step's name.
    pub step: String,
    /// Its kind.
    pub kind: String,
    /// How its last attempt ended.
    pub status: RunStatus,
    /// Attempts made.
    pub attempts: u32,
    /// Time across all attempts.
    pub duration: Duration,
    /// What the successful attempt did, in a line.
    pub summary: Option<String>,
    /// Why the last attempt failed.
    pub error: Option<String>,
    /// What the successful attempt read and wrote.
    pub data: DataMoved,
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The run's id.
    pub run_id: String,
    /// The job.
    pub job: String,
    /// How it ended.
    pub status: RunStatus,
    /// The steps that ran, in order.
    pub steps: Vec<StepReport>,
    /// How long it took.
    pub duration: Duration,
}

impl RunReport {
    /// The error for a run that did not succeed.
    pub fn failure(&self) -> Option<Error> {
        if self.status == RunStatus::Succeeded {
            return None;
        }
        let last = self.steps.last();
        Some(Error::RunFailed {
            job: self.job.clone(),
            run_id: self.run_id.clone(),
            status: self.status.as_str().replace('_', " "),
            step: last.map(|s| s.step.clone()).unwrap_or_default(),
            message: last
                .and_then(|s| s.error.clone())
                .unwrap_or_else(|| String::from("stopped before it started")),
        })
    }
}

/// What happened when a run was asked for.
#[derive(Debug)]
pub enum RunOutcome {
    /// It ran.
    Ran(RunReport),
    /// Another run of the job holds the lease.
    Busy(LeaseRecord),
    /// A run was already started for this fire time.
    AlreadyScheduled(DateTime<Utc>),
}

impl RunOutcome {
    /// The report, or [`Error::JobBusy`] when the job was already running. A run asked
    /// for without a fire time is never refused as already scheduled.
    pub fn into_report(self, job: &str) -> Result<RunReport> {
        match self {
            RunOutcome::Ran(report) => Ok(report),
            RunOutcome::Busy(record) => Err(Error::JobBusy {
                job: job.to_string(),
                run_id: record.run_id,
                holder: record.holder,
                expires_at: record.expires_at,
            }),
            RunOutcome::AlreadyScheduled(fire) => Err(Error::RunFailed {
                job: job.to_string(),
                run_id: String::new(),
                status: String::from("skipped"),
                step: String::new(),
                message: format!("a run for the fire time {fire} was already started"),
            }),
        }
    }
}

/// A job run: `RunJob::new(&cx, job)`, then `.await` it; the context's run id is the
/// job run's, written into every commit of every step.
#[must_use = "an operation does nothing until it is awaited"]
pub struct RunJob {
    cx: RunContext,
    job: String,
    from: Option<String>,
    trigger: Trigger,
    scheduled_for: Option<DateTime<Utc>>,
    shutdown: Shutdown,
}

impl RunJob {
    /// Runs job `job` of the context's project now, from its first step.
    pub fn new(cx: &RunContext, job: impl Into<String>) -> Self {
        Self {
            cx: cx.clone(),
            job: job.into(),
            from: None,
            trigger: Trigger::Manual,
            scheduled_for: None,
            shutdown: Shutdown::default(),
        }
    }

    /// Starts at step `step` (resuming a failed run), skipping the steps before it.
    pub fn with_from_step(mut self, step: Option<String>) -> Self {
        self.from = step;
        self
    }

    /// Runs for scheduled fire time `fire`: refused when a run for it already started.
    pub fn with_schedule(mut self, fire: DateTime<Utc>, trigger: Trigger) -> Self {
        self.scheduled_for = Some(fire);
        self.trigger = trigger;
        self
    }

    /// Stops when `shutdown` says so.
    pub fn with_shutdown(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = shutdown;
        self
    }

    async fn run(self) -> Result<RunOutcome> {
        let job = find_job(self.cx.project(), &self.job)?;
        let start = match &self.from {
            Some(step) => job
                .steps
                .iter()
                .position(|s| &s.name == step)
                .ok_or_else(|| Error::UnknownStep {
                    job: job.name.clone(),
                    step: step.clone(),
                    steps: job.steps.iter().map(|s| s.name.clone()).collect(),
                })?,
            None => 0,
        };
        let leases = Leases::new(
            self.cx.lakehouse(),
            self.cx.project().config.scheduler.lease_ttl,
        )?;
        let mut lease = match leases
            .acquire(&job.name, self.cx.run_id(), self.scheduled_for)
            .await?
        {
            Acquired::Lease(lease) => lease,
            Acquired::Busy(record) => return Ok(RunOutcome::Busy(record)),
            Acquired::AlreadyScheduled(fire) => return Ok(RunOutcome::AlreadyScheduled(fire)),
        };
        if let Some(abandoned) = lease.abandoned.take() {
            self.record_abandoned(&abandoned).await;
        }
        let started_at = Utc::now();
        tracing::info!(
            job = %job.name,
            run_id = %self.cx.run_id(),
            trigger = self.trigger.as_str(),
            from = self.from.as_deref().unwrap_or(""),
            "run started"
        );
        let lost = CancellationToken::new();
        let done = CancellationToken::new();
        let (steps, heartbeat) = tokio::join!(
            async {
                let steps = self.run_steps(job, &job.steps[start..], &lost).await;
                done.cancel();
                steps
            },
            keep_lease(&leases, &mut lease, &done, &lost),
        );
        let (steps, history_error) = steps;
        match heartbeat {
            Ok(()) => {
                if let Err(error) = leases.release(lease).await {
                    // The lease expires on its own; the run's history matters more.
                    tracing::error!(job = %job.name, "cannot release the job's lease: {error}");
                }
            }
            Err(lost) => tracing::error!(job = %job.name, "{lost}"),
        }
        let report = self.finish(job, steps, started_at).await;
        let history_error = match record_job_run(
            self.cx.lakehouse(),
            &self.job_record(&report, started_at, &leases),
        )
        .await
        {
            Ok(_) => history_error,
            Err(error) => history_error.or(Some(error)),
        };
        if let Some(error) = history_error {
            return Err(error);
        }
        Ok(RunOutcome::Ran(report))
    }

    /// Runs `steps` in order; returns their reports and the first failure to write history.
    async fn run_steps(
        &self,
        job: &JobConfig,
        steps: &[StepConfig],
        lost: &CancellationToken,
    ) -> (Vec<StepReport>, Option<Error>) {
        let deadline = job.timeout.map(|t| Instant::now() + t);
        let mut reports = Vec::new();
        let mut history_error = None;
        for step in steps {
            if self.shutdown.stop.is_cancelled() {
                reports.push(not_started(
                    step,
                    "stopped by a shutdown signal before this step",
                ));
                break;
            }
            let report = self
                .run_with_retries(job, step, deadline, lost, &mut history_error)
                .await;
            let succeeded = report.status == RunStatus::Succeeded;
            reports.push(report);
            if !succeeded {
                break;
            }
        }
        (reports, history_error)
    }

    async fn run_with_retries(
        &self,
        job: &JobConfig,
        step: &StepConfig,
        deadline: Option<Instant>,
        lost: &CancellationToken,
        history_error: &mut Option<Error>,
    ) -> StepReport {
        let retries = step.retries.unwrap_or(job.retries);
        let step_timeout = step.timeout.or(job.step_timeout);
        let began = Instant::now();
        let mut report = StepReport {
            step: step.name.clone(),
            kind: step.action.kind().to_string(),
            status: RunStatus::Failed,
            attempts: 0,
            duration: Duration::ZERO,
            summary: None,
            error: None,
            data: DataMoved::default(),
        };
        let mut delay = job.retry_delay;
        loop {
            report.attempts += 1;
            let attempt = report.attempts;
            tracing::info!(job = %job.name, step = %step.name, attempt, "step started");
            let started_at = Utc::now();
            let (status, outcome) = self.attempt(job, step, step_timeout, deadline, lost).await;
            let record = StepRunRecord {
                run_id: self.cx.run_id().to_string(),
                job: job.name.clone(),
                step: step.name.clone(),
                kind: report.kind.clone(),
                attempt,
                status,
                started_at,
                finished_at: Utc::now(),
                data: outcome.as_ref().map(|(d, _)| d.clone()).unwrap_or_default(),
                error: outcome.as_ref().err().cloned(),
            };
            if let Err(error) = record_step_run(self.cx.lakehouse(), &record).await {
                tracing::error!(job = %job.name, step = %step.name, "cannot record the step in ops.step_runs: {error}");
                history_error.get_or_insert(error);
            }
            report.status = status;
            report.duration = began.elapsed();
            match outcome {
                Ok((data, summary)) => {
                    tracing::info!(
                        job = %job.name,
                        step = %step.name,
                        attempt,
                        rows_read = data.rows_read,
                        rows_written = data.rows_written,
                        seconds = format_args!("{:.1}", report.duration.as_secs_f64()),
                        "step succeeded: {summary}"
                    );
                    report.summary = Some(summary);
                    report.error = None;
                    report.data = data;
                    return report;
                }
                Err(error) => {
                    report.error = Some(error.clone());
                    let retryable = matches!(status, RunStatus::Failed | RunStatus::TimedOut)
                        && attempt <= retries
                        && deadline.is_none_or(|d| Instant::now() + delay < d);
                    if !retryable {
                        tracing::error!(job = %job.name, step = %step.name, attempt, status = status.as_str(), "step did not succeed: {error}");
                        return report;
                    }
                    tracing::warn!(
                        job = %job.name,
                        step = %step.name,
                        attempt,
                        "step failed, retrying in {}: {error}",
                        crate::freshness::human_duration(delay)
                    );
                    let waited = tokio::select! {
                        _ = tokio::time::sleep(delay) => true,
                        _ = self.shutdown.stop.cancelled() => false,
                        _ = self.shutdown.cancel.cancelled() => false,
                        _ = lost.cancelled() => false,
                    };
                    if !waited {
                        report.status = RunStatus::Cancelled;
                        report.error = Some(format!("{error} (not retried: the run was stopped)"));
                        return report;
                    }
                    delay = delay.saturating_mul(2);
                }
            }
        }
    }

    /// One attempt of `step`, bounded by its timeout, the job's deadline and cancellation.
    async fn attempt(
        &self,
        job: &JobConfig,
        step: &StepConfig,
        step_timeout: Option<Duration>,
        deadline: Option<Instant>,
        lost: &CancellationToken,
    ) -> (RunStatus, std::result::Result<(DataMoved, String), String>) {
        let until_deadline = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let (limit, limit_text) = match (step_timeout, until_deadline) {
            (Some(step_limit), Some(job_left)) if job_left < step_limit => {
                (Some(job_left), "the job's timeout")
            }
            (Some(step_limit), _) => (Some(step_limit), "the step's timeout"),
            (None, Some(job_left)) => (Some(job_left), "the job's timeout"),
            (None, None) => (None, ""),
        };
        let work = async {
            let report = run_step(&self.cx, job, &step.action).await?;
            Ok::<_, Error>((report.data_moved(), report.summary()))
        };
        let bounded = async {
            match limit {
                Some(limit) => tokio::time::timeout(limit, work).await.map_err(|_| limit),
                None => Ok(work.await),
            }
        };
        tokio::select! {
            result = bounded => match result {
                Ok(Ok(done)) => (RunStatus::Succeeded, Ok(done)),
                Ok(Err(error)) => (RunStatus::Failed, Err(error.to_string())),
                Err(limit) => (
                    RunStatus::TimedOut,
                    Err(format!(
                        "cancelled after {} ({limit_text}); its tables stay at their last committed versions",
                        crate::freshness::human_duration(limit)
                    )),
                ),
            },
            _ = self.shutdown.cancel.cancelled() => (
                RunStatus::Cancelled,
                Err(String::from("cancelled by a second shutdown signal; its tables stay at their last committed versions")),
            ),
            _ = lost.cancelled() => (
                RunStatus::Cancelled,
                Err(String::from("cancelled: this process lost the job's lease")),
            ),
        }
    }

    /// The run's status from its steps; logs it and sends the failure alert.
    async fn finish(
        &self,
        job: &JobConfig,
        steps: Vec<StepReport>,
        started_at: DateTime<Utc>,
    ) -> RunReport {
        let status = steps
            .iter()
            .map(|s| s.status)
            .find(|s| *s != RunStatus::Succeeded)
            .unwrap_or(RunStatus::Succeeded);
        let report = RunReport {
            run_id: self.cx.run_id().to_string(),
            job: job.name.clone(),
            status,
            steps,
            duration: (Utc::now() - started_at).to_std().unwrap_or_default(),
        };
        tracing::info!(
            job = %job.name,
            run_id = %self.cx.run_id(),
            status = status.as_str(),
            seconds = format_args!("{:.1}", report.duration.as_secs_f64()),
            "run finished"
        );
        let stopped_by_operator =
            status == RunStatus::Cancelled && self.shutdown.stop.is_cancelled();
        if let Some(failure) = report.failure().filter(|_| !stopped_by_operator) {
            let alert = Alert {
                kind: AlertKind::RunFailed,
                text: failure.to_string(),
                job: Some(job.name.clone()),
                run_id: Some(self.cx.run_id().to_string()),
                details: json!({
                    "status": status.as_str(),
                    "step": report.steps.last().map(|s| s.step.clone()),
                    "attempts": report.steps.last().map(|s| s.attempts),
                }),
            };
            Alerts::new(self.cx.project())
                .send(&job.on_failure, &alert)
                .await;
        }
        report
    }

    fn job_record(
        &self,
        report: &RunReport,
        started_at: DateTime<Utc>,
        leases: &Leases,
    ) -> JobRunRecord {
        let failed = report
            .steps
            .iter()
            .find(|s| s.status != RunStatus::Succeeded);
        let mut data = DataMoved::default();
        for step in &report.steps {
            data.add(&step.data);
        }
        JobRunRecord {
            run_id: self.cx.run_id().to_string(),
            job: report.job.clone(),
            trigger: self.trigger,
            scheduled_for: self.scheduled_for,
            status: report.status,
            started_at,
            finished_at: Utc::now(),
            from_step: self.from.clone(),
            steps_succeeded: report
                .steps
                .iter()
                .filter(|s| s.status == RunStatus::Succeeded)
                .count() as u32,
            failed_step: failed.map(|s| s.step.clone()),
            error: failed.and_then(|s| s.error.clone()),
            data,
            holder: leases.holder().to_string(),
        }
    }

    /// Records the run of a process that died holding the lease.
    async fn record_abandoned(&self, abandoned: &LeaseRecord) {
        tracing::warn!(
            job = %abandoned.job,
            run_id = %abandoned.run_id,
            holder = %abandoned.holder,
            "the previous run's process stopped renewing its lease; recording it as abandoned"
        );
        let record = JobRunRecord {
            run_id: abandoned.run_id.clone(),
            job: abandoned.job.clone(),
            trigger: Trigger::Manual,
            scheduled_for: None,
            status: RunStatus::Abandoned,
            started_at: abandoned.acquired_at,
            finished_at: abandoned.expires_at,
            from_step: None,
            steps_succeeded: 0,
            failed_step: None,
            error: Some(format!(
                "its process ({}) stopped renewing the job's lease; every table stays at its last committed version, and ops.step_runs shows the steps it finished",
                abandoned.holder
            )),
            data: DataMoved::default(),
            holder: abandoned.holder.clone(),
        };
        if let Err(error) = record_job_run(self.cx.lakehouse(), &record).await {
            tracing::error!("cannot record the abandoned run: {error}");
        }
    }
}

/// One line per step (status, attempts, time, rows, summary), then the job's outcome.
impl std::fmt::Display for RunReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{:<16} {:<10} {:>8} {:>8} {:>10} {:>12}  summary",
            "step", "status", "attempts", "time", "rows read", "rows written"
        )?;
        for step in &self.steps {
            writeln!(
                f,
                "{:<16} {:<10} {:>8} {:>8} {:>10} {:>12}  {}",
                step.step,
                step.status.as_str(),
                step.attempts,
                format!("{:.1}s", step.duration.as_secs_f64()),
                step.data.rows_read,
                step.data.rows_written,
                step.summary
                    .as_deref()
                    .or(step.error.as_deref())
                    .unwrap_or("")
            )?;
        }
        write!(
            f,
            "job {} {} in {:.1}s (run {})",
            self.job,
            self.status,
            self.duration.as_secs_f64(),
            self.run_id
        )
    }
}

impl Report for RunReport {
    fn data_moved(&self) -> DataMoved {
        let mut data = DataMoved::default();
        for step in &self.steps {
            data.add(&step.data);
        }
        data
    }

    fn summary(&self) -> String {
        format!(
            "job {} {} in {:.1}s",
            self.job,
            self.status,
            self.duration.as_secs_f64()
        )
    }
}

impl IntoFuture for RunJob {
    type Output = Result<RunOutcome>;
    type IntoFuture = OperationFuture<Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

/// The `[[job]]` named `name`.
pub fn find_job<'p>(project: &'p Project, name: &str) -> Result<&'p JobConfig> {
    project
        .config
        .jobs
        .iter()
        .find(|j| j.name == name)
        .ok_or_else(|| Error::UnknownJob {
            name: name.to_string(),
            known: project.config.jobs.iter().map(|j| j.name.clone()).collect(),
        })
}

fn not_started(step: &StepConfig, why: &str) -> StepReport {
    StepReport {
        step: step.name.clone(),
        kind: step.action.kind().to_string(),
        status: RunStatus::Cancelled,
        attempts: 0,
        duration: Duration::ZERO,
        summary: None,
        error: Some(why.to_string()),
        data: DataMoved::default(),
    }
}

/// Renews `lease` every third of its time to live until `done`; on failure cancels
/// `lost` and returns why.
async fn keep_lease(
    leases: &Leases,
    lease: &mut Lease,
    done: &CancellationToken,
    lost: &CancellationToken,
) -> Result<()> {
    let interval = leases.ttl() / 3;
    loop {
        tokio::select! {
            _ = done.cancelled() => return Ok(()),
            _ = tokio::time::sleep(interval) => {}
        }
        if let Err(error) = leases.renew(lease).await {
            lost.cancel();
            return Err(error);
        }
    }
}
