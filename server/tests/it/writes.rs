//! Writes over the wire: `UPDATE` and `DELETE` answer with their row counts in both
//! protocols (as PostgreSQL tags them), and every commit is recorded under the session's user.

use tokio_postgres::SimpleQueryMessage;

use crate::support::{TestServer, value};

const CELL: &str = "time = '2025_01' AND entity = 'DE' AND account = '4000' AND product = 'P0001'";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_and_deletes_report_rows_and_their_user() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let before = value(
        &client,
        &format!(
            "SELECT CAST(amount AS VARCHAR) FROM cube.finance WHERE version = 'Budget' AND {CELL}"
        ),
    )
    .await;

    // Extended protocol, with a parameter.
    let updated = client
        .execute(
            &format!("UPDATE cube.finance SET amount = amount + 1 WHERE version = $1 AND {CELL}"),
            &[&"Budget"],
        )
        .await
        .unwrap();
    assert_eq!(updated, 1);
    let after = value(&client, &format!("SELECT CAST(amount - 1 AS VARCHAR) FROM cube.finance WHERE version = 'Budget' AND {CELL}")).await;
    assert_eq!(after, before, "the cell went up by one");

    // Simple protocol, two statements in one string.
    let messages = client
        .simple_query(&format!(
            "DELETE FROM cube.finance WHERE version = 'Budget' AND {CELL}; DELETE FROM cube.finance WHERE version = 'Forecast' AND {CELL}"
        ))
        .await
        .unwrap();
    let counts: Vec<u64> = messages
        .iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::CommandComplete(rows) => Some(*rows),
            SimpleQueryMessage::Row(_) => panic!("a DELETE answers with a tag, not rows"),
            _ => None,
        })
        .collect();
    assert_eq!(counts, [1, 1]);
    let left = value(
        &client,
        &format!(
            "SELECT count(*) FROM cube.finance WHERE version IN ('Budget', 'Forecast') AND {CELL}"
        ),
    )
    .await;
    assert_eq!(left, "0");

    let history = client
        .simple_query(
            "SELECT committed_by, operation FROM mdf_history('cube.finance') ORDER BY version",
        )
        .await
        .unwrap();
    let commits: Vec<(Option<String>, String)> = history
        .iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some((
                row.get(0).map(str::to_owned),
                row.get(1).unwrap().to_owned(),
            )),
            _ => None,
        })
        .collect();
    let tester = || Some("tester".to_owned());
    assert_eq!(
        commits,
        [
            (None, "create".to_owned()),
            (None, "append".to_owned()),
            (tester(), "update".to_owned()),
            (tester(), "delete".to_owned()),
            (tester(), "delete".to_owned()),
        ],
        "the demo was loaded by no session; the writes are the connection's user's"
    );
    server.stop().await;
}
