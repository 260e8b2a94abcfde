//! Crash safety: a server process killed at any point of a write (fail points, see
//! `quantatom_table_providers`' `fail_point` module) leaves the cube readable at its last
//! committed version, the ledger agrees (intact, holding the write exactly when it committed),
//! and vacuum removes the data file a dead writer left behind.

use std::process::Stdio;
use std::time::Duration;

use quantatom_engine::mdf::maintenance::vacuum;
use quantatom_engine::storage::StorageConfig;
use quantatom_engine::{Engine, EngineConfig};

use crate::support::{TEST_DEMO_CELLS, connect_when_up, serve_command};

/// The cell the killed write sets, and its demo value.
const CELL: &str = "version = 'Budget' AND time = '2025_01' AND entity = 'DE' AND account = '4000' AND product = 'P0001'";

/// Where the write dies, and whether its commit is durable by then.
const FAIL_POINTS: [(&str, bool); 6] = [
    ("mdf.before_data_upload", false),
    ("mdf.after_data_upload", false),
    ("mdf.before_log_write", false),
    ("mdf.after_log_write", true),
    ("ledger.before_log_write", true),
    ("ledger.after_log_write", true),
];

/// Each fail point is tried this many times.
const ROUNDS: usize = 2;

async fn engine(data_dir: &std::path::Path, demo_cells: Option<usize>) -> Engine {
    Engine::open(&EngineConfig {
        storage: StorageConfig::Local(data_dir.to_owned()),
        demo_cells,
        ledger: true,
        metadata: Default::default(),
        caches: Default::default(),
    })
    .await
    .expect("engine opens")
}

/// `(latest version, the cell's amount, cells in the cube)`.
async fn state(engine: &Engine) -> (u64, String, i64) {
    let cube = engine.cubes().cube("finance").expect("the demo cube");
    let version = cube.version().await.unwrap().0;
    let session = engine.new_session();
    let amount = session
        .sql(&format!(
            "SELECT CAST(amount AS VARCHAR) FROM cube.finance WHERE {CELL}"
        ))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let amount = datafusion::arrow::util::pretty::pretty_format_batches(&amount)
        .unwrap()
        .to_string();
    let count = count(&session, "SELECT count(*) FROM cube.finance").await;
    (version, amount, count)
}

/// The count a `SELECT count(*) ...` answers.
async fn count(session: &datafusion::prelude::SessionContext, sql: &str) -> i64 {
    use datafusion::arrow::array::AsArray;
    let batches = session.sql(sql).await.unwrap().collect().await.unwrap();
    batches[0]
        .column(0)
        .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
        .value(0)
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The write the killed servers are sent.
const WRITE: &str =
    "INSERT INTO cube.finance VALUES ('Budget', '2025_01', 'DE', '4000', 'P0001', 'EUR', 1.23)";

/// Runs the server binary over `data_dir` with `fail_point` armed, sends `write`, and waits
/// for the process to die of it.
async fn write_until_killed(data_dir: &std::path::Path, fail_point: &str, write: &str) {
    let port = free_port();
    let mut server = serve_command(data_dir, port)
        .env("QUANTATOM_FAIL_POINT", fail_point)
        .env("QUANTATOM_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the server binary starts");
    let config = format!("host=127.0.0.1 port={port} user=tester dbname=quantatom");
    let client = connect_when_up(&config).await;
    let written = client.simple_query(write).await;
    assert!(
        written.is_err(),
        "{fail_point}: the write must not be acknowledged by a dying server"
    );
    let status = tokio::time::timeout(Duration::from_secs(30), server.wait())
        .await
        .expect("the server dies at the fail point")
        .unwrap();
    assert!(!status.success(), "{fail_point}: {status}");
}

/// After a crash, the ledger is intact and holds the killed write exactly when it committed.
async fn assert_ledger_agrees(engine: &Engine, fail_point: &str, committed: bool) {
    let session = engine.new_session();
    let ledger = engine.ledger().expect("the ledger");
    let verification = ledger
        .verify(&engine.cubes().all(), &session.state())
        .await
        .unwrap();
    assert_eq!(verification.broken, None, "{fail_point}");
    let rows = count(
        &session,
        &format!("SELECT count(*) FROM audit.finance WHERE {CELL} AND new_amount = 1.23"),
    )
    .await;
    assert_eq!(
        rows,
        i64::from(committed),
        "{fail_point}: the ledger holds the write exactly when it committed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_killed_anywhere_leaves_the_last_committed_version() {
    let attempts = (0..ROUNDS).flat_map(|_| FAIL_POINTS);
    for (fail_point, committed) in attempts {
        let data_dir = tempfile::tempdir().unwrap();
        let before = state(&engine(data_dir.path(), Some(TEST_DEMO_CELLS)).await).await;
        write_until_killed(data_dir.path(), fail_point, WRITE).await;

        let reopened = engine(data_dir.path(), None).await;
        let after = state(&reopened).await;
        if committed {
            assert_eq!(after.0, before.0 + 1, "{fail_point}: the entry was written");
            assert!(after.1.contains("1.23"), "{fail_point}: {}", after.1);
            assert_eq!(after.2, before.2, "{fail_point}: the cell was replaced");
        } else {
            assert_eq!(after, before, "{fail_point}: as if the write never began");
        }

        assert_ledger_agrees(&reopened, fail_point, committed).await;

        let cube = reopened.cubes().cube("finance").unwrap();
        let report = vacuum(&cube, Duration::ZERO, Duration::ZERO, &|_| {})
            .await
            .unwrap();
        let orphaned = matches!(fail_point, "mdf.after_data_upload" | "mdf.before_log_write");
        assert_eq!(
            report.files_deleted,
            usize::from(orphaned),
            "{fail_point}: vacuum removes the dead writer's file and nothing else"
        );
        assert_eq!(
            state(&reopened).await,
            after,
            "{fail_point}: vacuum changes no answer"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_change_killed_before_its_ledger_entry_is_ledgered_after() {
    for _ in 0..ROUNDS {
        let data_dir = tempfile::tempdir().unwrap();
        drop(engine(data_dir.path(), Some(TEST_DEMO_CELLS)).await);
        write_until_killed(
            data_dir.path(),
            "metadata.after_member_commit",
            "INSERT INTO dim.entity (code, name, parent) VALUES ('PL', 'Poland', 'EMEA')",
        )
        .await;
        let reopened = engine(data_dir.path(), None).await;
        let members = reopened.metadata().members("entity").await.unwrap();
        assert!(
            members.iter().any(|member| member.code == "PL"),
            "the change committed"
        );
        let session = reopened.new_session();
        let verification = reopened
            .ledger()
            .unwrap()
            .verify(&reopened.cubes().all(), &session.state())
            .await
            .unwrap();
        assert_eq!(verification.broken, None);
        let rows = session
            .sql("SELECT item, old_value IS NULL FROM audit.ledger WHERE kind = 'member'")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let rows = datafusion::arrow::util::pretty::pretty_format_batches(&rows)
            .unwrap()
            .to_string();
        assert!(
            rows.contains("| PL   | true "),
            "the ledger holds the change: {rows}"
        );
    }
}
