//! The `audit` schema: the ledger as tables.
//!
//! - `audit.ledger`: every entry, as stored (see [`super::ledger_schema`]).
//! - `audit.<cube>`: the cell changes of one cube, one column per dimension and an old and a
//!   new column per measure, typed as the cube's: a cell's history is one query.
//!
//! Reading either first ledgers any commit not ledgered yet, so what they show is complete
//! up to the latest commit.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::common::{DFSchema, Result, ScalarValue};
use datafusion::datasource::{TableType, provider_as_source};
use datafusion::functions::expr_fn::{nullif, split_part};
use datafusion::logical_expr::expr::BinaryExpr;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    Expr, LogicalPlanBuilder, Operator, TableProviderFilterPushDown, cast, col, lit,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter::FilterExec;

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
        let scan = files
            .file_set(snapshot.files.to_vec())
            .scan(state, projection, filters, limit)
            .await?;
        // DataFusion pushes this filter, like the query's own, into the Parquet scan.
        let item = self
            .of_cube
            .as_ref()
            .and_then(|cube| item_filter(filters, cube.dimensions.len()));
        match item {
            Some(item) if scan.schema().index_of("item").is_ok() => {
                let schema = DFSchema::try_from(scan.schema().as_ref().clone())?;
                let predicate = state.create_physical_expr(item, &schema)?;
                Ok(Arc::new(FilterExec::try_new(predicate, scan)?))
            }
            _ => Ok(scan),
        }
    }
}

/// A filter on `item` implied by `filters` on the leading dimensions of `audit.<cube>` (which
/// arrive as `split_part(item, '|', n) = 'code'`): `item = 'a|b|...'` when every dimension is
/// named, else the range of items starting with the leading codes. Ledger files keep their
/// commit's cells in the cube's order, so Parquet's statistics on `item` prune the row groups
/// and pages of other cells (a cell's history reads a page per file, not the files).
fn item_filter(filters: &[Expr], dimensions: usize) -> Option<Expr> {
    let mut named: HashMap<i64, &str> = HashMap::new();
    for filter in filters.iter().flat_map(split_conjunction) {
        if let Some((position, code)) = dimension_equality(filter) {
            named.insert(position, code);
        }
    }
    let leading: Vec<&str> = (1..=dimensions as i64)
        .map_while(|position| named.get(&position).copied())
        .collect();
    if leading.is_empty() || leading.iter().any(|code| code.contains('|')) {
        return None;
    }
    let prefix = leading.join("|");
    if leading.len() == dimensions {
        return Some(col("item").eq(lit(prefix)));
    }
    // Every item under the prefix lies in ["prefix|", "prefix}"): '}' follows '|'.
    Some(
        col("item")
            .gt_eq(lit(format!("{prefix}|")))
            .and(col("item").lt(lit(format!("{prefix}}}")))),
    )
}

/// `(n, code)` of a filter `split_part(item, '|', n) = 'code'` (either way round).
fn dimension_equality(filter: &Expr) -> Option<(i64, &str)> {
    let Expr::BinaryExpr(BinaryExpr {
        left,
        op: Operator::Eq,
        right,
    }) = filter
    else {
        return None;
    };
    let (part, code) = match (left.as_ref(), right.as_ref()) {
        (Expr::ScalarFunction(part), Expr::Literal(code, _))
        | (Expr::Literal(code, _), Expr::ScalarFunction(part)) => (part, code),
        _ => return None,
    };
    let code = code.try_as_str().flatten()?;
    match (part.name(), part.args.as_slice()) {
        (
            "split_part",
            [
                Expr::Column(column),
                Expr::Literal(separator, _),
                Expr::Literal(position, _),
            ],
        ) if column.name == "item" && separator.try_as_str().flatten() == Some("|") => {
            match position {
                ScalarValue::Int64(Some(n)) => Some((*n, code)),
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use datafusion::functions::expr_fn::split_part;
    use datafusion::logical_expr::{Expr, col, lit};

    use super::item_filter;

    fn named(position: i64, code: &str) -> Expr {
        split_part(col("item"), lit("|"), lit(position)).eq(lit(code))
    }

    #[test]
    fn every_dimension_named_is_one_item() {
        let filters = [named(2, "2025_01").and(named(1, "Budget")), named(3, "DE")];
        assert_eq!(
            item_filter(&filters, 3),
            Some(col("item").eq(lit("Budget|2025_01|DE")))
        );
    }

    #[test]
    fn leading_dimensions_are_a_range_of_items() {
        let filters = [named(1, "Budget"), named(2, "2025_01"), named(4, "4000")];
        assert_eq!(
            item_filter(&filters, 6),
            Some(
                col("item")
                    .gt_eq(lit("Budget|2025_01|"))
                    .and(col("item").lt(lit("Budget|2025_01}")))
            )
        );
    }

    #[test]
    fn nothing_without_the_first_dimension_or_with_a_separator_in_a_code() {
        assert_eq!(item_filter(&[named(2, "2025_01")], 6), None);
        assert_eq!(item_filter(&[named(1, "a|b")], 6), None);
        assert_eq!(item_filter(&[lit(true)], 6), None);
    }
}
