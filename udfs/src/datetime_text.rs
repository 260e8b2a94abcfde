//! Timestamps and dates written as PostgreSQL reads them but Arrow's parser does not: a time
//! without seconds (`'2024-01-31 10:00'`, also before a zone: `'2024-01-31T10:00+01'`), a
//! one-digit hour, month or day (`'2024-1-5 9:30'`), blanks around the text.
//!
//! DataFusion casts text to a timestamp or date with Arrow's parser, which needs
//! `YYYY-MM-DD HH:MM:SS`. [`DatetimeTextRule`] writes those spellings out in full in every
//! text literal cast to a timestamp or date, written or implied (`ts > '2024-01-31 10:00'`
//! compares with a cast), and leaves any other text as it is, so what Arrow reads, and how, is
//! unchanged. A text literal cast to an interval is read as PostgreSQL reads it
//! ([`postgres_interval`]: `'1 day 04:05:06'::interval`), where PostgreSQL's form differs
//! from Arrow's. (Text computed at run time, a column or a parameter, is Arrow's to read.)

use std::borrow::Cow;

use datafusion::arrow::datatypes::{DataType, IntervalUnit};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::expr::{Cast, TryCast};
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::optimizer::AnalyzerRule;

use crate::interval_text::postgres_interval;
use crate::plan_rewrite::rewrite_expressions;

/// `text` with a date's one-digit month or day, a one-digit hour and missing seconds written
/// out (`2024-1-5 9:30+01` is `2024-01-05 09:30:00+01`) and the blanks around it dropped;
/// borrowed as it is when there is nothing to write out or it does not start with a date.
///
/// ```
/// use quantatom_udfs::datetime_text::full_datetime_text;
/// assert_eq!(full_datetime_text(" 2024-1-5T9:30+01"), "2024-01-05T09:30:00+01");
/// assert_eq!(full_datetime_text("2024-01-05 09:30:15.5"), "2024-01-05 09:30:15.5");
/// assert_eq!(full_datetime_text("today"), "today");
/// ```
pub fn full_datetime_text(text: &str) -> Cow<'_, str> {
    let trimmed = text.trim();
    let (date, time) = match trimmed.find([' ', 'T']) {
        Some(at) => (
            &trimmed[..at],
            Some((&trimmed[at..=at], &trimmed[at + 1..])),
        ),
        None => (trimmed, None),
    };
    let Some(date) = full_date(date) else {
        return Cow::Borrowed(text);
    };
    let full = match time {
        None => date,
        Some((separator, time)) => match full_time(time) {
            Some(time) => format!("{date}{separator}{time}"),
            None => return Cow::Borrowed(text),
        },
    };
    match full == text {
        true => Cow::Borrowed(text),
        false => Cow::Owned(full),
    }
}

/// `YYYY-M-D` as `YYYY-MM-DD`; `None` when `date` is not a date so written.
fn full_date(date: &str) -> Option<String> {
    let mut parts = date.split('-');
    let (year, month, day) = (parts.next()?, parts.next()?, parts.next()?);
    let digits = |part: &str, widths: std::ops::RangeInclusive<usize>| {
        widths.contains(&part.len()) && part.bytes().all(|b| b.is_ascii_digit())
    };
    (parts.next().is_none() && digits(year, 4..=4) && digits(month, 1..=2) && digits(day, 1..=2))
        .then(|| format!("{year}-{month:0>2}-{day:0>2}"))
}

/// `H:MM[:SS...][zone]` as `HH:MM:SS...[zone]`; `None` when `time` does not start so.
fn full_time(time: &str) -> Option<String> {
    let hour_digits = time.bytes().take_while(u8::is_ascii_digit).count();
    let (hour, rest) = time.split_at(hour_digits);
    let minutes = rest.strip_prefix(':')?;
    let two_digits = minutes.get(..2)?;
    if !(1..=2).contains(&hour_digits) || !two_digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let after = &minutes[2..];
    let seconds = if after.starts_with(':') { "" } else { ":00" };
    Some(format!("{hour:0>2}:{two_digits}{seconds}{after}"))
}

/// The analyzer rule that writes out the text of every literal cast to a timestamp or a date
/// ([`full_datetime_text`]).
#[derive(Debug, Default)]
pub struct DatetimeTextRule;

impl AnalyzerRule for DatetimeTextRule {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        rewrite_expressions(plan, |expr| match expr {
            Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field })
                if is_interval(field.data_type())
                    && let Some(interval) = interval_literal(&expr) =>
            {
                Ok(Transformed::yes(interval))
            }
            Expr::Cast(Cast { expr, field }) if is_datetime(field.data_type()) => {
                Ok(written_out(*expr).map_data(|expr| {
                    Ok(Expr::Cast(Cast {
                        expr: Box::new(expr),
                        field,
                    }))
                })?)
            }
            Expr::TryCast(TryCast { expr, field }) if is_datetime(field.data_type()) => {
                Ok(written_out(*expr).map_data(|expr| {
                    Ok(Expr::TryCast(TryCast {
                        expr: Box::new(expr),
                        field,
                    }))
                })?)
            }
            other => Ok(Transformed::no(other)),
        })
    }

    fn name(&self) -> &str {
        "datetime_text"
    }
}

/// The interval `expr` is, when it is a text literal PostgreSQL's interval input reads
/// ([`postgres_interval`]).
fn interval_literal(expr: &Expr) -> Option<Expr> {
    let Expr::Literal(value, _) = expr else {
        return None;
    };
    let (ScalarValue::Utf8(Some(text))
    | ScalarValue::Utf8View(Some(text))
    | ScalarValue::LargeUtf8(Some(text))) = value
    else {
        return None;
    };
    let interval = postgres_interval(text)?;
    Some(Expr::Literal(
        ScalarValue::IntervalMonthDayNano(Some(interval)),
        None,
    ))
}

fn is_interval(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Interval(IntervalUnit::MonthDayNano))
}

/// `expr` with its text written out when it is a text literal that needs it.
fn written_out(expr: Expr) -> Transformed<Expr> {
    let Expr::Literal(value, metadata) = expr else {
        return Transformed::no(expr);
    };
    let full = |text: &Option<String>| match text.as_deref().map(full_datetime_text) {
        Some(Cow::Owned(full)) => Some(Some(full)),
        _ => None,
    };
    let rewritten = match &value {
        ScalarValue::Utf8(text) => full(text).map(ScalarValue::Utf8),
        ScalarValue::Utf8View(text) => full(text).map(ScalarValue::Utf8View),
        ScalarValue::LargeUtf8(text) => full(text).map(ScalarValue::LargeUtf8),
        _ => None,
    };
    match rewritten {
        Some(value) => Transformed::yes(Expr::Literal(value, metadata)),
        None => Transformed::no(Expr::Literal(value, metadata)),
    }
}

fn is_datetime(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64
    )
}

#[cfg(test)]
mod tests {
    use super::full_datetime_text;

    #[test]
    fn postgresql_spellings_are_written_out_for_arrow() {
        for (written, full) in [
            ("2024-01-31 10:00", "2024-01-31 10:00:00"),
            ("2024-01-31T10:00", "2024-01-31T10:00:00"),
            ("2024-01-31 10:00+01", "2024-01-31 10:00:00+01"),
            ("2024-01-31 10:00 UTC", "2024-01-31 10:00:00 UTC"),
            ("2024-1-5 9:05:07.25", "2024-01-05 09:05:07.25"),
            ("  2024-1-5  ", "2024-01-05"),
        ] {
            assert_eq!(full_datetime_text(written), full, "{written}");
        }
    }

    #[test]
    fn other_texts_are_left_for_arrow_to_judge() {
        for text in [
            "2024-01-31 10:00:00",
            "2024-01-31T10:00:00Z",
            "2024-01-31",
            "today",
            "24-01-31 10:00",
            "2024-01-31 10",
            "2024-01-31 100:00",
            "1706695200",
        ] {
            assert_eq!(full_datetime_text(text), text, "{text}");
        }
    }
}
