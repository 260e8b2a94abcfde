//! `dim.<dimension>`: a dimension's members as a SQL table.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, BooleanArray, Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use super::{Member, MetadataError, MetadataStore};

fn metadata_error(error: MetadataError) -> DataFusionError {
    DataFusionError::External(Box::new(error))
}

/// The columns of every dimension table.
pub fn dimension_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("code", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("parent", DataType::Utf8, true),
        Field::new("path", DataType::Utf8, false),
        Field::new("level", DataType::Int32, false),
        Field::new("is_leaf", DataType::Boolean, false),
        Field::new("sort_order", DataType::Int32, false),
        Field::new("attributes", DataType::Utf8, false),
    ]))
}

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

/// One dimension's members, read from the metadata store at every scan.
#[derive(Debug)]
pub struct DimensionTable {
    store: Arc<dyn MetadataStore>,
    dimension: String,
}

impl DimensionTable {
    /// The table for `dimension` in `store`.
    pub fn new(store: Arc<dyn MetadataStore>, dimension: impl Into<String>) -> Self {
        Self {
            store,
            dimension: dimension.into(),
        }
    }

    /// The version of the members a scan reads now (see [`MetadataStore::dimension_version`]).
    pub async fn version(&self) -> Result<u64> {
        self.store
            .dimension_version(&self.dimension)
            .await
            .map_err(metadata_error)
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

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let members = self
            .store
            .members(&self.dimension)
            .await
            .map_err(metadata_error)?;
        let batch = members_batch(&members)?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            dimension_schema(),
            projection.cloned(),
        )?)
    }
}

/// The `dim` schema: one [`DimensionTable`] per dimension in the metadata store.
#[derive(Debug)]
pub struct DimensionSchemaProvider {
    store: Arc<dyn MetadataStore>,
    names: Vec<String>,
}

impl DimensionSchemaProvider {
    /// Lists the store's dimensions once; a session sees the dimensions that existed when it
    /// was created.
    pub async fn new(store: Arc<dyn MetadataStore>) -> Result<Self> {
        let names = store
            .dimensions()
            .await
            .map_err(metadata_error)?
            .into_iter()
            .map(|d| d.name)
            .collect();
        Ok(Self { store, names })
    }
}

#[async_trait]
impl SchemaProvider for DimensionSchemaProvider {
    fn table_names(&self) -> Vec<String> {
        self.names.clone()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if !self.table_exist(name) {
            return Ok(None);
        }
        Ok(Some(Arc::new(DimensionTable::new(
            Arc::clone(&self.store),
            name,
        ))))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }
}
