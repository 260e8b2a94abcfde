//! Timestamps, times and intervals as text, written as PostgreSQL writes them, wherever one
//! becomes text: a cast (`now()::text`, `CAST(ts AS varchar)`) or a coercion (`'at ' || ts`).
//!
//! DataFusion casts them to text with Arrow's formatter, which writes `2024-01-01T12:00:00Z`,
//! `12:00:00.500` and `1 days` where PostgreSQL writes `2024-01-01 12:00:00+00`, `12:00:00.5`
//! and `1 day`. [`TemporalTextRule`], an analyzer rule run after DataFusion's type coercion (so
//! that the casts coercion adds are seen too), turns each such cast into a call of
//! `temporal_text` ([`TemporalTextFunction`]), which writes PostgreSQL's ISO style: a
//! `timestamptz` in its time zone with its offset (`+09`, `+05:30`), fractions of a
//! second to the microsecond without trailing zeros, years before 1 as `BC`, an interval's
//! years, months and days by name and its time as `HH:MM:SS`, with `+` before a positive
//! part that follows a negative one (`-1 days +02:00:00`). A timestamp difference (Arrow's
//! duration) is written as the interval PostgreSQL's difference is: days and a time. Dates are
//! left to Arrow, whose ISO text is PostgreSQL's. The other way, text cast to an interval while
//! a query runs is read as PostgreSQL reads it (`interval_in`, [`IntervalInFunction`]), so
//! interval text reads back.

use std::fmt::Write;
use std::sync::Arc;

use chrono::{Datelike, NaiveDateTime, NaiveTime, Offset, TimeZone, Timelike};
use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::datatypes::{
    DataType, DurationMicrosecondType, DurationMillisecondType, DurationNanosecondType,
    DurationSecondType, IntervalDayTimeType, IntervalMonthDayNanoType, IntervalUnit,
    IntervalYearMonthType, Time32MillisecondType, Time32SecondType, Time64MicrosecondType,
    Time64NanosecondType, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use datafusion::arrow::temporal_conversions::as_datetime;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result, exec_err};
use datafusion::logical_expr::expr::{Cast, ScalarFunction};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

use crate::evaluation::evaluate;
use crate::interval_text::{IntervalInFunction, MICROSECONDS_PER_DAY, MICROSECONDS_PER_SECOND};

/// The analyzer rule that writes timestamps, times and intervals cast to text as PostgreSQL
/// does, and reads text cast to an interval as PostgreSQL does (see the module
/// documentation).
#[derive(Debug, Default)]
pub struct TemporalTextRule;

impl AnalyzerRule for TemporalTextRule {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        let functions = TextFunctions {
            temporal_text: Arc::new(ScalarUDF::from(TemporalTextFunction::new())),
            interval_in: Arc::new(ScalarUDF::from(IntervalInFunction::new())),
        };
        plan.transform_up_with_subqueries(|node| {
            let schema = match node.inputs().as_slice() {
                [] => Arc::clone(node.schema()),
                inputs => Arc::new(merge_schema(inputs)),
            };
            let names = NamePreserver::new(&node);
            node.map_expressions(|expr| {
                let name = names.save(&expr);
                expr.transform_up(|expr| as_postgres_text(expr, &schema, &functions))?
                    .map_data(|expr| Ok(name.restore(expr)))
            })
        })
        .map(|transformed| transformed.data)
    }

    fn name(&self) -> &str {
        "temporal_text"
    }
}

/// The functions [`TemporalTextRule`] calls.
struct TextFunctions {
    temporal_text: Arc<ScalarUDF>,
    interval_in: Arc<ScalarUDF>,
}

/// `expr` as `temporal_text(...)` when it casts a timestamp, time, interval or duration (its
/// type in `schema`) to text, as `interval_in(...)` when it casts text to an interval; as it
/// is otherwise. (`TRY_CAST`, not PostgreSQL's, keeps Arrow's cast and its NULLs.)
fn as_postgres_text(
    expr: Expr,
    schema: &DFSchema,
    functions: &TextFunctions,
) -> Result<Transformed<Expr>> {
    let Expr::Cast(Cast { expr: inner, field }) = &expr else {
        return Ok(Transformed::no(expr));
    };
    let is_text = |data_type: &DataType| {
        matches!(
            data_type,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        )
    };
    let from = inner.get_type(schema)?;
    if matches!(
        field.data_type(),
        DataType::Interval(IntervalUnit::MonthDayNano)
    ) && is_text(&from)
    {
        return Ok(Transformed::yes(Expr::ScalarFunction(
            ScalarFunction::new_udf(
                Arc::clone(&functions.interval_in),
                vec![inner.as_ref().clone()],
            ),
        )));
    }
    if !is_text(field.data_type()) || !is_temporal(&from) {
        return Ok(Transformed::no(expr));
    }
    let text = Expr::ScalarFunction(ScalarFunction::new_udf(
        Arc::clone(&functions.temporal_text),
        vec![inner.as_ref().clone()],
    ));
    Ok(Transformed::yes(match field.data_type() {
        DataType::Utf8 => text,
        _ => Expr::Cast(Cast {
            expr: Box::new(text),
            field: Arc::clone(field),
        }),
    }))
}

/// Whether `data_type` is one [`TemporalTextFunction`] writes.
fn is_temporal(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Timestamp(..)
            | DataType::Time32(_)
            | DataType::Time64(_)
            | DataType::Interval(_)
            | DataType::Duration(_)
    )
}

/// `temporal_text(value)`: a timestamp, time, interval or duration as PostgreSQL writes it;
/// a `timestamptz` in its own time zone, which is the session's (DataFusion gives literals and
/// `now()` `execution.time_zone`, and a `SET TimeZone` plans queries again), as the server
/// sends one.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TemporalTextFunction {
    signature: Signature,
}

impl TemporalTextFunction {
    /// The function, as [`TemporalTextRule`] calls it.
    pub fn new() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl Default for TemporalTextFunction {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for TemporalTextFunction {
    fn name(&self) -> &str {
        "temporal_text"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        evaluate(&args.args, |arrays| match arrays {
            [values] => texts(values),
            _ => exec_err!("temporal_text takes one value"),
        })
    }
}

/// Each of `values` as PostgreSQL's text.
fn texts(values: &ArrayRef) -> Result<ArrayRef> {
    let mut texts = StringBuilder::with_capacity(values.len(), values.len() * 24);
    let mut text = String::new();
    for row in 0..values.len() {
        if values.is_null(row) {
            texts.append_null();
            continue;
        }
        text.clear();
        write_value(&mut text, values, row)?;
        texts.append_value(&text);
    }
    Ok(Arc::new(texts.finish()))
}

/// Writes the value at `row` of `values` (a timestamp, time, interval or duration, not NULL)
/// to `out` as PostgreSQL's text in its `ISO` date style.
pub fn write_value(out: &mut String, values: &ArrayRef, row: usize) -> Result<()> {
    use DataType as D;
    match values.data_type() {
        D::Timestamp(unit, zone) => {
            let Some(utc) = timestamp_at(values, row, *unit) else {
                return exec_err!("timestamp out of range");
            };
            match zone {
                None => write_timestamp(out, &utc, None),
                Some(zone) => {
                    let zone: Tz = zone.parse()?;
                    let local = zone.from_utc_datetime(&utc);
                    let offset = local.offset().fix().local_minus_utc();
                    write_timestamp(out, &local.naive_local(), Some(offset));
                }
            }
        }
        D::Time32(TimeUnit::Second) => {
            let seconds = values.as_primitive::<Time32SecondType>().value(row);
            write_time_of_day(out, i64::from(seconds) * MICROSECONDS_PER_SECOND);
        }
        D::Time32(_) => {
            let millis = values.as_primitive::<Time32MillisecondType>().value(row);
            write_time_of_day(out, i64::from(millis) * 1_000);
        }
        D::Time64(TimeUnit::Microsecond) => {
            write_time_of_day(
                out,
                values.as_primitive::<Time64MicrosecondType>().value(row),
            );
        }
        D::Time64(_) => {
            let nanos = values.as_primitive::<Time64NanosecondType>().value(row);
            write_time_of_day(out, nanos / 1_000);
        }
        D::Interval(IntervalUnit::YearMonth) => {
            let months = values.as_primitive::<IntervalYearMonthType>().value(row);
            write_interval(out, months, 0, 0);
        }
        D::Interval(IntervalUnit::DayTime) => {
            let value = values.as_primitive::<IntervalDayTimeType>().value(row);
            write_interval(out, 0, value.days, i64::from(value.milliseconds) * 1_000);
        }
        D::Interval(IntervalUnit::MonthDayNano) => {
            let value = values.as_primitive::<IntervalMonthDayNanoType>().value(row);
            write_interval(out, value.months, value.days, value.nanoseconds / 1_000);
        }
        D::Duration(unit) => {
            let micros = match unit {
                TimeUnit::Second => values
                    .as_primitive::<DurationSecondType>()
                    .value(row)
                    .saturating_mul(MICROSECONDS_PER_SECOND),
                TimeUnit::Millisecond => values
                    .as_primitive::<DurationMillisecondType>()
                    .value(row)
                    .saturating_mul(1_000),
                TimeUnit::Microsecond => {
                    values.as_primitive::<DurationMicrosecondType>().value(row)
                }
                TimeUnit::Nanosecond => {
                    values.as_primitive::<DurationNanosecondType>().value(row) / 1_000
                }
            };
            write_duration(out, micros);
        }
        other => return exec_err!("temporal_text cannot write {other}"),
    }
    Ok(())
}

/// The UTC time of the timestamp at `row` of `values`, held in `unit`, to the microsecond as
/// PostgreSQL keeps it.
fn timestamp_at(values: &ArrayRef, row: usize, unit: TimeUnit) -> Option<NaiveDateTime> {
    match unit {
        TimeUnit::Second => as_datetime::<TimestampSecondType>(
            values.as_primitive::<TimestampSecondType>().value(row),
        ),
        TimeUnit::Millisecond => as_datetime::<TimestampMillisecondType>(
            values.as_primitive::<TimestampMillisecondType>().value(row),
        ),
        TimeUnit::Microsecond => as_datetime::<TimestampMicrosecondType>(
            values.as_primitive::<TimestampMicrosecondType>().value(row),
        ),
        TimeUnit::Nanosecond => {
            let nanos = values.as_primitive::<TimestampNanosecondType>().value(row);
            as_datetime::<TimestampMicrosecondType>(nanos.div_euclid(1_000))
        }
    }
}

/// `2024-01-01 12:00:00.5`, with its UTC `offset` in seconds when it has one (`+05:30`); a
/// year before 1 as PostgreSQL's `0001-01-01 00:00:00+00 BC`.
fn write_timestamp(out: &mut String, at: &NaiveDateTime, offset: Option<i32>) {
    let year = at.year();
    let shown = if year > 0 { year } else { 1 - year };
    let _ = write!(out, "{shown:04}-{:02}-{:02} ", at.month(), at.day());
    write_clock(out, at.time());
    if let Some(offset) = offset {
        write_offset(out, offset);
    }
    if year <= 0 {
        out.push_str(" BC");
    }
}

/// `12:00:00` or `12:00:00.25`, from microseconds since midnight (`micros` is not negative).
fn write_time_of_day(out: &mut String, micros: i64) {
    let seconds = micros.div_euclid(MICROSECONDS_PER_SECOND);
    let fraction = micros.rem_euclid(MICROSECONDS_PER_SECOND);
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}",
        seconds / 3_600,
        seconds / 60 % 60,
        seconds % 60
    );
    write_fraction(out, fraction);
}

/// A time of day, to the microsecond.
fn write_clock(out: &mut String, time: NaiveTime) {
    let micros = i64::from(time.num_seconds_from_midnight()) * MICROSECONDS_PER_SECOND
        + i64::from(time.nanosecond() / 1_000);
    write_time_of_day(out, micros);
}

/// `.25` for 250,000 microseconds; nothing for none.
fn write_fraction(out: &mut String, micros: i64) {
    if micros == 0 {
        return;
    }
    let digits = format!("{micros:06}");
    out.push('.');
    out.push_str(digits.trim_end_matches('0'));
}

/// A UTC offset as PostgreSQL writes it: `+09`, `+05:30`, `-00:00:36`.
fn write_offset(out: &mut String, seconds: i32) {
    let sign = if seconds < 0 { '-' } else { '+' };
    let seconds = seconds.unsigned_abs();
    let _ = write!(out, "{sign}{:02}", seconds / 3_600);
    if seconds % 3_600 != 0 {
        let _ = write!(out, ":{:02}", seconds / 60 % 60);
    }
    if seconds % 60 != 0 {
        let _ = write!(out, ":{:02}", seconds % 60);
    }
}

/// A timestamp difference of `micros` microseconds, as PostgreSQL writes the interval its
/// difference is: whole days, then the time (`2 days 01:30:00`).
fn write_duration(out: &mut String, micros: i64) {
    let days = micros / MICROSECONDS_PER_DAY;
    // Beyond 5.8 million years of days; the rest is time then.
    let days = i32::try_from(days).unwrap_or(0);
    write_interval(
        out,
        0,
        days,
        micros - i64::from(days) * MICROSECONDS_PER_DAY,
    );
}

/// An interval in PostgreSQL's default style: `1 year 2 mons -3 days +04:05:06.5`, and
/// `00:00:00` for none.
fn write_interval(out: &mut String, months: i32, days: i32, micros: i64) {
    // Each part is signed; after a negative one, a positive one is written with `+`.
    let mut nothing_yet = true;
    let mut after_negative = false;
    for (value, unit) in [(months / 12, "year"), (months % 12, "mon"), (days, "day")] {
        if value == 0 {
            continue;
        }
        let space = if nothing_yet { "" } else { " " };
        let plus = if after_negative && value > 0 { "+" } else { "" };
        let plural = if value == 1 { "" } else { "s" };
        let _ = write!(out, "{space}{plus}{value} {unit}{plural}");
        after_negative = value < 0;
        nothing_yet = false;
    }
    if nothing_yet || micros != 0 {
        if !nothing_yet {
            out.push(' ');
        }
        if micros < 0 {
            out.push('-');
        } else if after_negative {
            out.push('+');
        }
        // Hours past 24 as they are (`30:00:00`).
        write_time_of_day(out, micros.saturating_abs());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The UTC time `utc` as text in `zone`.
    fn local(zone: &str, utc: &str) -> String {
        let zone: Tz = zone.parse().unwrap();
        let utc = NaiveDateTime::parse_from_str(utc, "%Y-%m-%d %H:%M:%S%.f").unwrap();
        let at = zone.from_utc_datetime(&utc);
        let mut out = String::new();
        let offset = at.offset().fix().local_minus_utc();
        write_timestamp(&mut out, &at.naive_local(), Some(offset));
        out
    }

    fn interval(months: i32, days: i32, micros: i64) -> String {
        let mut out = String::new();
        write_interval(&mut out, months, days, micros);
        out
    }

    #[test]
    fn intervals_are_written_as_postgresql_writes_them() {
        let hour = 3_600 * MICROSECONDS_PER_SECOND;
        assert_eq!(interval(0, 0, 0), "00:00:00");
        assert_eq!(interval(0, 1, 0), "1 day");
        assert_eq!(
            interval(14, 3, 4 * hour + 5 * 60_000_000 + 6_500_000),
            "1 year 2 mons 3 days 04:05:06.5"
        );
        assert_eq!(interval(0, -1, 2 * hour), "-1 days +02:00:00");
        assert_eq!(
            interval(-13, 2, -hour),
            "-1 years -1 mons +2 days -01:00:00"
        );
        assert_eq!(interval(1, 0, 0), "1 mon");
        assert_eq!(interval(0, 0, 30 * hour + 1), "30:00:00.000001");
        assert_eq!(interval(0, 0, -1_500_000), "-00:00:01.5");
        let mut out = String::new();
        write_duration(&mut out, -(49 * hour + 30 * 60_000_000));
        assert_eq!(out, "-2 days -01:30:00");
    }

    #[test]
    fn timestamps_and_offsets_are_written_as_postgresql_writes_them() {
        assert_eq!(
            local("Asia/Kolkata", "2024-01-01 12:00:00.25"),
            "2024-01-01 17:30:00.25+05:30"
        );
        assert_eq!(
            local("+00:00", "2024-01-01 12:00:00"),
            "2024-01-01 12:00:00+00"
        );
        let mut out = String::new();
        let bc =
            NaiveDateTime::parse_from_str("-0044-03-15 00:00:00", "%Y-%m-%d %H:%M:%S").unwrap();
        write_timestamp(&mut out, &bc, Some(-12_652));
        assert_eq!(out, "0045-03-15 00:00:00-03:30:52 BC");
        out.clear();
        write_offset(&mut out, -36);
        assert_eq!(out, "-00:00:36");
    }
}
