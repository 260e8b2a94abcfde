//! Interval text as PostgreSQL reads it: what it writes (`1 year 2 mons -3 days +04:05:06.5`,
//! `-1 days +02:00:00`), a time of day (`02:30`, `1 day 04:05:06`), units and their
//! abbreviations (`3 hrs`, `2w`, `1.5 years`), a bare number of seconds (`'90'`), a leading
//! `@` and a trailing `ago`. Arrow's parser reads units only (`1 day 4 hours`), so our own
//! interval text did not read back.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, IntervalMonthDayNanoBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, IntervalMonthDayNano, IntervalUnit};
use datafusion::common::{DataFusionError, Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::evaluation::evaluate;

/// Microseconds in a second, and in a day (of an interval: 24 hours).
pub(crate) const MICROSECONDS_PER_SECOND: i64 = 1_000_000;
pub(crate) const MICROSECONDS_PER_DAY: i64 = 86_400 * MICROSECONDS_PER_SECOND;

/// The fields of an interval a part of its text sets; each may be set once, as in PostgreSQL.
#[derive(Clone, Copy, PartialEq)]
enum Field {
    Millennium,
    Century,
    Decade,
    Year,
    Month,
    Week,
    Day,
    Hour,
    Minute,
    Second,
    Millisecond,
    Microsecond,
}

/// An interval being read: whole months and days, and microseconds.
#[derive(Default)]
struct Parts {
    months: i64,
    days: i64,
    micros: i64,
    seen: Vec<Field>,
}

/// `text` as PostgreSQL's interval input reads it (months, days, microseconds); `None` when
/// it is not in a form read here (ISO 8601's `P1D`, SQL's `1-2`), repeats a field
/// (`1 day 2 days`), or is out of range.
///
/// ```
/// use quantatom_udfs::interval_text::postgres_interval;
/// let interval = postgres_interval("1 day 04:05:06.5").unwrap();
/// assert_eq!((interval.months, interval.days), (0, 1));
/// assert_eq!(interval.nanoseconds, 14_706_500_000_000);
/// ```
pub fn postgres_interval(text: &str) -> Option<IntervalMonthDayNano> {
    let text = text.replace(',', " ");
    let mut tokens: Vec<&str> = text.split_whitespace().collect();
    if tokens.first() == Some(&"@") {
        tokens.remove(0);
    }
    let ago = tokens
        .last()
        .is_some_and(|last| last.eq_ignore_ascii_case("ago"));
    if ago {
        tokens.pop();
    }
    if tokens.is_empty() {
        return None;
    }
    let mut parts = Parts::default();
    let mut tokens = tokens.into_iter().peekable();
    while let Some(token) = tokens.next() {
        if token.contains(':') {
            parts.time_of_day(token)?;
            continue;
        }
        let digits_end = token
            .char_indices()
            .find(|&(at, c)| !(c.is_ascii_digit() || c == '.' || (at == 0 && "+-".contains(c))))
            .map_or(token.len(), |(at, _)| at);
        let (number, glued_unit) = token.split_at(digits_end);
        let number = Number::read(number)?;
        let field = match glued_unit {
            "" => match tokens.peek() {
                Some(next) if field(next).is_some() => field(tokens.next()?)?,
                // A number before a time of day is days (`1 12:00:00`).
                Some(next) if next.contains(':') && number.fraction == 0.0 => Field::Day,
                // A number alone, at the end, is seconds.
                None => Field::Second,
                Some(_) => return None,
            },
            glued => field(glued)?,
        };
        parts.add(number, field)?;
    }
    let sign = if ago { -1 } else { 1 };
    let nanoseconds = parts.micros.checked_mul(sign * 1_000)?;
    Some(IntervalMonthDayNano::new(
        i32::try_from(parts.months * sign).ok()?,
        i32::try_from(parts.days * sign).ok()?,
        nanoseconds,
    ))
}

/// Text that is not an interval PostgreSQL's input reads (SQLSTATE 22007, as PostgreSQL's
/// `invalid input syntax for type interval`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidIntervalText(pub String);

impl InvalidIntervalText {
    /// The PostgreSQL SQLSTATE, `22007`.
    pub fn sqlstate(&self) -> &'static str {
        "22007"
    }
}

impl fmt::Display for InvalidIntervalText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid input syntax for type interval: \"{}\"", self.0)
    }
}

impl std::error::Error for InvalidIntervalText {}

/// `interval_in(text)`: text computed while a query runs (a column, `x::text`) read as an
/// interval by [`postgres_interval`], as PostgreSQL's cast reads it; [`InvalidIntervalText`]
/// when it is not one. `TemporalTextRule` makes a cast of text to an interval call it.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct IntervalInFunction {
    signature: Signature,
}

impl IntervalInFunction {
    /// The function, as `TemporalTextRule` calls it.
    pub fn new() -> Self {
        Self {
            signature: Signature::string(1, Volatility::Immutable),
        }
    }
}

impl Default for IntervalInFunction {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for IntervalInFunction {
    fn name(&self) -> &str {
        "interval_in"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Interval(IntervalUnit::MonthDayNano))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        evaluate(&args.args, |arrays| match arrays {
            [texts] => intervals_of(texts),
            _ => exec_err!("interval_in takes one text"),
        })
    }
}

/// Each of `texts` read as an interval ([`postgres_interval`]); [`InvalidIntervalText`] for
/// the first that is not one.
fn intervals_of(texts: &ArrayRef) -> Result<ArrayRef> {
    let texts = cast(texts, &DataType::Utf8)?;
    let texts = texts.as_string::<i32>();
    let mut intervals = IntervalMonthDayNanoBuilder::with_capacity(texts.len());
    for row in 0..texts.len() {
        if texts.is_null(row) {
            intervals.append_null();
            continue;
        }
        let text = texts.value(row);
        match postgres_interval(text) {
            Some(interval) => intervals.append_value(interval),
            None => {
                return Err(DataFusionError::External(Box::new(InvalidIntervalText(
                    text.to_owned(),
                ))));
            }
        }
    }
    Ok(Arc::new(intervals.finish()))
}

/// A number as PostgreSQL's interval input splits it: its whole part, and its fraction (of
/// the same sign), read as a double as PostgreSQL reads it.
#[derive(Clone, Copy)]
struct Number {
    whole: i64,
    fraction: f64,
}

impl Number {
    fn read(text: &str) -> Option<Self> {
        let (negative, digits) = match text.as_bytes().first()? {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        if whole.is_empty() && fraction.is_empty() {
            return None;
        }
        let whole: i64 = if whole.is_empty() {
            0
        } else {
            whole.parse().ok()?
        };
        let fraction: f64 = if fraction.is_empty() {
            0.0
        } else if fraction.bytes().all(|b| b.is_ascii_digit()) {
            format!("0.{fraction}").parse().ok()?
        } else {
            return None;
        };
        let sign = if negative { -1 } else { 1 };
        Some(Self {
            whole: whole * sign,
            fraction: fraction * sign as f64,
        })
    }
}

impl Parts {
    /// Marks `field` set; `None` when it was already.
    fn set(&mut self, field: Field) -> Option<()> {
        if self.seen.contains(&field) {
            return None;
        }
        self.seen.push(field);
        Some(())
    }

    /// Adds `number` of `field`, its fraction carried down as PostgreSQL carries it: to whole
    /// months for years and beyond (rounded half to even), to days and then microseconds for
    /// months (30 days) and weeks, to microseconds for days and finer units
    /// ([`fraction_in_micros`]).
    fn add(&mut self, number: Number, field: Field) -> Option<()> {
        self.set(field)?;
        let months_per = match field {
            Field::Millennium => Some(12_000),
            Field::Century => Some(1_200),
            Field::Decade => Some(120),
            Field::Year => Some(12),
            _ => None,
        };
        if let Some(per) = months_per {
            let months = number.whole.checked_mul(per)?;
            let fraction = (number.fraction * per as f64).round_ties_even() as i64;
            self.months = self.months.checked_add(months)?.checked_add(fraction)?;
            return Some(());
        }
        let (days_per, micros_per) = match field {
            Field::Month => {
                self.months = self.months.checked_add(number.whole)?;
                return self.add_days(number.fraction * 30.0);
            }
            Field::Week => (7, 0),
            Field::Day => (1, 0),
            Field::Hour => (0, 3_600 * MICROSECONDS_PER_SECOND),
            Field::Minute => (0, 60 * MICROSECONDS_PER_SECOND),
            Field::Second => (0, MICROSECONDS_PER_SECOND),
            Field::Millisecond => (0, 1_000),
            _ => (0, 1),
        };
        if days_per > 0 {
            self.days = self.days.checked_add(number.whole.checked_mul(days_per)?)?;
            return self.add_days(number.fraction * days_per as f64);
        }
        let micros = number.whole.checked_mul(micros_per)?;
        let fraction = fraction_in_micros(number.fraction, micros_per);
        self.micros = self.micros.checked_add(micros)?.checked_add(fraction)?;
        Some(())
    }

    /// Adds a fraction of days: its whole days, and the rest in microseconds.
    fn add_days(&mut self, days: f64) -> Option<()> {
        let whole = days.trunc();
        self.days = self.days.checked_add(whole as i64)?;
        let micros = fraction_in_micros(days - whole, MICROSECONDS_PER_DAY);
        self.micros = self.micros.checked_add(micros)?;
        Some(())
    }

    /// Adds `[+-]H:MM[:SS[.fff]]`, or `MM:SS.fff` (a fraction after two parts marks seconds).
    fn time_of_day(&mut self, token: &str) -> Option<()> {
        let (sign, rest) = match token.as_bytes().first()? {
            b'-' => (-1, &token[1..]),
            b'+' => (1, &token[1..]),
            _ => (1, token),
        };
        let fields: Vec<&str> = rest.split(':').collect();
        let (hours, minutes, seconds) = match fields.as_slice() {
            [minutes, seconds] if seconds.contains('.') => ("0", *minutes, *seconds),
            [hours, minutes] => (*hours, *minutes, "0"),
            [hours, minutes, seconds] => (*hours, *minutes, *seconds),
            _ => return None,
        };
        let unsigned = |text: &str| text.bytes().all(|b| b.is_ascii_digit()) && !text.is_empty();
        if !unsigned(hours) || !unsigned(minutes) {
            return None;
        }
        let hours: i64 = hours.parse().ok()?;
        let minutes: i64 = minutes.parse().ok()?;
        let seconds = Number::read(seconds).filter(|_| seconds.as_bytes()[0].is_ascii_digit())?;
        if minutes > 59 || seconds.whole > 60 {
            return None;
        }
        for field in [Field::Hour, Field::Minute, Field::Second] {
            self.set(field)?;
        }
        let whole_seconds = hours
            .checked_mul(3_600)?
            .checked_add(minutes * 60 + seconds.whole)?;
        let micros = whole_seconds
            .checked_mul(MICROSECONDS_PER_SECOND)?
            .checked_add(
                (seconds.fraction * MICROSECONDS_PER_SECOND as f64).round_ties_even() as i64,
            )?;
        self.micros = self.micros.checked_add(micros * sign)?;
        Some(())
    }
}

/// A fraction of a unit of `scale` microseconds, in microseconds as PostgreSQL's
/// `AdjustFractMicroseconds` counts them: the whole ones, then the rest rounded half to even
/// (so half a microsecond is none: `1.5 microseconds` is 1).
fn fraction_in_micros(fraction: f64, scale: i64) -> i64 {
    let scaled = fraction * scale as f64;
    let whole = scaled.trunc();
    whole as i64 + (scaled - whole).round_ties_even() as i64
}

/// The field PostgreSQL reads `word` as, in any case.
fn field(word: &str) -> Option<Field> {
    Some(match word.to_ascii_lowercase().as_str() {
        "millennium" | "millennia" | "millenniums" | "mil" | "mils" => Field::Millennium,
        "century" | "centuries" | "cent" | "c" => Field::Century,
        "decade" | "decades" | "dec" | "decs" => Field::Decade,
        "year" | "years" | "yr" | "yrs" | "y" => Field::Year,
        "month" | "months" | "mon" | "mons" => Field::Month,
        "week" | "weeks" | "w" => Field::Week,
        "day" | "days" | "d" => Field::Day,
        "hour" | "hours" | "hr" | "hrs" | "h" => Field::Hour,
        "minute" | "minutes" | "min" | "mins" | "m" => Field::Minute,
        "second" | "seconds" | "sec" | "secs" | "s" => Field::Second,
        "millisecond" | "milliseconds" | "msec" | "msecs" | "ms" => Field::Millisecond,
        "microsecond" | "microseconds" | "usec" | "usecs" | "us" => Field::Microsecond,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::postgres_interval;

    fn parts(text: &str) -> Option<(i32, i32, i64)> {
        postgres_interval(text).map(|i| (i.months, i.days, i.nanoseconds / 1_000))
    }

    #[test]
    fn postgresql_interval_text_is_read() {
        const HOUR: i64 = 3_600_000_000;
        for (text, expected) in [
            ("1 day", (0, 1, 0)),
            ("02:30:00", (0, 0, 2 * HOUR + 30 * 60_000_000)),
            ("02:30", (0, 0, 2 * HOUR + 30 * 60_000_000)),
            ("1:30.5", (0, 0, 90_500_000)),
            (
                "1 day 04:05:06.5",
                (0, 1, 4 * HOUR + 5 * 60_000_000 + 6_500_000),
            ),
            ("1 12:00:00", (0, 1, 12 * HOUR)),
            (
                "1 year 2 mons -3 days +04:05:06.5",
                (14, -3, 4 * HOUR + 5 * 60_000_000 + 6_500_000),
            ),
            ("-1 days +02:00:00", (0, -1, 2 * HOUR)),
            ("-1 years -2 mons +3 days -04:00:00", (-14, 3, -4 * HOUR)),
            ("1.5 years", (18, 0, 0)),
            ("0.375 years", (4, 0, 0)),
            ("-0.375 years", (-4, 0, 0)),
            ("1.5 months", (1, 15, 0)),
            ("1.5 days", (0, 1, 12 * HOUR)),
            ("2w 3h", (0, 14, 3 * HOUR)),
            ("90", (0, 0, 90_000_000)),
            ("@ 1 hour ago", (0, 0, -HOUR)),
            ("@ 1 day, 2 hours", (0, 1, 2 * HOUR)),
            ("1 DAY 2 Hours", (0, 1, 2 * HOUR)),
            ("100:00:00", (0, 0, 100 * HOUR)),
            ("-00:00:01.5", (0, 0, -1_500_000)),
            ("00:00:60", (0, 0, 60_000_000)),
            ("1.5 microseconds", (0, 0, 1)),
            ("2.5 microseconds", (0, 0, 2)),
            ("1.9999995 seconds", (0, 0, 1_999_999)),
            (
                "1 day 1:2:3.1234565",
                (0, 1, HOUR + 2 * 60_000_000 + 3_123_456),
            ),
            (
                "9007199254740993 microseconds",
                (0, 0, 9_007_199_254_740_993),
            ),
        ] {
            assert_eq!(parts(text), Some(expected), "{text}");
        }
    }

    #[test]
    fn other_forms_repeated_fields_and_overflows_are_not_read() {
        for text in [
            "",
            "P1D",
            "1-2",
            "1 fortnight",
            "1 2",
            "12:60",
            "ago",
            "1:2:3:4",
            "1 day 2 days",
            "1 hour 02:00",
            "02:00 03:00",
            "1 millisecond 1 msec",
            "0:0:1e1",
            "9999999999999999:00:00",
            "9999999999999999999 days",
            "3000000000 days",
        ] {
            assert_eq!(parts(text), None, "{text}");
        }
    }
}
