//! Summing a cube's cells before joining them to dimensions ("eager aggregation").
//!
//! A grid groups cells by their members' attributes: `SELECT subpath(a.path, 0, 2), c.time,
//! sum(c.amount) FROM cube.planning c JOIN dim.account a ON a.code = c.account GROUP BY 1, 2`.
//! As written, every cell is joined to its member and the grouping expressions are computed
//! once per cell. Summing the cells first by the join key and the cube's columns the query
//! groups by gives the same answer from far fewer rows: the join and the expressions then see
//! one row per member and group, and the cells are summed where they are read.
//!
//! The rewrite, for an `Aggregate` over an inner equi-join of a side that reads a cube (and
//! holds every column the aggregates read) and a side that reads none:
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
//! wider) and name. It holds for any inner join, duplicates or not: each cell meets the same
//! member rows as the group it was summed into. It is applied for `sum` (not of floats, whose
//! sums depend on the order of addition), `count`, `min` and `max`, without `DISTINCT`,
//! `FILTER` or `ORDER BY`, and for a query with at least one group (a total over no rows is
//! one row, which the join would not give), again on the new aggregate when its own input is
//! such a join, so a grid over several dimensions sums the cells once by all its members.

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
        let Expr::AggregateFunction(AggregateFunction { func, params }) = expr else {
            return None;
        };
        if params.distinct || params.filter.is_some() || !params.order_by.is_empty() {
            return None;
        }
        match func.name() {
            "sum" => Some(Self::Sum),
            "count" => Some(Self::Count),
            "min" => Some(Self::Min),
            "max" => Some(Self::Max),
            _ => None,
        }
    }

    /// The aggregate combining the partial results in `partial`.
    pub(crate) fn outer(&self, partial: Expr) -> Expr {
        match self {
            Self::Sum | Self::Count => sum(partial),
            Self::Min => min(partial),
            Self::Max => max(partial),
        }
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
        || join.filter.is_some()
        || join.on.is_empty()
        || join.null_equality != NullEquality::NullEqualsNothing
        || aggregate.group_expr.is_empty()
    {
        return Ok(None);
    }
    let groups = aggregate.schema.fields().len() - aggregate.aggr_expr.len();
    let mut combines = Vec::with_capacity(aggregate.aggr_expr.len());
    let mut read = BTreeSet::new();
    for (i, expr) in aggregate.aggr_expr.iter().enumerate() {
        let Some(combine) = Combine::of(&expr.clone().unalias_nested().data) else {
            return Ok(None);
        };
        let floats = aggregate.schema.field(groups + i).data_type().is_floating();
        if matches!(combine, Combine::Sum) && floats {
            return Ok(None);
        }
        combines.push(combine);
        read.extend(expr.column_refs().into_iter().cloned());
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

    // The cells summed by every column of theirs the join or the groups use.
    let cell_keys = join
        .on
        .iter()
        .map(|(left, right)| if cells_on_left { left } else { right });
    let mut keys: BTreeSet<Column> = BTreeSet::new();
    for expr in aggregate.group_expr.iter().chain(cell_keys) {
        keys.extend(
            expr.column_refs()
                .into_iter()
                .filter(|c| cells.schema().has_column(c))
                .cloned(),
        );
    }
    let partial_name = |i: usize| format!("__quantatom_eager_{i}");
    let partials: Vec<Expr> = aggregate
        .aggr_expr
        .iter()
        .enumerate()
        .map(|(i, expr)| expr.clone().unalias_nested().data.alias(partial_name(i)))
        .collect();
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
        None,
        JoinType::Inner,
        join.join_constraint,
        join.null_equality,
        join.null_aware,
    )?;
    let partials = combines
        .iter()
        .enumerate()
        .map(|(i, combine)| (combine, col(partial_name(i))));
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
/// column as its [`Combine`] says, and each column given its original name and type (a sum
/// of sums is wider; a count over no partial rows is 0).
pub(crate) fn combined<'a>(
    original: &Aggregate,
    input: LogicalPlan,
    groups: Vec<Expr>,
    partials: impl Iterator<Item = (&'a Combine, Expr)>,
) -> Result<LogicalPlan> {
    let partials: Vec<(&Combine, Expr)> = partials.collect();
    let outer_aggregates = partials
        .iter()
        .enumerate()
        .map(|(i, (combine, partial))| combine.outer(partial.clone()).alias(combined_name(i)))
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
    for (i, (combine, _)) in partials.iter().enumerate() {
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
