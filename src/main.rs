//! The `lakescore` command line: parses the arguments ([`cli`]), opens the project and
//! its lakehouse once, and dispatches to the module of each command, which runs the
//! operation and prints its report.

mod ballista;
mod cli;
mod demo;
mod drift;
mod feedback;
mod ingest;
mod jobs;
mod logging;
mod models;
mod progress;
mod query;
mod repl;
mod serve;
mod transform;
mod vacuum;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use cli::{Cli, Command, DemoAction, ModelsAction};
use lakescore_engine::run::RunContext;
use lakescore_engine::storage::vacuum::VacuumOptions;
use lakescore_engine::{Lakehouse, Project};
use lakescore_sql::dag::Selector;

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

/// Runs the command: opens the project and its lakehouse once (for the commands that
/// need them) and hands the context to the command's module.
async fn run(cli: Cli) -> anyhow::Result<()> {
    let open = || -> anyhow::Result<RunContext> {
        let cwd = std::env::current_dir()?;
        let mut project = Project::discover(cli.project.as_deref(), &cwd)?;
        let engine = &mut project.config.engine;
        if let Some(mode) = cli.engine {
            engine.mode = mode;
        }
        if let Some(scheduler) = &cli.scheduler {
            engine.scheduler = Some(scheduler.clone());
        }
        engine.check().map_err(lakescore_engine::Error::Usage)?;
        let lakehouse = Arc::new(Lakehouse::for_project(&project)?);
        Ok(RunContext::new(Arc::new(project), lakehouse))
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
        } => demo::print_generated(
            out,
            demo::Generation {
                customers: *customers,
                day: *day,
                seed: *seed,
            },
        ),
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
        } => query::sql(&open()?, query.as_deref(), output, *max_rows).await,
        Command::Ingest { sources } => ingest::run(&open()?, sources.clone()).await,
        Command::Transform {
            models,
            select,
            force,
            list,
            output,
        } => {
            let cx = open()?;
            let selectors: Vec<Selector> = models
                .iter()
                .map(|name| Selector::Model(name.clone()))
                .chain(select.iter().map(|s| Selector::parse(s)))
                .collect();
            if *list {
                transform::list(&cx, &selectors, output.format(), &output.destination()).await
            } else {
                transform::run(&cx, selectors, *force).await
            }
        }
        Command::Lineage { table, json } => transform::print_lineage(&open()?, table, *json).await,
        Command::Train { model } => models::train(&open()?, model).await,
        Command::Score {
            model,
            input,
            output,
        } => models::score(&open()?, model, input, output.clone()).await,
        Command::Drift {
            model,
            table,
            since,
            window,
            time_column,
            report,
        } => {
            let request = drift::DriftRequest {
                model: model.clone(),
                table: table.clone(),
                since: *since,
                window: window.clone(),
                time_column: time_column.clone(),
                report: report.clone(),
            };
            drift::run(&open()?, request).await
        }
        Command::Feedback { model, policy } => feedback::feedback(&open()?, model, *policy).await,
        Command::Retrain {
            model,
            if_requested,
        } => feedback::retrain(&open()?, model, *if_requested).await,
        Command::Export { table, format, to } => {
            query::export(&open()?, table, format.format(), to).await
        }
        Command::Serve {
            listen,
            http,
            hash_password,
            new_token,
        } => {
            if *hash_password {
                return serve::print_password_hash();
            }
            if *new_token {
                serve::print_new_token();
                return Ok(());
            }
            serve::run(&open()?, listen.clone(), http.clone()).await
        }
        Command::Models { action } => {
            let cx = open()?;
            let lakehouse = cx.lakehouse().clone();
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
        Command::Ballista { action } => ballista::run(&open()?, action).await,
        Command::Run { job, from } => jobs::run(&open()?, job, from.clone()).await,
        Command::Scheduler => jobs::scheduler(&open()?).await,
        Command::Runs {
            job,
            run,
            limit,
            output,
        } => {
            let cx = open()?;
            jobs::runs(
                &cx,
                job.as_deref(),
                run.as_deref(),
                *limit,
                output.format(),
                &output.destination(),
            )
            .await
        }
        Command::Check { tables, output } => {
            jobs::check(&open()?, tables, output.format(), &output.destination()).await
        }
        Command::Tables { output } => {
            query::write_table_listing(open()?.lakehouse(), output.format(), &output.destination())
                .await
        }
        Command::Vacuum {
            tables,
            retain,
            dry_run,
        } => {
            let options = VacuumOptions::for_tables(tables, *retain, *dry_run)?;
            vacuum::run(open()?.lakehouse(), &options).await
        }
        Command::History {
            table,
            limit,
            output,
        } => query::history(&open()?, table, *limit, output).await,
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
