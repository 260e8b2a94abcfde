//! Transaction blocks as PostgreSQL's clients see them.
//!
//! `BEGIN`/`START TRANSACTION` opens a block in the engine ([`SessionWrites`]): its cube
//! writes are staged and read back by the session, and `COMMIT`/`END` commits them as one
//! MDF commit, all or nothing; `ROLLBACK`/`ABORT`, a failed block's end and a dropped
//! connection discard them. After an error inside a block, every statement but the block's
//! end is refused with `25P02`, as in PostgreSQL, and `COMMIT` then answers `ROLLBACK`.
//! `SAVEPOINT`, `RELEASE` and `ROLLBACK TO` keep their PostgreSQL rules (inside a block only;
//! `ROLLBACK TO` discards the writes made after the savepoint and leaves a failed block usable
//! again), which drivers rely on (psycopg's nested `transaction()`). A `COMMIT` that fails
//! (a concurrent commit changed what the block read: 40001) ends the block, as in PostgreSQL.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::{DFSchema, DataFusionError};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::hooks::HookClient;
use pgwire::api::ClientInfo;
use pgwire::api::results::{Response, Tag};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::response::TransactionStatus;
use quantatom_engine::mdf::MdfError;
use quantatom_engine::mdf::transaction::SessionWrites;

use super::answered_plan;
use super::errors::{api_error, user_error};
use super::session_hooks::SessionStatementHook;

/// Answers one connection's transaction statements and refuses the rest in a failed block.
#[derive(Debug, Default)]
pub(crate) struct TransactionHook;

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
    api_error(DataFusionError::from(MdfError::InFailedBlock))
}

/// The session's writes (every server session keeps them).
pub(crate) fn session_writes(session: &SessionContext) -> Arc<SessionWrites> {
    SessionWrites::of(session.state_ref().read().config()).unwrap_or_default()
}

/// `25P01` for a savepoint statement outside a block.
fn outside_block(statement: &Statement) -> PgWireError {
    let word = statement
        .to_string()
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_uppercase();
    user_error(
        "25P01",
        format!("{word} can only be used in transaction blocks"),
    )
}

fn no_savepoint(name: &str) -> PgWireError {
    user_error("3B001", format!("savepoint \"{name}\" does not exist"))
}

impl TransactionHook {
    async fn respond(
        &self,
        statement: &Statement,
        session: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let writes = session_writes(session);
        let failed = client.transaction_status() == TransactionStatus::Error || writes.is_failed();
        if failed && !ends_failure(statement) {
            return Some(Err(in_failed_block()));
        }
        let response = match statement {
            Statement::Savepoint { name } => {
                if !writes.savepoint(&name.value) {
                    return Some(Err(outside_block(statement)));
                }
                Response::Execution(Tag::new("SAVEPOINT"))
            }
            Statement::ReleaseSavepoint { name } => {
                if !writes.in_block() {
                    return Some(Err(outside_block(statement)));
                }
                if !writes.release(&name.value) {
                    return Some(Err(no_savepoint(&name.value)));
                }
                Response::Execution(Tag::new("RELEASE"))
            }
            Statement::Rollback {
                savepoint: Some(name),
                ..
            } => {
                if !writes.in_block() {
                    return Some(Err(outside_block(statement)));
                }
                if !writes.rollback_to(&name.value) {
                    return Some(Err(no_savepoint(&name.value)));
                }
                // Back to the savepoint: a failed block is usable again.
                Response::TransactionStart(Tag::new("ROLLBACK"))
            }
            Statement::StartTransaction { .. } => match writes.begin() {
                true => Response::TransactionStart(Tag::new("BEGIN")),
                // PostgreSQL warns and carries on; the block stays open.
                false => Response::Execution(Tag::new("BEGIN")),
            },
            Statement::Commit { .. } if failed => {
                writes.rollback();
                Response::TransactionEnd(Tag::new("ROLLBACK"))
            }
            Statement::Commit { .. } => {
                if let Err(failure) = writes.commit(&session.task_ctx()).await {
                    // The block is over: the connection is idle again, not in a failed block.
                    client.set_transaction_status(TransactionStatus::Idle);
                    return Some(Err(api_error(DataFusionError::from(failure))));
                }
                Response::TransactionEnd(Tag::new("COMMIT"))
            }
            Statement::Rollback { .. } => {
                writes.rollback();
                Response::TransactionEnd(Tag::new("ROLLBACK"))
            }
            _ => return None,
        };
        Some(Ok(response))
    }
}

#[async_trait]
impl SessionStatementHook for TransactionHook {
    async fn answer(
        &self,
        statement: &Statement,
        session_context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.respond(statement, session_context, client).await
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
