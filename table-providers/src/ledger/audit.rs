//! The `audit` schema: the ledger as tables.
//!
//! - `audit.ledger`: every entry, as stored (see [`super::ledger_schema`]).
//! - `audit.<cube>`: the cell changes of one cube, one column per dimension and an old and a
//!   new column per measure, typed as the cube's: a cell's history is one query.
//!
//! Reading either first ledgers any commit not ledgered yet, so what they show is complete
//! up to the latest commit.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::common::Result;
use datafusion::datasource::{TableType, provider_as_source};
use datafusion::functions::expr_fn::{nullif, split_part};
use datafusion::logical_expr::{
    Expr, LogicalPlanBuilder, TableProviderFilterPushDown, cast, col, lit,
};
use datafusion::physical_plan::ExecutionPlan;

use super::{Ledger, cube_source, ledger_schema};
use crate::mdf::merge::CubeFiles;
use crate::mdf::{CubeDefinition, CubeSchemaProvider, MdfTable};

/// The `audit` schema over one ledger and the cubes it records.
#[derive(Debug)]
pub struct AuditSchemaProvider {
    ledger: Arc<LedgerTable>,
    cubes: Arc<CubeSchemaProvider>,
}

impl AuditSchemaProvider {
    /// The schema over `ledger`, which records `cubes`.
    pub fn new(ledger: Arc<Ledger>, cubes: Arc<CubeSchemaProvider>) -> Self {
        let ledger = Arc::new(LedgerTable {
            ledger,
            cubes: Arc::clone(&cubes),
            schema: ledger_schema(),
            of_cube: None,
        });
        Self { ledger, cubes }
    }

    /// `audit.<cube>`: the ledger's cell rows of `cube`, their item and values split into
    /// the cube's columns.
    fn cube_changes(&self, cube: &MdfTable) -> Result<Arc<dyn TableProvider>> {
        let definition = cube.definition();
        let part = |column: &str, position: usize| {
            split_part(col(column), lit("|"), lit(position as i64 + 1))
        };
        let mut columns: Vec<Expr> = vec![
            col("seq"),
            col("committed_at"),
            col("user_name"),
            col("statement_id"),
            col("statement"),
            col("source_version").alias("cube_version"),
            col("operation"),
        ];
        for (position, dimension) in definition.dimensions.iter().enumerate() {
            columns.push(part("item", position).alias(dimension));
        }
        for (prefix, column) in [("old_", "old_value"), ("new_", "new_value")] {
            for (position, measure) in definition.measures.iter().enumerate() {
                let decimal = DataType::Decimal128(measure.precision, measure.scale);
                let value = cast(nullif(part(column, position), lit("")), decimal);
                columns.push(value.alias(format!("{prefix}{}", measure.name)));
            }
        }
        columns.push(col("hash"));
        let source = cube_source(&definition.name);
        // The view reads the ledger through a table that says whose rows it is after, so
        // that access control treats it as the cube (see `crate::access_target`).
        let of_cube = Arc::new(LedgerTable {
            ledger: Arc::clone(&self.ledger.ledger),
            cubes: Arc::clone(&self.cubes),
            schema: ledger_schema(),
            of_cube: Some(definition.clone()),
        });
        let plan = LogicalPlanBuilder::scan("ledger", provider_as_source(of_cube), None)?
            .filter(
                col("kind")
                    .eq(lit("cell"))
                    .and(col("source").eq(lit(source)))
                    .and(col("operation").not_eq(lit("load"))),
            )?
            .project(columns)?
            .build()?;
        Ok(Arc::new(ViewTable::new(plan, None)))
    }
}

#[async_trait]
impl SchemaProvider for AuditSchemaProvider {
    fn table_names(&self) -> Vec<String> {
        let mut names = vec!["ledger".to_owned()];
        names.extend(
            self.cubes
                .table_names()
                .into_iter()
                .filter(|name| name != "ledger"),
        );
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if name == "ledger" {
            return Ok(Some(Arc::clone(&self.ledger) as _));
        }
        match self.cubes.cube(name) {
            Some(cube) => self.cube_changes(&cube).map(Some),
            None => Ok(None),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        name == "ledger" || self.cubes.cube(name).is_some()
    }
}

/// `audit.ledger`, or the ledger as the view `audit.<cube>` reads it.
#[derive(Debug)]
pub(crate) struct LedgerTable {
    ledger: Arc<Ledger>,
    cubes: Arc<CubeSchemaProvider>,
    schema: SchemaRef,
    /// The cube whose cell rows the reading view keeps; `None` for `audit.ledger` itself.
    pub(crate) of_cube: Option<CubeDefinition>,
}

#[async_trait]
impl TableProvider for LedgerTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.ledger.catch_up(&self.cubes.all(), state).await?;
        let snapshot = self.ledger.snapshot().await?;
        let files = CubeFiles {
            storage: self.ledger.storage().clone(),
            cube_dir: self.ledger.dir().clone(),
            schema: Arc::clone(&self.schema),
            dimensions: 0,
        };
        files
            .file_set(snapshot.files.clone())
            .scan(state, projection, filters, limit)
            .await
    }
}
