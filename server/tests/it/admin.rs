//! The admin HTTP listener over a real server: health, readiness and Prometheus metrics that
//! move with what clients do.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quantatom_engine::storage::StorageConfig;
use quantatom_engine::tiles::RedisSettings;
use quantatom_engine::{CacheConfig, Engine, EngineConfig};
use quantatom_server::Server;
use quantatom_server::admin::AdminListener;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_postgres::NoTls;

use crate::support::{demo_engine, rows, value};

/// The status line and body `GET path` answers.
async fn get(address: SocketAddr, path: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

/// An engine's wire server and admin listener, running until [`Serving::stop`].
struct Serving {
    wire: SocketAddr,
    http: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Serving {
    async fn start(engine: &Engine) -> Self {
        Self::start_with(engine, |server| server).await
    }

    /// Serving with the server as `configure` makes it.
    async fn start_with(engine: &Engine, configure: impl FnOnce(Server) -> Server) -> Self {
        let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let server = configure(Server::bind(engine, loopback).await.unwrap());
        let admin = AdminListener::bind(loopback, engine, server.observed())
            .await
            .unwrap();
        let (wire, http) = (server.local_addr().unwrap(), admin.local_addr().unwrap());
        let (stop, stopping) = watch::channel(false);
        let until = |mut stopping: watch::Receiver<bool>| async move {
            let _ = stopping.wait_for(|stopped| *stopped).await;
        };
        let server = server.run_until(until(stopping.clone()));
        let tasks = vec![
            tokio::spawn(async move { server.await.unwrap() }),
            tokio::spawn(admin.run_until(until(stopping))),
        ];
        Self {
            wire,
            http,
            stop,
            tasks,
        }
    }

    /// A client of the wire server, its connection driven in the background.
    async fn client(&self) -> tokio_postgres::Client {
        let config = format!(
            "host=127.0.0.1 port={} user=tester dbname=quantatom",
            self.wire.port()
        );
        let (client, connection) = tokio_postgres::connect(&config, NoTls).await.unwrap();
        tokio::spawn(connection);
        client
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            task.await.unwrap();
        }
    }
}

/// The value of the metric line that starts with `series`.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics_follow_the_server() {
    let data_dir = tempfile::tempdir().unwrap();
    let engine = demo_engine(data_dir.path()).await;
    let serving = Serving::start(&engine).await;
    let http = serving.http;
    let engine = Arc::new(engine);

    assert_eq!(
        get(http, "/healthz").await,
        ("HTTP/1.1 200 OK".into(), "ok\n".into())
    );
    let (status, body) = get(http, "/readyz").await;
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    assert_eq!(body, "object_store: ok\nmetadata: ok\n");
    assert!(get(http, "/nothing").await.0.contains("404"));

    let before = get(http, "/metrics").await.1;
    let client = serving.client().await;
    let grid = "SELECT entity, sum(amount) FROM cube.finance GROUP BY entity";
    let mut grid_rows = 0;
    // Each run another text of the same query: a connection replays its kept answer to a text
    // it ran before instead of looking the tile up.
    for run in 0..3 {
        grid_rows += rows(&client, &format!("{grid} -- run {run}")).await.len();
    }
    assert!(client.simple_query("SELECT * FROM nowhere").await.is_err());
    assert_eq!(value(&client, "SELECT 1").await, "1");
    let after = get(http, "/metrics").await.1;
    let ok = "quantatom_queries_total{outcome=\"ok\"}";
    let error = "quantatom_queries_total{outcome=\"error\"}";
    assert_eq!(metric(&after, ok) - metric(&before, ok), 4.0);
    assert_eq!(metric(&after, error) - metric(&before, error), 1.0);
    assert_eq!(metric(&after, "quantatom_connections"), 1.0);
    let count = "quantatom_query_duration_seconds_count";
    assert_eq!(metric(&after, count) - metric(&before, count), 5.0);
    // The demo was written through the object store; the grid's repeats were tile hits.
    let puts = "quantatom_object_store_requests_total{operation=\"put\"}";
    assert!(metric(&after, puts) > 0.0, "{after}");
    let hits = "quantatom_cache_hits_total{tier=\"tile.memory\"}";
    assert!(
        metric(&after, hits) - metric(&before, hits) >= 2.0,
        "{after}"
    );
    let returned = "quantatom_rows_returned_total";
    let sent = metric(&after, returned) - metric(&before, returned);
    assert_eq!(sent, (grid_rows + 1) as f64, "{after}");
    let bytes = "quantatom_bytes_returned_total";
    assert!(metric(&after, bytes) - metric(&before, bytes) >= sent * 2.0);

    // Commits, the ledger entries they append, and a commit refused by a conflict.
    let cell = "version = 'Budget' AND time = '2025_01' AND entity = 'DE' AND account = '4000' AND product = 'P0001' AND currency = 'EUR'";
    client
        .batch_execute(&format!("UPDATE cube.finance SET amount = 12 WHERE {cell}"))
        .await
        .unwrap();
    let other = serving.client().await;
    client
        .batch_execute(&format!(
            "BEGIN; UPDATE cube.finance SET amount = amount + 1 WHERE {cell}"
        ))
        .await
        .unwrap();
    other
        .batch_execute(&format!("UPDATE cube.finance SET amount = 20 WHERE {cell}"))
        .await
        .unwrap();
    let conflict = client.batch_execute("COMMIT").await.unwrap_err();
    assert_eq!(conflict.code().unwrap().code(), "40001", "{conflict}");
    let written = get(http, "/metrics").await.1;
    let delta = |series: &str| metric(&written, series) - metric(&after, series);
    assert_eq!(delta("quantatom_commits_total"), 2.0, "{written}");
    assert_eq!(delta("quantatom_commit_conflicts_total"), 1.0, "{written}");
    assert_eq!(delta("quantatom_ledger_entries_total"), 2.0, "{written}");
    assert_eq!(delta("quantatom_ledger_commits_total"), 2.0, "{written}");
    drop(other);

    drop(client);
    serving.stop().await;
    drop(engine);
}

/// `/readyz` with the tile cache shared through a real `redis-server`: ready while it runs;
/// once it is gone, 503 naming the cache, unless the probe excludes it.
/// Runs `SELECT 0`, `SELECT 1`, ... (`count` statements) one after another, each answered
/// with its number.
async fn answer_in_turn(client: &tokio_postgres::Client, count: u32) {
    for run in 0..count {
        assert_eq!(
            value(client, &format!("SELECT {run}")).await,
            run.to_string()
        );
    }
}

/// A connection polls for its client's next message while the client answers within the idle
/// poll's budget, gives up and sleeps after a longer wait, and polls again once the client is
/// quick again; `/metrics` counts each poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_poll_for_quick_clients_and_sleep_for_slow_ones() {
    let data_dir = tempfile::tempdir().unwrap();
    let engine = demo_engine(data_dir.path()).await;
    // Far longer than this process's client takes between two statements, far shorter than
    // the pause below.
    let budget = Duration::from_millis(200);
    let serving = Serving::start_with(&engine, |server| server.with_idle_poll(budget)).await;
    let http = serving.http;
    let client = serving.client().await;
    let caught = "quantatom_idle_polls_total{outcome=\"caught\"}";
    let missed = "quantatom_idle_polls_total{outcome=\"missed\"}";
    let polled = "quantatom_idle_poll_seconds_total";

    // The first statement after the start-up wakes the connection from sleep; it came
    // quickly, so the connection polls for each of the next four, and catches them.
    answer_in_turn(&client, 5).await;
    let quick = get(http, "/metrics").await.1;
    assert_eq!(metric(&quick, caught), 4.0, "{quick}");
    assert_eq!(metric(&quick, missed), 0.0, "{quick}");

    // A slow client: the poll gives up after the budget and the connection sleeps; the next
    // statement finds it asleep; the one after that, the client being quick again, is caught.
    tokio::time::sleep(budget * 2).await;
    answer_in_turn(&client, 3).await;
    let after = get(http, "/metrics").await.1;
    assert_eq!(metric(&after, missed), 1.0, "{after}");
    assert_eq!(
        metric(&after, caught) - metric(&quick, caught),
        1.0,
        "{after}"
    );
    let spent = metric(&after, polled) - metric(&quick, polled);
    assert!(spent >= budget.as_secs_f64() * 0.75, "{after}");
    serving.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_names_the_cache_when_its_store_is_gone() {
    let port = crate::crash::free_port();
    let mut redis = tokio::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server starts (./scripts/test installs it)");
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let data_dir = tempfile::tempdir().unwrap();
    let mut caches = CacheConfig::default();
    caches.tiles.redis = Some(RedisSettings {
        url: format!("redis://127.0.0.1:{port}"),
        timeout: std::time::Duration::from_millis(500),
    });
    let engine = Engine::open(&EngineConfig {
        storage: StorageConfig::Local(data_dir.path().to_owned()),
        demo_cells: None,
        ledger: true,
        metadata: Default::default(),
        caches,
        compaction: Default::default(),
    })
    .await
    .unwrap();
    let serving = Serving::start(&engine).await;
    let http = serving.http;

    let (status, body) = get(http, "/readyz").await;
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    assert_eq!(body, "object_store: ok\nmetadata: ok\ncache: ok\n");

    redis.kill().await.unwrap();
    let (status, body) = get(http, "/readyz").await;
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable", "{body}");
    assert!(
        body.starts_with("object_store: ok\nmetadata: ok\ncache: not ready: redis://127.0.0.1:"),
        "{body}"
    );
    let (status, body) = get(http, "/readyz?exclude=cache").await;
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    assert!(body.contains("cache: not ready (excluded): "), "{body}");
    serving.stop().await;
}
