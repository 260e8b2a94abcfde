//! The PostgreSQL wire endpoint.
//!
//! Built on pgwire and datafusion-postgres (which brings the `pg_catalog` emulation and the
//! statement hooks), entered through our own accept loop so that every connection gets its own
//! DataFusion session (a `SET` in one connection never reaches another) and its own thread
//! ([`connection_threads`]), while queries run their parallel parts on the server's shared
//! runtime. Cancel requests stop
//! execution ([`cancel`]) and errors carry PostgreSQL's SQLSTATEs ([`errors`]).

mod activity;
mod admin_statements;
mod answers;
mod array_expansion;
mod array_subquery;
mod authentication;
mod cancel;
mod catalog_arrays;
mod cells;
mod client_core;
mod connection;
mod connection_threads;
mod copy_out;
mod cursors;
mod data_rows;
mod direct_planning;
mod dml_tags;
mod eager_reads;
pub mod errors;
pub mod float_text;
mod format_options;
mod interval_literals;
mod pg_settings;
mod prepared_names;
mod query_metrics;
mod reg_literals;
mod roles_catalog;
mod search_path;
mod session_hooks;
mod session_plans;
mod settings;
mod socket;
mod statement_log;
mod text_types;
mod transactions;
mod values_types;
mod warm_up;

use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use datafusion::common::DFSchemaRef;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::{EmptyRelation, LogicalPlan};
use datafusion::prelude::SessionContext;
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::DfSessionService;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use pgwire::error::PgWireError;
use quantatom_engine::plan_reuse::PlanEpoch;
use quantatom_engine::{CATALOG, Engine, with_memory_limit};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use activity::ActivityRegistry;
pub use authentication::{AuthMethod, LoginLimits, Security, tls_acceptor};
use authentication::{LoginThrottle, fatal};
pub use query_metrics::{QueryMetrics, write_counter, write_labelled_counter};
pub use statement_log::QueryLog;
use statement_log::StatementReports;

use cancel::CancelRegistry;
use client_core::ClientCore;
use connection::{Connection, Login};
use pg_settings::SessionSettingsCatalog;
use search_path::PublicWithPgCatalog;
use session_hooks::BothProtocols;
use settings::SettingsHook;
use socket::{Ending, IdlePoll};
use transactions::TransactionHook;

/// Whether `sql` starts with `keyword` (ASCII, any case) after leading whitespace: a cheap look
/// before parsing a statement the server handles itself, as every query is looked at.
fn starts_with_keyword(sql: &str, keyword: &str) -> bool {
    sql.trim_start()
        .get(..keyword.len())
        .is_some_and(|word| word.eq_ignore_ascii_case(keyword))
}

/// The plan of a statement a hook answers itself: no rows, `schema` for Describe.
fn answered_plan(schema: DFSchemaRef) -> LogicalPlan {
    LogicalPlan::EmptyRelation(EmptyRelation {
        produce_one_row: false,
        schema,
    })
}

/// A session over `engine` as a Postgres client sees it: the engine's session plus the
/// `pg_catalog` emulation clients introspect, with a `pg_settings` that shows the session's own
/// parameters and a `pg_stat_activity` over `activities`, and `pg_catalog` searched first for
/// unqualified names. Every connection starts from one; in-process tests use one (with an empty
/// registry) to see the same SQL surface.
pub fn postgres_session(
    engine: &Engine,
    activities: &Arc<ActivityRegistry>,
) -> datafusion::common::Result<SessionContext> {
    let context = SessionContext::new_with_state(engine.session_state());
    datafusion_pg_catalog::setup_pg_catalog(&context, CATALOG, EmptyContextProvider)
        .map_err(|e| *e)?;
    text_types::install(&context);
    let missing =
        |what: &str| datafusion::common::DataFusionError::Internal(format!("{what} is missing"));
    let catalog = context
        .catalog(CATALOG)
        .ok_or_else(|| missing("the catalog"))?;
    let pg_catalog = catalog
        .schema("pg_catalog")
        .ok_or_else(|| missing("pg_catalog"))?;
    let pg_catalog: Arc<dyn datafusion::catalog::SchemaProvider> =
        Arc::new(SessionSettingsCatalog::new(
            pg_catalog,
            activities.table()?,
            Arc::clone(engine.metadata()),
        )?);
    catalog.register_schema("pg_catalog", Arc::clone(&pg_catalog))?;
    let public = catalog.schema("public").ok_or_else(|| missing("public"))?;
    catalog.register_schema(
        "public",
        Arc::new(PublicWithPgCatalog::new(public, pg_catalog)),
    )?;
    Ok(context)
}

/// A bound Postgres-wire server over an [`Engine`].
pub struct Server {
    listener: TcpListener,
    session_template: SessionState,
    plan_epoch: Arc<PlanEpoch>,
    cancels: Arc<CancelRegistry>,
    activities: Arc<ActivityRegistry>,
    login: Arc<Login>,
    limits: ConnectionLimits,
    metrics: Arc<QueryMetrics>,
    query_memory_limit: Option<usize>,
    query_log: QueryLog,
    idle_poll: IdlePoll,
}

/// How long a connection polls for its client's next message after a response before it
/// sleeps, by default (see [`Server::with_idle_poll`]).
pub const DEFAULT_IDLE_POLL: Duration = Duration::from_micros(200);

/// How long the accept loop waits after a failed accept (out of file descriptors or memory)
/// before it tries again.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// How many clients a server holds, and how it lets them go when it stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections held at once; one more is refused with 53300 (a cancel request is still
    /// served).
    pub max_connections: usize,
    /// How long a stopping server lets running statements finish before it closes their
    /// connections anyway.
    pub drain_timeout: Duration,
}

impl Default for ConnectionLimits {
    /// 1,000 connections; 30 seconds to drain.
    fn default() -> Self {
        Self {
            max_connections: 1000,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

impl Server {
    /// Binds `address` with [`Security::default`] (trust, no TLS): see [`Server::bind_secured`].
    pub async fn bind(engine: &Engine, address: SocketAddr) -> std::io::Result<Self> {
        Self::bind_secured(engine, address, Security::default()).await
    }

    /// Binds `address` and prepares the session every connection starts from: the engine's
    /// session plus the `pg_catalog` emulation clients introspect. Clients connect and
    /// authenticate as `security` says.
    pub async fn bind_secured(
        engine: &Engine,
        address: SocketAddr,
        security: Security,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(address).await?;
        let activities = Arc::new(ActivityRegistry::default());
        let session_template = postgres_session(engine, &activities)
            .map_err(|e| std::io::Error::other(format!("cannot set up pg_catalog: {e}")))?
            .state();
        let plan_epoch = Arc::clone(engine.plan_epoch());
        let metrics = Arc::<QueryMetrics>::default();
        Ok(Self {
            listener,
            session_template,
            plan_epoch,
            cancels: Arc::default(),
            activities,
            login: Arc::new(Login {
                throttle: LoginThrottle::new(security.login_limits),
                security,
                store: Arc::clone(engine.metadata()),
            }),
            limits: ConnectionLimits::default(),
            idle_poll: IdlePoll::new(DEFAULT_IDLE_POLL, Arc::clone(&metrics)),
            metrics,
            query_memory_limit: engine.query_memory_limit(),
            query_log: QueryLog::Off,
        })
    }

    /// The server holding at most, and draining as, `limits` says.
    pub fn with_limits(mut self, limits: ConnectionLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The server logging every statement as `query_log` says.
    pub fn with_query_log(mut self, query_log: QueryLog) -> Self {
        self.query_log = query_log;
        self
    }

    /// The server's connections polling for up to `budget` after each response before they
    /// sleep, while their client answers within it; one connection at a time, so at most one
    /// core spins. Zero: connections always sleep. A round trip to a client on the same machine
    /// or node then avoids the wake-up from sleep, which on a virtual machine costs more than
    /// a one-row query.
    pub fn with_idle_poll(mut self, budget: Duration) -> Self {
        self.idle_poll = IdlePoll::new(budget, Arc::clone(&self.metrics));
        self
    }

    /// What the admin listener reports of this server: its statements and its connections.
    pub fn observed(&self) -> (Arc<QueryMetrics>, Arc<ActivityRegistry>) {
        (Arc::clone(&self.metrics), Arc::clone(&self.activities))
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves connections until `shutdown` completes; then stops accepting, closes idle
    /// connections (57P01), lets running statements finish for up to the drain timeout, and
    /// closes what is left. A commit is one put-if-absent, so even a statement closed
    /// mid-way never leaves a half-written version.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        let mut connections = JoinSet::new();
        let (stopping, stop) = watch::channel(false);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => {
                    let (socket, peer) = match accepted {
                        Ok(accepted) => accepted,
                        Err(e) => {
                            // Out of file descriptors or memory: retrying at once would spin.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(ACCEPT_RETRY).await;
                            continue;
                        }
                    };
                    let refusal = (connections.len() >= self.limits.max_connections).then(|| {
                        tracing::warn!(%peer, max_connections = self.limits.max_connections, "connection refused: too many clients");
                        fatal("53300", "sorry, too many clients already".into())
                    });
                    let handlers = Arc::new(self.connection());
                    let tls = self.login.security.tls.clone();
                    let refused = refusal.is_some();
                    let ending = Ending { shutdown: stop.clone(), refusal };
                    let idle_poll = self.idle_poll.clone();
                    // The socket stays open while its connection is served: the raw descriptor
                    // stays valid for as long as the connection looks where its client is.
                    let client_core = (!refused).then(|| ClientCore::new(socket.as_raw_fd(), Arc::clone(&self.metrics)));
                    let shared = tokio::runtime::Handle::current();
                    connections.spawn(async move {
                        tracing::debug!(%peer, "connection opened");
                        let serve = move |socket| async move {
                            let status = Arc::clone(&handlers);
                            let handled = move |transaction| status.transaction_status_is(transaction);
                            if let Err(e) = socket::serve_connection(socket, tls, handlers, handled, ending, idle_poll, client_core).await {
                                tracing::debug!(%peer, error = %e, "connection ended with an error");
                            }
                        };
                        // A refused client (or its cancel request) gets no thread: max_connections
                        // bounds the threads.
                        if refused {
                            serve(socket).await;
                        } else if let Err(e) = connection_threads::serve_on_own_thread(shared, socket, serve).await {
                            tracing::warn!(%peer, error = %e, "connection closed: cannot start its thread");
                        }
                        tracing::debug!(%peer, "connection closed");
                    });
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        drop(self.listener);
        let _ = stopping.send(true);
        let open = connections.len();
        tracing::info!(
            open,
            drain_secs = self.limits.drain_timeout.as_secs_f64(),
            "stopping: no new connections; running statements may finish"
        );
        let drained = tokio::time::timeout(self.limits.drain_timeout, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                left = connections.len(),
                "drain timeout: closing connections still running statements"
            );
            connections.shutdown().await;
        }
        Ok(())
    }

    /// Runs `queries` (plain queries, as text) once through a connection's own planning,
    /// execution and encoding, before any client connects, so the first client's first query
    /// does not pay for what the process does once (see [`warm_up`]); the hot-tile cache is
    /// off for them. Returns how many rows they gave.
    pub async fn warm_up(&self, queries: &[String]) -> Result<usize, PgWireError> {
        let mut state = self.connection_state();
        (state.config_mut().options_mut())
            .set("quantatom.tile_cache", "false")
            .map_err(errors::api_error)?;
        let session = Arc::new(SessionContext::new_with_state(state));
        let plans = session_plans::SessionPlans::new(session, Arc::clone(&self.plan_epoch));
        warm_up::run_queries(&plans, queries).await
    }

    /// The session state a new connection starts from: the template's, under an id of its own
    /// and the server's memory limit.
    fn connection_state(&self) -> SessionState {
        let state = SessionStateBuilder::new_from_existing(self.session_template.clone())
            .with_session_id(uuid::Uuid::new_v4().to_string());
        let shared = self.session_template.runtime_env();
        with_memory_limit(state, shared, self.query_memory_limit).build()
    }

    /// Handlers for a new connection, over a session of its own.
    fn connection(&self) -> Connection {
        let state = self.connection_state();
        let hooks: Vec<Arc<dyn datafusion_postgres::QueryHook>> = vec![
            Arc::new(admin_statements::AdminStatements),
            Arc::new(BothProtocols(TransactionHook)),
            Arc::new(CursorStatementHook),
            Arc::new(BothProtocols(SettingsHook::new(state.clone()))),
        ];
        let session = Arc::new(SessionContext::new_with_state(state));
        let service = DfSessionService::new_with_hooks(Arc::clone(&session), hooks);
        Connection::new(
            service,
            session,
            Arc::clone(&self.plan_epoch),
            Arc::clone(&self.cancels),
            Arc::clone(&self.activities),
            Arc::clone(&self.login),
            StatementReports {
                metrics: Arc::clone(&self.metrics),
                log: self.query_log,
            },
        )
    }
}
