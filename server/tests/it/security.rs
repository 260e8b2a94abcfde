//! Security over the wire: SCRAM logins and their errors, the login throttle, TLS with a
//! generated CA (psql with `sslmode=verify-full`), grants and subtree scopes that every way of
//! reading a cube respects, writes refused whole outside a scope, and no password in the logs.

use std::process::Stdio;
use std::time::Duration;

use quantatom_engine::metadata::{AccessChange, Role, ScramVerifier, change_access};
use quantatom_server::wire::{AuthMethod, LoginLimits, Security, tls_acceptor};
use tokio_postgres::{Client, NoTls};

use crate::support::{TestServer, connect_when_up, rows, serve_command, value};

/// A server asking for SCRAM, with a throttle that locks after `max_failures`.
async fn scram_server(max_failures: u32) -> TestServer {
    TestServer::start_secured(Security {
        auth: AuthMethod::ScramSha256,
        login_limits: LoginLimits {
            max_failures,
            lockout: Duration::from_secs(60),
            failure_delay: Duration::ZERO,
        },
        ..Security::default()
    })
    .await
}

/// Creates `name` as a role that logs in with `password`, an administrator when `admin`.
async fn create_user(server: &TestServer, name: &str, password: &str, admin: bool) {
    let role = Role {
        name: name.into(),
        can_login: true,
        is_admin: admin,
        password_verifier: Some(ScramVerifier::hash(password)),
    };
    change_access(
        server.metadata.as_ref(),
        vec![AccessChange::CreateRole(role)],
    )
    .await
    .expect("the role is created");
}

/// Connects as `user` with `password` (and `extra` connection settings).
async fn connect_as(
    server: &TestServer,
    user: &str,
    password: &str,
    extra: &str,
) -> Result<Client, tokio_postgres::Error> {
    let config = format!(
        "host=127.0.0.1 port={} user={user} password='{password}' dbname=quantatom {extra}",
        server.address.port()
    );
    let (client, connection) = tokio_postgres::connect(&config, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// The SQLSTATE a failed connection or statement got.
fn code(error: &tokio_postgres::Error) -> String {
    error
        .as_db_error()
        .map(|e| e.code().code().to_owned())
        .unwrap_or_else(|| format!("no database error: {error}"))
}

/// The server's message for a failed connection or statement.
fn message(error: &tokio_postgres::Error) -> String {
    error
        .as_db_error()
        .map(|e| e.message().to_owned())
        .unwrap_or_else(|| error.to_string())
}

#[tokio::test]
async fn scram_logins_succeed_only_with_the_password() {
    let server = scram_server(3).await;
    create_user(&server, "boss", "correct horse", true).await;
    let client = connect_as(&server, "boss", "correct horse", "")
        .await
        .unwrap();
    assert_eq!(value(&client, "SELECT current_user").await, "boss");

    let wrong = connect_as(&server, "boss", "wrong", "").await.unwrap_err();
    assert_eq!(code(&wrong), "28P01");
    assert!(
        message(&wrong).contains("password authentication failed"),
        "{wrong:?}"
    );
    // A user that does not exist fails the same way: names are not revealed.
    let unknown = connect_as(&server, "nobody", "x", "").await.unwrap_err();
    assert_eq!(code(&unknown), "28P01");
    let database = connect_as(&server, "boss", "correct horse", "dbname=sales")
        .await
        .unwrap_err();
    assert_eq!(code(&database), "3D000");
    // A role that cannot log in.
    let mut role = Role {
        name: "auditors".into(),
        can_login: false,
        is_admin: false,
        password_verifier: Some(ScramVerifier::hash("pw")),
    };
    change_access(
        server.metadata.as_ref(),
        vec![AccessChange::CreateRole(role.clone())],
    )
    .await
    .unwrap();
    let no_login = connect_as(&server, "auditors", "pw", "").await.unwrap_err();
    assert_eq!(code(&no_login), "28000");
    role.can_login = true;
    change_access(
        server.metadata.as_ref(),
        vec![AccessChange::AlterRole(role)],
    )
    .await
    .unwrap();
    connect_as(&server, "auditors", "pw", "").await.unwrap();

    // The throttle: after three failures even the right password is refused for a while,
    // for that user only.
    for _ in 0..2 {
        assert_eq!(
            code(&connect_as(&server, "boss", "guess", "").await.unwrap_err()),
            "28P01"
        );
    }
    let locked = connect_as(&server, "boss", "correct horse", "")
        .await
        .unwrap_err();
    assert_eq!(code(&locked), "28000");
    assert!(
        message(&locked).contains("too many failed logins"),
        "{locked:?}"
    );
    connect_as(&server, "auditors", "pw", "").await.unwrap();
    // The server still serves the connection opened before.
    assert_eq!(value(&client, "SELECT 1 + 1").await, "2");
}

#[tokio::test]
async fn passwords_are_set_by_sql_and_stored_hashed() {
    let server = scram_server(5).await;
    create_user(&server, "boss", "boss pw", true).await;
    let admin = connect_as(&server, "boss", "boss pw", "").await.unwrap();
    admin
        .simple_query("CREATE USER ana WITH PASSWORD 'ana pw'")
        .await
        .unwrap();
    let ana = connect_as(&server, "ana", "ana pw", "").await.unwrap();
    // A user changes its own password (here over the extended protocol, as drivers send
    // statements); not anyone else's, and grants nothing.
    ana.execute("ALTER USER ana PASSWORD 'new ana pw'", &[])
        .await
        .unwrap();
    let denied = ana
        .simple_query("ALTER USER boss PASSWORD 'mine now'")
        .await
        .unwrap_err();
    assert_eq!(code(&denied), "42501");
    let denied = ana.simple_query("CREATE USER eve").await.unwrap_err();
    assert_eq!(code(&denied), "42501");
    let denied = ana.execute("CREATE USER eve", &[]).await.unwrap_err();
    assert_eq!(code(&denied), "42501");
    connect_as(&server, "ana", "new ana pw", "").await.unwrap();
    assert_eq!(
        code(&connect_as(&server, "ana", "ana pw", "").await.unwrap_err()),
        "28P01"
    );
    let (access, _) = server.metadata.access().await.unwrap();
    let stored = access.roles["ana"].password_verifier.clone().unwrap();
    assert!(stored.starts_with("SCRAM-SHA-256$4096:"), "{stored}");
    assert!(!stored.contains("ana pw"));
    let refused = admin
        .simple_query("CREATE USER mallory PASSWORD 'md5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'")
        .await
        .unwrap_err();
    assert_eq!(code(&refused), "0A000");
}

/// Writes a CA and a certificate for 127.0.0.1/localhost signed by it into `dir` with the
/// openssl command line; returns (CA, certificate, key) paths.
fn generate_certificates(dir: &std::path::Path) -> (String, String, String) {
    let path = |name: &str| dir.join(name).display().to_string();
    let (ca_key, ca, key, csr, cert, ext) = (
        path("ca.key"),
        path("ca.pem"),
        path("server.key"),
        path("server.csr"),
        path("server.pem"),
        path("san.ext"),
    );
    std::fs::write(&ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    let run = |args: &[&str]| {
        let output = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl runs");
        assert!(output.status.success(), "openssl {args:?}: {output:?}");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &ca_key,
        "-out",
        &ca,
        "-days",
        "1",
        "-subj",
        "/CN=Quantatom test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &key,
        "-out",
        &csr,
        "-subj",
        "/CN=localhost",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-out",
        &cert,
        "-days",
        "1",
        "-extfile",
        &ext,
    ]);
    (ca, cert, key)
}

#[tokio::test]
async fn tls_is_verified_by_psql_and_required() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = generate_certificates(dir.path());
    let acceptor = tls_acceptor(cert.as_ref(), key.as_ref()).expect("a TLS identity");
    let server = TestServer::start_secured(Security {
        auth: AuthMethod::ScramSha256,
        tls: Some(acceptor),
        tls_required: true,
        login_limits: LoginLimits::default(),
    })
    .await;
    create_user(&server, "boss", "tls pw", true).await;
    let psql = |sslmode: &str, host: &str| {
        tokio::process::Command::new("psql")
            .arg(format!(
                "host={host} port={} user=boss dbname=quantatom sslmode={sslmode} sslrootcert={ca}",
                server.address.port()
            ))
            .args(["-XAtc", "SELECT 'over tls'"])
            .env("PGPASSWORD", "tls pw")
            .output()
    };
    for host in ["localhost", "127.0.0.1"] {
        let verified = psql("verify-full", host).await.expect("psql runs");
        assert!(verified.status.success(), "{verified:?}");
        assert_eq!(String::from_utf8_lossy(&verified.stdout).trim(), "over tls");
    }
    let plaintext = psql("disable", "127.0.0.1").await.expect("psql runs");
    assert!(!plaintext.status.success());
    let message = String::from_utf8_lossy(&plaintext.stderr);
    assert!(message.contains("accepts only TLS"), "{message}");
    let refused = connect_as(&server, "boss", "tls pw", "").await.unwrap_err();
    assert_eq!(code(&refused), "28000");
}

/// The demo's entities under EMEA (the leaves, which hold cells).
const EMEA: &[&str] = &["DE", "FR", "NO", "SE", "UK"];
/// Under EMEA.NORDICS.
const NORDICS: &[&str] = &["NO", "SE"];
/// Under APAC, and Canada (cy's scopes).
const APAC_AND_CANADA: &[&str] = &["AU", "CA", "JP", "SG"];

/// The first column of every row `sql` returns, as text.
async fn column(client: &Client, sql: &str) -> Vec<String> {
    rows(client, sql)
        .await
        .into_iter()
        .map(|row| row[0].clone())
        .collect()
}

/// The first two columns of every row `sql` returns, as text.
async fn client_rows(client: &Client, sql: &str) -> Vec<(String, String)> {
    rows(client, sql)
        .await
        .into_iter()
        .map(|row| (row[0].clone(), row[1].clone()))
        .collect()
}

/// The SQLSTATE `sql` fails with.
async fn failure(client: &Client, sql: &str) -> String {
    code(
        &client
            .simple_query(sql)
            .await
            .expect_err(&format!("{sql} must fail")),
    )
}

#[tokio::test]
async fn scoped_grants_hold_for_every_way_of_reading() {
    let server = scram_server(5).await;
    create_user(&server, "boss", "boss pw", true).await;
    let boss = connect_as(&server, "boss", "boss pw", "").await.unwrap();
    for statement in [
        "CREATE USER ana PASSWORD 'ana pw'",
        "CREATE USER bo PASSWORD 'bo pw'",
        "CREATE USER cy PASSWORD 'cy pw'",
        "CREATE ROLE apac_readers",
        "GRANT apac_readers TO cy",
        "GRANT SELECT ON cube.finance TO ana WHERE entity <@ 'Total.EMEA'",
        "GRANT INSERT, UPDATE ON cube.finance TO ana WHERE entity <@ 'Total.EMEA.NORDICS'",
        "GRANT SELECT ON dim.entity TO ana WHERE entity <@ 'Total.EMEA'",
        "GRANT INSERT, DELETE ON dim.entity TO ana WHERE entity <@ 'Total.EMEA.NORDICS'",
        "GRANT SELECT ON cube.finance TO bo WHERE entity <@ 'Total.EMEA.NORDICS'",
        "GRANT SELECT ON cube.finance TO apac_readers WHERE entity <@ 'Total.APAC'",
        // Several scopes of one dimension add up; a scope on another dimension narrows.
        "GRANT SELECT ON cube.finance TO cy WHERE entity <@ 'Total.AMER.CA'",
        "CREATE USER dee PASSWORD 'dee pw'",
        "CREATE ROLE japan",
        "GRANT SELECT ON cube.finance TO japan WHERE entity <@ 'Total.APAC.JP'",
        "GRANT SELECT ON cube.finance TO dee WHERE entity <@ 'Total.EMEA.NORDICS'",
        "GRANT SELECT ON cube.finance TO dee WHERE account <@ 'PL.OPEX.PERS'",
        // Cell changes to read back through the ledger: one inside EMEA, one outside.
        "UPDATE cube.finance SET amount = amount + 1 WHERE entity IN ('DE', 'US_EAST') AND time = '2025_01' AND account = '4000'",
    ] {
        boss.simple_query(statement)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    let ana = connect_as(&server, "ana", "ana pw", "").await.unwrap();
    let bo = connect_as(&server, "bo", "bo pw", "").await.unwrap();
    let cy = connect_as(&server, "cy", "cy pw", "").await.unwrap();
    let dee = connect_as(&server, "dee", "dee pw", "").await.unwrap();

    // Every way of reading the cube shows ana EMEA's cells only.
    let entities = "SELECT DISTINCT entity FROM cube.finance ORDER BY 1";
    assert_eq!(column(&ana, entities).await, EMEA);
    assert_eq!(column(&bo, entities).await, NORDICS);
    assert_eq!(column(&cy, entities).await, APAC_AND_CANADA);
    // dee: the Nordics' personnel costs only.
    assert_eq!(column(&dee, entities).await, NORDICS);
    let accounts = "SELECT DISTINCT account FROM cube.finance ORDER BY 1";
    assert_eq!(column(&dee, accounts).await, ["6000", "6010", "6020"]);
    // Through a role, dee also reads Japan, every account of it: grants add up across roles.
    boss.simple_query("GRANT japan TO dee").await.unwrap();
    assert_eq!(column(&dee, entities).await, ["JP", "NO", "SE"]);
    let japan_accounts = "SELECT count(DISTINCT account) FROM cube.finance WHERE entity = 'JP'";
    assert_eq!(
        value(&dee, japan_accounts).await,
        value(&boss, japan_accounts).await
    );
    let emea_total = value(
        &boss,
        "SELECT sum(amount) FROM cube.finance WHERE entity IN ('DE', 'FR', 'NO', 'SE', 'UK')",
    )
    .await;
    for sql in [
        "SELECT sum(amount) FROM cube.finance",
        "WITH c AS (SELECT * FROM cube.finance) SELECT sum(amount) FROM c",
        "SELECT sum(amount) FROM (SELECT * FROM cube.finance) s",
        "SELECT sum(f.amount) FROM cube.finance f JOIN dim.entity e ON f.entity = e.code",
        "SELECT (SELECT sum(amount) FROM cube.finance)",
    ] {
        assert_eq!(value(&ana, sql).await, emea_total, "{sql}");
    }
    for sql in [
        "SELECT count(*) FROM cube.finance WHERE entity = 'US_EAST'",
        "SELECT count(*) FROM cube.finance WHERE entity IN (SELECT 'JP')",
        "SELECT count(*) FROM cube.finance f WHERE EXISTS (SELECT 1 FROM cube.finance g WHERE g.entity = 'JP')",
        "SELECT count(*) FROM mdf_at('cube.finance', 1) WHERE entity = 'US_EAST'",
        "SELECT count(*) FROM audit.finance WHERE entity = 'US_EAST'",
        "SELECT count(*) FROM dim.entity WHERE code IN ('US', 'JP', 'Total')",
    ] {
        assert_eq!(value(&ana, sql).await, "0", "{sql}");
    }
    assert_eq!(
        column(
            &ana,
            "SELECT DISTINCT entity FROM mdf_at('cube.finance', 1) ORDER BY 1"
        )
        .await,
        EMEA
    );
    assert_eq!(
        column(&ana, "SELECT DISTINCT entity FROM audit.finance ORDER BY 1").await,
        ["DE"]
    );
    // A view an administrator made reads as its reader may.
    boss.simple_query("CREATE VIEW public.all_cells AS SELECT * FROM cube.finance")
        .await
        .unwrap();
    assert_eq!(
        column(&ana, "SELECT DISTINCT entity FROM all_cells ORDER BY 1").await,
        EMEA
    );

    // The hot-tile cache: ana warms the grid, bo and cy get their own numbers.
    let grid = "SELECT entity, sum(amount) FROM cube.finance GROUP BY entity ORDER BY entity";
    let hits = "SELECT hits FROM system.cache WHERE tier = 'tile.memory'";
    let ana_grid = column(&ana, grid).await;
    let before: i64 = value(&boss, hits).await.parse().unwrap();
    // Another text of the same query, planned afresh: the same text again would replay the
    // connection's kept answer without a lookup.
    assert_eq!(column(&ana, &format!("{grid} -- again")).await, ana_grid);
    let after: i64 = value(&boss, hits).await.parse().unwrap();
    assert_eq!(after, before + 1, "ana's second run is a tile hit");
    assert_eq!(column(&bo, grid).await, NORDICS);
    assert_eq!(column(&cy, grid).await, APAC_AND_CANADA);
    assert_eq!(column(&ana, grid).await, EMEA);

    // What they may not read at all.
    assert_eq!(
        failure(&cy, "SELECT count(*) FROM dim.entity").await,
        "42501"
    );
    assert_eq!(
        failure(&ana, "SELECT count(*) FROM audit.ledger").await,
        "42501"
    );
    assert_eq!(
        failure(&ana, "SELECT * FROM mdf_history('cube.finance')").await,
        "42501"
    );
    assert_eq!(
        failure(&ana, "CREATE TABLE public.mine AS SELECT 1").await,
        "42501"
    );
    assert_eq!(
        failure(&ana, "GRANT SELECT ON cube.finance TO ana").await,
        "42501"
    );
    assert_eq!(
        failure(&ana, "SELECT * FROM mdf_compact('cube.finance')").await,
        "42501"
    );
    // Writing files or tables by the side doors of EXPLAIN ANALYZE and SELECT INTO.
    let file = tempfile::tempdir().unwrap().path().join("stolen.csv");
    let copy = format!(
        "EXPLAIN ANALYZE COPY (SELECT * FROM cube.finance) TO '{}'",
        file.display()
    );
    assert_eq!(failure(&ana, &copy).await, "42501");
    assert!(!file.exists());
    assert_eq!(
        failure(&ana, "SELECT * INTO public.stolen FROM cube.finance").await,
        "42501"
    );
    // DataFusion's own information_schema would list every table.
    assert_eq!(
        failure(&ana, "SET datafusion.catalog.information_schema = true").await,
        "42501"
    );
    // The ledger's statement texts may name cells outside a scope: a scoped reader sees none.
    let statements = "SELECT count(statement) FROM audit.finance";
    assert_eq!(value(&ana, statements).await, "0");
    assert_ne!(value(&boss, statements).await, "0");

    // Writes: inside NORDICS they commit; reaching outside, they are refused whole.
    let count = "SELECT count(*) FROM cube.finance";
    let cells = value(&boss, count).await;
    let insert =
        |entity: &str| format!("('Budget', '2025_01', '{entity}', '4000', 'P0001', 'EUR', 5)");
    ana.simple_query(&format!("INSERT INTO cube.finance VALUES {}", insert("SE")))
        .await
        .unwrap();
    let refused = format!(
        "INSERT INTO cube.finance VALUES {}, {}",
        insert("NO"),
        insert("DE")
    );
    assert_eq!(failure(&ana, &refused).await, "42501");
    assert_eq!(
        failure(
            &bo,
            &format!("INSERT INTO cube.finance VALUES {}", insert("SE"))
        )
        .await,
        "42501"
    );
    // The demo's Swedish cells are in SEK: the only one in EUR is the one just written.
    let update = "UPDATE cube.finance SET amount = 7 WHERE entity = 'SE' AND currency = 'EUR'";
    ana.simple_query(update).await.unwrap();
    assert_eq!(
        failure(
            &ana,
            "UPDATE cube.finance SET amount = 7 WHERE entity = 'DE' AND time = '2025_01'"
        )
        .await,
        "42501"
    );
    assert_eq!(
        failure(
            &ana,
            "DELETE FROM cube.finance WHERE entity = 'SE' AND currency = 'EUR'"
        )
        .await,
        "42501"
    );
    let expected: i64 = cells.parse::<i64>().unwrap() + 1;
    assert_eq!(value(&boss, count).await, expected.to_string());
    assert_eq!(
        value(
            &boss,
            "SELECT amount FROM cube.finance WHERE entity = 'SE' AND currency = 'EUR'"
        )
        .await,
        "7.00"
    );

    // Members: added and removed inside the scope only.
    let members = "SELECT count(*) FROM dim.entity";
    let member_count = value(&boss, members).await;
    ana.simple_query(
        "INSERT INTO dim.entity (code, name, parent) VALUES ('DK', 'Denmark', 'NORDICS')",
    )
    .await
    .unwrap();
    assert_eq!(
        failure(
            &ana,
            "INSERT INTO dim.entity (code, name, parent) VALUES ('KR', 'Korea', 'APAC')"
        )
        .await,
        "42501"
    );
    assert_eq!(
        failure(&ana, "DELETE FROM dim.entity WHERE code = 'FR'").await,
        "42501"
    );
    ana.simple_query("DELETE FROM dim.entity WHERE code = 'DK'")
        .await
        .unwrap();
    assert_eq!(value(&boss, members).await, member_count);

    // The catalogs list only what each user may see.
    let listed = "SELECT table_schema || '.' || table_name FROM information_schema.tables \
                  WHERE table_schema IN ('cube', 'dim', 'audit') ORDER BY 1";
    let ana_tables = ["audit.finance", "cube.finance", "dim.entity"];
    assert_eq!(column(&ana, listed).await, ana_tables);
    assert_eq!(column(&cy, listed).await, ["audit.finance", "cube.finance"]);
    assert!(
        column(&boss, listed)
            .await
            .contains(&"audit.ledger".to_owned())
    );
    let classes = "SELECT n.nspname || '.' || c.relname FROM pg_class c \
                   JOIN pg_namespace n ON n.oid = c.relnamespace \
                   WHERE n.nspname IN ('cube', 'dim', 'audit') ORDER BY 1";
    assert_eq!(column(&ana, classes).await, ana_tables);
    for sql in [
        "SELECT DISTINCT table_name FROM information_schema.columns WHERE table_schema = 'dim'",
        "SELECT DISTINCT c.relname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'dim'",
        "SELECT tablename FROM pg_tables WHERE schemaname = 'dim'",
    ] {
        assert_eq!(column(&ana, sql).await, ["entity"], "{sql}");
        assert!(column(&boss, sql).await.len() > 1, "{sql}");
    }

    // Another user's query text shows only to administrators, as in PostgreSQL.
    let texts = "SELECT usename, query FROM pg_stat_activity ORDER BY usename";
    for (user, query) in client_rows(&ana, texts).await {
        if user != "ana" {
            assert_eq!(query, "<insufficient privilege>", "{user}");
        }
    }
    let by_boss = client_rows(&boss, texts).await;
    assert!(
        by_boss
            .iter()
            .any(|(user, query)| user == "ana" && query == texts)
    );

    // DISCARD ALL resets settings, not who the session is.
    ana.simple_query("DISCARD ALL").await.unwrap();
    assert_eq!(column(&ana, entities).await, EMEA);
    assert_eq!(value(&ana, "SELECT current_user").await, "ana");

    // Revoking takes effect at once.
    boss.simple_query("REVOKE SELECT ON cube.finance FROM bo")
        .await
        .unwrap();
    assert_eq!(failure(&bo, entities).await, "42501");
    assert!(column(&bo, listed).await.is_empty());
    // A user dropped while connected keeps no privilege (it does not become an unknown
    // user, which only trust authentication lets in).
    boss.simple_query("DROP USER bo").await.unwrap();
    assert_eq!(failure(&bo, entities).await, "42501");
    assert_eq!(failure(&bo, "CREATE USER mallory").await, "42501");
}

/// A server binary run with passwords (the administrator's from the environment, a new user's
/// by SQL) and debug logs: neither password appears in what it logged.
#[tokio::test]
async fn passwords_never_reach_the_logs() {
    let data_dir = tempfile::tempdir().unwrap();
    // Debug logs are many: into a file, which never blocks the server as a full pipe would.
    let log_dir = tempfile::tempdir().unwrap();
    let log_path = log_dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let port = crate::crash::free_port();
    let mut server = serve_command(data_dir.path(), port)
        .args(["--auth", "scram-sha-256"])
        .env("QUANTATOM_ADMIN_PASSWORD", "admin-Secret-1")
        .env("QUANTATOM_LOG", "debug")
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("the server binary starts");
    let config = |user: &str, password: &str| {
        format!("host=127.0.0.1 port={port} user={user} password={password} dbname=quantatom")
    };
    let admin = connect_when_up(&config("quantatom", "admin-Secret-1")).await;
    admin
        .simple_query("CREATE USER ana PASSWORD 'user-Secret-2'")
        .await
        .unwrap();
    let (ana, connection) = tokio_postgres::connect(&config("ana", "user-Secret-2"), NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    assert_eq!(value(&ana, "SELECT current_user").await, "ana");
    let wrong = tokio_postgres::connect(&config("ana", "user-Secret-3"), NoTls).await;
    assert_eq!(code(&wrong.err().unwrap()), "28P01");
    drop((admin, ana));
    server.start_kill().unwrap();
    server.wait().await.unwrap();
    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        logs.contains("login failed"),
        "the failed login is logged: {logs}"
    );
    for secret in ["admin-Secret-1", "user-Secret-2", "user-Secret-3"] {
        assert!(!logs.contains(secret), "{secret} is in the logs");
    }
}
