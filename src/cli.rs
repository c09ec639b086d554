//! The command line's grammar: every command, argument and help text, as clap reads
//! them. What each command does is in the module named after it; `main` dispatches.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use lakescore_engine::config::{CorrectionPolicy, EngineMode, SchedulerAddress};
use lakescore_engine::sql::output::{Destination, OutputFormat};

use crate::logging;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  user error: bad arguments, project file, table name or SQL; the message says what to fix
  2  runtime failure: storage unreachable, I/O error, query execution failed
  3  a job run or freshness check ran and failed: a step failed, a table is stale";

/// lakescore: a batch scoring engine for the data lakehouse.
///
/// Lands extracts as versioned Delta tables, normalizes them with SQL, scores them with
/// explained predictions, and serves every table to SQL and BI tools.
#[derive(Debug, Parser)]
#[command(name = "lakescore", version, after_help = EXIT_CODES, max_term_width = 100)]
pub struct Cli {
    /// The project file (or its folder); by default the nearest lakescore.toml in the
    /// current folder or above.
    #[arg(long, global = true, value_name = "PATH")]
    pub project: Option<PathBuf>,

    /// How log lines on standard error are written (filter them with LAKESCORE_LOG, e.g.
    /// LAKESCORE_LOG=debug).
    #[arg(long, global = true, value_enum, default_value_t = logging::LogFormat::Text)]
    pub log_format: logging::LogFormat,

    /// Where transforms and scoring run: `local` (this process) or `ballista` (the
    /// cluster at --scheduler or [engine] scheduler). Overrides [engine] mode.
    #[arg(long, global = true, value_name = "MODE", value_parser = EngineMode::from_str)]
    pub engine: Option<EngineMode>,

    /// The Ballista scheduler, as df://HOST:PORT (or `standalone` for an in-process
    /// cluster). Overrides [engine] scheduler.
    #[arg(long, global = true, value_name = "URL", value_parser = SchedulerAddress::from_str)]
    pub scheduler: Option<SchedulerAddress>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build and run the demo: a sample project on generated CRM, ERP and usage extracts.
    ///
    /// Creates DIR with a project file and extracts for two days, lands them in a local
    /// lakehouse, and prints the tables and queries to try.
    #[command(args_conflicts_with_subcommands = true)]
    Demo {
        #[command(subcommand)]
        action: Option<DemoAction>,
        /// The demo project folder.
        #[arg(default_value = "lakescore-demo")]
        dir: PathBuf,
        /// Customers to generate (scales every extract).
        #[arg(long, default_value_t = 2000)]
        customers: u32,
        /// Random seed: the same seed gives the same data.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Rebuild an existing demo project from scratch.
        #[arg(long)]
        force: bool,
    },
    /// Create a new project: a commented lakescore.toml and an empty models/ folder.
    Init {
        /// The project folder (created if missing).
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Run SQL against the lakehouse, or open an interactive prompt when no query is given.
    ///
    /// Tables are named schema.name (e.g. raw.crm_accounts). Read an older state with
    /// table_at('raw.crm_accounts', 3) or table_at('raw.crm_accounts', TIMESTAMP '2026-01-01 00:00:00').
    Sql {
        /// The SQL to run; several statements may be separated by ';'.
        query: Option<String>,
        #[command(flatten)]
        output: OutputArgs,
        /// Show at most this many rows in table format (the rest are counted).
        #[arg(long, default_value_t = 1000, value_name = "N")]
        max_rows: usize,
    },
    /// Land the new files of the project's sources as Delta commits, exactly once.
    ///
    /// Each source's new files become one commit to its table; files landed before are
    /// skipped, bad rows go to quarantine.<schema>_<table>.
    Ingest {
        /// Sources to land (default: all).
        sources: Vec<String>,
    },
    /// Run the SQL models in models/ in dependency order, testing each result before it is
    /// committed.
    ///
    /// Every input table is pinned to its version at the start of the run. A model whose
    /// file and input versions are unchanged since its last commit is up to date and is
    /// skipped. A failing error-severity test leaves the model's table at its previous
    /// version; models reading it are skipped.
    Transform {
        /// Models to run, by name (file stem) or table (default: all).
        models: Vec<String>,
        /// Also run a selection: MODEL, downstream-of:MODEL or upstream-of:MODEL
        /// (repeatable).
        #[arg(long, value_name = "SELECTOR")]
        select: Vec<String>,
        /// Run models even when they are up to date.
        #[arg(long)]
        force: bool,
        /// Only list the models in run order with what they read; run nothing.
        #[arg(long)]
        list: bool,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Show what made a table version: the model run and its input table versions, down
    /// to the extract files of each landed batch.
    Lineage {
        /// The table, as schema.name or schema.name@VERSION (default: newest version).
        table: String,
        /// Print the lineage as JSON instead of a tree.
        #[arg(long)]
        json: bool,
    },
    /// Train a [[model]] on its training table and register a new version.
    ///
    /// Reads the training table at a pinned version, holds out rows by key hash, learns
    /// the preprocessing and the model, evaluates it, and stores the version under
    /// <root>/_models/NAME/VERSION. The first version becomes the champion.
    Train {
        /// The model's name in lakescore.toml.
        model: String,
    },
    /// Score a table version with a model version into a Delta table (default
    /// scored.MODEL), with explanations and lineage on every row.
    ///
    /// One commit per run; scoring the same input version with the same model version
    /// again adds nothing.
    Score {
        /// NAME (the champion), NAME@challenger or NAME:VERSION.
        model: String,
        /// The table to score, schema.name or schema.name@VERSION.
        #[arg(long, value_name = "TABLE")]
        input: String,
        /// The table to append predictions to (default scored.NAME).
        #[arg(long, value_name = "TABLE")]
        output: Option<String>,
    },
    /// Compare the data a model scores with the data it was trained on, per feature and
    /// for its predictions; record the metrics and request retraining when enough drifted.
    ///
    /// Numeric features: PSI, Kolmogorov-Smirnov, Wasserstein and Jensen-Shannon;
    /// categorical and boolean ones: chi-square, Jensen-Shannon, L-infinity and the share
    /// of unseen categories. Results go to monitoring.drift_metrics, a retrain request to
    /// monitoring.retrain_requests, the HTML report to <root>/_reports/drift/.
    Drift {
        /// NAME (the champion), NAME@challenger or NAME:VERSION.
        model: String,
        /// The current data: schema.name (newest version) or schema.name@VERSION. The
        /// model's online table (scored.NAME_online) compares the HTTP API's traffic.
        #[arg(long, value_name = "TABLE")]
        table: String,
        /// Only the rows whose time column is later than this version's commit.
        #[arg(long, value_name = "VERSION", conflicts_with = "window")]
        since: Option<u64>,
        /// Only the rows whose time column falls in this recent window, e.g. 7d or 36h.
        #[arg(long, value_name = "DURATION")]
        window: Option<String>,
        /// The timestamp column --since and --window filter on [default: _ingested_at, or
        /// scored_at on the model's online table].
        #[arg(long, value_name = "COLUMN")]
        time_column: Option<String>,
        /// Also write the HTML report to this file.
        #[arg(long, value_name = "PATH")]
        report: Option<PathBuf>,
    },
    /// Turn corrections from staff into a training set: training.MODEL_feedback, with the
    /// features each corrected prediction was made from, and realized metrics.
    ///
    /// Reads the feedback table ([model.feedback] table, default feedback.MODEL): one row
    /// per correction with prediction_id (or the model's key columns), the corrected label
    /// (default column corrected_label), corrected_by, corrected_at and optionally comment.
    /// The predictions corrected are those of scored.MODEL (batch) and scored.MODEL_online
    /// (the HTTP API). Corrections that name no known prediction go to
    /// quarantine.feedback_MODEL with the reason. Realized metrics per window go to monitoring.model_performance; a metric
    /// below its [model.monitoring] floor requests retraining.
    Feedback {
        /// The model's name in lakescore.toml.
        model: String,
        /// Which correction wins when a prediction was corrected more than once (default:
        /// [model.feedback] policy, else latest).
        #[arg(long, value_name = "latest|first|majority")]
        policy: Option<CorrectionPolicy>,
    },
    /// Train a challenger on the training table plus training.MODEL_feedback and promote
    /// it to champion only when it beats the champion on the same holdout rows.
    ///
    /// The metric and the margin are [model.retrain] metric and min_improvement. The
    /// decision and both metric sets go to ops.model_versions; pending rows of
    /// monitoring.retrain_requests are marked done.
    Retrain {
        /// The model's name in lakescore.toml.
        model: String,
        /// Retrain only when a retrain request is pending (what the retrain job step does).
        #[arg(long)]
        if_requested: bool,
    },
    /// Write a table version to a CSV, JSON-lines or Parquet file, locally or in object
    /// storage (s3://, gs://, az:// with the lakehouse's storage options).
    Export {
        /// The table, schema.name (newest version) or schema.name@VERSION.
        table: String,
        /// File format.
        #[arg(long, value_enum, default_value_t = FormatArg::Parquet)]
        format: FormatArg,
        /// The file to write: a path or a URI.
        #[arg(long, value_name = "PATH_OR_URI")]
        to: String,
    },
    /// Serve every table over the PostgreSQL wire protocol, for BI tools, psql and
    /// drivers, and on-demand predictions over HTTP.
    ///
    /// SQL: users and roles come from [[serve.user]] and [[serve.role]] (SCRAM-SHA-256
    /// passwords; each role reads the schemas and tables its `select` names); TLS from
    /// [serve] tls_cert and tls_key. Every statement is recorded in ops.query_log. The
    /// SQL listener starts when a [[serve.user]] exists or allow_anonymous is set.
    ///
    /// HTTP: starts with [serve.http] or --http; clients call it with a [[serve.token]].
    /// POST /v1/models/NAME/predict scores JSON rows with explanations and lineage;
    /// GET /v1/openapi.json describes every endpoint. Every prediction is kept in
    /// scored.<model>_online, every request in ops.request_log.
    ///
    /// Runs until Ctrl-C or SIGTERM.
    Serve {
        /// Listen for SQL on HOST:PORT instead of [serve] listen (default 127.0.0.1:5432).
        #[arg(long, value_name = "HOST:PORT")]
        listen: Option<String>,
        /// Serve the HTTP API on HOST:PORT (instead of [serve.http] listen).
        #[arg(long, value_name = "HOST:PORT")]
        http: Option<String>,
        /// Read a password from standard input and print its password_hash for
        /// [[serve.user]], instead of serving.
        #[arg(long, conflicts_with = "new_token")]
        hash_password: bool,
        /// Print a new random API token and its secret_sha256 for [[serve.token]],
        /// instead of serving.
        #[arg(long)]
        new_token: bool,
    },
    /// List, inspect and promote registered model versions.
    Models {
        #[command(subcommand)]
        action: ModelsAction,
    },
    /// Run a [[job]] once, now, in the foreground: its steps in order, with retries and
    /// time limits, recorded in ops.job_runs and ops.step_runs.
    ///
    /// Exits 0 when every step succeeded and 3 when the run failed, so cron, Airflow or any
    /// orchestrator can call it. A run already in progress elsewhere is never overlapped.
    Run {
        /// The job's name in lakescore.toml.
        job: String,
        /// Start at this step (resume a failed run), skipping the ones before it.
        #[arg(long, value_name = "STEP")]
        from: Option<String>,
    },
    /// Run every [[job]] with a schedule at its fire times, until Ctrl-C or SIGTERM.
    ///
    /// Several schedulers may run at once (on several machines): a lease in the lakehouse
    /// makes sure each fire runs once and runs of a job never overlap. The first signal
    /// lets running steps finish; a second cancels them.
    Scheduler,
    /// Run a process of a Ballista cluster that runs transforms and scoring
    /// (`--engine ballista`): a scheduler, or an executor.
    ///
    /// Start every process with the same project file (and the same lakescore version):
    /// they read the lakehouse it names, and know lakescore's functions and models.
    /// Ballista has no authentication: keep its ports on a private network.
    Ballista {
        #[command(subcommand)]
        action: BallistaAction,
    },
    /// List job runs from ops.job_runs, newest first, or the step attempts of one run.
    Runs {
        /// Only this job.
        job: Option<String>,
        /// Show the step attempts of this run id.
        #[arg(long, value_name = "RUN_ID")]
        run: Option<String>,
        /// Show at most this many runs.
        #[arg(long, default_value_t = 20, value_name = "N")]
        limit: usize,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Check the [freshness] rules: how old each table is and whether it lags its inputs.
    ///
    /// Exits 3 when a table is stale, after alerting the [freshness] on_stale targets.
    Check {
        /// Only these tables (default: every table a rule covers).
        tables: Vec<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// List every table: version, rows, files, size and last commit time.
    Tables {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Delete the data files no table version within the retention window needs (left by
    /// overwrites, merges and killed runs) and `_staging/` leftovers.
    ///
    /// Table versions do not change. Time travel to versions older than the window may
    /// fail afterwards, as their files are gone.
    Vacuum {
        /// Tables to vacuum, as schema.name (default: every table).
        tables: Vec<String>,
        /// Keep files younger than this (at least 1h).
        #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = humantime::parse_duration)]
        retain: Duration,
        /// Only list what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show a table's Delta history: version, time, operation, run id and inputs.
    History {
        /// The table, as schema.name.
        table: String,
        /// Show only the newest N commits.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        #[command(flatten)]
        output: OutputArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum BallistaAction {
    /// Start a scheduler: drivers (`--engine ballista`) send it plans, and it splits them
    /// into tasks for its executors. Runs until Ctrl-C or SIGTERM.
    Scheduler {
        /// Listen on HOST:PORT (0.0.0.0:50050 to accept executors from other machines).
        #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:50050")]
        listen: SocketAddr,
        /// The host name drivers and executors reach this scheduler by.
        #[arg(long, value_name = "HOST", default_value = "localhost")]
        external_host: String,
        /// How long an executor may stay silent before it counts as lost and its tasks
        /// run on the others.
        #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
        executor_timeout: Duration,
    },
    /// Start an executor for the scheduler at --scheduler (or [engine] scheduler): it runs
    /// tasks and serves their results. Runs until Ctrl-C or SIGTERM.
    Executor {
        /// Serve results (Arrow Flight) on HOST:PORT.
        #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:50051")]
        listen: SocketAddr,
        /// The port of the executor's task service.
        #[arg(long, value_name = "PORT", default_value_t = 50052)]
        grpc_port: u16,
        /// The host name the scheduler and other executors reach this one by (default:
        /// the listen address).
        #[arg(long, value_name = "HOST")]
        external_host: Option<String>,
        /// Tasks run at once (default: one per core).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        concurrent_tasks: Option<u32>,
        /// How often to tell the scheduler this executor is alive.
        #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
        heartbeat: Duration,
    },
}

#[derive(Debug, Subcommand)]
pub enum ModelsAction {
    /// Every version with its aliases and metrics.
    List {
        /// Only this model.
        model: Option<String>,
    },
    /// A version's manifest (features, preprocessing, metrics, profile) as JSON.
    Show {
        /// NAME (the champion), NAME@challenger or NAME:VERSION.
        model: String,
    },
    /// Point an alias at a version.
    Promote {
        /// The model.
        model: String,
        /// The version.
        version: u64,
        /// champion or challenger.
        #[arg(long, default_value = "champion")]
        alias: String,
    },
    /// Move the champion back to the version it had before.
    Rollback {
        /// The model.
        model: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DemoAction {
    /// Write one day of generated extracts (deterministic for a seed and day).
    Generate {
        /// Folder to write the extracts into.
        #[arg(long, default_value = "extracts")]
        out: PathBuf,
        /// Customers to generate.
        #[arg(long, default_value_t = 2000)]
        customers: u32,
        /// Day number, from 1; each day writes new files.
        #[arg(long, default_value_t = 1)]
        day: u32,
        /// Random seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = FormatArg::Table)]
    pub format: FormatArg,
    /// Write to this file instead of standard output (needed for parquet).
    #[arg(long, short = 'o', value_name = "PATH")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    /// Aligned text table
    Table,
    /// CSV with a header row
    Csv,
    /// JSON lines, one object per row
    Json,
    /// Apache Parquet file
    Parquet,
}

impl FormatArg {
    pub fn format(self) -> OutputFormat {
        match self {
            FormatArg::Table => OutputFormat::Table,
            FormatArg::Csv => OutputFormat::Csv,
            FormatArg::Json => OutputFormat::Json,
            FormatArg::Parquet => OutputFormat::Parquet,
        }
    }
}

impl OutputArgs {
    pub fn format(&self) -> OutputFormat {
        self.format.format()
    }

    pub fn destination(&self) -> Destination {
        match &self.output {
            Some(path) => Destination::File(path.clone()),
            None => Destination::Stdout,
        }
    }
}
