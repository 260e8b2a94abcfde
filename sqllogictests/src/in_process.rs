//! The in-process database: SQL straight into an engine session.

use async_trait::async_trait;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::DataFusionError;
use datafusion::prelude::SessionContext;
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
    /// Wraps a session.
    pub fn new(session: SessionContext) -> Self {
        Self { session }
    }
}

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
        let frame = self.session.sql(sql).await?;
        let is_query = !matches!(
            frame.logical_plan(),
            datafusion::logical_expr::LogicalPlan::Dml(_)
                | datafusion::logical_expr::LogicalPlan::Ddl(_)
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
