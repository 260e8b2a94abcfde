//! `cube.<name>`: an MDF cube as a DataFusion table.
//!
//! A scan reads the latest snapshot from the log and hands its file list to DataFusion's own
//! Parquet scan (`ParquetFormat` → `DataSourceExec` over `ParquetSource`), so projection, filter
//! pushdown, statistics pruning and the footer cache are DataFusion's, and a distributed
//! engine can ship the plan without custom codecs. An insert writes one sorted file and
//! commits it; the next query sees it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::common::{Result, not_impl_err};
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan};
use futures::TryStreamExt;
use object_store::path::Path;

use super::log::{CubeLog, Snapshot, SnapshotVersion};
use super::{CubeDefinition, MdfError, write_data_file};
use crate::storage::Storage;

/// One cube: its definition and its log.
#[derive(Debug)]
pub struct MdfTable {
    storage: Storage,
    log: CubeLog,
    cube: CubeDefinition,
    schema: SchemaRef,
}

impl MdfTable {
    /// Opens the cube stored under `cubes/<name>/`, reading its definition from the log.
    pub async fn open(storage: Storage, name: &str) -> Result<Self, MdfError> {
        let log = CubeLog::new(storage.clone(), name);
        let cube = log.latest().await?.cube.clone();
        Ok(Self::from_parts(storage, log, cube))
    }

    /// Creates a new, empty cube; fails if one of that name exists.
    pub async fn create(storage: Storage, cube: CubeDefinition) -> Result<Self, MdfError> {
        cube.validate()?;
        let log = CubeLog::new(storage.clone(), &cube.name);
        log.create(cube.clone()).await?;
        Ok(Self::from_parts(storage, log, cube))
    }

    fn from_parts(storage: Storage, log: CubeLog, cube: CubeDefinition) -> Self {
        let schema = cube.arrow_schema();
        Self {
            storage,
            log,
            cube,
            schema,
        }
    }

    /// The cube's definition.
    pub fn definition(&self) -> &CubeDefinition {
        &self.cube
    }

    /// The latest committed version, the one a scan reads now.
    pub async fn version(&self) -> Result<SnapshotVersion, MdfError> {
        self.log.latest_version().await
    }

    /// The cube's log.
    pub fn log(&self) -> &CubeLog {
        &self.log
    }

    /// A scan of `snapshot`'s files (any version of this cube) through DataFusion's Parquet
    /// scan.
    pub(crate) async fn scan_snapshot(
        &self,
        state: &dyn Session,
        snapshot: &Snapshot,
        projection: Option<&Vec<usize>>,
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if snapshot.files.is_empty() {
            let projected = match projection {
                Some(indices) => Arc::new(self.schema.project(indices)?),
                None => Arc::clone(&self.schema),
            };
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        let files: Vec<PartitionedFile> = snapshot
            .files
            .iter()
            .map(|file| {
                PartitionedFile::new(format!("{}/{}", self.log.cube_dir(), file.path), file.size)
            })
            .collect();
        let target_partitions = state.config_options().execution.target_partitions;
        let file_groups = FileGroup::new(files).split_files(target_partitions);
        let source = Arc::new(ParquetSource::new(Arc::clone(&self.schema)));
        let config = FileScanConfigBuilder::new(self.storage.url().clone(), source)
            .with_file_groups(file_groups)
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        let format = ParquetFormat::default().with_options(state.default_table_options().parquet);
        format.create_physical_plan(state, config).await
    }

    /// Appends cells (batches in the cube's schema) as one new file and commits it atomically.
    /// Returns the committed version, or `None` when there was nothing to write.
    pub async fn append(
        &self,
        batches: &[datafusion::arrow::array::RecordBatch],
    ) -> Result<Option<SnapshotVersion>, MdfError> {
        match write_data_file(&self.log, &self.storage, &self.cube, batches).await? {
            Some(file) => Ok(Some(self.log.commit_append(vec![file]).await?)),
            None => Ok(None),
        }
    }
}

#[async_trait]
impl TableProvider for MdfTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// Filters are inexact: DataFusion keeps its own filter above the scan and pushes the
    /// predicate into the Parquet source for row-group and page pruning.
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
        let snapshot = self.log.latest().await?;
        self.scan_snapshot(state, &snapshot, projection, limit)
            .await
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if insert_op != InsertOp::Append {
            return not_impl_err!("{insert_op} into a cube is not supported; cubes take appends");
        }
        let sink = CubeSink {
            table: MdfTable::from_parts(self.storage.clone(), self.log.clone(), self.cube.clone()),
        };
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}

/// Collects an INSERT's rows and appends them as one file in one commit.
#[derive(Debug)]
struct CubeSink {
    table: MdfTable,
}

impl DisplayAs for CubeSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CubeSink: cube={}", self.table.cube.name)
    }
}

#[async_trait]
impl DataSink for CubeSink {
    fn schema(&self) -> &SchemaRef {
        &self.table.schema
    }

    async fn write_all(
        &self,
        data: SendableRecordBatchStream,
        _context: &Arc<TaskContext>,
    ) -> Result<u64> {
        let batches: Vec<_> = data.try_collect().await?;
        let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
        self.table.append(&batches).await?;
        Ok(rows)
    }
}

/// The `cube` schema: every cube stored under `cubes/`.
#[derive(Debug)]
pub struct CubeSchemaProvider {
    storage: Storage,
    cubes: RwLock<BTreeMap<String, Arc<MdfTable>>>,
}

impl CubeSchemaProvider {
    /// Lists and opens the cubes in `storage`.
    pub async fn open(storage: Storage) -> Result<Self, MdfError> {
        let listing = storage
            .store()
            .list_with_delimiter(Some(&Path::from("cubes")))
            .await?;
        let mut cubes = BTreeMap::new();
        for prefix in listing.common_prefixes {
            let Some(name) = prefix.filename() else {
                continue;
            };
            let table = MdfTable::open(storage.clone(), name).await?;
            cubes.insert(name.to_owned(), Arc::new(table));
        }
        Ok(Self {
            storage,
            cubes: RwLock::new(cubes),
        })
    }

    /// Creates a cube and makes it visible in this schema.
    pub async fn create_cube(&self, cube: CubeDefinition) -> Result<Arc<MdfTable>, MdfError> {
        let name = cube.name.clone();
        let table = Arc::new(MdfTable::create(self.storage.clone(), cube).await?);
        self.cubes
            .write()
            .expect("cube catalog lock poisoned")
            .insert(name, Arc::clone(&table));
        Ok(table)
    }

    /// The cube called `name`, if it exists.
    pub fn cube(&self, name: &str) -> Option<Arc<MdfTable>> {
        self.cubes
            .read()
            .expect("cube catalog lock poisoned")
            .get(name)
            .cloned()
    }
}

#[async_trait]
impl SchemaProvider for CubeSchemaProvider {
    fn table_names(&self) -> Vec<String> {
        self.cubes
            .read()
            .expect("cube catalog lock poisoned")
            .keys()
            .cloned()
            .collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        Ok(self.cube(name).map(|table| table as Arc<dyn TableProvider>))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.cubes
            .read()
            .expect("cube catalog lock poisoned")
            .contains_key(name)
    }
}
