//! Running SQL sessions' plans on an Apache DataFusion Ballista cluster (`[engine] mode =
//! "ballista"`): the session plans, the scheduler splits the plan into stages and tasks,
//! executors run them over the Parquet files of the pinned table versions, and the
//! results stream back to this process, which commits them to Delta as in local mode.
//!
//! This module owns the cluster side of a session: how tables are read there
//! ([`TableReads`], [`listing`]), how functions travel ([`codec`]), the session context
//! that talks to a scheduler ([`cluster_context`]), handing a cluster's result to a Delta
//! write ([`run_on_cluster`]), and the scheduler and executor processes ([`process`]).

pub mod codec;
pub mod listing;
pub mod process;
mod result;

use std::sync::Arc;
use std::time::Duration;

use ballista::extension::{SessionConfigExt, SessionContextExt};
use datafusion::catalog::TableProvider;
use datafusion::execution::context::SessionContext;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::{FunctionRegistry, SessionStateBuilder};
use datafusion::logical_expr::ScalarUDF;
use datafusion::prelude::SessionConfig;
use deltalake::DeltaTable;

use crate::config::SchedulerAddress;
use crate::error::{Error, Result};
use crate::sql::read_only::ReadOnlyTable;
use crate::storage::lakehouse::{Lakehouse, table_provider};

pub use codec::{ClusterCodec, FunctionCodec, LAKESCORE_VERSION};
pub use process::ClusterProcess;
pub use result::run_on_cluster;

/// How a session hands lakehouse tables to DataFusion.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TableReads {
    /// Through delta-rs's scan, in this process.
    #[default]
    Delta,
    /// As Parquet listings a cluster's executors can read ([`listing`]).
    Listing,
}

impl TableReads {
    /// `table`, at the version it was opened at, as this kind of read sees it.
    pub async fn provider(self, table: &DeltaTable) -> Result<Arc<dyn TableProvider>> {
        match self {
            Self::Delta => Ok(self.read_only(table_provider(table).await?)),
            Self::Listing => listing::listing_provider(table).await,
        }
    }

    /// `provider` refusing `INSERT`, `DELETE` and the like on its own. A listing travels to
    /// executors only as itself (Ballista cannot serialize a wrapper); SQL sessions refuse
    /// write statements before planning, in both modes.
    pub fn read_only(self, provider: Arc<dyn TableProvider>) -> Arc<dyn TableProvider> {
        match self {
            Self::Delta => ReadOnlyTable::wrap(provider),
            Self::Listing => provider,
        }
    }
}

/// How long connecting to a scheduler may take before the session gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A session context whose queries run on the cluster at `scheduler` (or on one started
/// inside this process), knowing `functions`, sending them with `codec`, and reading the
/// lakehouse's bucket through `runtime`.
pub async fn cluster_context(
    scheduler: &SchedulerAddress,
    config: SessionConfig,
    runtime: Arc<RuntimeEnv>,
    lakehouse: &Lakehouse,
    functions: Vec<ScalarUDF>,
    codec: Arc<ClusterCodec>,
) -> Result<SessionContext> {
    register_bucket(&runtime, lakehouse)?;
    // Ballista's own defaults first: naming the job before would mark the config as
    // already set up for Ballista and skip them.
    let config = config
        .upgrade_for_ballista()
        .with_ballista_logical_extension_codec(codec.clone())
        .with_ballista_physical_extension_codec(codec)
        .with_ballista_job_name(&job_name());
    let mut state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_default_features()
        .build();
    // Added to DataFusion's functions, for the in-process scheduler and executor, which
    // start from this state.
    for function in functions {
        state.register_udf(Arc::new(function))?;
    }
    let context = match scheduler {
        SchedulerAddress::Standalone => SessionContext::standalone_with_state(state).await,
        SchedulerAddress::Remote { host, port } => {
            check_reachable(scheduler, (host, *port)).await?;
            SessionContext::remote_with_state(&scheduler.to_string(), state).await
        }
    };
    context.map_err(|e| {
        Error::Cluster(format!(
            "cannot start a session on scheduler {scheduler}: {}",
            e.strip_backtrace()
        ))
    })
}

/// The name of every job a lakescore driver submits: `lakescore VERSION`, which the
/// scheduler checks against its own version.
pub fn job_name() -> String {
    format!("lakescore {LAKESCORE_VERSION}")
}

/// Registers the object store of the lakehouse's bucket in `runtime`, so plans can read
/// its files by URL.
pub fn register_bucket(runtime: &RuntimeEnv, lakehouse: &Lakehouse) -> Result<()> {
    if let Some((bucket, store)) = lakehouse.bucket_store()? {
        runtime.register_object_store(&bucket, store);
    }
    Ok(())
}

/// Fails with what to do when nothing listens at `address` (`host_port`), rather than at
/// the first query with a transport error.
async fn check_reachable(address: &SchedulerAddress, host_port: (&str, u16)) -> Result<()> {
    match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(host_port)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(Error::Cluster(format!(
            "cannot reach the Ballista scheduler at {address}: {e}; start one with `lakescore ballista scheduler`, or run with --engine local"
        ))),
        Err(_) => Err(Error::Cluster(format!(
            "cannot reach the Ballista scheduler at {address}: no answer within {}s; check the address, or run with --engine local",
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}
