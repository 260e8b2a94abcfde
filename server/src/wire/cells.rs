//! The cells of a result batch into rows being encoded (DataRows, COPY rows), each column's
//! way chosen once per batch instead of once per value: arrow-pg's encoding, except for
//! strings, whose values go to the row as they are (arrow-pg looks the column's type and
//! metadata up again for every value), and decimals and floats sent as text, which are
//! written here (floats as PostgreSQL writes them: [`FloatText`]).
//! arrow-pg converts each decimal to a `rust_decimal` and formats it through `Display` (a
//! sixth of the server's time sending a million-row cube), and fails on values beyond
//! `rust_decimal`'s 96 bits that a `numeric(38, s)` column holds.

use bytes::BytesMut;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Decimal128Array, Float32Array, Float64Array, LargeStringArray,
    RecordBatch, StringArray, StringArrayType, StringViewArray,
};
use datafusion::arrow::datatypes::{
    DataType, Decimal128Type, FieldRef, Float32Type, Float64Type, IntervalUnit,
};
use datafusion_postgres::arrow_pg::datatypes::is_pg_char_field;
use datafusion_postgres::arrow_pg::encoder::{Encoder, encode_value};
use pgwire::api::Type;
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::error::PgWireResult;
use quantatom_udfs::write_value;

use super::errors::api_error;
use super::float_text::FloatText;

/// How the values of one column of a batch are encoded.
pub(crate) enum ColumnCells {
    /// Decimals sent as text, with their scale: written here.
    DecimalText(Decimal128Array, usize),
    /// Doubles sent as text: written here as PostgreSQL writes them ([`FloatText`]).
    DoubleText(Float64Array),
    /// Reals sent as text, as [`ColumnCells::DoubleText`].
    RealText(Float32Array),
    /// Intervals and timestamp differences sent as text in the `postgres` interval style, and
    /// timestamps with a time zone sent as text in the `ISO` date style: written as PostgreSQL
    /// writes them (udfs' [`write_value`]), where arrow-pg leaves out the `+` of
    /// `-1 days +02:00:00`, writes a difference as `49:30:00` (`2 days 01:30:00`) and drops
    /// the minutes of an offset (`17:30:00+05` for `17:30:00+05:30`, which a client reads as
    /// another instant).
    TemporalText(ArrayRef),
    /// Strings (not PostgreSQL `"char"` columns): each value as it is.
    Utf8(StringArray),
    /// Large strings, as [`ColumnCells::Utf8`].
    LargeUtf8(LargeStringArray),
    /// String views, as [`ColumnCells::Utf8`].
    Utf8View(StringViewArray),
    /// Anything else: arrow-pg's encoding of the column described by the field.
    Other(ArrayRef, FieldRef),
}

impl ColumnCells {
    /// The way to encode `array` (described by `arrow_field`) as the column `pg_field`.
    pub(crate) fn of(array: &ArrayRef, arrow_field: &FieldRef, pg_field: &FieldInfo) -> Self {
        let other = || Self::Other(ArrayRef::clone(array), FieldRef::clone(arrow_field));
        match array.data_type() {
            DataType::Decimal128(_, scale) if pg_field.format() == FieldFormat::Text => {
                match usize::try_from(*scale) {
                    Ok(scale) => {
                        Self::DecimalText(array.as_primitive::<Decimal128Type>().clone(), scale)
                    }
                    Err(_) => other(),
                }
            }
            DataType::Float64 if pg_field.format() == FieldFormat::Text => {
                Self::DoubleText(array.as_primitive::<Float64Type>().clone())
            }
            DataType::Float32 if pg_field.format() == FieldFormat::Text => {
                Self::RealText(array.as_primitive::<Float32Type>().clone())
            }
            DataType::Interval(IntervalUnit::MonthDayNano) | DataType::Duration(_)
                if pg_field.format() == FieldFormat::Text
                    && pg_field
                        .format_options()
                        .interval_style
                        .eq_ignore_ascii_case("postgres") =>
            {
                Self::TemporalText(ArrayRef::clone(array))
            }
            DataType::Timestamp(_, Some(_))
                if pg_field.format() == FieldFormat::Text
                    && pg_field.format_options().date_style.starts_with("ISO") =>
            {
                Self::TemporalText(ArrayRef::clone(array))
            }
            _ if is_pg_char_field(arrow_field) => other(),
            DataType::Utf8 => Self::Utf8(array.as_string::<i32>().clone()),
            DataType::LargeUtf8 => Self::LargeUtf8(array.as_string::<i64>().clone()),
            DataType::Utf8View => Self::Utf8View(array.as_string_view().clone()),
            _ => other(),
        }
    }

    /// The ways to encode each column of `batch` as the columns `pg_fields`.
    pub(crate) fn of_batch(batch: &RecordBatch, pg_fields: &[FieldInfo]) -> Vec<Self> {
        let schema = batch.schema_ref();
        batch
            .columns()
            .iter()
            .zip(schema.fields())
            .zip(pg_fields)
            .map(|((array, arrow_field), pg_field)| Self::of(array, arrow_field, pg_field))
            .collect()
    }

    /// Encodes the value at `row` as the column `pg_field`.
    pub(crate) fn encode<E: Encoder>(
        &self,
        encoder: &mut E,
        row: usize,
        pg_field: &FieldInfo,
    ) -> PgWireResult<()> {
        let extra_float_digits = || pg_field.format_options().extra_float_digits;
        match self {
            Self::DecimalText(decimals, scale) => {
                if decimals.is_null(row) {
                    return encoder.encode_field(&None::<&str>, pg_field);
                }
                let mut text = DecimalText::default();
                encoder.encode_field(&Some(text.format(decimals.value(row), *scale)), pg_field)
            }
            Self::DoubleText(values) => {
                let text = (!values.is_null(row))
                    .then(|| FloatText::double(values.value(row), extra_float_digits()));
                encoder.encode_field(&text.as_ref().map(FloatText::as_str), pg_field)
            }
            Self::RealText(values) => {
                let text = (!values.is_null(row))
                    .then(|| FloatText::real(values.value(row), extra_float_digits()));
                encoder.encode_field(&text.as_ref().map(FloatText::as_str), pg_field)
            }
            Self::TemporalText(values) => {
                if values.is_null(row) {
                    return encoder.encode_field(&None::<&str>, pg_field);
                }
                let mut text = String::with_capacity(32);
                write_value(&mut text, values, row).map_err(api_error)?;
                encoder.encode_field(&Some(text.as_str()), pg_field)
            }
            Self::Utf8(strings) => encoder.encode_field(&text_at(strings, row), pg_field),
            Self::LargeUtf8(strings) => encoder.encode_field(&text_at(strings, row), pg_field),
            Self::Utf8View(strings) => encoder.encode_field(&text_at(strings, row), pg_field),
            // arrow-pg writes a NULL interval as `00:00:00`: a NULL of any type is NULL here.
            Self::Other(array, _) if array.is_null(row) => {
                encoder.encode_field(&None::<&str>, pg_field)
            }
            Self::Other(array, arrow_field) => {
                encode_value(encoder, array, row, arrow_field, pg_field)
            }
        }
    }
}

/// The string at `row` of `strings`, `None` when it is NULL.
fn text_at<'a>(strings: impl StringArrayType<'a>, row: usize) -> Option<&'a str> {
    (!strings.is_null(row)).then(|| strings.value(row))
}

/// Removes the trailing zeros of the fractional seconds of a `ty` value (a time, a timestamp or
/// an interval) written as text at `start..` of `out`, and the point when no digit is left, as
/// PostgreSQL writes them (`12:00:00`, `12:00:00.5`) where pgwire writes six digits
/// (`12:00:00.000000`).
pub(crate) fn trim_fractional_zeros(out: &mut BytesMut, start: usize, ty: &Type) {
    if !matches!(
        *ty,
        Type::TIMESTAMP | Type::TIMESTAMPTZ | Type::TIME | Type::TIMETZ | Type::INTERVAL
    ) {
        return;
    }
    // The fraction follows the seconds: `:SS.ffffff`.
    let seconds = out[start..].windows(10).position(|at| {
        at[0] == b':'
            && at[1..3].iter().all(u8::is_ascii_digit)
            && at[3] == b'.'
            && at[4..].iter().all(u8::is_ascii_digit)
    });
    let Some(seconds) = seconds else {
        return;
    };
    let point = start + seconds + 3;
    let digits_end = point + 7;
    let kept = out[point + 1..digits_end]
        .iter()
        .rposition(|&digit| digit != b'0')
        .map_or(0, |last| last + 2);
    let cut_from = point + kept;
    let tail = out.len() - digits_end;
    out.copy_within(digits_end.., cut_from);
    out.truncate(cut_from + tail);
}

/// Room for the longest decimal text: a sign, 39 digits, and a point with up to 38 zeros
/// before them (the scale of a 128-bit decimal is at most 38).
const DECIMAL_TEXT_BYTES: usize = 1 + 2 + 38 + 39;

/// A buffer on the stack that a decimal's text is written into.
struct DecimalText {
    bytes: [u8; DECIMAL_TEXT_BYTES],
}

impl Default for DecimalText {
    fn default() -> Self {
        Self {
            bytes: [0; DECIMAL_TEXT_BYTES],
        }
    }
}

impl DecimalText {
    /// PostgreSQL's text for the decimal whose unscaled value is `value` with `scale` digits
    /// after the point: every one of those digits is written (`12.30`, `-0.05`, `0.00`).
    fn format(&mut self, value: i128, scale: usize) -> &str {
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(value.unsigned_abs()).as_bytes();
        let mut length = 0;
        let mut put = |bytes: &[u8]| {
            self.bytes[length..length + bytes.len()].copy_from_slice(bytes);
            length += bytes.len();
        };
        if value < 0 {
            put(b"-");
        }
        if scale == 0 {
            put(digits);
        } else if digits.len() > scale {
            let (whole, fraction) = digits.split_at(digits.len() - scale);
            put(whole);
            put(b".");
            put(fraction);
        } else {
            put(b"0.");
            for _ in digits.len()..scale {
                put(b"0");
            }
            put(digits);
        }
        std::str::from_utf8(&self.bytes[..length]).expect("a decimal's text is ASCII")
    }
}

#[cfg(test)]
mod tests {
    use super::{DecimalText, trim_fractional_zeros};
    use bytes::BytesMut;
    use pgwire::api::Type;

    #[test]
    fn fractional_seconds_are_written_without_trailing_zeros() {
        let cases = [
            (
                Type::TIMESTAMPTZ,
                "2024-01-01 12:00:00.000000+00",
                "2024-01-01 12:00:00+00",
            ),
            (
                Type::TIMESTAMPTZ,
                "2024-01-01 12:00:00.500000+05:30",
                "2024-01-01 12:00:00.5+05:30",
            ),
            (
                Type::TIMESTAMP,
                "2024-01-01 12:00:00.123456",
                "2024-01-01 12:00:00.123456",
            ),
            (
                Type::TIMESTAMP,
                "01.02.2024 12:00:00.010000",
                "01.02.2024 12:00:00.01",
            ),
            (Type::TIME, "23:59:59.000000", "23:59:59"),
            (Type::TIMETZ, "13:00:00.000000+01", "13:00:00+01"),
            (Type::DATE, "2024-01-01", "2024-01-01"),
            (
                Type::INTERVAL,
                "1 mon 21 days 10:17:08.534400",
                "1 mon 21 days 10:17:08.5344",
            ),
            (Type::INTERVAL, "-00:00:00.500000", "-00:00:00.5"),
            (Type::TEXT, "at 12:00:00.000000", "at 12:00:00.000000"),
        ];
        for (ty, written, expected) in cases {
            let mut out = BytesMut::from(&b"\x00\x00prefix"[..]);
            let start = out.len();
            out.extend_from_slice(written.as_bytes());
            trim_fractional_zeros(&mut out, start, &ty);
            assert_eq!(&out[start..], expected.as_bytes(), "{ty} {written}");
            assert_eq!(&out[..start], b"\x00\x00prefix");
        }
    }

    #[test]
    fn decimals_are_written_as_postgresql_writes_numerics() {
        let cases: [(i128, usize, &str); 9] = [
            (1230, 2, "12.30"),
            (-5, 2, "-0.05"),
            (0, 2, "0.00"),
            (7, 0, "7"),
            (-7, 0, "-7"),
            (123, 5, "0.00123"),
            (100, 2, "1.00"),
            (i128::MAX, 38, "1.70141183460469231731687303715884105727"),
            (i128::MIN, 0, "-170141183460469231731687303715884105728"),
        ];
        for (value, scale, text) in cases {
            assert_eq!(DecimalText::default().format(value, scale), text);
        }
        assert_eq!(
            DecimalText::default().format(-1, 38),
            "-0.00000000000000000000000000000000000001"
        );
    }
}
