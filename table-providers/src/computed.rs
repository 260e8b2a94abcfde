//! Tables whose rows are computed when a query scans them: a cube's history, the calendar,
//! the catalog's roles. Each says what its rows are ([`ComputedRows`]); [`ComputedTable`]
//! makes it a read-only table DataFusion scans.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Result;
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

/// The rows of a computed table.
#[async_trait]
pub trait ComputedRows: Debug + Send + Sync {
    /// The columns.
    fn schema(&self) -> SchemaRef;

    /// The rows, as of now, in one batch of [`ComputedRows::schema`].
    async fn rows(&self) -> Result<RecordBatch>;
}

/// A read-only table (a view to clients) over [`ComputedRows`].
#[derive(Debug)]
pub struct ComputedTable<T>(pub T);

#[async_trait]
impl<T: ComputedRows + 'static> TableProvider for ComputedTable<T> {
    fn schema(&self) -> SchemaRef {
        self.0.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let batch = self.0.rows().await?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.0.schema(),
            projection.cloned(),
        )?)
    }
}
