//! Member maintenance in SQL: `INSERT`, `UPDATE` and `DELETE` on `dim.<dimension>`.
//!
//! - `INSERT INTO dim.entity (code, name, parent, attributes) VALUES ...` adds members; a
//!   parent may be an existing member or one listed earlier in the same statement.
//! - `UPDATE dim.entity SET name = ..., parent = ..., code = ..., attributes = ... WHERE ...`
//!   renames and moves members: a new parent moves the member with its whole subtree, a new
//!   code carries its children along.
//! - `DELETE FROM dim.entity WHERE ...` removes members; their children must go in the same
//!   statement.
//!
//! `path`, `level`, `is_leaf` and `sort_order` are derived and cannot be given. Each statement
//! is one change of the dimension, committed atomically by the store, after
//! [`apply_member_changes`] checked it; a concurrent change to the same dimension makes it fail
//! with SQLSTATE 40001. Cells are respected: a member with cells cannot be deleted (unless the
//! session sets `quantatom.force_member_delete`, which deletes its cells in every cube first),
//! renamed (cells are stored by code), or get children (cells sit on leaves).
//!
//! As for cubes, [`MemberDmlRule`] turns `UPDATE` and `DELETE` into an insert of the rows to
//! write into a write-only target (see [`crate::write_target`]), so `WHERE` may use anything a
//! query can.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DataFusionError, Result, TableReference, plan_err};
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::datasource::source_as_provider;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan, Projection, WriteOp};
use datafusion::optimizer::AnalyzerRule;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan};
use futures::TryStreamExt;

use super::dimension_table::{DERIVED_COLUMNS, dimension_schema};
use super::{
    ChangeAuthor, ChangedMembers, DimensionTable, MemberChange, MemberSpec, MetadataError,
    MetadataStore, Privilege, SessionAccess, apply_member_changes, check_alternate_hierarchy,
};
use crate::fail_point::fail_point;
use crate::ledger::Ledger;
use crate::mdf::dml::CommitAuthor;
use crate::mdf::transaction::SessionWrites;
use crate::settings::QuantatomOptions;
use crate::write_target::{WriteTarget, rewrite_updates_and_deletes};

/// The cells that sit on members, as member maintenance must respect them.
#[async_trait]
pub trait MemberCells: fmt::Debug + Send + Sync {
    /// A cube holding cells at one of `codes` of `dimension`, and that code.
    async fn find_cells(
        &self,
        ctx: &Arc<TaskContext>,
        dimension: &str,
        codes: &[String],
    ) -> Result<Option<(String, String)>>;

    /// Deletes the cells at `codes` of `dimension` in every cube, one commit per cube;
    /// returns how many were deleted.
    async fn delete_cells(
        &self,
        ctx: &Arc<TaskContext>,
        dimension: &str,
        codes: &[String],
    ) -> Result<u64>;
}

/// What a member write does with the rows it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MemberWriteKind {
    /// `INSERT`: each row is a new member.
    Insert,
    /// `UPDATE`: each row is a member's new values, followed by its code before.
    Update,
    /// `DELETE`: each row is a member to remove.
    Delete,
}

/// The column an `UPDATE`'s rows carry the member's code before the change in.
const CODE_BEFORE: &str = "__code_before";

impl MemberWriteKind {
    fn name(self) -> &'static str {
        match self {
            MemberWriteKind::Insert => "insert",
            MemberWriteKind::Update => "update",
            MemberWriteKind::Delete => "delete",
        }
    }

    /// The rows a write of this kind takes: the dimension's columns, none required (derived
    /// ones are absent from an `INSERT`), and for `UPDATE` the code before.
    fn schema(self) -> SchemaRef {
        let mut fields: Vec<Field> = dimension_schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        if self == MemberWriteKind::Update {
            fields.push(Field::new(CODE_BEFORE, DataType::Utf8, true));
        }
        Arc::new(Schema::new(fields))
    }
}

/// Applies a statement's rows to a dimension's members.
#[derive(Debug)]
struct MemberSink {
    table: DimensionTable,
    kind: MemberWriteKind,
    schema: SchemaRef,
}

impl MemberSink {
    fn new(table: DimensionTable, kind: MemberWriteKind) -> Self {
        Self {
            table,
            kind,
            schema: kind.schema(),
        }
    }

    /// The change each row asks for.
    fn changes(&self, batch: &RecordBatch) -> Result<Vec<MemberChange>> {
        let text = |name: &str| -> Result<Vec<Option<String>>> {
            let column = cast(
                batch.column_by_name(name).expect("sink schema"),
                &DataType::Utf8,
            )?;
            Ok(column
                .as_string::<i32>()
                .iter()
                .map(|v| v.map(str::to_owned))
                .collect())
        };
        let codes = text("code")?;
        if self.kind == MemberWriteKind::Delete {
            return Ok(codes
                .into_iter()
                .flatten()
                .map(|code| MemberChange::Delete { code })
                .collect());
        }
        if self.kind == MemberWriteKind::Insert {
            for column in DERIVED_COLUMNS {
                if batch
                    .column_by_name(column)
                    .expect("sink schema")
                    .null_count()
                    < batch.num_rows()
                {
                    return Err(derived_column(column).into());
                }
            }
        }
        let names = text("name")?;
        let parents = text("parent")?;
        let attributes = text("attributes")?;
        let before = match self.kind {
            MemberWriteKind::Update => text(CODE_BEFORE)?,
            _ => vec![None; batch.num_rows()],
        };
        let mut changes = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            let code = codes[row].clone().ok_or_else(|| {
                MetadataError::NotNull("a member's code cannot be NULL".to_owned())
            })?;
            let spec = MemberSpec {
                name: names[row].clone().unwrap_or_else(|| code.clone()),
                parent: parents[row].clone(),
                attributes: match &attributes[row] {
                    None => Default::default(),
                    Some(json) => serde_json::from_str(json).map_err(|e| {
                        MetadataError::Invalid(format!(
                            "attributes of member {code:?} must be a JSON object of strings: {e}"
                        ))
                    })?,
                },
                code,
            };
            changes.push(match &before[row] {
                Some(code) => MemberChange::Update {
                    code: code.clone(),
                    values: spec,
                },
                None => MemberChange::Add(spec),
            });
        }
        Ok(changes)
    }

    /// Fails when a change would break an alternate hierarchy: one whose leaves are not all
    /// members of its dimension, or a dimension member deleted or renamed while a hierarchy
    /// still places it.
    async fn keep_hierarchies_whole(&self, changed: &ChangedMembers) -> Result<()> {
        let store = self.table.store.as_ref();
        let name = &self.table.dimension;
        let dimensions = store.dimensions().await?;
        let this = dimensions
            .iter()
            .find(|d| &d.name == name)
            .ok_or_else(|| MetadataError::NotFound(format!("dimension {name:?}")))?;
        check_alternate_hierarchy(store, this, &changed.members).await?;
        let gone: Vec<&String> = changed.deleted.iter().chain(&changed.renamed).collect();
        if gone.is_empty() {
            return Ok(());
        }
        for hierarchy in dimensions
            .iter()
            .filter(|d| d.hierarchy_of.as_ref() == Some(name))
        {
            let placed = store.members(&hierarchy.name).await?;
            if let Some(member) = placed.iter().find(|m| gone.contains(&&m.code)) {
                return Err(MetadataError::InUse(format!(
                    "member {:?} of {name} sits in hierarchy {}: remove it there first",
                    member.code, hierarchy.name
                ))
                .into());
            }
        }
        Ok(())
    }

    /// Fails when a change would move, rename or delete the member a grant's scope names
    /// (its path is the scope): revoke the grant first, and grant it again after.
    async fn keep_grant_scopes(&self, changed: &ChangedMembers) -> Result<()> {
        let (access, _) = self.table.store.access().await?;
        let dimension = &self.table.dimension;
        for grant in &access.grants {
            let Some(scope) = grant.scope.as_ref().filter(|s| &s.dimension == dimension) else {
                continue;
            };
            if !changed.members.iter().any(|m| m.path == scope.path) {
                return Err(MetadataError::InUse(format!(
                    "the member at {} of {dimension} scopes a grant of {} on {} to {}: revoke it first, and grant it again after",
                    scope.path,
                    grant.privilege.sql(),
                    grant.object,
                    grant.grantee
                ))
                .into());
            }
        }
        Ok(())
    }

    /// Fails when a change would take cells off the members they sit on; with
    /// `force_member_delete`, deletes the cells of deleted members instead.
    async fn respect_cells(
        &self,
        context: &Arc<TaskContext>,
        changed: &ChangedMembers,
    ) -> Result<()> {
        let cells = &self.table.cells;
        let dimension = &self.table.dimension;
        if let Some((cube, code)) = cells
            .find_cells(context, dimension, &changed.renamed)
            .await?
        {
            return Err(MetadataError::InUse(format!(
                "member {code:?} of {dimension} has cells in cube {cube} and cannot change its code"
            ))
            .into());
        }
        if let Some((cube, code)) = cells
            .find_cells(context, dimension, &changed.new_parents)
            .await?
        {
            return Err(MetadataError::InUse(format!(
                "member {code:?} of {dimension} has cells in cube {cube} and cannot get children: cells sit on leaf members"
            ))
            .into());
        }
        let force = QuantatomOptions::of(context.session_config()).force_member_delete;
        if force {
            let deleted = cells
                .delete_cells(context, dimension, &changed.deleted)
                .await?;
            if deleted > 0 {
                tracing::info!(dimension, deleted, members = ?changed.deleted, "deleted the cells of deleted members");
            }
        } else if let Some((cube, code)) = cells
            .find_cells(context, dimension, &changed.deleted)
            .await?
        {
            return Err(MetadataError::InUse(format!(
                "member {code:?} of {dimension} has cells in cube {cube}: delete them first, or SET quantatom.force_member_delete = true to delete them with the member"
            ))
            .into());
        }
        Ok(())
    }
}

fn derived_column(column: &str) -> MetadataError {
    MetadataError::Derived(format!(
        "column {column} of a dimension is derived from the members' parents and cannot be given: set parent to move a member"
    ))
}

impl DisplayAs for MemberSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MemberSink: dimension={}, operation={}",
            self.table.dimension,
            self.kind.name()
        )
    }
}

#[async_trait]
impl DataSink for MemberSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        data: SendableRecordBatchStream,
        context: &Arc<TaskContext>,
    ) -> Result<u64> {
        if SessionWrites::of(context.session_config()).is_some_and(|writes| writes.in_block()) {
            return Err(MetadataError::Unsupported(format!(
                "changes to the members of {} commit on their own: run them outside a transaction block",
                self.table.dimension
            ))
            .into());
        }
        let batches: Vec<RecordBatch> = data.try_collect().await?;
        self.check_scope(context, &batches)?;
        let mut changes = Vec::new();
        for batch in &batches {
            changes.extend(self.changes(batch)?);
        }
        if changes.is_empty() {
            return Ok(0);
        }
        let rows = changes.len() as u64;
        let store: &dyn MetadataStore = self.table.store.as_ref();
        let dimension = &self.table.dimension;
        // The version first: members read after it are at least as new, and the commit fails
        // if anything changed since.
        let version = store.dimension_version(dimension).await?;
        let members = store.members(dimension).await?;
        let changed = apply_member_changes(&members, changes)?;
        self.keep_hierarchies_whole(&changed).await?;
        self.keep_grant_scopes(&changed).await?;
        self.respect_cells(context, &changed).await?;
        let author = ChangeAuthor {
            user: CommitAuthor::of(context),
            statement: SessionWrites::of(context.session_config())
                .and_then(|writes| writes.statement()),
        };
        store
            .commit_members(dimension, version, changed.members, &author)
            .await?;
        fail_point("metadata.after_member_commit");
        if let Some(ledger) = context.session_config().get_extension::<Ledger>() {
            // The change and its history are committed: a failure here is made good by the
            // next append or before the ledger is read.
            if let Err(error) = ledger.record_dimension(dimension).await {
                tracing::warn!(dimension, %error, "the ledger could not be appended to now");
            }
        }
        Ok(rows)
    }
}

impl MemberSink {
    /// 42501 unless the session's grant on the dimension reaches every member the rows
    /// change: a new member's parent, a changed member as it was and its (new) parent, a
    /// deleted member.
    fn check_scope(&self, context: &TaskContext, batches: &[RecordBatch]) -> Result<()> {
        let Some(access) = SessionAccess::of(context.session_config().options()) else {
            return Ok(());
        };
        let dimension = self.table.members_of();
        let object = format!("dim.{}", self.table.dimension);
        let (privilege, columns): (Privilege, &[&str]) = match self.kind {
            MemberWriteKind::Insert => (Privilege::Insert, &["parent"]),
            MemberWriteKind::Update => (Privilege::Update, &[CODE_BEFORE, "parent"]),
            MemberWriteKind::Delete => (Privilege::Delete, &["code"]),
        };
        for column in columns {
            access.check_rows(&object, privilege, batches, &[(dimension, column)])?;
        }
        Ok(())
    }
}

/// The plan applying `input`'s rows to `table`'s members as `kind` says.
fn write_plan(
    table: DimensionTable,
    kind: MemberWriteKind,
    input: Arc<dyn ExecutionPlan>,
) -> Arc<dyn ExecutionPlan> {
    let sink = MemberSink::new(table, kind);
    Arc::new(DataSinkExec::new(input, Arc::new(sink), None))
}

/// `INSERT INTO dim.<dimension>`.
pub(super) fn insert_plan(
    table: &DimensionTable,
    input: Arc<dyn ExecutionPlan>,
    insert_op: InsertOp,
) -> Result<Arc<dyn ExecutionPlan>> {
    if insert_op != InsertOp::Append {
        return plan_err!(
            "{insert_op} into dimension {} is not supported: INSERT adds members, UPDATE changes them",
            table.dimension
        );
    }
    Ok(write_plan(table.clone(), MemberWriteKind::Insert, input))
}

/// Rewrites `UPDATE` and `DELETE` of a dimension into an insert into a write-only target (see
/// the module documentation). Runs after DataFusion's own analyzer rules.
#[derive(Debug, Default)]
pub struct MemberDmlRule;

impl AnalyzerRule for MemberDmlRule {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        rewrite_updates_and_deletes(plan, |dml| {
            let provider = source_as_provider(&dml.target)?;
            let Some(table) = provider.downcast_ref::<DimensionTable>() else {
                return Ok(None);
            };
            let (kind, input) = match dml.op {
                WriteOp::Update => (
                    MemberWriteKind::Update,
                    with_code_before(&dml.table_name, &dml.input)?,
                ),
                _ => (MemberWriteKind::Delete, dml.input.as_ref().clone()),
            };
            let what = format!("the target of a dimension {}", kind.name());
            let sink = MemberSink::new(table.clone(), kind);
            Ok(Some((
                input,
                WriteTarget::new(kind.schema(), what, Arc::new(sink)),
            )))
        })
    }

    fn name(&self) -> &str {
        "member_dml"
    }
}

/// An `UPDATE`'s input (a projection of every column, assignments applied) with the code
/// each member had before appended; fails when it assigns to a derived column.
fn with_code_before(table: &TableReference, input: &LogicalPlan) -> Result<LogicalPlan> {
    let LogicalPlan::Projection(projection) = input else {
        return plan_err!("UPDATE of a dimension: unexpected plan shape\n{input}");
    };
    for (expr, field) in projection.expr.iter().zip(dimension_schema().fields()) {
        let name = field.name();
        let unchanged = match expr {
            Expr::Alias(alias) => {
                matches!(alias.expr.as_ref(), Expr::Column(column) if column.name == *name)
            }
            Expr::Column(column) => column.name == *name,
            _ => false,
        };
        if DERIVED_COLUMNS.contains(&name.as_str()) && !unchanged {
            return Err(derived_column(name).into());
        }
    }
    let qualifiers = names_of_target(table, &projection.input)?;
    let source_schema = projection.input.schema();
    let code_before = source_schema
        .iter()
        .find(|(qualifier, field)| {
            field.name() == "code"
                && qualifier.is_some_and(|q| qualifiers.iter().any(|name| name.resolved_eq(q)))
        })
        .map(|(qualifier, _)| Expr::Column(Column::new(qualifier.cloned(), "code")))
        .ok_or_else(|| {
            DataFusionError::Plan(format!(
                "UPDATE of {table}: the code of the rows read is missing"
            ))
        })?;
    let code_before = code_before
        .cast_to(&DataType::Utf8, source_schema)?
        .alias(CODE_BEFORE);
    let mut expr = projection.expr.clone();
    expr.push(code_before);
    Ok(LogicalPlan::Projection(Projection::try_new(
        expr,
        Arc::clone(&projection.input),
    )?))
}

/// The names the target table goes by in `plan`: its own, and aliases given to its scans.
fn names_of_target(table: &TableReference, plan: &LogicalPlan) -> Result<Vec<TableReference>> {
    let mut names = vec![table.clone()];
    plan.apply(|node| {
        if let LogicalPlan::SubqueryAlias(alias) = node
            && let LogicalPlan::TableScan(scan) = alias.input.as_ref()
            && scan.table_name.resolved_eq(table)
        {
            names.push(alias.alias.clone());
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(names)
}
