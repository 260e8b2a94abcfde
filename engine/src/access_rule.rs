//! Grants enforced on plans: an analyzer rule that refuses a statement its user may not run
//! (42501) and narrows every scan of a cube, dimension or ledger view to the cells the user's
//! scoped grant reaches.
//!
//! It works on the plan, after the SQL is resolved, so the scope holds however the table is
//! reached: joins, subqueries, CTEs, views (inlined into the plan), time travel and `audit.*`
//! views all end in scans of the same tables. Writes check their rows in their sinks
//! ([`SessionAccess::check_rows`]); this rule makes sure the user holds the privilege at all
//! before anything runs. A session without a [`SessionAccess`] (the engine's own) and an
//! administrator's are left alone. DDL and `COPY` to files are refused to non-administrators
//! here when they reach the analyzer, and by the server before they run otherwise.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, Result, ScalarValue};
use datafusion::datasource::source_as_provider;
use datafusion::functions::expr_fn::split_part;
use datafusion::logical_expr::{
    Expr, Filter, LogicalPlan, LogicalPlanBuilder, TableScan, TableScanBuilder, WriteOp, cast, lit,
};
use datafusion::optimizer::AnalyzerRule;
use quantatom_table_providers::access_target::{AccessTarget, Coordinate, access_target};
use quantatom_table_providers::metadata::{Privilege, Reach, SessionAccess};

/// The analyzer rule enforcing the session user's grants (see the module documentation).
#[derive(Debug, Default)]
pub struct EnforceAccess;

impl AnalyzerRule for EnforceAccess {
    fn name(&self) -> &str {
        "enforce_access"
    }

    fn analyze(&self, plan: LogicalPlan, config: &ConfigOptions) -> Result<LogicalPlan> {
        let Some(access) = SessionAccess::of(config).cloned() else {
            return Ok(plan);
        };
        if access.is_admin() {
            return Ok(plan);
        }
        plan.transform_up_with_subqueries(|node| enforce(node, &access))
            .map(|transformed| transformed.data)
    }
}

/// Enforces the grants on one plan node.
fn enforce(node: LogicalPlan, access: &SessionAccess) -> Result<Transformed<LogicalPlan>> {
    match node {
        LogicalPlan::TableScan(scan) => narrow_scan(scan, access),
        LogicalPlan::Dml(dml) => {
            let privilege = match dml.op {
                WriteOp::Insert(_) => Some(Privilege::Insert),
                WriteOp::Update => Some(Privilege::Update),
                WriteOp::Delete => Some(Privilege::Delete),
                _ => None,
            };
            let target = source_as_provider(&dml.target)
                .ok()
                .and_then(|provider| access_target(provider.as_ref()));
            match (target, privilege) {
                (Some(AccessTarget::Rows { object, .. }), Some(privilege)) => {
                    access.require(&object, privilege)?;
                }
                (None, _) => {}
                _ => access.require_admin(&format!("write {}", dml.table_name))?,
            }
            Ok(Transformed::no(LogicalPlan::Dml(dml)))
        }
        // DataFusion runs DDL and COPY to files without the analyzer when they are statements
        // of their own (the server refuses those first); wrapped in EXPLAIN ANALYZE or made by
        // SELECT ... INTO, they arrive here.
        LogicalPlan::Ddl(ddl) => {
            access.require_admin(&format!("run {}", ddl.name()))?;
            Ok(Transformed::no(LogicalPlan::Ddl(ddl)))
        }
        LogicalPlan::Copy(copy) => {
            access.require_admin("COPY to a file")?;
            Ok(Transformed::no(LogicalPlan::Copy(copy)))
        }
        other => Ok(Transformed::no(other)),
    }
}

/// A scan of a governed table: refused without SELECT, narrowed to a scoped grant's cells.
fn narrow_scan(scan: TableScan, access: &SessionAccess) -> Result<Transformed<LogicalPlan>> {
    let Some(provider) = source_as_provider(&scan.source).ok() else {
        return Ok(Transformed::no(LogicalPlan::TableScan(scan)));
    };
    let (object, coordinates, withheld) = match access_target(provider.as_ref()) {
        None => return Ok(Transformed::no(LogicalPlan::TableScan(scan))),
        Some(AccessTarget::Rows {
            object,
            coordinates,
            withheld,
        }) => (object, coordinates, withheld),
        Some(whole) => {
            whole.check(access)?;
            return Ok(Transformed::no(LogicalPlan::TableScan(scan)));
        }
    };
    let Reach::Members(areas) = access.require(&object, Privilege::Select)? else {
        return Ok(Transformed::no(LogicalPlan::TableScan(scan)));
    };
    // The whole table is scanned, narrowed, then shaped as the scan was: the columns the
    // scope needs may be ones the query does not read.
    let schema = provider.schema();
    let qualifier = scan.table_name.clone();
    let member = |coordinate: &Coordinate| -> Result<(Expr, DataType)> {
        let column = |name: &str| Expr::Column(Column::new(Some(qualifier.clone()), name));
        Ok(match coordinate {
            Coordinate::Column(name) => (
                column(name),
                schema.field_with_name(name)?.data_type().clone(),
            ),
            Coordinate::Part { column: name, part } => (
                split_part(column(name), lit("|"), lit(*part)),
                DataType::Utf8,
            ),
        })
    };
    // Inside any area; inside an area, each of its dimensions' members in its codes.
    let mut predicate = lit(false);
    for area in areas {
        let mut in_area = lit(true);
        for (dimension, codes) in area {
            let in_scope = match coordinates.iter().find(|(d, _)| d == dimension) {
                // A scope on a dimension the table does not have reaches none of its rows.
                None => lit(false),
                Some((_, coordinate)) => {
                    let (member, data_type) = member(coordinate)?;
                    let codes = codes
                        .iter()
                        .map(|code| lit(typed_text(code, &data_type)))
                        .collect();
                    member.in_list(codes, false)
                }
            };
            in_area = in_area.and(in_scope);
        }
        predicate = predicate.or(in_area);
    }
    let whole = TableScanBuilder::new(qualifier.clone(), Arc::clone(&scan.source))
        .with_filters(scan.filters.clone())
        .build()?;
    let narrowed = LogicalPlan::Filter(Filter::try_new(
        predicate,
        Arc::new(LogicalPlan::TableScan(whole)),
    )?);
    let mut shaped = LogicalPlanBuilder::from(narrowed);
    if !withheld.is_empty() {
        let columns = schema.fields().iter().map(|field| {
            let name = field.name();
            let column = Expr::Column(Column::new(Some(qualifier.clone()), name));
            if withheld.contains(name) {
                cast(lit(ScalarValue::Null), field.data_type().clone())
                    .alias_qualified(Some(qualifier.clone()), name)
            } else {
                column
            }
        });
        shaped = shaped.project(columns)?;
    }
    if scan.projection.is_some() {
        let columns = scan
            .projected_schema
            .fields()
            .iter()
            .map(|field| Expr::Column(Column::new(Some(qualifier.clone()), field.name())));
        shaped = shaped.project(columns)?;
    }
    if let Some(fetch) = scan.fetch {
        shaped = shaped.limit(0, Some(fetch))?;
    }
    Ok(Transformed::yes(shaped.build()?))
}

/// `code` as a literal of the text type `data_type` (the column's, so no cast is needed).
fn typed_text(code: &str, data_type: &DataType) -> ScalarValue {
    match data_type {
        DataType::Utf8View => ScalarValue::Utf8View(Some(code.to_owned())),
        DataType::LargeUtf8 => ScalarValue::LargeUtf8(Some(code.to_owned())),
        _ => ScalarValue::Utf8(Some(code.to_owned())),
    }
}
