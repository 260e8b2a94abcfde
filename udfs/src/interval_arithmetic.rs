//! An interval times or divided by a number, as PostgreSQL computes it
//! (`interval '1 day' * 3`, `now() - interval '1 hour' * 1.5`, `interval '1 month' / 2`).
//!
//! DataFusion plans no arithmetic between an interval and a number. [`IntervalArithmeticPlanner`]
//! claims `interval * number`, `number * interval` and `interval / number` while the query is
//! planned and turns them into `interval_mul` / `interval_div` calls, which compute as
//! PostgreSQL's `interval_mul` does: months, days and the time part are each scaled, and the
//! fraction of a month is carried down into days (30 to a month), the fraction of a day into
//! the time part (`interval '1 month' * 0.5` is `15 days`, `interval '1 day' * 1.5` is
//! `1 day 12:00:00`), never up; the time part is rounded to the microsecond.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, IntervalMonthDayNanoArray};
use datafusion::arrow::datatypes::{
    DataType, Field, Float64Type, IntervalMonthDayNano, IntervalMonthDayNanoType, IntervalUnit,
};
use datafusion::common::{DFSchema, DataFusionError, Result, exec_err};
use datafusion::logical_expr::expr::{Placeholder, ScalarFunction};
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::sqlparser::ast::BinaryOperator;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use crate::evaluation::evaluate;

/// Days in a month, and seconds in a day, as PostgreSQL carries fractions down.
const DAYS_PER_MONTH: f64 = 30.0;
const SECONDS_PER_DAY: f64 = 86_400.0;
const MICROSECONDS_PER_SECOND: f64 = 1_000_000.0;

/// An interval scaled beyond what its months, days or microseconds can hold (PostgreSQL:
/// `interval out of range`, SQLSTATE 22008).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntervalOutOfRange;

impl IntervalOutOfRange {
    /// The PostgreSQL SQLSTATE, `22008`.
    pub fn sqlstate(&self) -> &'static str {
        "22008"
    }
}

impl fmt::Display for IntervalOutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("interval out of range")
    }
}

impl std::error::Error for IntervalOutOfRange {}

/// Whether an interval is multiplied or divided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Scaling {
    Multiply,
    Divide,
}

/// `interval_mul(interval, factor)` or `interval_div(interval, divisor)`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct IntervalScaleFunction {
    scaling: Scaling,
    signature: Signature,
}

impl IntervalScaleFunction {
    /// `interval_mul` and `interval_div`.
    pub fn udfs() -> Vec<ScalarUDF> {
        [Scaling::Multiply, Scaling::Divide]
            .into_iter()
            .map(|scaling| ScalarUDF::from(Self::new(scaling)))
            .collect()
    }

    fn new(scaling: Scaling) -> Self {
        Self {
            scaling,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for IntervalScaleFunction {
    fn name(&self) -> &str {
        match self.scaling {
            Scaling::Multiply => "interval_mul",
            Scaling::Divide => "interval_div",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        match args {
            [interval, number] if is_interval(interval) && is_number(number) => Ok(vec![
                DataType::Interval(IntervalUnit::MonthDayNano),
                DataType::Float64,
            ]),
            _ => exec_err!(
                "{} takes an interval and a number, not {args:?}",
                self.name()
            ),
        }
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Interval(IntervalUnit::MonthDayNano))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        evaluate(&args.args, |arrays| match arrays {
            [intervals, numbers] => self.scaled_all(intervals, numbers),
            _ => exec_err!("{} takes an interval and a number", self.name()),
        })
    }
}

impl IntervalScaleFunction {
    /// Each of `intervals` scaled by the number beside it in `numbers`.
    fn scaled_all(&self, intervals: &ArrayRef, numbers: &ArrayRef) -> Result<ArrayRef> {
        let intervals = intervals.as_primitive::<IntervalMonthDayNanoType>();
        let numbers = numbers.as_primitive::<Float64Type>();
        let scaled = (0..intervals.len())
            .map(|row| {
                if intervals.is_null(row) || numbers.is_null(row) {
                    return Ok(None);
                }
                let (interval, number) = (intervals.value(row), numbers.value(row));
                match self.scaling {
                    Scaling::Multiply => scaled(interval, number, |part| part * number),
                    Scaling::Divide if number == 0.0 => Err(DataFusionError::ArrowError(
                        Box::new(datafusion::arrow::error::ArrowError::DivideByZero),
                        None,
                    )),
                    Scaling::Divide => scaled(interval, number, |part| part / number),
                }
                .map(Some)
            })
            .collect::<Result<IntervalMonthDayNanoArray>>()?;
        Ok(Arc::new(scaled))
    }
}

/// `interval` with each of its parts scaled by `scale` (times or divided by `number`), the
/// fractions carried down as PostgreSQL's `interval_mul` and `interval_div` carry them.
fn scaled(
    interval: IntervalMonthDayNano,
    number: f64,
    scale: impl Fn(f64) -> f64,
) -> Result<IntervalMonthDayNano> {
    let out_of_range = || DataFusionError::External(Box::new(IntervalOutOfRange));
    let whole = |value: f64| -> Result<i32> {
        // PostgreSQL's range check: -2^31 <= value < 2^31 (the cast then truncates).
        if value.is_nan() || value >= 2_147_483_648.0 || value < -2_147_483_648.0 {
            return Err(out_of_range());
        }
        // Toward zero, as C's cast.
        Ok(value as i32)
    };
    if number.is_nan() {
        return Err(out_of_range());
    }
    let months = scale(f64::from(interval.months));
    let days = scale(f64::from(interval.days));
    let result_months = whole(months)?;
    let mut result_days = whole(days)?;
    let month_remainder_days =
        rounded_to_microseconds((months - f64::from(result_months)) * DAYS_PER_MONTH);
    let mut seconds_remainder = rounded_to_microseconds(
        (days - f64::from(result_days) + month_remainder_days - month_remainder_days.trunc())
            * SECONDS_PER_DAY,
    );
    // A day or more carried down from the months and days (or rounded up to 24:00:00).
    if seconds_remainder.abs() >= SECONDS_PER_DAY {
        let carried = (seconds_remainder / SECONDS_PER_DAY).trunc();
        result_days = result_days
            .checked_add(whole(carried)?)
            .ok_or_else(out_of_range)?;
        seconds_remainder -= carried * SECONDS_PER_DAY;
    }
    result_days = result_days
        .checked_add(whole(month_remainder_days.trunc())?)
        .ok_or_else(out_of_range)?;
    // Arrow keeps nanoseconds; PostgreSQL's time part is microseconds.
    let microseconds = (interval.nanoseconds / 1_000) as f64;
    let time =
        (scale(microseconds) + seconds_remainder * MICROSECONDS_PER_SECOND).round_ties_even();
    // Held in nanoseconds.
    if !time.is_finite() || time.abs() >= i64::MAX as f64 / 1_000.0 {
        return Err(out_of_range());
    }
    Ok(IntervalMonthDayNano::new(
        result_months,
        result_days,
        time as i64 * 1_000,
    ))
}

/// `value` rounded to six digits after the point, as PostgreSQL's `TSROUND`.
fn rounded_to_microseconds(value: f64) -> f64 {
    (value * MICROSECONDS_PER_SECOND).round_ties_even() / MICROSECONDS_PER_SECOND
}

fn is_interval(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Interval(_))
}

fn is_number(data_type: &DataType) -> bool {
    data_type.is_numeric() || data_type == &DataType::Null
}

/// Whether `expr`, of type `data_type`, can scale an interval: a number, or a parameter
/// nothing types.
fn is_factor(expr: &Expr, data_type: &DataType) -> bool {
    is_number(data_type) || matches!(expr, Expr::Placeholder(Placeholder { field: None, .. }))
}

/// The [`ExprPlanner`] that plans `interval * number`, `number * interval` and
/// `interval / number` as [`IntervalScaleFunction`] calls.
///
/// ```
/// use std::sync::Arc;
/// use datafusion::execution::FunctionRegistry;
/// let mut ctx = datafusion::prelude::SessionContext::new();
/// ctx.register_expr_planner(Arc::new(quantatom_udfs::IntervalArithmeticPlanner)).unwrap();
/// ```
#[derive(Debug, Default)]
pub struct IntervalArithmeticPlanner;

impl ExprPlanner for IntervalArithmeticPlanner {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        if !matches!(expr.op, BinaryOperator::Multiply | BinaryOperator::Divide) {
            return Ok(PlannerResult::Original(expr));
        }
        let (left, right) = match (expr.left.get_type(schema), expr.right.get_type(schema)) {
            (Ok(left), Ok(right)) => (left, right),
            _ => return Ok(PlannerResult::Original(expr)),
        };
        let (scaling, args) = match expr.op {
            BinaryOperator::Multiply if is_interval(&left) && is_factor(&expr.right, &right) => {
                (Scaling::Multiply, vec![expr.left, expr.right])
            }
            BinaryOperator::Multiply if is_factor(&expr.left, &left) && is_interval(&right) => {
                (Scaling::Multiply, vec![expr.right, expr.left])
            }
            BinaryOperator::Divide if is_interval(&left) && is_factor(&expr.right, &right) => {
                (Scaling::Divide, vec![expr.left, expr.right])
            }
            _ => return Ok(PlannerResult::Original(expr)),
        };
        let mut args = args;
        // A parameter nothing types is the factor's `double precision`, as PostgreSQL infers.
        if let Expr::Placeholder(Placeholder { field, .. }) = &mut args[1]
            && field.is_none()
        {
            *field = Some(Arc::new(Field::new("", DataType::Float64, true)));
        }
        let function = Arc::new(ScalarUDF::from(IntervalScaleFunction::new(scaling)));
        Ok(PlannerResult::Planned(Expr::ScalarFunction(
            ScalarFunction::new_udf(function, args),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interval(months: i32, days: i32, microseconds: i64) -> IntervalMonthDayNano {
        IntervalMonthDayNano::new(months, days, microseconds * 1_000)
    }

    #[test]
    fn fractions_are_carried_down_as_postgresql_carries_them() {
        let times = |value, factor: f64| scaled(value, factor, |part| part * factor).unwrap();
        let hour = 3_600_000_000;
        assert_eq!(times(interval(0, 1, 0), 1.5), interval(0, 1, 12 * hour));
        assert_eq!(times(interval(1, 0, 0), 0.5), interval(0, 15, 0));
        assert_eq!(times(interval(0, 0, hour), 3.0), interval(0, 0, 3 * hour));
        assert_eq!(
            times(interval(1, 1, hour), -2.0),
            interval(-2, -2, -2 * hour)
        );
        // 1 month 1 day * 0.7: 0.7 months are 21 days, 0.7 days 16:48:00.
        assert_eq!(
            times(interval(1, 1, 0), 0.7),
            interval(0, 21, 16 * hour + 48 * 60_000_000)
        );
        let divided = scaled(interval(1, 0, 0), 4.0, |part| part / 4.0).unwrap();
        assert_eq!(divided, interval(0, 7, 12 * hour));
        let overflow = scaled(interval(i32::MAX, 0, 0), 2.0, |part| part * 2.0);
        assert!(
            matches!(&overflow, Err(DataFusionError::External(e)) if e.is::<IntervalOutOfRange>()),
            "{overflow:?}"
        );
    }
}
