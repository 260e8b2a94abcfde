//! pgJDBC (Debian's libpostgresql-jdbc-java) against the server: DatabaseMetaData (catalogs,
//! schemas, tables, columns, keys, indexes, types), server-side prepared statements, fetchSize streaming.

use tokio::process::Command;

use crate::support::{TEST_DEMO_CELLS, TestServer, package_file};

const JDBC_JAR: &str = "/usr/share/java/postgresql.jar";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jdbc_metadata_prepared_statements_and_streaming() {
    let server = TestServer::start().await;
    let program = package_file("tests/jdbc/Metadata.java");
    let url = format!(
        "jdbc:postgresql://{}:{}/quantatom",
        server.address.ip(),
        server.address.port()
    );
    let output = Command::new("java")
        .args(["-cp", JDBC_JAR, &program, &url])
        .output()
        .await
        .expect("java is installed (scripts/test installs it)");
    let out = String::from_utf8_lossy(&output.stdout);
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "pgJDBC program failed:\n{out}\n{err}"
    );
    let lines: Vec<&str> = out.lines().collect();
    let errors: Vec<&&str> = lines
        .iter()
        .filter(|line| line.starts_with("error|"))
        .collect();
    assert!(errors.is_empty(), "pgJDBC calls failed: {errors:#?}\n{out}");
    let expected = [
        "version|16.6",
        "catalog|quantatom",
        "schema|cube",
        "schema|dim",
        "schema|public",
        "table|cube|finance",
        "column|finance|entity|text",
        "column|finance|amount|numeric|18|2",
        "column|entity|path|text",
        // Cubes and dimensions declare no keys or indexes; the calls succeed with no rows.
        "primaryKeys|entity|0",
        "indexes|entity|0",
        "importedKeys|finance|0",
        // java.sql.Types: INTEGER 4, VARCHAR 12, NUMERIC 2, ARRAY 2003 (the type cache compares
        // `typinput` with `'array_in'::regproc`).
        "type|int4|4",
        "type|text|12",
        "type|numeric|2",
        "type|_int4|2003",
        "prepared|DE|EMEA",
        "prepared|EMEA|Total",
        "prepared|US_EAST|US",
    ];
    for fact in expected {
        assert!(lines.contains(&fact), "pgJDBC reports {fact}:\n{out}");
    }
    for dimension in [
        "account", "currency", "entity", "product", "time", "version",
    ] {
        let expected = format!("table|dim|{dimension}");
        assert!(
            lines.contains(&expected.as_str()),
            "getTables lists {dimension}:\n{out}"
        );
    }
    let streamed = format!("streamed|{TEST_DEMO_CELLS}");
    assert!(
        lines.contains(&streamed.as_str()),
        "fetchSize streaming returns every cell:\n{out}"
    );
    server.stop().await;
}
