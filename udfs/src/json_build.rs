//! PostgreSQL's functions that build JSON from SQL values: `to_json(value)`,
//! `json_build_array(value, ...)` and `json_build_object(key, value, ...)`, and their `jsonb_`
//! forms, written as PostgreSQL writes them (`json_build_object('a', 1)` is `{"a" : 1}`,
//! `json_build_array(1, 'x')` is `[1, "x"]`; the `jsonb` forms normalised).
//!
//! A value becomes JSON as PostgreSQL's `to_json` makes it: NULL is `null`, numbers and
//! booleans as themselves (a float's `NaN` or `Infinity` as a string), `json` and `jsonb` values
//! as the documents they are, arrays as arrays, anything else as a string of its text.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{DataFusionError, Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use crate::json::{Document, JsonType, write_string};
use crate::tagged_text::{postgres_type_of, tagged_text_field};

/// What a [`JsonBuildFunction`] builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JsonBuildKind {
    /// `to_json(value)`: the value as JSON (NULL for NULL).
    Value,
    /// `json_build_array(value, ...)`: an array of the values.
    Array,
    /// `json_build_object(key, value, ...)`: an object of the pairs, in their order.
    Object,
}

/// One JSON-building function as a DataFusion scalar UDF.
///
/// ```
/// use quantatom_udfs::json::JsonType;
/// use quantatom_udfs::json_build::{JsonBuildFunction, JsonBuildKind};
/// let udf = JsonBuildFunction::udf(JsonBuildKind::Object, JsonType::Jsonb);
/// assert_eq!(udf.name(), "jsonb_build_object");
/// ```
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct JsonBuildFunction {
    kind: JsonBuildKind,
    of: JsonType,
    name: String,
    signature: Signature,
}

impl JsonBuildFunction {
    /// The function `kind` building values of type `of`, as a shareable UDF.
    pub fn udf(kind: JsonBuildKind, of: JsonType) -> Arc<ScalarUDF> {
        let name = match kind {
            JsonBuildKind::Value => format!("to_{}", of.name()),
            JsonBuildKind::Array => format!("{}_build_array", of.name()),
            JsonBuildKind::Object => format!("{}_build_object", of.name()),
        };
        let signature = match kind {
            JsonBuildKind::Value => Signature::any(1, Volatility::Stable),
            _ => Signature::variadic_any(Volatility::Stable),
        };
        Arc::new(ScalarUDF::from(Self {
            kind,
            of,
            name,
            signature,
        }))
    }

    /// Every kind for `json` and `jsonb`.
    pub fn udfs() -> Vec<Arc<ScalarUDF>> {
        [
            JsonBuildKind::Value,
            JsonBuildKind::Array,
            JsonBuildKind::Object,
        ]
        .into_iter()
        .flat_map(|kind| [JsonType::Json, JsonType::Jsonb].map(|of| Self::udf(kind, of)))
        .collect()
    }

    /// One row's document, from its values in `row` (described by `fields`).
    fn build(&self, row: &[ScalarValue], fields: &[FieldRef]) -> Result<Option<String>> {
        let values = row.iter().zip(fields);
        let json = match self.kind {
            JsonBuildKind::Value if row[0].is_null() => return Ok(None),
            JsonBuildKind::Value => json_text(&row[0], &fields[0])?,
            JsonBuildKind::Array => {
                let elements = values
                    .map(|(value, field)| json_text(value, field))
                    .collect::<Result<Vec<_>>>()?;
                format!("[{}]", elements.join(", "))
            }
            JsonBuildKind::Object => {
                let mut members = Vec::with_capacity(row.len() / 2);
                for (pair, pair_fields) in row.chunks(2).zip(fields.chunks(2)) {
                    let ([key, value], [_, value_field]) = (pair, pair_fields) else {
                        return exec_err!("argument list must have even number of elements");
                    };
                    if key.is_null() {
                        return exec_err!("null value not allowed for object key");
                    }
                    members.push(member_text(key, value, value_field)?);
                }
                format!("{{{}}}", members.join(", "))
            }
        };
        typed_document(json, self.of).map(Some)
    }
}

/// `json`, a document written here, as a value of type `of`: as it is for `json`, normalised
/// for `jsonb`.
pub(crate) fn typed_document(json: String, of: JsonType) -> Result<String> {
    match of {
        JsonType::Json => Ok(json),
        JsonType::Jsonb => Document::parse(&json)
            .and_then(|document| document.to_jsonb_text())
            .map_err(|error| DataFusionError::External(Box::new(error))),
    }
}

impl ScalarUDFImpl for JsonBuildFunction {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        if self.kind == JsonBuildKind::Object && !arg_types.len().is_multiple_of(2) {
            return plan_err!(
                "{}: argument list must have even number of elements",
                self.name
            );
        }
        Ok(DataType::Utf8)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let types: Vec<DataType> = args
            .arg_fields
            .iter()
            .map(|field| field.data_type().clone())
            .collect();
        self.return_type(&types)?;
        Ok(Arc::new(tagged_text_field(
            &self.name,
            self.of.name(),
            true,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = args
            .args
            .iter()
            .map(|arg| arg.to_array(rows))
            .collect::<Result<Vec<ArrayRef>>>()?;
        let documents = (0..rows)
            .map(|row| {
                let values = arrays
                    .iter()
                    .map(|array| ScalarValue::try_from_array(array, row))
                    .collect::<Result<Vec<_>>>()?;
                self.build(&values, &args.arg_fields)
            })
            .collect::<Result<StringArray>>()?;
        Ok(ColumnarValue::Array(Arc::new(documents)))
    }
}

/// `value` (held in `field`) as JSON text, as PostgreSQL's `to_json` writes it.
pub(crate) fn json_text(value: &ScalarValue, field: &Field) -> Result<String> {
    if value.is_null() {
        return Ok("null".to_owned());
    }
    if let Some(tag) = postgres_type_of(field)
        && JsonType::of_tag(tag).is_some()
    {
        return Ok(scalar_text(value));
    }
    Ok(match value {
        ScalarValue::Boolean(Some(flag)) => flag.to_string(),
        ScalarValue::Float16(_) | ScalarValue::Float32(_) | ScalarValue::Float64(_) => {
            let text = value.to_string();
            match text.parse::<f64>().is_ok_and(f64::is_finite) {
                true => text,
                false => quoted(&float_word(&text)),
            }
        }
        ScalarValue::Int8(_)
        | ScalarValue::Int16(_)
        | ScalarValue::Int32(_)
        | ScalarValue::Int64(_)
        | ScalarValue::UInt8(_)
        | ScalarValue::UInt16(_)
        | ScalarValue::UInt32(_)
        | ScalarValue::UInt64(_)
        | ScalarValue::Decimal32(..)
        | ScalarValue::Decimal64(..)
        | ScalarValue::Decimal128(..)
        | ScalarValue::Decimal256(..) => value.to_string(),
        ScalarValue::List(list) => {
            let element = match field.data_type() {
                DataType::List(element) => Arc::clone(element),
                _ => Arc::new(Field::new("item", list.value_type(), true)),
            };
            let values = list.value(0);
            let elements = (0..values.len())
                .map(|i| json_text(&ScalarValue::try_from_array(&values, i)?, &element))
                .collect::<Result<Vec<_>>>()?;
            format!("[{}]", elements.join(","))
        }
        other => quoted(&scalar_text(other)),
    })
}

/// An object member as `json_build_object` writes it, `"key" : value`: the key's text as a
/// string, the value (held in `value_field`) as [`json_text`] writes it.
pub(crate) fn member_text(
    key: &ScalarValue,
    value: &ScalarValue,
    value_field: &Field,
) -> Result<String> {
    let mut member = String::new();
    write_string(&scalar_text(key), &mut member);
    member.push_str(" : ");
    member.push_str(&json_text(value, value_field)?);
    Ok(member)
}

/// A float's non-finite value as PostgreSQL spells it.
fn float_word(text: &str) -> String {
    match text {
        "inf" => "Infinity".to_owned(),
        "-inf" => "-Infinity".to_owned(),
        other => other.to_owned(),
    }
}

/// `text` as a JSON string.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    write_string(text, &mut out);
    out
}

/// A value's text: a string as it is, anything else as DataFusion writes it.
fn scalar_text(value: &ScalarValue) -> String {
    match value.try_as_str() {
        Some(Some(text)) => text.to_owned(),
        _ => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_become_json_as_to_json_makes_them() {
        let plain = |data_type| Field::new("v", data_type, true);
        let cases = [
            (ScalarValue::Int32(Some(7)), plain(DataType::Int32), "7"),
            (
                ScalarValue::Float64(Some(1.5)),
                plain(DataType::Float64),
                "1.5",
            ),
            (
                ScalarValue::Float64(Some(f64::NAN)),
                plain(DataType::Float64),
                "\"NaN\"",
            ),
            (
                ScalarValue::Float64(Some(f64::NEG_INFINITY)),
                plain(DataType::Float64),
                "\"-Infinity\"",
            ),
            (
                ScalarValue::Utf8(Some("a\"b\n".to_owned())),
                plain(DataType::Utf8),
                r#""a\"b\n""#,
            ),
            (
                ScalarValue::Utf8(Some(r#"{"x": 1}"#.to_owned())),
                tagged_text_field("v", "jsonb", true),
                r#"{"x": 1}"#,
            ),
            (
                ScalarValue::Boolean(Some(false)),
                plain(DataType::Boolean),
                "false",
            ),
            (ScalarValue::Int32(None), plain(DataType::Int32), "null"),
        ];
        for (value, field, json) in cases {
            assert_eq!(json_text(&value, &field).unwrap(), json, "{value:?}");
        }
    }
}
