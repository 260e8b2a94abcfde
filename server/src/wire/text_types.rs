//! PostgreSQL's `uuid`, `json` and `jsonb`, held as text and sent as their own types.
//!
//! DataFusion has no such types. [`PostgresTypePlanner`] plans `x::uuid`, `x::json` and
//! `x::jsonb` (and `x::ltree`, `x::lquery`) as a cast to text whose field is tagged with the PostgreSQL type; the tag
//! survives into the result schema, where [`result_fields`] reports the column as that type
//! (clients then return a `UUID` object or parsed JSON), and [`for_the_wire`] puts binary
//! results in those types' binary forms (16 bytes for a uuid; a version byte before a jsonb
//! document). Parameters of those types, text or binary, reach the plan as text
//! ([`with_text_parameters`]). A text that is not a uuid, or not JSON, is refused with 22P02
//! when it is sent, as PostgreSQL refuses it on input. (A cast to one of these types already
//! refuses such a value, and writes a uuid canonically and a `jsonb` document normalised: see
//! [`quantatom_udfs::InputFunctionRule`].)

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryBuilder, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, IntervalMonthDayNano, Schema};
use datafusion::common::Result;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::expr::Cast;
use datafusion::logical_expr::planner::TypePlanner;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::sql::sqlparser::ast::{DataType as SqlType, ExactNumberInfo};
use datafusion_pg_catalog::pg_catalog::oid_type_planner::PgOidTypePlanner;
use datafusion_postgres::arrow_pg::datatypes::arrow_schema_to_pg_fields;
use pgwire::api::Type;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::api::stmt::StoredStatement;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::types::format::FormatOptions;
use quantatom_engine::postgres_column_names::postgres_column_name;
use quantatom_udfs::interval_text::postgres_interval;
use quantatom_udfs::json::{Document, JSON, JSONB};
use quantatom_udfs::ltree::{LQUERY, LTREE};
use quantatom_udfs::uuid::{UUID, UuidError, canonical_uuid, parse_uuid, uuid_text};
use quantatom_udfs::{postgres_type_of, tagged_text_field, unconstrained_numeric_field};

use super::errors::{api_error, user_error};

/// A PostgreSQL type Quantatom holds as text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TextBackedType {
    Uuid,
    Json,
    Jsonb,
}

impl TextBackedType {
    const ALL: [Self; 3] = [Self::Uuid, Self::Json, Self::Jsonb];

    fn name(self) -> &'static str {
        match self {
            Self::Uuid => UUID,
            Self::Json => JSON,
            Self::Jsonb => JSONB,
        }
    }

    fn wire_type(self) -> Type {
        match self {
            Self::Uuid => Type::UUID,
            Self::Json => Type::JSON,
            Self::Jsonb => Type::JSONB,
        }
    }

    fn of(field: &Field) -> Option<Self> {
        let name = postgres_type_of(field)?;
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }

    fn field(self) -> FieldRef {
        Arc::new(tagged_text_field("", self.name(), true))
    }
}

/// datafusion-pg-catalog's type planner (OID aliases, `pg_catalog.`-qualified names) plus
/// `uuid`, `json` and `jsonb` as tagged text and a bare `numeric` as
/// [`unconstrained_numeric_field`].
#[derive(Debug)]
pub(crate) struct PostgresTypePlanner;

impl TypePlanner for PostgresTypePlanner {
    fn plan_type_field(&self, sql_type: &SqlType) -> Result<Option<FieldRef>> {
        // Text is untagged text: DataFusion carries the operand's metadata through a cast to a
        // bare type, so `x::jsonb::text` would otherwise still be `jsonb`. (The type is the
        // one DataFusion gives text, `map_string_types_to_utf8view` being left on.)
        if matches!(
            sql_type,
            SqlType::Text | SqlType::Varchar(None) | SqlType::CharacterVarying(None)
        ) {
            return Ok(Some(Arc::new(Field::new("text", DataType::Utf8View, true))));
        }
        // A bare `numeric` keeps the digits of what it casts (`quantatom_udfs::numeric`).
        if matches!(
            sql_type,
            SqlType::Numeric(ExactNumberInfo::None)
                | SqlType::Decimal(ExactNumberInfo::None)
                | SqlType::Dec(ExactNumberInfo::None)
        ) {
            return Ok(Some(Arc::new(unconstrained_numeric_field())));
        }
        let named = match sql_type {
            SqlType::Uuid => Some(TextBackedType::Uuid),
            SqlType::JSON => Some(TextBackedType::Json),
            SqlType::JSONB => Some(TextBackedType::Jsonb),
            SqlType::Custom(name, modifiers) if modifiers.is_empty() => {
                let name = name.to_string().to_ascii_lowercase();
                let name = name.strip_prefix("pg_catalog.").unwrap_or(&name).to_owned();
                TextBackedType::ALL
                    .into_iter()
                    .find(|kind| kind.name() == name)
            }
            _ => None,
        };
        if let Some(kind) = named {
            return Ok(Some(kind.field()));
        }
        // Paths and path patterns are text tagged as such: `||` and `~` then act on paths.
        if let SqlType::Custom(name, modifiers) = sql_type
            && modifiers.is_empty()
            && let Some(tag) = [LTREE, LQUERY]
                .into_iter()
                .find(|tag| name.to_string().eq_ignore_ascii_case(tag))
        {
            return Ok(Some(Arc::new(tagged_text_field("", tag, true))));
        }
        PgOidTypePlanner.plan_type_field(sql_type)
    }
}

/// The RowDescription of `schema` in `format`: datafusion-postgres's, with columns named as
/// PostgreSQL names them (see [`quantatom_engine::postgres_column_names`]) and tagged text
/// columns reported as their PostgreSQL type.
pub(crate) fn result_fields(
    schema: &Schema,
    format: &Format,
    options: Option<Arc<FormatOptions>>,
) -> PgWireResult<Vec<FieldInfo>> {
    let fields = arrow_schema_to_pg_fields(schema, format, options)?;
    Ok(fields
        .into_iter()
        .zip(schema.fields())
        .map(|(info, field)| {
            let name = postgres_column_name(field);
            let kind = TextBackedType::of(field);
            if kind.is_none() && name == info.name() {
                return info;
            }
            let described = FieldInfo::new(
                name.to_owned(),
                info.table_id(),
                info.column_id(),
                kind.map_or_else(|| info.datatype().clone(), TextBackedType::wire_type),
                info.format(),
            )
            .with_format_options(Arc::clone(info.format_options()));
            match kind {
                // The size and modifier datafusion-postgres gave are text's.
                Some(_) => described,
                None => described
                    .with_type_size(info.type_size())
                    .with_type_modifier(info.type_modifier()),
            }
        })
        .collect())
}

/// `batch` ready for arrow-pg's encoder under `fields`: tagged text columns sent in binary
/// become their binary forms (the encoder writes binary columns' bytes as they are); uuids
/// are checked either way.
pub(crate) fn for_the_wire(batch: RecordBatch, fields: &[FieldInfo]) -> PgWireResult<RecordBatch> {
    let schema = batch.schema();
    let converted: Vec<Option<ArrayRef>> = schema
        .fields()
        .iter()
        .zip(fields)
        .zip(batch.columns())
        .map(|((field, info), column)| match TextBackedType::of(field) {
            Some(kind) => wire_form(kind, column, info.format()),
            None => Ok(None),
        })
        .collect::<PgWireResult<_>>()?;
    if converted.iter().all(Option::is_none) {
        return Ok(batch);
    }
    let columns: Vec<ArrayRef> = converted
        .into_iter()
        .zip(batch.columns())
        .map(|(new, old)| new.unwrap_or_else(|| Arc::clone(old)))
        .collect();
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .zip(&columns)
        .map(|(field, column)| {
            field
                .as_ref()
                .clone()
                .with_data_type(column.data_type().clone())
        })
        .collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(api_error)
}

/// `column` of `kind` as sent in `format`: `None` when its text goes out as it is (after it
/// is checked to be a uuid or JSON), else its binary form.
fn wire_form(
    kind: TextBackedType,
    column: &ArrayRef,
    format: FieldFormat,
) -> PgWireResult<Option<ArrayRef>> {
    let text_column =
        datafusion::arrow::compute::cast(column, &DataType::Utf8).map_err(api_error)?;
    let text = text_column.as_string::<i32>();
    let binary = format == FieldFormat::Binary;
    let mut bytes = BinaryBuilder::new();
    for value in text.iter() {
        let Some(value) = value else {
            bytes.append_null();
            continue;
        };
        match kind {
            TextBackedType::Uuid => {
                let uuid = parse_uuid(value).map_err(uuid_error)?;
                bytes.append_value(uuid);
            }
            TextBackedType::Json => bytes.append_value(checked_json(value)?.as_bytes()),
            TextBackedType::Jsonb => {
                bytes.append_value([&[1u8][..], checked_json(value)?.as_bytes()].concat())
            }
        }
    }
    Ok(binary.then(|| Arc::new(bytes.finish()) as ArrayRef))
}

/// How a parameter is given to arrow-pg's decoder.
enum Readable {
    /// A `uuid`/`json`/`jsonb` parameter, as text.
    TextBacked(TextBackedType),
    /// An interval sent as text that PostgreSQL's interval input reads, in binary: arrow-pg
    /// reads fewer forms (not `-1 days +02:00:00` or `02:30`, which PostgreSQL sends).
    Interval(IntervalMonthDayNano),
}

/// `portal` with its `uuid`/`json`/`jsonb` parameters turned into text parameters, which
/// arrow-pg's decoder (it has no such types) reads, and its interval parameters sent as text
/// read as PostgreSQL reads them ([`postgres_interval`]) and turned into binary ones; `None`
/// when it has neither. A parameter's type is the one the client declared, else the one the
/// server described (`wire_types`).
pub(crate) fn with_text_parameters<S: Clone + Default>(
    portal: &Portal<S>,
    wire_types: &[Type],
) -> PgWireResult<Option<Portal<S>>> {
    let declared: Vec<Option<Type>> = (0..portal.parameter_len())
        .map(|index| {
            portal
                .statement
                .parameter_types
                .get(index)
                .cloned()
                .flatten()
        })
        .collect();
    let readable_at = |index: usize| -> Option<Readable> {
        let sent = declared[index]
            .clone()
            .filter(|declared| *declared != Type::UNKNOWN)
            .or_else(|| wire_types.get(index).cloned())?;
        if sent == Type::INTERVAL && !portal.parameter_format.is_binary(index) {
            let text = std::str::from_utf8(portal.parameters[index].as_deref()?).ok()?;
            return postgres_interval(text).map(Readable::Interval);
        }
        TextBackedType::ALL
            .into_iter()
            .find(|kind| kind.wire_type() == sent)
            .map(Readable::TextBacked)
    };
    let readable: Vec<Option<Readable>> = (0..portal.parameter_len()).map(readable_at).collect();
    if readable.iter().all(Option::is_none) {
        return Ok(None);
    }
    let mut parameter_types = declared.clone();
    let mut parameters = portal.parameters.clone();
    let mut formats: Vec<i16> = (0..portal.parameter_len())
        .map(|index| i16::from(portal.parameter_format.is_binary(index)))
        .collect();
    for (index, readable) in readable.into_iter().enumerate() {
        match readable {
            None => {}
            Some(Readable::TextBacked(kind)) => {
                parameter_types[index] = Some(Type::TEXT);
                if let Some(bytes) = &parameters[index] {
                    let binary = portal.parameter_format.is_binary(index);
                    parameters[index] = Some(Bytes::from(text_of_parameter(kind, bytes, binary)?));
                }
                formats[index] = 0;
            }
            Some(Readable::Interval(interval)) => {
                // PostgreSQL's binary interval: microseconds, days, months.
                let micros = interval.nanoseconds / 1_000;
                let binary = [
                    &micros.to_be_bytes()[..],
                    &interval.days.to_be_bytes(),
                    &interval.months.to_be_bytes(),
                ]
                .concat();
                parameter_types[index] = Some(Type::INTERVAL);
                parameters[index] = Some(Bytes::from(binary));
                formats[index] = 1;
            }
        }
    }
    let statement = StoredStatement::new(
        portal.statement.id.clone(),
        portal.statement.statement.clone(),
        parameter_types,
    );
    let mut text_portal = Portal::default();
    text_portal.name.clone_from(&portal.name);
    text_portal.statement = Arc::new(statement);
    text_portal.parameter_format = Format::Individual(formats);
    text_portal.parameters = parameters;
    text_portal.result_column_format = portal.result_column_format.clone();
    text_portal.state = Arc::clone(&portal.state);
    Ok(Some(text_portal))
}

/// The text of a `kind` parameter sent as `bytes` (binary when `binary`).
fn text_of_parameter(kind: TextBackedType, bytes: &[u8], binary: bool) -> PgWireResult<String> {
    let text = |bytes: &[u8]| {
        String::from_utf8(bytes.to_vec()).map_err(|_| {
            user_error(
                "22021",
                format!("invalid byte sequence in a {} parameter", kind.name()),
            )
        })
    };
    match (kind, binary) {
        (TextBackedType::Uuid, true) => <&[u8; 16]>::try_from(bytes).map(uuid_text).map_err(|_| {
            user_error(
                "22P03",
                "incorrect binary data format in a uuid parameter".to_owned(),
            )
        }),
        (TextBackedType::Uuid, false) => canonical_uuid(&text(bytes)?).map_err(uuid_error),
        (TextBackedType::Jsonb, true) => match bytes.split_first() {
            Some((1, document)) => text(document),
            _ => Err(user_error(
                "22P03",
                "unsupported jsonb version number".to_owned(),
            )),
        },
        (_, _) => text(bytes),
    }
}

/// `value` when it is a JSON document; 22P02 otherwise, as PostgreSQL's `json` input.
fn checked_json(value: &str) -> PgWireResult<&str> {
    match Document::parse(value) {
        Ok(_) => Ok(value),
        Err(error) => Err(user_error(error.sqlstate(), error.to_string())),
    }
}

fn uuid_error(error: UuidError) -> PgWireError {
    user_error(error.sqlstate(), error.to_string())
}

/// The wire types of `plan`'s parameters that it casts to `uuid`, `json` or `jsonb`, by
/// placeholder (`$1`, ...), so that Describe reports them as PostgreSQL does and clients that
/// encode by the described type (asyncpg) send a UUID as a uuid.
pub(crate) fn text_parameter_types(plan: &LogicalPlan) -> HashMap<String, Type> {
    let mut types = HashMap::new();
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|expr| {
                if let Expr::Cast(Cast { expr: cast, field }) = expr
                    && let Expr::Placeholder(placeholder) = cast.as_ref()
                    && let Some(kind) = TextBackedType::of(field)
                {
                    types.insert(placeholder.id.clone(), kind.wire_type());
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    types
}

/// Installs [`PostgresTypePlanner`] in `context` (after datafusion-pg-catalog installed its own).
pub(crate) fn install(context: &datafusion::prelude::SessionContext) {
    use datafusion::execution::session_state::SessionStateBuilder;
    let state = context.state_ref();
    let existing = state.read().clone();
    *state.write() = SessionStateBuilder::new_from_existing(existing)
        .with_type_planner(Arc::new(PostgresTypePlanner))
        .build();
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::StringArray;

    use super::*;

    fn jsonb_text() -> ArrayRef {
        Arc::new(StringArray::from(vec![r#"{"a":1}"#]))
    }

    #[test]
    fn binary_forms_of_uuid_and_jsonb() {
        let uuid: ArrayRef = Arc::new(StringArray::from(vec![
            Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            None,
        ]));
        let bytes = wire_form(TextBackedType::Uuid, &uuid, FieldFormat::Binary)
            .unwrap()
            .unwrap();
        assert_eq!(bytes.as_binary::<i32>().value(0)[..2], [0xa0, 0xee]);
        assert!(bytes.is_null(1));
        assert!(
            wire_form(TextBackedType::Uuid, &uuid, FieldFormat::Text)
                .unwrap()
                .is_none()
        );
        let jsonb = wire_form(TextBackedType::Jsonb, &jsonb_text(), FieldFormat::Binary)
            .unwrap()
            .unwrap();
        assert_eq!(jsonb.as_binary::<i32>().value(0), b"\x01{\"a\":1}");
        let bad: ArrayRef = Arc::new(StringArray::from(vec!["not-a-uuid"]));
        assert!(wire_form(TextBackedType::Uuid, &bad, FieldFormat::Text).is_err());
        assert!(wire_form(TextBackedType::Json, &bad, FieldFormat::Text).is_err());
        assert!(
            wire_form(TextBackedType::Json, &jsonb_text(), FieldFormat::Text)
                .unwrap()
                .is_none()
        );
    }
}
