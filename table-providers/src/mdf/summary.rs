//! Summaries: a data file's cells summed, per granule, by the file's leading dimensions.
//!
//! A grid or a total reads many cells to give few numbers: `sum(amount)` of one version by
//! account reads every cell of that version. Beside each large data file the writer stores
//! its *summary*, a small Parquet file (`summaries/<id>.parquet` for
//! `data/<id>.parquet`): for each granule of the data file (see [`super::marks`]) and each run
//! of equal members of its first `dimensions` dimensions, one row with those members, the
//! number of cells, and per measure the sum, the number of non-null values, the smallest and
//! the largest value. The cells are sorted by the dimensions, so these runs are long; the
//! writer keeps as many leading dimensions as leave at least [`CELLS_PER_SUMMARY_ROW`] cells
//! per row on average, and writes no summary for a file of fewer than
//! [`MIN_SUMMARISED_CELLS`] cells.
//!
//! A query that groups and filters by those dimensions only and sums, counts, or takes the
//! smallest or largest value of measures can read a granule's summary rows instead of its
//! cells, whenever it would read the granule's cells as they are: when no later file writes
//! a coordinate of it (see [`super::merge`]). The rows of granules that merging has to
//! rank are read as cells, as always, and enter the same sums one cell per row, so the answer
//! is the one the cells give, at any mix of summarised and pending files.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Decimal128Array, Int64Array, RecordBatch, StringViewArray,
    UInt32Array,
};
use datafusion::arrow::compute::partition;
use datafusion::arrow::datatypes::{
    DECIMAL128_MAX_PRECISION, DataType, Decimal128Type, Field, Schema, SchemaRef,
};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use super::marks::GRANULE_ROWS;
use super::writer::ROW_GROUP_ROWS;
use super::{CubeDefinition, MdfError};

/// A summary is written only when it has at most one row per this many cells.
pub(crate) const CELLS_PER_SUMMARY_ROW: u64 = 16;

/// A summary is written only for a file of at least this many cells (one granule).
pub(crate) const MIN_SUMMARISED_CELLS: u64 = GRANULE_ROWS as u64;

/// The summary column numbering a row's granule in its data file.
pub(crate) const GRANULE_COLUMN: &str = "granule$";

/// The summary column counting a row's cells.
pub const CELLS_COLUMN: &str = "cells$";

/// A data file's summary, as its log entry records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummaryFile {
    /// How many leading dimensions it keeps.
    pub dimensions: usize,
    /// Rows.
    pub rows: u64,
    /// Size in bytes.
    pub size: u64,
}

/// The folder of a cube's summaries, beside its `data/` folder (which so holds only data
/// files, for readers that take every Parquet file in it).
pub(crate) const SUMMARIES_FOLDER: &str = "summaries";

/// The path of the summary of the data file at `data_path` (both relative to the cube
/// folder): `data/<name>` → `summaries/<name>`.
pub(crate) fn summary_path(data_path: &str) -> String {
    let name = data_path.rsplit('/').next().unwrap_or(data_path);
    format!("{SUMMARIES_FOLDER}/{name}")
}

/// The path of the data file whose summary is at `path`, when `path` names a summary.
pub(crate) fn summarised_path(path: &str) -> Option<String> {
    let name = path.strip_prefix(SUMMARIES_FOLDER)?.strip_prefix('/')?;
    Some(format!("data/{name}"))
}

/// The column holding a measure's count of non-null values.
pub fn count_column(measure: &str) -> String {
    format!("{measure}$count")
}

/// The column holding a measure's smallest value.
pub fn min_column(measure: &str) -> String {
    format!("{measure}$min")
}

/// The column holding a measure's largest value.
pub fn max_column(measure: &str) -> String {
    format!("{measure}$max")
}

/// The precision of a sum of `decimal(precision, _)` values: DataFusion's for `sum`.
pub(crate) fn sum_precision(precision: u8) -> u8 {
    DECIMAL128_MAX_PRECISION.min(precision + 10)
}

/// The columns a summary read gives for a cube whose columns are `cube` (its `dimensions`
/// dimensions, then its decimal measures) grouped by its first `keep` dimensions: those
/// dimensions, then per measure its sum (named as the measure), count, smallest and largest
/// value, then the number of cells.
pub(crate) fn partial_fields(cube: &Schema, dimensions: usize, keep: usize) -> Vec<Field> {
    let mut fields: Vec<Field> = cube.fields()[..keep]
        .iter()
        .map(|dimension| dimension.as_ref().clone())
        .collect();
    for measure in &cube.fields()[dimensions..] {
        let DataType::Decimal128(precision, scale) = *measure.data_type() else {
            unreachable!("a cube's measures are decimals");
        };
        let sum = DataType::Decimal128(sum_precision(precision), scale);
        let name = measure.name();
        fields.extend([
            Field::new(name, sum, true),
            Field::new(count_column(name), DataType::Int64, false),
            Field::new(min_column(name), measure.data_type().clone(), true),
            Field::new(max_column(name), measure.data_type().clone(), true),
        ]);
    }
    fields.push(Field::new(CELLS_COLUMN, DataType::Int64, false));
    fields
}

/// The columns of a summary file keeping `keep` leading dimensions of a cube whose columns
/// are `cube`: the granule, then [`partial_fields`].
pub(crate) fn file_schema(cube: &Schema, dimensions: usize, keep: usize) -> SchemaRef {
    let granule = Field::new(GRANULE_COLUMN, DataType::UInt32, false);
    let fields = std::iter::once(granule).chain(partial_fields(cube, dimensions, keep));
    Arc::new(Schema::new(fields.collect::<Vec<_>>()))
}

/// One measure's partial aggregates over some cells.
#[derive(Debug, Clone, Copy, Default)]
struct Partial {
    sum: i128,
    count: i64,
    min: i128,
    max: i128,
}

impl Partial {
    fn add(&mut self, value: i128) {
        if self.count == 0 {
            (self.min, self.max) = (value, value);
        } else {
            self.min = self.min.min(value);
            self.max = self.max.max(value);
        }
        // Saturates rather than wraps: a sum out of its precision drops the summary.
        self.sum = self.sum.saturating_add(value);
        self.count += 1;
    }

    fn merge(&mut self, other: &Partial) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *other;
            return;
        }
        self.sum = self.sum.saturating_add(other.sum);
        self.count += other.count;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }
}

/// One summary row: a granule's cells with the same leading members.
#[derive(Debug, Clone)]
struct SummaryRow {
    granule: u32,
    members: Vec<String>,
    cells: i64,
    measures: Vec<Partial>,
}

/// Collects a data file's summary while its sorted cells are written.
#[derive(Debug)]
pub(crate) struct SummaryCollector {
    cube: CubeDefinition,
    /// How many leading dimensions the rows keep now; 0 once no summary will be written.
    dimensions: usize,
    cells: u64,
    rows: Vec<SummaryRow>,
}

impl SummaryCollector {
    /// A collector for a file of `cube`'s cells; it starts by keeping every dimension but the
    /// last and keeps fewer as the rows outgrow [`CELLS_PER_SUMMARY_ROW`].
    pub(crate) fn new(cube: &CubeDefinition) -> Self {
        Self {
            cube: cube.clone(),
            dimensions: cube.dimensions.len().saturating_sub(1),
            cells: 0,
            rows: Vec::new(),
        }
    }

    /// Takes note of `batch`, the cells following those noted before in sort order.
    pub(crate) fn add(&mut self, batch: &RecordBatch) -> Result<(), MdfError> {
        // A granule's worth at a time, so that runs too short to keep are folded before a
        // large batch of them (a whole cube written at once) makes millions of rows.
        let mut start = 0;
        while start < batch.num_rows() {
            let length = GRANULE_ROWS.min(batch.num_rows() - start);
            self.add_slice(&batch.slice(start, length))?;
            start += length;
        }
        Ok(())
    }

    /// [`Self::add`] for at most a granule's worth of cells.
    fn add_slice(&mut self, batch: &RecordBatch) -> Result<(), MdfError> {
        let rows = batch.num_rows();
        if self.dimensions == 0 || rows == 0 {
            self.cells += rows as u64;
            return Ok(());
        }
        let first_measure = self.cube.dimensions.len();
        let measures: Vec<&Decimal128Array> = batch.columns()[first_measure..]
            .iter()
            .map(|column| column.as_primitive::<Decimal128Type>())
            .collect();
        let leading = &batch.columns()[..self.dimensions];
        let codes: Vec<&StringViewArray> = leading.iter().map(|c| c.as_string_view()).collect();
        let offset = self.cells as usize;
        for run in partition(leading)?.ranges() {
            let mut start = run.start;
            while start < run.end {
                let granule = (offset + start) / GRANULE_ROWS;
                let end = run.end.min((granule + 1) * GRANULE_ROWS - offset);
                self.add_run(granule as u32, &codes, &measures, start, end);
                start = end;
            }
        }
        self.cells += rows as u64;
        // Judged once a granule's worth is in: a sparse start is no measure of the file.
        while self.dimensions > 0 && self.cells >= GRANULE_ROWS as u64 && self.too_many_rows() {
            self.keep_fewer_dimensions();
        }
        Ok(())
    }

    /// Adds rows `start..end` of a batch, one granule's cells with equal leading members.
    fn add_run(
        &mut self,
        granule: u32,
        codes: &[&StringViewArray],
        measures: &[&Decimal128Array],
        start: usize,
        end: usize,
    ) {
        let mut partials = vec![Partial::default(); measures.len()];
        for (partial, values) in partials.iter_mut().zip(measures) {
            for row in start..end {
                if values.is_valid(row) {
                    partial.add(values.value(row));
                }
            }
        }
        let cells = (end - start) as i64;
        if let Some(last) = self.rows.last_mut()
            && last.granule == granule
            && (last.members.iter().zip(codes)).all(|(member, c)| member == c.value(start))
        {
            last.cells += cells;
            for (mine, added) in last.measures.iter_mut().zip(&partials) {
                mine.merge(added);
            }
            return;
        }
        self.rows.push(SummaryRow {
            granule,
            members: codes.iter().map(|c| c.value(start).to_owned()).collect(),
            cells,
            measures: partials,
        });
    }

    /// Whether the rows outgrow the cells: more than one row per [`CELLS_PER_SUMMARY_ROW`]
    /// cells, beyond the row per granule a summary has anyway.
    fn too_many_rows(&self) -> bool {
        let granules = self.cells.div_ceil(GRANULE_ROWS as u64);
        self.rows.len() as u64 > self.cells / CELLS_PER_SUMMARY_ROW + granules + 1
    }

    /// Keeps one dimension fewer, folding the rows it told apart.
    fn keep_fewer_dimensions(&mut self) {
        self.dimensions -= 1;
        let keep = self.dimensions;
        let mut folded: Vec<SummaryRow> = Vec::with_capacity(self.rows.len() / 4);
        for mut row in std::mem::take(&mut self.rows) {
            row.members.truncate(keep);
            match folded.last_mut() {
                Some(last) if last.granule == row.granule && last.members == row.members => {
                    last.cells += row.cells;
                    for (mine, added) in last.measures.iter_mut().zip(&row.measures) {
                        mine.merge(added);
                    }
                }
                _ => folded.push(row),
            }
        }
        self.rows = folded;
    }

    /// The summary's rows as one batch and the number of dimensions it keeps (fewer while
    /// the rows outgrow the cells), or `None` when the file gets no summary: too few cells,
    /// no dimension kept, or a sum beyond its column's precision.
    pub(crate) fn finish(mut self) -> Result<Option<(RecordBatch, usize)>, MdfError> {
        while self.dimensions > 0 && self.too_many_rows() {
            self.keep_fewer_dimensions();
        }
        if self.dimensions == 0 || self.cells < MIN_SUMMARISED_CELLS {
            return Ok(None);
        }
        let cube = self.cube.arrow_schema();
        let schema = file_schema(&cube, self.cube.dimensions.len(), self.dimensions);
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        columns.push(Arc::new(UInt32Array::from_iter_values(
            self.rows.iter().map(|row| row.granule),
        )));
        for dimension in 0..self.dimensions {
            let members = self.rows.iter().map(|row| row.members[dimension].as_str());
            columns.push(Arc::new(StringViewArray::from_iter_values(members)));
        }
        for (index, measure) in self.cube.measures.iter().enumerate() {
            let partials = || self.rows.iter().map(move |row| row.measures[index]);
            let limit = 10i128.pow(sum_precision(measure.precision) as u32);
            if partials().any(|p| p.sum <= -limit || p.sum >= limit) {
                return Ok(None);
            }
            let decimal = |values: Vec<Option<i128>>, precision: u8| {
                Decimal128Array::from(values).with_precision_and_scale(precision, measure.scale)
            };
            let present = |value: i128, partial: Partial| (partial.count > 0).then_some(value);
            let sums = partials().map(|p| present(p.sum, p)).collect();
            let mins = partials().map(|p| present(p.min, p)).collect();
            let maxes = partials().map(|p| present(p.max, p)).collect();
            columns.push(Arc::new(decimal(sums, sum_precision(measure.precision))?));
            columns.push(Arc::new(Int64Array::from_iter_values(
                partials().map(|p| p.count),
            )));
            columns.push(Arc::new(decimal(mins, measure.precision)?));
            columns.push(Arc::new(decimal(maxes, measure.precision)?));
        }
        columns.push(Arc::new(Int64Array::from_iter_values(
            self.rows.iter().map(|row| row.cells),
        )));
        Ok(Some((
            RecordBatch::try_new(schema, columns)?,
            self.dimensions,
        )))
    }
}

/// `summary` (a batch [`SummaryCollector::finish`] made) as the bytes of a Parquet file.
pub(crate) fn encode(summary: &RecordBatch) -> Result<Vec<u8>, MdfError> {
    let properties = WriterProperties::builder()
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut writer = ArrowWriter::try_new(Vec::new(), summary.schema(), Some(properties))?;
    writer.write(summary)?;
    Ok(writer.into_inner()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mdf::Measure;
    use datafusion::arrow::array::StringArray;
    use datafusion::arrow::datatypes::Int64Type;

    fn cube() -> CubeDefinition {
        CubeDefinition {
            name: "plan".to_owned(),
            dimensions: vec!["a".to_owned(), "b".to_owned(), "c".to_owned()],
            measures: vec![Measure {
                name: "amount".to_owned(),
                precision: 18,
                scale: 2,
            }],
        }
    }

    /// The sorted cells `a × b × c` (`b` and `c` zero-padded numbers), the amount `b` cents,
    /// none where `c` is 0; in batches of 3,000 rows, so runs cross batches and granules.
    fn cells(a: &[&str], b: usize, c: usize) -> Vec<RecordBatch> {
        let mut rows = Vec::new();
        for a in a {
            for b in 0..b {
                for c in 0..c {
                    rows.push((a.to_string(), format!("{b:05}"), format!("{c:05}"), b, c));
                }
            }
        }
        let schema = cube().arrow_schema();
        rows.chunks(3_000)
            .map(|chunk| {
                let codes = |pick: fn(&(String, String, String, usize, usize)) -> &str| {
                    let strings = StringArray::from_iter_values(chunk.iter().map(pick));
                    datafusion::arrow::compute::cast(&strings, &DataType::Utf8View).unwrap()
                };
                let amounts = Decimal128Array::from_iter(
                    chunk.iter().map(|r| (r.4 != 0).then_some(r.3 as i128)),
                )
                .with_precision_and_scale(18, 2)
                .unwrap();
                RecordBatch::try_new(
                    Arc::clone(&schema),
                    vec![
                        codes(|r| &r.0),
                        codes(|r| &r.1),
                        codes(|r| &r.2),
                        Arc::new(amounts),
                    ],
                )
                .unwrap()
            })
            .collect()
    }

    fn summarise(batches: &[RecordBatch]) -> Option<(RecordBatch, usize)> {
        let mut collector = SummaryCollector::new(&cube());
        for batch in batches {
            collector.add(batch).unwrap();
        }
        collector.finish().unwrap()
    }

    fn int64s(batch: &RecordBatch, name: &str) -> Vec<i64> {
        let column = batch.column_by_name(name).unwrap();
        column.as_primitive::<Int64Type>().values().to_vec()
    }

    #[test]
    fn a_summary_sums_each_granules_runs_of_the_leading_dimensions() {
        // 2 × 100 × 200 = 40,000 cells: runs of (a, b) are 200 cells long.
        let batches = cells(&["x", "y"], 100, 200);
        let (summary, dimensions) = summarise(&batches).expect("a summary");
        assert_eq!(dimensions, 2, "every dimension but the last");
        // 200 runs, four of them split where a granule ends (none ends with a run).
        assert_eq!(summary.num_rows(), 204);
        let cells = int64s(&summary, CELLS_COLUMN);
        assert_eq!(cells.iter().sum::<i64>(), 40_000);
        let granules = summary
            .column(0)
            .as_primitive::<datafusion::arrow::datatypes::UInt32Type>();
        for granule in 0..5u32 {
            let in_granule: i64 = (cells.iter().zip(granules.values()))
                .filter(|(_, g)| **g == granule)
                .map(|(cells, _)| cells)
                .sum();
            let expected = if granule < 4 {
                8_192
            } else {
                40_000 - 4 * 8_192
            };
            assert_eq!(in_granule, expected, "granule {granule}");
        }
        // Each (a, b) has 199 valued cells of b cents: the sums, counts, minimums and maximums
        // over the rows of one run are the run's.
        let counts = int64s(&summary, &count_column("amount"));
        assert_eq!(counts.iter().sum::<i64>(), 2 * 100 * 199);
        let sums = summary
            .column_by_name("amount")
            .unwrap()
            .as_primitive::<Decimal128Type>();
        let total: i128 = sums.iter().flatten().sum();
        assert_eq!(total, 2 * 199 * (0..100).sum::<i128>());
        let b = summary.column(2).as_string_view();
        let mins = summary.column_by_name(&min_column("amount")).unwrap();
        let maxes = summary.column_by_name(&max_column("amount")).unwrap();
        for row in 0..summary.num_rows() {
            let member: i128 = b.value(row).parse().unwrap();
            for values in [mins, maxes] {
                let values = values.as_primitive::<Decimal128Type>();
                assert_eq!(values.value(row), member, "row {row}");
            }
        }
    }

    #[test]
    fn a_summary_keeps_fewer_dimensions_when_runs_are_short() {
        // 2 × 5,000 × 8 cells: runs of (a, b) are 8 cells, under 16 per row; (a) remains.
        let (summary, dimensions) = summarise(&cells(&["x", "y"], 5_000, 8)).unwrap();
        assert_eq!(dimensions, 1);
        assert_eq!(
            summary.num_rows(),
            10 + 1,
            "one run per granule, one split by x/y"
        );
        assert_eq!(summary.schema(), file_schema(&cube().arrow_schema(), 3, 1));
        assert_eq!(int64s(&summary, CELLS_COLUMN).iter().sum::<i64>(), 80_000);
    }

    #[test]
    fn small_files_and_runs_of_single_cells_get_no_summary() {
        assert!(summarise(&cells(&["x"], 10, 800)).is_none(), "8,000 cells");
        // A cube of one dimension has no leading dimension to sum its cells by.
        let one_dimension = CubeDefinition {
            dimensions: vec!["a".to_owned()],
            ..cube()
        };
        let mut collector = SummaryCollector::new(&one_dimension);
        let batch = cells(&["x"], 1, 40_000).remove(0);
        let batch = RecordBatch::try_new(
            one_dimension.arrow_schema(),
            vec![Arc::clone(batch.column(2)), Arc::clone(batch.column(3))],
        )
        .unwrap();
        collector.add(&batch).unwrap();
        assert!(collector.finish().unwrap().is_none());
    }

    #[test]
    fn a_summary_is_named_after_its_data_file() {
        assert_eq!(summary_path("data/abc.parquet"), "summaries/abc.parquet");
        assert_eq!(
            summarised_path("summaries/abc.parquet").as_deref(),
            Some("data/abc.parquet")
        );
        assert_eq!(summarised_path("data/abc.parquet"), None);
    }
}
