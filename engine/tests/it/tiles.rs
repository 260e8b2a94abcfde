//! The hot-tile cache: a repeated grid query is served from a tile, a commit makes the next
//! read compute afresh (never a stale tile), replicas share tiles through a real
//! `redis-server`, and a Redis that is down or slow never fails a query.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Decimal128Type;
use datafusion::arrow::util::pretty::pretty_format_batches;
use quantatom_engine::storage::StorageConfig;
use quantatom_engine::tiles::{RedisSettings, TileCacheConfig};
use quantatom_engine::{CacheConfig, Engine, EngineConfig};

use crate::support::{cache_counter, run, shown};

/// One entity's Budget by account: the kind of grid planners keep open.
const GRID: &str = "SELECT f.account, sum(f.amount) AS amount FROM cube.finance f \
                    JOIN dim.entity e ON e.code = f.entity \
                    WHERE e.path <@ 'Total.EMEA' AND f.version = 'Budget' AND f.time = '2025_03' \
                    GROUP BY f.account ORDER BY f.account";

async fn engine_over(dir: &Path, tiles: TileCacheConfig) -> Engine {
    Engine::open(&EngineConfig {
        storage: StorageConfig::Local(dir.to_owned()),
        demo_cells: Some(20_000),
        ledger: false,
        metadata: Default::default(),
        caches: CacheConfig {
            tiles,
            ..CacheConfig::default()
        },
        compaction: Default::default(),
    })
    .await
    .expect("engine opens")
}

/// The Budget of DE's account 4000 in 2025_03, by the grid query (through the cache).
async fn grid_cell(engine: &Engine) -> i128 {
    let batches = run(engine, GRID).await;
    let batch = batches.iter().find(|batch| batch.num_rows() > 0).unwrap();
    let accounts = batch.column(0).as_string_view();
    let row = (0..batch.num_rows())
        .find(|&row| accounts.value(row) == "4000")
        .expect("account 4000 is in the grid");
    batch.column(1).as_primitive::<Decimal128Type>().value(row)
}

/// Adds `delta` (in cents) to the Budget of DE's account 4000 in 2025_03 through `engine`.
async fn add_to_cell(engine: &Engine, delta: i64) {
    run(
        engine,
        &format!(
            "UPDATE cube.finance SET amount = amount + {delta} / 100.0 WHERE version = 'Budget' \
             AND time = '2025_03' AND entity = 'DE' AND account = '4000' AND product = 'P0001' \
             AND currency = 'EUR'"
        ),
    )
    .await;
}

/// Sets the Budget of DE's account 4000 in 2025_03 to `value` through `engine` (a blind
/// append).
async fn set_cell(engine: &Engine, value: u32) {
    run(
        engine,
        &format!(
            "INSERT INTO cube.finance VALUES ('Budget', '2025_03', 'DE', '4000', 'P0001', 'EUR', {value})"
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_grid_is_served_from_a_tile_until_a_commit() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_over(dir.path(), TileCacheConfig::default()).await;
    let explain = format!("EXPLAIN {GRID}");
    assert!(
        shown(&engine, &explain).await.contains("TileExec: miss"),
        "a first query computes"
    );
    let cold = shown(&engine, GRID).await;
    let inserts = cache_counter(&engine, "tile.memory", "inserts").await;
    let plan = shown(&engine, &explain).await;
    assert!(
        plan.contains("TileExec: hit"),
        "then a tile serves it:\n{plan}"
    );
    assert!(
        !plan.contains("DataSourceExec"),
        "and no scan is planned:\n{plan}"
    );
    assert_eq!(shown(&engine, GRID).await, cold, "the same answer");
    let analyzed = shown(&engine, &format!("EXPLAIN ANALYZE {GRID}")).await;
    assert!(
        analyzed.contains("tile_hits=1"),
        "EXPLAIN ANALYZE counts the hit:\n{analyzed}"
    );
    assert!(cache_counter(&engine, "tile.memory", "hits").await >= 3);
    assert_eq!(
        cache_counter(&engine, "tile.memory", "inserts").await,
        inserts,
        "and hits store nothing"
    );

    let before = grid_cell(&engine).await;
    add_to_cell(&engine, 250).await;
    assert!(
        shown(&engine, &explain).await.contains("TileExec: miss"),
        "the commit changed the cube's version: the tile is not looked up again"
    );
    assert_eq!(grid_cell(&engine).await, before + 250, "never stale");
}

/// `tiles::optimize` takes a candidate's mark off while the optimiser runs (so that no rule
/// rewrites a copy of the whole query): the plan it makes is DataFusion's own, mark included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_is_optimised_as_datafusion_optimises_it() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_over(dir.path(), TileCacheConfig::default()).await;
    let state = engine.session_state();
    for sql in [
        GRID,
        "SELECT version, now() FROM cube.finance LIMIT 1",
        "SELECT 1",
    ] {
        let plan = state.create_logical_plan(sql).await.unwrap();
        let ours = quantatom_engine::tiles::optimize(&state, &plan).unwrap();
        let datafusions = state.optimize(&plan).unwrap();
        assert_eq!(
            ours.display_indent_schema().to_string(),
            datafusions.display_indent_schema().to_string(),
            "{sql}"
        );
        let candidate = quantatom_engine::tiles::TileCandidate::query_of(&ours).is_some();
        assert_eq!(candidate, sql == GRID, "{sql}");
    }
}

/// A grid served from a tile is hot: after a commit, the engine computes its new tile before
/// anyone asks, and the next read is a hit with the new value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_tile_is_recomputed_after_a_commit() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_over(
        dir.path(),
        TileCacheConfig {
            refresh_interval: Some(Duration::from_millis(50)),
            ..TileCacheConfig::default()
        },
    )
    .await;
    set_cell(&engine, 1000).await;
    let before = grid_cell(&engine).await;
    assert_eq!(grid_cell(&engine).await, before, "a hit: the grid is hot");
    set_cell(&engine, 1001).await;
    let explain = format!("EXPLAIN {GRID}");
    let started = Instant::now();
    while !shown(&engine, &explain).await.contains("TileExec: hit") {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the hot tile is recomputed after the commit"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(grid_cell(&engine).await, before + 100, "with the new value");
    let computed = cache_counter(&engine, "tile.memory", "inserts").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        cache_counter(&engine, "tile.memory", "inserts").await,
        computed,
        "and nothing is recomputed while nothing changes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_queries_of_versioned_tables_and_immutable_functions_are_cached() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_over(dir.path(), TileCacheConfig::default()).await;
    for sql in [
        "SELECT count(*) FROM cube.finance WHERE amount > random()",
        "SELECT now(), count(*) FROM cube.finance",
        "SELECT * FROM system.cache",
        "SELECT 1",
    ] {
        let plan = shown(&engine, &format!("EXPLAIN {sql}")).await;
        assert!(!plan.contains("TileExec"), "{sql} is not cached:\n{plan}");
    }
    let session = engine.new_session();
    session
        .sql("SET quantatom.tile_cache = false")
        .await
        .unwrap();
    let plan = session
        .sql(&format!("EXPLAIN {GRID}"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let plan = pretty_format_batches(&plan).unwrap().to_string();
    assert!(
        !plan.contains("TileExec"),
        "a session may turn the cache off:\n{plan}"
    );
}

/// The calendar's tables depend on the `time` dimension only: a forecast with a switchover is
/// served from a tile, and another cutoff is another tile, never the first one's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switchover_grid_is_cached_per_cutoff() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_over(dir.path(), TileCacheConfig::default()).await;
    let switchover = |cutoff: &str| {
        format!(
            "SELECT s.version, sum(f.amount) AS amount \
             FROM version_switchover('{cutoff}', 'Actual', 'Forecast') s \
             JOIN cube.finance f ON f.time = s.period AND f.version = s.version \
             WHERE f.time BETWEEN '2025_01' AND '2025_12' GROUP BY s.version ORDER BY 1"
        )
    };
    let plan = shown(&engine, &format!("EXPLAIN {}", switchover("2025_06"))).await;
    assert!(plan.contains("TileExec"), "cached:\n{plan}");
    let june = shown(&engine, &switchover("2025_06")).await;
    let hits = cache_counter(&engine, "tile.memory", "hits").await;
    assert_eq!(shown(&engine, &switchover("2025_06")).await, june);
    assert_eq!(
        cache_counter(&engine, "tile.memory", "hits").await,
        hits + 1,
        "the repeat is a hit"
    );
    let march = shown(&engine, &switchover("2025_03")).await;
    assert_ne!(march, june, "another cutoff, another answer:\n{march}");
    assert_eq!(shown(&engine, &switchover("2025_03")).await, march);
}

/// A private `redis-server` on a free loopback port, stopped when dropped.
struct Redis {
    port: u16,
    child: Child,
}

impl Redis {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_on(port)
    }

    fn start_on(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--enable-debug-command",
                "local",
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "redis-server does not start ({error}): run ./scripts/test, which installs it"
                )
            });
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not listen on port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { port, child }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn stop(mut self) -> u16 {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.port
    }

    /// Runs `redis-cli` with `args` against this server.
    fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn shared(redis: &Redis, memory_bytes: u64) -> TileCacheConfig {
    TileCacheConfig {
        memory_bytes,
        redis: Some(RedisSettings {
            url: redis.url(),
            timeout: Duration::from_millis(200),
        }),
        ..TileCacheConfig::default()
    }
}

/// Two replicas over one folder and one Redis: a write through one is seen by the next read
/// through the other, every time, and the other's reads are served from tiles again after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sharing_a_redis_never_serve_a_stale_tile() {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start();
    let writer = engine_over(dir.path(), shared(&redis, 64 << 20)).await;
    let reader = engine_over(dir.path(), shared(&redis, 64 << 20)).await;
    set_cell(&writer, 1000).await;
    let mut expected = grid_cell(&reader).await;
    for iteration in 0..1000 {
        if iteration % 10 == 9 {
            // As a deployment compacts: the cube's small files are merged.
            run(&writer, "SELECT * FROM mdf_compact('cube.finance')").await;
        }
        set_cell(&writer, 1001 + iteration).await;
        expected += 100;
        assert_eq!(
            grid_cell(&reader).await,
            expected,
            "iteration {iteration}: the reader sees the writer's commit"
        );
    }
    // The writer computed no grid; every tile the reader used it made itself, and stored in
    // Redis in the background. Now the writer's read is served from the reader's tile.
    let started = Instant::now();
    while cache_counter(&reader, "tile.redis", "inserts").await < 1001 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the reader stores its tiles in Redis"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = cache_counter(&writer, "tile.redis", "hits").await;
    assert_eq!(grid_cell(&writer).await, expected);
    assert_eq!(
        cache_counter(&writer, "tile.redis", "hits").await,
        before + 1,
        "the other replica's tile is found in Redis"
    );
    for _ in 0..10 {
        assert_eq!(grid_cell(&reader).await, expected);
    }
    assert!(cache_counter(&reader, "tile.memory", "hits").await >= 10);
    let stored = redis.cli(&["--scan", "--pattern", "quantatom:tile:*"]);
    assert!(stored.lines().count() >= 1000, "tiles are kept in Redis");
    let ttl: i64 = redis
        .cli(&["PTTL", stored.lines().next().unwrap()])
        .parse()
        .unwrap();
    assert!(ttl > 0, "and expire: {ttl}");
    assert_eq!(cache_counter(&reader, "tile.redis", "errors").await, 0);
}

/// Redis stopped, or too slow to answer: queries still answer, the failures are counted, and
/// the cache uses Redis again once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_down_or_slow_never_fails_a_query() {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start();
    // No memory tier: every lookup goes to Redis.
    let engine = engine_over(dir.path(), shared(&redis, 0)).await;
    let expected = grid_cell(&engine).await;
    let port = redis.stop();
    for delta in 1..=3 {
        add_to_cell(&engine, 1).await;
        assert_eq!(grid_cell(&engine).await, expected + delta, "Redis is down");
    }
    assert!(cache_counter(&engine, "tile.redis", "errors").await >= 3);

    // Counted before Redis is back: an insert retried as it comes back is one of its own.
    let inserts = cache_counter(&engine, "tile.redis", "inserts").await;
    let redis = Redis::start_on(port);
    let started = Instant::now();
    loop {
        assert_eq!(grid_cell(&engine).await, expected + 3);
        if cache_counter(&engine, "tile.redis", "hits").await > 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the cache reconnects to Redis on its own"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(cache_counter(&engine, "tile.redis", "inserts").await > inserts);

    // A Redis busy for three seconds: lookups give up after the timeout, and the query
    // answers while Redis is still asleep.
    let busy = std::thread::spawn({
        let port = redis.port;
        move || {
            let output = Command::new("redis-cli")
                .args(["-p", &port.to_string(), "DEBUG", "SLEEP", "3"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&output.stdout).trim().to_owned()
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    let errors = cache_counter(&engine, "tile.redis", "errors").await;
    assert_eq!(grid_cell(&engine).await, expected + 3, "Redis is slow");
    assert!(
        !busy.is_finished(),
        "the query answered without waiting for Redis"
    );
    assert!(cache_counter(&engine, "tile.redis", "errors").await > errors);
    assert_eq!(busy.join().unwrap(), "OK", "Redis slept");
}
