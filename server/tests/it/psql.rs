//! The real `psql` binary against the server.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use quantatom_engine::metadata::{AccessChange, Membership, Role, change_access};

use crate::support::TestServer;

/// Runs `script` through `psql` (unaligned output, errors do not stop it); returns stdout and
/// stderr. Fails the test if psql cannot run.
async fn psql(server: &TestServer, script: &str) -> (String, String) {
    let mut child = Command::new("psql")
        .args([
            "-X",
            "-A",
            "-h",
            &server.address.ip().to_string(),
            "-p",
            &server.address.port().to_string(),
        ])
        .args([
            "-U",
            "tester",
            "-d",
            "quantatom",
            "-v",
            "VERBOSITY=verbose",
            "-f",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql is installed (scripts/test installs postgresql-client)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .await
        .unwrap();
    let output = child.wait_with_output().await.unwrap();
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_lists_cubes_dimensions_schemas_and_databases() {
    let server = TestServer::start().await;
    let (out, err) = psql(&server, "\\dt cube.*\n\\dt dim.*\n\\dn\n\\l\n").await;
    assert!(
        out.contains("cube|finance|table"),
        "\\dt cube.* lists finance:\n{out}\n{err}"
    );
    for dimension in [
        "account",
        "currency",
        "entity",
        "entity__by_currency",
        "product",
        "time",
        "version",
    ] {
        assert!(
            out.contains(&format!("dim|{dimension}|table")),
            "\\dt dim.* lists {dimension}:\n{out}\n{err}"
        );
    }
    for schema in ["cube|", "dim|", "public|"] {
        assert!(
            out.lines().any(|line| line.starts_with(schema)),
            "\\dn lists {schema}:\n{out}\n{err}"
        );
    }
    assert!(
        out.lines().any(|line| line.starts_with("quantatom|")),
        "\\l lists quantatom:\n{out}\n{err}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_describes_the_finance_cube() {
    let server = TestServer::start().await;
    let (out, err) = psql(&server, "\\d cube.finance\n").await;
    for column in [
        "version", "time", "entity", "account", "product", "currency",
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("{column}|text|"))),
            "{column} is text:\n{out}\n{err}"
        );
    }
    // The measure's precision and scale, as PostgreSQL shows a numeric(18,2) column.
    assert!(
        out.lines().any(|l| l.starts_with("amount|numeric(18,2)|")),
        "amount is numeric(18,2):\n{out}\n{err}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_runs_a_parameterised_query() {
    let server = TestServer::start().await;
    let script = "PREPARE cells_of(text) AS SELECT count(*) AS cells FROM cube.finance WHERE entity = $1;\n\
                  EXECUTE cells_of('DE');\n";
    let (out, err) = psql(&server, script).await;
    // One product: 16 leaf accounts × 78 version-months for one entity.
    assert!(
        out.lines().any(|l| l == "1248"),
        "EXECUTE returns DE's cell count:\n{out}\n{err}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_session_survives_an_error() {
    let server = TestServer::start().await;
    let (out, err) = psql(
        &server,
        "SELECT * FROM no_such_table;\nSELECT 41 + 1 AS answer;\n",
    )
    .await;
    assert!(
        err.contains("42P01"),
        "undefined table reports SQLSTATE 42P01:\n{err}"
    );
    assert!(
        out.lines().any(|l| l == "42"),
        "the next query in the same session works:\n{out}\n{err}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_copies_query_results_to_stdout_and_to_a_client_file() {
    let server = TestServer::start().await;
    let folder = tempfile::tempdir().unwrap();
    let file = folder.path().join("versions.csv");
    let script = format!(
        "COPY (SELECT code, level, is_leaf FROM dim.version ORDER BY sort_order) TO STDOUT;\n\
         COPY (SELECT code, name FROM dim.entity WHERE code IN ('DE', 'Total') ORDER BY code) TO STDOUT WITH (FORMAT csv, HEADER, NULL 'none');\n\
         \\copy (SELECT code, parent FROM dim.entity WHERE level <= 2 ORDER BY code) to '{}' csv header\n",
        file.display()
    );
    let (out, err) = psql(&server, &script).await;
    assert!(
        out.contains("Actual\t1\tt\nBudget\t1\tt\nForecast\t1\tt\n"),
        "text COPY:\n{out}\n{err}"
    );
    assert!(
        out.contains("code,name\nDE,Germany\nTotal,Total company\n"),
        "CSV COPY with header:\n{out}\n{err}"
    );
    let copied = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("\\copy wrote {}: {e}\n{err}", file.display()));
    assert_eq!(
        copied, "code,parent\nAMER,Total\nAPAC,Total\nEMEA,Total\nTotal,\n",
        "\\copy to a client file"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_lists_roles_and_functions_and_expands_rows() {
    let server = TestServer::start().await;
    let role = |name: &str, can_login: bool, is_admin: bool| {
        AccessChange::CreateRole(Role {
            name: name.into(),
            can_login,
            is_admin,
            password_verifier: None,
        })
    };
    change_access(
        server.metadata.as_ref(),
        vec![
            role("planners", false, false),
            role("ana", true, false),
            role("root", true, true),
            AccessChange::GrantRole(Membership {
                role: "planners".into(),
                member: "ana".into(),
            }),
        ],
    )
    .await
    .unwrap();
    let (out, err) = psql(&server, "\\du\n\\df\n\\x\nSELECT 1 AS a, 'x' AS b;\n").await;
    assert!(!err.contains("ERROR"), "no errors:\n{out}\n{err}");
    // \du plans `ARRAY(SELECT ...)` (rewritten to an aggregate subquery) over the metadata
    // store's roles, memberships joined on the roles' oids.
    let roles = "Role name|Attributes|Member of\n\
                 ana||{planners}\n\
                 planners|Cannot login|{}\n\
                 root|Superuser, Create role, Bypass RLS|{}\n";
    assert!(out.contains(roles), "\\du answers:\n{out}\n{err}");
    // \df lists functions outside pg_catalog: there are none.
    let functions = "Schema|Name|Result data type|Argument data types|Type\n(0 rows)";
    assert!(out.contains(functions), "\\df answers:\n{out}\n{err}");
    assert!(
        out.lines().any(|l| l == "a|1") && out.lines().any(|l| l == "b|x"),
        "\\x expands:\n{out}\n{err}"
    );
    server.stop().await;
}
