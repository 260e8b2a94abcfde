//! What the server tells operators about each statement it answers: a `query` tracing span
//! (query id, user, statement kind, then rows, bytes, duration and SQLSTATE; planning, scans,
//! the tile cache and commits are its children, and the OTLP exporter ships it when one is
//! configured), the counts `/metrics` shows, and, when configured, a query-log line with the
//! statement's text, its literals redacted on request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer, Whitespace};
use pgwire::error::PgWireError;
use pgwire::messages::data::DataRow;
use quantatom_engine::access_statements::AccessStatement;
use tracing::Span;
use tracing::field::Empty;

use super::errors::wire_sqlstate;
use super::query_metrics::QueryMetrics;

/// Whether the server logs every statement it answers (at `info`, target `quantatom::query`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueryLog {
    /// No query log.
    #[default]
    Off,
    /// Each statement with its text as sent (a text that sets a password is redacted).
    On,
    /// Each statement with its literals (strings, numbers) replaced by `?`.
    Redacted,
}

/// Where a server reports the statements it answers: the counts `/metrics` shows, and whether
/// it keeps a query log.
#[derive(Debug, Clone)]
pub(crate) struct StatementReports {
    pub(crate) metrics: Arc<QueryMetrics>,
    pub(crate) log: QueryLog,
}

/// Ids of statements, unique in this process, as spans and the query log show them.
static NEXT_QUERY_ID: AtomicU64 = AtomicU64::new(1);

/// The rows, and the bytes of their values, a connection has sent for its current statement
/// (counted as they leave: see [`super::cancel::cancellable`]).
#[derive(Debug, Default)]
pub(crate) struct RowsSent {
    rows: AtomicU64,
    bytes: AtomicU64,
}

impl RowsSent {
    /// Counts `row`.
    pub(crate) fn sent(&self, row: &DataRow) {
        self.rows.fetch_add(1, Ordering::Relaxed);
        self.bytes
            .fetch_add(row.data.len() as u64, Ordering::Relaxed);
    }

    /// The rows and bytes counted since the last call.
    fn take(&self) -> (u64, u64) {
        (
            self.rows.swap(0, Ordering::Relaxed),
            self.bytes.swap(0, Ordering::Relaxed),
        )
    }
}

/// One statement being answered. Dropped before [`StatementTrace::end`] (its connection
/// closed, or the shutdown's drain timeout ended it), it is recorded as ended by a connection
/// failure (08006).
pub(crate) struct StatementTrace {
    id: u64,
    span: Span,
    started: Instant,
    /// The user and the text the query log shows, when there is a query log.
    logged: Option<(String, String)>,
    sent: Arc<RowsSent>,
    metrics: Arc<QueryMetrics>,
    ended: bool,
}

/// What a statement dropped before its end is recorded with.
const CONNECTION_FAILURE: &str = "08006";

impl StatementTrace {
    /// Starts the statement `text`, sent by `user`, whose rows `sent` counts; `reports` say
    /// where it is recorded.
    pub(crate) fn begin(
        user: &str,
        text: &str,
        sent: &Arc<RowsSent>,
        reports: &StatementReports,
    ) -> Self {
        let id = NEXT_QUERY_ID.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!(
            "query",
            query_id = id,
            user,
            kind = statement_kind(text),
            rows = Empty,
            bytes = Empty,
            duration_ms = Empty,
            sqlstate = Empty,
            otel.status_code = Empty,
        );
        let logged = match reports.log {
            QueryLog::Off => None,
            QueryLog::On => Some((user.to_owned(), logged_text(text, false))),
            QueryLog::Redacted => Some((user.to_owned(), logged_text(text, true))),
        };
        Self {
            id,
            span,
            started: Instant::now(),
            logged,
            sent: Arc::clone(sent),
            metrics: Arc::clone(&reports.metrics),
            ended: false,
        }
    }

    /// The statement's span: what it runs in.
    pub(crate) fn span(&self) -> &Span {
        &self.span
    }

    /// Ends the statement: it ended with `error` (`None`: it succeeded). Records it, with the
    /// rows it sent, in its span, in the metrics and in the query log.
    pub(crate) fn end(mut self, error: Option<&PgWireError>) {
        self.record(error.map(wire_sqlstate));
    }

    fn record(&mut self, sqlstate: Option<&str>) {
        self.ended = true;
        let elapsed = self.started.elapsed();
        let (rows, bytes) = self.sent.take();
        self.metrics.observe(elapsed, sqlstate, rows, bytes);
        let duration_ms = elapsed.as_secs_f64() * 1e3;
        if !self.span.is_disabled() {
            self.span.record("rows", rows);
            self.span.record("bytes", bytes);
            self.span.record("duration_ms", duration_ms);
            if let Some(code) = sqlstate {
                self.span.record("sqlstate", code);
                self.span.record("otel.status_code", "ERROR");
            }
        }
        let Some((user, statement)) = self.logged.take() else {
            return;
        };
        tracing::info!(
            target: "quantatom::query",
            parent: None,
            query_id = self.id,
            user,
            duration_ms,
            rows,
            sqlstate = sqlstate.unwrap_or("00000"),
            statement,
            "statement"
        );
    }
}

impl Drop for StatementTrace {
    fn drop(&mut self) {
        if !self.ended {
            self.record(Some(CONNECTION_FAILURE));
        }
    }
}

/// The statement kinds spans name; any other first keyword is `other`.
const KINDS: [&str; 36] = [
    "select",
    "insert",
    "update",
    "delete",
    "with",
    "values",
    "table",
    "set",
    "show",
    "reset",
    "discard",
    "begin",
    "start",
    "commit",
    "end",
    "rollback",
    "abort",
    "savepoint",
    "release",
    "create",
    "drop",
    "alter",
    "grant",
    "revoke",
    "copy",
    "explain",
    "declare",
    "fetch",
    "close",
    "prepare",
    "execute",
    "deallocate",
    "call",
    "truncate",
    "analyze",
    "vacuum",
];

/// The statement's first keyword (`select`, `insert`, `set`...), as spans show its kind.
fn statement_kind(text: &str) -> &'static str {
    let keyword = text
        .trim_start_matches(|c: char| c.is_whitespace() || c == '(')
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or_default();
    match keyword {
        "" => "empty",
        keyword => KINDS
            .into_iter()
            .find(|kind| kind.eq_ignore_ascii_case(keyword))
            .unwrap_or("other"),
    }
}

/// `text` as the query log shows it: a role or grant statement by its summary, anything else
/// as sent or with its literals replaced by `?` (and its comments dropped). A text that holds
/// the keyword `PASSWORD` anywhere else (a role statement among several) is always redacted,
/// so that no password reaches the log.
fn logged_text(text: &str, redacted: bool) -> String {
    match AccessStatement::parse(text) {
        Some(Ok(statement)) => return statement.to_string(),
        Some(Err(_)) => return "(a role or grant statement that does not parse)".to_owned(),
        None => {}
    }
    let dialect = PostgreSqlDialect {};
    let Ok(tokens) = Tokenizer::new(&dialect, text).tokenize() else {
        return "(a statement that does not tokenize; redacted)".to_owned();
    };
    let sets_password = tokens.iter().any(
        |token| matches!(token, Token::Word(word) if word.value.eq_ignore_ascii_case("password")),
    );
    if !redacted && !sets_password {
        return text.to_owned();
    }
    tokens
        .iter()
        .map(|token| match token {
            Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_)
            | Token::DollarQuotedString(_) => "?".to_owned(),
            Token::Whitespace(Whitespace::SingleLineComment { .. })
            | Token::Whitespace(Whitespace::MultiLineComment(_)) => " ".to_owned(),
            other => other.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_every_literal_and_keeps_the_shape() {
        let text = "SELECT * FROM cube.finance WHERE account = 'Revenue' AND value > 1.5e3 \
                    AND note = E'x\\'y' AND body = $$secret$$ AND id = $1";
        assert_eq!(
            logged_text(text, true),
            "SELECT * FROM cube.finance WHERE account = ? AND value > ? \
             AND note = ? AND body = ? AND id = $1"
        );
        assert_eq!(logged_text(text, false), text);
    }

    #[test]
    fn role_statements_are_logged_without_their_password() {
        let alone = "CREATE USER alice WITH LOGIN PASSWORD 'hunter2'";
        let among_others = "BEGIN; CREATE USER bob PASSWORD 'hunter3'; COMMIT";
        for redacted in [false, true] {
            let logged = logged_text(alone, redacted);
            assert!(
                logged.contains("alice") && !logged.contains("hunter2"),
                "{logged}"
            );
            let logged = logged_text(among_others, redacted);
            assert_eq!(logged, "BEGIN; CREATE USER bob PASSWORD ?; COMMIT");
        }
    }

    #[test]
    fn redaction_drops_comments() {
        let text = "SELECT 1 -- account 4711\n/* secret */ FROM t";
        assert_eq!(logged_text(text, true), "SELECT ?    FROM t");
    }

    #[test]
    fn a_statement_dropped_before_its_end_is_counted_as_failed() {
        let reports = StatementReports {
            metrics: Arc::default(),
            log: QueryLog::Off,
        };
        let sent = Arc::new(RowsSent::default());
        drop(StatementTrace::begin(
            "planner", "SELECT 1", &sent, &reports,
        ));
        StatementTrace::begin("planner", "SELECT 1", &sent, &reports).end(None);
        let mut text = String::new();
        reports.metrics.render(&mut text);
        for line in [
            "quantatom_queries_total{outcome=\"ok\"} 1",
            "quantatom_queries_total{outcome=\"error\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }

    #[test]
    fn kinds_are_first_keywords() {
        assert_eq!(statement_kind("  (SELECT 1)"), "select");
        assert_eq!(statement_kind("insert into x values (1)"), "insert");
        assert_eq!(statement_kind("LISTEN x"), "other");
        assert_eq!(statement_kind(";"), "empty");
    }
}
