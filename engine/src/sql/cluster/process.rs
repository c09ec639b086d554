//! `lakescore ballista scheduler` and `lakescore ballista executor`: Ballista's scheduler
//! and executor, built from its libraries, knowing lakescore's functions, its codec and
//! the lakehouse's object store. The stock Ballista binaries know none of them, so they
//! cannot run a plan that calls `predict` or the normalization functions.

use std::net::SocketAddr;
use std::sync::Arc;

use ballista_core::RuntimeProducer;
use ballista_core::config::BALLISTA_JOB_NAME;
use ballista_core::extension::SessionConfigExt;
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_core::utils::default_session_builder;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use ballista_scheduler::scheduler_server::SessionBuilder;
use datafusion::common::plan_err;
use datafusion::error::Result as DfResult;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::logical_expr::ScalarUDF;
use datafusion::prelude::SessionConfig;

use super::codec::{ClusterCodec, LAKESCORE_VERSION};
use super::register_bucket;
use crate::error::{Error, Result};
use crate::storage::lakehouse::Lakehouse;

/// One scheduler or executor process of a cluster over a lakehouse.
pub struct ClusterProcess {
    lakehouse: Arc<Lakehouse>,
    functions: Vec<ScalarUDF>,
    codec: Arc<ClusterCodec>,
}

/// Where an executor listens and which scheduler it serves.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The scheduler's host and port.
    pub scheduler: (String, u16),
    /// The address to listen on for Arrow Flight (results and shuffles).
    pub bind: SocketAddr,
    /// The port of the executor's gRPC service.
    pub grpc_port: u16,
    /// The host name the scheduler and other executors reach this one by.
    pub external_host: Option<String>,
    /// How many tasks run at once.
    pub concurrent_tasks: usize,
    /// How often the executor tells the scheduler it is alive, in seconds.
    pub heartbeat_seconds: u64,
}

/// How a scheduler listens and when it gives up on an executor.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// The address to listen on.
    pub bind: SocketAddr,
    /// The host name executors and drivers reach the scheduler by.
    pub external_host: String,
    /// Seconds without a heartbeat after which an executor is dead and its tasks rerun.
    pub executor_timeout_seconds: u64,
}

impl ClusterProcess {
    /// A process over `lakehouse` knowing `functions`, which `codec` sends and receives.
    pub fn new(lakehouse: Arc<Lakehouse>, functions: Vec<ScalarUDF>, codec: ClusterCodec) -> Self {
        Self {
            lakehouse,
            functions,
            codec: Arc::new(codec),
        }
    }

    /// Runs a scheduler until the process is stopped.
    pub async fn scheduler(&self, options: SchedulerOptions) -> Result<()> {
        ensure_free(options.bind)?;
        let runtime = bucket_runtime(&self.lakehouse)?;
        let functions: Vec<Arc<ScalarUDF>> = self.functions.iter().cloned().map(Arc::new).collect();
        let session_builder: SessionBuilder = Arc::new(move |session_config| {
            check_driver(&session_config)?;
            let state = default_session_builder(session_config)?;
            let mut all: Vec<Arc<ScalarUDF>> = state.scalar_functions().values().cloned().collect();
            all.extend(functions.iter().cloned());
            Ok(SessionStateBuilder::new_from_existing(state)
                .with_runtime_env(runtime.clone())
                .with_scalar_functions(all)
                .build())
        });
        let config = SchedulerConfig {
            bind_host: options.bind.ip().to_string(),
            bind_port: options.bind.port(),
            external_host: options.external_host,
            executor_timeout_seconds: options.executor_timeout_seconds,
            no_executors_grace_period_seconds: options.executor_timeout_seconds,
            expire_dead_executor_interval_seconds: options.executor_timeout_seconds.min(15),
            override_logical_codec: Some(self.codec.clone()),
            override_physical_codec: Some(self.codec.clone()),
            override_session_builder: Some(session_builder),
            ..SchedulerConfig::default()
        };
        let cluster = BallistaCluster::new_from_config(&config)
            .await
            .map_err(ballista_error)?;
        start_server(cluster, options.bind, Arc::new(config))
            .await
            .map_err(ballista_error)
    }

    /// Runs an executor until the process is stopped (or the scheduler stops it).
    pub async fn executor(&self, options: ExecutorOptions) -> Result<()> {
        ensure_free(options.bind)?;
        ensure_free(SocketAddr::new(options.bind.ip(), options.grpc_port))?;
        let lakehouse = self.lakehouse.clone();
        let mut registry = BallistaFunctionRegistry::default();
        for function in &self.functions {
            registry
                .scalar_functions
                .insert(function.name().to_string(), Arc::new(function.clone()));
        }
        let runtime_producer: RuntimeProducer = Arc::new(move |_| {
            bucket_runtime(&lakehouse)
                .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))
        });
        let (scheduler_host, scheduler_port) = options.scheduler.clone();
        let config = ExecutorProcessConfig {
            bind_host: options.bind.ip().to_string(),
            port: options.bind.port(),
            grpc_port: options.grpc_port,
            external_host: options.external_host,
            scheduler_host,
            scheduler_port,
            vcores: options.concurrent_tasks,
            executor_heartbeat_interval_seconds: options.heartbeat_seconds,
            print_thread_info: false,
            override_function_registry: Some(Arc::new(registry)),
            override_logical_codec: Some(self.codec.clone()),
            override_physical_codec: Some(self.codec.clone()),
            override_runtime_producer: Some(runtime_producer),
            ..ExecutorProcessConfig::default()
        };
        start_executor_process(Arc::new(config))
            .await
            .map_err(|error| {
                let hint = if error.to_string().contains("connect") {
                    "; start it first (`lakescore ballista scheduler`) and check --scheduler"
                } else {
                    ""
                };
                let (host, port) = &options.scheduler;
                Error::Cluster(format!(
                    "executor of the scheduler at {host}:{port}: {error}{hint}"
                ))
            })
    }
}

/// A runtime that reads the lakehouse's bucket by URL.
fn bucket_runtime(lakehouse: &Lakehouse) -> Result<Arc<RuntimeEnv>> {
    let runtime = RuntimeEnvBuilder::new().build()?;
    register_bucket(&runtime, lakehouse)?;
    Ok(Arc::new(runtime))
}

/// Refuses the session of a driver of another lakescore version, or of another program,
/// before any of its plans is decoded.
fn check_driver(config: &SessionConfig) -> DfResult<()> {
    let settings = config.ballista_config();
    let name = settings
        .settings()
        .get(BALLISTA_JOB_NAME)
        .map(String::as_str)
        .unwrap_or_default();
    match name.strip_prefix("lakescore ") {
        Some(version) if version == LAKESCORE_VERSION => Ok(()),
        Some(version) => plan_err!(
            "version mismatch: this scheduler runs lakescore {LAKESCORE_VERSION} but the driver runs lakescore {version}: run one lakescore version on the driver, the scheduler and every executor"
        ),
        None => plan_err!(
            "this scheduler runs lakescore's plans only: submit them with `lakescore transform|score --engine ballista` (the job is named '{name}')"
        ),
    }
}

/// Fails naming `address` when something already listens there (Ballista would report
/// only "address in use", after saying it started).
fn ensure_free(address: SocketAddr) -> Result<()> {
    std::net::TcpListener::bind(address)
        .map(drop)
        .map_err(|e| Error::Cluster(format!("cannot listen on {address}: {e}")))
}

fn ballista_error(error: ballista_core::error::BallistaError) -> Error {
    Error::Cluster(error.to_string())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ballista::extension::SessionContextExt;
    use datafusion::execution::context::SessionContext;

    use super::*;
    use crate::config::LakehouseConfig;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_scheduler_refuses_drivers_of_another_version_or_program() {
        let dir = tempfile::tempdir().unwrap();
        let lakehouse = Arc::new(Lakehouse::new(&LakehouseConfig::default(), dir.path()).unwrap());
        let process = ClusterProcess::new(lakehouse, Vec::new(), ClusterCodec::new([], []));
        let bind: SocketAddr = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap()
        };
        let options = SchedulerOptions {
            bind,
            external_host: String::from("localhost"),
            executor_timeout_seconds: 5,
        };
        let scheduler = tokio::spawn(async move { process.scheduler(options).await });
        while tokio::net::TcpStream::connect(bind).await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let refusals = [
            (
                String::from("lakescore 0.0.1"),
                format!(
                    "version mismatch: this scheduler runs lakescore {LAKESCORE_VERSION} but the driver runs lakescore 0.0.1"
                ),
            ),
            (
                String::from("nightly report"),
                String::from("this scheduler runs lakescore's plans only"),
            ),
        ];
        for (job, expected) in refusals {
            let config = SessionConfig::new_with_ballista().with_ballista_job_name(&job);
            let state = SessionStateBuilder::new()
                .with_config(config)
                .with_default_features()
                .build();
            let driver = SessionContext::remote_with_state(&format!("df://{bind}"), state)
                .await
                .unwrap();
            let error = driver
                .sql("SELECT 1")
                .await
                .unwrap()
                .collect()
                .await
                .unwrap_err()
                .to_string();
            assert!(error.contains(&expected), "{job}: {error}");
        }
        scheduler.abort();
    }
}
