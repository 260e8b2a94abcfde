//! pgJDBC (Debian's libpostgresql-jdbc-java) DatabaseMetaData against the server.

use tokio::process::Command;

use crate::support::TestServer;

const JDBC_JAR: &str = "/usr/share/java/postgresql.jar";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jdbc_metadata_lists_cubes_dimensions_and_columns() {
    let server = TestServer::start().await;
    let program = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/jdbc/Metadata.java");
    let url = format!("jdbc:postgresql://{}:{}/quantatom", server.address.ip(), server.address.port());
    let output = Command::new("java")
        .args(["-cp", JDBC_JAR, program, &url])
        .output()
        .await
        .expect("java is installed (scripts/test installs it)");
    let out = String::from_utf8_lossy(&output.stdout);
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "pgJDBC program failed:\n{out}\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.contains(&"table|cube|finance"), "getTables lists the cube:\n{out}");
    for dimension in ["account", "currency", "entity", "product", "time", "version"] {
        let expected = format!("table|dim|{dimension}");
        assert!(lines.contains(&expected.as_str()), "getTables lists {dimension}:\n{out}");
    }
    assert!(lines.contains(&"column|finance|entity|text"), "getColumns describes cube columns:\n{out}");
    assert!(lines.contains(&"column|finance|amount|numeric"), "getColumns describes the measure:\n{out}");
    assert!(lines.contains(&"column|entity|path|text"), "getColumns describes dimension columns:\n{out}");
    server.stop().await;
}
