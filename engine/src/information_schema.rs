//! `information_schema` as PostgreSQL clients query it: DataFusion's own views (`tables`,
//! `columns`, `views`, `schemata`, `routines`, `parameters`, `df_settings`) plus the constraint
//! views BI tools read on connect (Metabase, DBeaver, Superset): `table_constraints`,
//! `key_column_usage`, `referential_constraints`, `constraint_column_usage`,
//! `check_constraints`. Quantatom declares no constraints, so those are empty, with
//! PostgreSQL's columns. `columns.data_type` names types in PostgreSQL's words (`integer`,
//! `text`, `numeric`, `timestamp with time zone`), as Grafana's and DBeaver's column pickers
//! read them, where DataFusion writes Arrow's (`Int32`, `Utf8`).

use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{AsArray, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::catalog::information_schema::InformationSchemaProvider;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::common::{Column, Result};
use datafusion::datasource::empty::EmptyTable;
use datafusion::datasource::{ViewTable, provider_as_source};
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlanBuilder, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility, col,
};

use crate::visible_catalog::{Listing, VisibleRows};

/// The constraint views and their columns (text unless marked as an integer).
const CONSTRAINT_VIEWS: &[(&str, &[&str])] = &[
    (
        "table_constraints",
        &[
            "constraint_catalog",
            "constraint_schema",
            "constraint_name",
            "table_catalog",
            "table_schema",
            "table_name",
            "constraint_type",
            "is_deferrable",
            "initially_deferred",
            "enforced",
            "nulls_distinct",
        ],
    ),
    (
        "key_column_usage",
        &[
            "constraint_catalog",
            "constraint_schema",
            "constraint_name",
            "table_catalog",
            "table_schema",
            "table_name",
            "column_name",
            "ordinal_position:int",
            "position_in_unique_constraint:int",
        ],
    ),
    (
        "referential_constraints",
        &[
            "constraint_catalog",
            "constraint_schema",
            "constraint_name",
            "unique_constraint_catalog",
            "unique_constraint_schema",
            "unique_constraint_name",
            "match_option",
            "update_rule",
            "delete_rule",
        ],
    ),
    (
        "constraint_column_usage",
        &[
            "table_catalog",
            "table_schema",
            "table_name",
            "column_name",
            "constraint_catalog",
            "constraint_schema",
            "constraint_name",
        ],
    ),
    (
        "check_constraints",
        &[
            "constraint_catalog",
            "constraint_schema",
            "constraint_name",
            "check_clause",
        ],
    ),
];

/// DataFusion's `information_schema` with the constraint views added.
#[derive(Debug)]
pub struct PostgresInformationSchema {
    inner: InformationSchemaProvider,
}

impl PostgresInformationSchema {
    /// Wraps DataFusion's provider, `inner`.
    pub fn new(inner: InformationSchemaProvider) -> Self {
        Self { inner }
    }
}

fn constraint_view(columns: &[&str]) -> Arc<dyn TableProvider> {
    let fields: Vec<Field> = columns
        .iter()
        .map(|column| match column.strip_suffix(":int") {
            Some(name) => Field::new(name, DataType::Int32, true),
            None => Field::new(*column, DataType::Utf8, true),
        })
        .collect();
    Arc::new(EmptyTable::new(Arc::new(Schema::new(fields))))
}

#[async_trait]
impl SchemaProvider for PostgresInformationSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.inner.table_names();
        names.extend(CONSTRAINT_VIEWS.iter().map(|(name, _)| (*name).to_owned()));
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if let Some((_, columns)) = CONSTRAINT_VIEWS
            .iter()
            .find(|(view, _)| view.eq_ignore_ascii_case(name))
        {
            return Ok(Some(constraint_view(columns)));
        }
        let named = |table| Listing::Named {
            schema: "table_schema",
            table,
        };
        Ok(match self.inner.table(name).await? {
            Some(columns) if name.eq_ignore_ascii_case("columns") => Some(VisibleRows::wrap(
                with_postgres_type_names(columns)?,
                named("table_name"),
            )),
            Some(table)
                if name.eq_ignore_ascii_case("tables") || name.eq_ignore_ascii_case("views") =>
            {
                Some(VisibleRows::wrap(table, named("table_name")))
            }
            table => table,
        })
    }

    fn table_exist(&self, name: &str) -> bool {
        CONSTRAINT_VIEWS
            .iter()
            .any(|(view, _)| view.eq_ignore_ascii_case(name))
            || self.inner.table_exist(name)
    }
}

/// DataFusion's `columns` view with `data_type` rewritten by [`PostgresTypeNameFunction`].
fn with_postgres_type_names(columns: Arc<dyn TableProvider>) -> Result<Arc<dyn TableProvider>> {
    let type_name = Arc::new(ScalarUDF::new_from_impl(PostgresTypeNameFunction {
        signature: Signature::exact(vec![DataType::Utf8], Volatility::Immutable),
    }));
    let projection: Vec<Expr> = columns
        .schema()
        .fields()
        .iter()
        .map(|field| {
            let column = col(Column::new_unqualified(field.name()));
            if field.name() == "data_type" {
                type_name.call(vec![column]).alias("data_type")
            } else {
                column
            }
        })
        .collect();
    let plan = LogicalPlanBuilder::scan("columns", provider_as_source(columns), None)?
        .project(projection)?
        .build()?;
    Ok(Arc::new(ViewTable::new(plan, None)))
}

/// PostgreSQL's name for the type whose Arrow name is the argument (what
/// `information_schema.columns.data_type` says in PostgreSQL); Arrow's name when there is no
/// PostgreSQL counterpart.
#[derive(Debug, PartialEq, Eq, Hash)]
struct PostgresTypeNameFunction {
    signature: Signature,
}

impl ScalarUDFImpl for PostgresTypeNameFunction {
    fn name(&self) -> &str {
        "postgres_type_name"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrow_names = ColumnarValue::values_to_arrays(&args.args)?;
        let names: StringArray = arrow_names[0]
            .as_string::<i32>()
            .iter()
            .map(|arrow_name| {
                arrow_name.map(|arrow_name| {
                    postgres_type_name(arrow_name)
                        .unwrap_or(arrow_name)
                        .to_owned()
                })
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(names)))
    }
}

fn postgres_type_name(arrow_name: &str) -> Option<&'static str> {
    postgres_name_of_type(&DataType::from_str(arrow_name).ok()?)
}

/// The name PostgreSQL gives the type Quantatom sends `data_type` as (an array is `ARRAY`, as
/// `information_schema` names it); `None` for a type that has no PostgreSQL counterpart.
pub(crate) fn postgres_name_of_type(data_type: &DataType) -> Option<&'static str> {
    Some(match data_type {
        DataType::Boolean => "boolean",
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => "smallint",
        DataType::Int32 | DataType::UInt16 => "integer",
        DataType::Int64 | DataType::UInt32 => "bigint",
        DataType::Float16 | DataType::Float32 => "real",
        DataType::Float64 => "double precision",
        DataType::UInt64
        | DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => "numeric",
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text",
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => "bytea",
        DataType::Date32 | DataType::Date64 => "date",
        DataType::Time32(_) | DataType::Time64(_) => "time without time zone",
        DataType::Timestamp(_, None) => "timestamp without time zone",
        DataType::Timestamp(_, Some(_)) => "timestamp with time zone",
        DataType::Interval(_)
        | DataType::Duration(
            TimeUnit::Second | TimeUnit::Millisecond | TimeUnit::Microsecond | TimeUnit::Nanosecond,
        ) => "interval",
        DataType::List(_)
        | DataType::LargeList(_)
        | DataType::FixedSizeList(..)
        | DataType::ListView(_)
        | DataType::LargeListView(_) => "ARRAY",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::postgres_type_name;

    #[test]
    fn arrow_names_become_postgres_names() {
        let names: Vec<Option<&str>> = [
            "Int32",
            "Utf8",
            "Decimal128(18, 2)",
            "Timestamp(µs, \"UTC\")",
            "Timestamp(Microsecond, None)",
            "List(Int64)",
            "Null",
        ]
        .into_iter()
        .map(postgres_type_name)
        .collect();
        assert_eq!(
            names,
            [
                Some("integer"),
                Some("text"),
                Some("numeric"),
                Some("timestamp with time zone"),
                Some("timestamp without time zone"),
                Some("ARRAY"),
                None
            ]
        );
    }
}
