//! Catalog tables that list only what the session's user may see: `information_schema`'s
//! `tables`, `columns` and `views`, and `pg_catalog`'s `pg_class`, `pg_attribute`,
//! `pg_tables` and `pg_views` leave out the cubes, dimensions and ledger views the user holds
//! no grant on ([`SessionAccess::may_list`]).
//!
//! Each wraps the catalog's own table: an administrator's session, or the engine's own, reads
//! it as it is; any other reads its rows filtered (catalogs are small: the rows are computed,
//! filtered, then served from memory).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::{Int32Type, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Result, internal_datafusion_err};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::{ExecutionPlan, collect};
use quantatom_table_providers::metadata::SessionAccess;

/// How a catalog table's rows name the table they are about.
#[derive(Debug)]
pub enum Listing {
    /// By a schema name column and a table name column.
    Named {
        /// The schema name column.
        schema: &'static str,
        /// The table name column.
        table: &'static str,
    },
    /// `pg_class`: by `relnamespace` (an oid of `pg_namespace`, given here) and `relname`.
    Classes {
        /// `pg_namespace`.
        namespaces: Arc<dyn TableProvider>,
    },
    /// `pg_attribute`: by `attrelid`, an oid of `pg_class` (given here, with `pg_namespace`).
    Attributes {
        /// `pg_class`.
        classes: Arc<dyn TableProvider>,
        /// `pg_namespace`.
        namespaces: Arc<dyn TableProvider>,
    },
}

/// A catalog table whose rows about tables the user may not see are left out.
#[derive(Debug)]
pub struct VisibleRows {
    inner: Arc<dyn TableProvider>,
    listing: Listing,
}

impl VisibleRows {
    /// `inner`, whose rows name tables as `listing` says, filtered for each session.
    pub fn wrap(inner: Arc<dyn TableProvider>, listing: Listing) -> Arc<dyn TableProvider> {
        Arc::new(Self { inner, listing })
    }
}

/// Every row `provider` has, computed in `state`.
pub(crate) async fn rows(
    provider: &dyn TableProvider,
    state: &dyn Session,
) -> Result<Vec<RecordBatch>> {
    let plan = provider.scan(state, None, &[], None).await?;
    collect(plan, state.task_ctx()).await
}

/// The text column `name` of `batch`.
pub(crate) fn text<'a>(batch: &'a RecordBatch, name: &str) -> Result<Vec<Option<&'a str>>> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| internal_datafusion_err!("the catalog table has no column {name}"))?;
    Ok(match column.data_type() {
        datafusion::arrow::datatypes::DataType::Utf8View => {
            column.as_string_view().iter().collect()
        }
        _ => column.as_string::<i32>().iter().collect(),
    })
}

/// The `int4` (or oid) column `name` of `batch`.
pub(crate) fn int4s<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a [i32]> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| internal_datafusion_err!("the catalog table has no column {name}"))?;
    Ok(column.as_primitive::<Int32Type>().values())
}

/// `pg_namespace`'s schema names by oid.
pub(crate) async fn namespace_names(
    namespaces: &dyn TableProvider,
    state: &dyn Session,
) -> Result<HashMap<i32, String>> {
    let mut names = HashMap::new();
    for batch in rows(namespaces, state).await? {
        for (oid, name) in int4s(&batch, "oid")?.iter().zip(text(&batch, "nspname")?) {
            names.insert(*oid, name.unwrap_or_default().to_owned());
        }
    }
    Ok(names)
}

/// Each `pg_class` row of `batch` as its oid, its schema's name (`None`: a namespace not in
/// `namespaces`) and its relation's name.
pub(crate) fn class_names<'a>(
    batch: &'a RecordBatch,
    namespaces: &'a HashMap<i32, String>,
) -> Result<Vec<(i32, Option<&'a str>, &'a str)>> {
    let spaces = int4s(batch, "relnamespace")?;
    let names = text(batch, "relname")?;
    Ok(int4s(batch, "oid")?
        .iter()
        .zip(spaces)
        .zip(names)
        .map(|((oid, space), name)| {
            let schema = namespaces.get(space).map(String::as_str);
            (*oid, schema, name.unwrap_or_default())
        })
        .collect())
}

/// Whether each `pg_class` row of `batch` is about a relation `access` may see, with its oid.
fn visible_classes(
    batch: &RecordBatch,
    namespaces: &HashMap<i32, String>,
    access: &SessionAccess,
) -> Result<Vec<(i32, bool)>> {
    Ok(class_names(batch, namespaces)?
        .into_iter()
        .map(|(oid, schema, name)| (oid, access.may_list(schema.unwrap_or_default(), name)))
        .collect())
}

#[async_trait]
impl TableProvider for VisibleRows {
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
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let access = match SessionAccess::of(state.config_options()) {
            Some(access) if !access.is_admin() => Arc::clone(access),
            _ => return self.inner.scan(state, projection, filters, limit).await,
        };
        let batches = rows(self.inner.as_ref(), state).await?;
        let keep: Vec<BooleanArray> = match &self.listing {
            Listing::Named { schema, table } => batches
                .iter()
                .map(|batch| {
                    let tables = text(batch, table)?;
                    Ok(text(batch, schema)?
                        .into_iter()
                        .zip(tables)
                        .map(|(s, t)| {
                            Some(access.may_list(s.unwrap_or_default(), t.unwrap_or_default()))
                        })
                        .collect())
                })
                .collect::<Result<_>>()?,
            Listing::Classes { namespaces } => {
                let namespaces = namespace_names(namespaces.as_ref(), state).await?;
                batches
                    .iter()
                    .map(|batch| {
                        let visible = visible_classes(batch, &namespaces, &access)?;
                        Ok(visible.into_iter().map(|(_, v)| Some(v)).collect())
                    })
                    .collect::<Result<_>>()?
            }
            Listing::Attributes {
                classes,
                namespaces,
            } => {
                let namespaces = namespace_names(namespaces.as_ref(), state).await?;
                let mut hidden = HashSet::new();
                for batch in rows(classes.as_ref(), state).await? {
                    for (oid, visible) in visible_classes(&batch, &namespaces, &access)? {
                        if !visible {
                            hidden.insert(oid);
                        }
                    }
                }
                batches
                    .iter()
                    .map(|batch| {
                        Ok(int4s(batch, "attrelid")?
                            .iter()
                            .map(|oid| Some(!hidden.contains(oid)))
                            .collect())
                    })
                    .collect::<Result<_>>()?
            }
        };
        let visible = batches
            .iter()
            .zip(&keep)
            .map(|(batch, keep)| Ok(filter_record_batch(batch, keep)?))
            .collect::<Result<Vec<_>>>()?;
        let plan =
            MemorySourceConfig::try_new_exec(&[visible], self.schema(), projection.cloned())?;
        Ok(plan)
    }
}
