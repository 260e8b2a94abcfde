//! Transaction blocks over the wire: one MDF commit per block, seen by other connections only
//! once committed; savepoints, dropped connections, conflicts at COMMIT, and the one-cube rule.

use quantatom_engine::mdf::{CubeDefinition, Measure};
use tokio_postgres::error::SqlState;

use crate::support::{TestServer, value};

const CELL: &str = "version = 'Budget' AND time = '2025_01' AND entity = 'DE' AND account = '4000' AND product = 'P0001'";
const OTHER_CELL: &str = "version = 'Budget' AND time = '2025_01' AND entity = 'FR' AND account = '4000' AND product = 'P0001'";

async fn amount(client: &tokio_postgres::Client, cell: &str) -> String {
    value(
        client,
        &format!("SELECT CAST(amount AS VARCHAR) FROM cube.finance WHERE {cell}"),
    )
    .await
}

async fn commits(client: &tokio_postgres::Client) -> String {
    value(
        client,
        "SELECT count(*) FROM mdf_history('cube.finance') WHERE operation <> 'compact'",
    )
    .await
}

fn sqlstate(error: &tokio_postgres::Error) -> &SqlState {
    error
        .code()
        .unwrap_or_else(|| panic!("{error} has a SQLSTATE"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_commits_once_and_only_then_is_seen() {
    let server = TestServer::start().await;
    let writer = server.client().await;
    let reader = server.client().await;
    let before = amount(&reader, CELL).await;
    let other_before = amount(&reader, OTHER_CELL).await;
    let commits_before = commits(&reader).await;

    // Extended protocol, as drivers run blocks: parameters, then COMMIT.
    let mut writer = writer;
    let block = writer.transaction().await.unwrap();
    block
        .execute(
            &format!("UPDATE cube.finance SET amount = 11 WHERE {CELL} AND currency = $1"),
            &[&"EUR"],
        )
        .await
        .unwrap();
    block
        .execute(
            &format!("UPDATE cube.finance SET amount = amount + 1 WHERE {OTHER_CELL}"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        amount(&reader, CELL).await,
        before,
        "another connection does not see a block's writes before COMMIT"
    );
    block.commit().await.unwrap();
    assert_eq!(amount(&reader, CELL).await, "11.00");
    assert_ne!(amount(&reader, OTHER_CELL).await, other_before);
    let commits_after: u64 = commits(&reader).await.parse().unwrap();
    assert_eq!(
        commits_after,
        commits_before.parse::<u64>().unwrap() + 1,
        "two statements, one commit"
    );

    // A whole block in one simple query.
    writer
        .batch_execute(&format!(
            "BEGIN; UPDATE cube.finance SET amount = 12 WHERE {CELL}; UPDATE cube.finance SET amount = 13 WHERE {CELL}; COMMIT"
        ))
        .await
        .unwrap();
    assert_eq!(amount(&reader, CELL).await, "13.00");
    assert_eq!(
        commits(&reader).await.parse::<u64>().unwrap(),
        commits_after + 1
    );

    // A simple query that opens a block and then fails leaves the block failed.
    let failed = writer
        .batch_execute(&format!(
            "BEGIN; UPDATE cube.finance SET amount = 14 WHERE {CELL}; SELECT * FROM cube.nothing"
        ))
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&failed), &SqlState::UNDEFINED_TABLE);
    let refused = writer.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&refused), &SqlState::IN_FAILED_SQL_TRANSACTION);
    writer.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(amount(&writer, CELL).await, "13.00");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn savepoints_and_dropped_connections_discard_writes() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let before = amount(&client, CELL).await;

    client
        .batch_execute(&format!(
            "BEGIN; UPDATE cube.finance SET amount = 1 WHERE {CELL}; SAVEPOINT s; UPDATE cube.finance SET amount = 2 WHERE {OTHER_CELL}"
        ))
        .await
        .unwrap();
    let other_before = {
        let reader = server.client().await;
        amount(&reader, OTHER_CELL).await
    };
    assert_eq!(amount(&client, OTHER_CELL).await, "2.00");
    client
        .batch_execute("ROLLBACK TO SAVEPOINT s")
        .await
        .unwrap();
    assert_eq!(
        amount(&client, OTHER_CELL).await,
        other_before,
        "ROLLBACK TO discards the writes after the savepoint"
    );
    assert_eq!(
        amount(&client, CELL).await,
        "1.00",
        "and keeps those before"
    );
    client.batch_execute("COMMIT").await.unwrap();
    assert_eq!(amount(&client, CELL).await, "1.00");
    assert_eq!(amount(&client, OTHER_CELL).await, other_before);

    // A connection that goes away with a block open commits nothing.
    let dropped = server.client().await;
    dropped
        .batch_execute(&format!(
            "BEGIN; UPDATE cube.finance SET amount = 99 WHERE {CELL}"
        ))
        .await
        .unwrap();
    drop(dropped);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(amount(&client, CELL).await, "1.00");
    assert_ne!(before, "1.00");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_commit_fails_whole_and_ends_the_block() {
    let server = TestServer::start().await;
    let first = server.client().await;
    let second = server.client().await;
    for client in [&first, &second] {
        client
            .batch_execute(&format!(
                "BEGIN; UPDATE cube.finance SET amount = amount + 1 WHERE {CELL}"
            ))
            .await
            .unwrap();
    }
    second
        .batch_execute(&format!(
            "UPDATE cube.finance SET amount = 5 WHERE {OTHER_CELL}"
        ))
        .await
        .unwrap();
    let other_before = amount(&first, OTHER_CELL).await;
    first.batch_execute("COMMIT").await.unwrap();
    let lost = second.batch_execute("COMMIT").await.unwrap_err();
    assert_eq!(sqlstate(&lost), &SqlState::T_R_SERIALIZATION_FAILURE);
    // Nothing of the losing block was written, and the connection is usable at once.
    assert_eq!(amount(&second, OTHER_CELL).await, other_before);

    // One block writes one cube.
    server
        .cubes
        .create_cube(CubeDefinition {
            name: "plan".into(),
            dimensions: vec!["entity".into()],
            measures: vec![Measure {
                name: "amount".into(),
                precision: 18,
                scale: 2,
            }],
        })
        .await
        .unwrap();
    first
        .batch_execute(&format!(
            "BEGIN; UPDATE cube.finance SET amount = 7 WHERE {CELL}"
        ))
        .await
        .unwrap();
    let refused = first
        .batch_execute("INSERT INTO cube.plan VALUES ('DE', 1)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&refused), &SqlState::FEATURE_NOT_SUPPORTED);
    let message = refused.as_db_error().expect("a database error").message();
    assert!(message.contains("one block writes one cube"), "{message}");
    first.batch_execute("ROLLBACK").await.unwrap();
    first
        .batch_execute("INSERT INTO cube.plan VALUES ('DE', 1)")
        .await
        .unwrap();
    assert_eq!(
        value(&first, "SELECT CAST(amount AS VARCHAR) FROM cube.plan").await,
        "1.00"
    );
}

/// Inside a block, an aggregate read from the cube's summaries (the demo's file has one) sees
/// the block's staged writes, as reading every cell does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregates_from_summaries_see_a_blocks_staged_writes() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let totals = "SELECT CAST(sum(amount) AS VARCHAR) || '/' || CAST(count(*) AS VARCHAR) \
                  FROM cube.finance WHERE version = 'Budget'";
    let explained = client
        .simple_query(&format!("EXPLAIN {totals}"))
        .await
        .unwrap();
    let plan: Vec<&str> = (explained.iter())
        .filter_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(1),
            _ => None,
        })
        .collect();
    let plan = plan.join("\n");
    assert!(
        plan.contains("/summaries/"),
        "the aggregate reads summaries:\n{plan}"
    );
    let before = value(&client, totals).await;
    client
        .batch_execute(&format!(
            "BEGIN; UPDATE cube.finance SET amount = amount + 1000 WHERE {CELL}"
        ))
        .await
        .unwrap();
    let staged = value(&client, totals).await;
    client
        .batch_execute("SET quantatom.summaries = false")
        .await
        .unwrap();
    assert_eq!(value(&client, totals).await, staged, "as the cells say");
    assert_ne!(staged, before, "the staged update counts");
    client.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(value(&client, totals).await, before);
}
