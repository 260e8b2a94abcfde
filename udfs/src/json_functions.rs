//! PostgreSQL's `json` and `jsonb` functions, which are also what the operators and casts plan
//! to (see [`crate::JsonOperatorPlanner`], [`crate::InputFunctionRule`]): `json_in` and `jsonb_in`
//! (a cast: the document checked, and for `jsonb` normalised), `json_object_field` (`->` with a key),
//! `json_array_element` (`->` with an index), `json_extract_path` and `#>`, each with a
//! `_text` form (`->>`, `#>>`), `json_typeof`, `json_array_length`, and for `jsonb` also
//! `jsonb_contains` (`@>`), `jsonb_contained` (`<@`), `jsonb_exists` (`?`), `jsonb_exists_any`
//! (`?|`), `jsonb_exists_all` (`?&`), `jsonb_concat` (`||`), `jsonb_delete` (`-`) and
//! `jsonb_set`.
//!
//! Documents are text (any string type), parsed per row with [`crate::json`]; a document that
//! is not JSON is an error (22P02), NULL in gives NULL out, and a `jsonb` result is normalised.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Int32Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::cast::{as_int64_array, as_list_array, as_string_array};
use datafusion::common::{DataFusionError, Result, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use crate::evaluation::evaluate;
use crate::json::{Document, JsonError, JsonType, text_array_elements};
use crate::planner::is_text;
use crate::tagged_text::tagged_text_field;

/// What a [`JsonFunction`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JsonFunctionKind {
    /// `json_in(text)`, `x::json`: the text, checked to be JSON (`jsonb_in`: normalised).
    Input,
    /// `json_object_field(doc, key)`, `doc -> 'key'`: an object's field.
    ObjectField,
    /// `json_object_field_text(doc, key)`, `doc ->> 'key'`: the field as text.
    ObjectFieldText,
    /// `json_array_element(doc, index)`, `doc -> 0`: an array's element (negative from
    /// the end).
    ArrayElement,
    /// `json_array_element_text(doc, index)`, `doc ->> 0`: the element as text.
    ArrayElementText,
    /// `json_extract_path(doc, VARIADIC path)`: the value at a path of keys and indexes.
    ExtractPath,
    /// `json_extract_path_text(doc, VARIADIC path)`: the value at the path as text.
    ExtractPathText,
    /// `doc #> '{a,0}'`: the value at a path given as one text array.
    ExtractPathOperator,
    /// `doc #>> '{a,0}'`: the value at the path as text.
    ExtractPathTextOperator,
    /// `json_typeof(doc)`: `object`, `array`, `string`, `number`, `boolean` or `null`.
    Typeof,
    /// `json_array_length(doc)`: the number of an array's elements.
    ArrayLength,
    /// `jsonb_contains(a, b)`, `a @> b`.
    Contains,
    /// `jsonb_contained(a, b)`, `a <@ b`.
    Contained,
    /// `jsonb_exists(doc, key)`, `doc ? key`.
    Exists,
    /// `jsonb_exists_any(doc, keys)`, `doc ?| keys`.
    ExistsAny,
    /// `jsonb_exists_all(doc, keys)`, `doc ?& keys`.
    ExistsAll,
    /// `jsonb_concat(a, b)`, `a || b`: objects merged, anything else as one array.
    Concat,
    /// `jsonb_delete(doc, key | keys | index)`, `doc - 'key'`, `doc - ARRAY[...]`, `doc - 1`.
    Delete,
    /// `jsonb_set(doc, path, new [, create_if_missing])`: the value at a path replaced or added.
    Set,
}

impl JsonFunctionKind {
    /// The kinds both types have.
    const BOTH: [Self; 11] = [
        Self::Input,
        Self::ObjectField,
        Self::ObjectFieldText,
        Self::ArrayElement,
        Self::ArrayElementText,
        Self::ExtractPath,
        Self::ExtractPathText,
        Self::ExtractPathOperator,
        Self::ExtractPathTextOperator,
        Self::Typeof,
        Self::ArrayLength,
    ];
    /// The kinds only `jsonb` has.
    const JSONB_ONLY: [Self; 8] = [
        Self::Contains,
        Self::Contained,
        Self::Exists,
        Self::ExistsAny,
        Self::ExistsAll,
        Self::Concat,
        Self::Delete,
        Self::Set,
    ];

    /// The name after `json_` or `jsonb_`.
    fn suffix(self) -> &'static str {
        match self {
            Self::Input => "in",
            Self::ObjectField => "object_field",
            Self::ObjectFieldText => "object_field_text",
            Self::ArrayElement => "array_element",
            Self::ArrayElementText => "array_element_text",
            Self::ExtractPath => "extract_path",
            Self::ExtractPathText => "extract_path_text",
            Self::ExtractPathOperator => "extract_path_op",
            Self::ExtractPathTextOperator => "extract_path_text_op",
            Self::Typeof => "typeof",
            Self::Contains => "contains",
            Self::Contained => "contained",
            Self::Exists => "exists",
            Self::ExistsAny => "exists_any",
            Self::ExistsAll => "exists_all",
            Self::ArrayLength => "array_length",
            Self::Concat => "concat",
            Self::Delete => "delete",
            Self::Set => "set",
        }
    }

    /// Whether the result is a document (else text or a boolean).
    fn returns_document(self) -> bool {
        matches!(
            self,
            Self::Input
                | Self::ObjectField
                | Self::ArrayElement
                | Self::ExtractPath
                | Self::ExtractPathOperator
                | Self::Concat
                | Self::Delete
                | Self::Set
        )
    }

    /// The type of the result.
    fn result_type(self) -> DataType {
        match self {
            Self::Contains | Self::Contained | Self::Exists | Self::ExistsAny | Self::ExistsAll => {
                DataType::Boolean
            }
            Self::ArrayLength => DataType::Int32,
            _ => DataType::Utf8,
        }
    }
}

/// One `json` or `jsonb` function as a DataFusion scalar UDF.
///
/// ```
/// use quantatom_udfs::JsonFunction;
/// use quantatom_udfs::json::JsonType;
/// use quantatom_udfs::JsonFunctionKind;
/// let field = JsonFunction::udf(JsonFunctionKind::ObjectFieldText, JsonType::Jsonb);
/// assert_eq!(field.name(), "jsonb_object_field_text");
/// ```
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct JsonFunction {
    kind: JsonFunctionKind,
    of: JsonType,
    name: String,
    signature: Signature,
}

impl JsonFunction {
    /// The function `kind` on documents of type `of`.
    pub fn new(kind: JsonFunctionKind, of: JsonType) -> Self {
        Self {
            kind,
            of,
            name: format!("{}_{}", of.name(), kind.suffix()),
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }

    /// The function as a shareable UDF.
    pub fn udf(kind: JsonFunctionKind, of: JsonType) -> Arc<ScalarUDF> {
        Arc::new(ScalarUDF::from(Self::new(kind, of)))
    }

    /// Every function: each kind for `json` and `jsonb`, the `jsonb`-only ones for `jsonb`.
    pub fn udfs() -> Vec<Arc<ScalarUDF>> {
        let both = JsonFunctionKind::BOTH
            .into_iter()
            .flat_map(|kind| [JsonType::Json, JsonType::Jsonb].map(|of| Self::udf(kind, of)));
        let jsonb = JsonFunctionKind::JSONB_ONLY
            .into_iter()
            .map(|kind| Self::udf(kind, JsonType::Jsonb));
        both.chain(jsonb).collect()
    }

    /// The answer for `document`, parsed from `source`.
    fn answer(
        &self,
        source: &str,
        document: &Document,
        arguments: &Arguments,
    ) -> Result<Answer, JsonError> {
        use JsonFunctionKind as K;
        let found = match self.kind {
            // A `json` value is its text exactly, surrounding whitespace included.
            K::Input if self.of == JsonType::Json => {
                return Ok(Answer::Text(Some(source.to_owned())));
            }
            K::Input => Some(document),
            K::ObjectField | K::ObjectFieldText => document.field(arguments.text(1))?,
            K::ArrayElement | K::ArrayElementText => {
                document.element(arguments.integer(1), self.of)
            }
            K::ExtractPath
            | K::ExtractPathText
            | K::ExtractPathOperator
            | K::ExtractPathTextOperator => match arguments.path()? {
                Some(path) => document.at_path(&path)?,
                None => None,
            },
            K::Typeof => return Ok(Answer::Text(Some(document.type_name().to_owned()))),
            K::ArrayLength => {
                // At most `MAX_DEPTH`-bounded text, so it fits.
                return Ok(Answer::Integer(document.array_length()? as i32));
            }
            K::Concat => {
                let other = Document::parse(arguments.text(1))?;
                return Ok(Answer::Text(Some(document.concatenated(&other)?)));
            }
            K::Delete => {
                let rest = match arguments.arrays[1].data_type() {
                    data_type if data_type.is_integer() => {
                        document.without_element(arguments.integer(1))?
                    }
                    DataType::List(_) | DataType::LargeList(_) => {
                        let keys: Vec<String> = arguments.keys()?.into_iter().flatten().collect();
                        document.without_keys(&keys)?
                    }
                    _ => document.without_keys(&[arguments.text(1)])?,
                };
                return Ok(Answer::Text(Some(rest)));
            }
            K::Set => {
                let path = arguments.text_array(1)?;
                let new = Document::parse(arguments.text(2))?;
                let create = arguments
                    .arrays
                    .get(3)
                    .and_then(|flags| flags.as_any().downcast_ref::<BooleanArray>())
                    .is_none_or(|flags| flags.value(arguments.row));
                return Ok(Answer::Text(Some(
                    document.with_value_at(&path, &new, create)?,
                )));
            }
            K::Contains | K::Contained => {
                let other = Document::parse(arguments.text(1))?;
                return Ok(Answer::Boolean(match self.kind {
                    K::Contains => document.contains(&other)?,
                    _ => other.contains(document)?,
                }));
            }
            K::Exists => return Ok(Answer::Boolean(document.has_key(arguments.text(1))?)),
            K::ExistsAny | K::ExistsAll => {
                let keys = arguments.keys()?;
                let mut held = keys.iter().flatten().map(|key| document.has_key(key));
                return Ok(Answer::Boolean(match self.kind {
                    K::ExistsAny => held.try_fold(false, |any, has| has.map(|has| any || has))?,
                    _ => held.try_fold(true, |all, has| has.map(|has| all && has))?,
                }));
            }
        };
        let Some(found) = found else {
            return Ok(Answer::Text(None));
        };
        Ok(Answer::Text(match self.kind.returns_document() {
            true => Some(found.to_text(self.of)?),
            false => found.to_plain_text(self.of)?,
        }))
    }
}

/// One row's answer.
enum Answer {
    Text(Option<String>),
    Boolean(bool),
    Integer(i32),
}

/// One row of a call's arguments (after the document), none of them NULL.
struct Arguments<'a> {
    arrays: &'a [ArrayRef],
    row: usize,
    /// Whether a path or key list is one text-array literal (`#>`, `?|`, `?&`) rather than
    /// the variadic keys of `json_extract_path`.
    array_literal: bool,
}

impl Arguments<'_> {
    fn text(&self, i: usize) -> &str {
        self.arrays[i]
            .as_any()
            .downcast_ref::<StringArray>()
            .map_or("", |texts| texts.value(self.row))
    }

    fn integer(&self, i: usize) -> i64 {
        as_int64_array(&self.arrays[i]).map_or(0, |integers| integers.value(self.row))
    }

    /// The keys of a text array: an array value, a text-array literal, or the variadic texts.
    fn keys(&self) -> Result<Vec<Option<String>>, JsonError> {
        if self.arrays.len() == 2 && (self.array_literal || self.is_list(1)) {
            return self.text_array(1);
        }
        Ok((1..self.arrays.len())
            .map(|i| Some(self.text(i).to_owned()))
            .collect())
    }

    /// Argument `i`, a text array given as an array value or as a text-array literal.
    fn text_array(&self, i: usize) -> Result<Vec<Option<String>>, JsonError> {
        if let Ok(lists) = as_list_array(&self.arrays[i]) {
            let list = lists.value(self.row);
            let texts = list.as_any().downcast_ref::<StringArray>();
            return Ok(texts.map_or_else(Vec::new, |texts| {
                texts.iter().map(|text| text.map(str::to_owned)).collect()
            }));
        }
        text_array_elements(self.text(i))
    }

    fn is_list(&self, i: usize) -> bool {
        as_list_array(&self.arrays[i]).is_ok()
    }

    /// A path's steps; `None` when one of them is NULL (the answer is then NULL).
    fn path(&self) -> Result<Option<Vec<String>>, JsonError> {
        Ok(self.keys()?.into_iter().collect())
    }
}

fn json_error(error: JsonError) -> DataFusionError {
    DataFusionError::External(Box::new(error))
}

impl ScalarUDFImpl for JsonFunction {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The document and keys as text, an index as `Int64`, paths and key lists as text
    /// arrays or (for `#>`, `?|`, `?&`) text.
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        use JsonFunctionKind as K;
        let arity_ok = match self.kind {
            K::Input | K::Typeof | K::ArrayLength => arg_types.len() == 1,
            K::ExtractPath | K::ExtractPathText => !arg_types.is_empty(),
            K::Set => matches!(arg_types.len(), 3 | 4),
            _ => arg_types.len() == 2,
        };
        if !arity_ok {
            return plan_err!("{} takes no {} arguments", self.name, arg_types.len());
        }
        let text_list = DataType::new_list(DataType::Utf8, true);
        arg_types
            .iter()
            .enumerate()
            .map(|(i, given)| {
                let is_text = is_text(given);
                let is_list = matches!(given, DataType::List(_) | DataType::LargeList(_));
                match (i, self.kind) {
                    (0, _) if is_text => Ok(DataType::Utf8),
                    (1, K::Set) if is_list => Ok(text_list.clone()),
                    (3, K::Set) if matches!(given, DataType::Boolean | DataType::Null) => {
                        Ok(DataType::Boolean)
                    }
                    (_, K::ArrayElement | K::ArrayElementText | K::Delete)
                        if given.is_integer() =>
                    {
                        Ok(DataType::Int64)
                    }
                    (
                        _,
                        K::ExtractPath
                        | K::ExtractPathText
                        | K::ExtractPathOperator
                        | K::ExtractPathTextOperator
                        | K::ExistsAny
                        | K::ExistsAll
                        | K::Delete,
                    ) if is_list && arg_types.len() == 2 => Ok(text_list.clone()),
                    (_, K::ArrayElement | K::ArrayElementText) => {
                        plan_err!("{} takes an integer index, not {given}", self.name)
                    }
                    _ if is_text => Ok(DataType::Utf8),
                    _ => plan_err!("{} does not take an argument of type {given}", self.name),
                }
            })
            .collect()
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(self.kind.result_type())
    }

    fn return_field_from_args(&self, _args: ReturnFieldArgs) -> Result<FieldRef> {
        Ok(Arc::new(match self.kind.returns_document() {
            true => tagged_text_field(&self.name, self.of.name(), true),
            false => Field::new(&self.name, self.return_type(&[])?, true),
        }))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        evaluate(&args.args, |arrays| self.compute(arrays))
    }
}

impl JsonFunction {
    fn compute(&self, arrays: &[ArrayRef]) -> Result<ArrayRef> {
        // Text already for a call, but a cast's operand (see `InputFunctionRule`) is as written.
        let documents = cast(&arrays[0], &DataType::Utf8)?;
        let documents = as_string_array(&documents)?;
        let array_literal = matches!(
            self.kind,
            JsonFunctionKind::ExtractPathOperator
                | JsonFunctionKind::ExtractPathTextOperator
                | JsonFunctionKind::ExistsAny
                | JsonFunctionKind::ExistsAll
        );
        // Logical: a NULL literal operand of a cast is a `NullArray`, which has no null buffer.
        let nulls: Vec<_> = arrays.iter().map(|array| array.logical_nulls()).collect();
        let answers = (0..documents.len())
            .map(|row| {
                if nulls.iter().flatten().any(|nulls| nulls.is_null(row)) {
                    return Ok(None);
                }
                let arguments = Arguments {
                    arrays,
                    row,
                    array_literal,
                };
                let source = documents.value(row);
                let document = Document::parse(source)?;
                self.answer(source, &document, &arguments).map(Some)
            })
            .collect::<Result<Vec<_>, JsonError>>()
            .map_err(json_error)?;
        Ok(match self.kind.result_type() {
            DataType::Boolean => Arc::new(
                answers
                    .into_iter()
                    .map(|answer| match answer {
                        Some(Answer::Boolean(holds)) => Some(holds),
                        _ => None,
                    })
                    .collect::<BooleanArray>(),
            ),
            DataType::Int32 => Arc::new(
                answers
                    .into_iter()
                    .map(|answer| match answer {
                        Some(Answer::Integer(length)) => Some(length),
                        _ => None,
                    })
                    .collect::<Int32Array>(),
            ),
            _ => Arc::new(
                answers
                    .into_iter()
                    .map(|answer| match answer {
                        Some(Answer::Text(text)) => text,
                        _ => None,
                    })
                    .collect::<StringArray>(),
            ),
        })
    }
}
