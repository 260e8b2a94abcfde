//! Reading a cube as it was, and listing its history, as table functions:
//!
//! - `mdf_at('cube.finance', 42)`: the cube at version 42;
//! - `mdf_at('cube.finance', TIMESTAMP '2025-11-29 10:00:00+00')` (or any constant timestamp
//!   expression, or a timestamp string): the cube as its latest version at that moment;
//! - `mdf_history('cube.finance')`: one row per commit: version, time, user, operation, files
//!   and cells (or tombstones) added, files removed.
//!
//! Both read the same log as `cube.<name>`; a version's scan is DataFusion's Parquet scan over
//! that version's files.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::datasource::TableType;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;

use super::arguments::{constant_arguments, named_cube};
use super::dml::ReadVersion;
use super::{CubeSchemaProvider, MdfTable, Snapshot, SnapshotVersion};
use crate::computed::{ComputedRows, ComputedTable};

/// Which version of a cube to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSelector {
    /// The latest committed version when the scan is planned.
    Latest,
    /// A committed version.
    Version(SnapshotVersion),
    /// The latest version at a moment, in milliseconds since the Unix epoch.
    AsOf(u64),
}

/// A cube at one version: `mdf_at(...)`, and the cube as an `UPDATE` or `DELETE` reads it
/// (the latest version, recorded for the commit's conflict check).
#[derive(Debug)]
pub struct CubeAt {
    cube: Arc<MdfTable>,
    at: VersionSelector,
    recorded: Option<Arc<ReadVersion>>,
}

impl CubeAt {
    /// The cube it reads.
    pub fn cube(&self) -> &Arc<MdfTable> {
        &self.cube
    }

    /// `cube` as `at` selects.
    pub fn new(cube: Arc<MdfTable>, at: VersionSelector) -> Self {
        Self {
            cube,
            at,
            recorded: None,
        }
    }

    /// This reading, recording the version each scan reads into `read`.
    pub(crate) fn recording(self, read: Arc<ReadVersion>) -> Self {
        Self {
            recorded: Some(read),
            ..self
        }
    }

    /// The snapshot read.
    pub async fn snapshot(&self) -> Result<Arc<Snapshot>> {
        let log = self.cube.log();
        Ok(match self.at {
            VersionSelector::Latest => log.latest().await?,
            VersionSelector::Version(version) => log.at(version).await?,
            VersionSelector::AsOf(timestamp_ms) => log.as_of(timestamp_ms).await?,
        })
    }
}

#[async_trait]
impl TableProvider for CubeAt {
    fn schema(&self) -> SchemaRef {
        self.cube.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

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
        let snapshot = match self.at {
            VersionSelector::Latest => self.cube.latest_for(state).await?,
            _ => self.snapshot().await?,
        };
        if let Some(read) = &self.recorded {
            read.read(snapshot.version);
        }
        self.cube
            .scan_snapshot(state, &snapshot, projection, filters, limit)
            .await
    }
}

/// A cube's commits: `mdf_history(...)`.
#[derive(Debug)]
pub struct CubeHistory {
    cube: Arc<MdfTable>,
    schema: SchemaRef,
}

impl CubeHistory {
    /// The cube whose history it is.
    pub fn cube(&self) -> &Arc<MdfTable> {
        &self.cube
    }

    /// The history of `cube`.
    pub fn new(cube: Arc<MdfTable>) -> Self {
        let schema = Arc::new(Schema::new(vec![
            Field::new("version", DataType::Int64, false),
            Field::new(
                "committed_at",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                false,
            ),
            Field::new("committed_by", DataType::Utf8, true),
            Field::new("operation", DataType::Utf8, false),
            Field::new("files_added", DataType::Int64, false),
            Field::new("cells_added", DataType::Int64, false),
            Field::new("files_removed", DataType::Int64, false),
            Field::new("statement", DataType::Utf8, true),
        ]));
        Self { cube, schema }
    }
}

#[async_trait]
impl ComputedRows for CubeHistory {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    async fn rows(&self) -> Result<RecordBatch> {
        let snapshot = self.cube.log().latest().await?;
        let commits = &snapshot.commits;
        let int64 = |value: fn(&super::Commit) -> i64| -> ArrayRef {
            Arc::new(Int64Array::from_iter_values(commits.iter().map(value)))
        };
        let committed_at = TimestampMillisecondArray::from_iter_values(
            commits
                .iter()
                .map(|commit| i64::try_from(commit.timestamp_ms).unwrap_or(i64::MAX)),
        )
        .with_timezone("UTC");
        let columns: Vec<ArrayRef> = vec![
            int64(|commit| commit.version.0 as i64),
            Arc::new(committed_at),
            Arc::new(StringArray::from_iter(
                commits.iter().map(|commit| commit.user.as_deref()),
            )),
            Arc::new(StringArray::from_iter_values(
                commits.iter().map(|commit| commit.operation.name()),
            )),
            int64(|commit| commit.files_added as i64),
            int64(|commit| commit.rows_added as i64),
            int64(|commit| commit.files_removed as i64),
            Arc::new(StringArray::from_iter(commits.iter().map(|commit| {
                commit
                    .statement
                    .as_ref()
                    .map(|statement| statement.text.as_str())
            }))),
        ];
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

/// `mdf_at(cube, version or timestamp)`.
#[derive(Debug)]
pub struct MdfAtFunction {
    cubes: Arc<CubeSchemaProvider>,
}

impl MdfAtFunction {
    /// The function over the cubes of `cubes`.
    pub fn new(cubes: Arc<CubeSchemaProvider>) -> Self {
        Self { cubes }
    }
}

impl TableFunctionImpl for MdfAtFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let arguments = constant_arguments("mdf_at", &args)?;
        let [cube, at] = arguments.as_slice() else {
            return plan_err!(
                "mdf_at takes a cube and a version or timestamp: mdf_at('cube.finance', 42)"
            );
        };
        let cube = named_cube(&self.cubes, "mdf_at", cube)?;
        let at = match at {
            ScalarValue::Int8(Some(_))
            | ScalarValue::Int16(Some(_))
            | ScalarValue::Int32(Some(_))
            | ScalarValue::Int64(Some(_)) => {
                let ScalarValue::Int64(Some(version)) = at.cast_to(&DataType::Int64)? else {
                    unreachable!("an integer casts to Int64");
                };
                let Ok(version) = u64::try_from(version) else {
                    return plan_err!("mdf_at: versions start at 0, not {version}");
                };
                VersionSelector::Version(SnapshotVersion(version))
            }
            timestamp => {
                let as_timestamp = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
                match timestamp.cast_to(&as_timestamp) {
                    Ok(ScalarValue::TimestampMillisecond(Some(ms), _)) if ms >= 0 => {
                        VersionSelector::AsOf(ms as u64)
                    }
                    _ => {
                        return plan_err!(
                            "mdf_at: {timestamp} is neither a version nor a timestamp after 1970"
                        );
                    }
                }
            }
        };
        Ok(Arc::new(CubeAt::new(cube, at)))
    }
}

/// `mdf_history(cube)`.
#[derive(Debug)]
pub struct MdfHistoryFunction {
    cubes: Arc<CubeSchemaProvider>,
}

impl MdfHistoryFunction {
    /// The function over the cubes of `cubes`.
    pub fn new(cubes: Arc<CubeSchemaProvider>) -> Self {
        Self { cubes }
    }
}

impl TableFunctionImpl for MdfHistoryFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let arguments = constant_arguments("mdf_history", &args)?;
        let [cube] = arguments.as_slice() else {
            return plan_err!("mdf_history takes a cube: mdf_history('cube.finance')");
        };
        let cube = named_cube(&self.cubes, "mdf_history", cube)?;
        Ok(Arc::new(ComputedTable(CubeHistory::new(cube))))
    }
}
