//! Summing a cube's cells before joining them to dimensions ("eager aggregation").
//!
//! A grid groups cells by their members' attributes: `SELECT subpath(a.path, 0, 2), c.time,
//! sum(c.amount) FROM cube.planning c JOIN dim.account a ON a.code = c.account GROUP BY 1, 2`.
//! As written, every cell is joined to its member and the grouping expressions are computed
//! once per cell. Summing the cells first by the join key and the cube's columns the query
//! groups by gives the same answer from far fewer rows: the join and the expressions then see
//! one row per member and group, and the cells are summed where they are read.
//!
//! The rewrite, for an `Aggregate` over an inner join (on keys, a condition or both) of a side
//! that reads a cube (and holds every column the aggregates' arguments read) and a side that
//! reads none:
//!
//! ```text
//! Aggregate(groups, [sum(x), count(y), min(z)])          Aggregate(groups, [sum(s), sum(n), min(m)])
//!   Join(cells.k = members.code)               =>          Join(cells.k = members.code)
//!     cells                                                  Aggregate([k, cube columns of groups],
//!     members                                                          [sum(x) s, count(y) n, min(z) m])
//!                                                              cells
//!                                                            members
//! ```
//!
//! with a projection on top that gives every column its original type (a sum of sums is
//! wider) and name. The cells are summed by every column of theirs the join's keys, the
//! join's condition (`a.path <@ p.path`), the groups and the aggregates' `FILTER` clauses
//! read; the condition and the filters stay above, where they see one row per group and
//! member. It holds for any inner join, duplicates or not: each cell meets, and is kept by the
//! filters for, the same member rows as the group it was summed into. It is applied for `sum`
//! (not of floats, whose sums depend on the order of addition), `count`, `min` and `max`,
//! without `DISTINCT` or `ORDER BY` (a `FILTER` without volatile functions is kept above),
//! and for a query with at least one group (a total over no rows is one row, which the join
//! would not give), again on the new aggregate when its own input is such a join, so a grid
//! over several dimensions — the tour's P&L grid, with its quarters as `FILTER` clauses and
//! its account subtotals through an `<@` join — sums the cells once by all its members.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, NullEquality, Result};
use datafusion::functions::expr_fn::coalesce;
use datafusion::functions_aggregate::expr_fn::{max, min, sum};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{
    Aggregate, Expr, Join, JoinType, LogicalPlan, Projection, cast, col, lit,
};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

use crate::cube_joins::reads_a_cube;

/// The optimizer rule (see the module documentation).
#[derive(Debug, Default)]
pub struct EagerAggregation;

impl OptimizerRule for EagerAggregation {
    fn name(&self) -> &str {
        "quantatom_eager_aggregation"
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        plan.transform_down_with_subqueries(|node| match node {
            LogicalPlan::Aggregate(aggregate) => rewrite(aggregate),
            other => Ok(Transformed::no(other)),
        })
    }
}

/// How an aggregate's partial results combine.
pub(crate) enum Combine {
    /// A `sum`: partial sums are summed.
    Sum,
    /// A `count`: partial counts are summed (0 over none).
    Count,
    /// A `min`: the smallest partial minimum.
    Min,
    /// A `max`: the largest partial maximum.
    Max,
}

impl Combine {
    /// How `expr`'s partial results combine, when it is an aggregate this applies to: `sum`,
    /// `count`, `min` or `max`, without `DISTINCT`, `FILTER` or `ORDER BY`.
    pub(crate) fn of(expr: &Expr) -> Option<Self> {
        match Self::of_filtered(expr.clone()) {
            Some((combine, _, None)) => Some(combine),
            _ => None,
        }
    }

    /// How `expr`'s partial results combine, as [`Combine::of`], with `expr` taken apart into
    /// the aggregate of every row and its `FILTER` clause, when it has a deterministic one (a
    /// filter with a volatile function is not taken).
    fn of_filtered(expr: Expr) -> Option<(Self, Expr, Option<Expr>)> {
        let Expr::AggregateFunction(mut aggregate) = expr else {
            return None;
        };
        let params = &mut aggregate.params;
        if params.distinct || !params.order_by.is_empty() {
            return None;
        }
        let filter = params.filter.take().map(|filter| *filter);
        if filter.as_ref().is_some_and(Expr::is_volatile) {
            return None;
        }
        let combine = match aggregate.func.name() {
            "sum" => Self::Sum,
            "count" => Self::Count,
            "min" => Self::Min,
            "max" => Self::Max,
            _ => return None,
        };
        Some((combine, Expr::AggregateFunction(aggregate), filter))
    }

    /// The aggregate combining the partial results in `partial`, of the rows `filter` keeps
    /// when there is one.
    pub(crate) fn outer(&self, partial: Expr, filter: Option<Expr>) -> Expr {
        let mut outer = match self {
            Self::Sum | Self::Count => sum(partial),
            Self::Min => min(partial),
            Self::Max => max(partial),
        };
        if let Expr::AggregateFunction(AggregateFunction { params, .. }) = &mut outer {
            params.filter = filter.map(Box::new);
        }
        outer
    }
}

fn rewrite(aggregate: Aggregate) -> Result<Transformed<LogicalPlan>> {
    match eager(&aggregate)? {
        Some(plan) => Ok(Transformed::yes(plan)),
        None => Ok(Transformed::no(LogicalPlan::Aggregate(aggregate))),
    }
}

/// `aggregate` summing below its join, when the rewrite applies.
fn eager(aggregate: &Aggregate) -> Result<Option<LogicalPlan>> {
    let Some(join) = join_below(&aggregate.input) else {
        return Ok(None);
    };
    if join.join_type != JoinType::Inner
        || (join.on.is_empty() && join.filter.is_none())
        || join.filter.as_ref().is_some_and(Expr::is_volatile)
        || join.null_equality != NullEquality::NullEqualsNothing
        || aggregate.group_expr.is_empty()
    {
        return Ok(None);
    }
    let groups = aggregate.schema.fields().len() - aggregate.aggr_expr.len();
    let mut combines = Vec::with_capacity(aggregate.aggr_expr.len());
    let mut partials = Vec::with_capacity(aggregate.aggr_expr.len());
    let mut read = BTreeSet::new();
    for (i, expr) in aggregate.aggr_expr.iter().enumerate() {
        let expr = expr.clone().unalias_nested().data;
        // The cells' partial result is of every cell; the filter keeps joined rows above.
        let Some((combine, unfiltered, filter)) = Combine::of_filtered(expr) else {
            return Ok(None);
        };
        let floats = aggregate.schema.field(groups + i).data_type().is_floating();
        if matches!(combine, Combine::Sum) && floats {
            return Ok(None);
        }
        read.extend(unfiltered.column_refs().into_iter().cloned());
        partials.push(unfiltered.alias(partial_name(i)));
        combines.push((combine, filter));
    }
    let cells_on_left = match (reads_a_cube(&join.left)?, reads_a_cube(&join.right)?) {
        (true, false) => true,
        (false, true) => false,
        _ => return Ok(None),
    };
    let cells = if cells_on_left {
        &join.left
    } else {
        &join.right
    };
    if is_aggregate(cells) || !read.iter().all(|c| cells.schema().has_column(c)) {
        return Ok(None);
    }
    // A filter on what is aggregated (`FILTER (WHERE amount > 0)`) would group the cells by
    // their values: no fewer rows, so it is left as it is.
    let filters: Vec<&Expr> = (combines.iter())
        .filter_map(|(_, filter)| filter.as_ref())
        .collect();
    if (filters.iter()).any(|filter| filter.column_refs().iter().any(|c| read.contains(*c))) {
        return Ok(None);
    }

    // The cells summed by every column of theirs the join (its keys and its filter), the
    // groups or the aggregates' filters use: each cell then meets, and is kept by the filters
    // for, the same member rows as the group it was summed into.
    let cell_keys = join
        .on
        .iter()
        .map(|(left, right)| if cells_on_left { left } else { right });
    let conditions = filters.into_iter().chain(join.filter.as_ref());
    let mut keys: BTreeSet<Column> = BTreeSet::new();
    for expr in aggregate
        .group_expr
        .iter()
        .chain(cell_keys)
        .chain(conditions)
    {
        keys.extend(
            expr.column_refs()
                .into_iter()
                .filter(|c| cells.schema().has_column(c))
                .cloned(),
        );
    }
    let inner = Aggregate::try_new(
        Arc::clone(cells),
        keys.into_iter().map(Expr::Column).collect(),
        partials,
    )?;
    let inner = Arc::new(match eager(&inner)? {
        Some(deeper) => deeper,
        None => LogicalPlan::Aggregate(inner),
    });
    let (left, right) = match cells_on_left {
        true => (inner, Arc::clone(&join.right)),
        false => (Arc::clone(&join.left), inner),
    };
    let join = Join::try_new(
        left,
        right,
        join.on.clone(),
        join.filter.clone(),
        JoinType::Inner,
        join.join_constraint,
        join.null_equality,
        join.null_aware,
    )?;
    let partials = (combines.iter().enumerate())
        .map(|(i, (combine, filter))| (combine, col(partial_name(i)), filter.clone()));
    combined(
        aggregate,
        LogicalPlan::Join(join),
        aggregate.group_expr.clone(),
        partials,
    )
    .map(Some)
}

/// `original` computed over `input`, rows of partial results: grouped by `groups` (the
/// original groups as `input` names them), each aggregate combining its partial result
/// column as its [`Combine`] says, of the rows its filter keeps, and each column given its
/// original name and type (a sum of sums is wider; a count over no partial rows is 0).
pub(crate) fn combined<'a>(
    original: &Aggregate,
    input: LogicalPlan,
    groups: Vec<Expr>,
    partials: impl Iterator<Item = (&'a Combine, Expr, Option<Expr>)>,
) -> Result<LogicalPlan> {
    let partials: Vec<(&Combine, Expr, Option<Expr>)> = partials.collect();
    let outer_aggregates = (partials.iter().enumerate())
        .map(|(i, (combine, partial, filter))| {
            (combine.outer(partial.clone(), filter.clone())).alias(combined_name(i))
        })
        .collect();
    let outer = Aggregate::try_new(Arc::new(input), groups, outer_aggregates)?;
    let group_columns = original.schema.fields().len() - original.aggr_expr.len();

    // The original columns: the groups as they are, each aggregate in its type and name.
    let mut columns: Vec<Expr> = outer.schema.columns()[..group_columns]
        .iter()
        .zip(original.schema.iter())
        .map(|(column, (qualifier, field))| {
            let same = column.relation.as_ref() == qualifier && column.name == *field.name();
            match same {
                true => Expr::Column(column.clone()),
                false => {
                    Expr::Column(column.clone()).alias_qualified(qualifier.cloned(), field.name())
                }
            }
        })
        .collect();
    for (i, (combine, _, _)) in partials.iter().enumerate() {
        let (qualifier, field) = original.schema.qualified_field(group_columns + i);
        let mut value = cast(col(combined_name(i)), field.data_type().clone());
        if matches!(combine, Combine::Count) {
            value = coalesce(vec![value, lit(0i64)]);
        }
        columns.push(value.alias_qualified(qualifier.cloned(), field.name()));
    }
    let projection = Projection::try_new(columns, Arc::new(LogicalPlan::Aggregate(outer)))?;
    Ok(LogicalPlan::Projection(projection))
}

/// The name of the `i`th aggregate's partial result below the join.
fn partial_name(i: usize) -> String {
    format!("__quantatom_eager_{i}")
}

/// The name of the `i`th combined aggregate, before its original name is restored.
fn combined_name(i: usize) -> String {
    format!("__quantatom_combined_{i}")
}

/// The join `plan` is, or passes on the columns of (projections of plain columns, which
/// DataFusion puts below an aggregate to read only what it needs).
fn join_below(plan: &LogicalPlan) -> Option<&Join> {
    match plan {
        LogicalPlan::Join(join) => Some(join),
        LogicalPlan::Projection(projection)
            if projection
                .expr
                .iter()
                .all(|expr| matches!(expr, Expr::Column(_))) =>
        {
            join_below(&projection.input)
        }
        _ => None,
    }
}

fn is_aggregate(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Aggregate(_) => true,
        LogicalPlan::Projection(projection) => is_aggregate(&projection.input),
        _ => false,
    }
}
