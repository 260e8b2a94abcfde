//! The handlers of one client connection: its own DataFusion session, cancellable queries,
//! SQLSTATE errors.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::common::{DFSchemaRef, ParamValues};
use datafusion::logical_expr::{LogicalPlan, Statement as PlanStatement};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion_postgres::{DfSessionService, Parser};
use futures::{Sink, SinkExt, StreamExt};
use pgwire::api::PgWireConnectionState;
use pgwire::api::Type;
use pgwire::api::auth::sasl::SCRAM_SHA_256_METHOD as SCRAM_SHA_256;
use pgwire::api::auth::{self, ServerParameterProvider, StartupHandler};
use pgwire::api::cancel::CancelHandler;
use pgwire::api::portal::{Format, Portal, PortalExecutionState};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{DescribePortalResponse, FieldInfo, QueryResponse};
use pgwire::api::results::{Response, Tag};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{
    ClientInfo, ClientPortalStore, DEFAULT_NAME, ErrorHandler, PgWireServerHandlers,
    PidSecretKeyGenerator, RandomPidSecretKeyGenerator,
};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::extendedquery::{
    Close, CloseComplete, Execute, Parse, ParseComplete, TARGET_TYPE_BYTE_PORTAL,
    TARGET_TYPE_BYTE_STATEMENT,
};
use pgwire::messages::response::TransactionStatus;
use pgwire::messages::simplequery::Query;
use pgwire::messages::startup::{Authentication, PasswordMessageFamily, Startup as StartupMessage};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::types::format::FormatOptions;
use quantatom_engine::access_statements::AccessStatement;
use quantatom_engine::mdf::dml::CommitAuthor;
use quantatom_engine::mdf::transaction::SessionWrites;
use quantatom_engine::metadata::{MetadataError, MetadataStore, ScramVerifier, SessionAccess};
use quantatom_engine::plan_reuse::{EpochCache, PlanEpoch, by_position, parameter_types};
use quantatom_engine::postgres_settings::PostgresSettings;
use tracing::Instrument;

use super::activity::{ActivityRegistry, SessionActivity, SessionConstant};
use super::authentication::{
    AuthMethod, LoginThrottle, ScramExchange, Security, fatal, is_our_database, locked_out,
    password_failed,
};
use super::cancel::{CancelRegistry, CancelSlot, ConnectionKey, QueryStop, cancellable};
use super::copy_out::CopyOut;
use super::cursors::CursorDeclaration;
use super::dml_tags::{dml_tag, retagged, run_tagged};
use super::errors::SqlStateErrors;
use super::errors::{api_error, user_error};
use super::format_options::SessionFormatOptions;
use super::prepared_names::{
    PreparedNames, PreparedStatements, SqlPrepared, executed_statement, folded, not_prepared,
};
use super::session_plans::{
    ParsedText, PreparedQueryPlan, SessionPlans, SimpleQueryPlan, bind_parameters,
    declared_parameter_types, may_change_plans, parse_text, plan_key, plan_prepare, plan_query,
};
use super::settings::{apply_startup_parameters, copy_format_parameters};
use super::statement_log::{RowsSent, StatementReports, StatementTrace};
use super::text_types::{result_fields, text_parameter_types};
use super::transactions::{in_failed_block, is_rollback_to_savepoint, session_writes};

/// Process ids and secret keys for BackendKeyData, which cancel requests name.
static KEY_GENERATOR: LazyLock<RandomPidSecretKeyGenerator> =
    LazyLock::new(RandomPidSecretKeyGenerator::default);

/// Startup: checks the database and TLS, authenticates the user as configured
/// ([`super::authentication`]), then assigns the process id and secret key, applies the
/// client's startup parameters to its session and reports PostgreSQL's parameters back, as
/// PostgreSQL does.
pub(crate) struct Startup {
    session: Arc<SessionContext>,
    activities: Arc<ActivityRegistry>,
    activity: Arc<OnceLock<Arc<SessionActivity>>>,
    login: Arc<Login>,
    /// Where the SCRAM exchange stands.
    scram: tokio::sync::Mutex<ScramState>,
}

/// What every connection shares for who its user is: the security settings, the throttle,
/// and the store holding users and grants.
pub(crate) struct Login {
    pub(crate) security: Security,
    pub(crate) throttle: LoginThrottle,
    pub(crate) store: Arc<dyn MetadataStore>,
}

impl Login {
    /// What `user` may do now; a name the store does not know is an administrator only
    /// under trust authentication (see [`SessionAccess::resolve`]).
    async fn resolve_access(&self, user: &str) -> Result<SessionAccess, MetadataError> {
        let trusted = self.security.auth == AuthMethod::Trust;
        SessionAccess::resolve(self.store.as_ref(), user, trusted).await
    }
}

/// How long a session's resolved access is used before it is resolved again.
const ACCESS_REFRESH: Duration = Duration::from_secs(1);

/// The SCRAM exchange of one connection.
#[derive(Debug, Default)]
enum ScramState {
    /// Not started (or not used: trust).
    #[default]
    Idle,
    /// `AuthenticationSASL` sent: the client's first message is next.
    AwaitingClientFirst,
    /// The server's first message sent: the client's final message is next.
    /// `can_login`: whether the role may log in, read with its verifier.
    AwaitingClientFinal {
        exchange: Box<ScramExchange>,
        can_login: bool,
    },
}

/// The user the client names in its startup packet.
fn startup_user<C: ClientInfo>(client: &C) -> String {
    client.metadata().get("user").cloned().unwrap_or_default()
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
        match message {
            PgWireFrontendMessage::Startup(startup) => {
                self.on_startup_packet(client, startup).await
            }
            PgWireFrontendMessage::PasswordMessageFamily(message) => {
                self.on_password_message(client, message).await
            }
            _ => Ok(()),
        }
    }
}

impl Startup {
    /// The startup packet: refuses what PostgreSQL would refuse before authentication, then
    /// asks for SCRAM or, under trust, logs the user in.
    async fn on_startup_packet<C>(
        &self,
        client: &mut C,
        startup: StartupMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        auth::protocol_negotiation(client, &startup).await?;
        auth::save_startup_parameters_to_metadata(client, &startup);
        let user = startup_user(client);
        if user.is_empty() {
            return Err(fatal(
                "28000",
                "no PostgreSQL user name specified in startup packet".into(),
            ));
        }
        let security = &self.login.security;
        if security.tls_required && !client.is_secure() {
            return Err(fatal(
                "28000",
                format!(
                    "connection refused for user \"{user}\": this server accepts only TLS connections (sslmode=require)"
                ),
            ));
        }
        let database = startup
            .parameters
            .get("database")
            .cloned()
            .unwrap_or_else(|| user.clone());
        if !is_our_database(&database, &user) {
            return Err(fatal(
                "3D000",
                format!("database \"{database}\" does not exist"),
            ));
        }
        apply_startup_parameters(&self.session, &startup.parameters)
            .map_err(|e| fatal(super::errors::sqlstate(&e), e.strip_backtrace()))?;
        match security.auth {
            AuthMethod::Trust => self.logged_in(client, user, database).await,
            AuthMethod::ScramSha256 => {
                let address = client.socket_addr().ip();
                if let Some(remaining) = self.login.throttle.locked_for(&user, address) {
                    return Err(locked_out(&user, address, remaining));
                }
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                *self.scram.lock().await = ScramState::AwaitingClientFirst;
                client
                    .send(PgWireBackendMessage::Authentication(Authentication::SASL(
                        vec![SCRAM_SHA_256.to_owned()],
                    )))
                    .await?;
                Ok(())
            }
        }
    }

    /// The client's SCRAM messages.
    async fn on_password_message<C>(
        &self,
        client: &mut C,
        message: PasswordMessageFamily,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let user = startup_user(client);
        let mut state = self.scram.lock().await;
        match std::mem::take(&mut *state) {
            ScramState::AwaitingClientFirst => {
                let first = message.into_sasl_initial_response()?;
                if first.auth_method != SCRAM_SHA_256 {
                    return Err(fatal(
                        "28000",
                        format!(
                            "SASL mechanism {:?} is not offered: use {SCRAM_SHA_256}",
                            first.auth_method
                        ),
                    ));
                }
                let role = self
                    .login
                    .store
                    .access()
                    .await
                    .map_err(|e| {
                        fatal(
                            "08006",
                            format!("cannot read the users from the metadata store: {e}"),
                        )
                    })?
                    .0
                    .roles
                    .remove(&user);
                let can_login = role.as_ref().is_some_and(|role| role.can_login);
                let verifier = role
                    .and_then(|role| role.password_verifier)
                    .and_then(|text| ScramVerifier::parse(&text));
                let data = first.data.unwrap_or_default();
                let (exchange, server_first) = ScramExchange::start(&data, &user, verifier)?;
                let address = client.socket_addr().ip();
                self.login
                    .throttle
                    .attempt(&user, address)
                    .map_err(|remaining| locked_out(&user, address, remaining))?;
                *state = ScramState::AwaitingClientFinal {
                    exchange: Box::new(exchange),
                    can_login,
                };
                client
                    .send(PgWireBackendMessage::Authentication(
                        Authentication::SASLContinue(server_first.into()),
                    ))
                    .await?;
                Ok(())
            }
            ScramState::AwaitingClientFinal {
                exchange,
                can_login,
            } => {
                let response = message.into_sasl_response()?;
                let address = client.socket_addr().ip();
                let Some(server_final) = exchange.finish(&response.data)? else {
                    self.login.throttle.failed(&user, address).await;
                    return Err(password_failed(&user));
                };
                if !can_login {
                    return Err(fatal(
                        "28000",
                        format!("role \"{user}\" is not permitted to log in"),
                    ));
                }
                self.login.throttle.succeeded(&user, address);
                client
                    .send(PgWireBackendMessage::Authentication(
                        Authentication::SASLFinal(server_final.into()),
                    ))
                    .await?;
                let database = client
                    .metadata()
                    .get("database")
                    .cloned()
                    .unwrap_or_else(|| user.clone());
                self.logged_in(client, user, database).await
            }
            ScramState::Idle => Err(fatal("08P01", "unexpected password message".into())),
        }
    }

    /// The client is `user`: sets up its session and reports the parameters.
    async fn logged_in<C>(&self, client: &mut C, user: String, database: String) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let access = self
            .login
            .resolve_access(&user)
            .await
            .map_err(|e| fatal("08006", format!("cannot read the user's grants: {e}")))?;
        let (pid, secret) = KEY_GENERATOR.generate(client);
        client.set_pid_and_secret_key(pid, secret);
        for function in SessionConstant::of_connection(pid, &user) {
            self.session.register_udf(function);
        }
        let settings = PostgresSettings::of(self.session.state_ref().read().config_options());
        copy_format_parameters(client.metadata_mut(), &settings);
        // Commits from this connection are recorded under its user, with the statement that
        // made them; its transaction blocks are kept with its writes.
        {
            let state = self.session.state_ref();
            let mut state = state.write();
            let config = state.config_mut();
            config.set_extension(Arc::new(CommitAuthor(user.clone())));
            config.set_extension(Arc::new(SessionWrites::default()));
            Arc::new(access).install(config.options_mut());
        }
        let application = client
            .metadata()
            .get("application_name")
            .cloned()
            .unwrap_or_default();
        let registered =
            self.activities
                .connected(pid, user, database, application, client.socket_addr());
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
        login: Arc<Login>,
        reports: StatementReports,
    ) -> Self {
        let activity = Arc::new(OnceLock::new());
        let prepared = Arc::new(PreparedNames::default());
        Self {
            queries: Arc::new(SessionQueries {
                parser: Arc::new(SessionParser {
                    inner: service.query_parser(),
                    session: Arc::clone(&session),
                    parsed: EpochCache::new(Arc::clone(&plan_epoch)),
                    unnamed_parsed_at: Mutex::new(None),
                    described: Mutex::new(None),
                    prepared: Arc::clone(&prepared),
                }),
                service,
                plans: SessionPlans::new(Arc::clone(&session), plan_epoch),
                session: Arc::clone(&session),
                cancels: Arc::clone(&cancels),
                cancel_slot: OnceLock::new(),
                format_options: SessionFormatOptions::default(),
                activities: Arc::clone(&activities),
                activity: Arc::clone(&activity),
                login: Arc::clone(&login),
                reports,
                sent: Arc::default(),
                access_resolved: Mutex::new((Instant::now(), login.store.committed_changes())),
                block_cursors: Mutex::default(),
                prepared,
            }),
            startup: Arc::new(Startup {
                session,
                activities,
                activity,
                login,
                scram: Default::default(),
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
    /// The connection's key and its slot in `cancels`, registered at its first query.
    cancel_slot: OnceLock<(ConnectionKey, Arc<CancelSlot>)>,
    format_options: SessionFormatOptions,
    activities: Arc<ActivityRegistry>,
    activity: Arc<OnceLock<Arc<SessionActivity>>>,
    login: Arc<Login>,
    reports: StatementReports,
    /// The rows the running statement has sent.
    sent: Arc<RowsSent>,
    /// When the session's access was last resolved, and the store's committed changes then.
    access_resolved: Mutex<(Instant, u64)>,
    /// The cursors declared without `WITH HOLD` in the open transaction block, closed when it
    /// ends.
    block_cursors: Mutex<Vec<String>>,
    /// The statements the connection prepared (shared with its parser, which describes
    /// `EXECUTE`).
    prepared: Arc<PreparedNames>,
}

impl SessionQueries {
    /// Forgets every statement the connection prepared, through the protocol and with SQL
    /// `PREPARE`.
    fn deallocate_all<C>(&self, client: &mut C)
    where
        C: ClientPortalStore,
        C::PortalStore: PortalStore,
    {
        for name in self.prepared.take_all() {
            client.portal_store().rm_statement(&name);
        }
    }

    /// Answers what `about` asks of the connection's prepared statements (either protocol;
    /// `query` is its text): `DEALLOCATE ALL`, `DEALLOCATE name` of a statement stored by a
    /// Parse or by SQL `PREPARE`, and `PREPARE`, planned as the server plans any query
    /// ([`plan_prepare`]) and kept with the connection. `DISCARD ALL` deallocates
    /// here and is answered by the settings hook after; `EXECUTE` is run by [`Self::executed`]
    /// (`None` for both). In a failed transaction block all are refused, by datafusion-postgres
    /// when not here.
    async fn answer_prepared_statements<C>(
        &self,
        client: &mut C,
        query: &str,
        about: Option<&PreparedStatements>,
    ) -> PgWireResult<Option<Response>>
    where
        C: ClientInfo + ClientPortalStore,
        C::PortalStore: PortalStore,
    {
        let Some(about) = about else {
            return Ok(None);
        };
        if client.transaction_status() == TransactionStatus::Error {
            return match about {
                PreparedStatements::DeallocateAll => Err(in_failed_block()),
                _ => Ok(None),
            };
        }
        let tag = match about {
            PreparedStatements::DiscardAll => {
                self.deallocate_all(client);
                return Ok(None);
            }
            PreparedStatements::Execute(_) => return Ok(None),
            PreparedStatements::DeallocateAll => {
                self.deallocate_all(client);
                "DEALLOCATE ALL"
            }
            PreparedStatements::Deallocate(name) => {
                match self.prepared.forget_parsed(name) {
                    Some(parsed) => client.portal_store().rm_statement(&parsed),
                    None if self.prepared.forget_sql_prepared(name) => {}
                    None => return Err(not_prepared(&folded(name))),
                }
                "DEALLOCATE"
            }
            PreparedStatements::Prepare(written) => {
                let stop = self.begin_query(client, query);
                let state = self.session.state();
                let plan = plan_prepare(&state, written.clone(), self.plans.epoch());
                // Boxed, as every rare and large step of a query is (see `copy_out`).
                let prepared = stop.until_stopped(Box::pin(plan)).await?;
                self.prepared.prepare(prepared)?;
                "PREPARE"
            }
        };
        Ok(Some(Response::Execution(Tag::new(tag))))
    }

    /// Runs `execute`, an `EXECUTE name [(parameters)]` plan (`query` its text): the statement
    /// SQL `PREPARE` kept ([`Self::current_sql_prepared`]), its parameters bound, as a plain
    /// query runs, its rows in `format` with PostgreSQL's column names and types, or as a data
    /// change, tagged as PostgreSQL tags it (`INSERT 0 1`).
    async fn executed<C: ClientInfo>(
        &self,
        client: &C,
        query: &str,
        execute: &LogicalPlan,
        format: &Format,
    ) -> PgWireResult<Response> {
        let stop = self.begin_query(client, query);
        let (name, parameters) = executed_statement(execute)?;
        let prepared = self.current_sql_prepared(name, &stop).await?;
        let plan = prepared.bound(&self.session.state(), parameters)?;
        if let Some(tag) = prepared.tag {
            // Boxed, as every rare and large step of a query is (see `copy_out`).
            let changed = Box::pin(run_tagged(&self.session, plan, tag));
            return stop.until_stopped(changed).await;
        }
        let options = self.format_options.of(client.metadata());
        let run = self.plans.run_once(plan, format, options);
        Ok(cancellable(stop.until_stopped(run).await?, stop))
    }

    /// The statement SQL `PREPARE` kept under `name`, planned again when anything it may read
    /// has changed since it was planned (the plan epoch moved: DDL, `SET`, new access), as
    /// PostgreSQL plans it again: `42P01` once its table is gone, `0A000` when its columns
    /// are no longer those the client was told.
    async fn current_sql_prepared(
        &self,
        name: &str,
        stop: &QueryStop,
    ) -> PgWireResult<Arc<SqlPrepared>> {
        let prepared = self.prepared.sql_prepared(name)?;
        let epoch = self.plans.epoch();
        if prepared.planned_at == epoch {
            return Ok(prepared);
        }
        let state = self.session.state();
        // Boxed, as every rare and large step of a query is (see `copy_out`).
        let plan = Box::pin(plan_prepare(&state, prepared.written.clone(), epoch));
        let replanned = stop.until_stopped(plan).await?;
        if !prepared.answers_as(&replanned)? {
            return Err(user_error(
                "0A000",
                "cached plan must not change result type",
            ));
        }
        Ok(self.prepared.replanned(replanned))
    }

    /// Resolves the session user's access again when it is older than [`ACCESS_REFRESH`] or
    /// this server committed a change of members, roles or grants since: changes made on
    /// another replica apply within that time.
    async fn refresh_access(&self) -> PgWireResult<()> {
        let generation = self.login.store.committed_changes();
        {
            let resolved = self
                .access_resolved
                .lock()
                .expect("access freshness poisoned");
            if resolved.1 == generation && resolved.0.elapsed() < ACCESS_REFRESH {
                return Ok(());
            }
        }
        let current = self.session_access();
        let Some(current) = current else {
            return Ok(());
        };
        // Boxed, as every rare and large step of a query is (see `copy_out`).
        let access = Box::pin(self.login.resolve_access(current.user()))
            .await
            .map_err(|e| api_error(datafusion::common::DataFusionError::from(e)))?;
        if access.fingerprint() != current.fingerprint() {
            // Kept plans carry the old scope's filters.
            self.plans.statement_changed_plans();
        }
        Arc::new(access).install(self.session.state_ref().write().config_mut().options_mut());
        *self
            .access_resolved
            .lock()
            .expect("access freshness poisoned") = (Instant::now(), generation);
        Ok(())
    }

    /// The session's access as resolved last (`None` before login).
    fn session_access(&self) -> Option<Arc<SessionAccess>> {
        SessionAccess::of(self.session.state_ref().read().config_options()).cloned()
    }

    /// Runs a role or grant statement.
    async fn run_access_statement<C: ClientInfo>(
        &self,
        client: &C,
        statement: datafusion::common::Result<AccessStatement>,
    ) -> PgWireResult<Response> {
        if client.transaction_status() == TransactionStatus::Error {
            return Err(in_failed_block());
        }
        let statement = statement.map_err(api_error)?;
        let access = self.session_access();
        // Boxed, as every rare and large step of a query is (see `copy_out`).
        Box::pin(statement.execute(self.login.store.as_ref(), access.as_deref()))
            .await
            .map_err(api_error)?;
        let user = access.as_ref().map_or("", |access| access.user());
        tracing::info!(user, change = %statement, "roles or grants changed");
        self.plans.statement_changed_plans();
        Ok(Response::Execution(Tag::new(statement.tag())))
    }
    /// Opens a cursor (either protocol), refused in a failed transaction block and, unless
    /// it is `WITH HOLD`, outside a block (25P01, as PostgreSQL).
    async fn declare_cursor<C>(
        &self,
        client: &mut C,
        cursor: CursorDeclaration,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if client.transaction_status() == TransactionStatus::Error {
            return Err(in_failed_block());
        }
        let closes_with_block = !cursor.holds();
        if closes_with_block && !session_writes(&self.session).in_block() {
            return Err(user_error(
                "25P01",
                "DECLARE CURSOR can only be used in transaction blocks",
            ));
        }
        let name = cursor.name().to_owned();
        // Boxed, as every rare and large step of a query is (see `copy_out`).
        let opened = Box::pin(cursor.open(&self.session, client)).await?;
        let mut block_cursors = self.block_cursors.lock().expect("cursors poisoned");
        // A name declared again (after a CLOSE) is the new cursor's.
        block_cursors.retain(|open| *open != name);
        if closes_with_block {
            block_cursors.push(name);
        }
        Ok(opened)
    }

    /// Closes the cursors declared without `WITH HOLD` once their transaction block has
    /// ended (`COMMIT`, `ROLLBACK`, a failed `COMMIT`), as PostgreSQL does.
    fn close_cursors_after_block<C>(&self, client: &C)
    where
        C: ClientPortalStore,
        C::PortalStore: PortalStore,
    {
        let mut block_cursors = self.block_cursors.lock().expect("cursors poisoned");
        if block_cursors.is_empty() || session_writes(&self.session).in_block() {
            return;
        }
        for name in block_cursors.drain(..) {
            client.portal_store().rm_portal(&name);
        }
    }

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
        // Boxed: its state (several KiB) would otherwise be part of every query's future,
        // moved into each `do_query`'s box even when the query is no COPY.
        stop.until_stopped(Box::pin(copy.run(&self.session, options)))
            .await
    }

    /// Starts `query` (its text as `pg_stat_activity` shows it): stoppable by cancel and timeout.
    fn begin_query<C: ClientInfo + ?Sized>(&self, client: &C, query: &str) -> QueryStop {
        let (_, cancel_slot) = self.cancel_slot.get_or_init(|| {
            let (pid, secret) = client.pid_and_secret_key();
            let key = (pid, secret.to_bytes());
            (key.clone(), self.cancels.register(key))
        });
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
        cancel_slot.begin(timeout, running, Arc::clone(&self.sent))
    }
}

impl SessionQueries {
    /// Starts tracing the statement `text` ([`StatementTrace::begin`]).
    fn begin_statement(&self, text: &str) -> StatementTrace {
        let user = self.activity.get().map_or("", |activity| activity.user());
        StatementTrace::begin(user, text, &self.sent, &self.reports)
    }

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
        if let Some((key, _)) = self.cancel_slot.get() {
            self.cancels.remove(key);
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
        let trace = self.begin_statement(&query.query);
        let answered = self
            ._on_query(client, query)
            .instrument(trace.span().clone())
            .await;
        trace.end(answered.as_ref().err());
        answered
    }

    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.refresh_access().await?;
        // Not shown in pg_stat_activity nor kept with commits: it may hold a password.
        if let Some(statement) = AccessStatement::parse(query) {
            return Ok(vec![self.run_access_statement(client, statement).await?]);
        }
        if let Some(cursor) = CursorDeclaration::parse(query) {
            return Ok(vec![self.declare_cursor(client, cursor).await?]);
        }
        let about_prepared = PreparedStatements::parse(query);
        if let Some(answer) = self
            .answer_prepared_statements(client, query, about_prepared.as_ref())
            .await?
        {
            return Ok(vec![answer]);
        }
        if let Some(PreparedStatements::Execute(execute)) = &about_prepared
            && client.transaction_status() != TransactionStatus::Error
        {
            let state = self.session.state();
            let execute = DfStatement::Statement(execute.clone());
            let plan = Box::pin(state.statement_to_plan(execute))
                .await
                .map_err(api_error)?;
            let format = &Format::UnifiedText;
            return Ok(vec![self.executed(client, query, &plan, format).await?]);
        }
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
                let options = self.format_options.of(client.metadata());
                let run = self.plans.run(
                    &plan,
                    ParamValues::List(vec![]),
                    &Format::UnifiedText,
                    options,
                );
                return Ok(vec![cancellable(stop.until_stopped(run).await?, stop)]);
            }
            SimpleQueryPlan::Once(plan) => {
                let options = self.format_options.of(client.metadata());
                let run = self.plans.run_once(plan, &Format::UnifiedText, options);
                return Ok(vec![cancellable(stop.until_stopped(run).await?, stop)]);
            }
        };
        let responses = stop
            .until_stopped(SimpleQueryHandler::do_query(&self.service, client, query))
            .await;
        self.close_cursors_after_block(client);
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

    /// Runs an extended-protocol portal (`Execute`).
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
        self.refresh_access().await?;
        let (sql, parsed) = &portal.statement.statement;
        // A statement parsed into a plan is neither of these (see `parse_sql`), so the text of
        // a prepared query is not scanned for them on every Execute.
        if parsed.is_none()
            && let Some(statement) = AccessStatement::parse(sql)
        {
            return self.run_access_statement(client, statement).await;
        }
        if parsed.is_none()
            && let Some(cursor) = CursorDeclaration::parse(sql)
        {
            return self.declare_cursor(client, cursor).await;
        }
        let about_prepared = PreparedStatements::parse(sql);
        if let Some(answer) = self
            .answer_prepared_statements(client, sql, about_prepared.as_ref())
            .await?
        {
            return Ok(answer);
        }
        if let Some((_, execute @ LogicalPlan::Statement(PlanStatement::Execute(_)))) = parsed
            && client.transaction_status() != TransactionStatus::Error
        {
            let format = &portal.result_column_format;
            let answer = self.executed(client, sql, execute, format).await?;
            return all_rows_sent(client, answer, max_rows).await;
        }
        let stop = self.begin_query(client, sql);
        if parsed.is_none()
            && let Some(copy) = CopyOut::parse(sql)
        {
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
                // Boxed, as every rare and large step of a query is (see `copy_out`).
                return stop
                    .until_stopped(Box::pin(run_tagged(&self.session, bound, tag)))
                    .await;
            }
            let declared = &portal.statement.parameter_types;
            let prepared = self
                .plans
                .plan_prepared_query(sql, declared, statement, plan)?;
            if !matches!(prepared, PreparedQueryPlan::Delegate) {
                if client.transaction_status() == TransactionStatus::Error {
                    return Err(in_failed_block());
                }
                let describe = || self.parser.get_parameter_types(&portal.statement.statement);
                let options = self.format_options.of(client.metadata());
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
        self.close_cursors_after_block(client);
        if parsed
            .as_ref()
            .is_some_and(|(statement, _)| may_change_plans(statement))
        {
            self.plans.statement_changed_plans();
        }
        all_rows_sent(client, cancellable(response?, stop), max_rows).await
    }

    /// Parses and stores a statement as pgwire does, except that the unnamed statement's text
    /// parsed again (drivers send a Parse before every run of a query they do not prepare)
    /// keeps the statement already stored when [`SessionParser::holds_parsed`]: copying its
    /// syntax tree and plan out of the parse cache took a tenth of a one-row query's time.
    async fn on_parse<C>(&self, client: &mut C, message: Parse) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !self.parser.holds_parsed(client.portal_store(), &message) {
            let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
            let epoch = self.parser.parsed.epoch().current();
            match StoredStatement::parse(client, &message, self.query_parser()).await? {
                Some(statement) => {
                    client.portal_store().put_statement(Arc::new(statement));
                    self.prepared.parsed(name);
                    if name == DEFAULT_NAME {
                        self.parser.unnamed_parsed_at(epoch);
                    }
                }
                None => client.portal_store().put_empty_statement(name),
            }
        }
        client
            .send(PgWireBackendMessage::ParseComplete(ParseComplete::new()))
            .await?;
        Ok(())
    }

    /// Closes a statement or a portal as pgwire does; a closed statement's name is no longer
    /// one `DEALLOCATE` finds.
    async fn on_close<C>(&self, client: &mut C, message: Close) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        match message.target_type {
            TARGET_TYPE_BYTE_STATEMENT => {
                client.portal_store().rm_statement(name);
                self.prepared.closed(name);
            }
            TARGET_TYPE_BYTE_PORTAL => client.portal_store().rm_portal(name),
            _ => {}
        }
        client
            .send(PgWireBackendMessage::CloseComplete(CloseComplete::new()))
            .await?;
        Ok(())
    }

    /// Each Execute is a statement: its span, counts and query-log line cover the rows it
    /// sends, also when they come from a portal suspended by an earlier Execute (a cursor
    /// fetching in pages), which pgwire sends after `do_query` returns.
    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        let trace = match client.portal_store().get_portal(name) {
            Some(Entry::Value(portal)) => self.begin_statement(&portal.statement.statement.0),
            _ => self.begin_statement(""),
        };
        let answered = self
            ._on_execute(client, message)
            .instrument(trace.span().clone())
            .await;
        trace.end(answered.as_ref().err());
        answered
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
    /// The plan epoch when the unnamed statement stored last was parsed (`None`: none was).
    /// It describes the statement the store holds as unnamed, if that is a statement: a Parse
    /// that fails or is empty leaves no other statement stored under it.
    unnamed_parsed_at: Mutex<Option<u64>>,
    /// The result columns described last.
    described: Mutex<Option<Description>>,
    /// The statements the connection prepared, for a Describe of `EXECUTE`.
    prepared: Arc<PreparedNames>,
}

/// The result columns of a plan's schema in some column formats.
struct Description {
    schema: DFSchemaRef,
    format: Format,
    fields: Vec<FieldInfo>,
}

/// Whether two result column formats are the same.
fn same_formats(one: &Format, other: &Format) -> bool {
    match (one, other) {
        (Format::UnifiedText, Format::UnifiedText)
        | (Format::UnifiedBinary, Format::UnifiedBinary) => true,
        (Format::Individual(one), Format::Individual(other)) => one == other,
        _ => false,
    }
}

impl SessionParser {
    /// Whether the unnamed statement in `store` is what parsing `parse` would give: the same
    /// text and parameter types, parsed while nothing has since changed what queries mean (the
    /// rule that keeps parse results, here without copying one out again).
    fn holds_parsed<S>(&self, store: &S, parse: &Parse) -> bool
    where
        S: PortalStore<Statement = <Parser as QueryParser>::Statement>,
    {
        if parse
            .name
            .as_deref()
            .is_some_and(|name| name != DEFAULT_NAME)
        {
            return false;
        }
        let parsed_at = *self.unnamed_parsed_at.lock().expect("parse epoch poisoned");
        if parsed_at != Some(self.parsed.epoch().current()) {
            return false;
        }
        let Some(Entry::Value(stored)) = store.get_statement(DEFAULT_NAME) else {
            return false;
        };
        stored.statement.0 == parse.query
            && stored.parameter_types.len() == parse.type_oids.len()
            && stored
                .parameter_types
                .iter()
                .zip(&parse.type_oids)
                .all(|(stored, oid)| *stored == Type::from_oid(*oid))
    }

    /// Records that the unnamed statement now stored was parsed at plan epoch `epoch`.
    fn unnamed_parsed_at(&self, epoch: u64) {
        *self.unnamed_parsed_at.lock().expect("parse epoch poisoned") = Some(epoch);
    }
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
        let key = plan_key(sql, types);
        if let Some(parsed) = self.parsed.get(&key) {
            return Ok(Some(parsed.as_ref().clone()));
        }
        if CopyOut::parse(sql).is_some()
            || AccessStatement::parse(sql).is_some()
            || CursorDeclaration::parse(sql).is_some()
        {
            // Run by the extended query handler as the simple protocol runs it.
            return Ok(Some((sql.to_owned(), None)));
        }
        let epoch = self.parsed.epoch().current();
        match parse_text(sql) {
            ParsedText::Query(query) => {
                // Typed (in `plan_query`) before Describe reports the columns, so that the rows
                // match what it said.
                let statement = query.statement.clone();
                let declared = declared_parameter_types(types);
                let plan = plan_query(&self.session.state(), query, &declared)
                    .instrument(tracing::info_span!("planning", kind = "parse"))
                    .await?;
                let parsed = (sql.to_owned(), Some((statement, plan)));
                self.parsed.insert(&key, Arc::new(parsed.clone()), epoch);
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
        // `PREPARE name AS ...` takes no parameters itself; its statement's are EXECUTE's.
        if let Some((_, LogicalPlan::Statement(PlanStatement::Prepare(_)))) = &statement.1 {
            return Ok(Vec::new());
        }
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
    /// (see [`super::text_types`]). A plain query's description is kept for the next Describe
    /// of the same plan in the same formats (drivers describe a prepared statement's portal
    /// before every run).
    fn get_result_schema(
        &self,
        statement: &Self::Statement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        match &statement.1 {
            Some((_, execute @ LogicalPlan::Statement(PlanStatement::Execute(_)))) => {
                // `EXECUTE name`: the columns of the statement it runs; a data change answers
                // with its tag alone.
                let (name, parameters) = executed_statement(execute)?;
                let prepared = self.prepared.sql_prepared(name)?;
                if prepared.tag.is_some() {
                    return Ok(Vec::new());
                }
                let plan = prepared.bound(&self.session.state(), parameters)?;
                let format = column_format.unwrap_or(&Format::UnifiedText);
                result_fields(plan.schema().as_arrow(), format, None)
            }
            Some((_, plan)) if !matches!(plan, LogicalPlan::Ddl(_) | LogicalPlan::Dml(_)) => {
                let format = column_format.unwrap_or(&Format::UnifiedText);
                let mut described = self.described.lock().expect("description poisoned");
                if let Some(kept) = &*described
                    && Arc::ptr_eq(&kept.schema, plan.schema())
                    && same_formats(&kept.format, format)
                {
                    return Ok(kept.fields.clone());
                }
                let fields = result_fields(plan.schema().as_arrow(), format, None)?;
                *described = Some(Description {
                    schema: Arc::clone(plan.schema()),
                    format: format.clone(),
                    fields: fields.clone(),
                });
                Ok(fields)
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
