//! What one client may take from the server, and how the server stays responsive while it
//! takes it.
//!
//! Statements run on a runtime of their own ([`QueryRuntime`]), so accepting connections,
//! logins and shutdown never wait behind a busy query. Each connection's queries draw
//! memory from a per-query pool inside one server-wide pool ([`Memory`]): sorts, joins and
//! aggregates spill to disk before they pass their share, and a query that still needs
//! more fails with "query exceeded its memory limit". A running statement ends at the
//! first of its statement timeout, a cancel request and its role's row limit ([`Watch`]),
//! or when its result is dropped because the client hung up.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError};
use futures::StreamExt;
use futures::channel::oneshot;
use lakescore_engine::datafusion::arrow::array::RecordBatch;
use lakescore_engine::datafusion::common::tree_node::{Transformed, TreeNode};
use lakescore_engine::datafusion::dataframe::DataFrame;
use lakescore_engine::datafusion::error::{DataFusionError, Result as DfResult};
use lakescore_engine::datafusion::execution::SendableRecordBatchStream;
use lakescore_engine::datafusion::execution::disk_manager::DiskManagerBuilder;
use lakescore_engine::datafusion::execution::memory_pool::{
    FairSpillPool, MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};
use lakescore_engine::datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use lakescore_engine::datafusion::physical_plan::coop::CooperativeExec;
use lakescore_engine::datafusion::physical_plan::{ExecutionPlan, execute_stream};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::error::{Error, Result};

/// SQLSTATE of a statement cancelled by timeout or request.
pub const QUERY_CANCELED: &str = "57014";
/// SQLSTATE of a statement that ran out of memory.
const OUT_OF_MEMORY: &str = "53200";
/// SQLSTATE of a statement over a configured limit.
const LIMIT_EXCEEDED: &str = "54000";

/// The runtime statements execute on, apart from the one that serves connections. Dropping
/// it stops it without waiting for statements still running (and is safe inside async code).
pub struct QueryRuntime {
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
}

impl QueryRuntime {
    /// A runtime with one worker per core.
    pub fn new() -> Result<Self> {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("lakescore-query")
            .enable_all()
            .build()
            .map_err(|source| Error::Network {
                what: String::from("cannot start the query runtime"),
                source,
            })?;
        Ok(Self {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }

    /// Where statements are spawned.
    pub fn handle(&self) -> tokio::runtime::Handle {
        self.handle.clone()
    }
}

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The server-wide memory pool and the share one query may take of it.
#[derive(Debug, Clone)]
pub struct Memory {
    server: Arc<FairSpillPool>,
    per_query: usize,
}

impl Memory {
    /// `total` bytes for all queries together, `per_query` for each.
    pub fn new(total: u64, per_query: u64) -> Self {
        Self {
            server: Arc::new(FairSpillPool::new(to_usize(total))),
            per_query: to_usize(per_query),
        }
    }

    /// Bytes one query may hold.
    pub fn per_query(&self) -> usize {
        self.per_query
    }

    /// A runtime environment for one connection's queries (a connection runs one
    /// statement at a time), spilling to the system's temporary folder.
    pub fn runtime_env(&self) -> Result<Arc<RuntimeEnv>> {
        RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(QueryPool {
                server: self.server.clone(),
                limit: self.per_query,
                used: AtomicUsize::new(0),
            }))
            .with_disk_manager_builder(DiskManagerBuilder::default())
            .build_arc()
            .map_err(|e| Error::Engine(Box::new(lakescore_engine::Error::from(e))))
    }

    /// Bytes all queries hold now.
    #[cfg(test)]
    fn reserved(&self) -> usize {
        self.server.reserved()
    }
}

fn to_usize(bytes: u64) -> usize {
    usize::try_from(bytes).unwrap_or(usize::MAX)
}

/// One query's pool: at most `limit` bytes, each also taken from the server's pool.
#[derive(Debug)]
struct QueryPool {
    server: Arc<FairSpillPool>,
    limit: usize,
    used: AtomicUsize,
}

impl fmt::Display for QueryPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "query pool of {}", human_bytes(self.limit))
    }
}

impl MemoryPool for QueryPool {
    fn name(&self) -> &str {
        "query"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.server.register(consumer);
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.server.unregister(consumer);
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.used.fetch_add(additional, Ordering::SeqCst);
        self.server.grow(reservation, additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.used.fetch_sub(shrink, Ordering::SeqCst);
        self.server.shrink(reservation, shrink);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> DfResult<()> {
        let used = self.used.fetch_add(additional, Ordering::SeqCst);
        if used + additional > self.limit {
            self.used.fetch_sub(additional, Ordering::SeqCst);
            return Err(DataFusionError::ResourcesExhausted(format!(
                "{} asked for {} more with {} of {} in use",
                reservation.consumer().name(),
                human_bytes(additional),
                human_bytes(used),
                human_bytes(self.limit)
            )));
        }
        if let Err(error) = self.server.try_grow(reservation, additional) {
            self.used.fetch_sub(additional, Ordering::SeqCst);
            return Err(error);
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.limit)
    }
}

/// `bytes` for people: `512.0 MiB`.
pub fn human_bytes(bytes: usize) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Where the receiver of a statement's cancel requests arrives, once its rows are asked
/// for.
pub type HandedCancel = oneshot::Receiver<oneshot::Receiver<()>>;

/// What ends a running statement early.
pub struct Watch {
    /// When the statement timeout is reached, and the timeout for the message.
    pub deadline: Option<(Instant, Duration)>,
    /// Hands over, once the statement's rows are asked for, the receiver that fires on a
    /// PostgreSQL cancel request for this connection.
    pub cancel: Option<HandedCancel>,
    /// The most rows the statement may return, and the role that set it.
    pub max_rows: Option<(u64, String)>,
    /// The per-query memory limit, for the message.
    pub memory_limit: usize,
}

/// Why a statement was stopped.
enum Stop {
    Timeout(Duration),
    Cancelled,
}

impl Watch {
    /// Resolves when the statement must stop.
    async fn stopped(deadline: Option<(Instant, Duration)>, cancel: Option<HandedCancel>) -> Stop {
        let timeout = async {
            match deadline {
                Some((at, limit)) => {
                    tokio::time::sleep_until(at).await;
                    limit
                }
                None => std::future::pending().await,
            }
        };
        let cancelled = async {
            // A receiver whose sender was replaced (the next statement) never fires.
            let fired = match cancel {
                Some(handed) => match handed.await {
                    Ok(receiver) => receiver.await.is_ok(),
                    // Never handed over: the rows were never asked for.
                    Err(_) => false,
                },
                None => false,
            };
            if !fired {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            limit = timeout => Stop::Timeout(limit),
            () = cancelled => Stop::Cancelled,
        }
    }
}

/// A statement's result batches, computed on `runtime` and handed over one at a time; the
/// statement stops (and its work is dropped) as soon as `watch` says so or the receiver
/// is dropped.
pub fn run_on(
    runtime: &tokio::runtime::Handle,
    frame: DataFrame,
    watch: Watch,
) -> mpsc::Receiver<Result<RecordBatch, PgWireError>> {
    let (sender, receiver) = mpsc::channel(2);
    runtime.spawn(async move {
        let Watch {
            deadline,
            cancel,
            max_rows,
            memory_limit,
        } = watch;
        let stopped = Watch::stopped(deadline, cancel);
        tokio::pin!(stopped);
        let fail = |error: PgWireError| {
            let sender = sender.clone();
            async move {
                let _ = sender.send(Err(error)).await;
            }
        };
        let started = tokio::select! {
            stop = &mut stopped => return fail_with(stop, &fail).await,
            () = sender.closed() => return,
            started = interruptible_stream(frame) => started,
        };
        let mut stream = match started {
            Ok(stream) => stream,
            Err(error) => return fail(query_error(error, memory_limit)).await,
        };
        let mut rows = 0u64;
        loop {
            let next = tokio::select! {
                stop = &mut stopped => return fail_with(stop, &fail).await,
                () = sender.closed() => return,
                next = stream.next() => next,
            };
            let batch = match next {
                None => return,
                Some(Err(error)) => return fail(query_error(error, memory_limit)).await,
                Some(Ok(batch)) => batch,
            };
            rows += batch.num_rows() as u64;
            if let Some((max, role)) = &max_rows
                && rows > *max
            {
                return fail(user_error(
                    LIMIT_EXCEEDED,
                    format!(
                        "the result has more than {max} rows, the most role {role} may fetch at once: add LIMIT or a WHERE clause"
                    ),
                ))
                .await;
            }
            tokio::select! {
                stop = &mut stopped => return fail_with(stop, &fail).await,
                sent = sender.send(Ok(batch)) => if sent.is_err() { return },
            }
        }
    });
    receiver
}

/// Starts `frame` with every operator yielding to the scheduler now and then, so a
/// stopped statement's work ends promptly even inside a long loop (a cross join produces
/// batch after batch without reading its input): dropping the stream aborts its tasks at
/// their next yield, and they free the query workers for everyone else.
async fn interruptible_stream(frame: DataFrame) -> DfResult<SendableRecordBatchStream> {
    let task = Arc::new(frame.task_ctx());
    let plan = frame.create_physical_plan().await?;
    let plan = plan
        .transform_up(|node| {
            Ok(if node.name() == "CooperativeExec" {
                Transformed::no(node)
            } else {
                Transformed::yes(Arc::new(CooperativeExec::new(node)) as Arc<dyn ExecutionPlan>)
            })
        })?
        .data;
    execute_stream(plan, task)
}

async fn fail_with<F, Fut>(stop: Stop, fail: &F)
where
    F: Fn(PgWireError) -> Fut,
    Fut: Future<Output = ()>,
{
    let message = match stop {
        Stop::Timeout(limit) => format!(
            "canceling statement due to statement timeout ({})",
            humantime::format_duration(limit)
        ),
        Stop::Cancelled => String::from("canceling statement due to user request"),
    };
    fail(user_error(QUERY_CANCELED, message)).await;
}

/// An execution error as PostgreSQL reports its kind; running out of memory says so.
fn query_error(error: DataFusionError, memory_limit: usize) -> PgWireError {
    if let DataFusionError::ResourcesExhausted(detail) = error.find_root() {
        return user_error(
            OUT_OF_MEMORY,
            format!(
                "query exceeded its memory limit of {} ({detail}): select fewer columns or rows, or raise [serve] query_memory",
                human_bytes(memory_limit)
            ),
        );
    }
    user_error(
        "XX000",
        format!("query failed: {}", error.strip_backtrace()),
    )
}

/// An `ERROR` with `code` and `message`.
pub fn user_error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        code.to_owned(),
        message,
    )))
}

/// The statement timeout in force: the role's (or the server's) limit, lowered by the
/// client's `SET statement_timeout` when that is shorter; `0` keeps the limit.
pub fn statement_timeout(limit: Duration, client_setting_ms: Option<&String>) -> Duration {
    match client_setting_ms.and_then(|ms| ms.parse::<u64>().ok()) {
        Some(ms) if ms > 0 => limit.min(Duration::from_millis(ms)),
        _ => limit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_may_lower_the_timeout_never_raise_it() {
        let limit = Duration::from_secs(60);
        assert_eq!(
            statement_timeout(limit, Some(&String::from("1000"))),
            Duration::from_secs(1)
        );
        assert_eq!(
            statement_timeout(limit, Some(&String::from("600000"))),
            limit
        );
        assert_eq!(statement_timeout(limit, Some(&String::from("0"))), limit);
        assert_eq!(statement_timeout(limit, None), limit);
    }

    #[test]
    fn a_query_pool_refuses_past_its_limit_and_gives_back_what_it_freed() {
        let memory = Memory::new(1 << 20, 1000);
        let env = memory.runtime_env().unwrap();
        let reservation = MemoryConsumer::new("sort").register(&env.memory_pool);
        reservation.try_grow(600).unwrap();
        let error = reservation.try_grow(600).unwrap_err().to_string();
        assert!(
            error.contains("sort asked for 600 B more with 600 B of 1000 B in use"),
            "{error}"
        );
        assert_eq!(memory.reserved(), 600);
        reservation.shrink(600);
        reservation.try_grow(900).unwrap();
        drop(reservation);
        assert_eq!(memory.reserved(), 0);
    }

    #[test]
    fn sizes_read_plainly() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1 << 30), "1.0 GiB");
    }
}
