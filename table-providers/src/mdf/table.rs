//! `cube.<name>`: an MDF cube as a DataFusion table.
//!
//! A scan reads the latest snapshot from the log and merges its files on read (see
//! [`super::merge`]): DataFusion's own Parquet scan (`ParquetFormat` → `DataSourceExec` over
//! `ParquetSource`) under plain unions, filters and a window, so projection, filter pushdown,
//! statistics pruning and the footer cache are DataFusion's, and a distributed engine can ship
//! the plan without custom codecs. Writes are in [`super::dml`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::common::{DataFusionError, Result, not_impl_err};
use datafusion::datasource::TableType;
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::UnboundedMemoryPool;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use object_store::path::Path;
use tracing::Instrument;

use super::dml::{WriteKind, write_plan};
use super::log::{CubeLog, FileKind, Snapshot, SnapshotVersion};
use super::maintenance::{CompactionPolicy, compact, due_compaction, needs_compaction};
use super::maintenance_sql::session_of;
use super::merge::CubeFiles;
use super::summary::partial_fields;
use super::transaction::SessionWrites;
use super::{CubeDefinition, MdfError, write_data_file};
use crate::memory::runtime_with_pool;
use crate::storage::Storage;

/// One cube: its definition and its log. Clones share the log's cached snapshot.
#[derive(Debug, Clone)]
pub struct MdfTable {
    storage: Storage,
    log: CubeLog,
    cube: CubeDefinition,
    schema: SchemaRef,
    /// Set while this process compacts the cube in the background.
    compacting: Arc<AtomicBool>,
    /// When and how the cube is compacted in the background.
    compaction: CompactionPolicy,
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
            compacting: Arc::default(),
            compaction: CompactionPolicy::default(),
        }
    }

    /// This table compacting by `policy` instead of the default one.
    pub fn with_compaction_policy(self, policy: CompactionPolicy) -> Self {
        Self {
            compaction: policy,
            ..self
        }
    }

    /// When and how the cube is compacted in the background.
    pub fn compaction_policy(&self) -> &CompactionPolicy {
        &self.compaction
    }

    /// After a write: when the cube has files to fold (as of the last snapshot read, see
    /// [`needs_compaction`]) and this process is not compacting it already, compacts it in
    /// the background as [`due_compaction`] says, with the writing query's configuration, as
    /// `user`. Compaction never conflicts with writers; a failure is logged.
    pub(crate) fn compact_in_background(&self, context: &TaskContext, user: Option<String>) {
        let due = self
            .log
            .cached()
            .is_some_and(|snapshot| needs_compaction(&snapshot, &self.compaction));
        if !due || self.compacting.swap(true, Ordering::AcqRel) {
            return;
        }
        let table = self.clone();
        // Not under the writing connection's memory limit: the compaction is no statement of
        // its own, and runs on while that connection goes on.
        let unlimited = Arc::new(UnboundedMemoryPool::default());
        let runtime = runtime_with_pool(&context.runtime_env(), unlimited);
        let session = SessionStateBuilder::new_from_existing(session_of(context))
            .with_runtime_env(runtime)
            .build();
        tokio::spawn(async move {
            let compacted = async {
                let snapshot = table.log.latest().await?;
                let Some(scope) = due_compaction(&table, &session, &snapshot).await? else {
                    return Ok(None);
                };
                let report = compact(&table, &session, scope, user, &|_| {}).await?;
                Ok::<_, DataFusionError>(Some((scope, report)))
            };
            match compacted.await {
                Ok(Some((scope, report))) => {
                    tracing::info!(cube = %table.cube.name, ?scope, version = ?report.version, files_removed = report.files_removed, files_added = report.files_added, "compacted in the background")
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(cube = %table.cube.name, %error, "background compaction failed")
                }
            }
            table.compacting.store(false, Ordering::Release);
        });
    }

    /// The cube's definition.
    pub fn definition(&self) -> &CubeDefinition {
        &self.cube
    }

    /// The cube's columns.
    pub(crate) fn schema_ref(&self) -> &SchemaRef {
        &self.schema
    }

    /// The store the cube is kept in.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The latest committed version, the one a scan reads now.
    pub async fn version(&self) -> Result<SnapshotVersion, MdfError> {
        self.log.latest_version().await
    }

    /// The cube's log.
    pub fn log(&self) -> &CubeLog {
        &self.log
    }

    /// The latest snapshot as `state`'s session reads it: with the writes its open
    /// transaction block staged on top (see [`super::transaction`]).
    pub(crate) async fn latest_for(&self, state: &dyn Session) -> Result<Arc<Snapshot>> {
        let latest = self.log.latest().await?;
        Ok(match SessionWrites::of(state.config()) {
            Some(writes) => writes.overlay(self, latest),
            None => latest,
        })
    }

    /// The cells of `snapshot` (any version of this cube), merged on read.
    pub(crate) async fn scan_snapshot(
        &self,
        state: &dyn Session,
        snapshot: &Snapshot,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let span = tracing::info_span!("scan", cube = %self.cube.name, version = %snapshot.version);
        self.files()
            .scan(state, snapshot, projection, filters, limit)
            .instrument(span)
            .await
            .map_err(|error| self.vacuumed(error, snapshot))
    }

    /// `error`, or when it says one of `snapshot`'s data files is gone (a scan reads each
    /// file's footer when it plans), that vacuum removed the version: SQLSTATE 72000, as
    /// PostgreSQL's "snapshot too old".
    fn vacuumed(&self, error: DataFusionError, snapshot: &Snapshot) -> DataFusionError {
        let DataFusionError::ObjectStore(gone) = error.find_root() else {
            return error;
        };
        let object_store::Error::NotFound { path, .. } = gone.as_ref() else {
            return error;
        };
        MdfError::Vacuumed(format!(
            "version {} of cube {} can no longer be read: vacuum removed its data file {path} \
             (versions older than the vacuum retention are not kept)",
            snapshot.version, self.cube.name
        ))
        .into()
    }

    /// Reads the footers (with their page indexes) and the marks of the latest snapshot's data
    /// files into `state`'s caches, as the first scan of each file would; returns how many
    /// files. A server does this when it starts, so that its first queries do not wait for it.
    pub async fn load_footers(&self, state: &dyn Session) -> Result<usize> {
        let snapshot = self.log.latest().await?;
        let files: Vec<_> = snapshot.files.iter().collect();
        self.files().marks(state, &files).await?;
        Ok(files.len())
    }

    /// Where the cube's data files are.
    pub(crate) fn files(&self) -> CubeFiles {
        CubeFiles {
            storage: self.storage.clone(),
            cube_dir: self.log.cube_dir().clone(),
            schema: Arc::clone(&self.schema),
            dimensions: self.cube.dimensions.len(),
        }
    }

    /// Writes cells (batches in the cube's schema) as one new file and commits it as a blind
    /// append, replacing any cells at the same coordinates. Returns the committed version, or
    /// `None` when there was nothing to write.
    pub async fn append(
        &self,
        batches: &[datafusion::arrow::array::RecordBatch],
    ) -> Result<Option<SnapshotVersion>, MdfError> {
        match write_data_file(
            &self.log,
            &self.storage,
            &self.cube,
            batches,
            FileKind::Cells,
        )
        .await?
        {
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
    /// predicate into the Parquet source for row-group and page pruning; filters on
    /// coordinates also narrow what merging reads.
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
        let snapshot = self.latest_for(state).await?;
        self.scan_snapshot(state, &snapshot, projection, filters, limit)
            .await
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if insert_op != InsertOp::Append {
            return not_impl_err!(
                "{insert_op} into a cube is not supported; an INSERT replaces the cells at its coordinates"
            );
        }
        Ok(write_plan(self.clone(), WriteKind::Insert, input))
    }
}

impl MdfTable {
    /// Whether the latest snapshot read so far has a data file whose summary keeps the first
    /// `dimensions` dimensions: whether reading [`Self::summaries`] by them can pay. A hint
    /// only; the summaries answer as the cells do in any case.
    pub fn summarised_by(&self, dimensions: usize) -> bool {
        let snapshot = self.log.cached();
        let mut files = snapshot.iter().flat_map(|snapshot| snapshot.files.iter());
        files.any(|file| (file.summary.as_ref()).is_some_and(|s| s.dimensions >= dimensions))
    }

    /// The cube's cells summed by its first `dimensions` dimensions, as a table an aggregate
    /// over the cube can read instead (see [`CubeSummaries`]).
    pub fn summaries(&self, dimensions: usize) -> CubeSummaries {
        let fields = partial_fields(&self.schema, self.cube.dimensions.len(), dimensions);
        CubeSummaries {
            table: self.clone(),
            dimensions,
            schema: Arc::new(Schema::new(fields)),
        }
    }
}

/// A cube's cells summed by its first dimensions, read from the latest snapshot like the
/// cube: rows of partial aggregates whose sums, counts, minimums and maximums over any of
/// those dimensions are the cells' (see [`super::summary`]). Columns: those dimensions;
/// per measure its sum (named as the measure), `<measure>$count`, `<measure>$min` and
/// `<measure>$max`; and `cells$`, the number of cells.
#[derive(Debug)]
pub struct CubeSummaries {
    table: MdfTable,
    dimensions: usize,
    schema: SchemaRef,
}

impl CubeSummaries {
    /// The cube summed.
    pub fn cube(&self) -> &MdfTable {
        &self.table
    }

    /// How many leading dimensions the rows keep.
    pub fn dimensions(&self) -> usize {
        self.dimensions
    }
}

#[async_trait]
impl TableProvider for CubeSummaries {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// As for the cube's cells: inexact, filters on dimensions narrow what is read.
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
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let table = &self.table;
        let snapshot = table.latest_for(state).await?;
        let span = tracing::info_span!("summary_scan", cube = %table.cube.name, version = %snapshot.version, dimensions = self.dimensions);
        (table.files())
            .summary_scan(state, &snapshot, self.dimensions, projection, filters)
            .instrument(span)
            .await
            .map_err(|error| table.vacuumed(error, &snapshot))
    }
}

/// The `cube` schema: every cube stored under `cubes/`.
#[derive(Debug)]
pub struct CubeSchemaProvider {
    storage: Storage,
    compaction: CompactionPolicy,
    cubes: RwLock<BTreeMap<String, Arc<MdfTable>>>,
}

impl CubeSchemaProvider {
    /// Lists and opens the cubes in `storage`; they and the cubes created later are compacted
    /// by `compaction`.
    pub async fn open(storage: Storage, compaction: CompactionPolicy) -> Result<Self, MdfError> {
        let listing = storage
            .store()
            .list_with_delimiter(Some(&Path::from("cubes")))
            .await?;
        let mut cubes = BTreeMap::new();
        for prefix in listing.common_prefixes {
            let Some(name) = prefix.filename() else {
                continue;
            };
            let table = MdfTable::open(storage.clone(), name)
                .await?
                .with_compaction_policy(compaction);
            cubes.insert(name.to_owned(), Arc::new(table));
        }
        Ok(Self {
            storage,
            compaction,
            cubes: RwLock::new(cubes),
        })
    }

    /// Creates a cube and makes it visible in this schema.
    pub async fn create_cube(&self, cube: CubeDefinition) -> Result<Arc<MdfTable>, MdfError> {
        let name = cube.name.clone();
        let table = MdfTable::create(self.storage.clone(), cube)
            .await?
            .with_compaction_policy(self.compaction);
        let table = Arc::new(table);
        self.cubes
            .write()
            .expect("cube catalog lock poisoned")
            .insert(name, Arc::clone(&table));
        Ok(table)
    }

    /// Every cube, by name.
    pub fn all(&self) -> Vec<Arc<MdfTable>> {
        self.cubes
            .read()
            .expect("cube catalog lock poisoned")
            .values()
            .cloned()
            .collect()
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
