//! The wire database: SQL over the Postgres protocol with tokio-postgres's simple query.

use async_trait::async_trait;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::render_text;

/// A failed statement as the server reported it: its message (what `statement error <regex>`
/// matches) and SQLSTATE.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct WireError {
    message: String,
    sqlstate: Option<String>,
}

impl From<tokio_postgres::Error> for WireError {
    fn from(error: tokio_postgres::Error) -> Self {
        let message = error
            .as_db_error()
            .map_or_else(|| error.to_string(), |db| db.message().to_owned());
        WireError {
            message,
            sqlstate: error.code().map(|code| code.code().to_owned()),
        }
    }
}

/// One client connection.
pub struct WireDb {
    client: Client,
    connection: tokio::task::JoinHandle<()>,
}

impl WireDb {
    /// Connects with a libpq-style connection string.
    pub async fn connect(config: &str) -> Result<Self, WireError> {
        let (client, connection) = tokio_postgres::connect(config, NoTls).await?;
        let connection = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self { client, connection })
    }
}

#[async_trait]
impl AsyncDB for WireDb {
    type Error = WireError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<Self::ColumnType>, Self::Error> {
        let mut columns = None;
        let mut rows = Vec::new();
        let mut affected = 0;
        for message in self.client.simple_query(sql).await? {
            match message {
                SimpleQueryMessage::RowDescription(description) => {
                    columns = Some(description.len())
                }
                SimpleQueryMessage::Row(row) => {
                    rows.push((0..row.len()).map(|i| render_text(row.get(i))).collect())
                }
                SimpleQueryMessage::CommandComplete(count) => affected = count,
                _ => {}
            }
        }
        Ok(match columns {
            Some(columns) => DBOutput::Rows {
                types: vec![DefaultColumnType::Any; columns],
                rows,
            },
            None => DBOutput::StatementComplete(affected),
        })
    }

    async fn shutdown(&mut self) {
        self.connection.abort();
    }

    fn engine_name(&self) -> &str {
        "wire"
    }

    async fn sleep(duration: std::time::Duration) {
        tokio::time::sleep(duration).await
    }

    fn error_sql_state(error: &Self::Error) -> Option<String> {
        error.sqlstate.clone()
    }
}
