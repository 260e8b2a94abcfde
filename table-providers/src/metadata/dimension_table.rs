//! `dim.<dimension>`: a dimension's members as a SQL table.

use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, BooleanArray, Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};

use quantatom_udfs::ltree::LTREE;
use quantatom_udfs::tagged_text_field;

use super::member_dml::{MemberCells, insert_plan};
use super::{HIERARCHY_SEPARATOR, Member, MemberFilter, MetadataStore};

/// The columns of every dimension table.
pub fn dimension_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("code", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("parent", DataType::Utf8, true),
        tagged_text_field("path", LTREE, false),
        Field::new("level", DataType::Int32, false),
        Field::new("is_leaf", DataType::Boolean, false),
        Field::new("sort_order", DataType::Int32, false),
        Field::new("attributes", DataType::Utf8, false),
    ]))
}

/// The columns of a dimension table derived from the members' parents; statements cannot
/// give them.
pub(super) const DERIVED_COLUMNS: [&str; 4] = ["path", "level", "is_leaf", "sort_order"];

/// Turns members into one batch with [`dimension_schema`]; attributes become a JSON object.
fn members_batch(members: &[Member]) -> Result<RecordBatch> {
    let text = |f: fn(&Member) -> &str| -> ArrayRef {
        Arc::new(members.iter().map(|m| Some(f(m))).collect::<StringArray>())
    };
    let columns: Vec<ArrayRef> = vec![
        text(|m| &m.code),
        text(|m| &m.name),
        Arc::new(
            members
                .iter()
                .map(|m| m.parent.as_deref())
                .collect::<StringArray>(),
        ),
        Arc::new(
            members
                .iter()
                .map(|m| Some(m.path.to_string()))
                .collect::<StringArray>(),
        ),
        Arc::new(
            members
                .iter()
                .map(|m| Some(m.level))
                .collect::<Int32Array>(),
        ),
        Arc::new(
            members
                .iter()
                .map(|m| Some(m.is_leaf))
                .collect::<BooleanArray>(),
        ),
        Arc::new(
            members
                .iter()
                .map(|m| Some(m.sort_order))
                .collect::<Int32Array>(),
        ),
        Arc::new(
            members
                .iter()
                .map(|m| serde_json::to_string(&m.attributes).map(Some))
                .collect::<Result<StringArray, _>>()
                .map_err(|e| DataFusionError::External(Box::new(e)))?,
        ),
    ];
    Ok(RecordBatch::try_new(dimension_schema(), columns)?)
}

/// One dimension's members, read from the metadata store at every scan and changed by
/// `INSERT`, `UPDATE` and `DELETE` (see [`super::MemberDmlRule`]).
#[derive(Debug, Clone)]
pub struct DimensionTable {
    pub(super) store: Arc<dyn MetadataStore>,
    pub(super) cells: Arc<dyn MemberCells>,
    pub(super) dimension: String,
}

impl DimensionTable {
    /// The table for `dimension` in `store`; `cells` tells where cells sit on its members.
    pub fn new(
        store: Arc<dyn MetadataStore>,
        cells: Arc<dyn MemberCells>,
        dimension: impl Into<String>,
    ) -> Self {
        Self {
            store,
            cells,
            dimension: dimension.into(),
        }
    }

    /// The dimension (or alternate hierarchy) it shows.
    pub fn dimension(&self) -> &str {
        &self.dimension
    }

    /// The dimension whose members it holds: its own, or for an alternate hierarchy the
    /// dimension it arranges (whose leaves are its leaves).
    pub fn members_of(&self) -> &str {
        let name = self.dimension.as_str();
        name.split(HIERARCHY_SEPARATOR).next().unwrap_or(name)
    }

    /// The version of the members a scan reads now (see [`MetadataStore::dimension_version`]).
    pub async fn version(&self) -> Result<u64> {
        Ok(self.store.dimension_version(&self.dimension).await?)
    }
}

#[async_trait]
impl TableProvider for DimensionTable {
    fn schema(&self) -> SchemaRef {
        dimension_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// A store that filters members itself (PostgreSQL) takes every filter it can evaluate
    /// with DataFusion's meaning ([`MemberFilter`]); the rest, and all filters of a store that
    /// does not, DataFusion applies to the members read.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        let filters_members = self.store.filters_members();
        Ok(filters
            .iter()
            .map(|filter| match MemberFilter::from_expr(filter) {
                Some(filter) if filters_members && self.store.can_filter(&filter) => {
                    TableProviderFilterPushDown::Exact
                }
                _ => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !self.store.filters_members() {
            let members = self.store.members(&self.dimension).await?;
            let batch = members_batch(&members)?;
            return Ok(MemorySourceConfig::try_new_exec(
                &[vec![batch]],
                dimension_schema(),
                projection.cloned(),
            )?);
        }
        let member_filters: Vec<MemberFilter> = filters
            .iter()
            .filter_map(MemberFilter::from_expr)
            .filter(|filter| self.store.can_filter(filter))
            .collect();
        // DataFusion passes a limit only over filters all taken as exact; checked anyway.
        let limit = limit.filter(|_| member_filters.len() == filters.len());
        let found = self
            .store
            .members_where(
                &self.dimension,
                &member_filters,
                limit,
                projection.map(Vec::as_slice),
            )
            .await?;
        let batch = members_batch(&found.members)?;
        let batch = match projection {
            Some(indices) => batch.project(indices)?,
            None => batch,
        };
        Ok(Arc::new(MemberScanExec::new(batch, found.query)))
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        insert_plan(self, input, insert_op)
    }
}

/// The members a store found for a scan, with the query it ran (shown by `EXPLAIN`).
#[derive(Debug)]
struct MemberScanExec {
    batch: RecordBatch,
    query: String,
    properties: Arc<PlanProperties>,
}

impl MemberScanExec {
    fn new(batch: RecordBatch, query: String) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(batch.schema()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Self {
            batch,
            query,
            properties: Arc::new(properties),
        }
    }
}

impl DisplayAs for MemberScanExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "MemberScanExec: rows={}, query={}",
            self.batch.num_rows(),
            self.query
        )
    }
}

impl ExecutionPlan for MemberScanExec {
    fn name(&self) -> &str {
        "MemberScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(&self, _: usize, _: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        Ok(Box::pin(MemoryStream::try_new(
            vec![self.batch.clone()],
            self.batch.schema(),
            None,
        )?))
    }
}

/// The `dim` schema: one [`DimensionTable`] per dimension (and alternate hierarchy) in the
/// metadata store.
#[derive(Debug)]
pub struct DimensionSchemaProvider {
    store: Arc<dyn MetadataStore>,
    cells: Arc<dyn MemberCells>,
    /// The dimensions last listed: at start, and again whenever a name not among them is
    /// looked up (a dimension created since).
    names: RwLock<Vec<String>>,
}

impl DimensionSchemaProvider {
    /// Lists the store's dimensions. `cells` tells where cells sit on members.
    pub async fn new(store: Arc<dyn MetadataStore>, cells: Arc<dyn MemberCells>) -> Result<Self> {
        let names = Self::list(store.as_ref()).await?;
        Ok(Self {
            store,
            cells,
            names: RwLock::new(names),
        })
    }

    async fn list(store: &dyn MetadataStore) -> Result<Vec<String>> {
        Ok(store
            .dimensions()
            .await?
            .into_iter()
            .map(|d| d.name)
            .collect())
    }
}

#[async_trait]
impl SchemaProvider for DimensionSchemaProvider {
    fn table_names(&self) -> Vec<String> {
        self.names
            .read()
            .expect("dimension names lock poisoned")
            .clone()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if !self.table_exist(name) {
            let names = Self::list(self.store.as_ref()).await?;
            let found = names.iter().any(|n| n == name);
            *self.names.write().expect("dimension names lock poisoned") = names;
            if !found {
                return Ok(None);
            }
        }
        Ok(Some(Arc::new(DimensionTable::new(
            Arc::clone(&self.store),
            Arc::clone(&self.cells),
            name,
        ))))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.table_names().iter().any(|n| n == name)
    }
}
