//! `UPDATE` and `DELETE` of cubes and dimensions, as inserts into a write-only target.
//!
//! DataFusion plans `UPDATE` as a projection of every column (the assignments applied) over
//! the selected rows, and `DELETE` as the selected rows: exactly the rows to write. An analyzer
//! rule ([`rewrite_updates_and_deletes`]) turns such a statement into an insert of those rows
//! into a [`WriteTarget`] whose sink knows the operation, so joins and subqueries in `WHERE`
//! and `FROM` are planned and run by DataFusion like any query.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Result, plan_err};
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::datasource::{TableType, provider_as_source};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{DmlStatement, Expr, LogicalPlan, WriteOp};
use datafusion::physical_plan::ExecutionPlan;

/// A table that only takes rows, into one sink: the target an `UPDATE` or `DELETE` inserts
/// its rows into. It cannot be read.
#[derive(Debug)]
pub(crate) struct WriteTarget {
    schema: SchemaRef,
    /// What it is, for the error a read gets ("the target of a cube update").
    what: String,
    sink: Arc<dyn DataSink>,
}

impl WriteTarget {
    /// The target taking rows of `schema` into `sink`.
    pub(crate) fn new(schema: SchemaRef, what: String, sink: Arc<dyn DataSink>) -> Self {
        Self { schema, what, sink }
    }
}

#[async_trait]
impl TableProvider for WriteTarget {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan_err!("{} cannot be read", self.what)
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        _insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(DataSinkExec::new(
            input,
            Arc::clone(&self.sink),
            None,
        )))
    }
}

/// `plan` with every `UPDATE` and `DELETE` that `retarget` claims turned into an insert:
/// given the statement, `retarget` returns the rows to insert and the target taking them, or
/// `None` to leave the statement alone.
pub(crate) fn rewrite_updates_and_deletes(
    plan: LogicalPlan,
    retarget: impl Fn(&DmlStatement) -> Result<Option<(LogicalPlan, WriteTarget)>>,
) -> Result<LogicalPlan> {
    plan.transform_up(|plan| {
        let LogicalPlan::Dml(dml) = plan else {
            return Ok(Transformed::no(plan));
        };
        if !matches!(dml.op, WriteOp::Update | WriteOp::Delete) {
            return Ok(Transformed::no(LogicalPlan::Dml(dml)));
        }
        let Some((input, target)) = retarget(&dml)? else {
            return Ok(Transformed::no(LogicalPlan::Dml(dml)));
        };
        Ok(Transformed::yes(LogicalPlan::Dml(DmlStatement::new(
            dml.table_name.clone(),
            provider_as_source(Arc::new(target)),
            WriteOp::Insert(InsertOp::Append),
            Arc::new(input),
        ))))
    })
    .map(|transformed| transformed.data)
}
