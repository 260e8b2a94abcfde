//! Queries run again from a connection's plan cache: every run must see what a fresh plan
//! would (commits and catalog changes on any connection, session settings, the clock), through
//! the simple and the extended protocol.

use std::time::Duration;

use tokio_postgres::types::Type;

use crate::support::{TestServer, rows, value};

const SCENARIO_CELLS: &str = "SELECT count(*) FROM cube.finance WHERE version = 'Scenario'";
const TOP_SCENARIO_CELL: &str =
    "SELECT amount FROM cube.finance WHERE version = 'Scenario' ORDER BY amount DESC LIMIT 1";

async fn insert(client: &tokio_postgres::Client, time: &str, amount: &str) {
    let sql = format!(
        "INSERT INTO cube.finance VALUES ('Scenario', '{time}', 'DE', '4000', 'P0001', 'EUR', {amount})"
    );
    assert_eq!(
        client
            .execute(sql.as_str(), &[])
            .await
            .expect("insert runs"),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reused_plans_see_commits_from_other_connections() {
    let server = TestServer::start().await;
    let reader = server.client().await;
    let writer = server.client().await;
    // A new version to write to: cells sit on members.
    writer
        .batch_execute("INSERT INTO dim.version (code, name) VALUES ('Scenario', 'Scenario')")
        .await
        .expect("the member is added");
    let point = reader
        .prepare("SELECT amount::text FROM cube.finance WHERE version = $1 AND time = $2")
        .await
        .expect("prepares");
    for _ in 0..2 {
        assert_eq!(value(&reader, SCENARIO_CELLS).await, "0");
        assert!(
            reader
                .query(&point, &[&"Scenario", &"2025_02"])
                .await
                .unwrap()
                .is_empty()
        );
    }
    insert(&writer, "2025_01", "1234.5").await;
    insert(&writer, "2025_02", "99.75").await;
    for _ in 0..2 {
        assert_eq!(value(&reader, SCENARIO_CELLS).await, "2");
        assert_eq!(value(&reader, TOP_SCENARIO_CELL).await, "1234.50");
        let rows = reader
            .query(&point, &[&"Scenario", &"2025_02"])
            .await
            .unwrap();
        assert_eq!(
            rows.iter()
                .map(|row| row.get::<_, String>(0))
                .collect::<Vec<_>>(),
            ["99.75"]
        );
    }
    insert(&writer, "2025_03", "5000").await;
    assert_eq!(value(&reader, SCENARIO_CELLS).await, "3");
    assert_eq!(value(&reader, TOP_SCENARIO_CELL).await, "5000.00");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_k_answers_stay_right_when_run_again() {
    // A TopK sort tightens a dynamic filter in the scan while it runs; a plan run again with
    // that filter still tight would find nothing above the last answer.
    let server = TestServer::start().await;
    let client = server.client().await;
    let top = "SELECT amount FROM cube.finance ORDER BY amount DESC LIMIT 1";
    let first = value(&client, top).await;
    for _ in 0..3 {
        assert_eq!(value(&client, top).await, first);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reused_plans_follow_catalog_changes_settings_and_the_clock() {
    let server = TestServer::start().await;
    let reader = server.client().await;
    let writer = server.client().await;
    let view = "SELECT x FROM public.reuse";
    // Through the extended protocol's unnamed statement, as drivers send a query they do not
    // prepare: Parse, Bind, Describe, Execute every time. The same text parsed again keeps the
    // statement stored until something changes what it means.
    let extended = async |client: &tokio_postgres::Client| {
        let rows = client.query_typed(view, &[]).await.unwrap();
        rows[0].get::<_, i64>(0)
    };
    writer
        .batch_execute("CREATE VIEW public.reuse AS SELECT 1 AS x")
        .await
        .unwrap();
    for _ in 0..2 {
        assert_eq!(value(&reader, view).await, "1");
        assert_eq!(extended(&reader).await, 1);
    }
    writer
        .batch_execute("DROP VIEW public.reuse")
        .await
        .unwrap();
    writer
        .batch_execute("CREATE VIEW public.reuse AS SELECT 2 AS x")
        .await
        .unwrap();
    assert_eq!(value(&reader, view).await, "2");
    assert_eq!(extended(&reader).await, 2);
    // The same text with other parameter types is parsed again.
    let echo = "SELECT CAST($1 AS text) AS v";
    let number = reader.query_typed(echo, &[(&7_i64, Type::INT8)]).await;
    assert_eq!(number.unwrap()[0].get::<_, &str>(0), "7");
    let word = reader.query_typed(echo, &[(&"seven", Type::TEXT)]).await;
    assert_eq!(word.unwrap()[0].get::<_, &str>(0), "seven");

    // A time zone given in the literal's text is read in the session's zone when planned.
    let noon = "SELECT extract(epoch FROM '2024-01-01 12:00:00'::timestamptz)::bigint";
    assert_eq!(value(&reader, noon).await, "1704110400");
    assert_eq!(value(&reader, noon).await, "1704110400");
    reader
        .batch_execute("SET TIME ZONE 'Europe/Berlin'")
        .await
        .unwrap();
    assert_eq!(value(&reader, noon).await, "1704106800");

    let clock = "SELECT now()::text";
    let before = value(&reader, clock).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_ne!(
        value(&reader, clock).await,
        before,
        "now() is the time of each statement"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_answers_follow_the_result_format_and_the_session_zone() {
    // A run again of a kept plan replays its encoded answer: it must be the answer in the
    // format this run asks for (text from the simple protocol, binary from tokio-postgres's
    // prepared statements) and under the session's current settings.
    let server = TestServer::start().await;
    let client = server.client().await;
    let sql = "SELECT 42::int8 AS x, TIMESTAMPTZ '2024-01-01 12:00:00+00' AS t";
    let shown = async || {
        let answer = rows(&client, sql).await;
        assert_eq!(answer.len(), 1);
        assert_eq!(answer[0][0], "42");
        answer[0][1].clone()
    };
    for _ in 0..2 {
        let noon = shown().await;
        assert!(
            noon.starts_with("2024-01-01 12:00:00") && noon.ends_with("+00"),
            "{noon}"
        );
        let row = client.query_one(sql, &[]).await.unwrap();
        assert_eq!(row.get::<_, i64>(0), 42);
    }
    client
        .batch_execute("SET TIME ZONE 'Europe/Berlin'")
        .await
        .unwrap();
    for _ in 0..2 {
        let one = shown().await;
        assert!(
            one.starts_with("2024-01-01 13:00:00") && one.ends_with("+01"),
            "{one}"
        );
    }
    // An answer too large to keep is still answered whole every time.
    let wide = "SELECT repeat('ab', 2000) AS wide";
    for _ in 0..2 {
        assert_eq!(rows(&client, wide).await, [["ab".repeat(2000)]]);
    }
    server.stop().await;
}
