//! Where cells sit on members: the cubes' answer to member maintenance (see
//! [`crate::metadata::MemberCells`]). A cube holds cells of a dimension when the dimension is
//! one of its coordinates.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::AsArray;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::TableProvider;
use datafusion::common::Result;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties, collect};
use datafusion::prelude::{DataFrame, Expr, SessionContext, col, lit};

use super::dml::{WriteKind, write_plan};
use super::maintenance_sql::session_of;
use super::{CubeSchemaProvider, MdfTable};
use crate::metadata::MemberCells;

impl CubeSchemaProvider {
    /// The cubes with `dimension` among their coordinates.
    fn cubes_over(&self, dimension: &str) -> Vec<Arc<MdfTable>> {
        datafusion::catalog::SchemaProvider::table_names(self)
            .iter()
            .filter_map(|name| self.cube(name))
            .filter(|cube| cube.definition().dimensions.iter().any(|d| d == dimension))
            .collect()
    }
}

/// The latest cells of `cube` at `codes` of `dimension`.
fn cells_at(
    ctx: &Arc<TaskContext>,
    cube: &Arc<MdfTable>,
    dimension: &str,
    codes: &[String],
) -> Result<DataFrame> {
    let session = SessionContext::new_with_state(session_of(ctx));
    let codes: Vec<Expr> = codes.iter().map(lit).collect();
    session
        .read_table(Arc::clone(cube) as Arc<dyn TableProvider>)?
        .filter(col(dimension).in_list(codes, false))
}

#[async_trait]
impl MemberCells for CubeSchemaProvider {
    async fn find_cells(
        &self,
        ctx: &Arc<TaskContext>,
        dimension: &str,
        codes: &[String],
    ) -> Result<Option<(String, String)>> {
        if codes.is_empty() {
            return Ok(None);
        }
        for cube in self.cubes_over(dimension) {
            let found = cells_at(ctx, &cube, dimension, codes)?
                .select_columns(&[dimension])?
                .limit(0, Some(1))?
                .collect()
                .await?;
            if let Some(batch) = found.iter().find(|b| b.num_rows() > 0) {
                let code = cast(batch.column(0), &DataType::Utf8)?;
                let code = code.as_string::<i32>().value(0).to_owned();
                return Ok(Some((cube.definition().name.clone(), code)));
            }
        }
        Ok(None)
    }

    async fn delete_cells(
        &self,
        ctx: &Arc<TaskContext>,
        dimension: &str,
        codes: &[String],
    ) -> Result<u64> {
        if codes.is_empty() {
            return Ok(0);
        }
        let mut deleted = 0;
        for cube in self.cubes_over(dimension) {
            let cells = cells_at(ctx, &cube, dimension, codes)?
                .create_physical_plan()
                .await?;
            // A sink writes the one partition it is given.
            let cells: Arc<dyn ExecutionPlan> = match cells.output_partitioning().partition_count()
            {
                1 => cells,
                _ => Arc::new(CoalescePartitionsExec::new(cells)),
            };
            let write = write_plan(cube.as_ref().clone(), WriteKind::Delete, cells);
            for batch in collect(write, Arc::clone(ctx)).await? {
                let count = batch
                    .column(0)
                    .as_primitive::<datafusion::arrow::datatypes::UInt64Type>();
                deleted += count.iter().flatten().sum::<u64>();
            }
        }
        Ok(deleted)
    }
}
