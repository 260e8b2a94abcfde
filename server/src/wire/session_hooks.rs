//! Statement hooks for the connection's own session, beside datafusion-postgres's:
//!
//! - [`DiscardHook`]: `DISCARD ALL` (and `PLANS`/`SEQUENCES`/`TEMP`), which poolers and JDBC
//!   send when a connection is handed to a new client: the settings go back to the defaults.
//! - [`ShowSettingHook`]: `SHOW datafusion.execution.batch_size` and every other engine
//!   setting, read from this session (datafusion-postgres answers only PostgreSQL's names).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::{DFSchema, ParamValues, ToDFSchema};
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::{EmptyRelation, LogicalPlan};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::QueryHook;
use datafusion_postgres::hooks::HookClient;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::{ClientInfo, Type};
use pgwire::error::{PgWireError, PgWireResult};

/// Answers `DISCARD` by resetting the session to the state every connection starts from.
#[derive(Debug)]
pub(crate) struct DiscardHook {
    fresh_state: SessionState,
}

impl DiscardHook {
    /// A hook that resets sessions to `fresh_state`.
    pub(crate) fn new(fresh_state: SessionState) -> Self {
        Self { fresh_state }
    }
}

#[async_trait]
impl QueryHook for DiscardHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let Statement::Discard { object_type } = statement else { return None };
        *session_context.state_ref().write() = self.fresh_state.clone();
        Some(Ok(Response::Execution(Tag::new(&format!("DISCARD {object_type}")))))
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        matches!(statement, Statement::Discard { .. }).then(|| Ok(empty_plan(Arc::new(DFSchema::empty()))))
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _logical_plan: &LogicalPlan,
        _params: &ParamValues,
        session_context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.handle_simple_query(statement, session_context, client).await
    }
}

fn empty_plan(schema: Arc<DFSchema>) -> LogicalPlan {
    LogicalPlan::EmptyRelation(EmptyRelation { produce_one_row: false, schema })
}

/// The engine setting a `SHOW` names, with its current value in `session_context`.
fn shown_setting(statement: &Statement, session_context: &SessionContext) -> Option<(String, String)> {
    let Statement::ShowVariable { variable } = statement else { return None };
    let name = variable.iter().map(|part| part.value.to_lowercase()).collect::<Vec<_>>().join(".");
    let state = session_context.state();
    let entry = state.config().options().entries().into_iter().find(|entry| entry.key == name)?;
    Some((name, entry.value.unwrap_or_default()))
}

/// Answers `SHOW <engine setting>` from the connection's own session configuration.
#[derive(Debug)]
pub(crate) struct ShowSettingHook;

#[async_trait]
impl QueryHook for ShowSettingHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let (name, value) = shown_setting(statement, session_context)?;
        let fields = Arc::new(vec![FieldInfo::new(name, None, None, Type::TEXT, FieldFormat::Text)]);
        let mut encoder = DataRowEncoder::new(Arc::clone(&fields));
        if let Err(e) = encoder.encode_field(&Some(value)) {
            return Some(Err(e));
        }
        let row: PgWireResult<_> = Ok(encoder.take_row());
        Some(Ok(Response::Query(QueryResponse::new(fields, Box::pin(futures::stream::once(async move { row }))))))
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        session_context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        let (name, _) = shown_setting(statement, session_context)?;
        let schema = Schema::new(vec![Field::new(name, DataType::Utf8, false)]).to_dfschema_ref();
        Some(schema.map(empty_plan).map_err(|e| PgWireError::ApiError(Box::new(e))))
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _logical_plan: &LogicalPlan,
        _params: &ParamValues,
        session_context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.handle_simple_query(statement, session_context, client).await
    }
}
