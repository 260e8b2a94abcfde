//! The handlers of one client connection: its own DataFusion session, cancellable queries,
//! SQLSTATE errors.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion_postgres::{DfSessionService, Parser};
use futures::Sink;
use pgwire::api::auth::StartupHandler;
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::portal::Portal;
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::Response;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, ErrorHandler, PgWireServerHandlers};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use tokio_util::sync::CancellationToken;

use super::cancel::{CancelRegistry, ConnectionKey, cancellable};
use super::errors::SqlStateErrors;

/// Startup without authentication (authentication arrives with the security work); pgwire
/// still assigns the process id and secret key that cancel requests name.
#[derive(Debug, Default)]
pub(crate) struct Startup;

impl NoopStartupHandler for Startup {}

/// Everything pgwire asks for on one connection.
pub(crate) struct Connection {
    queries: Arc<SessionQueries>,
    startup: Arc<Startup>,
    cancels: Arc<CancelRegistry>,
    errors: Arc<SqlStateErrors>,
}

impl Connection {
    /// Handlers over `service`, the connection's own session.
    pub(crate) fn new(service: DfSessionService, cancels: Arc<CancelRegistry>) -> Self {
        Self {
            queries: Arc::new(SessionQueries { service, cancels: Arc::clone(&cancels), key: Mutex::new(None) }),
            startup: Arc::new(Startup),
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

/// Runs the connection's queries through datafusion-postgres, each under a cancel token.
pub(crate) struct SessionQueries {
    service: DfSessionService,
    cancels: Arc<CancelRegistry>,
    key: Mutex<Option<ConnectionKey>>,
}

impl SessionQueries {
    fn begin_query<C: ClientInfo + ?Sized>(&self, client: &C) -> CancellationToken {
        let (pid, secret) = client.pid_and_secret_key();
        let key = (pid, secret.to_bytes());
        *self.key.lock().expect("connection key poisoned") = Some(key.clone());
        self.cancels.begin(key)
    }
}

impl Drop for SessionQueries {
    fn drop(&mut self) {
        if let Some(key) = self.key.lock().expect("connection key poisoned").take() {
            self.cancels.remove(&key);
        }
    }
}

#[async_trait]
impl SimpleQueryHandler for SessionQueries {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let token = self.begin_query(client);
        let responses = tokio::select! {
            biased;
            _ = token.cancelled() => return Err(PgWireError::QueryCanceled),
            responses = SimpleQueryHandler::do_query(&self.service, client, query) => responses?,
        };
        Ok(responses.into_iter().map(|response| cancellable(response, token.clone())).collect())
    }
}

#[async_trait]
impl ExtendedQueryHandler for SessionQueries {
    type Statement = <DfSessionService as ExtendedQueryHandler>::Statement;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.service.query_parser()
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
        let token = self.begin_query(client);
        let response = tokio::select! {
            biased;
            _ = token.cancelled() => return Err(PgWireError::QueryCanceled),
            response = ExtendedQueryHandler::do_query(&self.service, client, portal, max_rows) => response?,
        };
        Ok(cancellable(response, token))
    }
}
