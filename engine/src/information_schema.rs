//! `information_schema` as PostgreSQL clients query it: DataFusion's own views (`tables`,
//! `columns`, `views`, `schemata`, `routines`, `parameters`, `df_settings`) plus the constraint
//! views BI tools read on connect (Metabase, DBeaver, Superset): `table_constraints`,
//! `key_column_usage`, `referential_constraints`, `constraint_column_usage`,
//! `check_constraints`. Quantatom declares no constraints, so those are empty, with
//! PostgreSQL's columns.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::information_schema::InformationSchemaProvider;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::common::Result;
use datafusion::datasource::empty::EmptyTable;

/// The constraint views and their columns (text unless marked as an integer).
const CONSTRAINT_VIEWS: &[(&str, &[&str])] = &[
    (
        "table_constraints",
        &[
            "constraint_catalog", "constraint_schema", "constraint_name", "table_catalog", "table_schema",
            "table_name", "constraint_type", "is_deferrable", "initially_deferred", "enforced", "nulls_distinct",
        ],
    ),
    (
        "key_column_usage",
        &[
            "constraint_catalog", "constraint_schema", "constraint_name", "table_catalog", "table_schema",
            "table_name", "column_name", "ordinal_position:int", "position_in_unique_constraint:int",
        ],
    ),
    (
        "referential_constraints",
        &[
            "constraint_catalog", "constraint_schema", "constraint_name", "unique_constraint_catalog",
            "unique_constraint_schema", "unique_constraint_name", "match_option", "update_rule", "delete_rule",
        ],
    ),
    (
        "constraint_column_usage",
        &[
            "table_catalog", "table_schema", "table_name", "column_name", "constraint_catalog",
            "constraint_schema", "constraint_name",
        ],
    ),
    ("check_constraints", &["constraint_catalog", "constraint_schema", "constraint_name", "check_clause"]),
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
        match CONSTRAINT_VIEWS.iter().find(|(view, _)| view.eq_ignore_ascii_case(name)) {
            Some((_, columns)) => Ok(Some(constraint_view(columns))),
            None => self.inner.table(name).await,
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        CONSTRAINT_VIEWS.iter().any(|(view, _)| view.eq_ignore_ascii_case(name)) || self.inner.table_exist(name)
    }
}
