//! The client libraries BI tools and applications are built on, each running its own checks
//! against the server: psycopg 3, SQLAlchemy's inspector, asyncpg and node-postgres.
//!
//! `scripts/test` installs them (pinned in `tests/clients/requirements.txt` and
//! `package.json`) under `$QUANTATOM_CLIENTS`; these tests fail when that is missing.

use tokio::process::Command;

use crate::support::{TestServer, package_file};

fn clients_dir() -> String {
    std::env::var("QUANTATOM_CLIENTS").expect(
        "QUANTATOM_CLIENTS names the folder scripts/test installs the client libraries into",
    )
}

fn script(name: &str) -> String {
    package_file(&format!("tests/clients/{name}"))
}

/// Runs `program args`, failing the test with its output unless it succeeds.
async fn run(mut command: Command) {
    let output = command.output().await.expect("client program starts");
    let out = String::from_utf8_lossy(&output.stdout);
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "client checks failed:\n{out}\n{err}"
    );
    assert!(
        out.contains("checks passed"),
        "client reported no checks:\n{out}\n{err}"
    );
}

fn python(script_name: &str, url: String) -> Command {
    let mut command = Command::new(format!("{}/venv/bin/python", clients_dir()));
    command.arg(script(script_name)).arg(url);
    command
}

fn url(server: &TestServer, scheme: &str) -> String {
    format!(
        "{scheme}://tester@{}:{}/quantatom",
        server.address.ip(),
        server.address.port()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_round_trips_types_prepares_pipelines_and_sets() {
    let server = TestServer::start().await;
    run(python("psycopg_client.py", server.connection_string())).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlalchemy_inspects_the_catalog_as_superset_does() {
    let server = TestServer::start().await;
    run(python(
        "sqlalchemy_inspect.py",
        url(&server, "postgresql+psycopg"),
    ))
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncpg_queries_in_binary_with_prepared_statements() {
    let server = TestServer::start().await;
    run(python("asyncpg_client.py", url(&server, "postgresql"))).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_postgres_runs_parameters_named_statements_and_multi_statements() {
    let server = TestServer::start().await;
    let mut command = Command::new("node");
    command.env("NODE_PATH", format!("{}/node/node_modules", clients_dir()));
    command
        .arg(script("node_pg_client.js"))
        .arg(url(&server, "postgresql"));
    run(command).await;
    server.stop().await;
}
