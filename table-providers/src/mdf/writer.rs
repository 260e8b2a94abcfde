//! Writes cells as one immutable, sorted Parquet file.
//!
//! Rows are sorted by the cube's dimensions in definition order, so each row group covers a
//! narrow range of the leading dimensions and DataFusion's statistics pruning can skip it.
//! Files are named by a random id and written put-if-absent; they become visible only when a
//! log entry names them, so a writer that dies before committing leaves an unreferenced file
//! and never a half-visible write.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::{
    SortColumn, concat_batches, lexsort_to_indices, take_record_batch,
};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::metadata::SortingColumn;
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};

use super::log::CubeLog;
use super::{CubeDefinition, DataFile, MdfError};

/// Rows per Parquet row group: small enough for pruning to pay, large enough to scan fast.
const ROW_GROUP_ROWS: usize = 64 * 1024;

fn writer_properties(cube: &CubeDefinition) -> WriterProperties {
    let sorting = (0..cube.dimensions.len())
        .map(|column_idx| SortingColumn {
            column_idx: column_idx as i32,
            descending: false,
            nulls_first: false,
        })
        .collect();
    WriterProperties::builder()
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_sorting_columns(Some(sorting))
        .build()
}

/// Sorts `batches` by the cube's dimensions and writes them as a new data file of the cube.
/// Returns `None` when there are no rows (nothing to commit).
pub async fn write_data_file(
    log: &CubeLog,
    storage: &crate::storage::Storage,
    cube: &CubeDefinition,
    batches: &[RecordBatch],
) -> Result<Option<DataFile>, MdfError> {
    let schema = cube.arrow_schema();
    let cells = concat_batches(&schema, batches)?;
    if cells.num_rows() == 0 {
        return Ok(None);
    }
    let sort_columns: Vec<SortColumn> = (0..cube.dimensions.len())
        .map(|i| SortColumn {
            values: Arc::clone(cells.column(i)),
            options: None,
        })
        .collect();
    let order = lexsort_to_indices(&sort_columns, None)?;
    let sorted = take_record_batch(&cells, &order)?;

    let mut buffer = Vec::with_capacity(sorted.get_array_memory_size() / 4);
    let mut writer = ArrowWriter::try_new(&mut buffer, schema, Some(writer_properties(cube)))?;
    writer.write(&sorted)?;
    writer.close()?;

    let file_name = format!("{}.parquet", uuid::Uuid::new_v4().simple());
    let size = buffer.len() as u64;
    let location = log.cube_dir().clone().join("data").join(file_name.as_str());
    storage.put_if_absent(&location, buffer).await?;
    Ok(Some(DataFile {
        path: format!("data/{file_name}"),
        size,
        rows: sorted.num_rows() as u64,
    }))
}
