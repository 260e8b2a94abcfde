//! PostgreSQL's JSON aggregates: `json_agg(value)` and `jsonb_agg(value)` gather a group's
//! values into an array, `json_object_agg(key, value)` and `jsonb_object_agg(key, value)`
//! into an object, each written as PostgreSQL writes it (`json_agg` is `[1, 2, null]`, with
//! `", \n "` between SQL arrays; `json_object_agg` is `{ "a" : 1, "b" : 2 }`; the `jsonb`
//! forms normalised, an object's repeated key keeping its last value). NULL values are
//! gathered as `null`; a NULL key is refused (22023); a group without rows gives NULL.
//!
//! DataFusion's `array_agg` gathers each row's value (for an object, the member text
//! `"key" : value`), so `DISTINCT`, `ORDER BY` inside the call and partial aggregation across
//! partitions work as they do for `array_agg` (DataFusion's `string_agg` is built on it the
//! same way); the values become JSON as `to_json` makes them when the group's document is
//! written.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{DataFusionError, Result, ScalarValue, exec_err};
use datafusion::functions_aggregate::array_agg::ArrayAgg;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};

use crate::json::{JsonError, JsonType};
use crate::json_build::{json_text, member_text, typed_document};
use crate::tagged_text::tagged_text_field;

/// What a [`JsonAggregate`] gathers a group's rows into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Gathered {
    /// `json_agg(value)`: an array of the values.
    Array,
    /// `json_object_agg(key, value)`: an object of the pairs.
    Object,
}

impl Gathered {
    /// How many arguments the aggregate takes.
    fn arguments(self) -> usize {
        match self {
            Gathered::Array => 1,
            Gathered::Object => 2,
        }
    }
}

/// One JSON aggregate (see the module documentation) as a DataFusion aggregate UDF.
///
/// ```
/// let names: Vec<String> = quantatom_udfs::json_agg::JsonAggregate::udafs()
///     .iter()
///     .map(|udaf| udaf.name().to_owned())
///     .collect();
/// assert_eq!(names, ["json_agg", "jsonb_agg", "json_object_agg", "jsonb_object_agg"]);
/// ```
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct JsonAggregate {
    gathered: Gathered,
    of: JsonType,
    name: String,
    signature: Signature,
}

impl JsonAggregate {
    /// `json_agg`, `jsonb_agg`, `json_object_agg` and `jsonb_object_agg`.
    pub fn udafs() -> Vec<Arc<AggregateUDF>> {
        [Gathered::Array, Gathered::Object]
            .into_iter()
            .flat_map(|gathered| {
                [JsonType::Json, JsonType::Jsonb].map(|of| {
                    let name = match gathered {
                        Gathered::Array => format!("{}_agg", of.name()),
                        Gathered::Object => format!("{}_object_agg", of.name()),
                    };
                    Arc::new(AggregateUDF::from(Self {
                        gathered,
                        of,
                        name,
                        signature: Signature::any(gathered.arguments(), Volatility::Immutable),
                    }))
                })
            })
            .collect()
    }

    /// The field `array_agg` gathers from `input_fields`, the aggregate's arguments: an array
    /// aggregate's value as it is (so `DISTINCT` and `ORDER BY` compare values, not their
    /// JSON), an object aggregate's member text.
    fn gathered_field(&self, input_fields: &[FieldRef]) -> FieldRef {
        match self.gathered {
            Gathered::Array => Arc::clone(&input_fields[0]),
            Gathered::Object => Arc::new(Field::new("member", DataType::Utf8, false)),
        }
    }
}

/// What `array_agg` returns when it gathers `field`.
fn gathered_list_field(name: &str, field: &FieldRef) -> FieldRef {
    Arc::new(Field::new_list(
        name,
        Field::new_list_field(field.data_type().clone(), true),
        true,
    ))
}

impl AggregateUDFImpl for JsonAggregate {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn return_field(&self, _arg_fields: &[FieldRef]) -> Result<FieldRef> {
        Ok(Arc::new(tagged_text_field(
            &self.name,
            self.of.name(),
            true,
        )))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let gathered = self.gathered_field(args.input_fields);
        ArrayAgg::default().state_fields(StateFieldsArgs {
            return_field: gathered_list_field(args.name, &gathered),
            input_fields: &[gathered],
            ..args
        })
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let input_fields = args.expr_fields[..self.gathered.arguments()].to_vec();
        let gathered = self.gathered_field(&input_fields);
        let values = ArrayAgg::default().accumulator(AccumulatorArgs {
            return_field: gathered_list_field(args.name, &gathered),
            exprs: &args.exprs[..1],
            expr_fields: &[gathered],
            ..args
        })?;
        Ok(Box::new(JsonAccumulator {
            gathered: self.gathered,
            of: self.of,
            input_fields,
            values,
        }))
    }
}

/// Gathers one group's values (an object's: member texts) in an `array_agg` accumulator;
/// writes the document at the end.
#[derive(Debug)]
struct JsonAccumulator {
    gathered: Gathered,
    of: JsonType,
    /// The aggregate's arguments (value; or key, value).
    input_fields: Vec<FieldRef>,
    values: Box<dyn Accumulator>,
}

impl JsonAccumulator {
    /// Each row's member text (`"key" : value`), from the arguments `key` and `value`.
    fn member_texts(&self, key: &ArrayRef, value: &ArrayRef) -> Result<StringArray> {
        (0..key.len())
            .map(|row| {
                let key = ScalarValue::try_from_array(key, row)?;
                if key.is_null() {
                    return Err(DataFusionError::External(Box::new(JsonError::invalid(
                        "field name must not be null",
                    ))));
                }
                let value = ScalarValue::try_from_array(value, row)?;
                member_text(&key, &value, &self.input_fields[1]).map(Some)
            })
            .collect()
    }

    /// What goes between two gathered texts: `json_agg` puts a line break before each SQL
    /// array after the first, as PostgreSQL does.
    fn separator(&self) -> &'static str {
        let multiline = self.gathered == Gathered::Array
            && self.of == JsonType::Json
            && matches!(
                self.input_fields[0].data_type(),
                DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..)
            );
        if multiline { ", \n " } else { ", " }
    }

    /// The JSON texts of the gathered `values`.
    fn texts(&self, values: &ArrayRef) -> Result<Vec<String>> {
        (0..values.len())
            .map(|i| {
                let value = ScalarValue::try_from_array(values, i)?;
                match self.gathered {
                    Gathered::Array => json_text(&value, &self.input_fields[0]),
                    Gathered::Object => {
                        Ok(value.try_as_str().flatten().unwrap_or_default().to_owned())
                    }
                }
            })
            .collect()
    }
}

impl Accumulator for JsonAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        match self.gathered {
            Gathered::Array => self.values.update_batch(values),
            Gathered::Object => {
                let mut gathered: Vec<ArrayRef> =
                    vec![Arc::new(self.member_texts(&values[0], &values[1])?)];
                // The rest are the values of the call's ORDER BY, which array_agg sorts by.
                gathered.extend(values[2..].iter().cloned());
                self.values.update_batch(&gathered)
            }
        }
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let ScalarValue::List(list) = self.values.evaluate()? else {
            return exec_err!("{}: array_agg did not give a list", self.of.name());
        };
        if list.is_null(0) || list.value(0).is_empty() {
            return Ok(ScalarValue::Utf8(None));
        }
        let inner = self.texts(&list.value(0))?.join(self.separator());
        let document = match self.gathered {
            Gathered::Array => format!("[{inner}]"),
            Gathered::Object if self.of == JsonType::Json => format!("{{ {inner} }}"),
            Gathered::Object => format!("{{{inner}}}"),
        };
        Ok(ScalarValue::Utf8(Some(typed_document(document, self.of)?)))
    }

    fn size(&self) -> usize {
        size_of_val(self) + self.values.size()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.values.state()
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.values.merge_batch(states)
    }
}
