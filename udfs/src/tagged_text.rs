//! Text columns that hold a PostgreSQL type DataFusion does not have (`ltree`, `lquery`,
//! `uuid`, `json`): plain `Utf8` whose field carries the type's name in its metadata, so that
//! planners and the wire can tell them from text. The tag survives casts, projections and
//! function results that set it.

use std::collections::HashMap;

use datafusion::arrow::datatypes::{DataType, Field};

/// The field-metadata key naming the PostgreSQL type a text column holds.
pub const POSTGRES_TYPE_KEY: &str = "quantatom.postgres_type";

/// A nullable text field named `name` tagged as holding `postgres_type`.
pub fn tagged_text_field(name: &str, postgres_type: &str, nullable: bool) -> Field {
    let metadata = HashMap::from([(POSTGRES_TYPE_KEY.to_owned(), postgres_type.to_owned())]);
    Field::new(name, DataType::Utf8, nullable).with_metadata(metadata)
}

/// The PostgreSQL type a field is tagged with, if any.
pub fn postgres_type_of(field: &Field) -> Option<&str> {
    field.metadata().get(POSTGRES_TYPE_KEY).map(String::as_str)
}
