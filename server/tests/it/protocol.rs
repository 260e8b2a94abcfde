//! The protocol itself, with tokio-postgres: extended queries with parameters and binary
//! results, SQLSTATEs, per-connection sessions, DISCARD, inserts, cancel, COPY's formats.

use std::time::Duration;

use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;

use crate::support::{TestServer, value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_query_binds_parameters_and_returns_binary_values() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let row = client
        .query_one(
            "SELECT code, level, is_leaf, path FROM dim.entity WHERE code = $1",
            &[&"DE"],
        )
        .await
        .expect("parameterised query runs");
    assert_eq!(row.get::<_, String>(0), "DE");
    assert_eq!(row.get::<_, i32>(1), 3);
    assert!(row.get::<_, bool>(2));
    assert_eq!(row.get::<_, String>(3), "Total.EMEA.DE");

    // A lookup per row in the SELECT list, with a parameter, in the extended protocol.
    let row = client
        .query_one(
            "SELECT e.code, (SELECT p.name FROM dim.entity p WHERE p.code = e.parent) FROM dim.entity e WHERE e.code = $1",
            &[&"DE"],
        )
        .await
        .expect("correlated subquery in the SELECT list runs");
    assert_eq!(
        row.get::<_, Option<String>>(1).as_deref(),
        Some("Europe, Middle East and Africa")
    );

    let statement = client
        .prepare("SELECT count(*) FROM dim.entity WHERE level = $1")
        .await
        .unwrap();
    let roots: i64 = client
        .query_one(&statement, &[&1_i32])
        .await
        .unwrap()
        .get(0);
    let members_at_3: i64 = client
        .query_one(&statement, &[&3_i32])
        .await
        .unwrap()
        .get(0);
    assert_eq!((roots, members_at_3), (1, 10));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_postgres_sqlstates_and_the_connection_keeps_working() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let cases = [
        ("SELEC 1", SqlState::SYNTAX_ERROR),
        ("SELECT * FROM cube.nothing", SqlState::UNDEFINED_TABLE),
        (
            "SELECT no_such_column FROM dim.entity",
            SqlState::UNDEFINED_COLUMN,
        ),
        ("SELECT nlevel('Total..EMEA')", SqlState::SYNTAX_ERROR),
        (
            "SELECT subpath('Total.EMEA', 5)",
            SqlState::INVALID_PARAMETER_VALUE,
        ),
        (
            "SELECT (SELECT e.code FROM dim.entity e WHERE e.parent = v.parent) FROM dim.entity v",
            SqlState::CARDINALITY_VIOLATION,
        ),
    ];
    for (sql, expected) in cases {
        let simple = client.simple_query(sql).await.expect_err(sql);
        assert_eq!(
            simple.code(),
            Some(&expected),
            "simple query {sql}: {simple:?}"
        );
        let extended = client.query(sql, &[]).await.expect_err(sql);
        assert_eq!(
            extended.code(),
            Some(&expected),
            "extended query {sql}: {extended:?}"
        );
        let after: i64 = client
            .query_one("SELECT 7::bigint", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(after, 7, "connection works after {sql}");
    }
    server.stop().await;
}

async fn batch_size(client: &tokio_postgres::Client) -> String {
    let rows = client
        .simple_query("SHOW datafusion.execution.batch_size")
        .await
        .unwrap();
    rows.iter()
        .find_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .expect("SHOW returns a row")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_stays_in_its_connection_and_discard_all_resets_it() {
    let server = TestServer::start().await;
    let first = server.client().await;
    let second = server.client().await;
    let default = batch_size(&second).await;
    first
        .simple_query("SET datafusion.execution.batch_size = 1234")
        .await
        .unwrap();
    assert_eq!(batch_size(&first).await, "1234");
    assert_eq!(
        batch_size(&second).await,
        default,
        "SET must not leak into another connection"
    );
    first.simple_query("DISCARD ALL").await.unwrap();
    assert_eq!(
        batch_size(&first).await,
        default,
        "DISCARD ALL restores the defaults"
    );
    for statement in [
        "BEGIN",
        "COMMIT",
        "SET extra_float_digits = 3",
        "SET application_name = 'x'",
    ] {
        first
            .simple_query(statement)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    let extended = first
        .query_one("SHOW datafusion.execution.batch_size", &[])
        .await
        .unwrap();
    assert_eq!(
        extended.get::<_, String>(0),
        default,
        "SHOW works in the extended protocol too"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_commits_and_is_visible_to_the_next_query_on_another_connection() {
    let server = TestServer::start().await;
    let writer = server.client().await;
    // A new version to write to: cells sit on members.
    writer
        .batch_execute("INSERT INTO dim.version (code, name) VALUES ('Scenario', 'Scenario')")
        .await
        .expect("the member is added");
    let inserted = writer
        .execute(
            "INSERT INTO cube.finance VALUES ('Scenario', '2025_01', 'DE', '4000', 'P0001', 'EUR', 1234.5), \
             ('Scenario', '2025_02', 'DE', '4000', 'P0001', 'EUR', -0.25)",
            &[],
        )
        .await
        .expect("insert runs");
    assert_eq!(inserted, 2);
    let reader = server.client().await;
    let rows = reader
        .simple_query(
            "SELECT time, amount FROM cube.finance WHERE version = 'Scenario' ORDER BY time",
        )
        .await
        .unwrap();
    let values: Vec<(String, String)> = rows
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some((
                row.get(0).unwrap().to_owned(),
                row.get(1).unwrap().to_owned(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        values,
        vec![
            ("2025_01".into(), "1234.50".into()),
            ("2025_02".into(), "-0.25".into())
        ]
    );
    server.stop().await;
}

/// Runs `endless` on `client`, sends a CancelRequest half a second in, and asserts that the
/// query ends with 57014; gives `client` back.
async fn cancelled_while_running(
    client: tokio_postgres::Client,
    endless: &'static str,
) -> tokio_postgres::Client {
    let cancel = client.cancel_token();
    let running = tokio::spawn(async move {
        let outcome = client.simple_query(endless).await;
        (client, outcome)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    cancel
        .cancel_query(NoTls)
        .await
        .expect("cancel request is sent");
    // A liveness guard, not a timing assertion: without cancel the query runs for hours.
    let (client, outcome) = tokio::time::timeout(Duration::from_secs(60), running)
        .await
        .expect("the query stops after the cancel request")
        .unwrap();
    let error = outcome.expect_err("the query was cancelled");
    assert_eq!(error.code(), Some(&SqlState::QUERY_CANCELED), "{error:?}");
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_stops_a_running_query() {
    let server = TestServer::start().await;
    // 10^12 rows: hours of work, all of it inside execution (planning is instant).
    let endless = "SELECT sum(value % 7) FROM generate_series(1, 1000000000000)";
    let client = cancelled_while_running(server.client().await, endless).await;
    let after: i64 = client
        .query_one("SELECT 1::bigint", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(after, 1, "the connection works after a cancel");
    server.stop().await;
}

/// A join's output can be endless without its input moving: a cross join makes millions of
/// rows from each batch it reads, and the aggregate above it drains them in one poll of a task
/// of its own, which an abort stops only when it yields (DataFusion's joins take no
/// cooperative budget). The client got its 57014 while that task went on for hours, holding
/// a worker thread: two such queries stopped, and the server's two workers served no one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_statement_timeout_stop_a_cross_join_and_free_its_workers() {
    let server = TestServer::start().await;
    // The server runs on this test's runtime: a query's parallel parts are its tasks.
    let alive_tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    // 15,000 cells to the third power: hours of counting.
    let endless = "SELECT count(*) FROM cube.finance a, cube.finance b, cube.finance c";
    let client = server.client().await;
    let before_joins = alive_tasks();
    let client = cancelled_while_running(client, endless).await;
    // Liveness guards, not timings (a test still hanging is stopped by nextest's timeout).

    client
        .simple_query("SET statement_timeout = '1s'")
        .await
        .unwrap();
    let (timed_out, while_joining) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(60), client.simple_query(endless)),
        async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            alive_tasks()
        }
    );
    // The connection has a thread of its own; the join's parallel parts run on the server's
    // shared runtime, this test's.
    assert!(
        while_joining > before_joins,
        "{while_joining} tasks while joining"
    );
    let timed_out = timed_out
        .expect("the join stops at its statement timeout")
        .expect_err("the join timed out");
    assert_eq!(timed_out.code(), Some(&SqlState::QUERY_CANCELED));
    assert_eq!(
        timed_out.as_db_error().unwrap().message(),
        "canceling statement due to statement timeout"
    );
    // Both joins' work stopped with them: their tasks end (and, never yielding, they would
    // hold both workers, so that nothing here ran).
    tokio::time::timeout(Duration::from_secs(60), async {
        while alive_tasks() > before_joins {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the joins' tasks end with their cancel and timeout");
    let other = tokio::time::timeout(Duration::from_secs(60), async {
        let other = server.client().await;
        value(&other, "SELECT 41 + 1").await
    })
    .await
    .expect("another connection is served after the joins stopped");
    assert_eq!(other, "42");
    assert_eq!(value(&client, "SELECT 1").await, "1");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_stops_a_query_while_its_rows_stream() {
    use futures::StreamExt;
    let server = TestServer::start().await;
    let client = server.client().await;
    let cancel = client.cancel_token();
    let endless = "SELECT value FROM generate_series(1, 1000000000000)";
    let rows = client
        .query_raw(endless, std::iter::empty::<i64>())
        .await
        .expect("rows start");
    let mut rows = Box::pin(rows);
    for _ in 0..1000 {
        rows.next()
            .await
            .expect("a row")
            .expect("rows flow before the cancel");
    }
    cancel
        .cancel_query(NoTls)
        .await
        .expect("cancel request is sent");
    // A liveness guard, not a timing assertion: without cancel these rows flow for days.
    let error = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            match rows.next().await {
                Some(Ok(_)) => continue,
                Some(Err(error)) => return error,
                None => panic!("the stream ended without the cancel's error"),
            }
        }
    })
    .await
    .expect("the rows stop after the cancel request");
    assert_eq!(error.code(), Some(&SqlState::QUERY_CANCELED), "{error:?}");
    drop(rows);
    assert_eq!(
        value(&client, "SELECT 1").await,
        "1",
        "the connection works after a cancel"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_parameters_set_show_reset_and_current_setting_like_postgres() {
    let server = TestServer::start().await;
    let client = server.client().await;
    assert_eq!(value(&client, "SHOW DateStyle").await, "ISO, MDY");
    client
        .simple_query("SET datestyle TO german")
        .await
        .unwrap();
    assert_eq!(value(&client, "SHOW DATESTYLE").await, "German, DMY");
    assert_eq!(
        value(&client, "SELECT current_setting('DateStyle')").await,
        "German, DMY"
    );
    assert_eq!(
        value(
            &client,
            "SELECT setting || ' / ' || source FROM pg_catalog.pg_settings WHERE name = 'DateStyle'"
        )
        .await,
        "German, DMY / session",
        "pg_settings shows the session's own values"
    );
    client
        .simple_query("SET statement_timeout = 90000")
        .await
        .unwrap();
    assert_eq!(value(&client, "SHOW statement_timeout").await, "90s");
    assert_eq!(
        value(&client, "SHOW TRANSACTION ISOLATION LEVEL").await,
        "read committed"
    );
    assert_eq!(
        value(&client, "SELECT current_setting('server_version_num')").await,
        "160006"
    );
    assert!(
        value(&client, "SELECT version()")
            .await
            .starts_with("PostgreSQL 16.6 (Quantatom ")
    );
    client
        .simple_query("SET search_path = dim, public")
        .await
        .unwrap();
    assert_eq!(value(&client, "SHOW search_path").await, "dim, public");
    client.simple_query("RESET datestyle").await.unwrap();
    assert_eq!(value(&client, "SHOW DateStyle").await, "ISO, MDY");
    client
        .simple_query("SET myapp.region = 'EMEA'")
        .await
        .unwrap();
    assert_eq!(
        value(&client, "SELECT current_setting('myapp.region')").await,
        "EMEA"
    );
    assert_eq!(
        client
            .query_one("SELECT current_setting('myapp.missing', true)", &[])
            .await
            .unwrap()
            .get::<_, Option<String>>(0),
        None
    );

    let cases = [
        ("SET no_such_parameter = 1", SqlState::UNDEFINED_OBJECT),
        ("SHOW no_such_parameter", SqlState::UNDEFINED_OBJECT),
        (
            "SELECT current_setting('no_such_parameter')",
            SqlState::UNDEFINED_OBJECT,
        ),
        (
            "SET server_version = '1'",
            SqlState::CANT_CHANGE_RUNTIME_PARAM,
        ),
        (
            "SET extra_float_digits = 42",
            SqlState::INVALID_PARAMETER_VALUE,
        ),
    ];
    for (sql, expected) in cases {
        let error = client.simple_query(sql).await.expect_err(sql);
        assert_eq!(error.code(), Some(&expected), "{sql}: {error:?}");
    }
    client.simple_query("RESET ALL").await.unwrap();
    assert_eq!(value(&client, "SHOW statement_timeout").await, "0");
    assert_eq!(
        value(&client, "SHOW search_path").await,
        "\"$user\", public"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_options_configure_the_session_and_statement_timeout_stops_execution() {
    let server = TestServer::start().await;
    let mut config: tokio_postgres::Config = server.connection_string().parse().unwrap();
    config.options("-c statement_timeout=300 -c DateStyle=SQL");
    config.application_name("planning-grid");
    let (client, connection) = config
        .connect(NoTls)
        .await
        .expect("client connects with startup options");
    tokio::spawn(connection);
    assert_eq!(value(&client, "SHOW DateStyle").await, "SQL, MDY");
    assert_eq!(
        value(&client, "SHOW application_name").await,
        "planning-grid"
    );
    let endless = "SELECT sum(value % 7) FROM generate_series(1, 1000000000000)";
    let error = tokio::time::timeout(Duration::from_secs(120), client.simple_query(endless))
        .await
        .expect("the statement timeout stops the query")
        .expect_err("the query times out");
    assert_eq!(error.code(), Some(&SqlState::QUERY_CANCELED), "{error:?}");
    let message = error
        .as_db_error()
        .map(|e| e.message().to_owned())
        .unwrap_or_default();
    assert_eq!(message, "canceling statement due to statement timeout");
    assert_eq!(
        value(&client, "SELECT 1").await,
        "1",
        "the connection works after a timeout"
    );

    let mut config: tokio_postgres::Config = server.connection_string().parse().unwrap();
    config.options("-c no_such_parameter=1");
    let refused = config
        .connect(NoTls)
        .await
        .err()
        .expect("an unknown startup parameter is refused");
    assert_eq!(
        refused.code(),
        Some(&SqlState::UNDEFINED_OBJECT),
        "{refused:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_transaction_block_refuses_statements_until_rollback() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client.simple_query("BEGIN").await.unwrap();
    client
        .simple_query("SELECT * FROM cube.nothing")
        .await
        .expect_err("undefined table");
    for sql in ["SELECT 1", "SET DateStyle = 'SQL'", "SHOW DateStyle"] {
        let error = client.simple_query(sql).await.expect_err(sql);
        assert_eq!(
            error.code(),
            Some(&SqlState::IN_FAILED_SQL_TRANSACTION),
            "{sql}: {error:?}"
        );
    }
    client.simple_query("ROLLBACK").await.unwrap();
    assert_eq!(value(&client, "SELECT 2").await, "2");
    assert_eq!(
        value(&client, "SHOW DateStyle").await,
        "ISO, MDY",
        "the refused SET did not happen"
    );

    // Savepoints: ROLLBACK TO makes a failed block usable again, as drivers expect.
    let error = client
        .simple_query("SAVEPOINT outside")
        .await
        .expect_err("no block");
    assert_eq!(
        error.code(),
        Some(&SqlState::NO_ACTIVE_SQL_TRANSACTION),
        "{error:?}"
    );
    client.simple_query("BEGIN").await.unwrap();
    client.simple_query("SAVEPOINT before_grid").await.unwrap();
    client
        .simple_query("SELECT no_such_column FROM dim.entity")
        .await
        .expect_err("undefined column");
    client
        .simple_query("ROLLBACK TO SAVEPOINT before_grid")
        .await
        .unwrap();
    assert_eq!(
        value(&client, "SELECT 3").await,
        "3",
        "the block works again after ROLLBACK TO"
    );
    client
        .simple_query("RELEASE SAVEPOINT before_grid")
        .await
        .unwrap();
    let error = client
        .simple_query("RELEASE SAVEPOINT before_grid")
        .await
        .expect_err("released already");
    assert_eq!(
        error.code(),
        Some(&SqlState::S_E_INVALID_SPECIFICATION),
        "{error:?}"
    );
    client.simple_query("ROLLBACK").await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integer_literals_are_typed_as_postgres_types_them() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let sql = "SELECT 1 AS one, 3000000000 AS big, 2147483647 + 1 AS sum ORDER BY one LIMIT 1";
    // Twice: the second run comes from the connection's plan cache.
    for _ in 0..2 {
        let row = client.query_one(sql, &[]).await.unwrap();
        let types: Vec<_> = row
            .columns()
            .iter()
            .map(|column| column.type_().clone())
            .collect();
        assert_eq!(types, [Type::INT4, Type::INT8, Type::INT8]);
        assert_eq!(
            (
                row.get::<_, i32>(0),
                row.get::<_, i64>(1),
                row.get::<_, i64>(2)
            ),
            (1, 3_000_000_000, 2_147_483_648)
        );
    }
    assert_eq!(value(&client, "SELECT 1").await, "1");
    server.stop().await;
}

/// The rows a `COPY ... TO STDOUT` sends, as one string.
async fn copied(client: &tokio_postgres::Client, sql: &str) -> String {
    use futures::TryStreamExt;
    let chunks: Vec<bytes::Bytes> = client
        .copy_out(sql)
        .await
        .expect("COPY starts")
        .try_collect()
        .await
        .expect("COPY ends");
    String::from_utf8(chunks.concat()).expect("text")
}

/// The text of each value of the first row `sql` answers through the simple protocol.
async fn first_row_text(client: &tokio_postgres::Client, sql: &str) -> Vec<Option<String>> {
    let messages = client.simple_query(sql).await.unwrap();
    let row = messages
        .iter()
        .find_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .unwrap_or_else(|| panic!("a row: {messages:?}"));
    (0..row.len())
        .map(|at| row.get(at).map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_writes_values_as_postgres_does() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .batch_execute("SET TIME ZONE 'Europe/Berlin'")
        .await
        .unwrap();
    let row = "SELECT 'a\tb\\c\nd|e' AS t, '' AS e, NULL::text AS n, 1.50::numeric(4,2) AS x, '2025-01-15 12:00:00+00'::timestamptz AS ts";
    // Text: backslash escapes, \N for NULL; the timestamptz in the session's zone, without a
    // zero fraction as PostgreSQL writes it.
    let text = copied(&client, &format!("COPY ({row}) TO STDOUT")).await;
    assert_eq!(
        text,
        "a\\tb\\\\c\\nd|e\t\t\\N\t1.50\t2025-01-15 13:00:00+01\n"
    );
    // Query results too, and a fraction keeps only its significant digits.
    let times = "SELECT '2025-01-15 12:00:00+00'::timestamptz, \
                 '2025-01-15 12:00:00.250+00'::timestamptz, '2025-01-15 12:00:00'::timestamp";
    assert_eq!(
        first_row_text(&client, times).await,
        [
            Some("2025-01-15 13:00:00+01".to_owned()),
            Some("2025-01-15 13:00:00.25+01".to_owned()),
            Some("2025-01-15 12:00:00".to_owned())
        ]
    );
    // CSV: an empty string is quoted, so that it does not read back as NULL.
    let csv = copied(
        &client,
        &format!("COPY ({row}) TO STDOUT (FORMAT csv, HEADER)"),
    )
    .await;
    assert!(
        csv.starts_with("t,e,n,x,ts\n\"a\tb\\c\nd|e\",\"\",,1.50,2025-01-15 13:00:00"),
        "{csv:?}"
    );
    // The header names columns as PostgreSQL does.
    let counted = copied(
        &client,
        "COPY (SELECT count(*), 1 + 1, upper('a') FROM dim.entity) TO STDOUT (FORMAT csv, HEADER)",
    )
    .await;
    assert!(counted.starts_with("count,?column?,upper\n"), "{counted:?}");
    let custom = copied(
        &client,
        &format!("COPY ({row}) TO STDOUT (DELIMITER '|', NULL 'none')"),
    )
    .await;
    assert!(
        custom.starts_with("a\\tb\\\\c\\nd\\|e||none|1.50|"),
        "{custom:?}"
    );
    // Numerics keep every digit of their scale, beyond the 96 bits a rust_decimal holds too,
    // in COPY and in query results.
    let wide = "SELECT CAST('-12345678901234567890123456789.000000120' AS numeric(38, 9)), \
                CAST(0 AS numeric(5, 3)), CAST(-0.05 AS numeric(4, 2))";
    let copied_wide = copied(&client, &format!("COPY ({wide}) TO STDOUT")).await;
    assert_eq!(
        copied_wide,
        "-12345678901234567890123456789.000000120\t0.000\t-0.05\n"
    );
    assert_eq!(
        first_row_text(&client, wide).await,
        [
            Some("-12345678901234567890123456789.000000120".to_owned()),
            Some("0.000".to_owned()),
            Some("-0.05".to_owned())
        ]
    );
    server.stop().await;
}

/// Queries whose result columns a client names: every one as PostgreSQL itself names them.
const NAMED_COLUMNS: [&str; 16] = [
    "SELECT s.count, s.upper, s.b FROM (SELECT count(*), upper(b), b::text FROM (VALUES ('x')) AS t(b) GROUP BY b) s",
    "SELECT * FROM (SELECT count(*), upper(b), b::text, b AS c FROM (VALUES ('x')) AS t(b) GROUP BY b) s",
    "WITH c AS (SELECT max(a), min(a) FROM (VALUES (1), (2)) AS t(a)) SELECT max - min, c.* FROM c",
    "SELECT 1, 1 + 1, 'x', -2, 'a' || 'b'",
    "SELECT count(*), sum(a), max(b), min(upper(b)), max(length(b)) FROM (VALUES (1, 'x')) AS t(a, b)",
    "SELECT a::bigint, 1::int, CAST('1.5' AS double precision), CAST(b AS text), '1'::numeric(10, 2) FROM (VALUES (1, 'x')) AS t(a, b)",
    "SELECT CASE WHEN a > 0 THEN 1 END, CASE WHEN a > 0 THEN 1 ELSE a END, coalesce(a, 0), nullif(a, 2) FROM (VALUES (1, 'x')) AS t(a, b)",
    "SELECT (SELECT max(a) FROM (VALUES (1)) AS s(a)), current_date, now() IS NOT NULL, round(1.5), abs(-1)",
    "SELECT trim(' a '), extract(year FROM DATE '2025-01-01'), DATE '2025-01-01', substring('abc' FROM 1 FOR 2)",
    "SELECT t.*, a + 1 FROM (VALUES (1, 'x')) AS t(a, b)",
    "SELECT count(*) AS \"Total\", a AS Lower FROM (VALUES (1)) AS t(a) GROUP BY a ORDER BY count(*)",
    "SELECT 1 UNION SELECT 2 ORDER BY 1",
    "SELECT DISTINCT upper(b), ARRAY[1, 2] FROM (VALUES (1, 'x')) AS t(a, b)",
    "SELECT version(), current_user",
    "SELECT 1, 1, count(*), COUNT(*), a, t.a, a::text, a AS x, a + 1 AS x FROM (VALUES (1)) AS t(a) GROUP BY a",
    "SELECT true, false::text, ARRAY[1]::text",
];

/// The column names `client` is told for `sql`, through the simple protocol and through a
/// prepared statement.
async fn column_names(client: &tokio_postgres::Client, sql: &str) -> [Vec<String>; 2] {
    let messages = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    let simple = described_names(&messages, sql);
    let prepared = client
        .prepare(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    let described = prepared
        .columns()
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    [simple, described]
}

/// The column names of a simple query's answer (`what` names it in a failure).
fn described_names(messages: &[tokio_postgres::SimpleQueryMessage], what: &str) -> Vec<String> {
    messages
        .iter()
        .find_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::RowDescription(columns) => {
                Some(columns.iter().map(|c| c.name().to_owned()).collect())
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("{what}: no RowDescription"))
}

/// Queries whose `ORDER BY` names output columns by position or by PostgreSQL's name.
const ORDERED_BY_OUTPUT: [&str; 10] = [
    "SELECT upper, count FROM (SELECT upper(b), count(*) FROM (VALUES ('b'), ('a'), ('b')) AS t(b) GROUP BY b) s ORDER BY count DESC, upper",
    "SELECT upper(b), count(*) FROM (VALUES ('a'), ('b'), ('b'), ('c')) AS t(b) GROUP BY b ORDER BY count DESC, 1 DESC",
    "SELECT b AS x, length(b) FROM (VALUES ('bb'), ('a'), ('ccc')) AS t(b) ORDER BY 2 DESC",
    "SELECT a * 2, a FROM (VALUES (3), (1), (2)) AS t(a) ORDER BY 1",
    "SELECT 1 AS k UNION SELECT 2 ORDER BY 1 DESC",
    "SELECT b, 1, a FROM (VALUES (2, 'x'), (1, 'y')) AS t(a, b) ORDER BY 2, 3",
    "SELECT x AS y, y + 0 FROM (VALUES (1, 20), (2, 10)) AS v(x, y) ORDER BY 2",
    "SELECT a AS x, b AS x FROM (VALUES (1, 20), (2, 10)) AS t(a, b) ORDER BY 2",
    "SELECT DISTINCT upper(b) FROM (VALUES ('b'), ('a'), ('b')) AS t(b) ORDER BY 1",
    "SELECT upper(b) AS u, count(*) FROM (VALUES ('b'), ('a'), ('b')) AS t(b) GROUP BY b ORDER BY 1",
];

/// The rows `client` answers `sql` with, as text.
async fn text_rows(client: &tokio_postgres::Client, sql: &str) -> Vec<Vec<Option<String>>> {
    let messages = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    text_rows_of(&messages)
}

/// Asserts that `client` and `postgres` answer each of `queries` with the same rows, as text.
async fn answer_alike(
    client: &tokio_postgres::Client,
    postgres: &tokio_postgres::Client,
    queries: &[&str],
) {
    for sql in queries {
        assert_eq!(
            text_rows(client, sql).await,
            text_rows(postgres, sql).await,
            "{sql}"
        );
    }
}

/// The rows of a simple query's answer, as text.
fn text_rows_of(messages: &[tokio_postgres::SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    messages
        .iter()
        .filter_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// The column names and text rows of `sql` read through a cursor: `DECLARE`, a `FETCH` of one
/// row (whose description names the columns), then `FETCH ALL`.
async fn fetched(
    client: &tokio_postgres::Client,
    sql: &str,
) -> (Vec<String>, Vec<Vec<Option<String>>>) {
    client.batch_execute("BEGIN").await.unwrap();
    client
        .batch_execute(&format!("DECLARE answer CURSOR FOR {sql}"))
        .await
        .unwrap_or_else(|e| panic!("DECLARE ... FOR {sql}: {e:?}"));
    let first = client.simple_query("FETCH 1 FROM answer").await.unwrap();
    let names = described_names(&first, &format!("FETCH from {sql}"));
    let mut rows = text_rows(client, "FETCH 1 FROM answer").await;
    rows.splice(0..0, text_rows_of(&first));
    rows.extend(text_rows(client, "FETCH ALL FROM answer").await);
    client.batch_execute("CLOSE answer; COMMIT").await.unwrap();
    (names, rows)
}

/// A connection to the test PostgreSQL, to compare answers with.
async fn test_postgres() -> tokio_postgres::Client {
    let postgres_url = std::env::var("QUANTATOM_TEST_POSTGRES_URL").expect(
        "QUANTATOM_TEST_POSTGRES_URL names the test PostgreSQL: run the tests with scripts/test",
    );
    let (postgres, connection) =
        tokio_postgres::connect(&format!("{postgres_url}/postgres"), NoTls)
            .await
            .expect("the test PostgreSQL accepts a connection");
    tokio::spawn(connection);
    postgres
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_columns_are_named_as_postgresql_names_them() {
    let postgres = test_postgres().await;
    let server = TestServer::start().await;
    let client = server.client().await;
    for sql in NAMED_COLUMNS {
        let expected = column_names(&postgres, sql).await;
        // Twice: the second run of each protocol is answered from the kept plan.
        for _ in 0..2 {
            assert_eq!(column_names(&client, sql).await, expected, "{sql}");
        }
    }
    answer_alike(&client, &postgres, &ORDERED_BY_OUTPUT).await;
    // A cursor's rows are those of its query: the same names, types and values.
    for sql in NAMED_COLUMNS {
        let (names, _) = fetched(&client, sql).await;
        assert_eq!(
            names,
            column_names(&postgres, sql).await[0],
            "cursor for {sql}"
        );
    }
    for sql in ORDERED_BY_OUTPUT.into_iter().chain([
        "SELECT '2025-01-15 12:00:00+00'::timestamptz, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid",
    ]) {
        assert_eq!(
            fetched(&client, sql).await,
            fetched(&postgres, sql).await,
            "cursor for {sql}"
        );
    }
    // A second cursor of the same name is refused as PostgreSQL refuses it.
    for server in [&client, &postgres] {
        server
            .batch_execute("BEGIN; DECLARE twice CURSOR FOR SELECT 1")
            .await
            .unwrap();
        let again = server
            .batch_execute("DECLARE twice CURSOR FOR SELECT 2")
            .await
            .expect_err("a second cursor named twice");
        assert_eq!(again.code(), Some(&SqlState::DUPLICATE_CURSOR));
        server.batch_execute("ROLLBACK").await.unwrap();
    }
    // A cursor closes when its transaction ends, unless it is WITH HOLD; outside a block,
    // only a WITH HOLD cursor may be declared.
    for server in [&client, &postgres] {
        server
            .batch_execute(
                "BEGIN; DECLARE brief CURSOR FOR SELECT 1; \
                 DECLARE kept CURSOR WITH HOLD FOR SELECT 2; COMMIT",
            )
            .await
            .unwrap();
        let closed = server.simple_query("FETCH 1 FROM brief").await;
        assert_eq!(
            closed.expect_err("brief closed at COMMIT").code(),
            Some(&SqlState::INVALID_CURSOR_NAME)
        );
        assert_eq!(
            text_rows(server, "FETCH 1 FROM kept").await,
            [[Some("2".to_owned())]]
        );
        server.batch_execute("CLOSE kept").await.unwrap();
        server
            .batch_execute("BEGIN; DECLARE undone CURSOR FOR SELECT 1; ROLLBACK")
            .await
            .unwrap();
        let closed = server.simple_query("FETCH 1 FROM undone").await;
        assert_eq!(
            closed.expect_err("undone closed at ROLLBACK").code(),
            Some(&SqlState::INVALID_CURSOR_NAME)
        );
        let outside = server
            .batch_execute("DECLARE loose CURSOR FOR SELECT 1")
            .await
            .expect_err("a cursor outside a block");
        assert_eq!(outside.code(), Some(&SqlState::NO_ACTIVE_SQL_TRANSACTION));
        server
            .batch_execute("DECLARE free CURSOR WITH HOLD FOR SELECT 3")
            .await
            .unwrap();
        assert_eq!(
            text_rows(server, "FETCH ALL FROM free").await,
            [[Some("3".to_owned())]]
        );
        server.batch_execute("CLOSE free").await.unwrap();
    }
    // A BINARY cursor's rows come in binary: 258 as an int4's four bytes.
    let mut binary_rows = Vec::new();
    for server in [&client, &postgres] {
        server
            .batch_execute("BEGIN; DECLARE raw BINARY CURSOR FOR SELECT 258::int4, 'ab'::text")
            .await
            .unwrap();
        binary_rows.push(text_rows(server, "FETCH ALL FROM raw").await);
        server.batch_execute("COMMIT").await.unwrap();
    }
    let expected = vec![vec![
        Some("\0\0\u{1}\u{2}".to_owned()),
        Some("ab".to_owned()),
    ]];
    assert_eq!(binary_rows, [expected.clone(), expected]);
}

/// `uuid` input in every spelling PostgreSQL accepts, comparisons, `gen_random_uuid()`,
/// `pg_typeof()`, `VALUES` columns typed by one row's cast, and timestamps and dates written
/// as PostgreSQL reads them.
const VALUE_TYPE_QUERIES: [&str; 10] = [
    "SELECT 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'::uuid, '{a0eebc99-9c0b4ef8-bb6d6bb9-bd380a11}'::uuid::text, 'a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11'::uuid = 'a0eebc999c0b4ef8bb6d6bb9bd380a11'::uuid, NULL::uuid IS NULL",
    "SELECT count(DISTINCT u) FROM (VALUES ('A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'::uuid), ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'), (NULL)) AS t (u)",
    "SELECT u FROM (VALUES ('b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid), ('A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'), ('0fffffff-ffff-ffff-ffff-ffffffffffff'), (NULL)) AS t (u) ORDER BY u",
    "SELECT length(gen_random_uuid()::text), substr(gen_random_uuid()::text, 15, 1), substr(gen_random_uuid()::text, 20, 1) IN ('8', '9', 'a', 'b'), gen_random_uuid() <> gen_random_uuid()",
    "SELECT pg_typeof(1::smallint), pg_typeof(1::int), pg_typeof(1::bigint), pg_typeof(1.5::numeric), pg_typeof(1.5::real), pg_typeof(1.5::float8), pg_typeof('x'::text), pg_typeof(true), pg_typeof(NULL)",
    r#"SELECT pg_typeof('2024-01-01'::date), pg_typeof('2024-01-01 10:00:00'::timestamp), pg_typeof('2024-01-01 10:00:00+01'::timestamptz), pg_typeof(interval '1 day'), pg_typeof('\x00'::bytea), pg_typeof('{}'::jsonb), pg_typeof('{}'::json), pg_typeof(gen_random_uuid()), pg_typeof(ARRAY[1::int, 2::int]), pg_typeof(ARRAY['a'::text])"#,
    r#"SELECT x, pg_typeof(x) FROM (VALUES ('{"b": 1, "a": 2}'::jsonb), (NULL), ('[1,2]')) AS t (x)"#,
    "SELECT n, u FROM (VALUES (1, NULL), (2, 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'), (3, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12'::uuid)) AS t (n, u) ORDER BY n",
    "SELECT '2024-01-31 10:00'::timestamp, '2024-1-5T9:30'::timestamp, ' 2024-01-31 10:00:05.25 '::timestamp, '2024-1-5'::date, TIMESTAMP '2024-01-31 10:00', '2024-01-31 10:00+01'::timestamptz",
    "SELECT TIMESTAMP '2024-01-31 10:00:00' = '2024-01-31 10:00', now() > '2024-01-31 10:00', DATE '2024-01-31' < '2024-2-1'",
];

/// PostgreSQL's answers to [`VALUE_TYPE_QUERIES`], uuid parameters and uuid texts it
/// refuses.
#[tokio::test]
async fn value_types_answer_as_postgresql_does() {
    let postgres = test_postgres().await;
    let server = TestServer::start().await;
    let client = server.client().await;
    answer_alike(&client, &postgres, &VALUE_TYPE_QUERIES).await;
    // A text parameter cast to uuid, in the extended protocol, and the type the client is told.
    for server in [&client, &postgres] {
        let statement = server.prepare("SELECT $1::text::uuid").await.unwrap();
        assert_eq!(statement.columns()[0].type_(), &Type::UUID);
        let row = server
            .query_one(
                "SELECT ($1::text::uuid)::text, $1::text::uuid = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid",
                &[&"{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11}"],
            )
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            row.get::<_, String>(0),
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
        );
        assert!(row.get::<_, bool>(1));
    }
    let refused = [
        "SELECT 'zz'::uuid",
        "SELECT 'urn:uuid:a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid",
        "SELECT ' a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid",
        "SELECT 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11-'::uuid",
        "SELECT 'a0e-ebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid",
    ];
    for sql in refused {
        for server in [&client, &postgres] {
            let error = server.simple_query(sql).await.expect_err(sql);
            assert_eq!(
                error.code(),
                Some(&SqlState::INVALID_TEXT_REPRESENTATION),
                "{sql}: {error:?}"
            );
            let message = error.as_db_error().map(|e| e.message().to_owned());
            assert!(
                message
                    .as_deref()
                    .is_some_and(|m| m.starts_with("invalid input syntax for type uuid")),
                "{sql}: {message:?}"
            );
        }
    }
    server.stop().await;
}

/// Casts to `numeric` without a precision (PostgreSQL keeps the digits a value is written
/// with), quotients of decimals, and floats as PostgreSQL writes them.
const NUMBER_QUERIES: [&str; 17] = [
    "SELECT mod(7, 3), mod(-7, 3), mod(7.5, 2), div(-7.5, 2), div(9.99, 0.1), sign(-2.5), sign(3::int), sign(-0.0::float8), ceiling(-1.2), ceiling(2.5::float8)",
    "SELECT 5::numeric, '2.50'::numeric, ' -0.5 '::numeric, '1e3'::numeric, 1e3::numeric, 1.5e-3::numeric, 2.50::numeric(4, 2)",
    "SELECT 0.1::numeric + 0.2::numeric, 1.5::numeric * 2, 12345678901234567890, round(2.567::numeric, 2), '12.50'::numeric * 3",
    "SELECT x::numeric, x::numeric * 1.5::numeric FROM (VALUES (1), (22)) AS t(x) ORDER BY 1",
    "SELECT 10::numeric / 3, 12.50::numeric(12, 2) / 4, CAST(7 AS numeric) / 2, 100 / 8.0::numeric, 40::numeric / 7, -40::numeric / 7, 20000::numeric / 3",
    "SELECT sum(v), max(v), min(v) FROM (SELECT x::numeric(12, 2) AS v FROM (VALUES (1.25), (2.5)) AS t(x)) AS s",
    "SELECT NULL::numeric, CASE WHEN true THEN NULL::numeric ELSE 2.5::numeric END, COALESCE(NULL, '2.50'::numeric), COALESCE(1.5::float8, 0.0)",
    "SELECT 1200::float8, 0.1::float8 + 0.2::float8, 1e-5::float8, 0.0001::float8, 1e15::float8, 1e14::float8, 1e100::float8",
    "SELECT 'inf'::float8, '-inf'::float8, 'nan'::float8, '-0'::float8, 1.5::real, 1234567::real",
    // Numbers written with a point or an exponent are numerics.
    "SELECT 2.50, 0.1 + 0.2, 1e3, 1.5e-3, -2.5, 1e30, 0.00001, 100.00 * 1.05, 19.99 * 3, 2.5::text, 1e3::text",
    "SELECT pg_typeof(2.50), pg_typeof(1e3), pg_typeof(1.5 * 2::float8), pg_typeof(1.5::real + 1.5), pg_typeof(coalesce(NULL::float8, 0.0)), pg_typeof(x) FROM (VALUES (1e3)) AS t(x)",
    // Where one meets a float, the float's type wins, so no double is squeezed into a decimal.
    "SELECT 1.5 = 1.5::float8, 1e20::float8 > 1.5, 2.5 BETWEEN 1::float8 AND 3, 2.5 IN (1::float8, 2.5), 0.1 + 0.2 = 0.3, 0.1::float8 + 0.2::float8 = 0.3",
    "SELECT coalesce(NULL::float8, 0.0), coalesce(1e20::float8, 0.5), CASE WHEN true THEN 1e20::float8 ELSE 0.5 END, CASE 1.5::float8 WHEN 1.5 THEN 'a' ELSE 'b' END, greatest(1.5, 2::float8), least(0.5, 1e20::float8), nullif(1.5, 1.5::float8)",
    "SELECT 1e20::float8 AS v UNION ALL SELECT 0.5 ORDER BY v",
    "SELECT round(2.567, 2), round(2.5), trunc(2.567, 1), abs(-2.5), ceil(2.1), floor(-2.1), ceil(9.5), trunc(-2.5), floor(-9.5)",
    // A double below an alias still meets a written number as a double.
    "SELECT * FROM (SELECT coalesce(f, 0.0) AS c FROM (SELECT 1e20::float8 AS f) AS t) AS s WHERE c > 1.5",
    "SELECT 2.5::int, (-2.5)::int, 3.5::bigint, 2.4::smallint, 9.5::int, 1e3::int, 12.50::numeric(4, 2)::int, 2.7::float8::int, (-2.7)::real::bigint, 2.2::float8::int",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_answer_as_postgresql_does() {
    let postgres = test_postgres().await;
    let server = TestServer::start().await;
    let client = server.client().await;
    answer_alike(&client, &postgres, &NUMBER_QUERIES).await;
    // Floats rounded to 15 + extra_float_digits significant digits.
    let rounded =
        "SET extra_float_digits = -3; SELECT 1/3::float8, 2::real / 3::real, 123456789::float8";
    answer_alike(&client, &postgres, &[rounded]).await;
    // What a bare `numeric` casts is a `numeric`, and so is a number written with a point.
    let typed = "SELECT 5::numeric, '1e3'::numeric, 0.1::numeric + 0.2::numeric, 10::numeric / 3, 2.50, 1e3";
    for server in [&client, &postgres] {
        let statement = server.prepare(typed).await.unwrap();
        let types: Vec<_> = statement
            .columns()
            .iter()
            .map(|c| c.type_().clone())
            .collect();
        assert_eq!(types, [Type::NUMERIC; 6], "{typed}");
    }
    // Text that is no number is refused as PostgreSQL refuses it.
    for server in [&client, &postgres] {
        let error = server
            .simple_query("SELECT 'abc'::numeric")
            .await
            .unwrap_err();
        assert_eq!(error.code(), Some(&SqlState::INVALID_TEXT_REPRESENTATION));
    }
}

/// `DEALLOCATE ALL` forgets the statements SQL `PREPARE` prepared and those prepared through
/// the protocol, as in PostgreSQL; a statement that is not there is 26000. (psycopg's test
/// deallocates protocol statements by name.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deallocate_forgets_prepared_statements() {
    let postgres = test_postgres().await;
    let server = TestServer::start().await;
    let client = server.client().await;
    let not_there = Some(&SqlState::INVALID_SQL_STATEMENT_NAME);
    for server in [&client, &postgres] {
        let parsed = server.prepare("SELECT 1::int4").await.unwrap();
        server.batch_execute("PREPARE q AS SELECT 2").await.unwrap();
        server.batch_execute("DEALLOCATE ALL").await.unwrap();
        let error = server.batch_execute("EXECUTE q").await.unwrap_err();
        assert_eq!(error.code(), not_there, "{error}");
        let error = server.query(&parsed, &[]).await.unwrap_err();
        assert_eq!(error.code(), not_there, "{error}");
        server.batch_execute("PREPARE q AS SELECT 4").await.unwrap();
        server.batch_execute("DEALLOCATE q").await.unwrap();
        let error = server.batch_execute("DEALLOCATE q").await.unwrap_err();
        assert_eq!(error.code(), not_there, "{error}");
    }
}

/// An interval times or divided by a number, the fractions carried down as PostgreSQL
/// carries them; a NULL interval is NULL.
const INTERVAL_QUERIES: [&str; 7] = [
    "SELECT interval '1 hour' * 2, 3 * interval '1 day', interval '1 day' / 2, interval '1 month' / 3",
    "SELECT interval '1 hour' * 1.5, 2.5 * interval '1 day', interval '1 month 1 day' * 0.7, interval '1 year' / 7",
    "SELECT interval '1 hour' * 1.5::float8, interval '1 day' * 2::int2, interval '-1 day 2 hours' * -1.25",
    "SELECT now() - interval '1 day' * 3 < now(), interval '1 hour' * NULL, NULL * interval '1 day', NULL::interval",
    "SELECT x * interval '1 minute' FROM (VALUES (1), (90), (NULL)) AS t(x) ORDER BY x",
    "SELECT interval '1 hour' * x FROM (VALUES (1.5), (0.25)) AS t(x) ORDER BY x",
    "SELECT interval '3 days 5 hours' / 4, interval '1 day' * 1e-3",
];

/// Timestamps, times, intervals and timestamp differences as text, cast or coerced, and
/// intervals, differences and zoned timestamps as the wire sends them (a `+` after a negative
/// part, days, an offset's minutes: `+05:30`);
/// interval text in PostgreSQL's forms read back.
const TEMPORAL_TEXT_QUERIES: [&str; 14] = [
    "SELECT timestamptz '2024-01-01 12:00:00.5+00', timestamptz '1850-06-01 00:00+00', timestamp '2024-01-01 12:00:00.5'",
    "SELECT interval '1 day 2 hours'::text::interval, x::text::interval, '1 day 04:05:06'::varchar::interval, y::interval FROM (VALUES (interval '-1 days +02:00', '1 day 04:05')) t(x, y)",
    "SELECT interval '0.375 years', interval '1.5 microseconds', interval '1.9999995 seconds', interval '1 12:00:00', interval '1:30.5', interval '00:00:60', interval '@ 1 day, 2 hours'",
    "SELECT interval '02:30:00', interval '1 day 04:05:06', '1:00'::interval, CAST('-1 days +02:00:00' AS interval)",
    "SELECT interval '1 mon -3 days', interval '-1 year -2 mons +3 days -04:00:00', interval '@ 1 hour ago', interval '1.5 years', interval '1.5 months'",
    "SELECT timestamp '2024-01-01 10:00' + '02:30'::interval, timestamp '2024-01-01 10:00' - interval '1 day 01:00', interval '1 day 02:00' * 2",
    "SELECT interval '90', interval '1 week', interval '2w 3h', interval '1' day",
    "SELECT timestamptz '2024-01-01 12:00:00.5+00'::text, timestamp '2024-01-01 12:00:00.250'::text, CAST(timestamp '2024-01-01 12:00' AS varchar), now()::text LIKE '____-__-__ __:__:%'",
    "SELECT time '12:00:00.5'::text, interval '1 day'::text, interval '1 year 2 months 3 days 4 hours 5 minutes 6.5 seconds'::text, CAST(interval '0 seconds' AS text), NULL::timestamp::text",
    "SELECT (interval '-1 day' + interval '2 hours')::text, interval '-1 day' + interval '2 hours', interval '1 month' - interval '3 days'",
    "SELECT timestamp '2024-01-03 12:00' - timestamp '2024-01-01 10:30', (timestamp '2024-01-01 10:30' - timestamp '2024-01-03 12:00')::text, timestamp '2024-01-01 10:30:00.5' - timestamp '2024-01-01 10:30'",
    "SELECT 'at ' || timestamp '2024-01-01 12:00:00', 'took ' || interval '90 minutes', 'on ' || timestamptz '2024-06-01 00:00:00+02'",
    "SELECT x::text, x - timestamp '2024-01-01' FROM (VALUES (timestamp '2024-01-01 00:00:00'), (timestamp '2024-06-01 10:00:01.000001'), (NULL)) t(x) ORDER BY x",
    "SELECT max(x) - min(x) FROM (VALUES (timestamp '2024-01-01'), (timestamp '2024-03-01 06:00')) t(x)",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_arithmetic_answers_as_postgresql_does() {
    let postgres = test_postgres().await;
    let server = TestServer::start().await;
    let client = server.client().await;
    answer_alike(&client, &postgres, &INTERVAL_QUERIES).await;
    answer_alike(&client, &postgres, &TEMPORAL_TEXT_QUERIES).await;
    for server in [&client, &postgres] {
        server
            .batch_execute("SET timezone = 'Asia/Kolkata'")
            .await
            .unwrap();
    }
    answer_alike(&client, &postgres, &TEMPORAL_TEXT_QUERIES).await;
    for (sql, code) in [
        ("SELECT interval '1 day' / 0", SqlState::DIVISION_BY_ZERO),
        (
            "SELECT interval '2147483647 months' * 2",
            SqlState::DATETIME_VALUE_OUT_OF_RANGE,
        ),
        (
            "SELECT x::interval FROM (VALUES ('1 day'), ('nonsense')) t(x)",
            SqlState::INVALID_DATETIME_FORMAT,
        ),
    ] {
        for server in [&client, &postgres] {
            let error = server.simple_query(sql).await.unwrap_err();
            assert_eq!(error.code(), Some(&code), "{sql}: {error}");
        }
    }
    // A parameter, in the extended protocol.
    for server in [&client, &postgres] {
        let row = server
            .query_one(
                "SELECT interval '1 hour' * $1::float8 = interval '2 hours 30 minutes'",
                &[&2.5f64],
            )
            .await
            .unwrap();
        assert!(row.get::<_, bool>(0));
    }
}

/// SQL `PREPARE` answers with its tag, and `EXECUTE`, on either protocol, with PostgreSQL's
/// column names and types; a statement that meets a written number types its parameter as
/// numeric; a statement closed with a Close message is no longer there for `DEALLOCATE`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_prepared_statements_answer_as_postgresql_does() {
    use tokio_postgres::SimpleQueryMessage::{CommandComplete, Row, RowDescription};
    let postgres = test_postgres().await;
    let server = TestServer::start().await;
    let client = server.client().await;
    let mut answers = Vec::new();
    for server in [&client, &postgres] {
        let prepared = server
            .simple_query("PREPARE q (text) AS SELECT 42 AS answer, 1.5 * 2, 'x' || $1 AS tagged")
            .await
            .unwrap();
        assert!(
            matches!(prepared.as_slice(), [CommandComplete(0)]),
            "{prepared:?}"
        );
        let simple = server.simple_query("EXECUTE q('y')").await.unwrap();
        let [RowDescription(columns), Row(row), CommandComplete(1)] = simple.as_slice() else {
            panic!("EXECUTE answered {simple:?}");
        };
        let names: Vec<_> = columns.iter().map(|c| c.name().to_owned()).collect();
        let values: Vec<_> = (0..row.len())
            .map(|i| row.get(i).map(str::to_owned))
            .collect();
        // The extended protocol: Describe reports the prepared statement's columns.
        let extended = server.prepare("EXECUTE q('z')").await.unwrap();
        let described: Vec<_> = extended
            .columns()
            .iter()
            .map(|c| (c.name().to_owned(), c.type_().clone()))
            .collect();
        let row = server.query_one(&extended, &[]).await.unwrap();
        let tagged: String = row.get(2);
        // A parameter meeting a written number is numeric, holding the client's digits.
        server
            .batch_execute("PREPARE n AS SELECT $1 * 1.5 > 18518")
            .await
            .unwrap();
        let numeric = text_rows(server, "EXECUTE n(12345.678)").await;
        // Analysed as a plain query is: integers rounded, timestamps without seconds read,
        // DISTINCT ON planned, parameters nothing types read as text.
        server
            .batch_execute(
                "PREPARE a AS SELECT 7.5::int, ceil(2.5), timestamp '2024-01-01 10:00', $1 AS u; \
                 PREPARE d AS SELECT DISTINCT ON (x) x, y FROM (VALUES (1, 2), (1, 1), (2, 5)) AS t(x, y) ORDER BY x, y",
            )
            .await
            .unwrap();
        // Parameters rounded to a declared integer, more types declared than used, one typed
        // by the plan, one typed by its cast.
        server
            .batch_execute(
                "PREPARE qi(int) AS SELECT $1; PREPARE w(int) AS SELECT 1; \
                 PREPARE pp(int) AS SELECT $1 + $2; PREPARE c AS SELECT $1::int + 1",
            )
            .await
            .unwrap();
        let mut analysed = vec![
            text_rows(server, "EXECUTE a('x')").await,
            text_rows(server, "EXECUTE d").await,
        ];
        for execute in [
            "EXECUTE qi(2.5)",
            "EXECUTE qi(-2.5)",
            "EXECUTE qi(2.7::float8)",
            "EXECUTE w(1)",
            "EXECUTE pp(1, 2)",
            "EXECUTE c(2.5)",
        ] {
            analysed.push(text_rows(server, execute).await);
        }
        let error = server
            .batch_execute("EXECUTE a('x', 'y')")
            .await
            .unwrap_err();
        assert_eq!(error.code(), Some(&SqlState::SYNTAX_ERROR), "{error}");
        let deallocated = server.simple_query("DEALLOCATE a").await.unwrap();
        assert!(
            matches!(deallocated.as_slice(), [CommandComplete(0)]),
            "{deallocated:?}"
        );
        let error = server
            .batch_execute("PREPARE d AS SELECT 1")
            .await
            .unwrap_err();
        assert_eq!(
            error.code(),
            Some(&SqlState::DUPLICATE_PSTATEMENT),
            "{error}"
        );
        let replanned = replanned_after_ddl_and_set(server).await;
        server.batch_execute("DEALLOCATE ALL").await.unwrap();
        answers.push((
            names, values, described, tagged, numeric, analysed, replanned,
        ));
    }
    assert_eq!(
        answers[0].0,
        ["answer", "?column?", "tagged"],
        "EXECUTE's column names"
    );
    assert_eq!(answers[0], answers[1]);
}

/// What `EXECUTE` of statements prepared before a table they read is dropped and created again,
/// and before a `SET`, answers in `server`: each answer's rows, or its SQLSTATE and message.
/// PostgreSQL plans such a statement again, and refuses to run it once its columns change.
async fn replanned_after_ddl_and_set(server: &tokio_postgres::Client) -> Vec<String> {
    let answer = |sql: &'static str| async move {
        match server.simple_query(sql).await {
            Ok(messages) => format!("{:?}", text_rows_of(&messages)),
            Err(error) => {
                let error = error.as_db_error().expect("a database error");
                format!("{}: {}", error.code().code(), error.message())
            }
        }
    };
    server
        .batch_execute(
            "DROP TABLE IF EXISTS prepared_replanned; \
             CREATE TABLE prepared_replanned (a int); \
             INSERT INTO prepared_replanned VALUES (1); \
             PREPARE r AS SELECT * FROM prepared_replanned; \
             PREPARE z AS SELECT timestamptz '2024-01-01 12:00:00+00'",
        )
        .await
        .unwrap();
    let mut answers = vec![answer("EXECUTE r").await, answer("EXECUTE z").await];
    server
        .batch_execute("DROP TABLE prepared_replanned; SET timezone = 'Asia/Tokyo'")
        .await
        .unwrap();
    answers.push(answer("EXECUTE r").await);
    answers.push(answer("EXECUTE z").await);
    server
        .batch_execute(
            "RESET timezone; CREATE TABLE prepared_replanned (a int, b text); \
             INSERT INTO prepared_replanned VALUES (2, 'x')",
        )
        .await
        .unwrap();
    answers.push(answer("EXECUTE r").await);
    server
        .batch_execute(
            "DROP TABLE prepared_replanned; CREATE TABLE prepared_replanned (a int); \
             INSERT INTO prepared_replanned VALUES (3)",
        )
        .await
        .unwrap();
    answers.push(answer("EXECUTE r").await);
    server
        .batch_execute("DROP TABLE prepared_replanned")
        .await
        .unwrap();
    answers
}

/// `json` and `jsonb` casts, operators and functions on documents of every shape.
const JSON_QUERIES: [&str; 24] = [
    r#"SELECT jsonb_set('{"b": {"c": [1, 2]}, "a": 1}', '{b,c,-1}', '9'), jsonb_set('{"a": 1}', '{z}', '{"y": true}'), jsonb_set('{"a": 1}', ARRAY['z'], '2', false), jsonb_set('[1, 2]', '{9}', '3'), jsonb_set('[1, 2]', '{-9}', '0'), jsonb_set('{"a": [1]}', '{a,0,x}', '5'), jsonb_set('{"a": 1}', '{a}', NULL)"#,
    r#"SELECT json_build_object('a', 1, 'b', 'x', 'c', NULL, 'd', true, 'e', '{"z": [1, 2]}'::json), jsonb_build_object('b', 1, 'a', 'y', 'a', 2), json_build_array(1, 'x', NULL, false), jsonb_build_array('{"b": 1, "a": 2}'::jsonb, 3), to_json('a"b'::text), to_jsonb(2.50::numeric(4, 2)), to_json(NULL::int), json_build_array(ARRAY[1::int, 2::int])"#,
    r#"SELECT '{"a": 1, "b": 2}'::jsonb || '{"b": 3, "c": {"d": 1.50}}'::jsonb, '[1, 2]'::jsonb || '[3]'::jsonb, '[1]'::jsonb || '{"a": 1}'::jsonb, '1'::jsonb || '"x"'::jsonb, '{"a": 1}'::jsonb || '[]'::jsonb, '[]'::jsonb || '[]'::jsonb, '{"a": 1}'::jsonb || '{}'"#,
    r#"SELECT '{"a": 1, "b": 2}'::jsonb - 'a', '["a", "b", "a", 1]'::jsonb - 'a', '[1, 2, 3]'::jsonb - 1, '[1, 2, 3]'::jsonb - -1, '[1, 2, 3]'::jsonb - 5, '{"a": 1, "b": 2, "c": 3}'::jsonb - ARRAY['a', 'c'], jsonb_array_length('[1, [2], {}]'), json_array_length('[ ]'), '{"a": 1}'::jsonb - 'z'"#,
    r#"SELECT '{"b": 1, "a": [1, 2.50, 1e2, -0, 1.5e-3], "b": {"y": "\u00e9\n\/", "x": null}}'::jsonb"#,
    r#"SELECT '  {"b" : 1,"a":[ 2 ]}  '::json, '"\ud83d\ude00"'::jsonb, '[]'::jsonb, '{}'::jsonb"#,
    r#"SELECT '{"a": {"b": [10, "x", null]}}'::json -> 'a', '{"a": {"b": [10, "x", null]}}'::jsonb -> 'a'"#,
    r#"SELECT '{"a": {"b": [10, "x", null]}}'::jsonb #> '{a,b,1}', '{"a": {"b": [10, "x", null]}}'::jsonb #>> '{a,b,1}', '{"a": {"b": [10, "x", null]}}'::json #>> '{a, b, -3}', '{"a": {"b": [10]}}'::jsonb #> '{a,c}', '{"a": [1]}'::jsonb #>> ARRAY['a', '0'], '{"a": 1}'::jsonb #> '{}'"#,
    r#"SELECT '[1, 2, 3]'::jsonb -> -1, '[1, 2, 3]'::jsonb ->> 5, '[1, 2, 3]'::json -> 'a', '{"a": 1}'::jsonb -> 0, '[1, {"a": [true]}]'::json -> 1 -> 'a' ->> 0"#,
    r#"SELECT '{"a": "x", "n": null}'::jsonb ->> 'a', '{"a": "x", "n": null}'::jsonb ->> 'n', '{"a": "x\"y\u0041"}'::json ->> 'a', '{"a": 1, "a": 2}'::json ->> 'a', '"s"'::jsonb ->> 'a'"#,
    r#"SELECT '{"a": 1, "b": {"c": [1, 2]}}'::jsonb @> '{"b": {"c": [2]}}', '{"a": 1.0}'::jsonb @> '{"a": 1}', '["foo", "bar"]'::jsonb @> '"foo"'::jsonb, '{"a": 1}'::jsonb <@ '{"a": 1, "b": 2}', '[1, [2, 3]]'::jsonb @> '[[3]]', '[1, 2]'::jsonb @> '[[1]]', '{"a": [1]}'::jsonb @> '{"a": 1}'"#,
    r#"SELECT '{"a": 1, "b": null}'::jsonb ? 'b', '["a", "c"]'::jsonb ?| '{b,c}', '{"a": 1, "b": 2}'::jsonb ?& '{a,b}', '{"a": 1}'::jsonb ?& ARRAY['a', 'z'], '[{"a": 1}]'::jsonb ? 'a', '"a"'::jsonb ? 'a'"#,
    r#"SELECT json_typeof('{"a": 1}'), jsonb_typeof('[1]'), jsonb_typeof('"s"'), json_typeof('1.5'), jsonb_typeof('true'), jsonb_typeof('null')"#,
    r#"SELECT json_extract_path_text('{"a": {"b": ["x", "y"]}}', 'a', 'b', '1'), jsonb_extract_path('{"a": {"b": ["x", "y"]}}', 'a'), jsonb_object_field_text('{"k": 7}', 'k'), json_array_element('[1, [2]]', 1)"#,
    r#"SELECT '{"b": 1, "a": 2}'::jsonb = '{"a": 2, "b": 1}'::jsonb, ('{"b": 1, "a": 2}'::jsonb)::text, ('{"b": 1, "a": 2}'::json)::text"#,
    r#"SELECT '1e2'::jsonb, '-0.0'::jsonb, '12.345e1'::jsonb, '-120e-1'::jsonb, '0.000'::jsonb, '1E+2'::jsonb, length('1e1001'::jsonb::text), length('0.0001e131072'::jsonb::text), '0e200000'::jsonb"#,
    r#"SELECT '"s"'::jsonb -> 0, '"s"'::jsonb ->> -1, '5'::jsonb -> 1, '"s"'::json -> 0, '"s"'::jsonb #> '{0}', '[1, 2]'::jsonb #>> '{" 1"}', '[1, 2]'::jsonb #>> '{"1 "}', '5'::jsonb @> '[5]', '[5]'::jsonb @> '5'"#,
    r#"SELECT NULL::jsonb -> 'a', '{"a": 1}'::jsonb ->> NULL::text, NULL::json #>> '{a}', '{"a": 1}'::jsonb ? NULL::text"#,
    r#"SELECT v ->> 'k' FROM (VALUES ('{"k": "p"}'::jsonb), ('{"k": 2}'::jsonb), ('[1]'::jsonb), (NULL::jsonb)) AS t(v) ORDER BY 1"#,
    r#"SELECT json_agg(x ORDER BY k, x), jsonb_agg(x ORDER BY x DESC), json_object_agg(k, x ORDER BY x), jsonb_object_agg(k, x ORDER BY x NULLS FIRST) FROM (VALUES (1, 'a'), (2, 'b'), (NULL, 'a')) AS t(x, k)"#,
    r#"SELECT k, json_agg(v ORDER BY v), jsonb_agg(DISTINCT v ORDER BY v), json_object_agg(v, k ORDER BY v) FROM (VALUES ('a', 2), ('a', 10), ('a', 1), ('b', 3), ('a', 2)) AS t(k, v) GROUP BY k ORDER BY k"#,
    r#"SELECT json_agg(a ORDER BY n), jsonb_agg(a ORDER BY n), json_agg(d ORDER BY n), jsonb_agg(d ORDER BY n DESC), json_object_agg(s, d ORDER BY n) FROM (VALUES (1, ARRAY[1, 2], '{"b": 1, "a": [2.50]}'::jsonb, 'x"y'), (2, ARRAY[3], '"s"'::jsonb, 'z')) AS t(n, a, d, s)"#,
    r#"SELECT json_agg(x) IS NULL, jsonb_agg(x) IS NULL, json_object_agg(x, x) IS NULL, jsonb_object_agg(x, x) IS NULL FROM (SELECT 1 AS x WHERE false) AS t"#,
    r#"SELECT json_agg(x), jsonb_object_agg('k', x) FROM (VALUES ('one')) AS t(x)"#,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_answers_as_postgresql_does() {
    let postgres = test_postgres().await;
    let server = TestServer::start().await;
    let client = server.client().await;
    answer_alike(&client, &postgres, &JSON_QUERIES).await;
    // Result types: a document, or text once read as text or cast to it.
    let typed = r#"SELECT '{"a": 1}'::jsonb::text, '{"a": 1}'::jsonb -> 'a', '{"a": 1}'::json #>> '{a}', '1'::json, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid::text, json_agg(1), jsonb_object_agg('a', 2)"#;
    let mut types = Vec::new();
    for server in [&client, &postgres] {
        let statement = server.prepare(typed).await.unwrap();
        types.push(
            statement
                .columns()
                .iter()
                .map(|c| c.type_().clone())
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(
        types[0],
        [
            Type::TEXT,
            Type::JSONB,
            Type::TEXT,
            Type::JSON,
            Type::TEXT,
            Type::JSON,
            Type::JSONB
        ]
    );
    assert_eq!(types[0], types[1]);
    // Parameters, in the extended protocol.
    let extract = "SELECT ($1::text)::jsonb ->> $2::text, ($1::text)::jsonb @> ($3::text)::jsonb";
    let document = r#"{"region": "EMEA", "tags": ["a", "b"]}"#;
    for server in [&client, &postgres] {
        let row = server
            .query_one(extract, &[&document, &"region", &r#"{"tags": ["b"]}"#])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "EMEA");
        assert!(row.get::<_, bool>(1));
    }
    // Documents PostgreSQL refuses, with its SQLSTATEs.
    let refused = [
        (
            "SELECT '{oops'::jsonb",
            SqlState::INVALID_TEXT_REPRESENTATION,
        ),
        ("SELECT '[1,]'::json", SqlState::INVALID_TEXT_REPRESENTATION),
        (
            r#"SELECT '{"a": "\u0000"}'::jsonb"#,
            SqlState::UNTRANSLATABLE_CHARACTER,
        ),
        (
            r#"SELECT '{"a": "\u0000"}'::json ->> 'a'"#,
            SqlState::UNTRANSLATABLE_CHARACTER,
        ),
        (
            "SELECT '[1]'::jsonb #> '{a'",
            SqlState::INVALID_TEXT_REPRESENTATION,
        ),
        (
            "SELECT '100e131070'::jsonb",
            SqlState::NUMERIC_VALUE_OUT_OF_RANGE,
        ),
        (
            "SELECT '0e-20000'::jsonb",
            SqlState::NUMERIC_VALUE_OUT_OF_RANGE,
        ),
        ("SELECT '1'::jsonb - 'a'", SqlState::INVALID_PARAMETER_VALUE),
        (
            r#"SELECT '{"a": 1}'::jsonb - 0"#,
            SqlState::INVALID_PARAMETER_VALUE,
        ),
        (
            "SELECT jsonb_array_length('{}')",
            SqlState::INVALID_PARAMETER_VALUE,
        ),
        (
            "SELECT json_array_length('1')",
            SqlState::INVALID_PARAMETER_VALUE,
        ),
        (
            "SELECT '[1]'::jsonb || 'x'",
            SqlState::INVALID_TEXT_REPRESENTATION,
        ),
        (
            "SELECT jsonb_set('1', '{a}', '2')",
            SqlState::INVALID_PARAMETER_VALUE,
        ),
        (
            "SELECT jsonb_set('[1]', '{a}', '2')",
            SqlState::INVALID_TEXT_REPRESENTATION,
        ),
        (
            "SELECT jsonb_set('{}', ARRAY[NULL::text], '2')",
            SqlState::NULL_VALUE_NOT_ALLOWED,
        ),
        (
            "SELECT json_object_agg(k, 1) FROM (VALUES (NULL::text)) AS t(k)",
            SqlState::INVALID_PARAMETER_VALUE,
        ),
        (
            "SELECT jsonb_object_agg(k, 1) FROM (VALUES ('a'), (NULL)) AS t(k)",
            SqlState::INVALID_PARAMETER_VALUE,
        ),
    ];
    for (sql, code) in refused {
        for server in [&client, &postgres] {
            let error = server.simple_query(sql).await.expect_err(sql);
            assert_eq!(error.code(), Some(&code), "{sql}: {error:?}");
        }
    }
    // A refused document leaves the connection working.
    assert_eq!(
        text_rows(&client, "SELECT 1").await,
        [[Some("1".to_owned())]]
    );
    server.stop().await;
}
