//! One result cell into a row being encoded (a DataRow, a COPY row): arrow-pg's encoding,
//! except for decimals sent as text, which are written here. arrow-pg converts each one to a
//! `rust_decimal` and formats it through `Display` (a sixth of the server's time sending a
//! million-row cube), and fails on values beyond `rust_decimal`'s 96 bits that a
//! `numeric(38, s)` column holds.

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Field};
use datafusion_postgres::arrow_pg::encoder::{Encoder, encode_value};
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::error::PgWireResult;

/// Encodes `array`'s value at `row` (described by `arrow_field`) as the column `pg_field`.
pub(crate) fn encode_cell<E: Encoder>(
    encoder: &mut E,
    array: &ArrayRef,
    row: usize,
    arrow_field: &Field,
    pg_field: &FieldInfo,
) -> PgWireResult<()> {
    if pg_field.format() == FieldFormat::Text
        && let DataType::Decimal128(_, scale) = array.data_type()
        && let Ok(scale) = usize::try_from(*scale)
    {
        let decimals = array.as_primitive::<Decimal128Type>();
        if decimals.is_null(row) {
            return encoder.encode_field(&None::<&str>, pg_field);
        }
        let mut text = DecimalText::default();
        return encoder.encode_field(&Some(text.format(decimals.value(row), scale)), pg_field);
    }
    encode_value(encoder, array, row, arrow_field, pg_field)
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
    use super::DecimalText;

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
