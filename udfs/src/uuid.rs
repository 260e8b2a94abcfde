//! PostgreSQL's `uuid`, held as text in its canonical form: lower-case hex digits grouped
//! 8-4-4-4-12 by hyphens, as PostgreSQL prints a uuid. Input follows PostgreSQL's `uuid_in`
//! (upper case, braces, and a hyphen after any group of four digits are accepted), so two
//! spellings of one uuid are one value; and as the canonical text orders as the uuid's bytes
//! do, uuids compare, group and sort as PostgreSQL's do.
//!
//! [`UuidFunction`] gives SQL `uuid_in` (what a cast to `uuid` runs: see
//! [`crate::InputFunctionRule`]) and `gen_random_uuid()`.

use std::fmt::{self, Write};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::cast::as_string_array;
use datafusion::common::{DataFusionError, Result, ScalarValue, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use crate::evaluation::evaluate;
use crate::planner::is_text;
use crate::tagged_text::tagged_text_field;

/// The field-metadata tag of `uuid` text (see [`crate::tagged_text_field`]).
pub const UUID: &str = "uuid";

/// A text that is not a uuid (SQLSTATE `22P02`, as PostgreSQL words it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UuidError {
    input: String,
}

impl UuidError {
    /// The PostgreSQL SQLSTATE, `22P02`.
    pub fn sqlstate(&self) -> &'static str {
        "22P02"
    }
}

impl fmt::Display for UuidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid input syntax for type uuid: \"{}\"", self.input)
    }
}

impl std::error::Error for UuidError {}

/// The 16 bytes of the uuid `text`, read as PostgreSQL's `uuid_in` reads it: 32 hex digits in
/// either case, optionally in braces, with a hyphen allowed after any group of four digits
/// but the last; nothing else, not even whitespace.
///
/// ```
/// use quantatom_udfs::uuid::parse_uuid;
/// let one = parse_uuid("{A0EEBC99-9C0B4EF8-BB6D6BB9-BD380A11}").unwrap();
/// assert_eq!(one, parse_uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").unwrap());
/// assert!(parse_uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1").is_err());
/// ```
pub fn parse_uuid(text: &str) -> Result<[u8; 16], UuidError> {
    let refused = || UuidError {
        input: text.to_owned(),
    };
    let (digits, braces) = match text.strip_prefix('{') {
        Some(inner) => (inner, true),
        None => (text, false),
    };
    let mut rest = digits.as_bytes();
    let mut bytes = [0; 16];
    for (i, byte) in bytes.iter_mut().enumerate() {
        let [high, low, after @ ..] = rest else {
            return Err(refused());
        };
        let (Some(high), Some(low)) = (hex_value(*high), hex_value(*low)) else {
            return Err(refused());
        };
        *byte = high << 4 | low;
        rest = match after {
            [b'-', after_hyphen @ ..] if i % 2 == 1 && i < 15 => after_hyphen,
            _ => after,
        };
    }
    let rest = match (braces, rest) {
        (true, [b'}', rest @ ..]) => rest,
        (true, _) => return Err(refused()),
        (false, rest) => rest,
    };
    match rest.is_empty() {
        true => Ok(bytes),
        false => Err(refused()),
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|value| value as u8)
}

/// The canonical text of a uuid's bytes, as PostgreSQL prints a uuid.
pub fn uuid_text(bytes: &[u8; 16]) -> String {
    let mut text = String::with_capacity(36);
    for (i, byte) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            text.push('-');
        }
        // Writing to a String cannot fail.
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// The canonical text of the uuid `text` ([`parse_uuid`], [`uuid_text`]).
pub fn canonical_uuid(text: &str) -> Result<String, UuidError> {
    parse_uuid(text).map(|bytes| uuid_text(&bytes))
}

/// What a [`UuidFunction`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UuidFunctionKind {
    /// `uuid_in(text)`, `x::uuid`: the text checked and made canonical.
    Input,
    /// `gen_random_uuid()`: a random (version 4) uuid.
    Random,
}

/// `uuid_in` or `gen_random_uuid` as a DataFusion scalar UDF; both return `uuid`-tagged text.
///
/// ```
/// use quantatom_udfs::uuid::{UuidFunction, UuidFunctionKind};
/// assert_eq!(UuidFunction::udf(UuidFunctionKind::Random).name(), "gen_random_uuid");
/// ```
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct UuidFunction {
    kind: UuidFunctionKind,
    signature: Signature,
}

impl UuidFunction {
    /// The function `kind` as a shareable UDF.
    pub fn udf(kind: UuidFunctionKind) -> Arc<ScalarUDF> {
        let signature = match kind {
            UuidFunctionKind::Input => Signature::user_defined(Volatility::Immutable),
            UuidFunctionKind::Random => Signature::nullary(Volatility::Volatile),
        };
        Arc::new(ScalarUDF::from(Self { kind, signature }))
    }

    /// Both functions.
    pub fn udfs() -> Vec<Arc<ScalarUDF>> {
        [UuidFunctionKind::Input, UuidFunctionKind::Random]
            .into_iter()
            .map(Self::udf)
            .collect()
    }
}

impl ScalarUDFImpl for UuidFunction {
    fn name(&self) -> &str {
        match self.kind {
            UuidFunctionKind::Input => "uuid_in",
            UuidFunctionKind::Random => "gen_random_uuid",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [given] if is_text(given) => Ok(vec![DataType::Utf8]),
            _ => plan_err!("uuid_in takes one text argument, not {arg_types:?}"),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn return_field_from_args(&self, _args: ReturnFieldArgs) -> Result<FieldRef> {
        Ok(Arc::new(tagged_text_field(self.name(), UUID, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        match self.kind {
            UuidFunctionKind::Input => evaluate(&args.args, canonical_uuids),
            UuidFunctionKind::Random => {
                let uuids: StringArray = (0..args.number_rows)
                    .map(|_| Some(::uuid::Uuid::new_v4().hyphenated().to_string()))
                    .collect();
                Ok(match args.number_rows {
                    1 => ColumnarValue::Scalar(ScalarValue::try_from_array(&uuids, 0)?),
                    _ => ColumnarValue::Array(Arc::new(uuids)),
                })
            }
        }
    }
}

/// `uuid_in` over one array of texts (a cast's operand as written: see
/// [`crate::InputFunctionRule`]).
fn canonical_uuids(arrays: &[ArrayRef]) -> Result<ArrayRef> {
    let texts = cast(&arrays[0], &DataType::Utf8)?;
    let texts = as_string_array(&texts)?;
    // Logical: a NULL literal operand of a cast is a `NullArray`, which has no null buffer.
    let nulls = arrays[0].logical_nulls();
    let canonical = (0..texts.len())
        .map(|row| match nulls.as_ref().is_some_and(|n| n.is_null(row)) {
            true => Ok(None),
            false => canonical_uuid(texts.value(row)).map(Some),
        })
        .collect::<Result<StringArray, UuidError>>()
        .map_err(|error| DataFusionError::External(Box::new(error)))?;
    Ok(Arc::new(canonical))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANONICAL: &str = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";

    #[test]
    fn every_spelling_postgresql_accepts_is_one_uuid() {
        for spelling in [
            CANONICAL,
            "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
            "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
            "a0eebc999c0b4ef8bb6d6bb9bd380a11",
            "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11",
            "{a0eebc99-9c0b4ef8-bb6d6bb9-bd380a11}",
        ] {
            assert_eq!(
                canonical_uuid(spelling).as_deref(),
                Ok(CANONICAL),
                "{spelling}"
            );
        }
    }

    #[test]
    fn other_texts_are_refused_with_postgresql_words() {
        for refused in [
            "",
            "zz",
            " a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11 ",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11-",
            "a0e-ebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "a0eebc99--9c0b-4ef8-bb6d-6bb9bd380a11",
            "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
            "urn:uuid:a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1g",
        ] {
            let error = canonical_uuid(refused).expect_err(refused);
            assert_eq!(
                error.to_string(),
                format!("invalid input syntax for type uuid: \"{refused}\"")
            );
            assert_eq!(error.sqlstate(), "22P02");
        }
    }

    #[test]
    fn canonical_text_orders_as_the_bytes_do() {
        let low = parse_uuid("0fffffff-ffff-ffff-ffff-ffffffffffff").unwrap();
        let high = parse_uuid("a0000000-0000-0000-0000-000000000000").unwrap();
        assert!(low < high);
        assert!(uuid_text(&low) < uuid_text(&high));
    }
}
