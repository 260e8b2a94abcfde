//! Answering aggregates over a cube from its files' summaries.
//!
//! A cube's large data files each carry a summary: their cells summed per granule by the
//! leading dimensions (see `quantatom_table_providers::mdf`'s `summary` module and
//! docs/mdf.md, "Summaries"). An aggregate that
//!
//! - reads one cube, through filters, plain column projections and aliases only,
//! - groups and filters by dimensions only (any expressions over them), and
//! - computes only `sum`, `count`, `min` and `max` of measures (or `count(*)`), without
//!   `DISTINCT`, `FILTER` or `ORDER BY`,
//!
//! is rewritten to read [`MdfTable::summaries`] by the last dimension it uses instead of the
//! cells, combining the partial results:
//!
//! ```text
//! Aggregate([account], [sum(amount), count(*)])       Aggregate([account], [sum(amount), sum(cells$)])
//!   Filter(version = 'Budget')                   =>     Filter(version = 'Budget')
//!     TableScan(cube.finance)                              TableScan(cube.finance's summaries
//!                                                                    by version .. account)
//! ```
//!
//! with a projection on top that gives every column its original name and type. The
//! summaries table reads the latest snapshot as the cube would, so the answer is the cells'
//! whatever waits for a compaction: granules with pending writes are read as cells. After
//! eager aggregation (see [`crate::eager_aggregation`]) a grid joined to dimensions has
//! such an aggregate over the cube below its join, which is rewritten too.
//!
//! The rewrite is made when the cube's latest snapshot (as last read) has a file with such a
//! summary; `SET quantatom.summaries = false` turns it off for a session.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, Result};
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::expr_rewriter::unnormalize_cols;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan, LogicalPlanBuilder, TableScan};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use quantatom_table_providers::mdf::summary::{CELLS_COLUMN, count_column, max_column, min_column};
use quantatom_table_providers::mdf::{CubeDefinition, MdfTable};
use quantatom_table_providers::settings::QuantatomOptions;

use crate::eager_aggregation::{Combine, combined};

/// The optimizer rule (see the module documentation).
#[derive(Debug, Default)]
pub struct SummaryAggregation;

impl OptimizerRule for SummaryAggregation {
    fn name(&self) -> &str {
        "quantatom_summary_aggregation"
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let options = config.options();
        let wanted = (options.extensions.get::<QuantatomOptions>()).is_none_or(|o| o.summaries);
        if !wanted {
            return Ok(Transformed::no(plan));
        }
        plan.transform_down_with_subqueries(|node| match node {
            LogicalPlan::Aggregate(aggregate) => match from_summaries(&aggregate)? {
                Some(rewritten) => Ok(Transformed::yes(rewritten)),
                None => Ok(Transformed::no(LogicalPlan::Aggregate(aggregate))),
            },
            other => Ok(Transformed::no(other)),
        })
    }
}

/// `aggregate` reading the summaries of the cube below it, when the rewrite applies.
fn from_summaries(aggregate: &Aggregate) -> Result<Option<LogicalPlan>> {
    if (aggregate.group_expr.iter()).any(|expr| matches!(expr, Expr::GroupingSet(_))) {
        return Ok(None);
    }
    let mut filters = Vec::new();
    let Some(scan) = cube_scan_below(&aggregate.input, &mut filters) else {
        return Ok(None);
    };
    let provider = source_as_provider(&scan.source)?;
    let Some(cube) = provider.downcast_ref::<MdfTable>() else {
        return Ok(None);
    };
    let definition = cube.definition();
    // The summaries keep the dimensions up to the last one the groups and filters read.
    let mut keep = 0;
    for expr in aggregate.group_expr.iter().chain(&filters) {
        if !is_plain(expr) {
            return Ok(None);
        }
        for column in expr.column_refs() {
            match dimension_index(definition, &column.name) {
                Some(index) => keep = keep.max(index + 1),
                None => return Ok(None),
            }
        }
    }
    if !cube.summarised_by(keep) {
        return Ok(None);
    }
    let mut partials = Vec::with_capacity(aggregate.aggr_expr.len());
    for expr in &aggregate.aggr_expr {
        let expr = expr.clone().unalias_nested().data;
        let Some(combine) = Combine::of(&expr) else {
            return Ok(None);
        };
        let Some(partial) = partial_column(definition, &expr, &combine) else {
            return Ok(None);
        };
        partials.push((combine, partial));
    }

    let summaries = provider_as_source(Arc::new(cube.summaries(keep)));
    let mut input = LogicalPlanBuilder::scan(scan.table_name.clone(), summaries, None)?;
    // Unqualified: the summaries scan is the only input. Each once: a filter DataFusion pushed
    // into the cube's scan is also kept above it.
    let mut unique: Vec<Expr> = Vec::with_capacity(filters.len());
    for filter in unnormalize_cols(filters) {
        if !unique.contains(&filter) {
            unique.push(filter);
        }
    }
    if let Some(predicate) = conjunction(unique) {
        input = input.filter(predicate)?;
    }
    let groups = unnormalize_cols(aggregate.group_expr.iter().cloned());
    let partials = partials.iter().map(|(combine, partial)| {
        let partial = Expr::Column(Column::new_unqualified(partial));
        (combine, partial, None)
    });
    combined(aggregate, input.build()?, groups, partials).map(Some)
}

/// The scan of a cube `plan` passes rows of on unchanged but for filters (collected in
/// `filters`, with the scan's own): through filters, projections of plain columns and
/// aliases. `None` for anything else, or a scan with a row limit.
fn cube_scan_below<'a>(plan: &'a LogicalPlan, filters: &mut Vec<Expr>) -> Option<&'a TableScan> {
    match plan {
        LogicalPlan::TableScan(scan) if scan.fetch.is_none() => {
            filters.extend(scan.filters.iter().cloned());
            Some(scan)
        }
        LogicalPlan::Filter(filter) => {
            filters.push(filter.predicate.clone());
            cube_scan_below(&filter.input, filters)
        }
        LogicalPlan::Projection(projection)
            if (projection.expr.iter()).all(|expr| matches!(expr, Expr::Column(_))) =>
        {
            cube_scan_below(&projection.input, filters)
        }
        LogicalPlan::SubqueryAlias(alias) => cube_scan_below(&alias.input, filters),
        _ => None,
    }
}

/// The summary column holding `expr`'s partial results (an aggregate `combine` applies to),
/// when its argument is one a summary keeps: a measure, or for `count` a dimension or a
/// constant (`count(*)`), which count cells.
fn partial_column(definition: &CubeDefinition, expr: &Expr, combine: &Combine) -> Option<String> {
    let Expr::AggregateFunction(AggregateFunction { params, .. }) = expr else {
        return None;
    };
    let [argument] = params.args.as_slice() else {
        return None;
    };
    let is_measure = |name: &str| definition.measures.iter().any(|m| m.name == name);
    match (combine, argument) {
        (Combine::Count, Expr::Literal(value, _)) if !value.is_null() => {
            Some(CELLS_COLUMN.to_owned())
        }
        (Combine::Count, Expr::Column(column))
            if dimension_index(definition, &column.name).is_some() =>
        {
            Some(CELLS_COLUMN.to_owned())
        }
        (_, Expr::Column(column)) if is_measure(&column.name) => {
            let measure = &column.name;
            Some(match combine {
                Combine::Sum => measure.clone(),
                Combine::Count => count_column(measure),
                Combine::Min => min_column(measure),
                Combine::Max => max_column(measure),
            })
        }
        _ => None,
    }
}

/// The position of dimension `name` in the cube's sort order.
fn dimension_index(definition: &CubeDefinition, name: &str) -> Option<usize> {
    definition.dimensions.iter().position(|d| d == name)
}

/// Whether `expr` computes a value from its row's columns alone: no subquery, outer
/// reference or volatile function.
fn is_plain(expr: &Expr) -> bool {
    let nested = expr.exists(|e| {
        Ok(matches!(
            e,
            Expr::ScalarSubquery(_)
                | Expr::InSubquery(_)
                | Expr::SetComparison(_)
                | Expr::Exists(_)
                | Expr::OuterReferenceColumn(..)
        ))
    });
    !nested.unwrap_or(true) && !expr.is_volatile()
}
