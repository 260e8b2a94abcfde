//! Plans reused across executions of the same query text, while nothing they read has changed.
//!
//! Planning costs far more than running a small query: for a one-row `SELECT`, parsing,
//! analysing, optimising and physical planning are about nine tenths of the server's time. A
//! session therefore keeps its plans in a [`PlanCache`], keyed by the query text:
//!
//! - The **optimised logical plan** is kept for any plain query whose meaning does not depend on
//!   the moment it is planned (no stable or volatile function such as `now()`, which the
//!   optimiser folds into a constant). It may hold `$n` placeholders; each execution binds them
//!   and plans physically, so a prepared statement is parsed and optimised once.
//! - The **physical plan** is kept too, per set of bound parameter values (DataFusion's
//!   physical plans cannot hold placeholders; the [`PHYSICAL_PLANS_PER_QUERY`] most recent
//!   sets), when every table the query scans is versioned (cubes and dimensions, see
//!   [`quantatom_table_providers::table_version`]) and it has no dynamic filters (which
//!   DataFusion cannot reset for a second run). It is reused only while every scanned table is
//!   still at the version it was planned at, and reset with DataFusion's [`reset_plan_states`]
//!   before each run that executes it ([`Runnable::into_plan`]). The caller may keep something
//!   beside each kept physical plan (the wire keeps its encoded answer, see
//!   [`Runnable::beside`]): it lives exactly as long as the plan.
//!
//! Anything that may change what a query text means (DDL, `SET`, `DISCARD`, in any session)
//! advances the engine's [`PlanEpoch`], which empties every session's cache on its next use.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchemaRef, ParamValues, Result, ScalarValue, not_impl_err};
use datafusion::datasource::source_as_provider;
use datafusion::execution::TaskContext;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use datafusion::optimizer::OptimizerRule;
use datafusion::optimizer::simplify_expressions::SimplifyExpressions;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::execution_plan::reset_plan_states;
use datafusion::prelude::SessionContext;
use indexmap::IndexMap;
use quantatom_table_providers::mdf::transaction::SessionWrites;
use quantatom_table_providers::table_version;

use crate::tiles::{self, TileExec};

/// How many plans a session keeps; the least recently used one goes first.
pub const PLANS_PER_SESSION: usize = 256;

/// How many physical plans (one per set of parameter values) a query keeps.
pub const PHYSICAL_PLANS_PER_QUERY: usize = 128;

/// Counts the changes that may alter what a query text means: DDL, `SET`, `DISCARD`. Shared by
/// every session of an engine.
#[derive(Debug, Default)]
pub struct PlanEpoch(AtomicU64);

impl PlanEpoch {
    /// The current epoch.
    pub fn current(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// Records a change: every cached plan and session snapshot becomes stale.
    pub fn advance(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

/// What running a cached plan needs from its session, taken once per epoch instead of once per
/// query (cloning a `SessionState` copies every function registry).
#[derive(Debug)]
pub struct SessionSnapshot {
    /// The session's state when the snapshot was taken.
    pub state: SessionState,
    /// A task context over that state.
    pub task: Arc<TaskContext>,
}

/// Values keyed by query text that stay right only while the engine's [`PlanEpoch`] stands
/// still (plans, parse results); at most [`PLANS_PER_SESSION`], least recently used first out.
#[derive(Debug)]
pub struct EpochCache<V> {
    epoch: Arc<PlanEpoch>,
    entries: Mutex<Entries<V>>,
}

#[derive(Debug)]
struct Entries<V> {
    epoch: u64,
    values: IndexMap<String, Arc<V>>,
}

impl<V> EpochCache<V> {
    /// An empty cache that goes stale whenever `epoch` advances.
    pub fn new(epoch: Arc<PlanEpoch>) -> Self {
        let entries = Entries {
            epoch: epoch.current(),
            values: IndexMap::new(),
        };
        Self {
            epoch,
            entries: Mutex::new(entries),
        }
    }

    /// The engine-wide epoch this cache follows.
    pub fn epoch(&self) -> &Arc<PlanEpoch> {
        &self.epoch
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Entries<V>> {
        let mut entries = self.entries.lock().expect("cache poisoned");
        let now = self.epoch.current();
        if entries.epoch != now {
            entries.epoch = now;
            entries.values.clear();
        }
        entries
    }

    /// The value kept for `sql`, if it is still current.
    pub fn get(&self, sql: &str) -> Option<Arc<V>> {
        let mut entries = self.entries();
        let index = entries.values.get_index_of(sql)?;
        let last = entries.values.len() - 1;
        entries.values.move_index(index, last);
        entries
            .values
            .get_index(last)
            .map(|(_, value)| Arc::clone(value))
    }

    /// Keeps `value` for `sql`, unless the epoch moved since `computed_at` (the value may then
    /// predate a change it should have seen).
    pub fn insert(&self, sql: &str, value: Arc<V>, computed_at: u64) {
        let mut entries = self.entries();
        if entries.epoch != computed_at {
            return;
        }
        if entries.values.len() >= PLANS_PER_SESSION {
            entries.values.shift_remove_index(0);
        }
        entries.values.insert(sql.to_owned(), value);
    }
}

/// One session's plans (a [`ReusablePlan`], with whatever its protocol keeps beside it), keyed
/// by query text, and the session snapshot they run in.
#[derive(Debug)]
pub struct PlanCache<V> {
    plans: EpochCache<V>,
    snapshot: Mutex<Option<(u64, Arc<SessionSnapshot>)>>,
}

impl<V> PlanCache<V> {
    /// An empty cache that goes stale whenever `epoch` advances.
    pub fn new(epoch: Arc<PlanEpoch>) -> Self {
        Self {
            plans: EpochCache::new(epoch),
            snapshot: Mutex::default(),
        }
    }

    /// The plans, by query text.
    pub fn plans(&self) -> &EpochCache<V> {
        &self.plans
    }

    /// The session's state and task context for running cached plans, taken again after every
    /// epoch change.
    pub fn snapshot(&self, session: &SessionContext) -> Arc<SessionSnapshot> {
        let now = self.plans.epoch().current();
        let mut snapshot = self.snapshot.lock().expect("snapshot poisoned");
        match &*snapshot {
            Some((epoch, taken)) if *epoch == now => Arc::clone(taken),
            _ => {
                let state = session.state();
                let task = state.task_ctx();
                let taken = Arc::new(SessionSnapshot { state, task });
                *snapshot = Some((now, Arc::clone(&taken)));
                taken
            }
        }
    }
}

/// An optimised query plan that may be run many times (see the module documentation), with a
/// `B` kept beside each of its kept physical plans.
#[derive(Debug)]
pub struct ReusablePlan<B = ()> {
    optimized: LogicalPlan,
    parameter_types: Vec<Option<DataType>>,
    scans: Vec<Arc<dyn TableProvider>>,
    physical: Mutex<PhysicalReuse<B>>,
}

#[derive(Debug)]
enum PhysicalReuse<B> {
    /// Physical plans by the parameter values they were planned with.
    Kept(IndexMap<Vec<ScalarValue>, PlannedAt<B>>),
    /// Has dynamic filters: planned physically for every run.
    Never,
}

/// A physical plan, the versions of the scanned tables it was planned at, and what the caller
/// keeps beside it.
#[derive(Debug)]
struct PlannedAt<B> {
    plan: Arc<dyn ExecutionPlan>,
    versions: Vec<String>,
    beside: Arc<B>,
}

/// A physical plan ready to run, from [`ReusablePlan::physical_plan`].
#[derive(Debug)]
pub struct Runnable<B> {
    /// The plan as kept: run before when `ran_before`.
    plan: Arc<dyn ExecutionPlan>,
    /// Whether `plan` is a kept plan that ran before, whose state [`Runnable::into_plan`]
    /// resets: left until then, since a caller answering from `beside` never runs it.
    ran_before: bool,
    /// When the plan is kept, what is kept beside it: the same value for every run of it,
    /// dropped with it. A kept plan reads tables at the versions it was planned at and calls
    /// only immutable functions, so every run of it gives the same rows: a caller may keep the
    /// answer here. `None` when the plan is not kept.
    pub beside: Option<Arc<B>>,
}

impl<B> Runnable<B> {
    /// The plan, its state reset when it ran before, ready to execute.
    pub fn into_plan(self) -> Result<Arc<dyn ExecutionPlan>> {
        match self.ran_before {
            true => reset_plan_states(self.plan),
            false => Ok(self.plan),
        }
    }
}

/// The values of `by_id`, keyed by placeholder (`$1`, `$2`, ...), in a vector indexed by
/// position (`$n` at `n - 1`), `None` at the positions of placeholders it does not hold: a
/// compatibility rewrite may have dropped an expression holding one, and the client still
/// sends its value.
pub fn by_position<T>(by_id: HashMap<String, T>) -> Vec<Option<T>> {
    let mut positions: Vec<Option<T>> = Vec::new();
    for (id, value) in by_id {
        let Some(position) = id
            .strip_prefix('$')
            .and_then(|number| number.parse::<usize>().ok())
            .filter(|n| *n > 0)
        else {
            continue;
        };
        if positions.len() < position {
            positions.resize_with(position, || None);
        }
        positions[position - 1] = Some(value);
    }
    positions
}

/// The types DataFusion inferred for `plan`'s `$1`, `$2`, ... by position (`None` where it
/// could not, or where the plan holds no such placeholder).
pub fn parameter_types(plan: &LogicalPlan) -> Result<Vec<Option<DataType>>> {
    Ok(by_position(plan.get_parameter_types()?)
        .into_iter()
        .map(Option::flatten)
        .collect())
}

impl<B: Default> ReusablePlan<B> {
    /// Optimises `plan` for reuse; `None` when it must be planned afresh for every run (it is
    /// not a plain query, or its meaning depends on the moment of planning).
    pub fn try_new(state: &SessionState, plan: &LogicalPlan) -> Result<Option<Self>> {
        if !is_reusable(plan)? {
            return Ok(None);
        }
        let parameter_types = parameter_types(plan)?;
        let optimized = tiles::optimize(state, plan)?;
        let mut scans = Vec::new();
        optimized.apply_with_subqueries(|node| {
            if let LogicalPlan::TableScan(scan) = node {
                scans.push(source_as_provider(&scan.source)?);
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        Ok(Some(Self {
            optimized,
            parameter_types,
            scans,
            physical: Mutex::new(PhysicalReuse::Kept(IndexMap::new())),
        }))
    }

    /// The schema of the rows the query returns.
    pub fn schema(&self) -> &DFSchemaRef {
        self.optimized.schema()
    }

    /// The types DataFusion inferred for `$1`, `$2`, ... (`None` where it could not, or where
    /// the plan holds no such placeholder).
    pub fn parameter_types(&self) -> &[Option<DataType>] {
        &self.parameter_types
    }

    /// `parameters` cast to the types DataFusion inferred for their placeholders: a client
    /// may send text for a `Utf8View` column's placeholder, and a bound literal must have its
    /// placeholder's type, since the plan was typed and optimised with it.
    fn typed(&self, parameters: ParamValues) -> Result<ParamValues> {
        let ParamValues::List(mut values) = parameters else {
            return Ok(parameters);
        };
        for (value, inferred) in values.iter_mut().zip(&self.parameter_types) {
            if let Some(inferred) = inferred
                && value.value.data_type() != *inferred
            {
                value.value = value.value.cast_to(inferred)?;
            }
        }
        Ok(ParamValues::List(values))
    }

    /// A physical plan ready to run with `parameters` bound: the kept one for these values
    /// while every scanned table is at the version it was planned at, else a new one.
    pub async fn physical_plan(
        &self,
        state: &SessionState,
        parameters: ParamValues,
    ) -> Result<Runnable<B>> {
        let parameters = self.typed(parameters)?;
        let key: Vec<ScalarValue> = match &parameters {
            ParamValues::List(values) => values.iter().map(|value| value.value.clone()).collect(),
            ParamValues::Map(_) => return not_impl_err!("named parameters"),
        };
        // A transaction block's staged writes are read through the plan's scans: plans made
        // before them (or of them) are not kept.
        let staged = SessionWrites::of(state.config()).is_some_and(|writes| writes.has_staged());
        let never = staged
            || matches!(
                *self.physical.lock().expect("plan poisoned"),
                PhysicalReuse::Never
            );
        let versions = if never {
            None
        } else {
            self.scan_versions().await?
        };
        if let Some(versions) = &versions
            && let PhysicalReuse::Kept(kept) = &*self.physical.lock().expect("plan poisoned")
            && let Some(planned) = kept.get(&key)
            && planned.versions == *versions
            && let Some(plan) = TileExec::to_run(&planned.plan)
        {
            return Ok(Runnable {
                plan,
                ran_before: true,
                beside: Some(Arc::clone(&planned.beside)),
            });
        }
        let bound = match key.is_empty() {
            true => self.optimized.clone(),
            // Folded again once the values are in: `code = 'P' || lpad($1, 4, '0')` becomes
            // `code = 'P0005'`, computed once instead of per batch, and a literal that scans
            // can push down and prune with.
            false => {
                let bound = self
                    .optimized
                    .clone()
                    .replace_params_with_values(&parameters)?;
                let simplify = SimplifyExpressions::new();
                bound
                    .transform_up_with_subqueries(|node| simplify.rewrite(node, state))?
                    .data
            }
        };
        let plan = state
            .query_planner()
            .create_physical_plan(&bound, state)
            .await?;
        let once = |plan| Runnable {
            plan,
            ran_before: false,
            beside: None,
        };
        let Some(versions) = versions else {
            return Ok(once(plan));
        };
        let mut physical = self.physical.lock().expect("plan poisoned");
        if has_dynamic_filters(&plan)? {
            *physical = PhysicalReuse::Never;
            return Ok(once(plan));
        }
        let PhysicalReuse::Kept(kept) = &mut *physical else {
            return Ok(once(plan));
        };
        if kept.len() >= PHYSICAL_PLANS_PER_QUERY && !kept.contains_key(&key) {
            kept.shift_remove_index(0);
        }
        let beside = Arc::new(B::default());
        kept.insert(
            key,
            PlannedAt {
                plan: TileExec::to_keep(Arc::clone(&plan)),
                versions,
                beside: Arc::clone(&beside),
            },
        );
        Ok(Runnable {
            plan,
            ran_before: false,
            beside: Some(beside),
        })
    }

    /// The current version of every scanned table, read before planning so that a commit
    /// racing the planning can only make the kept plan look stale, never fresh; `None` when a
    /// table is unversioned.
    async fn scan_versions(&self) -> Result<Option<Vec<String>>> {
        let mut versions = Vec::with_capacity(self.scans.len());
        for scan in &self.scans {
            match table_version(scan.as_ref()).await {
                Some(version) => versions.push(version?),
                None => return Ok(None),
            }
        }
        Ok(Some(versions))
    }
}

/// A plain query whose meaning does not depend on when it is planned: no DDL, DML or
/// statements, no recursion (its work table cannot be reset), no extension nodes, no session
/// variables and no function that is not immutable (the optimiser folds `now()`).
pub(crate) fn is_reusable(plan: &LogicalPlan) -> Result<bool> {
    let mut reusable = true;
    plan.apply_with_subqueries(|node| {
        reusable &= !matches!(
            node,
            LogicalPlan::Dml(_)
                | LogicalPlan::Ddl(_)
                | LogicalPlan::Copy(_)
                | LogicalPlan::Explain(_)
                | LogicalPlan::Analyze(_)
                | LogicalPlan::Statement(_)
                | LogicalPlan::DescribeTable(_)
                | LogicalPlan::RecursiveQuery(_)
                | LogicalPlan::Extension(_)
        );
        if !reusable {
            return Ok(TreeNodeRecursion::Stop);
        }
        node.apply_expressions(|expr| {
            expr.apply(|expr| {
                reusable &= match expr {
                    Expr::ScalarFunction(function) => {
                        function.func.signature().volatility == Volatility::Immutable
                    }
                    Expr::ScalarVariable(..) => false,
                    _ => true,
                };
                Ok(if reusable {
                    TreeNodeRecursion::Continue
                } else {
                    TreeNodeRecursion::Stop
                })
            })
        })
    })?;
    Ok(reusable)
}

/// Whether any operator of `plan` produces a dynamic filter (a TopK sort, a hash join, a
/// min/max aggregate): its scans keep the filter tightened by the last run.
fn has_dynamic_filters(plan: &Arc<dyn ExecutionPlan>) -> Result<bool> {
    plan.exists(|node| Ok(!node.dynamic_expressions_produced().is_empty()))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::by_position;

    #[test]
    fn placeholders_keep_their_positions_across_gaps() {
        let by_id = HashMap::from([
            ("$3".to_owned(), 'c'),
            ("$1".to_owned(), 'a'),
            ("$name".to_owned(), 'x'),
        ]);
        assert_eq!(by_position(by_id), [Some('a'), None, Some('c')]);
        assert_eq!(by_position(HashMap::<String, char>::new()), []);
    }
}
