//! Crash safety: a server process killed at any point of a write (fail points, see
//! `quantatom_table_providers`' `fail_point` module) leaves the cube readable at its last
//! committed version, the ledger agrees (intact, holding the write exactly when it committed),
//! and vacuum removes the data file a dead writer left behind; on a local folder and on the
//! S3-compatible server `scripts/test` starts.

use std::process::Stdio;
use std::time::Duration;

use quantatom_engine::mdf::maintenance::vacuum;
use quantatom_engine::storage::{S3Settings, StorageConfig};
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

/// Where a crash test's cube lives: a fresh local folder, or a fresh prefix in the bucket of
/// the S3-compatible server `scripts/test` starts (named by `QUANTATOM_TEST_S3_BUCKET` and the
/// `AWS_*` variables).
struct Place {
    /// The server's `--data-dir`.
    location: String,
    storage: StorageConfig,
    _folder: Option<tempfile::TempDir>,
}

impl Place {
    fn local() -> Place {
        let folder = tempfile::tempdir().unwrap();
        Place {
            location: folder.path().to_str().unwrap().to_owned(),
            storage: StorageConfig::Local(folder.path().to_owned()),
            _folder: Some(folder),
        }
    }

    fn s3() -> Place {
        let bucket = std::env::var("QUANTATOM_TEST_S3_BUCKET").expect(
            "QUANTATOM_TEST_S3_BUCKET is not set: run ./scripts/test, which starts an S3-compatible server",
        );
        let location = format!("s3://{bucket}/crash-{}", uuid::Uuid::new_v4().simple());
        let settings = S3Settings {
            path_style: true,
            ..S3Settings::default()
        };
        Place {
            storage: StorageConfig::from_location(&location, settings).unwrap(),
            location,
            _folder: None,
        }
    }
}

async fn engine(place: &Place, demo_cells: Option<usize>) -> Engine {
    Engine::open(&EngineConfig {
        storage: place.storage.clone(),
        demo_cells,
        ledger: true,
        metadata: Default::default(),
        caches: Default::default(),
        compaction: Default::default(),
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

/// Runs the server binary over `place` with `fail_point` armed, sends `write`, and waits for
/// the process to die of it.
async fn write_until_killed(place: &Place, fail_point: &str, write: &str) {
    let port = free_port();
    let mut server = serve_command(&place.location, port)
        .env("QUANTATOM_S3_PATH_STYLE", "true")
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
    let places: [(&str, fn() -> Place); 2] = [("local folder", Place::local), ("S3", Place::s3)];
    let attempts = (0..ROUNDS)
        .flat_map(|_| places)
        .flat_map(|place| FAIL_POINTS.map(|point| (place, point)));
    for ((backend, new_place), (point, committed)) in attempts {
        let case = &format!("{backend}, {point}");
        let place = new_place();
        let before = state(&engine(&place, Some(TEST_DEMO_CELLS)).await).await;
        write_until_killed(&place, point, WRITE).await;

        let reopened = engine(&place, None).await;
        let after = state(&reopened).await;
        if committed {
            assert_eq!(after.0, before.0 + 1, "{case}: the entry was written");
            assert!(after.1.contains("1.23"), "{case}: {}", after.1);
            assert_eq!(after.2, before.2, "{case}: the cell was replaced");
        } else {
            assert_eq!(after, before, "{case}: as if the write never began");
        }

        assert_ledger_agrees(&reopened, case, committed).await;

        let cube = reopened.cubes().cube("finance").unwrap();
        let report = vacuum(&cube, Duration::ZERO, Duration::ZERO, &|_| {})
            .await
            .unwrap();
        let orphaned = matches!(point, "mdf.after_data_upload" | "mdf.before_log_write");
        assert_eq!(
            report.files_deleted,
            usize::from(orphaned),
            "{case}: vacuum removes the dead writer's file and nothing else"
        );
        assert_eq!(
            state(&reopened).await,
            after,
            "{case}: vacuum changes no answer"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_change_killed_before_its_ledger_entry_is_ledgered_after() {
    for _ in 0..ROUNDS {
        let place = Place::local();
        drop(engine(&place, Some(TEST_DEMO_CELLS)).await);
        write_until_killed(
            &place,
            "metadata.after_member_commit",
            "INSERT INTO dim.entity (code, name, parent) VALUES ('PL', 'Poland', 'EMEA')",
        )
        .await;
        let reopened = engine(&place, None).await;
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
