//! `lakescore ballista scheduler|executor`: the processes of a Ballista cluster that runs
//! lakescore's plans, knowing its functions, models and lakehouse.

use std::time::Duration;

use lakescore_engine::Error;
use lakescore_engine::config::SchedulerAddress;
use lakescore_engine::run::RunContext;
use lakescore_engine::sql::cluster::process::{ExecutorOptions, SchedulerOptions};

use crate::cli::BallistaAction;

/// Runs the scheduler or executor `action` asks for until the process is stopped.
pub async fn run(cx: &RunContext, action: &BallistaAction) -> anyhow::Result<()> {
    let process = lakescore_engine::ml::sql_session(cx.lakehouse().clone())
        .functions(cx.project().config.functions.clone())
        .cluster_process();
    let serving = async {
        match action {
            BallistaAction::Scheduler {
                listen,
                external_host,
                executor_timeout,
            } => {
                println!(
                    "Starting a Ballista scheduler for {} on {listen}; drivers connect with --engine ballista --scheduler df://{external_host}:{}",
                    cx.lakehouse().root(),
                    listen.port()
                );
                let options = SchedulerOptions {
                    bind: *listen,
                    external_host: external_host.clone(),
                    executor_timeout_seconds: executor_timeout.as_secs().max(1),
                };
                process.scheduler(options).await?;
            }
            BallistaAction::Executor {
                listen,
                grpc_port,
                external_host,
                concurrent_tasks,
                heartbeat,
            } => {
                let scheduler = scheduler_of(cx)?;
                let concurrent_tasks = match concurrent_tasks {
                    Some(n) => *n as usize,
                    None => std::thread::available_parallelism().map_or(1, |n| n.get()),
                };
                println!(
                    "Starting a Ballista executor for {} on {listen} ({concurrent_tasks} tasks at once), serving the scheduler at {}:{}",
                    cx.lakehouse().root(),
                    scheduler.0,
                    scheduler.1
                );
                let options = ExecutorOptions {
                    scheduler,
                    bind: *listen,
                    grpc_port: *grpc_port,
                    external_host: external_host.clone(),
                    concurrent_tasks,
                    heartbeat_seconds: heartbeat.max(&Duration::from_secs(1)).as_secs(),
                };
                process.executor(options).await?;
            }
        }
        anyhow::Ok(())
    };
    tokio::select! {
        result = serving => result,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// The scheduler an executor serves: --scheduler or [engine] scheduler, as host and port.
fn scheduler_of(cx: &RunContext) -> anyhow::Result<(String, u16)> {
    match &cx.project().config.engine.scheduler {
        Some(SchedulerAddress::Remote { host, port }) => Ok((host.clone(), *port)),
        Some(SchedulerAddress::Standalone) => Err(Error::Usage(String::from(
            "an executor serves a running scheduler: give --scheduler df://HOST:PORT (a standalone cluster runs inside the driver)",
        ))
        .into()),
        None => Err(Error::Usage(String::from(
            "which scheduler? give --scheduler df://HOST:PORT or set [engine] scheduler in lakescore.toml",
        ))
        .into()),
    }
}
