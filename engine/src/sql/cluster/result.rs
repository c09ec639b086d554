//! A cluster's result as the input of a local write: the frame is planned by the
//! session's Ballista planner (one job on the cluster), and the write reads that job's
//! result stream in this process, where delta-rs writes the files and makes the commit.
//!
//! Whoever runs the write (delta-rs's own session, for a write or a merge), the job is
//! submitted with the cluster session's settings: its name (which the scheduler checks),
//! `[engine] partitions` and the rest.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::dataframe::DataFrame;
use datafusion::datasource::TableType;
use datafusion::error::Result as DfResult;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use datafusion::prelude::SessionContext;

use crate::error::Result;

/// `frame`, planned to run on the cluster its session talks to, as a frame of a local
/// session that reads the cluster's result (so a Delta write in this process consumes it).
pub async fn run_on_cluster(frame: DataFrame) -> Result<DataFrame> {
    let context = frame.task_ctx();
    let plan = frame.create_physical_plan().await?;
    let result = ClusterResult {
        job: Arc::new(ClusterJob {
            plan,
            context: Arc::new(context),
        }),
    };
    Ok(SessionContext::new().read_table(Arc::new(result))?)
}

/// A table whose scan is a job that already runs elsewhere.
#[derive(Debug)]
struct ClusterResult {
    job: Arc<ClusterJob>,
}

#[async_trait]
impl TableProvider for ClusterResult {
    fn schema(&self) -> SchemaRef {
        self.job.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let job: Arc<dyn ExecutionPlan> = self.job.clone();
        let schema = self.schema();
        match projection {
            Some(columns) if columns.iter().copied().ne(0..schema.fields().len()) => {
                let expressions = columns.iter().map(|&index| {
                    let name = schema.field(index).name();
                    let column: Arc<dyn PhysicalExpr> = Arc::new(Column::new(name, index));
                    (column, name.clone())
                });
                Ok(Arc::new(ProjectionExec::try_new(expressions, job)?))
            }
            _ => Ok(job),
        }
    }
}

/// The cluster job of a physical plan, always submitted with the context of the session
/// that planned it rather than the one of whoever executes it.
#[derive(Debug)]
struct ClusterJob {
    plan: Arc<dyn ExecutionPlan>,
    context: Arc<TaskContext>,
}

impl DisplayAs for ClusterJob {
    fn fmt_as(&self, _format: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "ClusterJob: {}", self.plan.name())
    }
}

impl ExecutionPlan for ClusterJob {
    fn name(&self) -> &str {
        "ClusterJob"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.plan.properties()
    }

    /// None: the job is planned already, and local optimizers must not rewrite it.
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        self.plan.execute(partition, self.context.clone())
    }
}
