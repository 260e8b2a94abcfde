//! A server's life around its clients: a shutdown lets running statements finish and closes
//! idle connections (57P01), a drain timeout bounds it, and a full server refuses one more
//! client (53300) while still serving cancel requests. A connection's thread follows its client
//! from core to core.

use std::time::Duration;

use quantatom_server::wire::ConnectionLimits;
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use crate::support::{TestServer, connect_when_up, serve_command, value};

/// 300 million rows: seconds of work, all of it in execution.
const LONG: &str = "SELECT sum(value % 7) FROM generate_series(1, 300000000)";
/// What [`LONG`] answers.
const LONG_ANSWER: &str = "900000003";

/// Waits until a connection other than `observer`'s runs `query` (as `pg_stat_activity`
/// shows it).
async fn until_running(observer: &tokio_postgres::Client, query: &str) {
    let active = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = '{}'",
        query.replace('\'', "''")
    );
    for _ in 0..600 {
        if value(observer, &active).await == "1" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{query} never started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_server_finishes_running_statements_and_closes_idle_connections() {
    let limits = ConnectionLimits {
        drain_timeout: Duration::from_secs(300),
        ..ConnectionLimits::default()
    };
    let server = TestServer::start_limited(limits).await;
    let address = server.connection_string();
    let busy = server.client().await;
    let idle = server.client().await;
    let running = tokio::spawn(async move { busy.simple_query(LONG).await.map(|_| busy) });
    until_running(&idle, LONG).await;
    let stopping = tokio::spawn(server.stop());
    // The idle connection is closed at once, with PostgreSQL's code for it.
    let closed = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match idle.simple_query("SELECT 1").await {
                Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(error) => return error,
            }
        }
    })
    .await
    .expect("the idle connection is closed");
    assert!(
        closed.code() == Some(&SqlState::ADMIN_SHUTDOWN) || closed.is_closed(),
        "{closed:?}"
    );
    // New clients are not accepted any more.
    assert!(tokio_postgres::connect(&address, NoTls).await.is_err());
    // The running statement finishes with its whole answer, then its connection closes.
    let busy = running
        .await
        .unwrap()
        .expect("the running statement finishes");
    stopping.await.unwrap();
    assert!(busy.simple_query("SELECT 1").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_statement_answers_in_full_during_a_shutdown() {
    let limits = ConnectionLimits {
        drain_timeout: Duration::from_secs(300),
        ..ConnectionLimits::default()
    };
    let server = TestServer::start_limited(limits).await;
    let busy = server.client().await;
    let observer = server.client().await;
    let running = tokio::spawn(async move { value(&busy, LONG).await });
    until_running(&observer, LONG).await;
    server.stop().await;
    assert_eq!(running.await.unwrap(), LONG_ANSWER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_timeout_bounds_a_shutdown() {
    let limits = ConnectionLimits {
        drain_timeout: Duration::from_millis(200),
        ..ConnectionLimits::default()
    };
    let server = TestServer::start_limited(limits).await;
    let busy = server.client().await;
    let observer = server.client().await;
    let endless = "SELECT sum(value % 7) FROM generate_series(1, 1000000000000)";
    let running = tokio::spawn(async move { busy.simple_query(endless).await });
    until_running(&observer, endless).await;
    // A liveness guard, not a timing assertion: without the timeout this runs for hours.
    tokio::time::timeout(Duration::from_secs(120), server.stop())
        .await
        .expect("the server stops after its drain timeout");
    assert!(
        running.await.unwrap().is_err(),
        "the endless statement was cut off"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_server_refuses_one_more_client_but_serves_cancels() {
    let limits = ConnectionLimits {
        max_connections: 2,
        ..ConnectionLimits::default()
    };
    let server = TestServer::start_limited(limits).await;
    let first = server.client().await;
    let second = server.client().await;
    let Err(refused) = tokio_postgres::connect(&server.connection_string(), NoTls).await else {
        panic!("a third client is refused");
    };
    assert_eq!(
        refused.code(),
        Some(&SqlState::TOO_MANY_CONNECTIONS),
        "{refused:?}"
    );
    // A cancel request is a connection too, and is served.
    let cancel = first.cancel_token();
    let endless = "SELECT sum(value % 7) FROM generate_series(1, 1000000000000)";
    let running = tokio::spawn(async move { first.simple_query(endless).await });
    until_running(&second, endless).await;
    cancel
        .cancel_query(NoTls)
        .await
        .expect("the cancel is sent");
    let outcome = tokio::time::timeout(Duration::from_secs(120), running)
        .await
        .expect("the query stops after the cancel")
        .unwrap();
    assert_eq!(outcome.unwrap_err().code(), Some(&SqlState::QUERY_CANCELED));
    // Once a client leaves, another gets in.
    drop(second);
    let mut attempts = 0;
    let third = loop {
        match tokio_postgres::connect(&server.connection_string(), NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                break client;
            }
            Err(_) if attempts < 100 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("no room after a client left: {e}"),
        }
    };
    assert_eq!(value(&third, "SELECT 1").await, "1");
}

/// The binary on SIGTERM: the statement it runs answers in full, then the process exits
/// cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_server_binary() {
    let data_dir = tempfile::tempdir().unwrap();
    let port = crate::crash::free_port();
    let mut server = serve_command(data_dir.path(), port)
        .env("QUANTATOM_LOG", "warn")
        .spawn()
        .expect("the server binary starts");
    let config = format!("host=127.0.0.1 port={port} user=tester dbname=quantatom");
    let busy = connect_when_up(&config).await;
    let observer = connect_when_up(&config).await;
    let running = tokio::spawn(async move { value(&busy, LONG).await });
    until_running(&observer, LONG).await;
    let pid = server.id().expect("the server runs").to_string();
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(signalled.success());
    assert_eq!(running.await.unwrap(), LONG_ANSWER);
    let status = tokio::time::timeout(Duration::from_secs(60), server.wait())
        .await
        .expect("the server exits after draining")
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_warms_up_through_a_connections_path_before_its_first_client() {
    let data_dir = tempfile::tempdir().unwrap();
    let engine = crate::support::demo_engine(data_dir.path()).await;
    let server = quantatom_server::Server::bind(&engine, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let queries = engine.warm_up_queries();
    assert_eq!(queries[0], "SELECT 1");
    assert_eq!(
        queries.len(),
        2,
        "SELECT 1 and one point query per cube: {queries:?}"
    );
    assert!(
        queries[1].starts_with("SELECT * FROM cube.\"finance\" WHERE \"version\" = ''"),
        "{queries:?}"
    );
    // SELECT 1's row; the point query's coordinate is no cell's.
    assert_eq!(server.warm_up(&queries).await.unwrap(), 1);
    let refused = server.warm_up(&["SET TimeZone = 'UTC'".to_string()]).await;
    assert!(
        refused
            .unwrap_err()
            .to_string()
            .contains("must be one plain query"),
        "only plain queries warm up"
    );
}

/// The binary started with the soft open-files limit of many shells (1024; here 256, for a
/// smaller test) holds more connections than that limit would allow: each connection's own
/// thread and event loop hold a few descriptors besides its socket, so the server raises its
/// soft limit to the hard one at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_binary_holds_more_connections_than_a_low_open_files_limit_allows() {
    const SOFT_LIMIT: libc::rlim_t = 256;
    let data_dir = tempfile::tempdir().unwrap();
    let port = crate::crash::free_port();
    let mut command = serve_command(data_dir.path(), port);
    command.env("QUANTATOM_LOG", "warn");
    // SAFETY: between fork and exec the closure only calls getrlimit and setrlimit, which are
    // async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            limit.rlim_cur = SOFT_LIMIT;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let _server = command.spawn().expect("the server binary starts");
    let config = format!("host=127.0.0.1 port={port} user=tester dbname=quantatom");
    let mut clients = vec![connect_when_up(&config).await];
    while clients.len() < SOFT_LIMIT as usize {
        let (client, connection) = tokio_postgres::connect(&config, NoTls)
            .await
            .unwrap_or_else(|e| panic!("connection {} refused: {e}", clients.len() + 1));
        tokio::spawn(connection);
        clients.push(client);
    }
    for (n, client) in clients.iter().enumerate() {
        assert_eq!(value(client, &format!("SELECT {n}")).await, n.to_string());
    }
}

/// The core the connection thread of this process's one open connection last ran on.
fn connection_thread_core() -> usize {
    let tasks = std::fs::read_dir("/proc/self/task").expect("this process's threads");
    let mut cores = tasks.filter_map(|task| {
        let stat = std::fs::read_to_string(task.ok()?.path().join("stat")).ok()?;
        // "pid (name) state ...": the name (at most 15 bytes) is in parentheses, and the core
        // is field 39, the 37th after the name.
        let (name, fields) = stat.split_once('(')?.1.rsplit_once(')')?;
        let core = fields.split_whitespace().nth(36)?.parse().ok()?;
        (name == "quantatom-conne").then_some(core)
    });
    let core = cores.next().expect("a connection thread");
    assert!(cores.next().is_none(), "one connection thread");
    core
}

/// Pins the calling thread to `core`.
fn pin_to(core: usize) {
    // SAFETY: a zeroed set with one core in range set; pid 0 names the calling thread.
    unsafe {
        let mut only: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut only);
        assert_eq!(libc::sched_setaffinity(0, size_of_val(&only), &only), 0);
    }
}

#[test]
fn a_connections_thread_moves_to_the_core_its_client_sends_from() {
    // SAFETY: a zeroed set for the kernel to fill; pid 0 names the calling thread.
    let cores: Vec<usize> = unsafe {
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(
            libc::sched_getaffinity(0, size_of_val(&allowed), &mut allowed),
            0
        );
        (0..libc::CPU_SETSIZE as usize)
            .filter(|core| libc::CPU_ISSET(*core, &allowed))
            .take(2)
            .collect()
    };
    assert_eq!(cores.len(), 2, "this test needs two cores");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = runtime.block_on(TestServer::start());
    let config = server.connection_string();
    // The client runs on one core, then on the other: whichever core its thread started on,
    // the connection's thread has to move at least once to keep up with it, within a few
    // looks (a look every 32 messages, a move at most every 100 ms: 200-1,000 queries here).
    // Left to the kernel, the thread came over after 14,703 and 19,160 queries.
    std::thread::spawn(move || {
        let client_runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        client_runtime.block_on(async {
            let client = connect_when_up(&config).await;
            for core in cores {
                pin_to(core);
                let mut in_a_row = 0;
                for query in 0..4_000 {
                    assert_eq!(value(&client, "SELECT 1").await, "1");
                    in_a_row = if connection_thread_core() == core {
                        in_a_row + 1
                    } else {
                        0
                    };
                    if in_a_row == 100 {
                        eprintln!("on core {core} after {query} queries");
                        break;
                    }
                }
                assert_eq!(in_a_row, 100, "100 answers in a row from core {core}");
            }
        });
    })
    .join()
    .expect("the client");
    runtime.block_on(server.stop());
}
