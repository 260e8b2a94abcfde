//! A real server over a small demo model, on a free loopback port.

use std::net::SocketAddr;
use std::sync::Arc;

use quantatom_engine::mdf::CubeSchemaProvider;
use quantatom_engine::metadata::MetadataStore;
use quantatom_engine::storage::StorageConfig;
use quantatom_engine::{Engine, EngineConfig};
use quantatom_server::Server;
use quantatom_server::wire::{ConnectionLimits, Security};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};

/// Cells in the test demo: one product, so 16 accounts × 12 entities × 78 version-months.
pub const TEST_DEMO_CELLS: usize = 14_976;

/// A running server; stops when dropped.
pub struct TestServer {
    pub address: SocketAddr,
    /// The server's metadata store, for tests that set up roles or dimensions directly.
    pub metadata: Arc<dyn MetadataStore>,
    /// The server's cubes, for tests that create their own.
    pub cubes: Arc<CubeSchemaProvider>,
    stop: Option<oneshot::Sender<()>>,
    serving: Option<JoinHandle<std::io::Result<()>>>,
    _data_dir: tempfile::TempDir,
}

impl TestServer {
    /// Generates the demo in a temporary folder and serves it on 127.0.0.1, free port.
    pub async fn start() -> Self {
        Self::start_secured(Security::default()).await
    }

    /// [`TestServer::start`] with TLS and authentication as `security` says.
    pub async fn start_secured(security: Security) -> Self {
        Self::start_with(security, ConnectionLimits::default()).await
    }

    /// [`TestServer::start`] holding connections as `limits` says.
    pub async fn start_limited(limits: ConnectionLimits) -> Self {
        Self::start_with(Security::default(), limits).await
    }

    async fn start_with(security: Security, limits: ConnectionLimits) -> Self {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let engine = demo_engine(data_dir.path()).await;
        let server = Server::bind_secured(&engine, "127.0.0.1:0".parse().unwrap(), security)
            .await
            .expect("server binds")
            .with_limits(limits);
        let address = server.local_addr().unwrap();
        let metadata = Arc::clone(engine.metadata());
        let cubes = Arc::clone(engine.cubes());
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = tokio::spawn(server.run_until(async move {
            let _ = stopped.await;
        }));
        Self {
            address,
            metadata,
            cubes,
            stop: Some(stop),
            serving: Some(serving),
            _data_dir: data_dir,
        }
    }

    /// The folder the server keeps its data in.
    pub fn data_dir(&self) -> &std::path::Path {
        self._data_dir.path()
    }

    /// A libpq connection string for this server.
    pub fn connection_string(&self) -> String {
        format!(
            "host={} port={} user=tester dbname=quantatom",
            self.address.ip(),
            self.address.port()
        )
    }

    /// A connected tokio-postgres client.
    pub async fn client(&self) -> Client {
        let (client, connection) = tokio_postgres::connect(&self.connection_string(), NoTls)
            .await
            .expect("client connects");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }

    /// Stops the server and waits until it has.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(serving) = self.serving.take() {
            serving.await.expect("server task").expect("server ran");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A file of this test package, found at run time: the build cache is shared between checkouts,
/// so a path baked in at compile time could name another checkout's copy.
pub fn package_file(relative: &str) -> String {
    let package = std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo test or cargo nextest");
    format!("{package}/{relative}")
}

/// The single value a simple query returns.
pub async fn value(client: &tokio_postgres::Client, sql: &str) -> String {
    let rows = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.iter()
        .find_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql} returns a row"))
}

/// Every row a simple query answers, as text.
pub async fn rows(client: &tokio_postgres::Client, sql: &str) -> Vec<Vec<String>> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .filter_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or("NULL").to_owned())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// A client of a server binary just started with `config`'s address: tries for 30 seconds
/// while the binary starts, then fails the test.
pub async fn connect_when_up(config: &str) -> Client {
    let mut attempts = 0;
    loop {
        match tokio_postgres::connect(config, NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                return client;
            }
            Err(_) if attempts < 300 => {
                attempts += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the server did not accept connections: {e}"),
        }
    }
}

/// An engine over the test demo, written into `data_dir` (embedded metadata, default caches).
pub async fn demo_engine(data_dir: &std::path::Path) -> Engine {
    Engine::open(&EngineConfig {
        storage: StorageConfig::Local(data_dir.to_owned()),
        demo_cells: Some(TEST_DEMO_CELLS),
        ledger: true,
        metadata: Default::default(),
        caches: Default::default(),
        compaction: Default::default(),
    })
    .await
    .expect("the demo engine opens")
}

/// The server binary about to serve `data_dir` (no demo) on `127.0.0.1:port`, its admin
/// listener on a free port; callers add their own settings and spawn it.
pub fn serve_command(data_dir: impl AsRef<std::ffi::OsStr>, port: u16) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_quantatom"));
    command
        .args([
            "serve",
            "--admin-listen",
            "127.0.0.1:0",
            "--demo-cells",
            "0",
        ])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data_dir)
        .kill_on_drop(true);
    command
}
