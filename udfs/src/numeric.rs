//! Numbers as PostgreSQL's `numeric` has them, above all a cast to `numeric` without a
//! precision, which keeps the digits a value has.
//!
//! A PostgreSQL `numeric` carries its scale with each value: `2.50::numeric` is `2.50`,
//! `5::numeric` is `5` and `'1e3'::numeric` is `1000`. Arrow's decimals have one precision and
//! scale per column, and DataFusion plans a bare `numeric` as decimal(38, 10), which printed
//! `5.0000000000`. The server's type planner plans a bare `numeric` (or `decimal`) as a cast
//! to [`unconstrained_numeric_field`]; [`PostgresNumericRule`], run before DataFusion's
//! type coercion, gives each such cast the decimal its operand needs:
//! - a decimal stays as it is (a cast from `numeric` to `numeric` changes nothing);
//! - an integer column gets scale 0 and the digits its type can hold;
//! - a literal gets the digits it has: a text or an integer as written, a double with the
//!   fewest digits that read back (a written number, `2.50`, is a decimal already).
//!
//! Other operands keep decimal(38, 10): a float or text column, whose values' scales differ
//! row by row (PostgreSQL keeps each one's), and the rows of a `VALUES` list, whose types
//! DataFusion settles when it plans the list. The rule also gives a quotient of decimals at
//! least 16 digits after the point, rounded, where Arrow gives the dividend's scale plus 4,
//! truncated (`40::numeric / 7` is 5.7142857142857143, as in PostgreSQL, not 5.7142).
//!
//! A number written with a point or an exponent is a decimal, as PostgreSQL reads it
//! (DataFusion's `parse_float_as_decimal`, which the engine sets). Where DataFusion then leaves
//! such a number unlike PostgreSQL's, the rule fits it:
//! - an exponent leaves a negative scale (`1e3` is 1 with scale -3), which no client reads: it
//!   becomes the whole number (decimal(4, 0)); a number of more than 38 digits, which Arrow's
//!   decimals cannot hold, is a double;
//! - DataFusion compares and unifies a float with a decimal as decimal(30, 15), which holds no
//!   double beyond 10^15 and drops digits beyond 15 after the point; PostgreSQL takes the
//!   double (`float8` is the preferred numeric type), so where a float and a decimal meet in a
//!   comparison, arithmetic, `BETWEEN`, `IN`, `CASE`, `UNION` or `COALESCE`, `NULLIF`,
//!   `GREATEST`, `LEAST`, the decimals are cast to double (DataFusion's arithmetic gives a
//!   double already, but a `real` where PostgreSQL gives a double);
//! - Arrow's cast of a decimal or a float to an integer drops the fraction (`2.5::int` is 2):
//!   the number is rounded first, as PostgreSQL rounds (3);
//! - DataFusion's `ceil`, `floor` and `trunc` of a decimal keep its scale (3.0 for
//!   `ceil(2.1)`), and overflow where a digit is carried (`ceil(9.5)`): they get PostgreSQL's
//!   scale.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DECIMAL128_MAX_PRECISION, DataType, Field, FieldRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, Result, ScalarValue};
use datafusion::functions::math::expr_fn::round;
use datafusion::logical_expr::expr::{Between, Case, Cast, InList, ScalarFunction};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{
    BinaryExpr, Expr, ExprSchemable, LogicalPlan, LogicalPlanBuilder, Operator, Projection, Union,
    Values,
};
use datafusion::optimizer::AnalyzerRule;

/// The name that marks a cast's target field as `numeric` without a precision. A field with
/// a name is not DataFusion's "type only" cast target, so the cast's output takes no metadata
/// from its operand; the name itself appears nowhere in the output.
const UNCONSTRAINED_NUMERIC: &str = "numeric";

/// The decimal a bare `numeric` is when nothing says better: DataFusion's own.
pub const DEFAULT_DECIMAL: DataType = DataType::Decimal128(38, 10);

/// The target field of a cast to `numeric` without a precision: DataFusion's decimal(38, 10),
/// marked so that [`PostgresNumericRule`] finds the cast.
pub fn unconstrained_numeric_field() -> Field {
    Field::new(UNCONSTRAINED_NUMERIC, DEFAULT_DECIMAL, true)
}

/// The analyzer rule that types casts to a bare `numeric` by their operand and widens decimal
/// quotients (module docs). It must run before DataFusion's type coercion, which then fits the
/// expressions around them. Run again on its own output, it gives the same types and values
/// (it may wrap an expression in a cast that changes nothing, or round a rounded float again).
///
/// ```
/// use std::sync::Arc;
/// use datafusion::optimizer::Analyzer;
/// let rules = std::iter::once(Arc::new(quantatom_udfs::PostgresNumericRule) as _)
///     .chain(Analyzer::new().rules)
///     .collect();
/// let state = datafusion::execution::SessionStateBuilder::new()
///     .with_default_features()
///     .with_analyzer_rules(rules)
///     .build();
/// ```
#[derive(Debug, Default)]
pub struct PostgresNumericRule;

impl AnalyzerRule for PostgresNumericRule {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            // A parent is rebuilt around its retyped children with its old schema: its
            // expressions must be typed by theirs (`coalesce(f, 0.0)` below an alias is a
            // double now), as DataFusion's type coercion retypes every node it passes.
            let node = node.recompute_schema()?;
            // A VALUES list's types were settled from its rows when it was planned: they are
            // settled again from its typed rows.
            if let LogicalPlan::Values(values) = node {
                return values_with_numbers_typed(values);
            }
            if let LogicalPlan::Union(union) = node {
                return union_with_doubles(union);
            }
            // A node without such an expression is left before its inputs' schema is merged.
            if !retypes_numbers(&node)? {
                return Ok(Transformed::no(node));
            }
            let schema = merge_schema(&node.inputs());
            let names = NamePreserver::new(&node);
            let typed = node.map_expressions(|expr| {
                let name = names.save(&expr);
                expr.transform_up(|expr| Ok(typed_numeric(expr, &schema)))?
                    .map_data(|expr| Ok(name.restore(expr)))
            })?;
            if typed.transformed {
                typed.map_data(LogicalPlan::recompute_schema)
            } else {
                Ok(typed)
            }
        })
        .data()
    }

    fn name(&self) -> &str {
        "postgres_numeric"
    }
}

/// Whether an expression of `node` holds a cast to a bare `numeric`, a division, a written
/// number to fit or a place where values of two types meet: the expressions [`typed_numeric`]
/// may change.
fn retypes_numbers(node: &LogicalPlan) -> Result<bool> {
    let mut found = false;
    node.apply_expressions(|expr| {
        found = expr.exists(|expr| {
            Ok(match expr {
                Expr::Cast(Cast { field, .. }) => {
                    field.name() == UNCONSTRAINED_NUMERIC || field.data_type().is_integer()
                }
                Expr::BinaryExpr(BinaryExpr { op, .. }) => {
                    compares(*op) || op.is_numerical_operators()
                }
                Expr::Literal(value, _) => written_number_to_fit(value).is_some(),
                Expr::Between(_) | Expr::InList(_) | Expr::Case(_) => true,
                Expr::ScalarFunction(call) => {
                    unifies_its_arguments(call.name())
                        || matches!(call.name(), "ceil" | "floor" | "trunc")
                }
                _ => false,
            })
        })?;
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    })?;
    Ok(found)
}

/// `expr` as PostgreSQL types it: a cast to a bare `numeric` typed by its operand, a decimal
/// quotient with PostgreSQL's scale, a written number a client can read, decimals meeting a
/// float as doubles, a decimal's `ceil`, `floor` or `trunc` with the scale PostgreSQL gives it.
fn typed_numeric(expr: Expr, schema: &DFSchema) -> Transformed<Expr> {
    match expr {
        Expr::Cast(Cast {
            expr: operand,
            field,
        }) if field.name() == UNCONSTRAINED_NUMERIC => {
            Transformed::yes(match written_literal(&operand) {
                Some(literal) => Expr::Literal(literal, None),
                None => match operand.get_type(schema).map(|of| decimal_of_type(&of)) {
                    Ok(None) => *operand,
                    Ok(Some(decimal)) => Expr::Cast(Cast::new(operand, decimal)),
                    Err(_) => Expr::Cast(Cast::new(operand, DEFAULT_DECIMAL)),
                },
            })
        }
        Expr::Cast(Cast {
            expr: operand,
            field,
        }) if field.data_type().is_integer() => rounded_to_integer(operand, field, schema),
        Expr::Literal(value, metadata) => match written_number_to_fit(&value) {
            Some(fitted) => Transformed::yes(Expr::Literal(fitted, metadata)),
            None => Transformed::no(Expr::Literal(value, metadata)),
        },
        Expr::BinaryExpr(BinaryExpr {
            mut left,
            op,
            mut right,
        }) if compares(op) || op.is_numerical_operators() => {
            if decimals_as_doubles([left.as_mut(), right.as_mut()], schema) {
                Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(left, op, right)))
            } else if op == Operator::Divide {
                quotient_with_postgres_scale(left, right, schema)
            } else {
                Transformed::no(Expr::BinaryExpr(BinaryExpr::new(left, op, right)))
            }
        }
        Expr::ScalarFunction(call) if matches!(call.name(), "ceil" | "floor" | "trunc") => {
            rounded_with_postgres_scale(call, schema)
        }
        Expr::Between(mut between) => {
            let Between {
                expr, low, high, ..
            } = &mut between;
            let cast = decimals_as_doubles([expr.as_mut(), low.as_mut(), high.as_mut()], schema);
            Transformed::new_transformed(Expr::Between(between), cast)
        }
        Expr::InList(mut in_list) => {
            let InList { expr, list, .. } = &mut in_list;
            let cast = decimals_as_doubles(std::iter::once(expr.as_mut()).chain(list), schema);
            Transformed::new_transformed(Expr::InList(in_list), cast)
        }
        Expr::Case(mut case) => {
            let Case {
                expr,
                when_then_expr,
                else_expr,
            } = &mut case;
            let (whens, thens): (Vec<_>, Vec<_>) = when_then_expr
                .iter_mut()
                .map(|(when, then)| (when.as_mut(), then.as_mut()))
                .unzip();
            // `CASE x WHEN y` compares x with each y; the results are one column.
            let compared = match expr {
                Some(expr) => {
                    decimals_as_doubles(std::iter::once(expr.as_mut()).chain(whens), schema)
                }
                None => false,
            };
            let results = thens.into_iter().chain(else_expr.as_deref_mut());
            let cast = decimals_as_doubles(results, schema) | compared;
            Transformed::new_transformed(Expr::Case(case), cast)
        }
        Expr::ScalarFunction(mut call) if unifies_its_arguments(call.name()) => {
            let cast = decimals_as_doubles(&mut call.args, schema);
            Transformed::new_transformed(Expr::ScalarFunction(call), cast)
        }
        other => Transformed::no(other),
    }
}

/// `left / right`, a quotient of decimals given PostgreSQL's scale ([`rescaled_division`]).
fn quotient_with_postgres_scale(
    left: Box<Expr>,
    right: Box<Expr>,
    schema: &DFSchema,
) -> Transformed<Expr> {
    let rescaled = match (left.get_type(schema), right.get_type(schema)) {
        (Ok(left), Ok(right)) => rescaled_division(&left, &right),
        _ => None,
    };
    let Some(RescaledDivision { dividend, rounded }) = rescaled else {
        return Transformed::no(Expr::BinaryExpr(BinaryExpr::new(
            left,
            Operator::Divide,
            right,
        )));
    };
    let left = Box::new(Expr::Cast(Cast::new(left, dividend)));
    let quotient = Expr::BinaryExpr(BinaryExpr::new(left, Operator::Divide, right));
    Transformed::yes(match rounded {
        Some(rounded) => Expr::Cast(Cast::new(Box::new(quotient), rounded)),
        None => quotient,
    })
}

/// A decimal's `ceil` or `floor`, or `trunc` to a written number of digits after the point,
/// with that scale, as PostgreSQL gives it (`ceil(2.1)` is 3, `trunc(2.567, 1)` 2.5), where
/// DataFusion keeps the operand's (3.0, 2.500).
fn rounded_with_postgres_scale(mut call: ScalarFunction, schema: &DFSchema) -> Transformed<Expr> {
    let operand = call.args.first().map(|operand| operand.get_type(schema));
    let Some(Ok(DataType::Decimal128(precision, scale))) = operand else {
        return Transformed::no(Expr::ScalarFunction(call));
    };
    let digits_kept = match call.args.get(1) {
        None => 0,
        Some(Expr::Literal(digits, _)) if call.name() == "trunc" => {
            match digits.cast_to(&DataType::Int8).ok() {
                Some(ScalarValue::Int8(Some(digits))) if digits >= 0 => digits,
                _ => return Transformed::no(Expr::ScalarFunction(call)),
            }
        }
        Some(_) => return Transformed::no(Expr::ScalarFunction(call)),
    };
    if digits_kept >= scale {
        return Transformed::no(Expr::ScalarFunction(call));
    }
    // `ceil` and `floor` may carry a digit into the whole part (`ceil(9.5)` is 10), which
    // Arrow's would overflow into an error: the operand gets room for it, up to the most digits
    // a decimal holds.
    if precision < DECIMAL128_MAX_PRECISION {
        let widened = DataType::Decimal128(precision + 1, scale);
        let operand = std::mem::take(&mut call.args[0]);
        call.args[0] = Expr::Cast(Cast::new(Box::new(operand), widened));
    }
    let whole_digits = precision - scale.unsigned_abs() + 1;
    let rounded = DataType::Decimal128(
        (whole_digits + digits_kept.unsigned_abs()).min(DECIMAL128_MAX_PRECISION),
        digits_kept,
    );
    Transformed::yes(Expr::Cast(Cast::new(
        Box::new(Expr::ScalarFunction(call)),
        rounded,
    )))
}

/// A cast of `operand` (of a type read in `schema`) to `field` as PostgreSQL casts: rounded to
/// the nearest integer when `field` is an integer ([`rounded_to_integer`]), else Arrow's cast.
/// What the rule makes of a written cast, for a cast the server builds itself.
pub fn postgres_cast(operand: Expr, field: FieldRef, schema: &DFSchema) -> Expr {
    let operand = Box::new(operand);
    match field.data_type().is_integer() {
        true => rounded_to_integer(operand, field, schema).data,
        false => Expr::Cast(Cast {
            expr: operand,
            field,
        }),
    }
}

/// A cast of `operand` to the integer `field` that rounds to the nearest integer, as
/// PostgreSQL does (`2.5::int` is 3, `2.7::float8::int` 3), where Arrow's cast drops the
/// fraction: a decimal is first cast to scale 0, which rounds halves away from zero as
/// PostgreSQL rounds a `numeric`; a float is first `round`ed, which rounds its halves so too
/// (PostgreSQL: to even, `2.5::float8::int` is 2).
fn rounded_to_integer(operand: Box<Expr>, field: FieldRef, schema: &DFSchema) -> Transformed<Expr> {
    let rounded = match operand.get_type(schema) {
        Ok(DataType::Decimal128(precision, scale)) if scale > 0 => {
            // Room for a digit carried into the whole part (9.5 is 10).
            let whole_digits = (precision - scale.unsigned_abs() + 1).min(DECIMAL128_MAX_PRECISION);
            Expr::Cast(Cast::new(operand, DataType::Decimal128(whole_digits, 0)))
        }
        Ok(float) if float.is_floating() => round(vec![*operand]),
        _ => {
            return Transformed::no(Expr::Cast(Cast {
                expr: operand,
                field,
            }));
        }
    };
    Transformed::yes(Expr::Cast(Cast {
        expr: Box::new(rounded),
        field,
    }))
}

/// Whether `op` compares its operands, so that PostgreSQL gives them one type.
fn compares(op: Operator) -> bool {
    matches!(
        op,
        Operator::Eq
            | Operator::NotEq
            | Operator::Lt
            | Operator::LtEq
            | Operator::Gt
            | Operator::GtEq
            | Operator::IsDistinctFrom
            | Operator::IsNotDistinctFrom
    )
}

/// Whether the function named `name` gives its arguments one type, as PostgreSQL resolves a
/// `UNION`'s: `coalesce` and its kin.
pub fn unifies_its_arguments(name: &str) -> bool {
    matches!(
        name,
        "coalesce" | "nullif" | "greatest" | "least" | "nvl" | "ifnull" | "nvl2"
    )
}

/// Casts the decimals among `exprs` to double when a float is among them, as PostgreSQL
/// compares or unifies `numeric` with `float8` (DataFusion: decimal(30, 15), which cannot hold
/// every double); whether it cast any. An expression whose type is not known yet is left.
fn decimals_as_doubles<'a>(
    exprs: impl IntoIterator<Item = &'a mut Expr>,
    schema: &DFSchema,
) -> bool {
    let typed: Vec<(&mut Expr, DataType)> = exprs
        .into_iter()
        .filter_map(|expr| {
            let of = expr.get_type(schema).ok()?;
            Some((expr, of))
        })
        .collect();
    if !typed.iter().any(|(_, of)| of.is_floating()) {
        return false;
    }
    let mut cast = false;
    for (expr, of) in typed {
        if of.is_decimal() {
            let decimal = std::mem::replace(expr, Expr::Literal(ScalarValue::Null, None));
            *expr = Expr::Cast(Cast::new(Box::new(decimal), DataType::Float64));
            cast = true;
        }
    }
    cast
}

/// A written number as a client can read it, when DataFusion's reading of it needs fitting:
/// one with an exponent that left a negative scale as its whole number (`1e3`: 1000, decimal(4,
/// 0)), one of more than 38 digits (a negative scale beyond them, or Decimal256) as a double.
/// `None` for any other value.
fn written_number_to_fit(value: &ScalarValue) -> Option<ScalarValue> {
    // Read from the digits and the exponent, so that the double is the nearest to the number
    // (Arrow's cast multiplies, and 1e100 becomes 1.0000000000000002e100).
    let as_double = |digits: String, scale: i8| {
        let double = format!("{digits}e{}", -i16::from(scale))
            .parse::<f64>()
            .ok()?;
        Some(ScalarValue::Float64(Some(double)))
    };
    match value {
        ScalarValue::Decimal128(Some(digits), precision, scale) if *scale < 0 => {
            let shift = u32::from(scale.unsigned_abs());
            let whole_precision = u32::from(*precision) + shift;
            match 10_i128
                .checked_pow(shift)
                .and_then(|factor| digits.checked_mul(factor))
            {
                Some(whole) if whole_precision <= u32::from(DECIMAL128_MAX_PRECISION) => Some(
                    ScalarValue::Decimal128(Some(whole), u8::try_from(whole_precision).ok()?, 0),
                ),
                _ => as_double(digits.to_string(), *scale),
            }
        }
        ScalarValue::Decimal256(Some(digits), _, scale) => as_double(digits.to_string(), *scale),
        _ => None,
    }
}

/// A `UNION` whose columns of floats in one input and decimals in another take the decimals
/// as doubles, as PostgreSQL unifies them (DataFusion: decimal(30, 15), as for
/// [`decimals_as_doubles`]).
fn union_with_doubles(union: Union) -> Result<Transformed<LogicalPlan>> {
    let types_of = |column: usize| {
        union
            .inputs
            .iter()
            .map(move |input| input.schema().field(column).data_type())
    };
    let met: Vec<usize> = (0..union.schema.fields().len())
        .filter(|&column| {
            types_of(column).any(DataType::is_floating)
                && types_of(column).any(DataType::is_decimal)
        })
        .collect();
    if met.is_empty() {
        return Ok(Transformed::no(LogicalPlan::Union(union)));
    }
    let inputs = union
        .inputs
        .into_iter()
        .map(|input| {
            let schema = Arc::clone(input.schema());
            let cast_here = |column: &usize| schema.field(*column).data_type().is_decimal();
            if !met.iter().any(cast_here) {
                return Ok(input);
            }
            let columns = schema
                .iter()
                .enumerate()
                .map(|(column, (qualifier, field))| {
                    let value = Expr::Column(Column::from((qualifier, field)));
                    if cast_here(&column) && met.contains(&column) {
                        Expr::Cast(Cast::new(Box::new(value), DataType::Float64))
                            .alias_qualified(qualifier.cloned(), field.name())
                    } else {
                        value
                    }
                });
            Ok(Arc::new(LogicalPlan::Projection(Projection::try_new(
                columns.collect(),
                input,
            )?)))
        })
        .collect::<Result<_>>()?;
    Ok(Transformed::yes(LogicalPlan::Union(
        Union::try_new_with_loose_types(inputs)?,
    )))
}

/// A VALUES list with its rows typed as [`typed_numeric`] types any expression, and its column
/// types settled again from its rows, as DataFusion settled them, when a row changed. The cast
/// DataFusion puts around a row to give it its column's type stays (a column of rows of several
/// types, or of a target table's type), unless that type is one no client reads: a column of
/// written numbers that all have an exponent or more than 38 digits ([`written_number_to_fit`])
/// takes the fitted numbers' type.
fn values_with_numbers_typed(values: Values) -> Result<Transformed<LogicalPlan>> {
    let unreadable = |data_type: &DataType| {
        matches!(data_type, DataType::Decimal128(_, scale) if *scale < 0)
            || matches!(data_type, DataType::Decimal256(..))
    };
    let schema = DFSchema::empty();
    let mut typed = false;
    let mut rows = Vec::with_capacity(values.values.len());
    for row in values.values {
        let mut cells = Vec::with_capacity(row.len());
        for cell in row {
            let cell = match cell {
                Expr::Cast(Cast { expr, field }) if unreadable(field.data_type()) => {
                    typed = true;
                    *expr
                }
                cell => cell,
            };
            let cell = cell.transform_up(|expr| Ok(typed_numeric(expr, &schema)))?;
            typed |= cell.transformed;
            cells.push(cell.data);
        }
        rows.push(cells);
    }
    if typed {
        Ok(Transformed::yes(LogicalPlanBuilder::values(rows)?.build()?))
    } else {
        Ok(Transformed::no(LogicalPlan::Values(Values {
            schema: values.schema,
            values: rows,
        })))
    }
}

/// The fewest digits after the point a quotient of decimals shows: PostgreSQL's, for a quotient
/// of 1 or more (it gives one below 1 more), where Arrow's division adds 4 to the dividend's
/// scale.
const QUOTIENT_SCALE: i8 = 16;

/// How much Arrow's decimal division adds to the dividend's scale.
const DIVISION_SCALE_INCREMENT: i8 = 4;

/// How a division of decimals is planned for PostgreSQL's digits.
#[derive(Debug, PartialEq)]
struct RescaledDivision {
    /// The decimal the dividend is cast to.
    dividend: DataType,
    /// The decimal the quotient is rounded to (Arrow's division truncates: it is computed with
    /// one digit more), when there is room for that digit.
    rounded: Option<DataType>,
}

/// The division of a `left` by a `right` whose quotient has [`QUOTIENT_SCALE`] digits after
/// the point (or both operands' scale, when more), rounded in the last as PostgreSQL rounds, as
/// far as every value of the types still divides without overflowing 38 digits; `None` when the
/// division is not between decimals (an integer counts as one with scale 0) or needs no change.
fn rescaled_division(left: &DataType, right: &DataType) -> Option<RescaledDivision> {
    let as_decimal = |data_type: &DataType| match data_type {
        DataType::Decimal128(precision, scale) => Some((*precision, *scale)),
        integer if integer.is_integer() => match decimal_of_type(integer)? {
            DataType::Decimal128(precision, _) => Some((precision, 0)),
            _ => None,
        },
        _ => None,
    };
    if !matches!(left, DataType::Decimal128(..)) && !matches!(right, DataType::Decimal128(..)) {
        return None;
    }
    let ((precision, scale), (_, divisor_scale)) = (as_decimal(left)?, as_decimal(right)?);
    let whole_digits = i16::from(precision) - i16::from(scale);
    let increment = i16::from(DIVISION_SCALE_INCREMENT);
    // Arrow multiplies the dividend by 10^(increment + divisor scale) before it divides.
    let widest =
        i16::from(DECIMAL128_MAX_PRECISION) - whole_digits - increment - i16::from(divisor_scale);
    let quotient_scale = i16::from(QUOTIENT_SCALE.max(scale).max(divisor_scale));
    // One digit more than shown, to round by.
    let dividend_scale = (quotient_scale - increment + 1).min(widest);
    if dividend_scale <= i16::from(scale) {
        return None;
    }
    let dividend = DataType::Decimal128(
        u8::try_from(whole_digits + dividend_scale).ok()?,
        i8::try_from(dividend_scale).ok()?,
    );
    let computed_scale = dividend_scale + increment;
    let rounded = if computed_scale > quotient_scale {
        let digits = (whole_digits + i16::from(divisor_scale) + computed_scale)
            .min(i16::from(DECIMAL128_MAX_PRECISION));
        Some(DataType::Decimal128(
            u8::try_from(digits).ok()?,
            i8::try_from(quotient_scale).ok()?,
        ))
    } else {
        None
    };
    Some(RescaledDivision { dividend, rounded })
}

/// A literal `operand` of a bare `numeric` cast as the decimal it is written as (a NULL as
/// decimal(1, 0)); `None` for any other operand, or a text that is no number (the cast itself
/// refuses it, 22P02). A parameter is no literal: its value is not known when the cast is typed.
fn written_literal(operand: &Expr) -> Option<ScalarValue> {
    let Expr::Literal(value, _) = operand else {
        return None;
    };
    let text = match value {
        ScalarValue::Utf8(Some(text))
        | ScalarValue::Utf8View(Some(text))
        | ScalarValue::LargeUtf8(Some(text)) => text.clone(),
        ScalarValue::Float64(Some(number)) if number.is_finite() => number.to_string(),
        ScalarValue::Float32(Some(number)) if number.is_finite() => number.to_string(),
        integer if integer.data_type().is_integer() && !integer.is_null() => integer.to_string(),
        // The narrowest decimal, which leaves the type of what it meets (`CASE`, `COALESCE`).
        null if null.is_null() => return Some(ScalarValue::Decimal128(None, 1, 0)),
        _ => return None,
    };
    written_number(&text)
}

/// The decimal type that holds every value of `data_type` as PostgreSQL's `numeric` would;
/// `None` for a decimal, which stays as it is.
fn decimal_of_type(data_type: &DataType) -> Option<DataType> {
    let digits = match data_type {
        DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => return None,
        DataType::Int8 | DataType::UInt8 => 3,
        DataType::Int16 | DataType::UInt16 => 5,
        DataType::Int32 | DataType::UInt32 => 10,
        DataType::Int64 => 19,
        DataType::UInt64 => 20,
        _ => return Some(DEFAULT_DECIMAL),
    };
    Some(DataType::Decimal128(digits, 0))
}

/// The number written as `text` (`-12.50`, `1e3`, `.5`) as a decimal with the scale it is
/// written with, as PostgreSQL's numeric input keeps it (an exponent moves it; none is
/// negative). `None` when `text` is no such number or needs more than 38 digits.
fn written_number(text: &str) -> Option<ScalarValue> {
    let text = text.trim();
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(unsigned) => (true, unsigned),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, exponent.parse::<i32>().ok()?),
        None => (unsigned, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
    if whole.len() + fraction.len() == 0 || !all_digits(whole) || !all_digits(fraction) {
        return None;
    }
    let written = format!("{whole}{fraction}");
    let significant = written.trim_start_matches('0');
    if significant.len() > usize::from(DECIMAL128_MAX_PRECISION) {
        return None;
    }
    let digits = if significant.is_empty() {
        0
    } else {
        significant.parse::<i128>().ok()?
    };
    let fraction_digits = i32::try_from(fraction.len()).ok()?;
    let scale = (fraction_digits - exponent).max(0);
    let shift = u32::try_from(exponent - fraction_digits + scale).ok()?;
    let magnitude = digits.checked_mul(10_i128.checked_pow(shift)?)?;
    let precision = magnitude
        .checked_ilog10()
        .map_or(1, |log| log + 1)
        .max(scale.unsigned_abs());
    let precision = u8::try_from(precision).ok()?;
    if precision > DECIMAL128_MAX_PRECISION {
        return None;
    }
    let value = if negative { -magnitude } else { magnitude };
    Some(ScalarValue::Decimal128(
        Some(value),
        precision,
        i8::try_from(scale).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_number_keeps_its_scale() {
        let decimal =
            |value, precision, scale| Some(ScalarValue::Decimal128(Some(value), precision, scale));
        assert_eq!(written_number("2.50"), decimal(250, 3, 2));
        assert_eq!(written_number(" -0.5 "), decimal(-5, 1, 1));
        assert_eq!(written_number("+007"), decimal(7, 1, 0));
        assert_eq!(written_number("0"), decimal(0, 1, 0));
        assert_eq!(written_number("0.05"), decimal(5, 2, 2));
        assert_eq!(written_number("1e3"), decimal(1000, 4, 0));
        assert_eq!(written_number("1.5e-3"), decimal(15, 4, 4));
        assert_eq!(written_number("12.345E1"), decimal(12345, 5, 2));
        assert_eq!(written_number(".5"), decimal(5, 1, 1));
        for refused in ["abc", "1.2.3", "", "-", "1e", "1e40", "NaN"] {
            assert_eq!(written_number(refused), None, "{refused}");
        }
    }

    #[test]
    fn written_numbers_are_fitted_for_clients() {
        // `1e3`, as DataFusion reads it.
        assert_eq!(
            written_number_to_fit(&ScalarValue::Decimal128(Some(1), 1, -3)),
            Some(ScalarValue::Decimal128(Some(1000), 4, 0))
        );
        assert_eq!(
            written_number_to_fit(&ScalarValue::Decimal128(Some(-15), 2, -36)),
            Some(ScalarValue::Decimal128(Some(-15 * 10_i128.pow(36)), 38, 0))
        );
        // Beyond 38 digits, the nearest double.
        assert_eq!(
            written_number_to_fit(&ScalarValue::Decimal128(Some(1), 1, -100)),
            Some(ScalarValue::Float64(Some(1e100)))
        );
        let wide = "123456789012345678901234567890123456789015"
            .parse()
            .unwrap();
        assert_eq!(
            written_number_to_fit(&ScalarValue::Decimal256(Some(wide), 42, 1)),
            Some(ScalarValue::Float64(Some(1.2345678901234568e40)))
        );
        for readable in [
            ScalarValue::Decimal128(Some(250), 3, 2),
            ScalarValue::Decimal128(None, 1, -3),
            ScalarValue::Float64(Some(1.5)),
        ] {
            assert_eq!(written_number_to_fit(&readable), None, "{readable:?}");
        }
    }

    #[test]
    fn integer_types_keep_every_digit_with_scale_zero() {
        assert_eq!(
            decimal_of_type(&DataType::Int64),
            Some(DataType::Decimal128(19, 0))
        );
        assert_eq!(decimal_of_type(&DataType::Decimal128(12, 2)), None);
        assert_eq!(decimal_of_type(&DataType::Float64), Some(DEFAULT_DECIMAL));
        // A parameter whose type is not known yet.
        assert_eq!(decimal_of_type(&DataType::Null), Some(DEFAULT_DECIMAL));
    }

    #[test]
    fn a_quotient_of_decimals_has_sixteen_digits_after_the_point() {
        let decimal = DataType::Decimal128;
        let division = |dividend, rounded| Some(RescaledDivision { dividend, rounded });
        assert_eq!(
            rescaled_division(&decimal(2, 1), &DataType::Int64),
            division(decimal(14, 13), Some(decimal(18, 16)))
        );
        assert_eq!(
            rescaled_division(&DataType::Int64, &decimal(1, 0)),
            division(decimal(32, 13), Some(decimal(36, 16)))
        );
        // Room for 8 digits after the point, so none to round by.
        assert_eq!(
            rescaled_division(&decimal(30, 2), &decimal(12, 2)),
            division(decimal(32, 4), None)
        );
        assert_eq!(rescaled_division(&decimal(30, 20), &decimal(5, 2)), None);
        // A dividend rescaled once is not rescaled again.
        assert_eq!(rescaled_division(&decimal(14, 13), &DataType::Int64), None);
        assert_eq!(rescaled_division(&decimal(32, 4), &decimal(12, 2)), None);
        // DataFusion's decimal(38, 10) leaves no digits to spare.
        assert_eq!(rescaled_division(&decimal(38, 10), &decimal(38, 10)), None);
        assert_eq!(rescaled_division(&DataType::Int64, &DataType::Int64), None);
        assert_eq!(rescaled_division(&DataType::Float64, &decimal(5, 2)), None);
    }
}
