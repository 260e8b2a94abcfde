//! The handlers of one client connection: its own DataFusion session, cancellable queries,
//! SQLSTATE errors.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, LazyLock, Mutex, OnceLock};

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion_postgres::{DfSessionService, Parser};
use futures::{Sink, SinkExt, StreamExt};
use pgwire::api::Type;
use pgwire::api::auth::{self, ServerParameterProvider, StartupHandler};
use pgwire::api::cancel::CancelHandler;
use pgwire::api::portal::{Format, Portal, PortalExecutionState};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{DescribePortalResponse, FieldInfo, QueryResponse};
use pgwire::api::results::{Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, ErrorHandler, PgWireServerHandlers, PidSecretKeyGenerator,
    RandomPidSecretKeyGenerator,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::response::TransactionStatus;
use pgwire::messages::simplequery::Query;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::types::format::FormatOptions;
use quantatom_engine::mdf::dml::CommitAuthor;
use quantatom_engine::mdf::transaction::SessionWrites;
use quantatom_engine::plan_reuse::{EpochCache, PlanEpoch, by_position, parameter_types};
use quantatom_engine::postgres_settings::PostgresSettings;

use super::activity::{ActivityRegistry, BackendPidFunction, SessionActivity};
use super::cancel::{CancelRegistry, ConnectionKey, QueryStop, cancellable};
use super::copy_out::CopyOut;
use super::dml_tags::{dml_tag, retagged, run_tagged};
use super::errors::SqlStateErrors;
use super::errors::api_error;
use super::session_plans::{
    ParsedText, PreparedQueryPlan, SessionPlans, SimpleQueryPlan, bind_parameters,
    may_change_plans, parse_text, plan_query,
};
use super::settings::{apply_startup_parameters, copy_format_parameters};
use super::text_types::{result_fields, text_parameter_types};
use super::transactions::{in_failed_block, is_rollback_to_savepoint, session_writes};

/// Process ids and secret keys for BackendKeyData, which cancel requests name.
static KEY_GENERATOR: LazyLock<RandomPidSecretKeyGenerator> =
    LazyLock::new(RandomPidSecretKeyGenerator::default);

/// Startup without authentication (authentication arrives with the security work): assigns
/// the process id and secret key, applies the client's startup parameters to its session and
/// reports PostgreSQL's parameters back, as PostgreSQL does.
pub(crate) struct Startup {
    session: Arc<SessionContext>,
    activities: Arc<ActivityRegistry>,
    activity: Arc<OnceLock<Arc<SessionActivity>>>,
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let PgWireFrontendMessage::Startup(startup) = message else {
            return Ok(());
        };
        auth::protocol_negotiation(client, &startup).await?;
        auth::save_startup_parameters_to_metadata(client, &startup);
        let (pid, secret) = KEY_GENERATOR.generate(client);
        client.set_pid_and_secret_key(pid, secret);
        self.session.register_udf(BackendPidFunction::udf(pid));
        apply_startup_parameters(&self.session, &startup.parameters).map_err(|e| {
            let code = super::errors::sqlstate(&e);
            PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".into(),
                code.into(),
                e.strip_backtrace(),
            )))
        })?;
        let settings = PostgresSettings::of(self.session.state_ref().read().config_options());
        copy_format_parameters(client.metadata_mut(), &settings);
        let parameter = |name: &str| startup.parameters.get(name).cloned().unwrap_or_default();
        let user = parameter("user");
        // Commits from this connection are recorded under its user, with the statement that
        // made them; its transaction blocks are kept with its writes.
        {
            let state = self.session.state_ref();
            let mut state = state.write();
            let config = state.config_mut();
            config.set_extension(Arc::new(CommitAuthor(user.clone())));
            config.set_extension(Arc::new(SessionWrites::default()));
        }
        let database = startup
            .parameters
            .get("database")
            .cloned()
            .unwrap_or_else(|| user.clone());
        let registered = self.activities.connected(
            pid,
            user,
            database,
            parameter("application_name"),
            client.socket_addr(),
        );
        let _ = self.activity.set(registered);
        auth::finish_authentication(client, &ReportedParameters(settings)).await
    }
}

/// The parameters PostgreSQL reports to a client after authentication, with its session's values.
struct ReportedParameters(PostgresSettings);

impl ServerParameterProvider for ReportedParameters {
    fn server_parameters<C: ClientInfo>(&self, client: &C) -> Option<HashMap<String, String>> {
        let user = client.metadata().get("user").cloned().unwrap_or_default();
        Some(
            self.0
                .all()
                .into_iter()
                .filter(|(parameter, _)| parameter.reported)
                .map(|(parameter, value)| match parameter.name {
                    "session_authorization" => (parameter.name.to_owned(), user.clone()),
                    name => (name.to_owned(), value),
                })
                .collect(),
        )
    }
}

/// Everything pgwire asks for on one connection.
pub(crate) struct Connection {
    queries: Arc<SessionQueries>,
    startup: Arc<Startup>,
    cancels: Arc<CancelRegistry>,
    errors: Arc<SqlStateErrors>,
}

impl Connection {
    /// Records the connection's transaction status after a client message was handled (shown
    /// in `pg_stat_activity.state`).
    pub(crate) fn transaction_status_is(&self, status: TransactionStatus) {
        if let Some(activity) = self.startup.activity.get() {
            activity.transaction_status_is(status);
        }
    }

    /// Handlers over `service`, which runs queries in `session`, the connection's own.
    pub(crate) fn new(
        service: DfSessionService,
        session: Arc<SessionContext>,
        plan_epoch: Arc<PlanEpoch>,
        cancels: Arc<CancelRegistry>,
        activities: Arc<ActivityRegistry>,
    ) -> Self {
        let activity = Arc::new(OnceLock::new());
        Self {
            queries: Arc::new(SessionQueries {
                parser: Arc::new(SessionParser {
                    inner: service.query_parser(),
                    session: Arc::clone(&session),
                    parsed: EpochCache::new(Arc::clone(&plan_epoch)),
                }),
                service,
                plans: SessionPlans::new(Arc::clone(&session), plan_epoch),
                session: Arc::clone(&session),
                cancels: Arc::clone(&cancels),
                key: Mutex::new(None),
                activities: Arc::clone(&activities),
                activity: Arc::clone(&activity),
            }),
            startup: Arc::new(Startup {
                session,
                activities,
                activity,
            }),
            cancels,
            errors: Arc::new(SqlStateErrors),
        }
    }
}

impl PgWireServerHandlers for Connection {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::clone(&self.queries)
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::clone(&self.queries)
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::clone(&self.startup)
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::clone(&self.errors)
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        Arc::clone(&self.cancels)
    }
}

/// Runs the connection's queries, plain queries from its plan cache and other statements
/// through datafusion-postgres, each stoppable by a cancel request and by the session's
/// `statement_timeout`.
pub(crate) struct SessionQueries {
    service: DfSessionService,
    plans: SessionPlans,
    parser: Arc<SessionParser>,
    session: Arc<SessionContext>,
    cancels: Arc<CancelRegistry>,
    key: Mutex<Option<ConnectionKey>>,
    activities: Arc<ActivityRegistry>,
    activity: Arc<OnceLock<Arc<SessionActivity>>>,
}

impl SessionQueries {
    /// Runs a `COPY ... TO STDOUT` (either protocol), its rows in the session's formats.
    async fn copy_out<C: ClientInfo>(
        &self,
        client: &C,
        copy: Result<CopyOut, datafusion::common::DataFusionError>,
        stop: QueryStop,
    ) -> PgWireResult<Response> {
        if client.transaction_status() == TransactionStatus::Error {
            return Err(in_failed_block());
        }
        let copy = copy.map_err(api_error)?;
        let options = FormatOptions::from_client_metadata(client.metadata());
        stop.until_stopped(copy.run(&self.session, options)).await
    }

    /// Starts `query` (its text as `pg_stat_activity` shows it): stoppable by cancel and timeout.
    fn begin_query<C: ClientInfo + ?Sized>(&self, client: &C, query: &str) -> QueryStop {
        let (pid, secret) = client.pid_and_secret_key();
        let key = (pid, secret.to_bytes());
        *self.key.lock().expect("connection key poisoned") = Some(key.clone());
        // Read in place: this runs for every query.
        let (timeout, writes) = {
            let state = self.session.state_ref();
            let state = state.read();
            let timeout = state
                .config_options()
                .extensions
                .get::<PostgresSettings>()
                .and_then(PostgresSettings::statement_timeout);
            (timeout, SessionWrites::of(state.config()))
        };
        if let Some(writes) = writes {
            writes.statement_started(query);
        }
        let running = self
            .activity
            .get()
            .map(|activity| activity.query_started(query));
        self.cancels.begin(key, timeout, running)
    }
}

impl SessionQueries {
    /// Runs the statements of one simple query one after another, each to completion (its
    /// rows held until the query's answer is sent) before the next starts.
    async fn run_each<C>(
        &self,
        client: &mut C,
        statements: Vec<String>,
    ) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut responses = Vec::with_capacity(statements.len());
        for statement in statements {
            let answered = Box::pin(SimpleQueryHandler::do_query(self, client, &statement)).await;
            let answered = match answered {
                Ok(answered) => answered,
                Err(error) => {
                    // A block the query opened is failed by its error (pgwire fails a block
                    // only when the query started in one).
                    if session_writes(&self.session).in_block() {
                        client.set_transaction_status(TransactionStatus::Transaction);
                    }
                    return Err(error);
                }
            };
            for response in answered {
                responses.push(match response {
                    Response::Query(query) => Response::Query(held(query).await?),
                    other => other,
                });
            }
        }
        Ok(responses)
    }
}

/// `query` with all its rows computed now, answered from memory.
async fn held(mut query: QueryResponse) -> PgWireResult<QueryResponse> {
    let mut rows = Vec::new();
    while let Some(row) = query.data_rows.next().await {
        rows.push(row?);
    }
    let mut held = QueryResponse::new(
        query.row_schema(),
        futures::stream::iter(rows.into_iter().map(Ok)),
    );
    held.set_command_tag(query.command_tag());
    Ok(held)
}

impl Drop for SessionQueries {
    fn drop(&mut self) {
        if let Some(key) = self.key.lock().expect("connection key poisoned").take() {
            self.cancels.remove(&key);
        }
        if let Some(activity) = self.activity.get() {
            self.activities.disconnected(activity.pid());
        }
    }
}

#[async_trait]
impl SimpleQueryHandler for SessionQueries {
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if client.transaction_status() == TransactionStatus::Error
            && is_rollback_to_savepoint(&query.query)
        {
            client.set_transaction_status(TransactionStatus::Transaction);
        }
        self._on_query(client, query).await
    }

    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let stop = self.begin_query(client, query);
        // COPY TO STDOUT and plain queries bypass datafusion-postgres, whose transaction hook
        // refuses statements in a failed block; refuse them here the same way.
        if let Some(copy) = CopyOut::parse(query) {
            return Ok(vec![self.copy_out(client, copy, stop).await?]);
        }
        let plan = stop
            .until_stopped(self.plans.plan_simple_query(query))
            .await?;
        let (changes_plans, tags) = match plan {
            SimpleQueryPlan::Delegate {
                changes_plans,
                tags,
            } => (changes_plans, tags),
            SimpleQueryPlan::Several(statements) => {
                return self.run_each(client, statements).await;
            }
            _ if client.transaction_status() == TransactionStatus::Error => {
                return Err(in_failed_block());
            }
            SimpleQueryPlan::Reusable(plan) => {
                let options = FormatOptions::from_client_metadata(client.metadata());
                let run = self.plans.run(
                    &plan,
                    ParamValues::List(vec![]),
                    &Format::UnifiedText,
                    options,
                );
                return Ok(vec![cancellable(stop.until_stopped(run).await?, stop)]);
            }
            SimpleQueryPlan::Once(plan) => {
                let options = FormatOptions::from_client_metadata(client.metadata());
                let run = self.plans.run_once(plan, &Format::UnifiedText, options);
                return Ok(vec![cancellable(stop.until_stopped(run).await?, stop)]);
            }
        };
        let responses = stop
            .until_stopped(SimpleQueryHandler::do_query(&self.service, client, query))
            .await;
        if changes_plans {
            self.plans.statement_changed_plans();
        }
        let mut tagged = Vec::new();
        let mut tags = tags.into_iter().chain(std::iter::repeat(None));
        for response in responses? {
            let response = match (tags.next().flatten(), response) {
                (Some(tag), Response::Query(query)) => retagged(tag, query).await?,
                (_, response) => response,
            };
            tagged.push(cancellable(response, stop.clone()));
        }
        Ok(tagged)
    }
}

#[async_trait]
impl ExtendedQueryHandler for SessionQueries {
    type Statement = <DfSessionService as ExtendedQueryHandler>::Statement;
    type QueryParser = SessionParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        Arc::clone(&self.parser)
    }

    /// A portal already running (a `DECLARE`d cursor, which clients such as psycopg describe
    /// before they `FETCH`) is described by the rows it produces; any other by its statement.
    async fn do_describe_portal<C>(
        &self,
        _client: &mut C,
        portal: &Portal<Self::Statement>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let PortalExecutionState::Suspended(running) = &*portal.state.lock().await {
            return Ok(DescribePortalResponse::new(
                running.row_schema().as_ref().clone(),
            ));
        }
        let fields = self.parser.get_result_schema(
            &portal.statement.statement,
            Some(&portal.result_column_format),
        )?;
        Ok(DescribePortalResponse::new(fields))
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (sql, parsed) = &portal.statement.statement;
        let stop = self.begin_query(client, sql);
        if let Some(copy) = CopyOut::parse(sql) {
            return self.copy_out(client, copy, stop).await;
        }
        if let Some((statement, plan)) = parsed {
            if let Some(tag) = dml_tag(statement) {
                if client.transaction_status() == TransactionStatus::Error {
                    return Err(in_failed_block());
                }
                let inferred = parameter_types(plan).map_err(api_error)?;
                let describe = self
                    .parser
                    .get_parameter_types(&portal.statement.statement)?;
                let parameters = bind_parameters(portal, &inferred, &describe)?;
                let bound = plan
                    .clone()
                    .replace_params_with_values(&parameters)
                    .map_err(api_error)?;
                return stop
                    .until_stopped(run_tagged(&self.session, bound, tag))
                    .await;
            }
            let prepared = self.plans.plan_prepared_query(sql, statement, plan)?;
            if !matches!(prepared, PreparedQueryPlan::Delegate) {
                if client.transaction_status() == TransactionStatus::Error {
                    return Err(in_failed_block());
                }
                let describe = || self.parser.get_parameter_types(&portal.statement.statement);
                let options = FormatOptions::from_client_metadata(client.metadata());
                let format = &portal.result_column_format;
                let response = match prepared {
                    PreparedQueryPlan::Reusable(kept) => {
                        let parameters = bind_parameters(
                            portal,
                            kept.parameter_types(),
                            kept.wire_parameter_types(describe)?,
                        )?;
                        stop.until_stopped(self.plans.run(&kept, parameters, format, options))
                            .await?
                    }
                    _ => {
                        let inferred = parameter_types(plan).map_err(api_error)?;
                        let parameters = bind_parameters(portal, &inferred, &describe()?)?;
                        let bound = plan
                            .clone()
                            .replace_params_with_values(&parameters)
                            .map_err(api_error)?;
                        stop.until_stopped(self.plans.run_once(bound, format, options))
                            .await?
                    }
                };
                return all_rows_sent(client, cancellable(response, stop), max_rows).await;
            }
        }
        let response = stop
            .until_stopped(ExtendedQueryHandler::do_query(
                &self.service,
                client,
                portal,
                max_rows,
            ))
            .await;
        if parsed
            .as_ref()
            .is_some_and(|(statement, _)| may_change_plans(statement))
        {
            self.plans.statement_changed_plans();
        }
        all_rows_sent(client, cancellable(response?, stop), max_rows).await
    }
}

/// Plain queries parsed and planned as the simple protocol plans them
/// ([`super::session_plans::parse_text`]), everything else by datafusion-postgres's parser;
/// plain queries' parse results are kept by text, as drivers send the same unnamed statements
/// again and again.
pub(crate) struct SessionParser {
    inner: Arc<Parser>,
    session: Arc<SessionContext>,
    parsed: EpochCache<<Parser as QueryParser>::Statement>,
}

#[async_trait]
impl QueryParser for SessionParser {
    type Statement = <Parser as QueryParser>::Statement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        if let Some(parsed) = self.parsed.get(sql) {
            return Ok(Some(parsed.as_ref().clone()));
        }
        if CopyOut::parse(sql).is_some() {
            // Run by the extended query handler as the simple protocol runs it.
            return Ok(Some((sql.to_owned(), None)));
        }
        let epoch = self.parsed.epoch().current();
        match parse_text(sql) {
            ParsedText::Query(statement) => {
                // Typed (in `plan_query`) before Describe reports the columns, so that the rows
                // match what it said.
                let plan = plan_query(&self.session.state(), statement.clone()).await?;
                let parsed = (sql.to_owned(), Some((statement, plan)));
                self.parsed.insert(sql, Arc::new(parsed.clone()), epoch);
                Ok(Some(parsed))
            }
            ParsedText::Other { .. } => self.inner.parse_sql(client, sql, types).await,
        }
    }

    /// datafusion-postgres's types, placed at their placeholders' positions: it lists the
    /// placeholders the plan holds in order, without the gaps a compatibility rewrite leaves
    /// when it drops an expression holding one (a correlated subquery in a SELECT list), which
    /// would shift every later parameter onto the wrong type. Parameters cast to `uuid`,
    /// `json` or `jsonb` are described as those types.
    fn get_parameter_types(&self, statement: &Self::Statement) -> PgWireResult<Vec<Type>> {
        let types = self.inner.get_parameter_types(statement)?;
        // No types: the plan holds no placeholder, so there is nothing to place or retype.
        let Some((_, plan)) = statement.1.as_ref().filter(|_| !types.is_empty()) else {
            return Ok(types);
        };
        let ids = by_position(plan.get_parameter_types().map_err(api_error)?);
        let text_types = text_parameter_types(plan);
        if text_types.is_empty() && ids.iter().all(Option::is_some) {
            return Ok(types);
        }
        let mut types = types.into_iter();
        let ids = ids.into_iter().enumerate();
        Ok(ids
            .map(|(index, id)| {
                let inferred = id.and_then(|_| types.next());
                text_types
                    .get(&format!("${}", index + 1))
                    .cloned()
                    .or(inferred)
                    .unwrap_or(Type::UNKNOWN)
            })
            .collect())
    }

    /// datafusion-postgres's description, with `uuid`/`json`/`jsonb` columns as those types
    /// (see [`super::text_types`]).
    fn get_result_schema(
        &self,
        statement: &Self::Statement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        match &statement.1 {
            Some((_, plan)) if !matches!(plan, LogicalPlan::Ddl(_) | LogicalPlan::Dml(_)) => {
                result_fields(
                    plan.schema().as_arrow(),
                    column_format.unwrap_or(&Format::UnifiedText),
                    None,
                )
            }
            _ => self.inner.get_result_schema(statement, column_format),
        }
    }
}

/// Sends every row of an Execute without a row limit (`max_rows` 0) to the client as it comes,
/// and answers with the command tag: pgwire's portal collects all of them before it sends the
/// first, so a large result would sit whole in memory (and a cancel would wait for all of it).
/// An Execute with a row limit (a cursor fetching in pages) goes through the portal.
async fn all_rows_sent<C>(
    client: &mut C,
    response: Response,
    max_rows: usize,
) -> PgWireResult<Response>
where
    C: Sink<PgWireBackendMessage> + Unpin,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let Response::Query(query) = response else {
        return Ok(response);
    };
    if max_rows != 0 {
        return Ok(Response::Query(query));
    }
    let mut rows = query.data_rows;
    let mut sent = 0;
    while let Some(row) = rows.next().await {
        client.feed(PgWireBackendMessage::DataRow(row?)).await?;
        sent += 1;
    }
    Ok(Response::Execution(
        Tag::new(&query.command_tag).with_rows(sent),
    ))
}
