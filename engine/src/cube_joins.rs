//! Narrowing a cube's scan to the dimension members a join can match.
//!
//! A grid query joins a cube to a filtered dimension: `FROM cube.finance f JOIN dim.entity e
//! ON e.code = f.entity WHERE e.path <@ 'Total.EMEA'`. DataFusion turns the join's build side
//! into a dynamic filter inside the cube's Parquet scan at run time, which prunes by row-group
//! and page statistics only. The cube's marks select granules, which prunes far better (see
//! docs/mdf.md, "Pruning"), but only by filters known when the scan is planned. So, before
//! physical planning, the dimension side of such a join is run (a dimension is metadata: its
//! members number thousands, not millions) and its join keys are handed to the cube's scan as
//! `entity IN (...)`, a filter the scan prunes with.
//!
//! The filter is only a hint to the scan: the join still decides which rows match, so the
//! answer is the same whether the scan uses it or not. It is given for inner joins and for
//! semi joins that keep the cube's rows, where a cube row without a match is dropped anyway.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::Array;
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, Result, ScalarValue, internal_err};
use datafusion::datasource::source_as_provider;
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::{Expr, Join, JoinType, LogicalPlan, LogicalPlanBuilder};
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};
use quantatom_table_providers::mdf::MdfTable;

/// The most members handed to a cube's scan; a larger dimension side is left to the join's
/// dynamic filter.
const MAX_MEMBERS: usize = 10_000;

/// DataFusion's physical planner, after narrowing every cube scan joined to a dimension (see
/// the module documentation).
#[derive(Debug, Default)]
pub struct CubeJoinPlanner;

#[async_trait]
impl QueryPlanner for CubeJoinPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let narrowed = narrow_cube_joins(logical_plan, session).await?;
        DefaultPhysicalPlanner::default()
            .create_physical_plan(&narrowed, session)
            .await
    }
}

/// A join whose one side scans a cube and whose other side reads no cube.
struct CubeJoin {
    /// Whether the cube is the join's left input.
    cube_on_left: bool,
    /// The cube's dimension column the join matches on.
    dimension: String,
    /// The way from the cube's side of the join to the cube's scan.
    route: Vec<usize>,
    /// The other side's keys, as a query.
    keys: LogicalPlan,
}

/// `plan` with the members each cube join can match given to its cube's scan.
async fn narrow_cube_joins(plan: &LogicalPlan, session: &dyn Session) -> Result<LogicalPlan> {
    let mut joins: Vec<Option<CubeJoin>> = Vec::new();
    plan.apply(|node| {
        if let LogicalPlan::Join(join) = node {
            joins.push(cube_join(join)?);
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    if joins.iter().all(Option::is_none) {
        return Ok(plan.clone());
    }
    let mut narrowing = Vec::with_capacity(joins.len());
    for join in joins {
        narrowing.push(match join {
            Some(join) => members(&join, session)
                .await?
                .map(|members| (join, members)),
            None => None,
        });
    }
    let mut narrowing = narrowing.into_iter();
    plan.clone()
        .transform_down(|node| {
            let LogicalPlan::Join(mut join) = node else {
                return Ok(Transformed::no(node));
            };
            let Some((cube_join, members)) = narrowing.next().flatten() else {
                return Ok(Transformed::no(LogicalPlan::Join(join)));
            };
            let side = match cube_join.cube_on_left {
                true => &mut join.left,
                false => &mut join.right,
            };
            let filter =
                Expr::Column(Column::new_unqualified(&cube_join.dimension)).in_list(members, false);
            let narrowed = with_scan_filter(side.as_ref().clone(), &cube_join.route, filter)?;
            *side = Arc::new(narrowed);
            Ok(Transformed::yes(LogicalPlan::Join(join)))
        })
        .map(|transformed| transformed.data)
}

/// The cube join `join` is, if it is one.
fn cube_join(join: &Join) -> Result<Option<CubeJoin>> {
    let (left_may_be_cube, right_may_be_cube) = match join.join_type {
        JoinType::Inner => (true, true),
        JoinType::LeftSemi => (true, false),
        JoinType::RightSemi => (false, true),
        _ => (false, false),
    };
    for (left_key, right_key) in &join.on {
        let sides = [
            (left_may_be_cube, true, left_key, &join.right, right_key),
            (right_may_be_cube, false, right_key, &join.left, left_key),
        ];
        for (may_be_cube, cube_on_left, cube_key, other_side, other_key) in sides {
            let cube_side = if cube_on_left {
                &join.left
            } else {
                &join.right
            };
            let Expr::Column(column) = cube_key else {
                continue;
            };
            if !may_be_cube || reads_a_cube(other_side)? {
                continue;
            }
            if let Some(route) = route_to_cube_scan(cube_side, column)? {
                let keys = LogicalPlanBuilder::from(other_side.as_ref().clone())
                    .aggregate(vec![other_key.clone()], Vec::<Expr>::new())?
                    .limit(0, Some(MAX_MEMBERS + 1))?
                    .build()?;
                return Ok(Some(CubeJoin {
                    cube_on_left,
                    dimension: column.name.clone(),
                    route,
                    keys,
                }));
            }
        }
    }
    Ok(None)
}

/// The distinct keys of `join`'s other side as literals, or `None` when there are more than
/// [`MAX_MEMBERS`].
async fn members(join: &CubeJoin, session: &dyn Session) -> Result<Option<Vec<Expr>>> {
    let plan = session.create_physical_plan(&join.keys).await?;
    let batches = collect(plan, session.task_ctx()).await?;
    if batches.iter().map(|b| b.num_rows()).sum::<usize>() > MAX_MEMBERS {
        return Ok(None);
    }
    let mut members = Vec::new();
    for batch in &batches {
        let keys = batch.column(0);
        for row in 0..keys.len() {
            if keys.is_valid(row) {
                members.push(Expr::Literal(ScalarValue::try_from_array(keys, row)?, None));
            }
        }
    }
    Ok(Some(members))
}

/// Whether any scan in `plan` reads a cube.
fn reads_a_cube(plan: &LogicalPlan) -> Result<bool> {
    plan.exists(|node| match node {
        LogicalPlan::TableScan(scan) => Ok(source_as_provider(&scan.source)?
            .downcast_ref::<MdfTable>()
            .is_some()),
        _ => Ok(false),
    })
}

/// The way from `plan` down to the scan of a cube whose dimension `column` is (the index of
/// the child taken at each step), through aliases, filters, projections that pass the
/// column on, and inner joins; `None` when there is no such scan or it has a row limit.
fn route_to_cube_scan(plan: &LogicalPlan, column: &Column) -> Result<Option<Vec<usize>>> {
    let (child, column) = match plan {
        LogicalPlan::TableScan(scan) => {
            let provider = source_as_provider(&scan.source)?;
            let is_dimension = provider
                .downcast_ref::<MdfTable>()
                .is_some_and(|cube| cube.definition().dimensions.contains(&column.name));
            return Ok((is_dimension && scan.fetch.is_none()).then(Vec::new));
        }
        LogicalPlan::SubqueryAlias(_) => (0, Column::new_unqualified(&column.name)),
        LogicalPlan::Filter(_) => (0, column.clone()),
        LogicalPlan::Projection(projection) => {
            let passed_on = projection.expr.iter().find_map(|expr| match expr {
                Expr::Column(input)
                    if input.name == column.name
                        && (column.relation.is_none() || input.relation == column.relation) =>
                {
                    Some(input.clone())
                }
                _ => None,
            });
            match passed_on {
                Some(input) => (0, input),
                None => return Ok(None),
            }
        }
        LogicalPlan::Join(join) if join.join_type == JoinType::Inner => {
            let in_left = join.left.schema().has_column(column);
            let in_right = join.right.schema().has_column(column);
            match (in_left, in_right) {
                (true, false) => (0, column.clone()),
                (false, true) => (1, column.clone()),
                _ => return Ok(None),
            }
        }
        _ => return Ok(None),
    };
    let Some(mut route) = route_to_cube_scan(plan.inputs()[child], &column)? else {
        return Ok(None);
    };
    route.insert(0, child);
    Ok(Some(route))
}

/// `plan` with `filter` added to the filters of the scan at the end of `route` (see
/// [`route_to_cube_scan`]).
fn with_scan_filter(plan: LogicalPlan, route: &[usize], filter: Expr) -> Result<LogicalPlan> {
    let Some((&next, rest)) = route.split_first() else {
        let LogicalPlan::TableScan(mut scan) = plan else {
            return internal_err!("a route to a cube scan ends at a scan");
        };
        scan.filters.push(filter);
        return Ok(LogicalPlan::TableScan(scan));
    };
    let mut index = 0;
    plan.map_children(|child| {
        index += 1;
        match index - 1 == next {
            true => with_scan_filter(child, rest, filter.clone()).map(Transformed::yes),
            false => Ok(Transformed::no(child)),
        }
    })
    .map(|transformed| transformed.data)
}
