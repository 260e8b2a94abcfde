//! Compaction and vacuum as SQL table functions:
//!
//! - `SELECT * FROM mdf_compact('cube.finance')`: one row, `version` (the compaction's commit,
//!   NULL when there was nothing to compact), `files_removed`, `files_added`, `cells`;
//! - `SELECT * FROM mdf_vacuum('cube.finance')` or `mdf_vacuum('cube.finance', INTERVAL '2
//!   days')` (the retention, 7 days when not given; a month counts 30 days): one row,
//!   `files_deleted`, `bytes_deleted`.
//!
//! The work runs when the query runs, never while it is planned, so `EXPLAIN` changes nothing.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, IntervalUnit, Schema, SchemaRef};
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::datasource::TableType;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use futures::future::BoxFuture;

use super::arguments::{constant_arguments, named_cube};
use super::dml::CommitAuthor;
use super::maintenance::{CompactionScope, DEFAULT_RETENTION, ORPHAN_MIN_AGE, compact, vacuum};
use super::{CubeSchemaProvider, MdfTable};
use crate::access_target::AccessTarget;
use crate::metadata::{Privilege, SessionAccess};

/// Work that yields one row, done when its plan runs.
pub(crate) type Task =
    Arc<dyn Fn(Arc<TaskContext>) -> BoxFuture<'static, Result<RecordBatch>> + Send + Sync>;

/// What running a maintenance or planning function needs (see
/// [`crate::access_target`]), checked now: when the function is called in a plan, and again by
/// the access rule whenever a kept plan holding it runs.
pub(crate) fn require(args: &TableFunctionArgs, needs: &AccessTarget) -> Result<()> {
    match SessionAccess::of(args.session().config_options()) {
        Some(access) => Ok(needs.check(access)?),
        None => Ok(()),
    }
}

/// What `function` needs to change `cube` as a whole: `privileges` on it, each without a scope.
pub(crate) fn whole_cube(
    function: &str,
    cube: &MdfTable,
    privileges: &[Privilege],
) -> AccessTarget {
    AccessTarget::Whole {
        object: format!("cube.{}", cube.definition().name),
        privileges: privileges.to_vec(),
        what: function.to_owned(),
    }
}

/// A table of the one row a maintenance task returns.
pub(crate) struct MaintenanceCall {
    pub(crate) schema: SchemaRef,
    pub(crate) task: Task,
    /// What running it needs.
    pub(crate) needs: AccessTarget,
}

impl fmt::Debug for MaintenanceCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaintenanceCall")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl PartitionStream for MaintenanceCall {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let row = (self.task)(ctx);
        Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            futures::stream::once(row),
        ))
    }
}

/// The provider over a [`MaintenanceCall`].
#[derive(Debug)]
pub(crate) struct MaintenanceTable(pub(crate) Arc<MaintenanceCall>);

#[async_trait]
impl TableProvider for MaintenanceTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.0.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let partition = Arc::clone(&self.0) as Arc<dyn PartitionStream>;
        Ok(Arc::new(StreamingTableExec::try_new(
            Arc::clone(&self.0.schema),
            vec![partition],
            projection,
            [],
            false,
            None,
        )?))
    }
}

pub(crate) fn int64_schema(columns: &[(&str, bool)]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|(name, nullable)| Field::new(*name, DataType::Int64, *nullable))
            .collect::<Vec<_>>(),
    ))
}

pub(crate) fn one_row(schema: &SchemaRef, values: Vec<Option<i64>>) -> Result<RecordBatch> {
    let columns = values
        .into_iter()
        .map(|value| Arc::new(Int64Array::from(vec![value])) as _)
        .collect();
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

/// `mdf_compact(cube)`.
#[derive(Debug)]
pub struct MdfCompactFunction {
    cubes: Arc<CubeSchemaProvider>,
}

impl MdfCompactFunction {
    /// The function over the cubes of `cubes`.
    pub fn new(cubes: Arc<CubeSchemaProvider>) -> Self {
        Self { cubes }
    }
}

impl TableFunctionImpl for MdfCompactFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let needs = AccessTarget::AdminOnly {
            what: "compact a cube".into(),
        };
        require(&args, &needs)?;
        let arguments = constant_arguments("mdf_compact", &args)?;
        let [cube] = arguments.as_slice() else {
            return plan_err!("mdf_compact takes a cube: mdf_compact('cube.finance')");
        };
        let cube = named_cube(&self.cubes, "mdf_compact", cube)?;
        let schema = int64_schema(&[
            ("version", true),
            ("files_removed", false),
            ("files_added", false),
            ("cells", false),
        ]);
        let row_schema = Arc::clone(&schema);
        let task: Task = Arc::new(move |ctx: Arc<TaskContext>| {
            let (cube, schema) = (Arc::clone(&cube), Arc::clone(&row_schema));
            Box::pin(async move {
                let session = session_of(&ctx);
                let user = CommitAuthor::of(&ctx);
                let report = compact(&cube, &session, CompactionScope::Full, user, &|_| {}).await?;
                one_row(
                    &schema,
                    vec![
                        report.version.map(|version| version.0 as i64),
                        Some(report.files_removed as i64),
                        Some(report.files_added as i64),
                        Some(report.cells as i64),
                    ],
                )
            })
        });
        Ok(Arc::new(MaintenanceTable(Arc::new(MaintenanceCall {
            schema,
            task,
            needs,
        }))))
    }
}

/// `mdf_vacuum(cube [, retention])`.
#[derive(Debug)]
pub struct MdfVacuumFunction {
    cubes: Arc<CubeSchemaProvider>,
}

impl MdfVacuumFunction {
    /// The function over the cubes of `cubes`.
    pub fn new(cubes: Arc<CubeSchemaProvider>) -> Self {
        Self { cubes }
    }
}

impl TableFunctionImpl for MdfVacuumFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let needs = AccessTarget::AdminOnly {
            what: "vacuum a cube".into(),
        };
        require(&args, &needs)?;
        let arguments = constant_arguments("mdf_vacuum", &args)?;
        let (cube, retention) = match arguments.as_slice() {
            [cube] => (cube, DEFAULT_RETENTION),
            [cube, retention] => (cube, interval_duration(retention)?),
            _ => {
                return plan_err!(
                    "mdf_vacuum takes a cube and optionally a retention: mdf_vacuum('cube.finance', INTERVAL '7 days')"
                );
            }
        };
        let cube: Arc<MdfTable> = named_cube(&self.cubes, "mdf_vacuum", cube)?;
        let schema = int64_schema(&[("files_deleted", false), ("bytes_deleted", false)]);
        let row_schema = Arc::clone(&schema);
        let task: Task = Arc::new(move |_ctx: Arc<TaskContext>| {
            let (cube, schema) = (Arc::clone(&cube), Arc::clone(&row_schema));
            Box::pin(async move {
                let report = vacuum(&cube, retention, ORPHAN_MIN_AGE, &|_| {}).await?;
                one_row(
                    &schema,
                    vec![
                        Some(report.files_deleted as i64),
                        Some(report.bytes_deleted as i64),
                    ],
                )
            })
        });
        Ok(Arc::new(MaintenanceTable(Arc::new(MaintenanceCall {
            schema,
            task,
            needs,
        }))))
    }
}

/// A constant interval as a duration (a month counts 30 days); negative ones are refused.
fn interval_duration(value: &ScalarValue) -> Result<Duration> {
    let as_interval = DataType::Interval(IntervalUnit::MonthDayNano);
    let Ok(ScalarValue::IntervalMonthDayNano(Some(interval))) = value.cast_to(&as_interval) else {
        return plan_err!(
            "mdf_vacuum: the retention is an interval such as INTERVAL '7 days', not {value}"
        );
    };
    let days = i64::from(interval.months) * 30 + i64::from(interval.days);
    let nanos = i128::from(days) * 86_400_000_000_000 + i128::from(interval.nanoseconds);
    match u64::try_from(nanos) {
        Ok(nanos) => Ok(Duration::from_nanos(nanos)),
        Err(_) => plan_err!("mdf_vacuum: the retention cannot be negative"),
    }
}

/// A session to plan with while a query runs, from its task's configuration and runtime.
pub(crate) fn session_of(ctx: &TaskContext) -> datafusion::execution::session_state::SessionState {
    SessionStateBuilder::new()
        .with_config(ctx.session_config().clone())
        .with_runtime_env(ctx.runtime_env())
        .with_default_features()
        .build()
}
