//! `pg_attribute` with `atttypmod` filled in for `numeric` columns, as PostgreSQL records
//! `numeric(precision, scale)`: datafusion-pg-catalog leaves every modifier at -1, so
//! `format_type` (and with it psql's `\d` and drivers' column metadata) showed a bare
//! `numeric`.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Int32Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Result;
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use crate::visible_catalog::{class_names, int4s, namespace_names, rows, text};

/// PostgreSQL's type oid of `numeric`.
const NUMERIC: i32 = 1700;

/// `pg_attribute` whose `numeric` columns carry their precision and scale in `atttypmod`.
#[derive(Debug)]
pub struct NumericModifiers {
    inner: Arc<dyn TableProvider>,
    classes: Arc<dyn TableProvider>,
    namespaces: Arc<dyn TableProvider>,
}

impl NumericModifiers {
    /// `attributes` (datafusion-pg-catalog's `pg_attribute`) with the modifiers filled in; its
    /// `attrelid`s are oids of `classes` (`pg_class`), whose namespaces are in `namespaces`.
    pub fn wrap(
        attributes: Arc<dyn TableProvider>,
        classes: Arc<dyn TableProvider>,
        namespaces: Arc<dyn TableProvider>,
    ) -> Arc<dyn TableProvider> {
        Arc::new(Self {
            inner: attributes,
            classes,
            namespaces,
        })
    }
}

/// PostgreSQL's `atttypmod` of `numeric(precision, scale)`; `None` for a negative scale,
/// which `numeric` does not take.
fn numeric_modifier(precision: u8, scale: i8) -> Option<i32> {
    let scale = u8::try_from(scale).ok()?;
    Some(((i32::from(precision) << 16) | i32::from(scale)) + 4)
}

/// The modifier of `data_type` when it is a decimal.
fn decimal_modifier(data_type: &DataType) -> Option<i32> {
    match data_type {
        DataType::Decimal32(p, s)
        | DataType::Decimal64(p, s)
        | DataType::Decimal128(p, s)
        | DataType::Decimal256(p, s) => numeric_modifier(*p, *s),
        _ => None,
    }
}

/// The schema and name of each relation of `pg_class`, by oid.
async fn relation_names(
    classes: &dyn TableProvider,
    namespaces: &dyn TableProvider,
    state: &dyn Session,
) -> Result<HashMap<i32, (String, String)>> {
    let namespaces = namespace_names(namespaces, state).await?;
    let mut names = HashMap::new();
    for batch in rows(classes, state).await? {
        for (oid, schema, name) in class_names(&batch, &namespaces)? {
            if let Some(schema) = schema {
                names.insert(oid, (schema.to_owned(), name.to_owned()));
            }
        }
    }
    Ok(names)
}

/// The columns of the table `schema.table` in the session's default catalog.
async fn table_schema(state: &dyn Session, schema: &str, table: &str) -> Result<Option<SchemaRef>> {
    let catalog_name = &state.config_options().catalog.default_catalog;
    let Some(schema) = state
        .catalog_list()
        .catalog(catalog_name)
        .and_then(|catalog| catalog.schema(schema))
    else {
        return Ok(None);
    };
    Ok(schema.table(table).await?.map(|table| table.schema()))
}

/// `batch` (rows of `pg_attribute`) with the modifiers of its `numeric` columns filled in.
async fn with_modifiers(
    batch: RecordBatch,
    relations: &HashMap<i32, (String, String)>,
    tables: &mut HashMap<i32, Option<SchemaRef>>,
    state: &dyn Session,
) -> Result<RecordBatch> {
    let mut modifiers = int4s(&batch, "atttypmod")?.to_vec();
    let types = int4s(&batch, "atttypid")?;
    let owners = int4s(&batch, "attrelid")?;
    let names = text(&batch, "attname")?;
    for (row, modifier) in modifiers.iter_mut().enumerate() {
        if types[row] != NUMERIC {
            continue;
        }
        let owner = owners[row];
        if !tables.contains_key(&owner) {
            let columns = match relations.get(&owner) {
                Some((schema, table)) => table_schema(state, schema, table).await?,
                None => None,
            };
            tables.insert(owner, columns);
        }
        let found = tables[&owner]
            .as_ref()
            .zip(names[row])
            .and_then(|(columns, name)| columns.field_with_name(name).ok())
            .and_then(|field| decimal_modifier(field.data_type()));
        if let Some(found) = found {
            *modifier = found;
        }
    }
    let index = batch.schema().index_of("atttypmod")?;
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    columns[index] = Arc::new(Int32Array::from(modifiers));
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

#[async_trait]
impl TableProvider for NumericModifiers {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut batches = rows(self.inner.as_ref(), state).await?;
        // pg_class and pg_namespace are read only when some column needs its table found.
        let mut has_numeric = false;
        for batch in &batches {
            has_numeric |= int4s(batch, "atttypid")?.contains(&NUMERIC);
        }
        if has_numeric {
            let relations =
                relation_names(self.classes.as_ref(), self.namespaces.as_ref(), state).await?;
            let mut tables = HashMap::new();
            let mut filled = Vec::with_capacity(batches.len());
            for batch in batches {
                filled.push(with_modifiers(batch, &relations, &mut tables, state).await?);
            }
            batches = filled;
        }
        MemorySourceConfig::try_new_exec(&[batches], self.schema(), projection.cloned())
            .map(|plan| plan as Arc<dyn ExecutionPlan>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_modifiers_are_postgres_own() {
        // PostgreSQL: numeric(18,2) has atttypmod 1179654; numeric(10,0) 655364.
        assert_eq!(numeric_modifier(18, 2), Some(1_179_654));
        assert_eq!(numeric_modifier(10, 0), Some(655_364));
        assert_eq!(numeric_modifier(5, -2), None);
        assert_eq!(
            decimal_modifier(&DataType::Decimal128(38, 10)),
            Some((38 << 16 | 10) + 4)
        );
        assert_eq!(decimal_modifier(&DataType::Int64), None);
    }
}
