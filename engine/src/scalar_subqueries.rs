//! Correlated scalar subqueries, as PostgreSQL runs them.
//!
//! A planner looks a value up per row with a bare scalar subquery, `SELECT (SELECT e.name FROM
//! dim.entity e WHERE e.code = f.entity) FROM cube.finance f`, and so do drivers and BI tools
//! over the catalogs (pgJDBC's `getTypeInfo`, SQLAlchemy's inspector). PostgreSQL runs these and
//! fails only when one returns two rows for an outer row (`21000`); DataFusion refuses any
//! correlated scalar subquery that is not an aggregate. [`ScalarSubqueryRule`] makes such a
//! subquery the aggregate [`SingleRowFunction`] of its one column: the value when one row
//! matches, NULL when none does, PostgreSQL's error when more do. DataFusion then decorrelates
//! it into a join as usual.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Int64Array};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DataFusionError, Result, ScalarValue};
use datafusion::config::ConfigOptions;
use datafusion::logical_expr::expr::Case;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::{conjunction, split_conjunction_owned};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Expr, Filter, LogicalPlan, LogicalPlanBuilder,
    Projection, Signature, Subquery, SubqueryAlias, Volatility,
};
use datafusion::optimizer::AnalyzerRule;
use quantatom_udfs::rewrite_expressions;

/// A scalar subquery gave more than one row for an outer row.
#[derive(Debug, thiserror::Error)]
#[error("more than one row returned by a subquery used as an expression")]
pub struct MoreThanOneRow;

impl MoreThanOneRow {
    /// PostgreSQL's SQLSTATE for it (cardinality violation).
    pub fn sqlstate(&self) -> &'static str {
        "21000"
    }
}

/// The aggregate a scalar subquery becomes: its only row's value, NULL without rows, an error
/// with more.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SingleRowFunction {
    signature: Signature,
}

impl SingleRowFunction {
    /// The aggregate, ready to call.
    pub fn udaf() -> AggregateUDF {
        AggregateUDF::new_from_impl(Self {
            signature: Signature::any(1, Volatility::Immutable),
        })
    }
}

impl AggregateUDFImpl for SingleRowFunction {
    fn name(&self) -> &str {
        "scalar_subquery_row"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types[0].clone())
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(SingleRow {
            value: ScalarValue::try_from(args.return_field.data_type())?,
            rows: 0,
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(
                args.return_field
                    .as_ref()
                    .clone()
                    .with_name("value")
                    .with_nullable(true),
            ),
            Arc::new(Field::new("rows", DataType::Int64, false)),
        ])
    }
}

#[derive(Debug)]
struct SingleRow {
    value: ScalarValue,
    rows: i64,
}

impl SingleRow {
    fn add(&mut self, rows: i64, values: &ArrayRef, index: usize) -> Result<()> {
        self.rows += rows;
        if self.rows > 1 {
            return Err(DataFusionError::External(Box::new(MoreThanOneRow)));
        }
        if rows == 1 {
            self.value = ScalarValue::try_from_array(values, index)?;
        }
        Ok(())
    }
}

impl Accumulator for SingleRow {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        // Every row counts, a NULL value too.
        let column = &values[0];
        if column.is_empty() {
            Ok(())
        } else {
            self.add(column.len() as i64, column, 0)
        }
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(self.value.clone())
    }

    fn size(&self) -> usize {
        size_of_val(self) + self.value.size()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![
            self.value.clone(),
            ScalarValue::Int64(Some(self.rows)),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let rows = states[1]
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| {
                DataFusionError::Internal("scalar_subquery_row: row counts are not Int64".into())
            })?;
        for index in 0..rows.len() {
            if rows.value(index) > 0 {
                self.add(rows.value(index), &states[0], index)?;
            }
        }
        Ok(())
    }
}

/// Makes correlated scalar subqueries single-row aggregates (see the module).
#[derive(Debug, Default)]
pub struct ScalarSubqueryRule;

fn needs_aggregate(subquery: &Subquery) -> bool {
    let plan = subquery.subquery.as_ref();
    !subquery.outer_ref_columns.is_empty()
        && !matches!(plan, LogicalPlan::Aggregate(_))
        && plan.max_rows().is_none_or(|rows| rows > 1)
        && plan.schema().fields().len() == 1
}

fn aggregated(subquery: Subquery) -> Result<Subquery> {
    let plan = Arc::unwrap_or_clone(subquery.subquery);
    let (qualifier, field) = plan.schema().qualified_field(0);
    let column = Expr::Column(Column::new(qualifier.cloned(), field.name()));
    // A name of its own: the outer query may have a column of the subquery column's name.
    let name = format!("{}_single_row", field.name());
    let single_row = SingleRowFunction::udaf().call(vec![column]).alias(name);
    let plan = LogicalPlanBuilder::from(plan)
        .aggregate(Vec::<Expr>::new(), vec![single_row])?
        .build()?;
    Ok(Subquery {
        subquery: Arc::new(plan),
        ..subquery
    })
}

/// Whether `expr` refers to the outer query only (DataFusion cannot pull such a predicate up
/// out of the aggregate a subquery becomes).
fn refers_to_outer_query_only(expr: &Expr) -> bool {
    let mut outer = false;
    let mut other = false;
    expr.apply(|expr| {
        match expr {
            Expr::OuterReferenceColumn(..) => outer = true,
            Expr::Column(_) | Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_) => {
                other = true
            }
            _ => {}
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    })
    .expect("infallible");
    outer && !other
}

/// Takes the conjuncts that refer to the outer query only out of the first filter on the
/// subquery's top chain (through projections and aliases): `(SELECT e FROM t WHERE c AND w)`
/// with `c` on outer columns only yields no row unless `c` holds, so it equals `CASE WHEN c
/// THEN (SELECT e FROM t WHERE w) END`. Returns the plan without them and `c` in the outer
/// query's terms.
fn take_outer_only_conjuncts(plan: LogicalPlan) -> Result<(LogicalPlan, Option<Expr>)> {
    match plan {
        LogicalPlan::Projection(projection) => {
            let (input, guard) = take_outer_only_conjuncts(Arc::unwrap_or_clone(projection.input))?;
            Ok((
                LogicalPlan::Projection(Projection::try_new(projection.expr, Arc::new(input))?),
                guard,
            ))
        }
        LogicalPlan::SubqueryAlias(alias) => {
            let (input, guard) = take_outer_only_conjuncts(Arc::unwrap_or_clone(alias.input))?;
            Ok((
                LogicalPlan::SubqueryAlias(SubqueryAlias::try_new(Arc::new(input), alias.alias)?),
                guard,
            ))
        }
        LogicalPlan::Filter(filter) => {
            let (outer, inner): (Vec<Expr>, Vec<Expr>) = split_conjunction_owned(filter.predicate)
                .into_iter()
                .partition(refers_to_outer_query_only);
            let input = match conjunction(inner) {
                Some(predicate) => LogicalPlan::Filter(Filter::try_new(predicate, filter.input)?),
                None => Arc::unwrap_or_clone(filter.input),
            };
            let guard = conjunction(outer)
                .map(|guard| {
                    guard.transform(|expr| match expr {
                        Expr::OuterReferenceColumn(_, column) => {
                            Ok(Transformed::yes(Expr::Column(column)))
                        }
                        other => Ok(Transformed::no(other)),
                    })
                })
                .transpose()?
                .map(|guard| guard.data);
            Ok((input, guard))
        }
        other => Ok((other, None)),
    }
}

/// The expression a correlated non-aggregate scalar subquery becomes: the single-row aggregate,
/// under a `CASE` for the conditions on the outer query alone.
fn single_row(subquery: Subquery) -> Result<Expr> {
    let (plan, guard) = take_outer_only_conjuncts(Arc::unwrap_or_clone(subquery.subquery))?;
    let outer_ref_columns = plan.all_out_ref_exprs();
    let subquery = Subquery {
        subquery: Arc::new(plan),
        outer_ref_columns,
        ..subquery
    };
    let value = Expr::ScalarSubquery(aggregated(subquery)?);
    Ok(match guard {
        Some(guard) => Expr::Case(Case::new(
            None,
            vec![(Box::new(guard), Box::new(value))],
            None,
        )),
        None => value,
    })
}

impl AnalyzerRule for ScalarSubqueryRule {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        rewrite_expressions(plan, |expr| match expr {
            Expr::ScalarSubquery(subquery) if needs_aggregate(&subquery) => {
                Ok(Transformed::yes(single_row(subquery)?))
            }
            other => Ok(Transformed::no(other)),
        })
    }

    fn name(&self) -> &str {
        "scalar_subquery_single_row"
    }
}
