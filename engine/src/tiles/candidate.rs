//! Which queries may be cached is decided on the analysed plan, before the optimiser runs: it
//! folds `now()` or `current_date` into literals, after which nothing would show that the
//! answer depends on the moment. [`MarkTileCandidates`] (the last analyzer rule) wraps such a
//! query in a [`TileCandidate`] node, which [`super::TilePlanner`] takes off again; any other
//! physical planner plans the node as its input ([`PlanTileCandidates`]). [`optimize`] runs
//! the optimiser on a candidate's query with the node taken off, since DataFusion's optimiser
//! rewrites an extension node's input through a copy of it, which would copy the whole query
//! once for every rule.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::TreeNode;
use datafusion::common::{DFSchemaRef, Result};
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{
    Analyze, Expr, Extension, LogicalPlan, UserDefinedLogicalNode, UserDefinedLogicalNodeCore,
};
use datafusion::optimizer::AnalyzerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{ExtensionPlanner, PhysicalPlanner};

use crate::plan_reuse::is_reusable;

/// A query whose answer depends only on the tables it reads: a plain query of immutable
/// functions that reads at least one table. Shown as `TileCandidate` in logical plans.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd)]
pub struct TileCandidate {
    query: LogicalPlan,
}

impl TileCandidate {
    /// The query inside `plan`, when `plan` is a candidate.
    pub fn query_of(plan: &LogicalPlan) -> Option<&LogicalPlan> {
        let LogicalPlan::Extension(extension) = plan else {
            return None;
        };
        extension
            .node
            .as_any()
            .downcast_ref::<TileCandidate>()
            .map(|candidate| &candidate.query)
    }

    /// The query inside `plan` when `plan` is a candidate, else `plan` back as the error.
    fn into_query(plan: LogicalPlan) -> std::result::Result<LogicalPlan, LogicalPlan> {
        match Self::query_of(&plan) {
            Some(query) => Ok(query.clone()),
            None => Err(plan),
        }
    }

    /// `query` wrapped, when it is a candidate; else `query` itself.
    fn mark(query: LogicalPlan) -> Result<LogicalPlan> {
        if !is_reusable(&query)? || !reads_a_table(&query)? {
            return Ok(query);
        }
        Ok(Self::wrap(query))
    }

    /// `query`, a candidate already, wrapped.
    pub(crate) fn wrap(query: LogicalPlan) -> LogicalPlan {
        LogicalPlan::Extension(Extension {
            node: Arc::new(TileCandidate { query }),
        })
    }
}

/// `plan` analysed and optimised, as [`SessionState::optimize`] does it, except that a
/// candidate's query is optimised on its own and wrapped again afterwards: under the node, every
/// optimiser rule would rewrite a copy of the whole query (for `EXPLAIN`, whose output shows
/// each rule's plan, [`SessionState::optimize`] itself).
pub fn optimize(state: &SessionState, plan: &LogicalPlan) -> Result<LogicalPlan> {
    if matches!(plan, LogicalPlan::Explain(_)) {
        return state.optimize(plan);
    }
    let analysed =
        state
            .analyzer()
            .execute_and_check(plan.clone(), state.config_options(), |_, _| {})?;
    match TileCandidate::into_query(analysed) {
        Ok(query) => Ok(TileCandidate::wrap(state.optimizer().optimize(
            query,
            state,
            |_, _| {},
        )?)),
        Err(plan) => state.optimizer().optimize(plan, state, |_, _| {}),
    }
}

fn reads_a_table(plan: &LogicalPlan) -> Result<bool> {
    plan.exists(|node| Ok(matches!(node, LogicalPlan::TableScan(_))))
}

impl UserDefinedLogicalNodeCore for TileCandidate {
    fn name(&self) -> &str {
        "TileCandidate"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.query]
    }

    fn schema(&self) -> &DFSchemaRef {
        self.query.schema()
    }

    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "TileCandidate")
    }

    fn with_exprs_and_inputs(&self, _: Vec<Expr>, mut inputs: Vec<LogicalPlan>) -> Result<Self> {
        Ok(Self {
            query: inputs.swap_remove(0),
        })
    }

    fn necessary_children_exprs(&self, output_columns: &[usize]) -> Option<Vec<Vec<usize>>> {
        Some(vec![output_columns.to_vec()])
    }

    fn supports_limit_pushdown(&self) -> bool {
        true
    }
}

/// Wraps a query (or the query `EXPLAIN ANALYZE` runs) that may be cached in a
/// [`TileCandidate`].
#[derive(Debug, Default)]
pub struct MarkTileCandidates;

impl AnalyzerRule for MarkTileCandidates {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        match plan {
            LogicalPlan::Analyze(analyze) => Ok(LogicalPlan::Analyze(Analyze {
                input: Arc::new(TileCandidate::mark(Arc::unwrap_or_clone(analyze.input))?),
                ..analyze
            })),
            plan => TileCandidate::mark(plan),
        }
    }

    fn name(&self) -> &str {
        "mark_tile_candidates"
    }
}

/// Plans a [`TileCandidate`] as the query inside it, for physical planners that do not cache
/// (DataFusion's, when it plans what `EXPLAIN` shows).
#[derive(Debug, Default)]
pub struct PlanTileCandidates;

#[async_trait]
impl ExtensionPlanner for PlanTileCandidates {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        _session: &dyn Session,
        _planning_ctx: &PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        Ok(node
            .as_any()
            .is::<TileCandidate>()
            .then(|| Arc::clone(&physical_inputs[0])))
    }
}
