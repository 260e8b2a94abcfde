//! Merge-on-read: the cells of a snapshot, where a later write of a coordinate replaces an
//! earlier one and a tombstone deletes it.
//!
//! Every data file carries a sequence number (`seq`, its commit's version) and the bounds of
//! its coordinates. Two files can share a coordinate only if their `seq`s differ and their
//! bounds meet ([`Snapshot::rivals`]), so most reads need no merging at all:
//!
//! - Files whose bounds meet no other file's are read as they are: one DataFusion Parquet scan
//!   over all of them. A freshly loaded or compacted cube is only such files.
//! - Of a file whose bounds meet others', the rows outside every box it shares are read as
//!   they are too; only the rows inside a shared box are *contested*.
//! - Contested rows of all files are ranked per coordinate by `seq` (`row_number()` over the
//!   coordinate, newest first); the newest wins, and is dropped when it is a tombstone.
//!
//! The plan is built as a DataFusion logical plan over plain Parquet scans (unions, filters
//! and a window) and planned by the session, so pruning, parallelism and a distributed
//! engine's codecs apply unchanged. Filters on coordinates are applied to every scan before
//! the ranking (a coordinate passes them in every file or in none); filters on measures only
//! after it, where DataFusion keeps them, since an old value must not win by passing them.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DataFusionError, Result};
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::ParquetRowSelection;
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::{TableType, provider_as_source};
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::expr_fn::col;
use datafusion::logical_expr::lit;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{
    Expr, ExprFunctionExt, LogicalPlan, LogicalPlanBuilder, TableProviderFilterPushDown,
};
use datafusion::parquet::arrow::arrow_reader::{RowSelection, RowSelector};
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::{ExecutionPlan, Partitioning, execute_stream};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;

use super::marks::{Allowed, Marks};
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
        let files: Vec<&DataFile> = snapshot.files.iter().collect();
        let rivals: Vec<Vec<&DataFile>> = snapshot
            .rivals()
            .into_iter()
            .map(|indices| indices.into_iter().map(|index| files[index]).collect())
            .collect();
        let alone: Vec<DataFile> = snapshot
            .files
            .iter()
            .zip(&rivals)
            .filter(|(file, rivals)| rivals.is_empty() && file.kind == FileKind::Cells)
            .map(|(file, _)| file.clone())
            .collect();
        if rivals.iter().all(Vec::is_empty) {
            return self
                .file_set(alone)
                .scan(state, projection, filters, limit)
                .await;
        }

        let coordinate_filter = conjunction(
            filters
                .iter()
                .filter(|filter| self.is_on_coordinates(filter))
                .map(|filter| unqualified(filter.clone()))
                .collect::<Result<Vec<_>>>()?,
        );
        let mut uncontested = Vec::new();
        if !alone.is_empty() {
            uncontested.push(self.read(alone, coordinate_filter.clone())?);
        }
        let mut contested = Vec::new();
        for (file, rivals) in snapshot
            .files
            .iter()
            .zip(&rivals)
            .filter(|(_, r)| !r.is_empty())
        {
            let shared = self.any_shared_box(file, rivals);
            if file.kind == FileKind::Cells && shared != lit(true) {
                let outside = and_maybe(!shared.clone(), coordinate_filter.clone());
                uncontested.push(self.read(vec![file.clone()], Some(outside))?);
            }
            let inside = and_maybe(shared, coordinate_filter.clone());
            let mut columns = self.columns();
            columns.push(lit(file.sequence().0).alias(SEQ));
            columns.push(lit(file.kind == FileKind::Tombstones).alias(TOMBSTONE));
            let read = LogicalPlanBuilder::from(self.read(vec![file.clone()], Some(inside))?)
                .project(columns)?
                .build()?;
            contested.push(read);
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
        uncontested.push(winners);

        let mut plan = union_all(uncontested)?;
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
            // Only the number of rows is wanted (`count(*)`).
            let no_columns: Vec<(Arc<dyn datafusion::physical_expr::PhysicalExpr>, String)> =
                Vec::new();
            return Ok(Arc::new(ProjectionExec::try_new(no_columns, physical)?));
        }
        Ok(physical)
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
        let plan = LogicalPlanBuilder::from(self.read(vec![file.clone()], Some(shared))?)
            .project(vec![first_dimension])?
            .build()?;
        let rows = execute_stream(state.create_physical_plan(&plan).await?, state.task_ctx())?;
        rows.try_fold(0, |count, batch| async move {
            Ok(count + batch.num_rows() as u64)
        })
        .await
    }

    /// A table of just `files`.
    pub(crate) fn file_set(&self, files: Vec<DataFile>) -> FileSet {
        FileSet {
            cube: self.clone(),
            files,
        }
    }

    /// A scan of `files`, filtered by `filter`.
    fn read(&self, files: Vec<DataFile>, filter: Option<Expr>) -> Result<LogicalPlan> {
        let source = provider_as_source(Arc::new(self.file_set(files)));
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

    /// Whether `filter` reads only coordinate columns.
    fn is_on_coordinates(&self, filter: &Expr) -> bool {
        let coordinates: HashSet<&str> = self
            .schema
            .fields()
            .iter()
            .take(self.dimensions)
            .map(|field| field.name().as_str())
            .collect();
        filter
            .column_refs()
            .iter()
            .all(|column| coordinates.contains(column.name.as_str()))
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
            if let Some(shared) = bounds.intersection(theirs) {
                boxes.push(self.inside(&shared));
            }
        }
        boxes.into_iter().reduce(Expr::or).unwrap_or(lit(false))
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

/// `a AND b`, or `a` alone when there is no `b`.
fn and_maybe(a: Expr, b: Option<Expr>) -> Expr {
    match b {
        Some(b) => a.and(b),
        None => a,
    }
}

/// `expr` with its columns' table names removed (filters arrive qualified by the cube's).
fn unqualified(expr: Expr) -> Result<Expr> {
    expr.transform(|expr| match expr {
        Expr::Column(column) if column.relation.is_some() => Ok(Transformed::yes(Expr::Column(
            Column::new_unqualified(column.name),
        ))),
        other => Ok(Transformed::no(other)),
    })
    .map(|transformed| transformed.data)
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
    files: Vec<DataFile>,
}

impl FileSet {
    /// The scan partitions: of each file, the granules that can hold cells passing `filters`
    /// (by the file's marks, see [`super::marks`]), split into `target_partitions` runs of
    /// equal length, each run read through DataFusion's `ParquetRowSelection` file extension.
    /// Splitting what a query reads, rather than the file's bytes as DataFusion does by
    /// default, keeps every core busy: a query on a sorted cube finds its cells in a few
    /// neighbouring row groups, which a byte split would give to one partition. A file
    /// without marks is split into its row groups, all read.
    async fn file_groups(&self, state: &dyn Session, filters: &[Expr]) -> Result<Vec<FileGroup>> {
        let partitions = state.config_options().execution.target_partitions.max(1);
        let runtime = state.runtime_env();
        let store = runtime.object_store(self.cube.storage.url())?;
        let metadata_cache = runtime.cache_manager.get_file_metadata_cache();
        let dimensions: Vec<&str> = self.cube.schema.fields()[..self.cube.dimensions]
            .iter()
            .map(|field| field.name().as_str())
            .collect();
        let allowed = Allowed::from_filters(&dimensions, filters);
        let wholes: Vec<PartitionedFile> = self
            .files
            .iter()
            .map(|file| {
                PartitionedFile::new(format!("{}/{}", self.cube.cube_dir, file.path), file.size)
            })
            .collect();
        // A file's marks are read from its footer once (then kept with its log entry); the
        // footer comes from DataFusion's metadata cache, which the scan's opener reads too,
        // and on a miss footers are fetched several at a time, not one after another.
        let cells: Vec<_> = (self.files.iter().zip(&wholes))
            .map(|(file, whole)| (file.marks.clone(), whole.object_meta.clone()))
            .collect();
        let marks: Vec<Option<Arc<Marks>>> = futures::stream::iter(cells)
            .map(|(cell, object)| {
                let (store, metadata_cache) = (Arc::clone(&store), Arc::clone(&metadata_cache));
                async move {
                    if let Some(known) = cell.get() {
                        return Ok(known);
                    }
                    let metadata = DFParquetMetadata::new(store.as_ref(), &object)
                        .with_file_metadata_cache(Some(metadata_cache))
                        .fetch_metadata()
                        .await?;
                    let footer = Marks::from_footer(metadata.file_metadata().key_value_metadata());
                    Ok::<_, DataFusionError>(cell.record(footer))
                }
            })
            .buffered(FOOTERS_READ_AT_ONCE)
            .try_collect()
            .await?;
        let mut groups = vec![Vec::new(); partitions];
        for (index, ((file, whole), marks)) in self.files.iter().zip(wholes).zip(marks).enumerate()
        {
            let rows = file.rows as usize;
            let (lengths, selected): (Vec<usize>, Vec<usize>) = match marks {
                Some(marks) if marks.rows == rows => (
                    (0..marks.first.len())
                        .map(|granule| marks.granule_len(granule))
                        .collect(),
                    marks.granules(&allowed),
                ),
                _ => {
                    let stripes = rows.div_ceil(ROW_GROUP_ROWS);
                    let length = |stripe| ROW_GROUP_ROWS.min(rows - stripe * ROW_GROUP_ROWS);
                    ((0..stripes).map(length).collect(), (0..stripes).collect())
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
        Arc::clone(&self.cube.schema)
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
        let schema = &self.cube.schema;
        let file_groups = self.file_groups(state, filters).await?;
        if file_groups.is_empty() {
            let projected = match projection {
                Some(indices) => Arc::new(schema.project(indices)?),
                None => Arc::clone(schema),
            };
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        let source = Arc::new(ParquetSource::new(Arc::clone(schema)));
        // Declared so that DataFusion keeps these partitions rather than splitting the files
        // again by bytes, which would open a file once per byte range however little of it
        // a partition's row selection reads.
        let partitioning = Partitioning::UnknownPartitioning(file_groups.len());
        let config = FileScanConfigBuilder::new(self.cube.storage.url().clone(), source)
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
