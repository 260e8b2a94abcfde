//! Catalog views that BI tools read on connect and that depend on the server itself:
//! `pg_stat_activity`, unqualified catalog names, `information_schema`'s constraint views,
//! array columns of `pg_index`/`pg_constraint`, and parameters of rewritten catalog queries.

use tokio_postgres::NoTls;

use crate::support::{TestServer, value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_stat_activity_shows_each_connection_and_what_it_runs() {
    let server = TestServer::start().await;
    let (watched, connection) = tokio_postgres::connect(
        &format!("{} application_name=grid_app", server.connection_string()),
        NoTls,
    )
    .await
    .expect("connects");
    let watched_task = tokio::spawn(connection);
    let watched_pid = value(&watched, "SELECT pg_backend_pid()").await;
    watched
        .simple_query("SELECT count(*) FROM dim.account")
        .await
        .unwrap();

    let observer = server.client().await;
    let own = "SELECT state, query FROM pg_stat_activity WHERE pid = pg_backend_pid()";
    let rows = observer.simple_query(own).await.unwrap();
    let row = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(row) => Some(row),
        _ => None,
    });
    let row = row.expect("the observer sees itself");
    assert_eq!((row.get(0), row.get(1)), (Some("active"), Some(own)));

    let other = format!(
        "SELECT state || '|' || query || '|' || application_name || '|' || usename || '|' || datname || '|' || \
         (backend_start <= query_start)::text FROM pg_catalog.pg_stat_activity WHERE pid = {watched_pid}"
    );
    assert_eq!(
        value(&observer, &other).await,
        "idle|SELECT count(*) FROM dim.account|grid_app|tester|quantatom|true"
    );
    assert_eq!(
        value(&observer, "SELECT count(*) FROM pg_stat_activity").await,
        "2"
    );

    // Inside a transaction block the connection waits "idle in transaction", "(aborted)" after
    // an error, and is "idle" again after ROLLBACK.
    let state = format!("SELECT state FROM pg_stat_activity WHERE pid = {watched_pid}");
    watched.batch_execute("BEGIN").await.unwrap();
    assert_eq!(value(&observer, &state).await, "idle in transaction");
    watched
        .batch_execute("SELECT * FROM cube.no_such_cube")
        .await
        .unwrap_err();
    assert_eq!(
        value(&observer, &state).await,
        "idle in transaction (aborted)"
    );
    watched.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(value(&observer, &state).await, "idle");

    drop(watched);
    watched_task.await.unwrap().unwrap();
    // The server notices the closed socket on its next read; give it a moment.
    for _ in 0..50 {
        if value(&observer, "SELECT count(*) FROM pg_stat_activity").await == "1" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        value(&observer, "SELECT count(*) FROM pg_stat_activity").await,
        "1"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constraint_views_exist_with_postgres_columns_and_user_tables_stay_in_public() {
    let server = TestServer::start().await;
    let client = server.client().await;
    // Metabase's and DBeaver's key discovery: no constraints are declared.
    let keys = "SELECT count(*) FROM information_schema.table_constraints tc \
                JOIN information_schema.key_column_usage kcu ON tc.constraint_name = kcu.constraint_name \
                WHERE tc.constraint_type = 'PRIMARY KEY'";
    assert_eq!(value(&client, keys).await, "0");
    assert_eq!(
        value(
            &client,
            "SELECT count(*) FROM information_schema.referential_constraints"
        )
        .await,
        "0"
    );
    // DataFusion's own views are still there, and list the cube.
    let cube = "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'cube' AND table_name = 'finance'";
    assert_eq!(value(&client, cube).await, "1");
    // A user table in public is found unqualified; catalog views do not show up as public tables.
    client
        .batch_execute("CREATE TABLE notes (id INT, body TEXT)")
        .await
        .unwrap();
    client
        .batch_execute("INSERT INTO notes VALUES (1, 'plan')")
        .await
        .unwrap();
    assert_eq!(value(&client, "SELECT body FROM notes").await, "plan");
    let public = "SELECT string_agg(table_name, ',') FROM information_schema.tables WHERE table_schema = 'public'";
    assert_eq!(value(&client, public).await, "notes");
    server.stop().await;
}

/// A `pg_catalog` table named without its schema, cast to `regclass`, is found as PostgreSQL
/// finds it (`pg_catalog` is searched first): tools match `pg_description.classoid` with
/// `'pg_class'::regclass`, which failed with a non-nullable column holding a null.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_tables_cast_to_regclass_are_found_without_their_schema() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let same = "SELECT 'pg_class'::regclass = 'pg_catalog.pg_class'::regclass, \
                'pg_type'::regclass::oid = (SELECT c.oid FROM pg_catalog.pg_class c \
                JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                WHERE n.nspname = 'pg_catalog' AND c.relname = 'pg_type')";
    assert_eq!(value(&client, same).await, "t");
    let row = client
        .query_one(same, &[])
        .await
        .expect("extended protocol");
    assert!(row.get::<_, bool>(0) && row.get::<_, bool>(1));
    let described = "SELECT count(*) FROM pg_catalog.pg_description d \
                     WHERE d.classoid = 'pg_class'::regclass AND d.objsubid = 0";
    assert_eq!(value(&client, described).await, "0");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn array_subqueries_answer_through_both_protocols() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let columns = "SELECT array_to_string(ARRAY(SELECT a.attname FROM pg_catalog.pg_attribute a \
                   WHERE a.attrelid = c.oid AND a.attnum > 0 ORDER BY a.attnum), ',') \
                   FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                   WHERE c.relname = 'finance' AND n.nspname = 'cube'";
    let expected = "version,time,entity,account,product,currency,amount";
    assert_eq!(value(&client, columns).await, expected);
    let row = client
        .query_one(columns, &[])
        .await
        .expect("extended protocol plans it too");
    assert_eq!(row.get::<_, String>(0), expected);
    // Over no rows: the empty array, as in PostgreSQL (not NULL).
    let none = "SELECT cardinality(ARRAY(SELECT c.relname FROM pg_catalog.pg_class c \
                WHERE c.relname = 'no_such_table'))::text";
    assert_eq!(value(&client, none).await, "0");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_vectors_expand_as_arrays() {
    let server = TestServer::start().await;
    let client = server.client().await;
    // pg_index.indkey is an array: unnest, generate_subscripts and _pg_expandarray agree on
    // every key column's position (checked over PostgreSQL's own two-column catalog indexes).
    let unnested = "SELECT string_agg(attnum::text || '@' || ord::text, ',' ORDER BY ord) FROM \
                    (SELECT unnest(indkey) AS attnum, generate_subscripts(indkey, 1) AS ord \
                     FROM pg_catalog.pg_index WHERE cardinality(indkey) = 2 LIMIT 2) k";
    let expanded = "SELECT string_agg(k.x::text || '@' || k.n::text, ',' ORDER BY k.n) FROM \
                    (SELECT (information_schema._pg_expandarray(i.indkey)).x AS x, \
                            (information_schema._pg_expandarray(i.indkey)).n AS n \
                     FROM pg_catalog.pg_index i WHERE cardinality(i.indkey) = 2 LIMIT 2) k";
    assert_eq!(
        value(&client, unnested).await,
        value(&client, expanded).await
    );
    assert_eq!(value(&client, unnested).await.split(',').count(), 2);
    // A record's field through `(composite).field`, in a filter as pgJDBC writes it.
    let keys = "SELECT count(*) FROM (SELECT information_schema._pg_expandarray(indkey) AS keys \
                FROM pg_catalog.pg_index) r WHERE (r.keys).n = 1";
    assert_ne!(value(&client, keys).await, "0");
    assert_eq!(
        value(
            &client,
            "SELECT count(*) FROM pg_catalog.pg_class WHERE reloptions IS NULL AND relacl IS NULL"
        )
        .await,
        value(&client, "SELECT count(*) FROM pg_catalog.pg_class").await
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_keep_their_numbers_when_a_catalog_rewrite_drops_one() {
    let server = TestServer::start().await;
    let client = server.client().await;
    // The compatibility rewrite turns the correlated subquery holding $1 into NULL; $2 must
    // still be bound to the second value, as SQLAlchemy's column reflection relies on.
    let sql = "SELECT (SELECT max(s.seqstart) FROM pg_catalog.pg_sequence s \
               WHERE a.attidentity != $1::varchar AND s.seqrelid = a.attrelid), a.attname \
               FROM pg_catalog.pg_attribute a WHERE a.attname = $2::varchar LIMIT 1";
    let statement = client.prepare(sql).await.expect("prepares");
    assert_eq!(statement.params().len(), 2);
    let row = client
        .query_one(&statement, &[&"", &"amount"])
        .await
        .expect("binds both");
    assert_eq!(row.get::<_, String>(1), "amount");
    server.stop().await;
}
