//! Literals, and the parameters they type, as PostgreSQL types them.
//!
//! PostgreSQL gives an integer literal that fits in 32 bits the type `integer` (int4);
//! DataFusion gives every integer literal Int64. Clients see the difference in a result
//! column's type: node-postgres returns int8 as a string, so `SELECT 1` would answer `'1'`.
//! [`type_output_literals`] makes the output columns that are bare integer literals int4.
//! Literals inside expressions keep DataFusion's type, so `2147483647 + 1` is still computed
//! in 64 bits rather than overflowing.
//!
//! A parameter compared or combined with a number written with a point (`$1 > 1.5`,
//! `$1 * 1.05`, `coalesce($1, 0.0)`) is a `numeric` in PostgreSQL, holding any value the client
//! sends. DataFusion gives it the written number's own decimal type (decimal(2, 1) for `1.5`),
//! which holds no 12345.678 and would round it to 12345.7, or leaves it untyped, to be cast to
//! that type when the plan is optimised. [`type_numeric_parameters`] types such a parameter
//! as a bare `numeric` is typed, decimal(38, 10).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::expr::{Alias, Between, Cast, InList, Placeholder, TryCast};
use datafusion::logical_expr::{BinaryExpr, Expr, LogicalPlan, LogicalPlanBuilder, Values};

use quantatom_udfs::{DEFAULT_DECIMAL, unifies_its_arguments};

use crate::output_projection::rewrite_output_projection;

/// `plan` with its output's bare integer literals typed int4 where they fit, and its bare
/// parameters nothing typed typed `text`, as PostgreSQL resolves an `unknown` one (`SELECT $1`);
/// the output projection is found below any `ORDER BY` and `LIMIT`.
pub fn type_output_literals(plan: LogicalPlan) -> Result<LogicalPlan> {
    let typed = rewrite_output_projection(&plan, &|exprs| {
        exprs
            .iter()
            .any(|expr| output_typed(expr).is_some())
            .then(|| {
                exprs
                    .iter()
                    .map(|expr| output_typed(expr).unwrap_or_else(|| expr.clone()))
                    .collect()
            })
    })?;
    Ok(typed.unwrap_or(plan))
}

/// `expr`, an output column, typed as PostgreSQL types it, keeping its output name: a bare
/// integer literal that fits in 32 bits as int4, a bare parameter nothing typed as text.
fn output_typed(expr: &Expr) -> Option<Expr> {
    let (bare, name) = match expr {
        Expr::Alias(Alias { expr, name, .. }) => (expr.as_ref(), name.clone()),
        bare => (bare, bare.schema_name().to_string()),
    };
    let typed = match bare {
        Expr::Literal(ScalarValue::Int64(Some(value)), metadata) => {
            let value = i32::try_from(*value).ok()?;
            Expr::Literal(ScalarValue::Int32(Some(value)), metadata.clone())
        }
        Expr::Placeholder(Placeholder { id, field }) if is_untyped(field.as_ref()) => {
            let text = Arc::new(Field::new("", DataType::Utf8, true));
            Expr::Placeholder(Placeholder::new_with_field(id.clone(), Some(text)))
        }
        _ => return None,
    };
    Some(typed.alias(name))
}

/// Whether a parameter of type `field` is untyped: DataFusion gives a parameter it cannot type
/// no type, or `Null` in some places (`SELECT $1`).
fn is_untyped(field: Option<&FieldRef>) -> bool {
    field.is_none_or(|field| field.data_type() == &DataType::Null)
}

/// `plan` (as DataFusion planned it, before its parameters' types are read) with each
/// parameter that meets a number written with a point typed as a bare `numeric`,
/// [`DEFAULT_DECIMAL`] (module docs): the parameter and the number are the operands of an
/// operator, `BETWEEN`'s or `IN`'s, or the arguments of `coalesce` and its kin.
pub fn type_numeric_parameters(plan: LogicalPlan) -> Result<LogicalPlan> {
    retype_parameters(plan, &numeric_parameters)
}

/// `plan` with each parameter DataFusion left untyped (`SELECT $1`) given the type the client
/// declared for it, `declared[n - 1]` for `$n`, as PostgreSQL takes a parameter's declared
/// type; a parameter DataFusion typed keeps its type.
pub fn type_untyped_parameters(
    plan: LogicalPlan,
    declared: &[Option<DataType>],
) -> Result<LogicalPlan> {
    retype_parameters(plan, &|mut expr| {
        let Expr::Placeholder(Placeholder { id, field }) = &mut expr else {
            return Transformed::no(expr);
        };
        let declared = id
            .strip_prefix('$')
            .and_then(|number| number.parse::<usize>().ok())
            .and_then(|number| declared.get(number.checked_sub(1)?)?.as_ref());
        match declared {
            Some(declared) if is_untyped(field.as_ref()) => {
                *field = Some(Arc::new(Field::new("", declared.clone(), true)));
                Transformed::yes(expr)
            }
            _ => Transformed::no(expr),
        }
    })
}

/// `plan` with each parameter nothing typed but a cast of it (`$1::int`) typed as the cast's
/// target, as PostgreSQL infers it.
pub fn type_cast_parameters(plan: LogicalPlan) -> Result<LogicalPlan> {
    retype_parameters(plan, &|mut expr| {
        let (Expr::Cast(Cast {
            expr: operand,
            field: target,
        })
        | Expr::TryCast(TryCast {
            expr: operand,
            field: target,
        })) = &mut expr
        else {
            return Transformed::no(expr);
        };
        let Expr::Placeholder(Placeholder { field, .. }) = operand.as_mut() else {
            return Transformed::no(expr);
        };
        if !is_untyped(field.as_ref()) {
            return Transformed::no(expr);
        }
        *field = Some(Arc::new(Field::new("", target.data_type().clone(), true)));
        Transformed::yes(expr)
    })
}

/// `plan` with `retype` applied to every expression, bottom up; where it typed a parameter,
/// what the parameter flows into is typed again.
fn retype_parameters(
    plan: LogicalPlan,
    retype: &dyn Fn(Expr) -> Transformed<Expr>,
) -> Result<LogicalPlan> {
    let typed = plan.transform_up_with_subqueries(|node| match node {
        LogicalPlan::Values(values) => values_with_parameters_typed(values, retype),
        node => node.map_expressions(|expr| expr.transform_up(|expr| Ok(retype(expr)))),
    })?;
    if typed.transformed {
        typed
            .data
            .transform_up_with_subqueries(|node| node.recompute_schema().map(Transformed::yes))
            .data()
    } else {
        Ok(typed.data)
    }
}

/// A `VALUES` list with its parameters typed by `retype`, built again when one was: its column
/// types are its rows' types, read when it was built. A row DataFusion cast to its column's
/// type (the type of the list's other rows) keeps that cast, which cannot be told from one
/// written in the query: `VALUES ($1 * 1.5), (123.456)` stays decimal(6, 3).
fn values_with_parameters_typed(
    values: Values,
    retype: &dyn Fn(Expr) -> Transformed<Expr>,
) -> Result<Transformed<LogicalPlan>> {
    let mut typed = false;
    let rows = values
        .values
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|cell| {
                    let cell = cell.transform_up(|expr| Ok(retype(expr)))?;
                    typed |= cell.transformed;
                    Ok(cell.data)
                })
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<Vec<_>>>()?;
    if typed {
        LogicalPlanBuilder::values(rows)?
            .build()
            .map(Transformed::yes)
    } else {
        Ok(Transformed::no(LogicalPlan::Values(Values {
            schema: values.schema,
            values: rows,
        })))
    }
}

/// `expr` with its parameters typed [`DEFAULT_DECIMAL`] where they meet a written number among
/// its operands.
fn numeric_parameters(mut expr: Expr) -> Transformed<Expr> {
    let operands: Vec<&mut Expr> = match &mut expr {
        Expr::BinaryExpr(BinaryExpr { left, right, .. }) => vec![left.as_mut(), right.as_mut()],
        Expr::Between(Between {
            expr, low, high, ..
        }) => vec![expr.as_mut(), low.as_mut(), high.as_mut()],
        Expr::InList(InList { expr, list, .. }) => std::iter::once(expr.as_mut())
            .chain(list.iter_mut())
            .collect(),
        Expr::ScalarFunction(call) if unifies_its_arguments(call.name()) => {
            call.args.iter_mut().collect()
        }
        _ => return Transformed::no(expr),
    };
    let written: Vec<DataType> = operands
        .iter()
        .filter_map(|operand| match operand {
            Expr::Literal(value, _) if value.data_type().is_decimal() => Some(value.data_type()),
            _ => None,
        })
        .collect();
    let mut typed = false;
    for operand in operands {
        if let Expr::Placeholder(Placeholder { field, .. }) = operand {
            // Untyped, or typed by DataFusion from the written number beside it.
            let from_written = field
                .as_ref()
                .is_none_or(|field| written.contains(field.data_type()));
            if !written.is_empty() && from_written {
                *field = Some(Arc::new(Field::new("", DEFAULT_DECIMAL, true)));
                typed = true;
            }
        }
    }
    Transformed::new_transformed(expr, typed)
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::DataType;
    use datafusion::prelude::SessionContext;

    use super::{type_numeric_parameters, type_output_literals};
    use crate::plan_reuse::parameter_types;

    async fn plan_of(sql: &str) -> datafusion::logical_expr::LogicalPlan {
        let mut config = datafusion::prelude::SessionConfig::new();
        config.options_mut().sql_parser.parse_float_as_decimal = true;
        SessionContext::new_with_config(config)
            .state()
            .create_logical_plan(sql)
            .await
            .unwrap()
    }

    async fn output_types(sql: &str) -> Vec<DataType> {
        let typed = type_output_literals(plan_of(sql).await).unwrap();
        typed
            .schema()
            .fields()
            .iter()
            .map(|field| field.data_type().clone())
            .collect()
    }

    #[tokio::test]
    async fn bare_int4_literals_in_the_output_become_int4() {
        assert_eq!(output_types("SELECT 1").await, [DataType::Int32]);
        assert_eq!(
            output_types("SELECT 1 AS one, 3000000000 AS big, 1 + 1 AS sum").await,
            [DataType::Int32, DataType::Int64, DataType::Int64]
        );
        assert_eq!(
            output_types("SELECT 7 AS n ORDER BY n LIMIT 1").await,
            [DataType::Int32]
        );
    }

    #[tokio::test]
    async fn parameters_meeting_written_numbers_are_numeric() {
        let numeric = Some(DataType::Decimal128(38, 10));
        let types = |sql| async move {
            parameter_types(&type_numeric_parameters(plan_of(sql).await).unwrap()).unwrap()
        };
        for sql in [
            "SELECT $1 > 1.5",
            "SELECT 1.05 * $1",
            "SELECT coalesce($1, 0.0)",
            "SELECT $1 BETWEEN 1.5 AND 2.55",
            "SELECT $1 IN (1.5, 2.25)",
            "SELECT x FROM (SELECT 1 AS x) AS t WHERE x < (SELECT $1 + 0.5)",
        ] {
            assert_eq!(types(sql).await, [numeric.clone()], "{sql}");
        }
        // A parameter typed by anything else keeps that type.
        assert_eq!(types("SELECT $1 > 1").await, [Some(DataType::Int64)]);
        assert_eq!(
            types("SELECT $1 > x FROM (SELECT 1.5::decimal(4, 2) AS x) AS t").await,
            [Some(DataType::Decimal128(4, 2))]
        );
        // In a VALUES list, whose column takes the parameter's new type.
        let plan =
            type_numeric_parameters(plan_of("SELECT column1 FROM (VALUES ($1 * 1.5))").await)
                .unwrap();
        assert_eq!(parameter_types(&plan).unwrap(), [numeric.clone()]);
        assert_eq!(
            plan.schema().field(0).data_type(),
            &DataType::Decimal128(38, 11)
        );
        // A parameter DataFusion leaves untyped takes the client's type; a typed one keeps its.
        let declared = [Some(DataType::Int16), Some(DataType::Utf8)];
        let plan = super::type_untyped_parameters(
            plan_of("SELECT $1 AS untyped, $2 > 1 AS typed").await,
            &declared,
        )
        .unwrap();
        assert_eq!(
            parameter_types(&plan).unwrap(),
            [Some(DataType::Int16), Some(DataType::Int64)]
        );
        assert_eq!(plan.schema().field(0).data_type(), &DataType::Int16);
        // What the parameter flows into is typed again.
        let plan = type_numeric_parameters(plan_of("SELECT $1 * 1.5 AS product").await).unwrap();
        assert_eq!(
            plan.schema().field(0).data_type(),
            &DataType::Decimal128(38, 11)
        );
    }
}
