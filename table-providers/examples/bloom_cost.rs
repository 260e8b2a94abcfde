//! What a Parquet bloom filter on each dimension column would cost and prune in a cube's data
//! file: the file is rewritten with the data-file writer's settings plus a bloom filter on one
//! dimension (sized for the dimension's members, 1% false positives), and for 16 members
//! spread over the dimension, the row groups min/max statistics keep are compared with those
//! the bloom filter keeps too. Prints a Markdown table; `bench/scan` runs it on the demo cube.
//!
//! `cargo run --release --example bloom_cost -p quantatom-table-providers -- FILE.parquet`

use std::collections::BTreeSet;

use bytes::Bytes;
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::file::metadata::ParquetMetaData;
use datafusion::parquet::file::properties::ReaderProperties;
use datafusion::parquet::file::reader::FileReader;
use datafusion::parquet::file::serialized_reader::{ReadOptionsBuilder, SerializedFileReader};
use datafusion::parquet::file::statistics::Statistics;
use datafusion::parquet::schema::types::ColumnPath;
use quantatom_table_providers::mdf::{CubeDefinition, Measure, data_file_properties};

/// Members probed per dimension.
const PROBES: usize = 16;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: bloom_cost FILE.parquet")?;
    let original = Bytes::from(std::fs::read(&path)?);
    let batches: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(original.clone())?
        .build()?
        .collect::<Result<_, _>>()?;
    let schema = batches.first().ok_or("the file has no rows")?.schema();
    let cube = CubeDefinition {
        name: "bloom_cost".into(),
        dimensions: schema
            .fields()
            .iter()
            .filter(|f| matches!(f.data_type(), DataType::Utf8 | DataType::Utf8View))
            .map(|f| f.name().clone())
            .collect(),
        measures: schema
            .fields()
            .iter()
            .filter_map(|f| match f.data_type() {
                DataType::Decimal128(precision, scale) => Some(Measure {
                    name: f.name().clone(),
                    precision: *precision,
                    scale: *scale,
                }),
                _ => None,
            })
            .collect(),
    };
    let plain = rewrite(&batches, &cube, None)?;
    println!(
        "| dimension | members | bloom filter bytes | file size | row groups kept by min/max | kept by min/max and bloom filter |"
    );
    println!("|---|---|---|---|---|---|");
    for (index, dimension) in cube.dimensions.iter().enumerate() {
        let members: BTreeSet<String> = batches
            .iter()
            .flat_map(|batch| {
                let column = batch.column(index).as_string_view();
                column
                    .iter()
                    .flatten()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect();
        let members: Vec<String> = members.into_iter().collect();
        let with_bloom = rewrite(&batches, &cube, Some((dimension, members.len() as u64)))?;
        let reader = SerializedFileReader::new_with_options(
            with_bloom.clone(),
            ReadOptionsBuilder::new()
                .with_reader_properties(
                    ReaderProperties::builder()
                        .set_read_bloom_filter(true)
                        .build(),
                )
                .build(),
        )?;
        let step = members.len().div_ceil(PROBES).max(1);
        let probes: Vec<&String> = members.iter().step_by(step).collect();
        let (mut by_statistics, mut by_bloom) = (0, 0);
        for member in &probes {
            for group in 0..reader.num_row_groups() {
                if !statistics_admit(reader.metadata(), group, index, member) {
                    continue;
                }
                by_statistics += 1;
                let row_group = reader.get_row_group(group)?;
                if row_group
                    .get_column_bloom_filter(index)
                    .is_none_or(|bloom| bloom.check(member.as_str()))
                {
                    by_bloom += 1;
                }
            }
        }
        let probes = probes.len() as f64;
        let extra = with_bloom.len() as i64 - plain.len() as i64;
        println!(
            "| {dimension} | {} | {} KiB | +{:.1}% | {:.1} of {} | {:.1} |",
            members.len(),
            extra / 1024,
            100.0 * extra as f64 / plain.len() as f64,
            by_statistics as f64 / probes,
            reader.num_row_groups(),
            by_bloom as f64 / probes,
        );
    }
    Ok(())
}

/// The cells written as a data file, with a bloom filter on `bloom`'s dimension (sized for
/// its number of members) when given.
fn rewrite(
    batches: &[RecordBatch],
    cube: &CubeDefinition,
    bloom: Option<(&String, u64)>,
) -> Result<Bytes, Box<dyn std::error::Error>> {
    let mut properties = data_file_properties(cube).into_builder();
    if let Some((dimension, members)) = bloom {
        let column = ColumnPath::from(dimension.as_str());
        properties = properties
            .set_column_bloom_filter_enabled(column.clone(), true)
            .set_column_bloom_filter_max_ndv(column.clone(), members)
            .set_column_bloom_filter_fpp(column, 0.01);
    }
    let mut writer =
        ArrowWriter::try_new(Vec::new(), cube.arrow_schema(), Some(properties.build()))?;
    for batch in batches {
        writer.write(batch)?;
    }
    Ok(Bytes::from(writer.into_inner()?))
}

/// Whether row group `group`'s min/max statistics of column `column` admit `member`.
fn statistics_admit(metadata: &ParquetMetaData, group: usize, column: usize, member: &str) -> bool {
    match metadata.row_group(group).column(column).statistics() {
        Some(Statistics::ByteArray(range)) => {
            let member = member.as_bytes();
            range.min_opt().is_none_or(|min| min.data() <= member)
                && range.max_opt().is_none_or(|max| member <= max.data())
        }
        _ => true,
    }
}
