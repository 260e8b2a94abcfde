//! PostgreSQL's own functions that clients call to learn about the server before they query:
//! `version()`, `to_regtype()`, `pg_typeof()`, `pg_function_is_visible()` and its
//! siblings, `_pg_expandarray()`, and those with a fixed answer here (`obj_description()`, `pg_is_in_recovery()`, ...).

use std::sync::Arc;

use crate::information_schema::postgres_name_of_type;
use datafusion::arrow::array::{
    Array, AsArray, BooleanArray, Int32Array, ListArray, StringArray, StructArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

/// The PostgreSQL major.minor version Quantatom presents to clients.
pub const POSTGRES_VERSION: &str = "16.6";

/// `version()` as PostgreSQL words it, so tools that parse `PostgreSQL <major>.<minor>`
/// (SQLAlchemy, Superset, Metabase) accept the server; Quantatom's own name follows.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct VersionFunction {
    signature: Signature,
}

impl VersionFunction {
    /// The function, ready to register in place of DataFusion's own `version()`.
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(Self {
            signature: Signature::nullary(Volatility::Immutable),
        })
    }

    /// The text `version()` returns.
    pub fn text() -> String {
        format!(
            "PostgreSQL {POSTGRES_VERSION} (Quantatom {}, Apache DataFusion {}) on {}-linux, 64-bit",
            env!("CARGO_PKG_VERSION"),
            datafusion::DATAFUSION_VERSION,
            std::env::consts::ARCH,
        )
    }
}

impl ScalarUDFImpl for VersionFunction {
    fn name(&self) -> &str {
        "version"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(Self::text()))))
    }
}

/// PostgreSQL's built-in types by every name `to_regtype` accepts, with their fixed OIDs.
const BUILTIN_TYPES: &[(&str, i32)] = &[
    ("bool", 16),
    ("boolean", 16),
    ("bytea", 17),
    ("char", 18),
    ("name", 19),
    ("int8", 20),
    ("bigint", 20),
    ("int2", 21),
    ("smallint", 21),
    ("int4", 23),
    ("integer", 23),
    ("int", 23),
    ("text", 25),
    ("oid", 26),
    ("json", 114),
    ("xml", 142),
    ("float4", 700),
    ("real", 700),
    ("float8", 701),
    ("double precision", 701),
    ("varchar", 1043),
    ("character varying", 1043),
    ("bpchar", 1042),
    ("character", 1042),
    ("date", 1082),
    ("time", 1083),
    ("time without time zone", 1083),
    ("timestamp", 1114),
    ("timestamp without time zone", 1114),
    ("timestamptz", 1184),
    ("timestamp with time zone", 1184),
    ("interval", 1186),
    ("timetz", 1266),
    ("time with time zone", 1266),
    ("numeric", 1700),
    ("decimal", 1700),
    ("regclass", 2205),
    ("regtype", 2206),
    ("uuid", 2950),
    ("jsonb", 3802),
];

/// `to_regtype(name)`: the OID of a type, or NULL when there is no such type (where a
/// `::regtype` cast would fail). Drivers probe for optional types this way (psycopg asks for
/// `hstore`); Quantatom has PostgreSQL's built-in types only.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ToRegtypeFunction {
    signature: Signature,
}

impl ToRegtypeFunction {
    /// The function, ready to register.
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(Self {
            signature: Signature::exact(vec![DataType::Utf8], Volatility::Stable),
        })
    }

    /// The OID of the type named `name` (any case, `pg_catalog.` allowed), if it is built in.
    pub fn oid(name: &str) -> Option<i32> {
        let name = name.trim().to_ascii_lowercase();
        let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
        BUILTIN_TYPES
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, oid)| *oid)
    }
}

impl ScalarUDFImpl for ToRegtypeFunction {
    fn name(&self) -> &str {
        "to_regtype"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        match &args.args[0] {
            ColumnarValue::Scalar(name) => {
                let oid = name.try_as_str().flatten().and_then(Self::oid);
                Ok(ColumnarValue::Scalar(ScalarValue::Int32(oid)))
            }
            ColumnarValue::Array(names) => {
                let names = names
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .ok_or_else(|| {
                        DataFusionError::Internal("to_regtype: names are not Utf8".into())
                    })?;
                let oids: Int32Array = (0..names.len())
                    .map(|i| {
                        if names.is_null(i) {
                            None
                        } else {
                            Self::oid(names.value(i))
                        }
                    })
                    .collect();
                Ok(ColumnarValue::Array(std::sync::Arc::new(oids)))
            }
        }
    }
}

/// `pg_typeof(value)`: the name of the PostgreSQL type a value is sent to clients as
/// (`integer`, `text`, `numeric`, `timestamp with time zone`, `jsonb`, `integer[]`; an
/// untyped `NULL` is `unknown`). PostgreSQL answers a `regtype`, which prints as this name.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TypeofFunction {
    signature: Signature,
}

impl TypeofFunction {
    /// The function, ready to register.
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(Self {
            signature: Signature::any(1, Volatility::Immutable),
        })
    }

    /// The PostgreSQL name of the type of a value held in `field`.
    pub fn type_name(field: &Field) -> String {
        if let Some(tag) = quantatom_udfs::postgres_type_of(field) {
            return tag.to_owned();
        }
        match field.data_type() {
            DataType::List(item)
            | DataType::LargeList(item)
            | DataType::FixedSizeList(item, _)
            | DataType::ListView(item)
            | DataType::LargeListView(item) => format!("{}[]", Self::type_name(item)),
            other => postgres_name_of_type(other).unwrap_or("unknown").to_owned(),
        }
    }
}

impl ScalarUDFImpl for TypeofFunction {
    fn name(&self) -> &str {
        "pg_typeof"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let name = Self::type_name(&args.arg_fields[0]);
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(name))))
    }
}

/// PostgreSQL functions whose answer on Quantatom never varies:
///
/// - `pg_get_serial_sequence(table, column)`: NULL, Quantatom has no sequences (SQLAlchemy's
///   inspector asks for every column);
/// - `obj_description(oid[, catalog])`, `col_description(table, column)`,
///   `shobj_description(oid, catalog)`: NULL, no object has a comment (BI tools show these
///   next to tables and columns);
/// - `pg_is_in_recovery()`: false, every replica serves reads and writes;
/// - `pg_get_function_result(oid)`, `pg_get_function_arguments(oid)`: NULL, Quantatom's
///   functions are DataFusion's and have no PostgreSQL signatures (psql's `\df` lists only
///   functions outside `pg_catalog`, and there are none);
/// - `pg_get_indexdef(oid [, column, pretty])`, `pg_get_constraintdef(oid [, pretty])`: NULL,
///   cubes and dimensions have no indexes or constraints (the emulated catalog's rows describe
///   PostgreSQL's own system tables).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct FixedAnswerFunction {
    name: &'static str,
    signature: Signature,
    answer: ScalarValue,
}

impl FixedAnswerFunction {
    /// Every such function, ready to register.
    pub fn udfs() -> Vec<ScalarUDF> {
        let no_text = ScalarValue::Utf8(None);
        let text_pair =
            || Signature::exact(vec![DataType::Utf8, DataType::Utf8], Volatility::Stable);
        let oid_and = |second| {
            Signature::one_of(
                vec![
                    TypeSignature::Any(1),
                    TypeSignature::Exact(vec![DataType::Int64, second]),
                ],
                Volatility::Stable,
            )
        };
        [
            ("pg_get_serial_sequence", text_pair(), no_text.clone()),
            ("obj_description", oid_and(DataType::Utf8), no_text.clone()),
            (
                "shobj_description",
                oid_and(DataType::Utf8),
                no_text.clone(),
            ),
            ("col_description", oid_and(DataType::Int64), no_text),
            (
                "pg_is_in_recovery",
                Signature::nullary(Volatility::Stable),
                ScalarValue::Boolean(Some(false)),
            ),
            (
                "pg_get_function_result",
                Signature::any(1, Volatility::Stable),
                ScalarValue::Utf8(None),
            ),
            (
                "pg_get_function_arguments",
                Signature::any(1, Volatility::Stable),
                ScalarValue::Utf8(None),
            ),
            (
                "pg_get_indexdef",
                Signature::variadic_any(Volatility::Stable),
                ScalarValue::Utf8(None),
            ),
            (
                "pg_get_constraintdef",
                Signature::variadic_any(Volatility::Stable),
                ScalarValue::Utf8(None),
            ),
        ]
        .into_iter()
        .map(|(name, signature, answer)| {
            ScalarUDF::new_from_impl(Self {
                name,
                signature,
                answer,
            })
        })
        .collect()
    }
}

impl ScalarUDFImpl for FixedAnswerFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(self.answer.data_type())
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(self.answer.clone()))
    }
}

/// `pg_function_is_visible(oid)` and its siblings for catalog objects other than tables: every
/// such object Quantatom has lives in `pg_catalog`, which is always on the search path, so the
/// answer is true (NULL for NULL). psql's `\df` and SQLAlchemy's inspector ask these.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct IsVisibleFunction {
    name: &'static str,
    signature: Signature,
}

impl IsVisibleFunction {
    /// One function per kind of object, ready to register.
    pub fn udfs() -> Vec<ScalarUDF> {
        [
            "pg_function_is_visible",
            "pg_type_is_visible",
            "pg_collation_is_visible",
            "pg_operator_is_visible",
            "pg_opclass_is_visible",
            "pg_conversion_is_visible",
        ]
        .into_iter()
        .map(|name| {
            ScalarUDF::new_from_impl(Self {
                name,
                signature: Signature::any(1, Volatility::Stable),
            })
        })
        .collect()
    }
}

impl ScalarUDFImpl for IsVisibleFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        match &args.args[0] {
            ColumnarValue::Scalar(oid) => Ok(ColumnarValue::Scalar(ScalarValue::Boolean(
                (!oid.is_null()).then_some(true),
            ))),
            ColumnarValue::Array(oids) => {
                let visible: BooleanArray = (0..oids.len())
                    .map(|i| (!oids.is_null(i)).then_some(true))
                    .collect();
                Ok(ColumnarValue::Array(std::sync::Arc::new(visible)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_parses_as_postgres_and_types_resolve_by_any_name() {
        assert!(VersionFunction::text().starts_with("PostgreSQL 16.6 (Quantatom "));
        assert_eq!(ToRegtypeFunction::oid("Integer"), Some(23));
        assert_eq!(ToRegtypeFunction::oid("pg_catalog.timestamptz"), Some(1184));
        assert_eq!(ToRegtypeFunction::oid("hstore"), None);
    }
}

/// `information_schema._pg_expandarray(array)`: the array's elements with their 1-based
/// positions, as a list of `(x, n)` records (the server expands it with `unnest`, as PostgreSQL
/// returns it as a set). pgJDBC's `getPrimaryKeys` and `getIndexInfo` pair index column
/// numbers with their key positions through it.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ExpandArrayFunction {
    signature: Signature,
}

impl ExpandArrayFunction {
    /// The function, ready to register.
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(Self {
            signature: Signature::any(1, Volatility::Immutable),
        })
    }

    fn record_fields(element: &DataType) -> Fields {
        Fields::from(vec![
            Field::new("x", element.clone(), true),
            Field::new("n", DataType::Int32, false),
        ])
    }
}

impl ScalarUDFImpl for ExpandArrayFunction {
    fn name(&self) -> &str {
        "_pg_expandarray"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        match &args[0] {
            DataType::List(element) => Ok(DataType::new_list(
                DataType::Struct(Self::record_fields(element.data_type())),
                true,
            )),
            other => Err(DataFusionError::Plan(format!(
                "_pg_expandarray expects an array, got {other}"
            ))),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let lists = arrays[0].as_list::<i32>();
        let DataType::List(element) = lists.data_type() else {
            unreachable!("return_type checked the argument")
        };
        let positions: Int32Array = lists
            .offsets()
            .windows(2)
            .flat_map(|bounds| 1..=(bounds[1] - bounds[0]))
            .collect();
        let records = StructArray::try_new(
            Self::record_fields(element.data_type()),
            vec![Arc::clone(lists.values()), Arc::new(positions)],
            None,
        )?;
        let record_field = Arc::new(Field::new_list_field(records.data_type().clone(), true));
        let expanded = ListArray::try_new(
            record_field,
            lists.offsets().clone(),
            Arc::new(records),
            lists.nulls().cloned(),
        )?;
        Ok(ColumnarValue::Array(Arc::new(expanded)))
    }
}
