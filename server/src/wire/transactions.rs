//! Transaction blocks as PostgreSQL's clients see them.
//!
//! `BEGIN`/`START TRANSACTION`, `COMMIT`/`END` and `ROLLBACK`/`ABORT` move the connection's
//! transaction status (pgwire reports it in every ReadyForQuery). After an error inside a
//! block, every statement but the block's end is refused with `25P02`, as in PostgreSQL, and
//! `COMMIT` then answers `ROLLBACK`. `SAVEPOINT`, `RELEASE` and `ROLLBACK TO` keep their
//! PostgreSQL rules (inside a block only; `ROLLBACK TO` leaves a failed block usable again),
//! which drivers rely on (psycopg's nested `transaction()`). Each statement still commits on its
//! own (a write is one MDF commit); multi-statement transactions over cube writes come with
//! write-back.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::common::DFSchema;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::hooks::HookClient;
use pgwire::api::ClientInfo;
use pgwire::api::results::{Response, Tag};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::response::TransactionStatus;

use super::answered_plan;
use super::session_hooks::SessionStatementHook;

/// Answers one connection's transaction statements and refuses the rest in a failed block.
#[derive(Debug, Default)]
pub(crate) struct TransactionHook {
    /// The open savepoints of the current block, oldest first.
    savepoints: Mutex<Vec<String>>,
}

/// Statements a failed block still accepts.
fn ends_failure(statement: &Statement) -> bool {
    matches!(
        statement,
        Statement::Commit { .. } | Statement::Rollback { .. }
    )
}

fn is_transaction_statement(statement: &Statement) -> bool {
    ends_failure(statement)
        || matches!(
            statement,
            Statement::StartTransaction { .. }
                | Statement::Savepoint { .. }
                | Statement::ReleaseSavepoint { .. }
        )
}

fn error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        code.into(),
        message,
    )))
}

/// Whether `sql` is `ROLLBACK TO [SAVEPOINT] name`, the one statement that takes a failed block
/// back to a working one. pgwire settles a query's transaction status from the status it
/// started in, so the connection sets it to in-transaction before such a statement runs (and
/// a failure of it puts the block back into the failed state).
pub(crate) fn is_rollback_to_savepoint(sql: &str) -> bool {
    let words: Vec<String> = sql
        .split_whitespace()
        .take(2)
        .map(str::to_ascii_lowercase)
        .collect();
    words.len() == 2 && words[0] == "rollback" && words[1] == "to"
}

/// The error for a statement other than the block's end in a failed transaction block.
pub(crate) fn in_failed_block() -> PgWireError {
    error(
        "25P02",
        "current transaction is aborted, commands ignored until end of transaction block".into(),
    )
}

impl TransactionHook {
    fn respond(
        &self,
        statement: &Statement,
        status: TransactionStatus,
    ) -> Option<PgWireResult<Response>> {
        if status == TransactionStatus::Error && !ends_failure(statement) {
            return Some(Err(in_failed_block()));
        }
        let mut savepoints = self.savepoints.lock().expect("savepoints poisoned");
        let in_block = status != TransactionStatus::Idle;
        let response = match statement {
            Statement::Savepoint { name } if in_block => {
                savepoints.push(name.value.clone());
                Response::Execution(Tag::new("SAVEPOINT"))
            }
            Statement::ReleaseSavepoint { name }
            | Statement::Rollback {
                savepoint: Some(name),
                ..
            } if in_block => {
                let Some(position) = savepoints.iter().rposition(|open| *open == name.value) else {
                    return Some(Err(error(
                        "3B001",
                        format!("savepoint \"{}\" does not exist", name.value),
                    )));
                };
                if matches!(statement, Statement::ReleaseSavepoint { .. }) {
                    savepoints.truncate(position);
                    Response::Execution(Tag::new("RELEASE"))
                } else {
                    // Back to the savepoint: a failed block is usable again.
                    savepoints.truncate(position + 1);
                    Response::TransactionStart(Tag::new("ROLLBACK"))
                }
            }
            Statement::Savepoint { .. }
            | Statement::ReleaseSavepoint { .. }
            | Statement::Rollback {
                savepoint: Some(_), ..
            } => {
                let word = statement
                    .to_string()
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_uppercase();
                return Some(Err(error(
                    "25P01",
                    format!("{word} can only be used in transaction blocks"),
                )));
            }
            _ => {
                let response = block_response(statement, status)?;
                savepoints.clear();
                response
            }
        };
        Some(Ok(response))
    }
}

/// The response to a statement that begins or ends a block.
fn block_response(statement: &Statement, status: TransactionStatus) -> Option<Response> {
    let response = match statement {
        Statement::StartTransaction { .. } if status == TransactionStatus::Idle => {
            Response::TransactionStart(Tag::new("BEGIN"))
        }
        // PostgreSQL warns and carries on; the block stays open.
        Statement::StartTransaction { .. } => Response::Execution(Tag::new("BEGIN")),
        Statement::Commit { .. } if status == TransactionStatus::Error => {
            Response::TransactionEnd(Tag::new("ROLLBACK"))
        }
        Statement::Commit { .. } => Response::TransactionEnd(Tag::new("COMMIT")),
        Statement::Rollback { .. } => Response::TransactionEnd(Tag::new("ROLLBACK")),
        _ => return None,
    };
    Some(response)
}

#[async_trait]
impl SessionStatementHook for TransactionHook {
    async fn answer(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.respond(statement, client.transaction_status())
    }

    async fn describe(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        is_transaction_statement(statement).then(|| Ok(answered_plan(Arc::new(DFSchema::empty()))))
    }
}
