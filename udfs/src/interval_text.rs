//! Interval text as PostgreSQL reads it: what it writes (`1 year 2 mons -3 days +04:05:06.5`,
//! `-1 days +02:00:00`), a time of day (`02:30`, `1 day 04:05:06`), units and their
//! abbreviations (`3 hrs`, `2w`, `1.5 years`), a bare number of seconds (`'90'`), a leading
//! `@` and a trailing `ago`. Arrow's parser reads units only (`1 day 4 hours`), so our own
//! interval text did not read back.

use datafusion::arrow::datatypes::IntervalMonthDayNano;

const MICROSECONDS_PER_SECOND: f64 = 1_000_000.0;
const MICROSECONDS_PER_DAY: f64 = 86_400.0 * MICROSECONDS_PER_SECOND;
const DAYS_PER_MONTH: f64 = 30.0;

/// What a unit adds, per one of it.
#[derive(Clone, Copy)]
enum Unit {
    /// Months; a fraction of a year-based unit is rounded to whole months, as in PostgreSQL.
    Months {
        per: f64,
        year_based: bool,
    },
    Days(f64),
    Microseconds(f64),
}

/// `text` as PostgreSQL's interval input reads it (months, days, microseconds); `None` when
/// it is not in a form read here (ISO 8601's `P1D`, SQL's `1-2`), or out of range.
///
/// ```
/// use quantatom_udfs::interval_text::postgres_interval;
/// let interval = postgres_interval("1 day 04:05:06.5").unwrap();
/// assert_eq!((interval.months, interval.days), (0, 1));
/// assert_eq!(interval.nanoseconds, 14_706_500_000_000);
/// ```
pub fn postgres_interval(text: &str) -> Option<IntervalMonthDayNano> {
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
    let (mut months, mut days, mut micros) = (0_f64, 0_f64, 0_f64);
    let mut tokens = tokens.into_iter().peekable();
    while let Some(token) = tokens.next() {
        if token.contains(':') {
            micros += time_of_day(token)?;
            continue;
        }
        let digits_end = token
            .char_indices()
            .find(|&(at, c)| !(c.is_ascii_digit() || c == '.' || (at == 0 && "+-".contains(c))))
            .map_or(token.len(), |(at, _)| at);
        let (number, glued_unit) = token.split_at(digits_end);
        let value: f64 = number.parse().ok()?;
        let unit = match glued_unit {
            "" => match tokens.peek() {
                Some(next) if unit(next).is_some() => unit(tokens.next()?)?,
                // A number alone, at the end, is seconds.
                None => Unit::Microseconds(MICROSECONDS_PER_SECOND),
                Some(_) => return None,
            },
            glued => unit(glued)?,
        };
        let (add_months, add_days, add_micros) = spread(value, unit);
        months += add_months;
        days += add_days;
        micros += add_micros;
    }
    let sign = if ago { -1.0 } else { 1.0 };
    let whole = |value: f64| -> Option<i32> {
        let value = value * sign;
        (value.is_finite() && value.abs() < 2_147_483_648.0).then_some(value as i32)
    };
    let nanoseconds = micros.round() * sign * 1_000.0;
    if !nanoseconds.is_finite() || nanoseconds.abs() >= i64::MAX as f64 {
        return None;
    }
    Some(IntervalMonthDayNano::new(
        whole(months)?,
        whole(days)?,
        nanoseconds as i64,
    ))
}

/// `[+-]H:MM[:SS[.fff]]` in microseconds, signed.
fn time_of_day(token: &str) -> Option<f64> {
    let (sign, rest) = match token.as_bytes().first()? {
        b'-' => (-1.0, &token[1..]),
        b'+' => (1.0, &token[1..]),
        _ => (1.0, token),
    };
    let mut parts = rest.split(':');
    let hours: u64 = parts.next()?.parse().ok()?;
    let minutes: u64 = parts.next()?.parse().ok()?;
    let seconds: f64 = match parts.next() {
        Some(seconds) if seconds.starts_with(|c: char| c.is_ascii_digit()) => {
            seconds.parse().ok()?
        }
        Some(_) => return None,
        None => 0.0,
    };
    if parts.next().is_some() || minutes >= 60 || seconds >= 60.0 {
        return None;
    }
    let seconds = (hours * 3_600 + minutes * 60) as f64 + seconds;
    Some(sign * seconds * MICROSECONDS_PER_SECOND)
}

/// `value` of `unit` as whole months, whole days and microseconds: fractions carried down
/// (a month is 30 days), as PostgreSQL's interval input carries them.
fn spread(value: f64, unit: Unit) -> (f64, f64, f64) {
    match unit {
        Unit::Months { per, year_based } => {
            let months = value * per;
            let whole_months = if year_based {
                months.round()
            } else {
                months.trunc()
            };
            let days = if year_based {
                0.0
            } else {
                (months - whole_months) * DAYS_PER_MONTH
            };
            let (whole_days, micros) = days_and_time(days);
            (whole_months, whole_days, micros)
        }
        Unit::Days(per) => {
            let (whole_days, micros) = days_and_time(value * per);
            (0.0, whole_days, micros)
        }
        Unit::Microseconds(per) => (0.0, 0.0, value * per),
    }
}

/// `days` as whole days and the rest in microseconds.
fn days_and_time(days: f64) -> (f64, f64) {
    let whole = days.trunc();
    (whole, (days - whole) * MICROSECONDS_PER_DAY)
}

/// The unit PostgreSQL reads `word` as, in any case.
fn unit(word: &str) -> Option<Unit> {
    let months = |per: f64, year_based| Some(Unit::Months { per, year_based });
    match word.to_ascii_lowercase().as_str() {
        "millennium" | "millennia" | "millenniums" | "mil" | "mils" => months(12_000.0, true),
        "century" | "centuries" | "cent" | "c" => months(1_200.0, true),
        "decade" | "decades" | "dec" | "decs" => months(120.0, true),
        "year" | "years" | "yr" | "yrs" | "y" => months(12.0, true),
        "month" | "months" | "mon" | "mons" => months(1.0, false),
        "week" | "weeks" | "w" => Some(Unit::Days(7.0)),
        "day" | "days" | "d" => Some(Unit::Days(1.0)),
        "hour" | "hours" | "hr" | "hrs" | "h" => Some(Unit::Microseconds(3_600e6)),
        "minute" | "minutes" | "min" | "mins" | "m" => Some(Unit::Microseconds(60e6)),
        "second" | "seconds" | "sec" | "secs" | "s" => Some(Unit::Microseconds(1e6)),
        "millisecond" | "milliseconds" | "msec" | "msecs" | "ms" => Some(Unit::Microseconds(1e3)),
        "microsecond" | "microseconds" | "usec" | "usecs" | "us" => Some(Unit::Microseconds(1.0)),
        _ => None,
    }
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
            (
                "1 day 04:05:06.5",
                (0, 1, 4 * HOUR + 5 * 60_000_000 + 6_500_000),
            ),
            (
                "1 year 2 mons -3 days +04:05:06.5",
                (14, -3, 4 * HOUR + 5 * 60_000_000 + 6_500_000),
            ),
            ("-1 days +02:00:00", (0, -1, 2 * HOUR)),
            ("-1 years -2 mons +3 days -04:00:00", (-14, 3, -4 * HOUR)),
            ("1.5 years", (18, 0, 0)),
            ("1.5 months", (1, 15, 0)),
            ("1.5 days", (0, 1, 12 * HOUR)),
            ("2w 3h", (0, 14, 3 * HOUR)),
            ("90", (0, 0, 90_000_000)),
            ("@ 1 hour ago", (0, 0, -HOUR)),
            ("1 DAY 2 Hours", (0, 1, 2 * HOUR)),
            ("100:00:00", (0, 0, 100 * HOUR)),
            ("-00:00:01.5", (0, 0, -1_500_000)),
        ] {
            assert_eq!(parts(text), Some(expected), "{text}");
        }
    }

    #[test]
    fn other_forms_are_left_to_arrow() {
        for text in [
            "",
            "P1D",
            "1-2",
            "1 fortnight",
            "1 2",
            "12:60",
            "ago",
            "1:2:3:4",
        ] {
            assert_eq!(parts(text), None, "{text}");
        }
    }
}
