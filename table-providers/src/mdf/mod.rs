//! MDF, the "molecular data format": a cube's cells as immutable, sorted Parquet files plus a
//! transaction log (see `docs/mdf.md`).
//!
//! - [`log`]: the commit log and snapshots.
//! - [`writer`]: turns cells into one sorted Parquet file.
//! - [`table`]: the `cube.<name>` table.
//! - [`merge`]: merge-on-read, the latest write of each cell through DataFusion's Parquet scan.
//! - [`summary`]: each large data file's cells summed per granule, which aggregates read.
//! - [`dml`]: `INSERT`, `UPDATE` and `DELETE`, each one commit.
//! - [`transaction`]: `BEGIN ... COMMIT` blocks, one commit for all their writes.
//! - [`time_travel`]: `mdf_at` (a cube at a version or moment) and `mdf_history`.
//! - [`maintenance`]: compaction and vacuum; [`maintenance_sql`]: `mdf_compact`, `mdf_vacuum`.

mod arguments;
pub mod copy;
pub mod dml;
pub mod log;
pub mod maintenance;
pub mod maintenance_sql;
mod marks;
mod member_cells;
pub(crate) mod merge;
pub mod shared_list;
pub mod spread;
pub mod summary;
mod table;
pub mod time_travel;
pub mod transaction;
pub(crate) mod writer;

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::DataFusionError;
use serde::{Deserialize, Serialize};

pub use log::{
    Action, CellBounds, Change, Commit, CommitOperation, CubeLog, DataFile, FileKind, MarksCell,
    Snapshot, SnapshotVersion, StatementRef,
};
pub use table::{CubeSchemaProvider, CubeSummaries, MdfTable};
pub use writer::{data_file_properties, write_data_file};

/// Why an MDF operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MdfError {
    /// No cube is stored at the named place.
    #[error("cube {0} does not exist")]
    NotFound(String),
    /// A cube is already stored at the named place.
    #[error("cube {0} already exists")]
    AlreadyExists(String),
    /// A version asked for (time travel) that the cube does not have.
    #[error("{0}")]
    NoSuchVersion(String),
    /// A definition or write that cannot be accepted.
    #[error("{0}")]
    Invalid(String),
    /// The log lacks an entry between two it has: a listing raced a commit (local folders may
    /// list a newer entry and miss an older one) or, when it lasts, the log is corrupt.
    #[error("corrupt cube storage: log of {cube} has no entry for version {missing}")]
    LogGap {
        /// The cube's folder.
        cube: String,
        /// The first version missing.
        missing: u64,
    },
    /// The stored log or files are not what MDF writes.
    #[error("corrupt cube storage: {0}")]
    Corrupt(String),
    /// A statement a cube cannot carry out.
    #[error("{0}")]
    Unsupported(String),
    /// A concurrent commit changed what this write read (snapshot isolation's first committer
    /// wins); running the statement again sees that commit.
    #[error("{0}")]
    SerializationFailure(String),
    /// A statement other than `COMMIT` or `ROLLBACK` in a transaction block that failed.
    #[error("current transaction is aborted, commands ignored until end of transaction block")]
    InFailedBlock,
    /// One write names the same coordinate twice.
    #[error("{0}")]
    DuplicateCell(String),
    /// A version asked for (time travel) whose data files vacuum has removed.
    #[error("{0}")]
    Vacuumed(String),
    /// Every commit attempt lost its version race.
    #[error("commit gave up after {0} attempts lost to concurrent writers")]
    CommitContention(usize),
    /// The object store failed.
    #[error(transparent)]
    Storage(#[from] object_store::Error),
    /// Encoding cells failed.
    #[error(transparent)]
    Encoding(#[from] DataFusionError),
    /// Arrow could not sort or combine the cells.
    #[error(transparent)]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    /// The Parquet writer failed.
    #[error(transparent)]
    Parquet(#[from] datafusion::parquet::errors::ParquetError),
}

impl MdfError {
    /// The SQLSTATE a client sees for this error.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            MdfError::NotFound(_) => "42P01",
            MdfError::AlreadyExists(_) => "42P07",
            MdfError::Invalid(_) => "22023",
            MdfError::NoSuchVersion(_) => "22023",
            MdfError::Vacuumed(_) => "72000",
            MdfError::Corrupt(_) | MdfError::LogGap { .. } => "XX001",
            MdfError::CommitContention(_) | MdfError::SerializationFailure(_) => "40001",
            MdfError::DuplicateCell(_) => "21000",
            MdfError::InFailedBlock => "25P02",
            MdfError::Unsupported(_) => "0A000",
            MdfError::Storage(_) => "58030",
            MdfError::Encoding(_) | MdfError::Arrow(_) | MdfError::Parquet(_) => "XX000",
        }
    }
}

impl From<MdfError> for DataFusionError {
    fn from(error: MdfError) -> Self {
        match error {
            MdfError::Encoding(inner) => inner,
            other => DataFusionError::External(Box::new(other)),
        }
    }
}

/// A measure column: an exact decimal, as finance expects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Measure {
    /// Column name.
    pub name: String,
    /// Decimal precision (total digits).
    pub precision: u8,
    /// Decimal scale (digits after the point).
    pub scale: i8,
}

/// What a cube is: its dimensions (in sort order) and measures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CubeDefinition {
    /// SQL name under `cube.`.
    pub name: String,
    /// Dimension names, which are also the coordinate columns, in the files' sort order.
    pub dimensions: Vec<String>,
    /// Measure columns.
    pub measures: Vec<Measure>,
}

impl CubeDefinition {
    /// The cube's columns: one non-null text column per dimension (the member code, as
    /// `Utf8View`: member codes are short, so they sit inline in the view and compare, filter
    /// and group without touching string buffers; Parquet reads them that way without a
    /// cast), then one nullable decimal column per measure.
    pub fn arrow_schema(&self) -> SchemaRef {
        let dimensions = self
            .dimensions
            .iter()
            .map(|d| Field::new(d, DataType::Utf8View, false));
        let measures = self
            .measures
            .iter()
            .map(|m| Field::new(&m.name, DataType::Decimal128(m.precision, m.scale), true));
        Arc::new(Schema::new(dimensions.chain(measures).collect::<Vec<_>>()))
    }

    /// Checks names are unique lower-case identifiers and decimals are representable.
    pub fn validate(&self) -> Result<(), MdfError> {
        let names: Vec<&str> = std::iter::once(self.name.as_str())
            .chain(self.dimensions.iter().map(String::as_str))
            .chain(self.measures.iter().map(|m| m.name.as_str()))
            .collect();
        for name in &names {
            let mut chars = name.chars();
            let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
                && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid {
                return Err(MdfError::Invalid(format!(
                    "{name:?} is not a valid cube, dimension or measure name (a-z, 0-9, _)"
                )));
            }
        }
        let mut columns = names[1..].to_vec();
        columns.sort_unstable();
        if let Some(pair) = columns.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(MdfError::Invalid(format!(
                "column {:?} appears twice in cube {:?}",
                pair[0], self.name
            )));
        }
        if self.dimensions.is_empty() {
            return Err(MdfError::Invalid(format!(
                "cube {:?} needs at least one dimension",
                self.name
            )));
        }
        for measure in &self.measures {
            let scale_ok = measure.scale >= 0 && (measure.scale as u8) <= measure.precision;
            if !(1..=38).contains(&measure.precision) || !scale_ok {
                return Err(MdfError::Invalid(format!(
                    "measure {:?}: decimal({}, {}) is not valid",
                    measure.name, measure.precision, measure.scale
                )));
            }
        }
        Ok(())
    }
}
