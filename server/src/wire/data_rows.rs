//! DataRow messages for result batches, the rows of a batch encoded into one buffer that
//! grows in large steps: pgwire's `DataRowEncoder` starts a 128-byte buffer and, as each row
//! is split off it, allocates again every row or two (a fifth of the server's time moving a
//! million rows went to those allocations and their copies).

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use datafusion::arrow::array::RecordBatch;
use datafusion_postgres::arrow_pg::encoder::Encoder;
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::error::PgWireResult;
use pgwire::messages::data::DataRow;
use pgwire::types::ToSqlText;
use postgres_types::{IsNull, ToSql};

use super::cells::{ColumnCells, trim_fractional_zeros};

/// The smallest step a buffer that rows are split off grows by (`BytesMut` grows by at least
/// its first capacity): once the rows split off it are sent and dropped, it takes its room back
/// instead of allocating.
pub(crate) const ROW_BUFFER_STEP: usize = 16 * 1024;

/// Room for one row of a small batch (pgwire's starting size): a one-row result does not take
/// a whole [`ROW_BUFFER_STEP`].
const ROW_BYTES: usize = 128;

/// One DataRow per row of `batch`, its columns described by `fields`.
pub(crate) fn data_rows(
    fields: Arc<Vec<FieldInfo>>,
    batch: RecordBatch,
) -> impl Iterator<Item = PgWireResult<DataRow>> {
    let mut encoder = DataRows {
        buffer: BytesMut::with_capacity(ROW_BUFFER_STEP.min(batch.num_rows() * ROW_BYTES)),
        columns: 0,
    };
    let columns = ColumnCells::of_batch(&batch, &fields);
    (0..batch.num_rows()).map(move |row| {
        for (cells, field) in columns.iter().zip(fields.iter()) {
            cells.encode(&mut encoder, row, field)?;
        }
        Ok(encoder.take_row())
    })
}

/// Writes DataRow column values as pgwire's `DataRowEncoder` does: each value's length, then
/// its bytes in the column's format (a length of -1 for NULL).
struct DataRows {
    buffer: BytesMut,
    columns: i16,
}

impl Encoder for DataRows {
    type Item = DataRow;

    fn encode_field<T>(&mut self, value: &T, field: &FieldInfo) -> PgWireResult<()>
    where
        T: ToSql + ToSqlText + Sized,
    {
        let length_at = self.buffer.len();
        self.buffer.put_i32(-1);
        let is_null = match field.format() {
            FieldFormat::Text => {
                let is_null = value.to_sql_text(
                    field.datatype(),
                    &mut self.buffer,
                    field.format_options(),
                )?;
                trim_fractional_zeros(&mut self.buffer, length_at + 4, field.datatype());
                is_null
            }
            FieldFormat::Binary => value.to_sql(field.datatype(), &mut self.buffer)?,
        };
        if let IsNull::No = is_null {
            let length = (self.buffer.len() - length_at - 4) as i32;
            self.buffer[length_at..length_at + 4].copy_from_slice(&length.to_be_bytes());
        }
        self.columns += 1;
        Ok(())
    }

    fn take_row(&mut self) -> DataRow {
        let row = DataRow::new(self.buffer.split(), self.columns);
        self.columns = 0;
        row
    }
}
