//! `COPY (query) TO STDOUT` and `COPY table TO STDOUT`, in PostgreSQL's text, CSV and binary
//! formats: what `psql \copy ... to` sends, and the fastest way to take a grid out.
//!
//! DataFusion's own `COPY` writes files on the server; a client wants the rows on its own
//! connection, so this statement is recognised before DataFusion sees it, its query planned in
//! the connection's session, and the batches encoded by arrow-pg into CopyData messages.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::common::DataFusionError;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Statement,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion_postgres::arrow_pg::datatypes::arrow_schema_to_pg_fields;
use datafusion_postgres::arrow_pg::encoder::encode_value;
use futures::StreamExt;
use pgwire::api::portal::Format;
use pgwire::api::results::{CopyCsvOptions, CopyEncoder, CopyResponse, CopyTextOptions, FieldInfo, Response};
use pgwire::error::PgWireResult;
use pgwire::messages::copy::CopyData;

use super::errors::api_error;

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
        let trimmed = sql.trim_start();
        if trimmed.len() < 4 || !trimmed[..4].eq_ignore_ascii_case("copy") {
            return None;
        }
        let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
        let [Statement::Copy { source, to: true, target: CopyTarget::Stdout, options, legacy_options, .. }] =
            statements.as_slice()
        else {
            return None;
        };
        let query = match source {
            CopySource::Query(query) => query.to_string(),
            CopySource::Table { table_name, columns } if columns.is_empty() => format!("SELECT * FROM {table_name}"),
            CopySource::Table { table_name, columns } => {
                let columns: Vec<String> = columns.iter().map(ToString::to_string).collect();
                format!("SELECT {} FROM {table_name}", columns.join(", "))
            }
        };
        let mut copy = CopyOut { query, format: CopyFormat::Text, header: false, delimiter: None, null: None };
        Some(copy.apply_options(options, legacy_options).map(|()| copy))
    }

    fn apply_options(&mut self, options: &[CopyOption], legacy: &[CopyLegacyOption]) -> Result<(), DataFusionError> {
        let unsupported = |what: String| DataFusionError::NotImplemented(format!("COPY TO STDOUT option {what}"));
        for option in options {
            match option {
                CopyOption::Format(name) => {
                    self.format = match name.value.to_ascii_lowercase().as_str() {
                        "text" => CopyFormat::Text,
                        "csv" => CopyFormat::Csv,
                        "binary" => CopyFormat::Binary,
                        other => return Err(DataFusionError::Plan(format!("COPY format \"{other}\" not recognized"))),
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
        if self.header && self.format != CopyFormat::Csv {
            return Err(DataFusionError::Plan("COPY HEADER available only in CSV mode".into()));
        }
        Ok(())
    }

    /// Plans the query in `session` and streams its rows as CopyData.
    pub(crate) async fn run(&self, session: &SessionContext) -> PgWireResult<Response> {
        let frame = session.sql(&self.query).await.map_err(api_error)?;
        let arrow_schema = Arc::new(frame.schema().as_arrow().clone());
        let fields = Arc::new(arrow_schema_to_pg_fields(&arrow_schema, &Format::UnifiedText, None)?);
        let columns = fields.len();
        let batches = frame.execute_stream().await.map_err(api_error)?;
        let mut encoder = self.encoder(Arc::clone(&fields));
        let header = if self.header { Some(header_row(&mut encoder, &fields)) } else { None };
        let rows = batches
            .map(move |batch| match batch {
                Ok(batch) => encode_batch(&batch, &fields, &mut encoder),
                Err(e) => vec![Err(api_error(e))],
            })
            .flat_map(futures::stream::iter);
        let data = futures::stream::iter(header).chain(rows);
        let format_code = if self.format == CopyFormat::Binary { 1 } else { 0 };
        Ok(Response::CopyOut(CopyResponse::new(format_code, columns, data)))
    }

    fn encoder(&self, fields: Arc<Vec<FieldInfo>>) -> CopyEncoder {
        match self.format {
            CopyFormat::Binary => CopyEncoder::new_binary(fields),
            CopyFormat::Text => {
                let mut options = CopyTextOptions::default();
                if let Some(delimiter) = self.delimiter {
                    options.delimiter = delimiter.to_string().into();
                }
                if let Some(null) = &self.null {
                    options.null_string = null.as_str().into();
                }
                CopyEncoder::new_text(fields, options)
            }
            CopyFormat::Csv => {
                let mut options = CopyCsvOptions::default();
                if let Some(delimiter) = self.delimiter {
                    options.delimiter = delimiter.to_string().into();
                }
                if let Some(null) = &self.null {
                    options.null_string = null.as_str().into();
                }
                CopyEncoder::new_csv(fields, options)
            }
        }
    }
}

/// The CSV header line: the column names, quoted as values are.
fn header_row(encoder: &mut CopyEncoder, fields: &[FieldInfo]) -> PgWireResult<CopyData> {
    for field in fields {
        encoder.encode_field(&Some(field.name()))?;
    }
    Ok(encoder.take_copy())
}

/// One CopyData message per row of `batch`.
fn encode_batch(batch: &RecordBatch, fields: &[FieldInfo], encoder: &mut CopyEncoder) -> Vec<PgWireResult<CopyData>> {
    let schema = batch.schema();
    (0..batch.num_rows())
        .map(|row| {
            for (column, (array, field)) in batch.columns().iter().zip(fields).enumerate() {
                encode_value(encoder, array, row, schema.field(column), field)?;
            }
            Ok(encoder.take_copy())
        })
        .collect()
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_copy_to_stdout_in_both_syntaxes() {
        let copy = CopyOut::parse("COPY (SELECT code FROM dim.version) TO STDOUT WITH (FORMAT csv, HEADER)").unwrap().unwrap();
        assert_eq!((copy.format, copy.header, copy.query.as_str()), (CopyFormat::Csv, true, "SELECT code FROM dim.version"));
        // psql's \copy sends the pre-9.0 spelling.
        let copy = CopyOut::parse("COPY ( SELECT 1 ) TO STDOUT csv header").unwrap().unwrap();
        assert_eq!((copy.format, copy.header), (CopyFormat::Csv, true));
        let copy = CopyOut::parse("copy dim.version (code, name) to stdout").unwrap().unwrap();
        assert_eq!((copy.format, copy.query.as_str()), (CopyFormat::Text, "SELECT code, name FROM dim.version"));
        assert!(CopyOut::parse("COPY (SELECT 1) TO '/tmp/x.parquet'").is_none());
        assert!(CopyOut::parse("SELECT 1").is_none());
        assert!(CopyOut::parse("COPY (SELECT 1) TO STDOUT (FORMAT text, HEADER)").unwrap().is_err());
    }
}
