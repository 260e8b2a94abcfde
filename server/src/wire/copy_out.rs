//! `COPY (query) TO STDOUT` and `COPY table TO STDOUT`, in PostgreSQL's text, CSV and binary
//! formats: what `psql \copy ... to` sends, and the fastest way to take a grid out.
//!
//! DataFusion's own `COPY` writes files on the server; a client wants the rows on its own
//! connection, so this statement is recognised before DataFusion sees it, its query planned in
//! the connection's session, and each row encoded into a CopyData message: values in their
//! PostgreSQL text forms (arrow-pg's, in the session's formats) escaped by
//! [`CopyTextEncoder`], or in binary by pgwire's encoder.

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::Schema;
use datafusion::common::DataFusionError;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Statement,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion_postgres::arrow_pg::datatypes::arrow_schema_to_pg_fields;
use datafusion_postgres::arrow_pg::encoder::Encoder;
use futures::StreamExt;
use pgwire::api::Type;
use pgwire::api::portal::Format;
use pgwire::api::results::{CopyEncoder, CopyResponse, FieldFormat, FieldInfo, Response};
use pgwire::error::PgWireResult;
use pgwire::messages::copy::CopyData;
use pgwire::types::ToSqlText;
use pgwire::types::format::FormatOptions;
use postgres_types::{IsNull, ToSql};
use quantatom_engine::postgres_column_names::postgres_column_name;

use super::cells::{ColumnCells, trim_fractional_zeros};
use super::data_rows::ROW_BUFFER_STEP;
use super::errors::api_error;
use super::session_plans::{ParsedText, parse_text, plan_query};
use super::starts_with_keyword;

/// The output format and options of one `COPY ... TO STDOUT`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CopyOut {
    /// The query whose rows are copied.
    query: String,
    format: CopyFormat,
    header: bool,
    delimiter: Option<char>,
    null: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CopyFormat {
    Text,
    Csv,
    Binary,
}

impl CopyOut {
    /// Recognises `sql` as a single `COPY ... TO STDOUT`; anything else is `None` and goes
    /// the usual way (including DataFusion's own `COPY ... TO 'file'`).
    pub(crate) fn parse(sql: &str) -> Option<Result<Self, DataFusionError>> {
        if !starts_with_keyword(sql, "copy") {
            return None;
        }
        let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
        let [
            Statement::Copy {
                source,
                to: true,
                target: CopyTarget::Stdout,
                options,
                legacy_options,
                ..
            },
        ] = statements.as_slice()
        else {
            return None;
        };
        let query = match source {
            CopySource::Query(query) => query.to_string(),
            CopySource::Table {
                table_name,
                columns,
            } if columns.is_empty() => format!("SELECT * FROM {table_name}"),
            CopySource::Table {
                table_name,
                columns,
            } => {
                let columns: Vec<String> = columns.iter().map(ToString::to_string).collect();
                format!("SELECT {} FROM {table_name}", columns.join(", "))
            }
        };
        let mut copy = CopyOut {
            query,
            format: CopyFormat::Text,
            header: false,
            delimiter: None,
            null: None,
        };
        Some(copy.apply_options(options, legacy_options).map(|()| copy))
    }

    fn apply_options(
        &mut self,
        options: &[CopyOption],
        legacy: &[CopyLegacyOption],
    ) -> Result<(), DataFusionError> {
        let unsupported =
            |what: String| DataFusionError::NotImplemented(format!("COPY TO STDOUT option {what}"));
        for option in options {
            match option {
                CopyOption::Format(name) => {
                    self.format = match name.value.to_ascii_lowercase().as_str() {
                        "text" => CopyFormat::Text,
                        "csv" => CopyFormat::Csv,
                        "binary" => CopyFormat::Binary,
                        other => {
                            return Err(DataFusionError::Plan(format!(
                                "COPY format \"{other}\" not recognized"
                            )));
                        }
                    }
                }
                CopyOption::Header(header) => self.header = *header,
                CopyOption::Delimiter(delimiter) => self.delimiter = Some(*delimiter),
                CopyOption::Null(null) => self.null = Some(null.clone()),
                CopyOption::Encoding(encoding) if encoding.eq_ignore_ascii_case("utf8") => {}
                other => return Err(unsupported(other.to_string())),
            }
        }
        for option in legacy {
            match option {
                CopyLegacyOption::Binary => self.format = CopyFormat::Binary,
                CopyLegacyOption::Delimiter(delimiter) => self.delimiter = Some(*delimiter),
                CopyLegacyOption::Null(null) => self.null = Some(null.clone()),
                CopyLegacyOption::Header => self.header = true,
                CopyLegacyOption::Csv(csv_options) => {
                    self.format = CopyFormat::Csv;
                    for csv_option in csv_options {
                        match csv_option {
                            CopyLegacyCsvOption::Header => self.header = true,
                            other => return Err(unsupported(other.to_string())),
                        }
                    }
                }
                other => return Err(unsupported(other.to_string())),
            }
        }
        if self
            .delimiter
            .is_some_and(|delimiter| !delimiter.is_ascii())
        {
            return Err(DataFusionError::NotImplemented(
                "COPY delimiter must be a single one-byte character".into(),
            ));
        }
        if self.header && self.format != CopyFormat::Csv {
            return Err(DataFusionError::Plan(
                "COPY HEADER available only in CSV mode".into(),
            ));
        }
        Ok(())
    }

    /// Plans the query in `session` and streams its rows as CopyData, values written in the
    /// session's formats (`options`).
    pub(crate) async fn run(
        &self,
        session: &SessionContext,
        options: FormatOptions,
    ) -> PgWireResult<Response> {
        // Planned as the same query sent on its own is, so that the header names its columns
        // as PostgreSQL does.
        let frame = match parse_text(&self.query) {
            ParsedText::Query(plain) => {
                let plan = plan_query(&session.state(), plain, &[]).await?;
                session.execute_logical_plan(plan).await
            }
            ParsedText::Other { .. } => session.sql(&self.query).await,
        }
        .map_err(api_error)?;
        let arrow_schema = Arc::new(frame.schema().as_arrow().clone());
        let fields = Arc::new(arrow_schema_to_pg_fields(
            &arrow_schema,
            &Format::UnifiedText,
            None,
        )?);
        let columns = fields.len();
        let batches = frame.execute_stream().await.map_err(api_error)?;
        let mut encoder = self.encoder(Arc::clone(&fields), options);
        let header = if self.header {
            Some(header_row(&mut encoder, &arrow_schema))
        } else {
            None
        };
        let rows = batches
            .map(move |batch| match batch {
                Ok(batch) => encode_batch(&batch, &fields, &mut encoder),
                Err(e) => vec![Err(api_error(e))],
            })
            .flat_map(futures::stream::iter);
        let data = futures::stream::iter(header).chain(rows);
        let format_code = if self.format == CopyFormat::Binary {
            1
        } else {
            0
        };
        Ok(Response::CopyOut(CopyResponse::new(
            format_code,
            columns,
            data,
        )))
    }

    fn encoder(&self, fields: Arc<Vec<FieldInfo>>, options: FormatOptions) -> CopyRows {
        let columns = fields.len();
        // `apply_options` checked that the delimiter is one byte.
        let delimiter = |default: u8| self.delimiter.map_or(default, |delimiter| delimiter as u8);
        match self.format {
            CopyFormat::Binary => CopyRows::Binary(CopyEncoder::new_binary(fields)),
            CopyFormat::Text => {
                let null = self.null.as_deref().unwrap_or("\\N");
                CopyRows::Text(CopyTextEncoder::new(
                    columns,
                    options,
                    delimiter(b'\t'),
                    null,
                    None,
                ))
            }
            CopyFormat::Csv => {
                let null = self.null.as_deref().unwrap_or("");
                CopyRows::Text(CopyTextEncoder::new(
                    columns,
                    options,
                    delimiter(b','),
                    null,
                    Some(b'"'),
                ))
            }
        }
    }
}

/// How a COPY's rows are encoded.
enum CopyRows {
    Binary(CopyEncoder),
    Text(CopyTextEncoder),
}

impl Encoder for CopyRows {
    type Item = CopyData;

    fn encode_field<T>(&mut self, value: &T, field: &FieldInfo) -> PgWireResult<()>
    where
        T: ToSql + ToSqlText + Sized,
    {
        match self {
            Self::Binary(binary) => binary.encode_field(value),
            Self::Text(text) => Encoder::encode_field(text, value, field),
        }
    }

    fn take_row(&mut self) -> CopyData {
        match self {
            Self::Binary(binary) => binary.take_copy(),
            Self::Text(text) => text.take_row(),
        }
    }
}

/// Rows of a text or CSV `COPY`, as PostgreSQL writes them: each value's text form in the
/// session's formats (DateStyle, TimeZone, ...), escaped for the format, one CopyData per row.
/// Values are written straight into the row and escaped there only when they need it; the
/// buffers and options are reused from value to value (pgwire's CopyEncoder allocates a
/// buffer and default format options for every value, and ignores the session's).
struct CopyTextEncoder {
    row: BytesMut,
    /// A value that needs escaping, moved out of the row while it is written back escaped.
    value: BytesMut,
    options: FormatOptions,
    columns: usize,
    column: usize,
    delimiter: u8,
    null: Vec<u8>,
    /// The quote character in CSV; text format escapes with backslashes instead.
    csv_quote: Option<u8>,
    /// By byte: the letter the text format writes after a backslash for it, or 0 when it is
    /// written as it is; in CSV, 1 for the bytes that make a value quoted.
    special: [u8; 256],
}

impl CopyTextEncoder {
    fn new(
        columns: usize,
        options: FormatOptions,
        delimiter: u8,
        null: &str,
        csv_quote: Option<u8>,
    ) -> Self {
        let mut special = [0; 256];
        match csv_quote {
            None => {
                for (byte, letter) in [
                    (b'\n', b'n'),
                    (b'\r', b'r'),
                    (b'\t', b't'),
                    (0x08, b'b'),
                    (0x0b, b'v'),
                    (0x0c, b'f'),
                    (b'\\', b'\\'),
                ] {
                    special[usize::from(byte)] = letter;
                }
                // Any other delimiter is escaped as itself (a tab is still `\t`).
                if special[usize::from(delimiter)] == 0 {
                    special[usize::from(delimiter)] = delimiter;
                }
            }
            // PostgreSQL quotes a value holding the delimiter, the quote or a line break.
            Some(quote) => {
                for byte in [delimiter, quote, b'\n', b'\r'] {
                    special[usize::from(byte)] = 1;
                }
            }
        }
        Self {
            row: BytesMut::with_capacity(ROW_BUFFER_STEP),
            value: BytesMut::with_capacity(64),
            options,
            columns,
            column: 0,
            delimiter,
            null: null.as_bytes().to_vec(),
            csv_quote,
            special,
        }
    }

    /// Escapes the value written at `start` of the row for the format, in place.
    fn escape_value_from(&mut self, start: usize) {
        let value = &self.row[start..];
        let first_special = value
            .iter()
            .position(|&byte| self.special[usize::from(byte)] != 0);
        match self.csv_quote {
            None => {
                let Some(first_special) = first_special else {
                    return;
                };
                let start = start + first_special;
                self.value.clear();
                self.value.put_slice(&self.row[start..]);
                self.row.truncate(start);
                for &byte in self.value.iter() {
                    match self.special[usize::from(byte)] {
                        0 => self.row.put_u8(byte),
                        letter => self.row.put_slice(&[b'\\', letter]),
                    }
                }
            }
            Some(quote) => {
                // Also quoted: a value equal to the NULL string (so that an empty string is
                // not read back as NULL) or to the end-of-data marker.
                if first_special.is_none() && value != self.null.as_slice() && value != b"\\." {
                    return;
                }
                self.value.clear();
                self.value.put_slice(value);
                self.row.truncate(start);
                self.row.put_u8(quote);
                for &byte in self.value.iter() {
                    if byte == quote {
                        self.row.put_u8(quote);
                    }
                    self.row.put_u8(byte);
                }
                self.row.put_u8(quote);
            }
        }
    }
}

impl Encoder for CopyTextEncoder {
    type Item = CopyData;

    fn encode_field<T>(&mut self, value: &T, field: &FieldInfo) -> PgWireResult<()>
    where
        T: ToSql + ToSqlText + Sized,
    {
        if self.column > 0 {
            self.row.put_u8(self.delimiter);
        }
        let start = self.row.len();
        match value.to_sql_text(field.datatype(), &mut self.row, &self.options)? {
            IsNull::Yes => self.row.put_slice(&self.null),
            IsNull::No => {
                trim_fractional_zeros(&mut self.row, start, field.datatype());
                self.escape_value_from(start)
            }
        }
        self.column += 1;
        Ok(())
    }

    fn take_row(&mut self) -> CopyData {
        debug_assert_eq!(self.column, self.columns, "a row holds every column");
        self.row.put_u8(b'\n');
        self.column = 0;
        CopyData::new(self.row.split().freeze())
    }
}

/// The CSV header line: the column names (as PostgreSQL names them), quoted as values are.
fn header_row(encoder: &mut CopyRows, schema: &Schema) -> PgWireResult<CopyData> {
    for field in schema.fields() {
        let name = postgres_column_name(field);
        let described = FieldInfo::new(name.to_owned(), None, None, Type::TEXT, FieldFormat::Text);
        encoder.encode_field(&Some(name), &described)?;
    }
    Ok(encoder.take_row())
}

/// One CopyData message per row of `batch`.
fn encode_batch(
    batch: &RecordBatch,
    fields: &[FieldInfo],
    encoder: &mut CopyRows,
) -> Vec<PgWireResult<CopyData>> {
    let columns = ColumnCells::of_batch(batch, fields);
    (0..batch.num_rows())
        .map(|row| {
            for (cells, field) in columns.iter().zip(fields) {
                cells.encode(encoder, row, field)?;
            }
            Ok(encoder.take_row())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_copy_to_stdout_in_both_syntaxes() {
        let copy = CopyOut::parse(
            "COPY (SELECT code FROM dim.version) TO STDOUT WITH (FORMAT csv, HEADER)",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (copy.format, copy.header, copy.query.as_str()),
            (CopyFormat::Csv, true, "SELECT code FROM dim.version")
        );
        // psql's \copy sends the pre-9.0 spelling.
        let copy = CopyOut::parse("COPY ( SELECT 1 ) TO STDOUT csv header")
            .unwrap()
            .unwrap();
        assert_eq!((copy.format, copy.header), (CopyFormat::Csv, true));
        let copy = CopyOut::parse("copy dim.version (code, name) to stdout")
            .unwrap()
            .unwrap();
        assert_eq!(
            (copy.format, copy.query.as_str()),
            (CopyFormat::Text, "SELECT code, name FROM dim.version")
        );
        assert!(CopyOut::parse("COPY (SELECT 1) TO '/tmp/x.parquet'").is_none());
        assert!(CopyOut::parse("SELECT 1").is_none());
        // A query whose fourth byte falls inside a character is not a COPY (it used to panic).
        assert!(CopyOut::parse("aéé").is_none());
        assert!(
            CopyOut::parse("COPY (SELECT 1) TO STDOUT (FORMAT text, HEADER)")
                .unwrap()
                .is_err()
        );
    }
}
