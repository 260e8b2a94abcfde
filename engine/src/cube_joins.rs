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
//!
//! The members are also tested by a filter above the cube's scan, which DataFusion pushes into
//! the Parquet scan like any filter of the query, to prune pages and rows. Once every join
//! over a cube is narrowed so, the plan is made without join dynamic filters: they would only
//! test each row read against the same members a second time, and on a subtree grid of the
//! 10M-cell demo that cost a third of the query.

use std::cmp::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::Array;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, Result, ScalarValue, internal_err};
use datafusion::datasource::source_as_provider;
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::{Expr, Filter, Join, JoinType, LogicalPlan, LogicalPlanBuilder};
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};
use quantatom_table_providers::mdf::{CubeSummaries, MdfTable};

use crate::tiles::PlanTileCandidates;

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
        let (narrowed, all_narrowed) = narrow_cube_joins(logical_plan, session).await?;
        let planner =
            DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(PlanTileCandidates)]);
        let dynamic_filters = &session.config_options().optimizer;
        let wanted = dynamic_filters.enable_dynamic_filter_pushdown
            && dynamic_filters.enable_join_dynamic_filter_pushdown;
        match session.as_any().downcast_ref::<SessionState>() {
            Some(state) if all_narrowed && wanted => {
                let mut state = state.clone();
                let options = state.config_mut().options_mut();
                options.optimizer.enable_join_dynamic_filter_pushdown = false;
                planner.create_physical_plan(&narrowed, &state).await
            }
            _ => planner.create_physical_plan(&narrowed, session).await,
        }
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

/// `plan` with the members each cube join can match given to its cube's scan, and whether
/// there was a join over a cube and every such join was narrowed.
async fn narrow_cube_joins(
    plan: &LogicalPlan,
    session: &dyn Session,
) -> Result<(LogicalPlan, bool)> {
    let mut joins: Vec<Option<CubeJoin>> = Vec::new();
    let mut over_cubes = 0;
    plan.apply(|node| {
        if let LogicalPlan::Join(join) = node {
            joins.push(cube_join(join)?);
            over_cubes += usize::from(reads_a_cube(node)?);
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    if joins.iter().all(Option::is_none) {
        return Ok((plan.clone(), false));
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
    let narrowed_joins = narrowing.iter().flatten().count();
    let mut narrowing = narrowing.into_iter();
    let plan = plan
        .clone()
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
            let narrowed = with_members_filter(
                side.as_ref().clone(),
                &cube_join.route,
                &cube_join.dimension,
                &members,
            )?;
            *side = Arc::new(narrowed);
            Ok(Transformed::yes(LogicalPlan::Join(join)))
        })?
        .data;
    Ok((plan, narrowed_joins == over_cubes))
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

/// The distinct keys of `join`'s other side, or `None` when there are more than
/// [`MAX_MEMBERS`].
async fn members(join: &CubeJoin, session: &dyn Session) -> Result<Option<Vec<ScalarValue>>> {
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
                members.push(ScalarValue::try_from_array(keys, row)?);
            }
        }
    }
    // In order, so that the same members always make the same plan.
    members.sort_by(|a, b| a.partial_cmp(b).unwrap_or(Ordering::Equal));
    Ok(Some(members))
}

/// Whether any scan in `plan` reads a cube.
pub(crate) fn reads_a_cube(plan: &LogicalPlan) -> Result<bool> {
    plan.exists(|node| match node {
        LogicalPlan::TableScan(scan) => {
            Ok(cube_dimensions(source_as_provider(&scan.source)?.as_ref()).is_some())
        }
        _ => Ok(false),
    })
}

/// The dimensions whose members the rows of a scan of `provider` carry, when it reads a
/// cube: the cube's, or those its summaries keep.
fn cube_dimensions(provider: &dyn TableProvider) -> Option<&[String]> {
    if let Some(cube) = provider.downcast_ref::<MdfTable>() {
        return Some(&cube.definition().dimensions);
    }
    let summaries = provider.downcast_ref::<CubeSummaries>()?;
    Some(&summaries.cube().definition().dimensions[..summaries.dimensions()])
}

/// The way from `plan` down to the scan of a cube whose dimension `column` is (the index of
/// the child taken at each step), through aliases, filters, projections that pass the
/// column on, groups of aggregates, and inner joins; `None` when there is no such scan or it
/// has a row limit.
fn route_to_cube_scan(plan: &LogicalPlan, column: &Column) -> Result<Option<Vec<usize>>> {
    let (child, column) = match plan {
        LogicalPlan::TableScan(scan) => {
            let provider = source_as_provider(&scan.source)?;
            let is_dimension = cube_dimensions(provider.as_ref())
                .is_some_and(|dimensions| dimensions.contains(&column.name));
            return Ok((is_dimension && scan.fetch.is_none()).then(Vec::new));
        }
        LogicalPlan::SubqueryAlias(_) => (0, Column::new_unqualified(&column.name)),
        LogicalPlan::Filter(_) => (0, column.clone()),
        LogicalPlan::Projection(projection) => {
            // The column as it is, or requalified under its own name (aggregates read from
            // summaries give their groups the qualifiers they had, see
            // `crate::summary_aggregation`); a column renamed is another column.
            let passed_on = projection.expr.iter().find_map(|expr| {
                let (input, relation, name) = match expr {
                    Expr::Column(input) => (input, &input.relation, &input.name),
                    Expr::Alias(alias) => match alias.expr.as_ref() {
                        Expr::Column(input) if input.name == alias.name => {
                            (input, &alias.relation, &alias.name)
                        }
                        _ => return None,
                    },
                    _ => return None,
                };
                let same = *name == column.name
                    && (column.relation.is_none() || *relation == column.relation);
                same.then(|| input.clone())
            });
            match passed_on {
                Some(input) => (0, input),
                None => return Ok(None),
            }
        }
        // A group of an aggregate passes its column on (summing cells before a join, see
        // `crate::eager_aggregation`).
        LogicalPlan::Aggregate(aggregate)
            if aggregate
                .group_expr
                .iter()
                .any(|expr| matches!(expr, Expr::Column(group) if group == column)) =>
        {
            (0, column.clone())
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

/// `plan` with the cube scan at the end of `route` (see [`route_to_cube_scan`]) narrowed to
/// `members` of its `dimension`: the filter `dimension IN (members)` is added to the scan's
/// filters, which select granules by the marks, and above the scan, where DataFusion pushes it
/// into the Parquet scan to prune pages and rows (the one place it is tested, instead of the
/// join's dynamic filter, see the module documentation).
fn with_members_filter(
    plan: LogicalPlan,
    route: &[usize],
    dimension: &str,
    members: &[ScalarValue],
) -> Result<LogicalPlan> {
    let Some((&next, rest)) = route.split_first() else {
        let mut scan = match plan {
            LogicalPlan::TableScan(scan) => scan,
            // A join further up narrowed the same scan already, under a filter of its own.
            LogicalPlan::Filter(above) => {
                let input =
                    with_members_filter(above.input.as_ref().clone(), &[], dimension, members)?;
                return Ok(LogicalPlan::Filter(Filter::try_new(
                    above.predicate,
                    Arc::new(input),
                )?));
            }
            _ => return internal_err!("a route to a cube scan ends at a scan"),
        };
        let column = Column::new(Some(scan.table_name.clone()), dimension);
        let member_type = scan
            .source
            .schema()
            .field_with_name(dimension)?
            .data_type()
            .clone();
        let members = members
            .iter()
            .map(|member| Ok(Expr::Literal(member.cast_to(&member_type)?, None)))
            .collect::<Result<Vec<_>>>()?;
        let filter = Expr::Column(column).in_list(members, false);
        scan.filters.push(filter.clone());
        let scan = Arc::new(LogicalPlan::TableScan(scan));
        return Ok(LogicalPlan::Filter(Filter::try_new(filter, scan)?));
    };
    let mut index = 0;
    plan.map_children(|child| {
        index += 1;
        match index - 1 == next {
            true => with_members_filter(child, rest, dimension, members).map(Transformed::yes),
            false => Ok(Transformed::no(child)),
        }
    })
    .map(|transformed| transformed.data)
}
