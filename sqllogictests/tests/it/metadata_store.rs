//! The metadata stores side by side: the same answers and errors from the embedded store and
//! from PostgreSQL (the test server `scripts/test` starts), PostgreSQL's schema migrations,
//! and an outage of PostgreSQL seen through a proxy that can be cut and restored.

use std::collections::BTreeMap;
use std::sync::Arc;

use quantatom_engine::mdf::StatementRef;
use quantatom_engine::metadata::{
    AccessChange, ChangeAuthor, Dimension, Grant, MemberChange, MemberSpec, Membership,
    MetadataError, MetadataStore, Privilege, Role, SubtreeScope, apply_access_changes,
    apply_member_changes, change_access, member_differences,
};
use quantatom_engine::storage::StorageConfig;
use quantatom_engine::{Engine, EngineConfig, MetadataConfig};
use quantatom_sqllogictests::{InProcessDb, postgres_test_metadata};
use quantatom_udfs::MemberPath;
use sqllogictest::{AsyncDB, DBOutput};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The configuration of an engine with no demo over a fresh folder and `metadata`, which can
/// be opened again; the folder lives as long as the second value.
fn config(metadata: MetadataConfig) -> (EngineConfig, tempfile::TempDir) {
    let data_dir = tempfile::tempdir().unwrap();
    let config = EngineConfig {
        storage: StorageConfig::Local(data_dir.path().to_owned()),
        demo_cells: None,
        ledger: true,
        metadata,
        caches: Default::default(),
        compaction: Default::default(),
    };
    (config, data_dir)
}

/// An engine with no demo over a fresh folder and `metadata`; the folder lives as long as it.
async fn open(metadata: &MetadataConfig) -> (Engine, tempfile::TempDir) {
    let (config, data_dir) = config(metadata.clone());
    let engine = Engine::open(&config).await.expect("the engine opens");
    (engine, data_dir)
}

fn member(code: &str, parent: Option<&str>) -> MemberSpec {
    MemberSpec {
        code: code.into(),
        name: format!("{code}'s \"name\" \\ with quotes"),
        parent: parent.map(Into::into),
        attributes: BTreeMap::from([("currency".to_owned(), "EUR".to_owned())]),
    }
}

fn region() -> Dimension {
    Dimension::new("region", "Sales regions")
}

/// What a store answers to the same calls, written out to compare stores.
async fn exercise(store: &Arc<dyn MetadataStore>) -> Vec<String> {
    let members = vec![
        member("World", None),
        member("EU", Some("World")),
        member("DE_N", Some("EU")),
        member("O'Brien", Some("EU")),
    ];
    let mut seen = Vec::new();
    let bad_label = store.create_dimension(region(), members.clone()).await;
    seen.push(format!("{bad_label:?}"));
    let members: Vec<_> = members.into_iter().take(3).collect();
    store
        .create_dimension(region(), members.clone())
        .await
        .unwrap();
    let again = store.create_dimension(region(), members).await.unwrap_err();
    seen.push(format!("{again} / {}", again.sqlstate()));
    let missing = store.members("nowhere").await.unwrap_err();
    seen.push(format!("{missing} / {}", missing.sqlstate()));
    let bad_name = Dimension::new("Bad Name", "");
    let bad_name = store.create_dimension(bad_name, vec![]).await.unwrap_err();
    seen.push(format!("{bad_name} / {}", bad_name.sqlstate()));
    // Alternate hierarchies: leaves are members of the dimension; the name says whose.
    let by_size = |leaf: &str| {
        vec![
            member("Big", None),
            member(leaf, Some("Big")),
            member("EU", Some("Big")),
        ]
    };
    let hierarchy = Dimension::alternate_hierarchy("region", "by_size", "Regions by size");
    let stray = store
        .create_dimension(hierarchy.clone(), by_size("Mars"))
        .await;
    seen.push(format!("{stray:?}"));
    let misnamed = Dimension {
        name: "by_size".into(),
        ..hierarchy.clone()
    };
    let misnamed = store.create_dimension(misnamed, by_size("DE_N")).await;
    seen.push(format!("{misnamed:?}"));
    store
        .create_dimension(hierarchy, by_size("DE_N"))
        .await
        .unwrap();
    seen.push(format!(
        "{:?}",
        store.members("region__by_size").await.unwrap()
    ));
    seen.push(format!("{:?}", store.dimensions().await.unwrap()));
    seen.push(format!("{:?}", store.members("region").await.unwrap()));
    seen.push(format!("{:?}", store.dimension_version("region").await));
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_stores_answer_alike() {
    let (embedded, _folder) = open(&MetadataConfig::Embedded).await;
    let (postgres, _other) = open(&postgres_test_metadata().await).await;
    let embedded = exercise(embedded.metadata()).await;
    assert!(
        embedded[0].contains("ltree syntax error"),
        "a quote is not a label character: {}",
        embedded[0]
    );
    assert!(embedded[1].ends_with("42710"), "{}", embedded[1]);
    assert!(
        embedded[4]
            .contains("leaf \\\"Mars\\\" of hierarchy region__by_size is not a member of region"),
        "{}",
        embedded[4]
    );
    assert!(
        embedded[5].contains("is named region__<hierarchy>"),
        "{}",
        embedded[5]
    );
    assert!(embedded[2].ends_with("42704"), "{}", embedded[2]);
    assert!(
        embedded[8].contains("\"EU's \\\"name\\\" \\\\ with quotes\""),
        "{}",
        embedded[8]
    );
    assert_eq!(embedded, exercise(postgres.metadata()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_once_however_often_the_store_opens() {
    let metadata = postgres_test_metadata().await;
    let MetadataConfig::Postgres(settings) = &metadata else {
        unreachable!("a PostgreSQL configuration")
    };
    let opened = futures::future::join_all((0..4).map(|_| open(&metadata))).await;
    drop(opened);
    let (client, connection) = tokio_postgres::connect(&settings.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let rows = client
        .query("SELECT version, name FROM quantatom.schema_migrations", &[])
        .await
        .unwrap();
    let applied: Vec<(i32, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        applied,
        vec![
            (1, "dimensions".to_owned()),
            (2, "member_maintenance".to_owned()),
            (3, "alternate_hierarchies".to_owned()),
            (4, "access".to_owned()),
            (5, "member_history".to_owned())
        ]
    );
}

/// Two changes made from the same version of a dimension: the first to commit wins, the other
/// fails with 40001 and writes nothing; what committed is what a reopened store reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_changes_persist_and_the_first_of_two_commits_wins() {
    for metadata in [MetadataConfig::Embedded, postgres_test_metadata().await] {
        let (config, _data_dir) = config(metadata);
        let engine = Engine::open(&config).await.unwrap();
        let store = engine.metadata();
        let members = vec![
            member("World", None),
            member("EU", Some("World")),
            member("DE_N", Some("EU")),
        ];
        store.create_dimension(region(), members).await.unwrap();
        let version = store.dimension_version("region").await.unwrap();
        let before = store.members("region").await.unwrap();
        let moved = apply_member_changes(
            &before,
            vec![
                MemberChange::Add(member("US", Some("World"))),
                MemberChange::Update {
                    code: "DE_N".into(),
                    values: member("DE_N", Some("World")),
                },
            ],
        )
        .unwrap()
        .members;
        let deleted = apply_member_changes(
            &before,
            vec![MemberChange::Delete {
                code: "DE_N".into(),
            }],
        )
        .unwrap()
        .members;
        let author = ChangeAuthor {
            user: Some("planner".into()),
            statement: Some(StatementRef {
                id: "1".into(),
                text: "UPDATE dim.region ...".into(),
            }),
        };
        let (first, second) = tokio::join!(
            store.commit_members("region", version, moved.clone(), &author),
            store.commit_members("region", version, deleted.clone(), &author),
        );
        let (winner, loser) = match (first, second) {
            (Ok(v), Err(e)) => ((v, moved), e),
            (Err(e), Ok(v)) => ((v, deleted), e),
            other => panic!("exactly one commit must win: {other:?}"),
        };
        assert_eq!(winner.0, version + 1);
        assert_eq!(loser.sqlstate(), "40001", "{loser}");
        drop(engine);
        let reopened = Engine::open(&config).await.unwrap();
        assert_eq!(
            reopened.metadata().members("region").await.unwrap(),
            winner.1
        );
        assert_eq!(
            reopened
                .metadata()
                .dimension_version("region")
                .await
                .unwrap(),
            version + 1
        );
        // The store recorded the winning change, member by member, with its author.
        let history = reopened
            .metadata()
            .member_history("region", version)
            .await
            .unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].version, version + 1);
        assert_eq!(history[0].author, author);
        assert_eq!(history[0].changes, member_differences(&before, &winner.1));
        assert!(!history[0].changes.is_empty());
    }
}

/// Forwards connections from a loopback port to PostgreSQL until aborted.
async fn proxy(listener: TcpListener, target: String) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut links = Links::default();
        while let Ok((mut inbound, _)) = listener.accept().await {
            let target = target.clone();
            links.0.push(tokio::spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            }));
        }
    })
}

/// The connections through a proxy, cut when it stops (as a PostgreSQL outage cuts them).
#[derive(Default)]
struct Links(Vec<JoinHandle<()>>);

impl Drop for Links {
    fn drop(&mut self) {
        self.0.iter().for_each(JoinHandle::abort);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_fails_with_08006_and_the_store_recovers_by_itself() {
    let MetadataConfig::Postgres(mut settings) = postgres_test_metadata().await else {
        unreachable!("a PostgreSQL configuration")
    };
    let url: url::Url = settings.url.parse().unwrap();
    let target = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let mut through_proxy = url.clone();
    through_proxy.set_port(Some(address.port())).unwrap();
    settings.url = through_proxy.to_string();
    settings.timeout = std::time::Duration::from_secs(2);
    let running = proxy(listener, target.clone()).await;
    let (engine, _folder) = open(&MetadataConfig::Postgres(settings)).await;
    let store = engine.metadata();
    store
        .create_dimension(region(), vec![member("World", None)])
        .await
        .unwrap();
    // Several pooled connections, all cut by the outage: none may be handed out after it.
    let reads = || futures::future::join_all((0..4).map(|_| store.members("region")));
    for read in reads().await {
        assert_eq!(read.unwrap().len(), 1);
    }

    running.abort();
    let _ = running.await;
    let down = store.members("region").await.unwrap_err();
    assert!(matches!(down, MetadataError::Unavailable(_)), "{down:?}");
    assert_eq!(down.sqlstate(), "08006");

    let listener = TcpListener::bind(address)
        .await
        .expect("the proxy's port is free again");
    let _restored = proxy(listener, target).await;
    for read in reads().await {
        assert_eq!(read.expect("the store reconnects").len(), 1);
    }
}

/// The rows `sql` returns, each as the suite's in-process runner renders it (cells joined by
/// spaces).
async fn rows(engine: &Engine, sql: &str) -> Vec<String> {
    let mut db = InProcessDb::new(engine.new_session());
    match db.run(sql).await.unwrap() {
        DBOutput::Rows { rows, .. } => rows.iter().map(|row| row.join(" ")).collect(),
        DBOutput::StatementComplete(_) => panic!("{sql} returns no rows"),
        _ => unreachable!("the runner answers rows or a statement count"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_evaluates_member_filters_as_sql_with_bind_parameters() {
    let metadata = postgres_test_metadata().await;
    let (creating, _folder) = open(&metadata).await;
    let members = vec![
        member("World", None),
        member("EU", Some("World")),
        member("DE_N", Some("EU")),
        member("FR", Some("EU")),
        member("US", Some("World")),
    ];
    let store = creating.metadata();
    store.create_dimension(region(), members).await.unwrap();
    // Another engine over the same database, as another replica would be.
    let (engine, _other) = open(&metadata).await;

    let plan = rows(
        &engine,
        "EXPLAIN SELECT code FROM dim.region WHERE path <@ 'World.EU' AND nlevel(path) >= 3 \
         AND code LIKE '%\\_%' AND is_leaf LIMIT 5",
    )
    .await
    .join("\n");
    for pushed in [
        "MemberScanExec: rows=1",
        "WHERE dimension = $1::text AND ",
        "path <@ $",
        "::text::ltree",
        "level >= $",
        r#"code COLLATE "C" LIKE $"#,
        "is_leaf = $",
        "ORDER BY sort_order LIMIT 5",
        r#"$1="region""#,
        r#""World.EU""#,
        r#""%\\_%""#,
        "=3",
        "=true",
    ] {
        assert!(plan.contains(pushed), "{pushed} in:\n{plan}");
    }
    assert!(
        !plan.contains("FilterExec"),
        "nothing is left to filter:\n{plan}"
    );
    // Only the column read is fetched; the others are constants.
    assert!(
        plan.contains("SELECT code, '', NULL::text, '', 0, false, 0, '{}' FROM"),
        "projection pushed down:\n{plan}"
    );
    assert_eq!(
        rows(&engine, "SELECT code FROM dim.region WHERE path <@ 'World.EU' AND nlevel(path) >= 3 AND code LIKE '%\\_%' AND is_leaf LIMIT 5").await,
        vec!["DE_N"]
    );

    // lquery matching runs in PostgreSQL as `~`.
    let matching = "SELECT code FROM dim.region WHERE lquery_match(path, 'World.*{1}.!FR')";
    let plan = rows(&engine, &format!("EXPLAIN {matching}"))
        .await
        .join("\n");
    assert!(plan.contains("path ~ $2::text::lquery"), "{plan}");
    assert!(!plan.contains("FilterExec"), "{plan}");
    assert_eq!(rows(&engine, matching).await, vec!["DE_N"]);

    // Values are bound, never pasted: quotes and backslashes are just characters.
    let quoted = "SELECT code FROM dim.region WHERE name = 'EU''s \"name\" \\ with quotes'";
    assert_eq!(rows(&engine, quoted).await, vec!["EU"]);
    let injection =
        "SELECT code FROM dim.region WHERE code = 'x''; DELETE FROM quantatom.members; --'";
    assert!(rows(&engine, injection).await.is_empty());
    assert_eq!(engine.metadata().members("region").await.unwrap().len(), 5);

    // Comparisons are byte order (DataFusion's), not the database's collation.
    assert_eq!(
        rows(
            &engine,
            "SELECT code FROM dim.region WHERE code > 'E_' ORDER BY code"
        )
        .await,
        vec!["FR", "US", "World"]
    );

    // PostgreSQL 16's labels (`-`, up to 1,000 characters): a PostgreSQL 15 server's ltree
    // refuses them, so that store refuses to keep them (0A000) and leaves filters naming
    // them to DataFusion, which answers them.
    let MetadataConfig::Postgres(settings) = &metadata else {
        unreachable!("a PostgreSQL configuration")
    };
    let (client, connection) = tokio_postgres::connect(&settings.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let version: String = client
        .query_one("SHOW server_version_num", &[])
        .await
        .unwrap()
        .get(0);
    let hyphenated = engine
        .metadata()
        .create_dimension(
            Dimension::new("cost_center", "Cost centers"),
            vec![member("CC-100", None)],
        )
        .await;
    let ancestors = "SELECT code FROM dim.region WHERE path @> 'World.EU.DE-N' ORDER BY code";
    let plan = rows(&engine, &format!("EXPLAIN {ancestors}"))
        .await
        .join("\n");
    if version.parse::<i32>().unwrap() < 160000 {
        assert_eq!(hyphenated.unwrap_err().sqlstate(), "0A000");
        assert!(plan.contains("FilterExec"), "{plan}");
    } else {
        hyphenated.unwrap();
        assert!(!plan.contains("FilterExec"), "{plan}");
    }
    assert_eq!(rows(&engine, ancestors).await, vec!["EU", "World"]);
}

/// Roles, memberships and scoped grants: the same answers and errors from both stores, the
/// first of two changes from one version wins, a reopened store reads what committed, and a
/// member a grant's scope names cannot move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_stores_keep_roles_and_scoped_grants_alike() {
    let mut answers = Vec::new();
    for metadata in [MetadataConfig::Embedded, postgres_test_metadata().await] {
        let (config, _data_dir) = config(metadata);
        let engine = Engine::open(&config).await.unwrap();
        let store = engine.metadata().as_ref();
        let members = vec![
            member("World", None),
            member("EU", Some("World")),
            member("DE_N", Some("EU")),
        ];
        store.create_dimension(region(), members).await.unwrap();
        let role = |name: &str, can_login: bool| Role {
            name: name.into(),
            can_login,
            is_admin: false,
            password_verifier: can_login
                .then(|| "SCRAM-SHA-256$4096:c2FsdA==$a2V5:c2VydmVy".into()),
        };
        let scoped = |path: &str| Grant {
            grantee: "planners".into(),
            privilege: Privilege::Update,
            object: "cube.finance".into(),
            scope: Some(SubtreeScope {
                dimension: "region".into(),
                path: MemberPath::parse(path).unwrap(),
            }),
        };
        let model = change_access(
            store,
            vec![
                AccessChange::CreateRole(role("planners", false)),
                AccessChange::CreateRole(role("ana", true)),
                AccessChange::GrantRole(Membership {
                    role: "planners".into(),
                    member: "ana".into(),
                }),
                AccessChange::Grant(scoped("World.EU")),
                AccessChange::Grant(scoped("World.EU.DE_N")),
            ],
        )
        .await
        .unwrap();
        let unknown_path = change_access(store, vec![AccessChange::Grant(scoped("World.US"))])
            .await
            .unwrap_err();
        answers.push(format!("{unknown_path} / {}", unknown_path.sqlstate()));
        let cycle = change_access(
            store,
            vec![AccessChange::GrantRole(Membership {
                role: "ana".into(),
                member: "planners".into(),
            })],
        )
        .await
        .unwrap_err();
        answers.push(format!("{cycle} / {}", cycle.sqlstate()));

        // Two changes from the same version: one commits, the other is 40001.
        let (read, version) = store.access().await.unwrap();
        assert_eq!(read, model);
        let drop_grant =
            apply_access_changes(&read, vec![AccessChange::Revoke(scoped("World.EU"))]).unwrap();
        let add_role =
            apply_access_changes(&read, vec![AccessChange::CreateRole(role("bo", true))]).unwrap();
        let (first, second) = tokio::join!(
            store.commit_access(version, drop_grant.clone()),
            store.commit_access(version, add_role.clone()),
        );
        let winner = match (first, second) {
            (Ok(_), Err(e)) => {
                assert_eq!(e.sqlstate(), "40001");
                drop_grant
            }
            (Err(e), Ok(_)) => {
                assert_eq!(e.sqlstate(), "40001");
                add_role
            }
            other => panic!("exactly one commit must win: {other:?}"),
        };

        // A grant's scope pins its member: moving it is refused, moving another is not.
        let moved = InProcessDb::new(engine.new_session())
            .run("UPDATE dim.region SET parent = 'World' WHERE code = 'DE_N'")
            .await
            .map(|_| ())
            .map_err(|e| e.to_string());
        answers.push(format!("{moved:?}"));
        drop(engine);
        let reopened = Engine::open(&config).await.unwrap();
        assert_eq!(
            reopened.metadata().access().await.unwrap(),
            (winner, version + 1)
        );
    }
    assert_eq!(answers[..3], answers[3..], "the stores answer differently");
    assert!(
        answers[0].contains("names no member of region"),
        "{}",
        answers[0]
    );
    assert!(answers[1].ends_with("0LP01"), "{}", answers[1]);
    assert!(
        answers[2].contains("scopes a grant of UPDATE on cube.finance to planners"),
        "{}",
        answers[2]
    );
}
