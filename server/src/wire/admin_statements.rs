//! Statements only administrators run: creating, changing and dropping tables, views and
//! schemas, and `COPY` to or from a file on the server. DataFusion runs DDL without planning
//! it through the analyzer (where grants are enforced), so it is refused here, before it
//! reaches DataFusion, over both protocols.

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{CopyTarget, Statement};
use datafusion_postgres::QueryHook;
use datafusion_postgres::hooks::HookClient;
use pgwire::api::ClientInfo;
use pgwire::api::results::Response;
use pgwire::error::PgWireResult;
use quantatom_engine::metadata::SessionAccess;

use super::errors::api_error;

/// Refuses administrators' statements to other users (42501).
pub(crate) struct AdminStatements;

impl AdminStatements {
    /// What `statement` does when only administrators may do it.
    fn admin_only(statement: &Statement) -> Option<&'static str> {
        match statement {
            Statement::Explain { statement, .. } => Self::admin_only(statement),
            Statement::CreateTable(_)
            | Statement::CreateView(_)
            | Statement::CreateSchema { .. }
            | Statement::CreateDatabase { .. }
            | Statement::CreateIndex(_)
            | Statement::CreateFunction(_)
            | Statement::AlterTable(_)
            | Statement::Drop { .. }
            | Statement::Truncate(_) => Some("create, change or drop tables, views and schemas"),
            Statement::Copy {
                target: CopyTarget::File { .. } | CopyTarget::Program { .. },
                ..
            } => Some("COPY to or from a file or program on the server"),
            _ => None,
        }
    }

    /// The refusal of `statement` in `session`, if it is refused.
    fn refusal<T>(statement: &Statement, session: &SessionContext) -> Option<PgWireResult<T>> {
        let what = Self::admin_only(statement)?;
        let state = session.state_ref();
        let state = state.read();
        let access = SessionAccess::of(state.config_options())?;
        access
            .require_admin(what)
            .err()
            .map(|error| Err(api_error(datafusion::common::DataFusionError::from(error))))
    }
}

#[async_trait]
impl QueryHook for AdminStatements {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        Self::refusal(statement, session_context)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        session_context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        Self::refusal(statement, session_context)
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _logical_plan: &LogicalPlan,
        _params: &ParamValues,
        session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        Self::refusal(statement, session_context)
    }
}
