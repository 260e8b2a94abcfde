//! [`TilePlanner`]: the tile cache in front of physical planning.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::Result;
use datafusion::common::display::{PlanType, StringifiedPlan};
use datafusion::common::format::ExplainFormat;
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::{Explain, LogicalPlan};
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::explain::ExplainExec;
use datafusion::physical_plan::{ExecutionPlan, displayable};

use super::{TileCache, TileCandidate, TileExec, TileKey};

/// Plans a cached query as a [`TileExec`]: one that serves the tile when the cache holds it
/// (the query's own plan is then not even made), else one over the query's plan that stores
/// its result. Any other query is planned by the planner it wraps. `EXPLAIN` and
/// `EXPLAIN ANALYZE` of a cached query show the `TileExec`.
#[derive(Debug)]
pub struct TilePlanner {
    inner: Arc<dyn QueryPlanner + Send + Sync>,
    tiles: Arc<TileCache>,
}

impl TilePlanner {
    /// `inner` with `tiles` in front.
    pub fn new(inner: Arc<dyn QueryPlanner + Send + Sync>, tiles: Arc<TileCache>) -> Self {
        Self { inner, tiles }
    }

    /// `plan` planned through the cache when it is cached, else by the inner planner. A miss
    /// that will `run` is remembered as the query's tile being computed (for the hot tiles'
    /// refresh); one only shown by `EXPLAIN` is not, or the refresh would take the tile it
    /// never computed for current.
    async fn plan_query(
        &self,
        plan: &LogicalPlan,
        session: &dyn Session,
        run: bool,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(query) = TileCandidate::query_of(plan) else {
            return self.inner.create_physical_plan(plan, session).await;
        };
        let key = match self.tiles.enabled() {
            true => TileKey::for_plan(query, session).await?,
            false => None,
        };
        let Some(key) = key else {
            return self.inner.create_physical_plan(query, session).await;
        };
        if let Some((tile, source)) = self.tiles.get(&key).await
            && **tile.schema() == *query.schema().as_arrow()
        {
            return Ok(Arc::new(TileExec::hit(
                key,
                Arc::clone(&self.tiles),
                tile,
                source,
            )));
        }
        if run {
            self.tiles
                .hot_tiles()
                .computing(query, session.config(), &key);
        }
        let computed = self.inner.create_physical_plan(query, session).await?;
        Ok(Arc::new(TileExec::miss(
            key,
            Arc::clone(&self.tiles),
            computed,
        )))
    }

    /// `EXPLAIN`, its physical plan shown as the query would be planned: with the `TileExec`.
    async fn explain(
        &self,
        plan: &LogicalPlan,
        explain: &Explain,
        session: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let planned = self.inner.create_physical_plan(plan, session).await?;
        let Some(planned_explain) = planned.downcast_ref::<ExplainExec>() else {
            return Ok(planned);
        };
        if explain.explain_format != ExplainFormat::Indent
            || !explain.logical_optimization_succeeded
        {
            return Ok(planned);
        }
        let query = self.plan_query(&explain.plan, session, false).await?;
        if !query.is::<TileExec>() {
            return Ok(planned);
        }
        let shown = displayable(query.as_ref())
            .indent(explain.verbose)
            .to_string();
        let plans = planned_explain
            .stringified_plans()
            .iter()
            .map(|stringified| match stringified.plan_type {
                PlanType::FinalPhysicalPlan => {
                    StringifiedPlan::new(PlanType::FinalPhysicalPlan, shown.clone())
                }
                _ => stringified.clone(),
            })
            .collect();
        Ok(Arc::new(ExplainExec::new(
            planned.schema(),
            plans,
            planned_explain.verbose(),
        )))
    }
}

#[async_trait]
impl QueryPlanner for TilePlanner {
    async fn create_physical_plan(
        &self,
        plan: &LogicalPlan,
        session: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match plan {
            LogicalPlan::Explain(explain) => self.explain(plan, explain, session).await,
            LogicalPlan::Analyze(analyze) => {
                // DataFusion plans the analysed query itself; run it through the cache
                // instead.
                let planned = self.inner.create_physical_plan(plan, session).await?;
                let query = self.plan_query(&analyze.input, session, true).await?;
                match query.is::<TileExec>() {
                    true => planned.replace_children(
                        vec![query],
                        ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
                    ),
                    false => Ok(planned),
                }
            }
            _ => self.plan_query(plan, session, true).await,
        }
    }
}
