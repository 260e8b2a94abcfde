//! Copying a slice of a cube onto another, as one commit: a version into another (`Budget` →
//! `Forecast`), a year into the next, an entity's plan into a new entity.
//!
//! `SELECT * FROM mdf_copy(cube, from, to)`: `from` and `to` are JSON objects naming, for the
//! same dimensions, a leaf member each (`'{"version":"Budget"}'`, `'{"version":"Forecast"}'`).
//! Afterwards the `to` slice holds exactly the cells of the `from` slice: each copied, with
//! those dimensions moved to the `to` members, and every cell the `to` slice had that the
//! `from` slice has no counterpart for deleted. Both are written in one commit (cells and
//! tombstones), which fails with 40001 if a commit since the copy read the cube wrote cells
//! within what it writes. It answers one row: `cells_copied`, `cells_deleted`, `version`.
//!
//! DataFusion reads both slices and finds the cells to delete (an anti join), so a copy of a
//! million cells is one scan of each slice and one sort while the files are written.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{JoinType, Result, plan_err};
use datafusion::execution::TaskContext;
use datafusion::prelude::{DataFrame, Expr, SessionContext, col, lit};

use super::arguments::{constant_arguments, members_by_dimension, named_cube};
use super::dml::commit_action;
use super::log::{Action, FileKind};
use super::maintenance_sql::{
    MaintenanceCall, MaintenanceTable, Task, int64_schema, one_row, require, session_of, whole_cube,
};
use super::{CubeSchemaProvider, MdfTable, write_data_file};
use crate::metadata::{MetadataError, MetadataStore, Privilege};

/// `mdf_copy(cube, from, to)`.
#[derive(Debug)]
pub struct MdfCopyFunction {
    cubes: Arc<CubeSchemaProvider>,
    metadata: Arc<dyn MetadataStore>,
}

impl MdfCopyFunction {
    /// The function over `cubes`, their dimensions' members in `metadata`.
    pub fn new(cubes: Arc<CubeSchemaProvider>, metadata: Arc<dyn MetadataStore>) -> Self {
        Self { cubes, metadata }
    }
}

/// One call: the cube, and per dimension moved, its `from` and `to` members.
#[derive(Debug, Clone)]
struct Copy {
    cube: Arc<MdfTable>,
    moved: BTreeMap<String, (String, String)>,
}

impl TableFunctionImpl for MdfCopyFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let arguments = constant_arguments("mdf_copy", &args)?;
        let [cube, from, to] = arguments.as_slice() else {
            return plan_err!(
                "mdf_copy takes a cube and two slices: mdf_copy('cube.finance', '{{\"version\":\"Budget\"}}', '{{\"version\":\"Forecast\"}}')"
            );
        };
        let cube = named_cube(&self.cubes, "mdf_copy", cube)?;
        let needs = whole_cube(
            "mdf_copy",
            &cube,
            &[
                Privilege::Select,
                Privilege::Insert,
                Privilege::Update,
                Privilege::Delete,
            ],
        );
        require(&args, &needs)?;
        let from = members_by_dimension("mdf_copy", "source slice", from)?;
        let mut to = members_by_dimension("mdf_copy", "target slice", to)?;
        let dimensions = &cube.definition().dimensions;
        let mut moved = BTreeMap::new();
        for (dimension, source) in from {
            if !dimensions.contains(&dimension) {
                return plan_err!(
                    "mdf_copy: {dimension} is not a dimension of {}",
                    cube.definition().name
                );
            }
            let Some(target) = to.remove(&dimension) else {
                return plan_err!(
                    "mdf_copy: the target slice names no member of {dimension}; both slices name the same dimensions"
                );
            };
            moved.insert(dimension, (source, target));
        }
        if let Some(dimension) = to.keys().next() {
            return plan_err!(
                "mdf_copy: the source slice names no member of {dimension}; both slices name the same dimensions"
            );
        }
        if moved.len() == dimensions.len() {
            return plan_err!(
                "mdf_copy: a slice leaves at least one dimension free; to copy one cell, INSERT it"
            );
        }
        if moved.values().all(|(source, target)| source == target) {
            return plan_err!("mdf_copy: the slices are the same; name a different target");
        }
        let copy = Copy { cube, moved };
        let metadata = Arc::clone(&self.metadata);
        let schema = int64_schema(&[
            ("cells_copied", false),
            ("cells_deleted", false),
            ("version", true),
        ]);
        let row_schema = Arc::clone(&schema);
        let task: Task = Arc::new(move |ctx: Arc<TaskContext>| {
            let (copy, metadata, schema) =
                (copy.clone(), Arc::clone(&metadata), Arc::clone(&row_schema));
            Box::pin(async move {
                let (copied, deleted, version) = copy.run(metadata.as_ref(), &ctx).await?;
                one_row(
                    &schema,
                    vec![Some(copied as i64), Some(deleted as i64), version],
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

impl Copy {
    /// Checks the members, writes the copied cells and the tombstones, and commits them.
    async fn run(
        &self,
        metadata: &dyn MetadataStore,
        ctx: &Arc<TaskContext>,
    ) -> Result<(u64, u64, Option<i64>)> {
        for (dimension, (source, target)) in &self.moved {
            let codes = [source.clone(), target.clone()];
            let members = metadata.members_with_codes(dimension, &codes).await?;
            for code in codes {
                match members.iter().find(|m| m.code == code) {
                    None => {
                        return Err(MetadataError::InUse(format!(
                            "{code:?} is not a member of {dimension}"
                        ))
                        .into());
                    }
                    Some(member) if !member.is_leaf => {
                        return Err(MetadataError::NotALeaf(format!(
                            "{code:?} of {dimension} has members under it: a slice is copied between leaf members"
                        ))
                        .into());
                    }
                    Some(_) => {}
                }
            }
        }
        let read_version = self.cube.version().await?;
        let session = SessionContext::new_with_state(session_of(ctx));
        let definition = self.cube.definition();
        let slice = |pick: fn(&(String, String)) -> &String| -> Result<DataFrame> {
            let mut cells = session.read_table(Arc::clone(&self.cube) as Arc<dyn TableProvider>)?;
            for (dimension, members) in &self.moved {
                cells = cells.filter(col(dimension.as_str()).eq(lit(pick(members).as_str())))?;
            }
            Ok(cells)
        };
        // The source cells, moved onto the target members.
        let moved_columns: Vec<Expr> = definition
            .dimensions
            .iter()
            .chain(definition.measures.iter().map(|m| &m.name))
            .map(|name| match self.moved.get(name) {
                Some((_, target)) => lit(target.as_str()).alias(name),
                None => col(name.as_str()),
            })
            .collect();
        let copied = slice(|(source, _)| source)?.select(moved_columns)?;
        // The target cells the source has no counterpart for.
        let others: Vec<&str> = definition
            .dimensions
            .iter()
            .filter(|d| !self.moved.contains_key(*d))
            .map(String::as_str)
            .collect();
        let source_columns: Vec<Expr> = others
            .iter()
            .map(|d| col(*d).alias(format!("source_{d}")))
            .collect();
        let counterparts = slice(|(source, _)| source)?.select(source_columns)?;
        let source_keys: Vec<String> = others.iter().map(|d| format!("source_{d}")).collect();
        let source_keys: Vec<&str> = source_keys.iter().map(String::as_str).collect();
        let gone = slice(|(_, target)| target)?.join(
            counterparts,
            JoinType::LeftAnti,
            &others,
            &source_keys,
            None,
        )?;
        let copied = copied.collect().await?;
        let gone = gone.collect().await?;
        let mut add = Vec::new();
        let (mut cells_copied, mut cells_deleted) = (0, 0);
        for (batches, kind) in [(&copied, FileKind::Cells), (&gone, FileKind::Tombstones)] {
            let file = write_data_file(
                self.cube.log(),
                self.cube.storage(),
                definition,
                batches,
                kind,
            )
            .await?;
            if let Some(file) = file {
                match kind {
                    FileKind::Cells => cells_copied = file.rows,
                    _ => cells_deleted = file.rows,
                }
                add.push(file);
            }
        }
        if add.is_empty() {
            return Ok((0, 0, None));
        }
        let version =
            commit_action(&self.cube, Action::Update { add }, Some(read_version), ctx).await?;
        Ok((
            cells_copied,
            cells_deleted,
            version.map(|version| version.0 as i64),
        ))
    }
}
