//! Logins and scoped grants with the users and grants kept in PostgreSQL (the server tests
//! cover them in depth with the embedded store): SCRAM against verifiers PostgreSQL stores,
//! and a scope whose `ltree` path PostgreSQL keeps.

use quantatom_engine::metadata::{AccessChange, Role, ScramVerifier, change_access};
use quantatom_server::Server;
use quantatom_server::wire::{AuthMethod, Security};
use quantatom_sqllogictests::{DemoEngine, postgres_test_metadata};
use tokio_postgres::NoTls;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_and_scoped_grants_with_postgres_metadata() {
    let demo = DemoEngine::start(20_000, postgres_test_metadata().await)
        .await
        .expect("demo engine starts");
    let admin = Role {
        name: "boss".into(),
        can_login: true,
        is_admin: true,
        password_verifier: Some(ScramVerifier::hash("boss pw")),
    };
    change_access(
        demo.engine.metadata().as_ref(),
        vec![AccessChange::CreateRole(admin)],
    )
    .await
    .expect("the administrator is created");
    let security = Security {
        auth: AuthMethod::ScramSha256,
        ..Security::default()
    };
    let server = Server::bind_secured(&demo.engine, "127.0.0.1:0".parse().unwrap(), security)
        .await
        .expect("server binds");
    let port = server.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run_until(async move {
        let _ = stopped.await;
    }));
    let connect = |user: &'static str, password: &'static str| async move {
        let config = format!(
            "host=127.0.0.1 port={port} user={user} password='{password}' dbname=quantatom"
        );
        let (client, connection) = tokio_postgres::connect(&config, NoTls).await?;
        tokio::spawn(connection);
        Ok::<_, tokio_postgres::Error>(client)
    };
    let boss = connect("boss", "boss pw")
        .await
        .expect("the administrator logs in");
    for statement in [
        "CREATE USER ana PASSWORD 'ana pw'",
        "GRANT SELECT ON cube.finance TO ana WHERE entity <@ 'Total.APAC'",
    ] {
        boss.simple_query(statement)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    let wrong = connect("ana", "not it").await.unwrap_err();
    assert_eq!(wrong.as_db_error().map(|e| e.code().code()), Some("28P01"));
    let ana = connect("ana", "ana pw").await.expect("ana logs in");
    let entities: Vec<String> = ana
        .query("SELECT DISTINCT entity FROM cube.finance ORDER BY 1", &[])
        .await
        .expect("ana reads her scope")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(entities, ["AU", "JP", "SG"]);
    let denied = ana
        .simple_query("SELECT count(*) FROM dim.entity")
        .await
        .unwrap_err();
    assert_eq!(denied.as_db_error().map(|e| e.code().code()), Some("42501"));
    drop((boss, ana));
    let _ = stop.send(());
    serving.await.unwrap().unwrap();
}
