//! The in-process database: SQL straight into an engine session.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Float32Type, Float64Type};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::DataFusionError;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::{DFParser, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use quantatom_engine::mdf::MdfError;
use quantatom_engine::mdf::transaction::SessionWrites;
use quantatom_server::wire::float_text::FloatText;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};

use crate::render_text;

/// An engine error, with its SQLSTATE for `statement error (code)` records.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InProcessError(#[from] DataFusionError);

/// One engine session.
pub struct InProcessDb {
    session: SessionContext,
}

impl InProcessDb {
    /// Wraps a session, which keeps transaction blocks as a server connection does.
    pub fn new(session: SessionContext) -> Self {
        session
            .state_ref()
            .write()
            .config_mut()
            .set_extension(Arc::new(SessionWrites::default()));
        Self { session }
    }

    fn writes(&self) -> Arc<SessionWrites> {
        SessionWrites::of(self.session.state_ref().read().config())
            .expect("the session keeps its writes")
    }

    /// Runs one statement: transaction control in the engine's [`SessionWrites`], anything
    /// else as a DataFrame.
    async fn run_statement(
        &self,
        sql: &str,
    ) -> Result<DBOutput<DefaultColumnType>, DataFusionError> {
        let writes = self.writes();
        let parsed = DFParser::parse_sql_with_dialect(sql, &PostgreSqlDialect {})?;
        if let [DFStatement::Statement(statement)] = Vec::from(parsed).as_slice() {
            match statement.as_ref() {
                Statement::StartTransaction { .. } => {
                    writes.begin();
                    return Ok(DBOutput::StatementComplete(0));
                }
                Statement::Commit { .. } => {
                    writes.commit(&self.session.task_ctx()).await?;
                    return Ok(DBOutput::StatementComplete(0));
                }
                Statement::Rollback {
                    savepoint: None, ..
                } => {
                    writes.rollback();
                    return Ok(DBOutput::StatementComplete(0));
                }
                _ => {}
            }
        }
        if writes.is_failed() {
            return Err(MdfError::InFailedBlock.into());
        }
        writes.statement_started(sql);
        let frame = self.session.sql(sql).await?;
        let is_query = !matches!(
            frame.logical_plan(),
            LogicalPlan::Dml(_) | LogicalPlan::Ddl(_)
        );
        let columns = frame.schema().fields().len();
        let batches = frame.collect().await?;
        if is_query {
            Ok(DBOutput::Rows {
                types: vec![DefaultColumnType::Any; columns],
                rows: rows(&batches)?,
            })
        } else {
            let count = batches
                .first()
                .and_then(|b| {
                    b.column(0)
                        .as_primitive_opt::<datafusion::arrow::datatypes::UInt64Type>()
                        .map(|c| c.value(0))
                })
                .unwrap_or(0);
            Ok(DBOutput::StatementComplete(count))
        }
    }
}

/// PostgreSQL's default `extra_float_digits`: floats with the fewest digits that read back.
const EXTRA_FLOAT_DIGITS: i8 = 1;

/// Renders one cell as PostgreSQL's text format would.
fn render(array: &dyn Array, row: usize) -> Result<String, DataFusionError> {
    if array.is_null(row) {
        return Ok(render_text(None));
    }
    let text = match array.data_type() {
        DataType::Boolean => (if array.as_boolean().value(row) {
            "t"
        } else {
            "f"
        })
        .to_owned(),
        DataType::Float64 => FloatText::double(
            array.as_primitive::<Float64Type>().value(row),
            EXTRA_FLOAT_DIGITS,
        )
        .as_str()
        .to_owned(),
        DataType::Float32 => FloatText::real(
            array.as_primitive::<Float32Type>().value(row),
            EXTRA_FLOAT_DIGITS,
        )
        .as_str()
        .to_owned(),
        DataType::Timestamp(..) => ArrayFormatter::try_new(array, &FormatOptions::default())?
            .value(row)
            .to_string()
            .replacen('T', " ", 1),
        _ => ArrayFormatter::try_new(array, &FormatOptions::default())?
            .value(row)
            .to_string(),
    };
    Ok(render_text(Some(&text)))
}

fn rows(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>, DataFusionError> {
    let mut rows = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            rows.push(
                batch
                    .columns()
                    .iter()
                    .map(|column| render(column.as_ref(), row))
                    .collect::<Result<_, _>>()?,
            );
        }
    }
    Ok(rows)
}

#[async_trait]
impl AsyncDB for InProcessDb {
    type Error = InProcessError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<Self::ColumnType>, Self::Error> {
        let output = self.run_statement(sql).await;
        if output.is_err() {
            // As in PostgreSQL, a statement failing inside a block fails the block.
            self.writes().fail();
        }
        Ok(output?)
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "in-process"
    }

    async fn sleep(duration: std::time::Duration) {
        tokio::time::sleep(duration).await
    }

    fn error_sql_state(error: &Self::Error) -> Option<String> {
        Some(quantatom_server::wire::errors::sqlstate(&error.0).to_owned())
    }
}
