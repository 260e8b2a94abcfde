//! The traversal Quantatom's analyzer rules share.

use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{Expr, LogicalPlan};

/// Rewrites every expression of `plan` and of its subqueries bottom-up with `rewrite`, keeping
/// each node's output column names: the plan above a node refers to them.
pub fn rewrite_expressions(
    plan: LogicalPlan,
    rewrite: impl Fn(Expr) -> Result<Transformed<Expr>> + Copy,
) -> Result<LogicalPlan> {
    plan.transform_up_with_subqueries(|node| {
        let names = NamePreserver::new(&node);
        node.map_expressions(|expr| {
            let name = names.save(&expr);
            expr.transform_up(rewrite)?
                .map_data(|expr| Ok(name.restore(expr)))
        })
    })
    .map(|transformed| transformed.data)
}
