//! `DECLARE name [BINARY] CURSOR ... FOR query`, on either protocol: the query is planned, run
//! and encoded as the same query sent on its own is, so `FETCH` gives the columns, names and
//! types it would (`count`, not DataFusion's `count(*)`; a `uuid` as a uuid; a `timestamptz`
//! in the session's zone). `FETCH` and `CLOSE` stay datafusion-postgres's
//! ([`CursorStatementHook`]), reading the portal stored here. As in PostgreSQL, a cursor
//! declared without `WITH HOLD` needs a transaction block and closes when it ends.
//!
//! [`CursorStatementHook`]: datafusion_postgres::hooks::cursor::CursorStatementHook

use std::sync::Arc;

use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{DeclareType, Statement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion_postgres::hooks::HookClient;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::results::{Response, Tag};
use pgwire::api::stmt::StoredStatement;
use pgwire::api::store::PortalStore;
use pgwire::error::PgWireResult;
use pgwire::types::format::FormatOptions;

use super::errors::user_error;
use super::session_plans::{ParsedText, parse_text, plan_query, run_planned};
use super::starts_with_keyword;

/// One cursor a `DECLARE` statement opens.
pub(crate) struct CursorDeclaration {
    name: String,
    /// `BINARY`: rows in binary format rather than text.
    binary: bool,
    /// `WITH HOLD`: the cursor outlives its transaction (and may be declared outside one).
    hold: bool,
    /// The cursor's query, as written.
    query: String,
}

impl CursorDeclaration {
    /// Recognises `sql` as a single `DECLARE ... CURSOR`; anything else is `None` and goes the
    /// usual way.
    pub(crate) fn parse(sql: &str) -> Option<Self> {
        if !starts_with_keyword(sql, "declare") {
            return None;
        }
        let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
        let [Statement::Declare { stmts }] = statements.as_slice() else {
            return None;
        };
        let [declaration] = stmts.as_slice() else {
            return None;
        };
        let (Some(DeclareType::Cursor), [name], Some(query)) = (
            &declaration.declare_type,
            declaration.names.as_slice(),
            &declaration.for_query,
        ) else {
            return None;
        };
        Some(Self {
            name: name.value.clone(),
            binary: declaration.binary == Some(true),
            hold: declaration.hold == Some(true),
            query: query.to_string(),
        })
    }

    /// The cursor's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Whether the cursor is declared `WITH HOLD`.
    pub(crate) fn holds(&self) -> bool {
        self.hold
    }

    /// Opens the cursor in `client`'s portals: its query starts running in `session`, and its
    /// rows wait in a portal of the cursor's name until `FETCH`es take them.
    pub(crate) async fn open(
        self,
        session: &SessionContext,
        client: &mut dyn HookClient,
    ) -> PgWireResult<Response> {
        if client.portal_store().get_portal(&self.name).is_some() {
            return Err(user_error(
                "42P03",
                format!("cursor \"{}\" already exists", self.name),
            ));
        }
        let ParsedText::Query(plain) = parse_text(&self.query) else {
            return Err(user_error(
                "42601",
                "a cursor's query must be one SELECT or VALUES",
            ));
        };
        let plan = plan_query(&session.state(), plain, &[]).await?;
        let format = match self.binary {
            true => Format::UnifiedBinary,
            false => Format::UnifiedText,
        };
        let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        let rows = run_planned(session, plan, &format, options).await?;
        let statement = StoredStatement::new(self.name.clone(), (self.query, None), Vec::new());
        let portal = Portal::new_cursor(self.name, Arc::new(statement));
        portal.start(rows).await;
        client.portal_store().put_portal(Arc::new(portal));
        Ok(Response::Execution(Tag::new("DECLARE CURSOR")))
    }
}
