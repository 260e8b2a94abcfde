//! Correlated scalar subqueries over the system catalogs, as PostgreSQL runs them.
//!
//! Drivers and BI tools look up one catalog row per outer row with a bare scalar subquery:
//! pgJDBC's `getTypeInfo` asks `(SELECT c.relkind = 'c' FROM pg_class c WHERE c.oid =
//! t.typrelid)`, SQLAlchemy's inspector does the same for column types. PostgreSQL runs these
//! and fails only if one ever returns two rows; DataFusion refuses any correlated scalar
//! subquery that is not an aggregate. The lookups are by a catalog key, so at most one row
//! matches, and [`CatalogSubqueryRule`] states that to DataFusion by taking the `max` of the
//! subquery's single column. It touches only subqueries that read nothing but `pg_catalog` and
//! `information_schema` tables; over planning data the rule stays DataFusion's.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, Result};
use datafusion::config::ConfigOptions;
use datafusion::functions_aggregate::expr_fn::max;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, Subquery};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::optimizer::AnalyzerRule;

/// Makes correlated scalar subqueries over the system catalogs aggregates (see the module).
#[derive(Debug, Default)]
pub struct CatalogSubqueryRule;

const CATALOG_SCHEMAS: [&str; 2] = ["pg_catalog", "information_schema"];

/// Whether every table `plan` reads is a system catalog table.
fn reads_only_catalogs(plan: &LogicalPlan) -> bool {
    let mut only_catalogs = true;
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && !scan.table_name.schema().is_some_and(|schema| CATALOG_SCHEMAS.contains(&schema))
        {
            only_catalogs = false;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    only_catalogs
}

fn needs_aggregate(subquery: &Subquery) -> bool {
    let plan = subquery.subquery.as_ref();
    !subquery.outer_ref_columns.is_empty()
        && !matches!(plan, LogicalPlan::Aggregate(_))
        && plan.max_rows().is_none_or(|rows| rows > 1)
        && plan.schema().fields().len() == 1
        && reads_only_catalogs(plan)
}

fn aggregated(subquery: Subquery) -> Result<Subquery> {
    let plan = Arc::unwrap_or_clone(subquery.subquery);
    let (qualifier, field) = plan.schema().qualified_field(0);
    let column = Expr::Column(Column::new(qualifier.cloned(), field.name()));
    let name = field.name().clone();
    let plan = LogicalPlanBuilder::from(plan).aggregate(Vec::<Expr>::new(), vec![max(column).alias(name)])?.build()?;
    Ok(Subquery { subquery: Arc::new(plan), ..subquery })
}

impl AnalyzerRule for CatalogSubqueryRule {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            // Output columns keep their names: the plan above refers to them.
            let names = NamePreserver::new(&node);
            node.map_expressions(|expr| {
                let name = names.save(&expr);
                expr.transform_up(|expr| match expr {
                    Expr::ScalarSubquery(subquery) if needs_aggregate(&subquery) => {
                        Ok(Transformed::yes(Expr::ScalarSubquery(aggregated(subquery)?)))
                    }
                    other => Ok(Transformed::no(other)),
                })?
                .map_data(|expr| Ok(name.restore(expr)))
            })
        })
        .map(|transformed| transformed.data)
    }

    fn name(&self) -> &str {
        "catalog_subquery"
    }
}
