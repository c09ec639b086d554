//! The `lakescore` command line: parses arguments, calls the engine crates, prints results.

mod demo;
mod drift;
mod feedback;
mod ingest;
mod jobs;
mod logging;
mod models;
mod progress;
mod repl;
mod serve;
mod transform;
mod vacuum;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};
use lakescore_engine::config::CorrectionPolicy;
use lakescore_engine::datafusion::sql::parser::Statement;
use lakescore_engine::inspect::{
    history_batch, list_table_summaries, summaries_batch, table_history,
};
use lakescore_engine::output::{Destination, OutputFormat, write_batches, write_results};
use lakescore_engine::vacuum::VacuumOptions;
use lakescore_engine::{Lakehouse, Project, SqlSession, TableName};
use lakescore_sql::dag::Selector;

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
struct Cli {
    /// The project file (or its folder); by default the nearest lakescore.toml in the
    /// current folder or above.
    #[arg(long, global = true, value_name = "PATH")]
    project: Option<PathBuf>,

    /// How log lines on standard error are written (filter them with LAKESCORE_LOG, e.g.
    /// LAKESCORE_LOG=debug).
    #[arg(long, global = true, value_enum, default_value_t = logging::LogFormat::Text)]
    log_format: logging::LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
        /// The current data: schema.name (newest version) or schema.name@VERSION.
        #[arg(long, value_name = "TABLE")]
        table: String,
        /// Only the rows whose time column is later than this version's commit.
        #[arg(long, value_name = "VERSION", conflicts_with = "window")]
        since: Option<u64>,
        /// Only the rows whose time column falls in this recent window, e.g. 7d or 36h.
        #[arg(long, value_name = "DURATION")]
        window: Option<String>,
        /// The timestamp column --since and --window filter on.
        #[arg(long, default_value = "_ingested_at", value_name = "COLUMN")]
        time_column: String,
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
    /// Corrections that name no known prediction go to quarantine.feedback_MODEL with the
    /// reason. Realized metrics per window go to monitoring.model_performance; a metric
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
    /// Serve every table over the PostgreSQL wire protocol, for BI tools, psql and drivers.
    ///
    /// Users and roles come from [[serve.user]] and [[serve.role]] (SCRAM-SHA-256
    /// passwords; each role reads the schemas and tables its `select` names); TLS from
    /// [serve] tls_cert and tls_key. Every statement is recorded in ops.query_log. Runs
    /// until Ctrl-C or SIGTERM.
    Serve {
        /// Listen on HOST:PORT instead of [serve] listen (default 127.0.0.1:5432).
        #[arg(long, value_name = "HOST:PORT")]
        listen: Option<String>,
        /// Read a password from standard input and print its password_hash for
        /// [[serve.user]], instead of serving.
        #[arg(long)]
        hash_password: bool,
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
        retain: std::time::Duration,
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
enum ModelsAction {
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
enum DemoAction {
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
struct OutputArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = FormatArg::Table)]
    format: FormatArg,
    /// Write to this file instead of standard output (needed for parquet).
    #[arg(long, short = 'o', value_name = "PATH")]
    output: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FormatArg {
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
    fn format(self) -> OutputFormat {
        match self {
            FormatArg::Table => OutputFormat::Table,
            FormatArg::Csv => OutputFormat::Csv,
            FormatArg::Json => OutputFormat::Json,
            FormatArg::Parquet => OutputFormat::Parquet,
        }
    }
}

impl OutputArgs {
    fn format(&self) -> OutputFormat {
        self.format.format()
    }

    fn destination(&self) -> Destination {
        match &self.output {
            Some(path) => Destination::File(path.clone()),
            None => Destination::Stdout,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(exit_code(&error))
        }
    }
}

/// 1 for mistakes the user can fix, 2 for runtime failures, 3 for failed runs and checks.
fn exit_code(error: &anyhow::Error) -> u8 {
    if let Some(jobs) = error.downcast_ref::<lakescore_jobs::Error>() {
        return match jobs {
            lakescore_jobs::Error::RunFailed { .. } | lakescore_jobs::Error::Stale { .. } => 3,
            other if other.is_user_error() => 1,
            _ => 2,
        };
    }
    let user_error = if let Some(engine) = error.downcast_ref::<lakescore_engine::Error>() {
        engine.is_user_error()
    } else if let Some(connectors) = error.downcast_ref::<lakescore_connectors::Error>() {
        connectors.is_user_error()
    } else if let Some(sql) = error.downcast_ref::<lakescore_sql::Error>() {
        sql.is_user_error()
    } else {
        false
    };
    if user_error { 1 } else { 2 }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let project = || -> anyhow::Result<Project> {
        let cwd = std::env::current_dir()?;
        Ok(Project::discover(cli.project.as_deref(), &cwd)?)
    };
    match &cli.command {
        Command::Init { dir } => init(dir),
        Command::Demo {
            action:
                Some(DemoAction::Generate {
                    out,
                    customers,
                    day,
                    seed,
                }),
            ..
        } => {
            let generation = demo::Generation {
                customers: *customers,
                day: *day,
                seed: *seed,
            };
            let generated = demo::generate(out, generation)?;
            for file in &generated.files {
                println!("{}", file.display());
            }
            Ok(())
        }
        Command::Demo {
            action: None,
            dir,
            customers,
            seed,
            force,
        } => {
            let options = demo::DemoOptions {
                dir: dir.clone(),
                customers: *customers,
                seed: *seed,
                force: *force,
            };
            demo::run(&options).await
        }
        Command::Sql {
            query,
            output,
            max_rows,
        } => {
            let project = project()?;
            let session = SqlSession::builder(open_lakehouse(&project)?)
                .functions(project.config.functions.clone())
                .build()
                .await?;
            match query {
                Some(sql) => {
                    let statements = session.parse(sql)?;
                    if statements.len() > 1 && output.output.is_some() {
                        anyhow::bail!(lakescore_engine::Error::Usage(format!(
                            "--output takes the result of one statement, but {} were given",
                            statements.len()
                        )));
                    }
                    run_statements(
                        &session,
                        statements,
                        output.format(),
                        &output.destination(),
                        *max_rows,
                    )
                    .await
                }
                None => repl::run(session, &project, *max_rows).await,
            }
        }
        Command::Ingest { sources } => {
            let project = project()?;
            let lakehouse = open_lakehouse(&project)?;
            ingest::run(&project, lakehouse, sources.clone()).await
        }
        Command::Transform {
            models,
            select,
            force,
            list,
            output,
        } => {
            let project = project()?;
            let lakehouse = open_lakehouse(&project)?;
            let selectors: Vec<Selector> = models
                .iter()
                .map(|name| Selector::Model(name.clone()))
                .chain(select.iter().map(|s| Selector::parse(s)))
                .collect();
            if *list {
                transform::list(
                    &project,
                    lakehouse,
                    &selectors,
                    output.format(),
                    &output.destination(),
                )
                .await
            } else {
                transform::run(&project, lakehouse, selectors, *force).await
            }
        }
        Command::Lineage { table, json } => {
            let project = project()?;
            let lakehouse = open_lakehouse(&project)?;
            transform::print_lineage(&project, lakehouse, table, *json).await
        }
        Command::Train { model } => {
            let project = project()?;
            let lakehouse = open_lakehouse(&project)?;
            models::train(&project, lakehouse, model).await
        }
        Command::Score {
            model,
            input,
            output,
        } => {
            let project = project()?;
            let lakehouse = open_lakehouse(&project)?;
            models::score(&project, lakehouse, model, input, output.clone()).await
        }
        Command::Drift {
            model,
            table,
            since,
            window,
            time_column,
            report,
        } => {
            let project = project()?;
            let lakehouse = open_lakehouse(&project)?;
            let request = drift::DriftRequest {
                model: model.clone(),
                table: table.clone(),
                since: *since,
                window: window.clone(),
                time_column: time_column.clone(),
                report: report.clone(),
            };
            drift::run(&project, lakehouse, request).await
        }
        Command::Feedback { model, policy } => {
            let project = project()?;
            let lakehouse = open_lakehouse(&project)?;
            feedback::feedback(&project, lakehouse, model, *policy).await
        }
        Command::Retrain {
            model,
            if_requested,
        } => {
            let project = project()?;
            let lakehouse = open_lakehouse(&project)?;
            feedback::retrain(&project, lakehouse, model, *if_requested).await
        }
        Command::Export { table, format, to } => {
            let lakehouse = open_lakehouse(&project()?)?;
            let report =
                lakescore_engine::export::export(lakehouse, table, format.format(), to).await?;
            println!(
                "{}@{}: {} rows -> {}",
                report.table.0, report.table.1, report.rows, report.destination
            );
            Ok(())
        }
        Command::Serve {
            listen,
            hash_password,
        } => {
            if *hash_password {
                return serve::print_password_hash();
            }
            let project = project()?;
            let lakehouse = open_lakehouse(&project)?;
            serve::run(project, lakehouse, listen.clone()).await
        }
        Command::Models { action } => {
            let lakehouse = open_lakehouse(&project()?)?;
            match action {
                ModelsAction::List { model } => models::list(lakehouse, model.as_deref()).await,
                ModelsAction::Show { model } => models::show(lakehouse, model).await,
                ModelsAction::Promote {
                    model,
                    version,
                    alias,
                } => models::promote(lakehouse, model, *version, alias).await,
                ModelsAction::Rollback { model } => models::rollback(lakehouse, model).await,
            }
        }
        Command::Run { job, from } => {
            let project = project()?;
            let lakehouse = open_lakehouse(&project)?;
            jobs::run(&project, lakehouse, job, from.clone()).await
        }
        Command::Scheduler => {
            let project = project()?;
            let lakehouse = open_lakehouse(&project)?;
            jobs::scheduler(project, lakehouse).await
        }
        Command::Runs {
            job,
            run,
            limit,
            output,
        } => {
            let project = project()?;
            let lakehouse = open_lakehouse(&project)?;
            jobs::runs(
                &project,
                lakehouse,
                job.as_deref(),
                run.as_deref(),
                *limit,
                output.format(),
                &output.destination(),
            )
            .await
        }
        Command::Check { tables, output } => {
            let project = project()?;
            let lakehouse = open_lakehouse(&project)?;
            jobs::check(
                &project,
                lakehouse,
                tables,
                output.format(),
                &output.destination(),
            )
            .await
        }
        Command::Tables { output } => {
            let lakehouse = open_lakehouse(&project()?)?;
            write_table_listing(&lakehouse, output.format(), &output.destination()).await
        }
        Command::Vacuum {
            tables,
            retain,
            dry_run,
        } => {
            let lakehouse = open_lakehouse(&project()?)?;
            let options = VacuumOptions::for_tables(tables, *retain, *dry_run)?;
            vacuum::run(&lakehouse, &options).await
        }
        Command::History {
            table,
            limit,
            output,
        } => {
            let lakehouse = open_lakehouse(&project()?)?;
            let name = TableName::parse(table)?;
            let entries = table_history(&lakehouse, &name, *limit).await?;
            let (schema, batch) = history_batch(&entries)?;
            write_batches(schema, vec![batch], output.format(), &output.destination()).await?;
            Ok(())
        }
    }
}

fn init(dir: &Path) -> anyhow::Result<()> {
    let project = Project::init(dir)?;
    println!("Created {}", project.file.display());
    println!(
        "Next: put extracts in place, then try `lakescore sql \"select 1\"` in {}",
        project.dir.display()
    );
    Ok(())
}

/// Writes the listing of every table (`lakescore tables`, `\\dt`, the demo's summary).
async fn write_table_listing(
    lakehouse: &Lakehouse,
    format: OutputFormat,
    destination: &Destination,
) -> anyhow::Result<()> {
    let summaries = list_table_summaries(lakehouse).await?;
    let (schema, batch) = summaries_batch(&summaries)?;
    write_batches(schema, vec![batch], format, destination).await?;
    Ok(())
}

fn open_lakehouse(project: &Project) -> anyhow::Result<Arc<Lakehouse>> {
    Ok(Arc::new(Lakehouse::for_project(project)?))
}

/// Runs `statements` in order, writing each result (`lakescore sql` and the prompt).
async fn run_statements(
    session: &SqlSession,
    statements: Vec<Statement>,
    format: OutputFormat,
    destination: &Destination,
    max_rows: usize,
) -> anyhow::Result<()> {
    for statement in statements {
        let frame = session.plan(statement).await?;
        let stream = frame
            .execute_stream()
            .await
            .map_err(lakescore_engine::Error::from)?;
        write_results(stream, format, destination, max_rows).await?;
        for warning in session.take_warnings() {
            eprintln!("warning: {warning}");
        }
    }
    Ok(())
}
