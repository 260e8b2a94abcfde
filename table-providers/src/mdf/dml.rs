//! Writes to cubes: `INSERT`, `UPDATE` and `DELETE`, each one commit.
//!
//! - `INSERT` is a blind write: its cells replace any at the same coordinates (latest write
//!   wins) and it never conflicts with a concurrent commit.
//! - `UPDATE` writes the new values of the cells it selected; `DELETE` writes tombstones for
//!   them. Both read the cube first, so they commit only if no commit since the version they
//!   read wrote cells within the bounds of what they write (snapshot isolation, first committer
//!   wins); otherwise they fail with SQLSTATE 40001 and nothing is written.
//!
//! [`CubeDmlRule`] turns `UPDATE` and `DELETE` into an insert of the rows to write into a
//! write-only target (see [`crate::write_target`]); the version the statement read is recorded
//! by its scan (a [`CubeAt`] of the latest version).

use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Result, TableReference, plan_err};
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, LogicalPlan, TableScan, WriteOp};
use datafusion::optimizer::AnalyzerRule;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan};
use futures::TryStreamExt;

use super::log::{Action, Change, FileKind, SnapshotVersion, StatementRef};
use super::maintenance_sql::session_of;
use super::time_travel::{CubeAt, VersionSelector};
use super::transaction::SessionWrites;
use super::{MdfError, MdfTable, write_data_file};
use crate::ledger::Ledger;
use crate::metadata::{CoordinateCheck, Privilege, SessionAccess};
use crate::write_target::{WriteTarget, rewrite_updates_and_deletes};

/// The user a session's commits are recorded under (in the log and `mdf_history`). The server
/// sets it on each connection's session config as a [`SessionConfig`] extension.
///
/// [`SessionConfig`]: datafusion::prelude::SessionConfig
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitAuthor(pub String);

impl CommitAuthor {
    /// The user a running query's commits are recorded under, if its session has one.
    pub fn of(ctx: &TaskContext) -> Option<String> {
        ctx.session_config()
            .get_extension::<CommitAuthor>()
            .map(|author| author.0.clone())
    }
}

/// What a write does with the rows it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// `INSERT`: the rows are cells, written blind.
    Insert,
    /// `UPDATE`: the rows are the new values of cells read.
    Update,
    /// `DELETE`: the rows are cells read, to be deleted.
    Delete,
}

impl WriteKind {
    /// The privilege the write needs.
    fn privilege(self) -> Privilege {
        match self {
            WriteKind::Insert => Privilege::Insert,
            WriteKind::Update => Privilege::Update,
            WriteKind::Delete => Privilege::Delete,
        }
    }

    fn name(self) -> &'static str {
        match self {
            WriteKind::Insert => "insert",
            WriteKind::Update => "update",
            WriteKind::Delete => "delete",
        }
    }
}

/// The oldest version a statement's scans of a cube read, recorded as they plan.
#[derive(Debug, Default)]
pub(crate) struct ReadVersion(Mutex<Option<SnapshotVersion>>);

impl ReadVersion {
    pub(crate) fn read(&self, version: SnapshotVersion) {
        let mut oldest = self.0.lock().expect("read version poisoned");
        *oldest = Some(oldest.map_or(version, |oldest| oldest.min(version)));
    }

    fn get(&self) -> Option<SnapshotVersion> {
        *self.0.lock().expect("read version poisoned")
    }
}

/// Collects a statement's rows and commits them as one file.
#[derive(Debug)]
struct CubeSink {
    table: MdfTable,
    kind: WriteKind,
    read: Option<Arc<ReadVersion>>,
}

impl DisplayAs for CubeSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CubeSink: cube={}, operation={}",
            self.table.definition().name,
            self.kind.name()
        )
    }
}

#[async_trait]
impl DataSink for CubeSink {
    fn schema(&self) -> &SchemaRef {
        self.table.schema_ref()
    }

    async fn write_all(
        &self,
        data: SendableRecordBatchStream,
        context: &Arc<TaskContext>,
    ) -> Result<u64> {
        let batches: Vec<_> = data.try_collect().await?;
        let table = &self.table;
        // A user with a scoped grant writes only cells inside the scope, or nothing.
        if let Some(access) = SessionAccess::of(context.session_config().options()) {
            let dimensions = &table.definition().dimensions;
            let columns: Vec<(&str, &str)> = dimensions
                .iter()
                .map(|d| (d.as_str(), d.as_str()))
                .collect();
            let object = format!("cube.{}", table.definition().name);
            access.check_rows(&object, self.kind.privilege(), &batches, &columns)?;
        }
        // New cells must sit on leaf members; updated and deleted ones are cells already.
        if self.kind == WriteKind::Insert
            && let Some(check) = context.session_config().get_extension::<CoordinateCheck>()
        {
            check
                .check(&table.definition().dimensions, &batches)
                .await?;
        }
        let read_version = self.read.as_ref().and_then(|read| read.get());
        if self.read.is_some() && read_version.is_none() {
            return plan_err!(
                "{} of cube {} did not read it",
                self.kind.name(),
                table.definition().name
            );
        }
        let committed = commit_cells(table, self.kind, &batches, read_version, context).await?;
        Ok(committed.map_or(0, |(rows, _)| rows))
    }
}

/// Writes `batches` (rows of `table`'s schema) as one file and commits it as `kind` says,
/// with `read_version` the version a write that read the cube read; then compacts in the
/// background if the cube needs it. Returns the rows written and the committed version (`None`
/// when staged in a transaction block), or `None` when there was nothing to write.
pub(crate) async fn commit_cells(
    table: &MdfTable,
    kind: WriteKind,
    batches: &[RecordBatch],
    read_version: Option<SnapshotVersion>,
    context: &Arc<TaskContext>,
) -> Result<Option<(u64, Option<SnapshotVersion>)>> {
    let file_kind = match kind {
        WriteKind::Delete => FileKind::Tombstones,
        WriteKind::Insert | WriteKind::Update => FileKind::Cells,
    };
    let Some(file) = write_data_file(
        table.log(),
        table.storage(),
        table.definition(),
        batches,
        file_kind,
    )
    .await?
    else {
        return Ok(None);
    };
    let rows = file.rows;
    let add = vec![file];
    let action = match kind {
        WriteKind::Insert => Action::Append { add },
        WriteKind::Update => Action::Update { add },
        WriteKind::Delete => Action::Delete { add },
    };
    let version = commit_action(table, action, read_version, context).await?;
    Ok(Some((rows, version)))
}

/// Commits `action` on `table` as the session's user, with `read_version` the version a write
/// that read the cube read; inside a transaction block, stages it instead (see
/// [`super::transaction`]) and returns `None`.
pub(crate) async fn commit_action(
    table: &MdfTable,
    action: Action,
    read_version: Option<SnapshotVersion>,
    context: &Arc<TaskContext>,
) -> Result<Option<SnapshotVersion>> {
    let writes = SessionWrites::of(context.session_config());
    if let Some(writes) = &writes
        && writes.stage(table, &action, read_version)?
    {
        return Ok(None);
    }
    let statement = writes.and_then(|writes| writes.statement());
    let user = CommitAuthor::of(context);
    let version = commit_change(table, action, read_version, user, statement, context).await?;
    Ok(Some(version))
}

/// Commits `action` on `table` as `user` for `statement`, then ledgers it and compacts the
/// cube in the background if it needs it.
pub(crate) async fn commit_change(
    table: &MdfTable,
    action: Action,
    read_version: Option<SnapshotVersion>,
    user: Option<String>,
    statement: Option<StatementRef>,
    context: &Arc<TaskContext>,
) -> Result<SnapshotVersion, MdfError> {
    let version = table
        .log()
        .commit(Change {
            action,
            read_version,
            user: user.clone(),
            statement,
        })
        .await?;
    if let Some(ledger) = context.session_config().get_extension::<Ledger>() {
        // The change is committed whatever happens here: an append that fails is made by
        // the next one, or before the ledger is read.
        if let Err(error) = ledger.record_cube(table, &session_of(context)).await {
            tracing::warn!(cube = %table.definition().name, %version, %error, "the ledger could not be appended to now");
        }
    }
    table.compact_in_background(context, user);
    Ok(version)
}

/// The plan writing `input`'s rows into `table` as `kind` says.
pub(crate) fn write_plan(
    table: MdfTable,
    kind: WriteKind,
    input: Arc<dyn ExecutionPlan>,
) -> Arc<dyn ExecutionPlan> {
    let sink = CubeSink {
        table,
        kind,
        read: None,
    };
    Arc::new(DataSinkExec::new(input, Arc::new(sink), None))
}

/// Rewrites `UPDATE` and `DELETE` of a cube into an insert into a write-only target (see the
/// module documentation). Runs after DataFusion's own analyzer rules.
#[derive(Debug, Default)]
pub struct CubeDmlRule;

impl AnalyzerRule for CubeDmlRule {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        rewrite_updates_and_deletes(plan, |dml| {
            let provider = source_as_provider(&dml.target)?;
            let Some(table) = provider.downcast_ref::<MdfTable>() else {
                return Ok(None);
            };
            let kind = match dml.op {
                WriteOp::Update => WriteKind::Update,
                _ => WriteKind::Delete,
            };
            if kind == WriteKind::Update {
                refuse_coordinate_changes(table, &dml.input)?;
            }
            let read = Arc::new(ReadVersion::default());
            let input = record_reads(&dml.table_name, table, &read, dml.input.as_ref().clone())?;
            let sink = CubeSink {
                table: table.clone(),
                kind,
                read: Some(read),
            };
            let what = format!("the target of a cube {}", kind.name());
            let target = WriteTarget::new(table.schema(), what, Arc::new(sink));
            Ok(Some((input, target)))
        })
    }

    fn name(&self) -> &str {
        "cube_dml"
    }
}

/// `plan` with its scans of the cube `name` recording the version they read into `read`.
fn record_reads(
    name: &TableReference,
    table: &MdfTable,
    read: &Arc<ReadVersion>,
    plan: LogicalPlan,
) -> Result<LogicalPlan> {
    plan.transform_up(|plan| match plan {
        LogicalPlan::TableScan(scan) if scan.table_name.resolved_eq(name) => {
            let recorded = CubeAt::new(Arc::new(table.clone()), VersionSelector::Latest)
                .recording(Arc::clone(read));
            Ok(Transformed::yes(LogicalPlan::TableScan(TableScan {
                source: provider_as_source(Arc::new(recorded)),
                ..scan
            })))
        }
        other => Ok(Transformed::no(other)),
    })
    .map(|transformed| transformed.data)
}

/// Fails when an `UPDATE` (its input, a projection naming every column) assigns to a
/// dimension: a cell's coordinate is its identity.
fn refuse_coordinate_changes(table: &MdfTable, input: &LogicalPlan) -> Result<()> {
    let LogicalPlan::Projection(projection) = input else {
        return Ok(());
    };
    for (expr, dimension) in projection.expr.iter().zip(&table.definition().dimensions) {
        let unchanged = match expr {
            Expr::Alias(alias) => {
                matches!(alias.expr.as_ref(), Expr::Column(column) if &column.name == dimension)
            }
            Expr::Column(column) => &column.name == dimension,
            _ => false,
        };
        if !unchanged {
            return Err(MdfError::Unsupported(format!(
                "UPDATE cannot change {dimension}, a coordinate of cube {}: DELETE the cell and INSERT it at its new coordinate",
                table.definition().name
            ))
            .into());
        }
    }
    Ok(())
}
