//! `pg_catalog.pg_settings` over the querying session's own parameters.
//!
//! datafusion-pg-catalog serves a fixed one-row `pg_settings`; tools read it to learn the
//! session's settings (`SELECT setting FROM pg_settings WHERE name = 'max_identifier_length'`).
//! [`SessionSettingsCatalog`] puts a `pg_settings` in front of datafusion-pg-catalog's schema
//! whose rows are produced, at execution, from the [`PostgresSettings`] of the session that
//! runs the query, so a `SET` shows up in it as it does in PostgreSQL.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, BooleanArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::streaming::StreamingTable;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::common::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use quantatom_engine::computed::ComputedTable;
use quantatom_engine::metadata::MetadataStore;
use quantatom_engine::postgres_settings::PostgresSettings;
use quantatom_engine::type_modifiers::NumericModifiers;
use quantatom_engine::visible_catalog::{Listing, VisibleRows};

use super::catalog_arrays::{
    PG_CLASS_MISSING_ARRAYS, vector_columns, with_array_columns, with_null_array_columns,
};
use super::roles_catalog::{PG_AUTH_MEMBERS, PG_ROLES, RolesTable};

const PG_SETTINGS: &str = "pg_settings";
const PG_STAT_ACTIVITY: &str = "pg_stat_activity";
const PG_CLASS: &str = "pg_class";

/// datafusion-pg-catalog's `pg_catalog` schema with the session-aware `pg_settings`, the
/// server's `pg_stat_activity` (see [`super::activity`]), the metadata store's roles in
/// `pg_roles` and `pg_auth_members`, and `pg_index`/`pg_constraint`/
/// `pg_class` with their array columns (see [`super::catalog_arrays`]).
#[derive(Debug)]
pub(crate) struct SessionSettingsCatalog {
    inner: Arc<dyn SchemaProvider>,
    settings: Arc<dyn TableProvider>,
    activity: Arc<dyn TableProvider>,
    /// Where `pg_roles` and `pg_auth_members` come from (see [`super::roles_catalog`]).
    metadata: Arc<dyn MetadataStore>,
    /// `pg_index`, `pg_constraint` and `pg_class` with their array columns, made on first use.
    array_tables: OnceLock<HashMap<&'static str, Arc<dyn TableProvider>>>,
}

impl SessionSettingsCatalog {
    /// Wraps the `pg_catalog` schema `inner`, adding `activity` as `pg_stat_activity` and the
    /// roles of `metadata`.
    pub(crate) fn new(
        inner: Arc<dyn SchemaProvider>,
        activity: Arc<dyn TableProvider>,
        metadata: Arc<dyn MetadataStore>,
    ) -> Result<Self> {
        let view = Arc::new(SettingsView {
            schema: settings_schema(),
        });
        let settings = Arc::new(StreamingTable::try_new(settings_schema(), vec![view])?);
        Ok(Self {
            inner,
            settings,
            activity,
            metadata,
            array_tables: OnceLock::new(),
        })
    }
}

#[async_trait]
impl SchemaProvider for SessionSettingsCatalog {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.inner.table_names();
        if !names.iter().any(|name| name == PG_STAT_ACTIVITY) {
            names.push(PG_STAT_ACTIVITY.to_owned());
        }
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        match name {
            PG_SETTINGS => Ok(Some(Arc::clone(&self.settings))),
            PG_STAT_ACTIVITY => Ok(Some(Arc::clone(&self.activity))),
            PG_CLASS => {
                let Some(classes) = self.array_table(name).await? else {
                    return Ok(None);
                };
                Ok(Some(VisibleRows::wrap(
                    classes,
                    Listing::Classes {
                        namespaces: self.required("pg_namespace").await?,
                    },
                )))
            }
            "pg_attribute" => {
                let Some(attributes) = self.inner.table(name).await? else {
                    return Ok(None);
                };
                let classes = self.required(PG_CLASS).await?;
                let namespaces = self.required("pg_namespace").await?;
                let attributes = NumericModifiers::wrap(
                    attributes,
                    Arc::clone(&classes),
                    Arc::clone(&namespaces),
                );
                Ok(Some(VisibleRows::wrap(
                    attributes,
                    Listing::Attributes {
                        classes,
                        namespaces,
                    },
                )))
            }
            "pg_tables" | "pg_views" => {
                let Some(listed) = self.inner.table(name).await? else {
                    return Ok(None);
                };
                let table = if name == "pg_tables" {
                    "tablename"
                } else {
                    "viewname"
                };
                Ok(Some(VisibleRows::wrap(
                    listed,
                    Listing::Named {
                        schema: "schemaname",
                        table,
                    },
                )))
            }
            _ if vector_columns(name).is_some() => self.array_table(name).await,
            PG_ROLES | PG_AUTH_MEMBERS => {
                let Some(inner) = self.inner.table(name).await? else {
                    return Ok(None);
                };
                let name = if name == PG_ROLES {
                    PG_ROLES
                } else {
                    PG_AUTH_MEMBERS
                };
                let table = RolesTable::new(Arc::clone(&self.metadata), name, inner.schema());
                Ok(Some(Arc::new(ComputedTable(table))))
            }
            _ => self.inner.table(name).await,
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        name == PG_STAT_ACTIVITY || self.inner.table_exist(name)
    }
}

impl SessionSettingsCatalog {
    /// The emulation's own table `name`, which must exist.
    async fn required(&self, name: &str) -> Result<Arc<dyn TableProvider>> {
        self.inner
            .table(name)
            .await?
            .ok_or_else(|| datafusion::common::internal_datafusion_err!("pg_catalog has no {name}"))
    }

    async fn array_table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if self.array_tables.get().is_none() {
            let mut tables = HashMap::new();
            for table in ["pg_index", "pg_constraint"] {
                let columns = vector_columns(table).unwrap_or_default();
                if let Some(inner) = self.inner.table(table).await? {
                    tables.insert(table, with_array_columns(inner.as_ref(), columns)?);
                }
            }
            if let Some(inner) = self.inner.table(PG_CLASS).await? {
                tables.insert(
                    PG_CLASS,
                    with_null_array_columns(PG_CLASS, inner, &PG_CLASS_MISSING_ARRAYS)?,
                );
            }
            let _ = self.array_tables.set(tables);
        }
        Ok(self
            .array_tables
            .get()
            .and_then(|tables| tables.get(name))
            .cloned())
    }
}

fn settings_schema() -> SchemaRef {
    let text = |name: &str| Field::new(name, DataType::Utf8, true);
    Arc::new(Schema::new(vec![
        text("name"),
        text("setting"),
        text("unit"),
        text("category"),
        text("short_desc"),
        text("extra_desc"),
        text("context"),
        text("vartype"),
        text("source"),
        text("min_val"),
        text("max_val"),
        text("enumvals"),
        text("boot_val"),
        text("reset_val"),
        text("sourcefile"),
        Field::new("pending_restart", DataType::Boolean, true),
    ]))
}

/// The rows, computed from the session that executes the scan.
#[derive(Debug)]
struct SettingsView {
    schema: SchemaRef,
}

impl SettingsView {
    fn rows(&self, settings: &PostgresSettings) -> Result<RecordBatch> {
        let all = settings.all();
        let column = |value: &dyn Fn(
            &quantatom_engine::postgres_settings::Parameter,
            &str,
        ) -> Option<String>|
         -> ArrayRef {
            Arc::new(
                all.iter()
                    .map(|(parameter, setting)| value(parameter, setting))
                    .collect::<StringArray>(),
            )
        };
        let columns: Vec<ArrayRef> = vec![
            column(&|parameter, _| Some(parameter.name.to_owned())),
            column(&|_, setting| Some(setting.to_owned())),
            column(&|_, _| None),
            column(&|_, _| None),
            column(&|parameter, _| Some(parameter.description.to_owned())),
            column(&|_, _| None),
            column(&|parameter, _| {
                Some(
                    if parameter.settable {
                        "user"
                    } else {
                        "internal"
                    }
                    .to_owned(),
                )
            }),
            column(&|_, _| Some("string".to_owned())),
            column(&|parameter, setting| {
                Some(
                    if setting == parameter.default {
                        "default"
                    } else {
                        "session"
                    }
                    .to_owned(),
                )
            }),
            column(&|_, _| None),
            column(&|_, _| None),
            column(&|_, _| None),
            column(&|parameter, _| Some(parameter.default.to_owned())),
            column(&|parameter, _| Some(parameter.default.to_owned())),
            column(&|_, _| None),
            Arc::new(BooleanArray::from(vec![false; all.len()])),
        ];
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

impl PartitionStream for SettingsView {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, context: Arc<TaskContext>) -> SendableRecordBatchStream {
        let settings = PostgresSettings::of(context.session_config().options());
        let batch = self.rows(&settings);
        Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            futures::stream::once(async move { batch }),
        ))
    }
}
