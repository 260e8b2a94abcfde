//! Operators that may make more rows than they read give their task back to tokio as their
//! rows flow, so that a cancelled or timed-out query stops and other queries run meanwhile.
//!
//! DataFusion's operators yield through tokio's cooperative budget, which its sources take one
//! unit of per batch (`EnsureCooperative` wraps them in a [`CooperativeExec`]). An operator that
//! makes many batches from one it read never reaches its source again between them: a cross
//! join emits billions of rows from each batch of its probe side, and an aggregate above it
//! drains them in a single poll. That poll holds its worker thread until the join is done, and
//! a dropped (cancelled) stream or an aborted task stops only when its task yields
//! (apache/datafusion#19358). [`YieldingOperators`] wraps each such operator in a
//! [`CooperativeExec`], which takes budget for every batch it passes on, so the task yields
//! every 128 batches wherever its rows come from.

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::execution_plan::CardinalityEffect;

/// Wraps every operator that may emit more rows than it reads in a [`CooperativeExec`]: those
/// whose cardinality effect DataFusion does not know (joins, unnest, and any operator that
/// does not tell); see the module documentation. Runs after DataFusion's own rules, so
/// nothing moves the wrappers.
#[derive(Debug, Default)]
pub struct YieldingOperators;

impl PhysicalOptimizerRule for YieldingOperators {
    fn name(&self) -> &str {
        "yielding_operators"
    }

    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            // Leaves are EnsureCooperative's; a wrapper's effect is `Equal`.
            let may_multiply = !node.children().is_empty()
                && matches!(node.cardinality_effect(), CardinalityEffect::Unknown);
            Ok(if may_multiply {
                Transformed::yes(Arc::new(CooperativeExec::new(node)) as _)
            } else {
                Transformed::no(node)
            })
        })
        .map(|transformed| transformed.data)
    }

    fn schema_check(&self) -> bool {
        true
    }
}
