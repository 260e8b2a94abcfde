//! The projection that gives a query its output columns, which the PostgreSQL-facing rewrites
//! ([`crate::postgres_literals`], [`crate::postgres_column_names`]) adjust after planning.

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::logical_expr::{Expr, LogicalPlan, Projection};

/// `plan` with its output projection (found below any `ORDER BY` and `LIMIT`, whose schemas
/// are their input's) made of the expressions `rewrite` gives for its own. `None` when the
/// plan's output is not such a projection (a `UNION`, a `DISTINCT`, ...) or when `rewrite`
/// leaves the expressions as they are (it answers `None`).
pub(crate) fn rewrite_output_projection(
    plan: &LogicalPlan,
    rewrite: &dyn Fn(&[Expr]) -> Option<Vec<Expr>>,
) -> Result<Option<LogicalPlan>> {
    match plan {
        LogicalPlan::Projection(projection) => match rewrite(&projection.expr) {
            Some(exprs) => Ok(Some(LogicalPlan::Projection(Projection::try_new(
                exprs,
                Arc::clone(&projection.input),
            )?))),
            None => Ok(None),
        },
        LogicalPlan::Sort(_) | LogicalPlan::Limit(_) => {
            match rewrite_output_projection(plan.inputs()[0], rewrite)? {
                Some(input) => Ok(Some(plan.with_new_exprs(plan.expressions(), vec![input])?)),
                None => Ok(None),
            }
        }
        _ => Ok(None),
    }
}
