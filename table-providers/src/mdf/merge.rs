//! Merge-on-read: the cells of a snapshot, where a later write of a coordinate replaces an
//! earlier one and a tombstone deletes it.
//!
//! Every data file carries a sequence number (`seq`, its commit's version) and the bounds of
//! its coordinates. Two files can share a coordinate only if their `seq`s differ and their
//! bounds meet ([`Snapshot::rivals`]), so most reads need no merging at all:
//!
//! - Only files that can hold a cell the query's coordinate filters admit take part, and
//!   only the boxes two files share that those filters meet count ([`Contest`]).
//! - Files that share no such box are read as they are: one DataFusion Parquet scan over all
//!   of them. A freshly loaded or compacted cube is only such files.
//! - Rows inside a shared box are *contested*: one scan reads them from every file sharing a
//!   box (the granules a box touches), tagged with their file's `seq`, and ranks them per
//!   coordinate (`row_number()` over the coordinate, newest first); the newest wins, and is
//!   dropped when it is a tombstone.
//! - The other rows of those files are read as they are: the granules no box touches in
//!   the first scan, the granules a box touches in a third one that drops the rows inside a
//!   box. However many files wait for a compaction, a read is at most four scans (an
//!   aggregate reading summaries adds one per file with rivals, see
//!   [`CubeFiles::summary_scan`]).
//!
//! The plan is built as a DataFusion logical plan over plain Parquet scans (unions, filters
//! and a window) and planned by the session, so pruning, parallelism and a distributed
//! engine's codecs apply unchanged. Filters on coordinates are applied to every scan before
//! the ranking (a coordinate passes them in every file or in none); filters on measures only
//! after it, where DataFusion keeps them, since an old value must not win by passing them.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Column, DataFusionError, Result, ScalarValue, internal_err};
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::ParquetRowSelection;
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::datasource::{TableType, provider_as_source};
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::expr_fn::col;
use datafusion::logical_expr::expr_rewriter::unnormalize_col;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{
    Expr, ExprFunctionExt, LogicalPlan, LogicalPlanBuilder, TableProviderFilterPushDown,
};
use datafusion::logical_expr::{cast, lit};
use datafusion::parquet::arrow::arrow_reader::{RowSelection, RowSelector};
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::{ExecutionPlan, Partitioning, execute_stream};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;

use super::log::rivals_among;
use super::marks::{Allowed, GRANULE_ROWS, Marks};
use super::summary::{CELLS_COLUMN, GRANULE_COLUMN, file_schema, partial_fields, summary_path};
use super::writer::ROW_GROUP_ROWS;
use super::{CellBounds, DataFile, FileKind, Snapshot};
use crate::storage::Storage;

/// How many data files' footers a scan being planned fetches at once, on a cache miss.
const FOOTERS_READ_AT_ONCE: usize = 16;

/// The column holding a contested row's file `seq`.
const SEQ: &str = "__mdf_seq";
/// The column saying whether a contested row is a tombstone.
const TOMBSTONE: &str = "__mdf_tombstone";
/// The column ranking a coordinate's contested rows, newest first.
const RANK: &str = "__mdf_rank";

/// Where a cube's files are and what a row of them is.
#[derive(Debug, Clone)]
pub(crate) struct CubeFiles {
    /// The store.
    pub storage: Storage,
    /// The cube's folder; data file paths are relative to it.
    pub cube_dir: Path,
    /// The cube's columns: dimensions first, then measures.
    pub schema: SchemaRef,
    /// How many leading columns are dimensions.
    pub dimensions: usize,
}

impl CubeFiles {
    /// The cells of `snapshot` (see the module documentation), with `projection`, the
    /// coordinate filters among `filters` applied before merging, and `limit`.
    pub(crate) async fn scan(
        &self,
        state: &dyn Session,
        snapshot: &Snapshot,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let reading = self.reading(state, snapshot, filters).await?;
        if reading.merged.is_empty() {
            // No file has a rival: one plain scan.
            return self
                .regions(reading.plain, false)
                .scan(state, projection, filters, limit)
                .await;
        }
        let mut parts = Vec::new();
        if !reading.plain.is_empty() {
            let plain = self.regions(reading.plain, false);
            parts.push(self.read(plain, reading.coordinate_filter)?);
        }
        parts.extend(reading.merged);
        let mut plan = union_all(parts)?;
        let columns = self.columns();
        let projected: Vec<Expr> = match projection {
            Some(indices) => indices.iter().map(|&i| columns[i].clone()).collect(),
            None => columns,
        };
        let empty_projection = projected.is_empty();
        if !empty_projection {
            plan = plan.project(projected)?;
        }
        if limit.is_some() {
            plan = plan.limit(0, limit)?;
        }
        let physical = state.create_physical_plan(&plan.build()?).await?;
        if empty_projection {
            return only_row_count(physical);
        }
        Ok(physical)
    }

    /// The cells of `snapshot` summed by the cube's first `keep` dimensions, in the columns
    /// of [`partial_fields`], with `projection` and the coordinate filters among `filters`
    /// (which read only those dimensions) applied: per granule that would be read as it is,
    /// its summary rows when its file has a summary keeping as many dimensions, and every
    /// other cell as a row of its own (see [`super::summary`]).
    pub(crate) async fn summary_scan(
        &self,
        state: &dyn Session,
        snapshot: &Snapshot,
        keep: usize,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let reading = self.reading(state, snapshot, filters).await?;
        let fields = partial_fields(&self.schema, self.dimensions, keep);
        let summarised =
            |file: &DataFile| file.summary.as_ref().is_some_and(|s| s.dimensions >= keep);
        let (with_summary, mut cells): (Vec<_>, Vec<_>) =
            (reading.plain.into_iter()).partition(|(file, _)| summarised(file));
        let (whole, partly): (Vec<_>, Vec<_>) =
            (with_summary.into_iter()).partition(|(_, region)| matches!(region, Region::Whole));
        let mut parts = Vec::new();
        if !whole.is_empty() {
            let files = whole.into_iter().map(|(file, _)| file).collect();
            let filter = reading.coordinate_filter.clone();
            parts.push(self.read_summaries(files, keep, &fields, filter)?);
        }
        // The marks of every partly read file at once (fetched together on a cache miss).
        let marks = self
            .marks(
                state,
                &partly.iter().map(|(file, _)| file).collect::<Vec<_>>(),
            )
            .await?;
        for ((file, region), marks) in partly.into_iter().zip(marks) {
            // A summary numbers granules of GRANULE_ROWS; marks of another size do not tell
            // which of its rows to take.
            let Some(marks) = marks.filter(|marks| marks.granule_rows == GRANULE_ROWS) else {
                cells.push((file, region));
                continue;
            };
            let granules = selected_granules(&marks, &reading.allowed, &region);
            if granules.is_empty() {
                continue;
            }
            let granules = granules.into_iter().map(|g| lit(g as u32)).collect();
            let in_granules = col(GRANULE_COLUMN).in_list(granules, false);
            let filter = and_maybe(in_granules, reading.coordinate_filter.clone());
            parts.push(self.read_summaries(vec![file], keep, &fields, Some(filter))?);
        }
        let mut unsummarised = Vec::new();
        if !cells.is_empty() {
            let plain = self.regions(cells, false);
            unsummarised.push(self.read(plain, reading.coordinate_filter)?);
        }
        unsummarised.extend(reading.merged);
        if !unsummarised.is_empty() {
            parts.push(self.as_partials(union_all(unsummarised)?, keep, &fields)?);
        }
        let projected: Vec<Expr> = match projection {
            Some(indices) => indices.iter().map(|&i| column(fields[i].name())).collect(),
            None => fields.iter().map(|field| column(field.name())).collect(),
        };
        if parts.is_empty() {
            let schema = Schema::new(fields);
            let schema = match projection {
                Some(indices) => schema.project(indices)?,
                None => schema,
            };
            return Ok(Arc::new(EmptyExec::new(Arc::new(schema))));
        }
        if projected.is_empty() {
            // A row is no cell here: a count reads `cells$`.
            return internal_err!("a summary scan reads at least one column");
        }
        let plan = union_all(parts)?.project(projected)?.build()?;
        state.create_physical_plan(&plan).await
    }

    /// The summary rows of `files` (each with a summary keeping at least `keep` dimensions),
    /// filtered by `filter`, in the columns `fields` ([`partial_fields`] for `keep`).
    fn read_summaries(
        &self,
        files: Vec<DataFile>,
        keep: usize,
        fields: &[Field],
        filter: Option<Expr>,
    ) -> Result<LogicalPlan> {
        let summaries = SummarySet {
            cube: self.clone(),
            files,
            schema: file_schema(&self.schema, self.dimensions, keep),
        };
        LogicalPlanBuilder::from(self.read_provider(Arc::new(summaries), filter)?)
            .project(fields.iter().map(|field| column(field.name())))?
            .build()
    }

    /// `cells` (rows of the cube's columns) as rows of `fields` ([`partial_fields`] for
    /// `keep`): one cell each.
    fn as_partials(
        &self,
        cells: LogicalPlanBuilder,
        keep: usize,
        fields: &[Field],
    ) -> Result<LogicalPlan> {
        let mut columns: Vec<Expr> = self.columns()[..keep].to_vec();
        // Per measure: its sum, count, minimum and maximum, in the fields' order and types.
        let measures = self.schema.fields()[self.dimensions..].iter();
        for (measure, partials) in measures.zip(fields[keep..].chunks(4)) {
            let value = column(measure.name());
            let present = value.clone().is_not_null();
            let per_cell = [value.clone(), present, value.clone(), value];
            for (expr, field) in per_cell.into_iter().zip(partials) {
                columns.push(cast(expr, field.data_type().clone()).alias(field.name()));
            }
        }
        columns.push(lit(1i64).alias(CELLS_COLUMN));
        cells.project(columns)?.build()
    }

    /// How `snapshot`'s cells are read under `filters`: which granules as they are, and the
    /// reads that merge the rest (see the module documentation).
    async fn reading(
        &self,
        state: &dyn Session,
        snapshot: &Snapshot,
        filters: &[Expr],
    ) -> Result<Reading> {
        let coordinate_filters = filters
            .iter()
            .filter(|filter| self.is_on_coordinates(filter))
            .map(|filter| unnormalize_col(filter.clone()))
            .collect::<Vec<_>>();
        let allowed = Allowed::from_filters(&self.dimension_names(), &coordinate_filters);
        // A file that cannot hold a cell the filters admit takes no part, nor does a box
        // two files share outside what they admit.
        let files: Vec<&DataFile> = (snapshot.files.iter())
            .filter(|file| (file.bounds.as_ref()).is_none_or(|b| Allowed::meets(&allowed, b)))
            .collect();
        let contest = Contest::among(&files, &allowed);
        let whole: Vec<DataFile> = (files.iter().zip(&contest.rivalled))
            .filter(|(file, rivalled)| !**rivalled && file.kind == FileKind::Cells)
            .map(|(file, _)| (*file).clone())
            .collect();
        let rivalled: Vec<DataFile> = (files.iter().zip(&contest.rivalled))
            .filter(|(_, rivalled)| **rivalled)
            .map(|(file, _)| (*file).clone())
            .collect();
        let coordinate_filter = conjunction(coordinate_filters);
        // Read as they are: the files without rivals, and the granules of the others that no
        // shared box touches.
        let mut plain: Vec<(DataFile, Region)> = whole
            .into_iter()
            .map(|file| (file, Region::Whole))
            .collect();
        if rivalled.is_empty() {
            return Ok(Reading {
                plain,
                merged: Vec::new(),
                coordinate_filter,
                allowed,
            });
        }

        let boxes: Option<Arc<[CellBounds]>> = match contest.boxes {
            Some(boxes) => {
                let files: Vec<&DataFile> = rivalled.iter().collect();
                // Without every file's marks a hull's cost is unknown: no merging then.
                let marks: Option<Vec<Arc<Marks>>> =
                    self.marks(state, &files).await?.into_iter().collect();
                Some(match marks {
                    Some(marks) => merged(boxes, &allowed, &marks).into(),
                    None => boxes.into(),
                })
            }
            None => None,
        };
        let (inside, touching) = match &boxes {
            Some(boxes) => (self.inside_any(boxes), Region::Touching(Arc::clone(boxes))),
            None => (lit(true), Region::Whole),
        };
        let rivalled_cells = || rivalled.iter().filter(|file| file.kind == FileKind::Cells);
        // A file inside one box (such as a one-cell edit) has every row contested.
        let covered = |file: &DataFile| match (&boxes, &file.bounds) {
            (Some(boxes), Some(bounds)) => boxes.iter().any(|shared| shared.covers(bounds)),
            _ => false,
        };
        let mut edges = Vec::new();
        if let Some(boxes) = &boxes {
            for file in rivalled_cells() {
                plain.push((file.clone(), Region::Clear(Arc::clone(boxes))));
                // The rows outside every box in the granules a box touches.
                if !covered(file) {
                    edges.push((file.clone(), touching.clone()));
                }
            }
        }
        let mut merged_reads = Vec::new();
        if !edges.is_empty() {
            let outside = and_maybe(!inside.clone(), coordinate_filter.clone());
            merged_reads.push(self.read(self.regions(edges, false), Some(outside))?);
        }
        // The rows inside the boxes, of every rivalled file (tombstones too), each tagged with
        // its file's `seq` and kind: the files inside a box whole, without testing the boxes,
        // the others' rows inside one.
        let (whole_files, partly): (Vec<DataFile>, Vec<DataFile>) =
            rivalled.into_iter().partition(|file| covered(file));
        let mut contested = Vec::new();
        if !whole_files.is_empty() {
            let files = whole_files.into_iter().map(|file| (file, Region::Whole));
            let set = self.regions(files.collect(), true);
            contested.push(self.read(set, coordinate_filter.clone())?);
        }
        if !partly.is_empty() {
            let files = partly.into_iter().map(|file| (file, touching.clone()));
            let set = self.regions(files.collect(), true);
            let filter = and_maybe(inside, coordinate_filter.clone());
            contested.push(self.read(set, Some(filter))?);
        }
        let newest_first = row_number()
            .partition_by(self.columns()[..self.dimensions].to_vec())
            .order_by(vec![col(SEQ).sort(false, false)])
            .build()?
            .alias(RANK);
        let winners = union_all(contested)?
            .window(vec![newest_first])?
            .filter(col(RANK).eq(lit(1u64)).and(!col(TOMBSTONE)))?
            .project(self.columns())?
            .build()?;
        merged_reads.push(winners);
        Ok(Reading {
            plain,
            merged: merged_reads,
            coordinate_filter,
            allowed,
        })
    }

    /// How many rows of `file` lie in a box it shares with one of `rivals` (all of them when
    /// it or one of them has no bounds): the rows a read merging it with them ranks per
    /// coordinate. Counted by reading the file's dimension columns where its marks allow.
    pub(crate) async fn rows_inside(
        &self,
        state: &dyn Session,
        file: &DataFile,
        rivals: &[&DataFile],
    ) -> Result<u64> {
        let shared = self.any_shared_box(file, rivals);
        if shared == lit(false) {
            return Ok(0);
        }
        if shared == lit(true) {
            return Ok(file.rows);
        }
        let first_dimension = self.columns().swap_remove(0);
        let plan =
            LogicalPlanBuilder::from(self.read(self.file_set(vec![file.clone()]), Some(shared))?)
                .project(vec![first_dimension])?
                .build()?;
        let rows = execute_stream(state.create_physical_plan(&plan).await?, state.task_ctx())?;
        rows.try_fold(0, |count, batch| async move {
            Ok(count + batch.num_rows() as u64)
        })
        .await
    }

    /// The marks of each of `files` that has usable ones. A file's marks are read from its
    /// footer once (then kept with its log entry); the footer comes from DataFusion's
    /// metadata cache, which the scan's opener reads too, and on a miss footers are fetched
    /// several at a time, not one after another.
    pub(crate) async fn marks(
        &self,
        state: &dyn Session,
        files: &[&DataFile],
    ) -> Result<Vec<Option<Arc<Marks>>>> {
        let runtime = state.runtime_env();
        let store = runtime.object_store(self.storage.url())?;
        let metadata_cache = runtime.cache_manager.get_file_metadata_cache();
        let dimensions = self.dimensions;
        let footers: Vec<_> = (files.iter())
            .map(|file| {
                let path = format!("{}/{}", self.cube_dir, file.path);
                let object = PartitionedFile::new(path, file.size).object_meta;
                (file.marks.clone(), object, file.rows as usize)
            })
            .collect();
        futures::stream::iter(footers)
            .map(|(cell, object, rows)| {
                let (store, metadata_cache) = (Arc::clone(&store), Arc::clone(&metadata_cache));
                async move {
                    let marks = match cell.get() {
                        Some(known) => known,
                        None => {
                            let metadata = DFParquetMetadata::new(store.as_ref(), &object)
                                .with_file_metadata_cache(Some(metadata_cache))
                                .fetch_metadata()
                                .await?;
                            let footer = metadata.file_metadata().key_value_metadata();
                            cell.record(Marks::from_footer(footer))
                        }
                    };
                    let usable =
                        |marks: &Arc<Marks>| marks.rows == rows && marks.last.len() == dimensions;
                    Ok::<_, DataFusionError>(marks.filter(usable))
                }
            })
            .buffered(FOOTERS_READ_AT_ONCE)
            .try_collect()
            .await
    }

    /// A table of just `files`, read whole.
    pub(crate) fn file_set(&self, files: Vec<DataFile>) -> FileSet {
        let files = files
            .into_iter()
            .map(|file| (file, Region::Whole))
            .collect();
        self.regions(files, false)
    }

    /// A table of some granules of some files; `tagged`: with each row's file `seq` and
    /// kind ([`SEQ`], [`TOMBSTONE`]).
    fn regions(&self, files: Vec<(DataFile, Region)>, tagged: bool) -> FileSet {
        let tags = match tagged {
            true => vec![
                Arc::new(Field::new(SEQ, DataType::UInt64, false)),
                Arc::new(Field::new(TOMBSTONE, DataType::Boolean, false)),
            ],
            false => Vec::new(),
        };
        FileSet {
            cube: self.clone(),
            files,
            schema: TableSchema::builder(Arc::clone(&self.schema))
                .with_table_partition_cols(tags)
                .build(),
        }
    }

    /// A scan of `files`, filtered by `filter`.
    fn read(&self, files: FileSet, filter: Option<Expr>) -> Result<LogicalPlan> {
        self.read_provider(Arc::new(files), filter)
    }

    /// A scan of `files` (a [`FileSet`] or a [`SummarySet`]), filtered by `filter`.
    fn read_provider(
        &self,
        files: Arc<dyn TableProvider>,
        filter: Option<Expr>,
    ) -> Result<LogicalPlan> {
        let source = provider_as_source(files);
        let scan = LogicalPlanBuilder::scan("mdf_files", source, None)?;
        match filter {
            Some(filter) => scan.filter(filter)?.build(),
            None => scan.build(),
        }
    }

    /// The cube's columns as expressions, in order.
    fn columns(&self) -> Vec<Expr> {
        self.schema
            .fields()
            .iter()
            .map(|field| Expr::Column(Column::new_unqualified(field.name())))
            .collect()
    }

    /// The names of the cube's dimensions, in order.
    fn dimension_names(&self) -> Vec<&str> {
        self.schema.fields()[..self.dimensions]
            .iter()
            .map(|field| field.name().as_str())
            .collect()
    }

    /// Whether a row's coordinate lies in one of `boxes`.
    fn inside_any(&self, boxes: &[CellBounds]) -> Expr {
        let inside = boxes.iter().map(|shared| self.inside(shared));
        inside.reduce(Expr::or).unwrap_or(lit(false))
    }

    /// Whether `filter` reads only coordinate columns.
    fn is_on_coordinates(&self, filter: &Expr) -> bool {
        let coordinates = self.dimension_names();
        filter
            .column_refs()
            .iter()
            .all(|column| coordinates.contains(&column.name.as_str()))
    }

    /// Whether a row of `file` lies in a box it shares with one of `rivals`; `true` when one
    /// of them has no bounds.
    fn any_shared_box(&self, file: &DataFile, rivals: &[&DataFile]) -> Expr {
        let Some(bounds) = &file.bounds else {
            return lit(true);
        };
        let mut boxes = Vec::with_capacity(rivals.len());
        for rival in rivals {
            let Some(theirs) = &rival.bounds else {
                return lit(true);
            };
            boxes.extend(bounds.intersection(theirs));
        }
        self.inside_any(&boxes)
    }

    /// Whether a row's coordinate lies in `bounds`.
    fn inside(&self, bounds: &CellBounds) -> Expr {
        let columns = self.columns();
        let conditions = columns
            .into_iter()
            .zip(bounds.min.iter().zip(&bounds.max))
            .map(|(column, (min, max))| match min == max {
                true => column.eq(lit(min.as_str())),
                false => column.between(lit(min.as_str()), lit(max.as_str())),
            });
        conjunction(conditions).unwrap_or(lit(true))
    }
}

/// How a snapshot's cells are read (see [`CubeFiles::reading`]).
struct Reading {
    /// Granules read as they are: of files without rivals, all; of the others, those no box
    /// they share touches.
    plain: Vec<(DataFile, Region)>,
    /// The reads merging the rest: the rows outside every box in the granules a box
    /// touches, and each contested coordinate's winner. Empty when no file has a rival.
    merged: Vec<LogicalPlan>,
    /// The query's filters on coordinates, unqualified.
    coordinate_filter: Option<Expr>,
    /// What those filters admit, per dimension.
    allowed: Vec<Allowed>,
}

/// `physical` giving only its number of rows: no columns (a `count(*)` over a scan).
fn only_row_count(physical: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    let no_columns: Vec<(Arc<dyn datafusion::physical_expr::PhysicalExpr>, String)> = Vec::new();
    Ok(Arc::new(ProjectionExec::try_new(no_columns, physical)?))
}

/// The unqualified column `name` (any name: `col` would parse it).
fn column(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

/// Which files of a merged read have rivals, and the boxes rivals share.
struct Contest {
    /// Per file, whether it has a rival sharing a box the filters meet.
    rivalled: Vec<bool>,
    /// The boxes rival files share that the filters meet, each once; `None` when a rival
    /// has no bounds (so any of its rows may be contested).
    boxes: Option<Vec<CellBounds>>,
}

impl Contest {
    /// The contest among `files` (those of a snapshot that can hold a cell `allowed` admits).
    fn among(files: &[&DataFile], allowed: &[Allowed]) -> Contest {
        let mut rivalled = vec![false; files.len()];
        let mut boxes = Some(Vec::new());
        let mut seen = HashSet::new();
        for (index, rivals) in rivals_among(files).into_iter().enumerate() {
            for other in rivals.into_iter().filter(|&other| other > index) {
                let shared = match (&files[index].bounds, &files[other].bounds) {
                    (Some(mine), Some(theirs)) => match mine.intersection(theirs) {
                        Some(shared) if Allowed::meets(allowed, &shared) => Some(shared),
                        _ => continue,
                    },
                    _ => None,
                };
                rivalled[index] = true;
                rivalled[other] = true;
                match (shared, &mut boxes) {
                    (Some(shared), Some(boxes)) => {
                        if seen.insert(shared.clone()) {
                            boxes.push(shared);
                        }
                    }
                    (None, _) => boxes = None,
                    (Some(_), None) => {}
                }
            }
        }
        Contest { rivalled, boxes }
    }
}

/// `boxes`, neighbours in sort order merged into their hull (the smallest box holding them)
/// while the hull touches no more granules of `marks` (those of every file sharing a box),
/// within what `allowed` admits, than its parts do apart: fewer boxes, so smaller predicates
/// to plan and evaluate, for no more reading. A hull holds more coordinates than its parts;
/// the merge ranks those too, and each wins alone.
fn merged(
    mut boxes: Vec<CellBounds>,
    allowed: &[Allowed],
    marks: &[Arc<Marks>],
) -> Vec<CellBounds> {
    let touched = |bounds: &CellBounds| -> usize {
        let within = Allowed::within(allowed, bounds);
        marks
            .iter()
            .map(|marks| marks.granules(&within).len())
            .sum()
    };
    boxes.sort_by(|a, b| a.min.cmp(&b.min));
    let mut hulls: Vec<(CellBounds, usize)> = Vec::new();
    for next in boxes {
        let alone = touched(&next);
        if let Some((hull, spent)) = hulls.last_mut() {
            let wider = hull.union(&next);
            let together = touched(&wider);
            if together <= *spent + alone {
                (*hull, *spent) = (wider, together);
                continue;
            }
        }
        hulls.push((next, alone));
    }
    hulls.into_iter().map(|(hull, _)| hull).collect()
}

/// Which granules of a file a [`FileSet`] reads (of those the scan's filters allow).
#[derive(Debug, Clone)]
enum Region {
    /// All of them.
    Whole,
    /// Those that can hold a coordinate inside one of the boxes (all of a file without
    /// marks).
    Touching(Arc<[CellBounds]>),
    /// The others (none of a file without marks).
    Clear(Arc<[CellBounds]>),
}

/// The granules of a file with `marks` that `region` reads of those that can hold a
/// coordinate `allowed` admits.
fn selected_granules(marks: &Marks, allowed: &[Allowed], region: &Region) -> Vec<usize> {
    let mut selected = marks.granules(allowed);
    match region {
        Region::Whole => {}
        Region::Touching(boxes) | Region::Clear(boxes) => {
            let touched = marks.touched(allowed, boxes);
            let wanted = matches!(region, Region::Touching(_));
            selected.retain(|&granule| touched[granule] == wanted);
        }
    }
    selected
}

/// `a AND b`, or `a` alone when there is no `b`.
fn and_maybe(a: Expr, b: Option<Expr>) -> Expr {
    match b {
        Some(b) => a.and(b),
        None => a,
    }
}

/// `UNION ALL` of `plans` (at least one).
fn union_all(plans: Vec<LogicalPlan>) -> Result<LogicalPlanBuilder> {
    let mut plans = plans.into_iter();
    let first = plans.next().expect("a merged scan has at least one input");
    plans.try_fold(LogicalPlanBuilder::from(first), |builder, plan| {
        builder.union(plan)
    })
}

/// Some data files of a cube read as they are, through DataFusion's Parquet scan.
#[derive(Debug)]
pub(crate) struct FileSet {
    cube: CubeFiles,
    files: Vec<(DataFile, Region)>,
    /// The cube's columns, and the [`SEQ`] and [`TOMBSTONE`] tags when the set has them
    /// (as partition columns: one value per file).
    schema: TableSchema,
}

impl FileSet {
    /// The scan partitions: of each file, the granules that can hold cells passing `filters`
    /// (by the file's marks, see [`super::marks`]), split into `target_partitions` runs of
    /// equal length, each run read through DataFusion's `ParquetRowSelection` file extension.
    /// Splitting what a query reads, rather than the file's bytes as DataFusion does by
    /// default, keeps every core busy: a query on a sorted cube finds its cells in a few
    /// neighbouring row groups, which a byte split would give to one partition. A file
    /// without marks is split into its row groups, all read. Each file's [`Region`] narrows
    /// the granules further.
    async fn file_groups(&self, state: &dyn Session, filters: &[Expr]) -> Result<Vec<FileGroup>> {
        let partitions = state.config_options().execution.target_partitions.max(1);
        let allowed = Allowed::from_filters(&self.cube.dimension_names(), filters);
        let tagged = !self.schema.table_partition_cols().is_empty();
        let wholes: Vec<PartitionedFile> = self
            .files
            .iter()
            .map(|(file, _)| {
                let path = format!("{}/{}", self.cube.cube_dir, file.path);
                // The file's columns as the cube has them: the reader then neither parses
                // the footer's Arrow schema nor carries the footer's key-value metadata
                // (the marks, tens of KiB) into every schema it derives per file and filter.
                let mut whole = PartitionedFile::new(path, file.size)
                    .with_arrow_schema(Arc::clone(&self.cube.schema));
                if tagged {
                    whole.partition_values = vec![
                        ScalarValue::UInt64(Some(file.sequence().0)),
                        ScalarValue::Boolean(Some(file.kind == FileKind::Tombstones)),
                    ];
                }
                whole
            })
            .collect();
        let files: Vec<&DataFile> = self.files.iter().map(|(file, _)| file).collect();
        let marks = self.cube.marks(state, &files).await?;
        let mut groups = vec![Vec::new(); partitions];
        for (index, (((file, region), whole), marks)) in
            self.files.iter().zip(wholes).zip(marks).enumerate()
        {
            let rows = file.rows as usize;
            let (lengths, selected): (Vec<usize>, Vec<usize>) = match marks {
                Some(marks) => {
                    let selected = selected_granules(&marks, &allowed, region);
                    let lengths = (0..marks.first.len()).map(|g| marks.granule_len(g));
                    (lengths.collect(), selected)
                }
                _ => {
                    let stripes = rows.div_ceil(ROW_GROUP_ROWS);
                    let length = |stripe| ROW_GROUP_ROWS.min(rows - stripe * ROW_GROUP_ROWS);
                    let selected = match region {
                        Region::Clear(_) => Vec::new(),
                        Region::Whole | Region::Touching(_) => (0..stripes).collect(),
                    };
                    ((0..stripes).map(length).collect(), selected)
                }
            };
            // Run `i` of the selected granules goes to partition `index + i`, so files of
            // one granule spread too.
            let mut owner = vec![None; lengths.len()];
            for (position, &granule) in selected.iter().enumerate() {
                let run = position * partitions / selected.len();
                owner[granule] = Some((index + run) % partitions);
            }
            for (partition, group) in groups.iter_mut().enumerate() {
                if !owner.contains(&Some(partition)) {
                    continue;
                }
                if owner.iter().all(|o| *o == Some(partition)) {
                    group.push(whole.clone());
                    continue;
                }
                let selectors = lengths.iter().zip(&owner).map(|(&length, o)| match o {
                    Some(owner) if *owner == partition => RowSelector::select(length),
                    _ => RowSelector::skip(length),
                });
                let selection = ParquetRowSelection::new(RowSelection::from_iter(selectors));
                group.push(whole.clone().with_extension(selection));
            }
        }
        Ok(groups
            .into_iter()
            .filter(|group| !group.is_empty())
            .map(FileGroup::new)
            .collect())
    }
}

#[async_trait]
impl TableProvider for FileSet {
    fn schema(&self) -> SchemaRef {
        Arc::clone(self.schema.table_schema())
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// DataFusion keeps its filter above the scan and pushes the predicate into the Parquet
    /// source for row-group and page pruning; filters on dimensions also select granules by
    /// the files' marks.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = self.schema.table_schema();
        let file_groups = self.file_groups(state, filters).await?;
        if file_groups.is_empty() {
            let projected = match projection {
                Some(indices) => Arc::new(schema.project(indices)?),
                None => Arc::clone(schema),
            };
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        self.cube
            .parquet_scan(state, &self.schema, file_groups, projection, limit)
            .await
    }
}

impl CubeFiles {
    /// DataFusion's Parquet scan of `file_groups` (files of this cube) as partitions, read as
    /// `schema`.
    async fn parquet_scan(
        &self,
        state: &dyn Session,
        schema: &TableSchema,
        file_groups: Vec<FileGroup>,
        projection: Option<&Vec<usize>>,
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let source = Arc::new(ParquetSource::new(schema.clone()));
        // Declared so that DataFusion keeps these partitions rather than splitting the files
        // again by bytes, which would open a file once per byte range however little of it
        // a partition's row selection reads.
        let partitioning = Partitioning::UnknownPartitioning(file_groups.len());
        let config = FileScanConfigBuilder::new(self.storage.url().clone(), source)
            .with_file_groups(file_groups)
            .with_output_partitioning(Some(partitioning))
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        let mut options = state.default_table_options().parquet;
        // Data files carry no bloom filters (docs/mdf.md says why): do not look for them.
        options.global.bloom_filter_on_read = false;
        let format = ParquetFormat::default().with_options(options);
        format.create_physical_plan(state, config).await
    }
}

/// The summaries of some data files of a cube (see [`super::summary`]), read whole.
#[derive(Debug)]
struct SummarySet {
    cube: CubeFiles,
    /// The data files, each with a summary.
    files: Vec<DataFile>,
    /// The summaries' columns read: the granule, the dimensions kept, the partials.
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for SummarySet {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// As for cells: DataFusion filters above the scan and prunes with the predicate.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let partitions = state.config_options().execution.target_partitions.max(1);
        let mut groups = vec![Vec::new(); partitions.min(self.files.len()).max(1)];
        let count = groups.len();
        for (index, file) in self.files.iter().enumerate() {
            let Some(summary) = &file.summary else {
                return internal_err!("data file {} has no summary", file.path);
            };
            let path = format!("{}/{}", self.cube.cube_dir, summary_path(&file.path));
            groups[index % count].push(PartitionedFile::new(path, summary.size));
        }
        let groups = groups.into_iter().map(FileGroup::new).collect();
        let schema = TableSchema::builder(Arc::clone(&self.schema)).build();
        self.cube
            .parquet_scan(state, &schema, groups, projection, limit)
            .await
    }
}
