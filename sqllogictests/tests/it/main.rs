//! Runs every `.slt` file in-process and over the wire against the demo model, with the
//! embedded metadata store and with PostgreSQL's.

mod ltree_differential;
mod metadata_store;
mod security;

use std::sync::Arc;

use quantatom_engine::MetadataConfig;
use quantatom_server::Server;
use quantatom_sqllogictests::{
    DemoEngine, InProcessDb, SUITE_DEMO_CELLS, WireDb, postgres_test_metadata, run_files,
    suite_files,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_in_process() {
    run_in_process(MetadataConfig::Embedded).await;
}

/// The same suite with dimensions and members in PostgreSQL: both stores answer alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_in_process_with_postgres_metadata() {
    run_in_process(postgres_test_metadata().await).await;
}

async fn run_in_process(metadata: MetadataConfig) {
    let demo = Arc::new(
        DemoEngine::start(SUITE_DEMO_CELLS, metadata)
            .await
            .expect("demo engine starts"),
    );
    let failures = run_files(&suite_files(), || {
        let demo = Arc::clone(&demo);
        move || {
            let db = InProcessDb::new(
                quantatom_server::wire::postgres_session(&demo.engine, &Default::default())
                    .expect("pg_catalog sets up"),
            );
            async move { Ok::<_, quantatom_sqllogictests::InProcessError>(db) }
        }
    })
    .await;
    assert!(
        failures.is_empty(),
        "{} file(s) failed in-process:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_over_wire() {
    run_over_wire(MetadataConfig::Embedded).await;
}

/// Over the wire with dimensions and members in PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_over_wire_with_postgres_metadata() {
    run_over_wire(postgres_test_metadata().await).await;
}

async fn run_over_wire(metadata: MetadataConfig) {
    let demo = DemoEngine::start(SUITE_DEMO_CELLS, metadata)
        .await
        .expect("demo engine starts");
    let server = Server::bind(&demo.engine, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("server binds");
    let address = server.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run_until(async move {
        let _ = stopped.await;
    }));
    let config = format!(
        "host={} port={} user=slt dbname=quantatom",
        address.ip(),
        address.port()
    );
    let failures = run_files(&suite_files(), || {
        let config = config.clone();
        move || {
            let config = config.clone();
            async move { WireDb::connect(&config).await }
        }
    })
    .await;
    let _ = stop.send(());
    serving.await.unwrap().unwrap();
    assert!(
        failures.is_empty(),
        "{} file(s) failed over the wire:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
