//! A cluster's result as the input of a local write: the frame is planned by the
//! session's Ballista planner (one job on the cluster), and the write reads that job's
//! result stream in this process, where delta-rs writes the files and makes the commit.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::dataframe::DataFrame;
use datafusion::datasource::TableType;
use datafusion::error::Result as DfResult;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::projection::ProjectionExec;

use crate::error::Result;

/// `frame`, planned to run on the cluster its session talks to, as a frame of a local
/// session that reads the cluster's result (so a Delta write in this process consumes it).
pub async fn run_on_cluster(frame: DataFrame) -> Result<DataFrame> {
    let plan = frame.create_physical_plan().await?;
    let result = ClusterResult { plan };
    Ok(SessionContext::new().read_table(Arc::new(result))?)
}

/// A table whose scan is a plan that already runs elsewhere.
#[derive(Debug)]
struct ClusterResult {
    plan: Arc<dyn ExecutionPlan>,
}

#[async_trait]
impl TableProvider for ClusterResult {
    fn schema(&self) -> SchemaRef {
        self.plan.schema()
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
        match projection {
            Some(columns) if columns.iter().copied().ne(0..self.schema().fields().len()) => {
                let schema = self.schema();
                let expressions = columns.iter().map(|&index| {
                    let field = schema.field(index);
                    (
                        Arc::new(datafusion::physical_expr::expressions::Column::new(
                            field.name(),
                            index,
                        )) as _,
                        field.name().clone(),
                    )
                });
                Ok(Arc::new(ProjectionExec::try_new(
                    expressions,
                    self.plan.clone(),
                )?))
            }
            _ => Ok(self.plan.clone()),
        }
    }
}
