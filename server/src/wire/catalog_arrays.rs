//! `pg_index` and `pg_constraint` with their column-number and OID vectors as arrays.
//!
//! PostgreSQL types `pg_index.indkey` as `int2vector`, `indclass` as `oidvector`,
//! `pg_constraint.conkey` as `int2[]`, and clients expand them: SQLAlchemy reflects keys and
//! indexes with `unnest(indkey)` and `generate_subscripts(indkey, 1)`, pgJDBC with
//! `_pg_expandarray(indkey)`. datafusion-pg-catalog keeps these columns as their text form
//! (`1 2`, `{1,2}`), which nothing can unnest; [`with_array_columns`] serves the same rows with
//! those columns as lists, and [`with_null_array_columns`] adds `pg_class`'s `relacl` and
//! `reloptions`, which it lacks (SQLAlchemy's index reflection reads `reloptions`).

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int16Builder, Int32Builder, ListBuilder, RecordBatch,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::TableProvider;
use datafusion::common::{Column, DataFusionError, Result, ScalarValue};
use datafusion::datasource::{MemTable, ViewTable, provider_as_source};
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, cast, col, lit};

/// The element type of each vector column, by table.
pub(crate) fn vector_columns(table: &str) -> Option<&'static [(&'static str, DataType)]> {
    const PG_INDEX: &[(&str, DataType)] = &[
        ("indkey", DataType::Int16),
        ("indcollation", DataType::Int32),
        ("indclass", DataType::Int32),
        ("indoption", DataType::Int16),
    ];
    const PG_CONSTRAINT: &[(&str, DataType)] = &[
        ("conkey", DataType::Int16),
        ("confkey", DataType::Int16),
        ("conpfeqop", DataType::Int32),
        ("conppeqop", DataType::Int32),
        ("conffeqop", DataType::Int32),
        ("confdelsetcols", DataType::Int16),
        ("conexclop", DataType::Int32),
    ];
    match table {
        "pg_index" => Some(PG_INDEX),
        "pg_constraint" => Some(PG_CONSTRAINT),
        _ => None,
    }
}

/// The text-array columns datafusion-pg-catalog's `pg_class` lacks, always NULL here (no
/// table has access-control entries or storage options).
pub(crate) const PG_CLASS_MISSING_ARRAYS: [&str; 2] = ["relacl", "reloptions"];

/// `table` (named `name`) with the text-array columns `missing` added as NULLs.
pub(crate) fn with_null_array_columns(
    name: &str,
    table: Arc<dyn TableProvider>,
    missing: &[&str],
) -> Result<Arc<dyn TableProvider>> {
    let mut columns: Vec<Expr> = table
        .schema()
        .fields()
        .iter()
        .map(|field| col(Column::new_unqualified(field.name())))
        .collect();
    let text_array = DataType::new_list(DataType::Utf8, true);
    columns.extend(
        missing
            .iter()
            .map(|column| cast(lit(ScalarValue::Null), text_array.clone()).alias(*column)),
    );
    let plan = LogicalPlanBuilder::scan(name, provider_as_source(table), None)?
        .project(columns)?
        .build()?;
    Ok(Arc::new(ViewTable::new(plan, None)))
}

/// `table` (an in-memory catalog table) with each text column named in `columns` parsed into
/// a list of the given element type.
pub(crate) fn with_array_columns(
    table: &dyn TableProvider,
    columns: &[(&str, DataType)],
) -> Result<Arc<dyn TableProvider>> {
    let memory = table.downcast_ref::<MemTable>().ok_or_else(|| {
        DataFusionError::Internal("catalog table is not held in memory".to_owned())
    })?;
    let schema = table.schema();
    let element = |name: &str| {
        columns
            .iter()
            .find(|(column, _)| *column == name)
            .map(|(_, data_type)| data_type)
    };
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|field| match element(field.name()) {
            Some(data_type) => Field::new(
                field.name(),
                DataType::new_list(data_type.clone(), true),
                true,
            ),
            None => field.as_ref().clone(),
        })
        .collect();
    let array_schema = Arc::new(Schema::new(fields));
    let mut batches = Vec::new();
    for partition in &memory.batches {
        let partition = partition
            .try_read()
            .map_err(|_| DataFusionError::Internal("catalog table is being written".to_owned()))?;
        for batch in partition.iter() {
            let arrays = schema
                .fields()
                .iter()
                .zip(batch.columns())
                .map(|(field, column)| match element(field.name()) {
                    Some(data_type) => parse_vectors(column, data_type),
                    None => Ok(Arc::clone(column)),
                })
                .collect::<Result<Vec<_>>>()?;
            batches.push(RecordBatch::try_new(Arc::clone(&array_schema), arrays)?);
        }
    }
    Ok(Arc::new(MemTable::try_new(array_schema, vec![batches])?))
}

/// Parses the text forms of a vector (`1 2`) or an array (`{1,2}`, `[1, 2]`) into a list.
fn parse_vectors(column: &ArrayRef, element: &DataType) -> Result<ArrayRef> {
    let text = column.as_string_opt::<i32>().ok_or_else(|| {
        DataFusionError::Internal(format!("vector column holds {}", column.data_type()))
    })?;
    let numbers = |value: &str| -> Result<Vec<i64>> {
        value
            .trim_matches(|c| matches!(c, '{' | '}' | '[' | ']'))
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|number| !number.is_empty())
            .map(|number| {
                number.parse::<i64>().map_err(|error| {
                    DataFusionError::Internal(format!("vector element {number:?}: {error}"))
                })
            })
            .collect()
    };
    macro_rules! build {
        ($builder:ty, $native:ty) => {{
            let mut lists = ListBuilder::new(<$builder>::new());
            for value in text.iter() {
                match value {
                    Some(value) => {
                        for number in numbers(value)? {
                            lists.values().append_value(
                                <$native>::try_from(number).map_err(|error| {
                                    DataFusionError::Internal(error.to_string())
                                })?,
                            );
                        }
                        lists.append(true);
                    }
                    None => lists.append(false),
                }
            }
            Arc::new(lists.finish()) as ArrayRef
        }};
    }
    Ok(match element {
        DataType::Int16 => build!(Int16Builder, i16),
        _ => build!(Int32Builder, i32),
    })
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int16Array, StringArray};

    use super::*;

    #[test]
    fn vectors_and_arrays_parse_into_lists() {
        let column: ArrayRef = Arc::new(StringArray::from(vec![
            Some("1 2"),
            Some("{3,4}"),
            Some("[5, 6]"),
            Some(""),
            None,
        ]));
        let lists = parse_vectors(&column, &DataType::Int16).unwrap();
        let lists = lists.as_list::<i32>();
        let values = |row: usize| {
            lists
                .value(row)
                .as_any()
                .downcast_ref::<Int16Array>()
                .unwrap()
                .values()
                .to_vec()
        };
        assert_eq!(
            (values(0), values(1), values(2), values(3)),
            (vec![1, 2], vec![3, 4], vec![5, 6], vec![])
        );
        assert!(lists.is_null(4));
    }
}
