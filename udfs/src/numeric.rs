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
//!   fewest digits that read back (`2.50` is a double here, so `2.50::numeric` is 2.5).
//!
//! Other operands keep decimal(38, 10): a float or text column, whose values' scales differ
//! row by row (PostgreSQL keeps each one's), and the rows of a `VALUES` list, whose types
//! DataFusion settles when it plans the list. The rule also gives a quotient of decimals at
//! least 16 digits after the point, rounded, where Arrow gives the dividend's scale plus 4,
//! truncated (`40::numeric / 7` is 5.7142857142857143, as in PostgreSQL, not 5.7142).
//!
//! A number written with a point stays DataFusion's double, which PostgreSQL would read as a
//! `numeric`: DataFusion's `parse_float_as_decimal` reads it so, but then types a double and
//! such a decimal meeting in `COALESCE`, `CASE`, `UNION` or `VALUES` as decimal(30, 15) (where
//! PostgreSQL takes the double), and refuses exponents beyond ±128.

use datafusion::arrow::datatypes::{DECIMAL128_MAX_PRECISION, DataType, Field};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, Result, ScalarValue};
use datafusion::logical_expr::expr::Cast;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{BinaryExpr, Expr, ExprSchemable, LogicalPlan, Operator};
use datafusion::optimizer::AnalyzerRule;

/// The name that marks a cast's target field as `numeric` without a precision. A field with
/// a name is not DataFusion's "type only" cast target, so the cast's output takes no metadata
/// from its operand; the name itself appears nowhere in the output.
const UNCONSTRAINED_NUMERIC: &str = "numeric";

/// The decimal a bare `numeric` is when nothing says better: DataFusion's own.
const DEFAULT_DECIMAL: DataType = DataType::Decimal128(38, 10);

/// The target field of a cast to `numeric` without a precision: DataFusion's decimal(38, 10),
/// marked so that [`PostgresNumericRule`] finds the cast.
pub fn unconstrained_numeric_field() -> Field {
    Field::new(UNCONSTRAINED_NUMERIC, DEFAULT_DECIMAL, true)
}

/// The analyzer rule that types casts to a bare `numeric` by their operand and widens decimal
/// quotients (module docs). It must run before DataFusion's type coercion, which then fits the
/// expressions around them. Run again on its own output, it changes nothing.
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
            // A VALUES list's types were settled from its rows when it was planned; a node
            // without such a cast or a division is left before its inputs' schema is merged.
            if matches!(node, LogicalPlan::Values(_)) || !retypes_numbers(&node)? {
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

/// Whether an expression of `node` holds a cast to a bare `numeric` or a division, the
/// expressions [`typed_numeric`] may change.
fn retypes_numbers(node: &LogicalPlan) -> Result<bool> {
    let mut found = false;
    node.apply_expressions(|expr| {
        found = expr.exists(|expr| {
            Ok(match expr {
                Expr::Cast(Cast { field, .. }) => field.name() == UNCONSTRAINED_NUMERIC,
                Expr::BinaryExpr(BinaryExpr { op, .. }) => *op == Operator::Divide,
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

/// `expr` with a cast to a bare `numeric` typed by its operand, or a decimal quotient given
/// PostgreSQL's scale.
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
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Divide,
            right,
        }) => {
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
        other => Transformed::no(other),
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
