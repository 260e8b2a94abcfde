//! Statements the server answers itself, the same way over both protocols: transaction
//! control ([`super::transactions`]) and session parameters ([`super::settings`]).

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::QueryHook;
use datafusion_postgres::hooks::HookClient;
use pgwire::api::ClientInfo;
use pgwire::api::results::Response;
use pgwire::error::PgWireResult;

/// Answers some statements without the engine; `None` for every other statement.
#[async_trait]
pub(crate) trait SessionStatementHook: Send + Sync {
    /// The response to `statement`, run by either protocol (such statements take no
    /// parameters).
    async fn answer(
        &self,
        statement: &Statement,
        session_context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>>;

    /// The plan describing `statement`'s result at Parse: a plan answering no rows with the
    /// columns the answer will have.
    async fn describe(
        &self,
        statement: &Statement,
        session_context: &SessionContext,
        client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>>;
}

/// A [`SessionStatementHook`] as datafusion-postgres's [`QueryHook`]: Execute answers as the
/// simple protocol does.
pub(crate) struct BothProtocols<H>(pub(crate) H);

#[async_trait]
impl<H: SessionStatementHook> QueryHook for BothProtocols<H> {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        session_context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.0.answer(statement, session_context, client).await
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        session_context: &SessionContext,
        client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        self.0.describe(statement, session_context, client).await
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _logical_plan: &LogicalPlan,
        _params: &ParamValues,
        session_context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.0.answer(statement, session_context, client).await
    }
}
