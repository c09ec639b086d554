//! `[[job]]`, `[scheduler]`, `[freshness]` and `[[alert]]` in the project file: which
//! pipelines run, when, with which retries and time limits, which tables must stay fresh,
//! and where alerts go.
//!
//! Everything is checked when the file is read (cron expressions, time zones, durations,
//! step shapes, alert names), so a mistake is an error naming the key and the line, not a
//! failure at 3 a.m. Running the jobs belongs to the jobs crate.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use indexmap::IndexMap;
use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

use super::EnvString;

/// One `[[job]]`: an ordered list of steps, run on a schedule or on demand.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    /// The job's name, used by `lakescore run NAME` and in `ops.job_runs`.
    pub name: String,
    /// When `lakescore scheduler` runs it: a five-field cron expression (minute hour
    /// day-of-month month day-of-week) or `@hourly`, `@daily`...; without one the job runs
    /// only on demand.
    pub schedule: Option<Schedule>,
    /// The time zone the schedule is read in (IANA name, default UTC).
    #[serde(default)]
    pub timezone: TimeZoneName,
    /// Whether a run missed while no scheduler was running is made up once at start-up
    /// (`true`, the default) or skipped.
    #[serde(default = "default_catch_up")]
    pub catch_up: bool,
    /// How often a failed step is tried again (default 0).
    #[serde(default)]
    pub retries: u32,
    /// The wait before the first retry; each further retry waits twice as long.
    #[serde(default = "default_retry_delay", with = "duration_text")]
    pub retry_delay: Duration,
    /// The most the whole job may take; the running step is cancelled when it is reached.
    #[serde(default, with = "optional_duration_text")]
    pub timeout: Option<Duration>,
    /// The most one step attempt may take, unless the step sets its own `timeout`.
    #[serde(default, with = "optional_duration_text")]
    pub step_timeout: Option<Duration>,
    /// `[[alert]]` names told when a run fails.
    #[serde(default)]
    pub on_failure: Vec<String>,
    /// `[[alert]]` names told when a drift check asks for retraining.
    #[serde(default)]
    pub on_drift: Vec<String>,
    /// The steps, run in order; a step runs only when the one before it succeeded.
    pub steps: Vec<StepConfig>,
}

fn default_catch_up() -> bool {
    true
}

fn default_retry_delay() -> Duration {
    Duration::from_secs(30)
}

/// One step of a job.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawStep")]
pub struct StepConfig {
    /// The step's name in run history and for `--from` (default: its kind).
    pub name: String,
    /// What it does.
    pub action: StepAction,
    /// The most one attempt may take (default: the job's `step_timeout`).
    pub timeout: Option<Duration>,
    /// Retries of this step (default: the job's `retries`).
    pub retries: Option<u32>,
}

/// What a step does: one lakescore operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepAction {
    /// Land new extract files (`{ ingest = ["crm_accounts"] }`; `[]` or `true`: every source).
    Ingest {
        /// Source names; empty means all.
        sources: Vec<String>,
    },
    /// Run SQL models (`{ transform = ["downstream-of:customers"] }`; `[]` or `true`: all).
    Transform {
        /// Model names or selectors; empty means all.
        models: Vec<String>,
        /// Run models even when up to date.
        force: bool,
    },
    /// Train a `[[model]]` and register a version (`{ train = "churn_risk" }`).
    Train {
        /// The model's name.
        model: String,
    },
    /// Score a table (`{ score = "churn_risk", input = "curated.customers" }`).
    Score {
        /// NAME, NAME@alias or NAME:VERSION.
        model: String,
        /// The table scored.
        input: String,
        /// The table written (default `scored.NAME`).
        output: Option<String>,
    },
    /// Compare a model's current data with its training data
    /// (`{ drift = "churn_risk", table = "curated.customers" }`).
    Drift {
        /// NAME, NAME@alias or NAME:VERSION.
        model: String,
        /// The table whose newest version is compared, `schema.name`.
        table: String,
    },
    /// Build a model's feedback training set and its realized metrics
    /// (`{ feedback = "churn_risk" }`).
    Feedback {
        /// The model's name.
        model: String,
    },
    /// Train a challenger on the training table plus feedback and promote it when it wins
    /// (`{ retrain = "churn_risk" }`: only when a retrain request is pending; add
    /// `force = true` to retrain every run).
    Retrain {
        /// The model's name.
        model: String,
        /// Retrain even when no request is pending.
        force: bool,
    },
    /// Check `[freshness]` rules (`{ check = [] }` or `true`: every rule; or the tables to check).
    Check {
        /// Tables to check; empty means every table with a rule.
        tables: Vec<String>,
    },
    /// Delete files no table version within the window needs, and `_staging/` leftovers
    /// (`{ vacuum = true }` or the tables; `retain = "7d"` by default).
    Vacuum {
        /// Tables to vacuum; empty means every table.
        tables: Vec<String>,
        /// Files younger than this are kept.
        retain: Option<Duration>,
    },
}

impl StepAction {
    /// The step kind's name, as written in the project file.
    pub fn kind(&self) -> &'static str {
        match self {
            StepAction::Ingest { .. } => "ingest",
            StepAction::Transform { .. } => "transform",
            StepAction::Train { .. } => "train",
            StepAction::Score { .. } => "score",
            StepAction::Drift { .. } => "drift",
            StepAction::Feedback { .. } => "feedback",
            StepAction::Retrain { .. } => "retrain",
            StepAction::Check { .. } => "check",
            StepAction::Vacuum { .. } => "vacuum",
        }
    }
}

/// A step as written: exactly one kind key plus its arguments.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    name: Option<String>,
    ingest: Option<Names>,
    transform: Option<Names>,
    train: Option<String>,
    score: Option<String>,
    drift: Option<String>,
    feedback: Option<String>,
    retrain: Option<String>,
    check: Option<Names>,
    vacuum: Option<Names>,
    #[serde(default, with = "optional_duration_text")]
    retain: Option<Duration>,
    input: Option<String>,
    table: Option<String>,
    output: Option<String>,
    force: Option<bool>,
    #[serde(default, with = "optional_duration_text")]
    timeout: Option<Duration>,
    retries: Option<u32>,
}

const STEP_KINDS: &str =
    "ingest, transform, train, score, drift, feedback, retrain, check or vacuum";

impl TryFrom<RawStep> for StepConfig {
    type Error = String;

    fn try_from(raw: RawStep) -> Result<Self, String> {
        let kinds: Vec<&str> = [
            ("ingest", raw.ingest.is_some()),
            ("transform", raw.transform.is_some()),
            ("train", raw.train.is_some()),
            ("score", raw.score.is_some()),
            ("drift", raw.drift.is_some()),
            ("feedback", raw.feedback.is_some()),
            ("retrain", raw.retrain.is_some()),
            ("check", raw.check.is_some()),
            ("vacuum", raw.vacuum.is_some()),
        ]
        .into_iter()
        .filter_map(|(kind, present)| present.then_some(kind))
        .collect();
        if kinds.len() != 1 {
            let found = if kinds.is_empty() {
                String::from("none")
            } else {
                kinds.join(" and ")
            };
            return Err(format!(
                "a step names exactly one of {STEP_KINDS}, e.g. {{ transform = [] }}; found {found}"
            ));
        }
        let misplaced = |key: &str, present: bool, allowed: &str| {
            if present {
                Err(format!("`{key}` belongs to {allowed} steps only"))
            } else {
                Ok(())
            }
        };
        let is_score = raw.score.is_some();
        misplaced("input", raw.input.is_some() && !is_score, "score")?;
        misplaced("output", raw.output.is_some() && !is_score, "score")?;
        misplaced("table", raw.table.is_some() && raw.drift.is_none(), "drift")?;
        misplaced(
            "retain",
            raw.retain.is_some() && raw.vacuum.is_none(),
            "vacuum",
        )?;
        misplaced(
            "force",
            raw.force.is_some() && raw.transform.is_none() && raw.retrain.is_none(),
            "transform and retrain",
        )?;
        let action = if let Some(names) = raw.ingest {
            StepAction::Ingest { sources: names.0 }
        } else if let Some(names) = raw.transform {
            StepAction::Transform {
                models: names.0,
                force: raw.force.unwrap_or(false),
            }
        } else if let Some(model) = raw.train {
            StepAction::Train { model }
        } else if let Some(model) = raw.score {
            let input = raw.input.ok_or_else(|| {
                format!("score step '{model}' needs input = \"schema.table\", the table to score")
            })?;
            StepAction::Score {
                model,
                input,
                output: raw.output,
            }
        } else if let Some(model) = raw.drift {
            let table = raw.table.ok_or_else(|| {
                format!("drift step '{model}' needs table = \"schema.table\", the data to compare")
            })?;
            StepAction::Drift { model, table }
        } else if let Some(model) = raw.feedback {
            StepAction::Feedback { model }
        } else if let Some(model) = raw.retrain {
            StepAction::Retrain {
                model,
                force: raw.force.unwrap_or(false),
            }
        } else if let Some(names) = raw.vacuum {
            StepAction::Vacuum {
                tables: names.0,
                retain: raw.retain,
            }
        } else {
            StepAction::Check {
                tables: raw.check.map(|names| names.0).unwrap_or_default(),
            }
        };
        Ok(StepConfig {
            name: raw.name.unwrap_or_else(|| action.kind().to_string()),
            action,
            timeout: raw.timeout,
            retries: raw.retries,
        })
    }
}

/// A list of names written as `true` (all), `"one"` or `["a", "b"]` (`[]`: all).
struct Names(Vec<String>);

impl<'de> Deserialize<'de> for Names {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NamesVisitor;
        impl<'de> Visitor<'de> for NamesVisitor {
            type Value = Names;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true (everything), a name, or a list of names")
            }
            fn visit_bool<E: de::Error>(self, all: bool) -> Result<Names, E> {
                if all {
                    Ok(Names(Vec::new()))
                } else {
                    Err(E::custom(
                        "`false` would run nothing: remove the step instead",
                    ))
                }
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<Names, E> {
                Ok(Names(vec![name.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Names, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    names.push(name);
                }
                Ok(Names(names))
            }
        }
        deserializer.deserialize_any(NamesVisitor)
    }
}

/// A cron schedule as written in the project file, checked when read.
#[derive(Clone)]
pub struct Schedule {
    text: String,
    cron: Cron,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?})", self.text)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Schedule {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let fields = text.split_whitespace().count();
        if !text.trim_start().starts_with('@') && fields != 5 {
            return Err(format!(
                "schedule \"{text}\" has {fields} fields; write five: minute hour day-of-month \
                 month day-of-week, e.g. \"0 3 * * *\" for 03:00 every day"
            ));
        }
        let cron = Cron::from_str(text)
            .map_err(|error| format!("schedule \"{text}\" is not a cron expression: {error}"))?;
        Ok(Self {
            text: text.to_string(),
            cron,
        })
    }
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(de::Error::custom)
    }
}

impl Schedule {
    /// The first fire time strictly after `after`, reading the expression in `zone`.
    ///
    /// Daylight-saving changes follow Vixie cron: a local time that occurs twice fires
    /// once, at its first occurrence; a local time skipped by the clock fires at the first
    /// instant after the gap.
    pub fn next_after(&self, after: DateTime<Utc>, zone: Tz) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&after.with_timezone(&zone), false)
            .ok()
            .map(|fire| fire.with_timezone(&Utc))
    }

    /// The last fire time at or before `at`, reading the expression in `zone`.
    pub fn last_at_or_before(&self, at: DateTime<Utc>, zone: Tz) -> Option<DateTime<Utc>> {
        self.cron
            .find_previous_occurrence(&at.with_timezone(&zone), true)
            .ok()
            .map(|fire| fire.with_timezone(&Utc))
    }
}

/// An IANA time zone name such as `Europe/Berlin` (default `UTC`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeZoneName(pub Tz);

impl Default for TimeZoneName {
    fn default() -> Self {
        Self(Tz::UTC)
    }
}

impl<'de> Deserialize<'de> for TimeZoneName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse::<Tz>().map(Self).map_err(|_| {
            de::Error::custom(format!(
                "unknown time zone \"{name}\": use an IANA name such as \"Europe/Berlin\" or \"UTC\""
            ))
        })
    }
}

/// `[scheduler]`: how `lakescore scheduler` coordinates with other schedulers.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    /// How long a job's lease lasts without renewal; a scheduler that dies holding it
    /// blocks the job for at most this long. The holder renews it every third of this.
    #[serde(with = "duration_text")]
    pub lease_ttl: Duration,
    /// How often the scheduler looks at the clock and the project's jobs.
    #[serde(with = "duration_text")]
    pub poll_interval: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_secs(60),
            poll_interval: Duration::from_secs(5),
        }
    }
}

/// `[freshness]`: how old tables may get before `check` fails.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreshnessConfig {
    /// `[[alert]]` names told when `lakescore check` finds a stale table.
    #[serde(default)]
    pub on_stale: Vec<String>,
    /// Rules per table: the key is `schema.name` or a pattern such as `raw.*`.
    #[serde(default)]
    pub tables: IndexMap<String, FreshnessRule>,
}

/// How fresh one table (or every table matching a pattern) must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreshnessRule {
    /// The table's newest commit may be at most this old, e.g. `"26h"`.
    #[serde(default, with = "optional_duration_text")]
    pub max_age: Option<Duration>,
    /// An input table may have had a newer version than the one this table was computed
    /// from for at most this long, e.g. `"1h"`: the table is stale when it was not
    /// refreshed after its inputs changed.
    #[serde(default, with = "optional_duration_text")]
    pub max_input_lag: Option<Duration>,
}

/// One `[[alert]]`: a webhook told about failed runs, stale tables and drift.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertConfig {
    /// The name jobs refer to in `on_failure`, `on_drift` and `[freshness] on_stale`.
    pub name: String,
    /// The URL a JSON body is POSTed to (Slack-compatible: it has a `text` field); usually
    /// `"${SLACK_WEBHOOK_URL}"`, since the URL is a secret.
    pub webhook: EnvString,
    /// How long one delivery may take before it is given up (default 10s).
    #[serde(default = "default_alert_timeout", with = "duration_text")]
    pub timeout: Duration,
}

fn default_alert_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Durations written as text: `"90s"`, `"15m"`, `"26h"`, `"1h 30m"`.
pub(super) mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, de};

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text).map_err(|error| {
            de::Error::custom(format!(
                "\"{text}\" is not a duration ({error}); write e.g. \"90s\", \"15m\" or \"26h\""
            ))
        })
    }
}

/// Optional durations written as text.
pub(super) mod optional_duration_text {
    use std::time::Duration;

    use serde::Deserializer;

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        super::duration_text::deserialize(deserializer).map(Some)
    }
}

/// Checks that fit no single entry: unique names, known alert names, unique step names.
pub(super) fn check_jobs(
    jobs: &[JobConfig],
    alerts: &[AlertConfig],
    freshness: &FreshnessConfig,
) -> Result<(), String> {
    let mut alert_names = std::collections::HashSet::new();
    for alert in alerts {
        if !alert_names.insert(alert.name.as_str()) {
            return Err(format!("[[alert]] name '{}' is used twice", alert.name));
        }
    }
    let known_alert = |owner: &str, key: &str, name: &String| {
        if alert_names.contains(name.as_str()) {
            Ok(())
        } else {
            Err(format!(
                "{owner} {key} names alert '{name}', but no [[alert]] has that name"
            ))
        }
    };
    for name in &freshness.on_stale {
        known_alert("[freshness]", "on_stale", name)?;
    }
    for (pattern, rule) in &freshness.tables {
        if rule.max_age.is_none() && rule.max_input_lag.is_none() {
            return Err(format!(
                "[freshness.tables] \"{pattern}\" needs max_age or max_input_lag"
            ));
        }
        glob::Pattern::new(pattern).map_err(|error| {
            format!("[freshness.tables] \"{pattern}\" is not a pattern: {error}")
        })?;
    }
    let mut job_names = std::collections::HashSet::new();
    for job in jobs {
        if !job_names.insert(job.name.as_str()) {
            return Err(format!("[[job]] name '{}' is used twice", job.name));
        }
        let owner = format!("[[job]] '{}'", job.name);
        for name in &job.on_failure {
            known_alert(&owner, "on_failure", name)?;
        }
        for name in &job.on_drift {
            known_alert(&owner, "on_drift", name)?;
        }
        if job.steps.is_empty() {
            return Err(format!("{owner} has no steps"));
        }
        let mut step_names = std::collections::HashSet::new();
        for step in &job.steps {
            if !step_names.insert(step.name.as_str()) {
                return Err(format!(
                    "{owner} has two steps named '{}': give each a name = \"...\"",
                    step.name
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProjectConfig;
    use chrono::TimeZone;

    fn local_time(zone: Tz, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> Option<DateTime<Utc>> {
        zone.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
    }

    fn parse(extra: &str) -> Result<ProjectConfig, String> {
        ProjectConfig::parse(&format!("[project]\nname = \"p\"\n{extra}"))
    }

    const JOB: &str = r#"
[[alert]]
name = "ops"
webhook = "http://127.0.0.1:9/hook"

[[job]]
name = "nightly"
schedule = "0 3 * * *"
timezone = "Europe/Berlin"
retries = 2
retry_delay = "5s"
step_timeout = "30m"
on_failure = ["ops"]
steps = [
  { ingest = true },
  { transform = ["downstream-of:customers"], force = true },
  { score = "churn_risk", input = "curated.customers", timeout = "10m" },
  { check = [] },
]
"#;

    #[test]
    fn a_job_reads_with_its_steps() {
        let config = parse(JOB).unwrap();
        let job = &config.jobs[0];
        assert_eq!(job.timezone.0, chrono_tz::Europe::Berlin);
        assert_eq!(job.retry_delay, Duration::from_secs(5));
        assert_eq!(job.step_timeout, Some(Duration::from_secs(1800)));
        let names: Vec<&str> = job.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["ingest", "transform", "score", "check"]);
        assert_eq!(
            job.steps[1].action,
            StepAction::Transform {
                models: vec!["downstream-of:customers".into()],
                force: true
            }
        );
        assert_eq!(
            job.steps[2].action,
            StepAction::Score {
                model: "churn_risk".into(),
                input: "curated.customers".into(),
                output: None
            }
        );
        assert_eq!(job.steps[2].timeout, Some(Duration::from_secs(600)));
        assert!(job.catch_up);
    }

    #[test]
    fn step_mistakes_name_the_line() {
        let two_kinds = JOB.replace("{ check = [] }", "{ check = [], train = \"m\" }");
        let error = parse(&two_kinds).unwrap_err();
        assert!(error.contains("line 16"), "{error}");
        assert!(error.contains("found train and check"), "{error}");
        let typo = JOB.replace("{ check = [] }", "{ chek = [] }");
        let error = parse(&typo).unwrap_err();
        assert!(error.contains("unknown field `chek`"), "{error}");
        let no_input = JOB.replace(", input = \"curated.customers\"", "");
        let error = parse(&no_input).unwrap_err();
        assert!(error.contains("needs input"), "{error}");
        let misplaced = JOB.replace("{ check = [] }", "{ check = [], retain = \"1d\" }");
        let error = parse(&misplaced).unwrap_err();
        assert!(
            error.contains("`retain` belongs to vacuum steps only"),
            "{error}"
        );
    }

    #[test]
    fn a_vacuum_step_reads_its_tables_and_window() {
        let vacuum = JOB.replace(
            "{ check = [] }",
            "{ vacuum = [\"raw.orders\"], retain = \"2d\" }",
        );
        let config = parse(&vacuum).unwrap();
        assert_eq!(
            config.jobs[0].steps[3].action,
            StepAction::Vacuum {
                tables: vec!["raw.orders".into()],
                retain: Some(Duration::from_secs(2 * 24 * 3600)),
            }
        );
    }

    #[test]
    fn schedule_timezone_duration_and_alert_mistakes_are_explained() {
        let error = parse(&JOB.replace("0 3 * * *", "0 3 * *")).unwrap_err();
        assert!(error.contains("has 4 fields; write five"), "{error}");
        let error = parse(&JOB.replace("0 3 * * *", "0 25 * * *")).unwrap_err();
        assert!(error.contains("not a cron expression"), "{error}");
        let error = parse(&JOB.replace("Europe/Berlin", "Europe/Berlni")).unwrap_err();
        assert!(
            error.contains("unknown time zone \"Europe/Berlni\""),
            "{error}"
        );
        let error = parse(&JOB.replace("\"5s\"", "\"5 sec onds\"")).unwrap_err();
        assert!(error.contains("is not a duration"), "{error}");
        let error =
            parse(&JOB.replace("on_failure = [\"ops\"]", "on_failure = [\"pager\"]")).unwrap_err();
        assert!(error.contains("no [[alert]] has that name"), "{error}");
        let twice = JOB.replace("{ check = [] }", "{ check = [] }, { check = true }");
        let error = parse(&twice).unwrap_err();
        assert!(error.contains("two steps named 'check'"), "{error}");
    }

    #[test]
    fn next_fire_times_follow_the_local_clock_across_dst() {
        let berlin = chrono_tz::Europe::Berlin;
        let daily: Schedule = "30 2 * * *".parse().unwrap();
        // 2026-03-29: clocks jump from 02:00 to 03:00 in Berlin; 02:30 does not exist and
        // fires at the first instant after the gap, 03:00 CEST (01:00 UTC).
        let before = local_time(berlin, 2026, 3, 28, 12, 0).unwrap();
        let fire = daily.next_after(before, berlin).unwrap();
        assert_eq!(fire.to_rfc3339(), "2026-03-29T01:00:00+00:00");
        let next = daily.next_after(fire, berlin).unwrap();
        assert_eq!(next.to_rfc3339(), "2026-03-30T00:30:00+00:00");
        // 2026-10-25: 02:00-03:00 happens twice; 02:30 fires once, at the first (CEST).
        let before = local_time(berlin, 2026, 10, 24, 12, 0).unwrap();
        let fire = daily.next_after(before, berlin).unwrap();
        assert_eq!(fire.to_rfc3339(), "2026-10-25T00:30:00+00:00");
        let next = daily.next_after(fire, berlin).unwrap();
        assert_eq!(next.to_rfc3339(), "2026-10-26T01:30:00+00:00");
        // Winter: 03:00 Berlin is 02:00 UTC; summer: 01:00 UTC.
        let nightly: Schedule = "0 3 * * *".parse().unwrap();
        let winter = local_time(berlin, 2026, 1, 10, 4, 0).unwrap();
        assert_eq!(
            nightly.next_after(winter, berlin).unwrap().to_rfc3339(),
            "2026-01-11T02:00:00+00:00"
        );
        assert_eq!(
            nightly
                .last_at_or_before(winter, berlin)
                .unwrap()
                .to_rfc3339(),
            "2026-01-10T02:00:00+00:00"
        );
    }

    #[test]
    fn every_minute_and_aliases_parse() {
        let minutely: Schedule = "* * * * *".parse().unwrap();
        let at = local_time(Tz::UTC, 2026, 5, 1, 10, 7).unwrap();
        assert_eq!(
            minutely.next_after(at, Tz::UTC).unwrap().to_rfc3339(),
            "2026-05-01T10:08:00+00:00"
        );
        let hourly: Schedule = "@hourly".parse().unwrap();
        assert_eq!(
            hourly.next_after(at, Tz::UTC).unwrap().to_rfc3339(),
            "2026-05-01T11:00:00+00:00"
        );
    }

    #[test]
    fn freshness_rules_need_a_limit() {
        let config = parse("[freshness.tables]\n\"raw.*\" = { max_age = \"26h\" }\n").unwrap();
        assert_eq!(
            config.freshness.tables["raw.*"].max_age,
            Some(Duration::from_secs(26 * 3600))
        );
        let error = parse("[freshness.tables]\n\"raw.*\" = {}\n").unwrap_err();
        assert!(error.contains("needs max_age or max_input_lag"), "{error}");
    }
}
