//! The admin HTTP listener, on a port of its own (loopback by default): `/healthz` (the
//! process answers), `/readyz` (the object store, the metadata store and the tile cache's
//! shared store answer; the body names the one that does not) and `/metrics` (Prometheus's
//! text format: connections, statements by outcome and their durations, rows and bytes
//! returned, object-store calls and bytes, commits, conflicts and ledger appends, cache tiers).

use std::convert::Infallible;
use std::fmt::Write;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::prelude::SessionContext;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use object_store::ObjectStoreExt;
use quantatom_engine::Engine;
use quantatom_engine::metadata::MetadataStore;
use quantatom_engine::storage::{Operation, Storage};
use quantatom_engine::tiles::TileCache;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::wire::{ActivityRegistry, QueryMetrics, write_counter, write_labelled_counter};

/// How long one readiness check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What the endpoints read.
struct Observed {
    engine: SessionContext,
    storage: Storage,
    metadata: Arc<dyn MetadataStore>,
    tiles: Arc<TileCache>,
    queries: Arc<QueryMetrics>,
    activities: Arc<ActivityRegistry>,
}

/// A bound admin listener.
pub struct AdminListener {
    listener: TcpListener,
    observed: Arc<Observed>,
}

impl AdminListener {
    /// Binds `address` to report on `engine` and on the wire server's `queries` and
    /// `activities` ([`crate::Server::observed`]).
    pub async fn bind(
        address: SocketAddr,
        engine: &Engine,
        (queries, activities): (Arc<QueryMetrics>, Arc<ActivityRegistry>),
    ) -> std::io::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind(address).await?,
            observed: Arc::new(Observed {
                engine: engine.new_session(),
                storage: engine.storage().clone(),
                metadata: Arc::clone(engine.metadata()),
                tiles: Arc::clone(engine.tiles()),
                queries,
                activities,
            }),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Answers requests until `shutdown` completes.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let observed = Arc::clone(&self.observed);
                    connections.spawn(async move {
                        let service = service_fn(move |request| {
                            let observed = Arc::clone(&observed);
                            async move { Ok::<_, Infallible>(answer(&observed, request).await) }
                        });
                        let served = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                        if let Err(error) = served {
                            tracing::debug!(%error, "admin connection ended with an error");
                        }
                    });
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        connections.shutdown().await;
    }
}

/// The answer to one request.
async fn answer(observed: &Observed, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, body) = match (request.method().as_str(), request.uri().path()) {
        ("GET", "/healthz") => (StatusCode::OK, "ok\n".to_owned()),
        ("GET", "/readyz") => readiness(observed, request.uri().query()).await,
        ("GET", "/metrics") => (StatusCode::OK, metrics(observed).await),
        _ => (
            StatusCode::NOT_FOUND,
            "not found: try /healthz, /readyz or /metrics\n".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// 200 when every store answers in time, else 503; a line per store either way. A check named
/// in the query's `exclude` parameters (`/readyz?exclude=cache`, as Kubernetes's own `/readyz`
/// takes them) is still run and shown, but does not make the server unready.
async fn readiness(observed: &Observed, query: Option<&str>) -> (StatusCode, String) {
    let excluded: Vec<&str> = query
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.strip_prefix("exclude="))
        .collect();
    let probe = observed.storage.path(&["readyz-probe"]);
    let object_store = async {
        match observed.storage.store().head(&probe).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(error.to_string()),
        }
    };
    let metadata = async {
        observed
            .metadata
            .dimensions()
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let within = |outcome: Result<Result<(), String>, _>| match outcome {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())),
    };
    let cache = async {
        match observed.tiles.shared_tier() {
            Some(shared) => Some(tokio::time::timeout(CHECK_TIMEOUT, shared.ping()).await),
            None => None,
        }
    };
    // At the same time: the probe's answer takes the slowest check's time, at most 2 s.
    let (object_store, metadata, cache) = tokio::join!(
        tokio::time::timeout(CHECK_TIMEOUT, object_store),
        tokio::time::timeout(CHECK_TIMEOUT, metadata),
        cache
    );
    let mut checks = vec![
        ("object_store", within(object_store)),
        ("metadata", within(metadata)),
    ];
    if let Some(ping) = cache {
        checks.push(("cache", within(ping)));
    }
    let mut body = String::new();
    let mut ready = true;
    for (name, result) in &checks {
        let counted = !excluded.contains(name);
        ready &= result.is_ok() || !counted;
        let _ = match (result, counted) {
            (Ok(()), _) => writeln!(body, "{name}: ok"),
            (Err(error), true) => writeln!(body, "{name}: not ready: {error}"),
            (Err(error), false) => writeln!(body, "{name}: not ready (excluded): {error}"),
        };
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body)
}

/// Everything `/metrics` shows.
async fn metrics(observed: &Observed) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP quantatom_connections Client connections open.\n# TYPE quantatom_connections gauge\nquantatom_connections {}",
        observed.activities.connections()
    );
    observed.queries.render(&mut out);
    let storage = observed.storage.metrics();
    for (metric, help, value) in [
        (
            "quantatom_object_store_requests_total",
            "Calls to the object store.",
            0,
        ),
        (
            "quantatom_object_store_errors_total",
            "Calls to the object store that failed.",
            1,
        ),
        (
            "quantatom_object_store_bytes_total",
            "Bytes written to and read from the object store.",
            2,
        ),
    ] {
        let counts = Operation::ALL.map(|operation| {
            let counts = storage.of(operation);
            (
                operation.name(),
                [counts.calls, counts.errors, counts.bytes][value],
            )
        });
        write_labelled_counter(&mut out, metric, help, "operation", counts);
    }
    let commits = observed.storage.commits().counts();
    for (metric, help, count) in [
        (
            "quantatom_commits_total",
            "Cube changes committed.",
            commits.committed,
        ),
        (
            "quantatom_commit_retries_total",
            "Versions another writer took first; the commit re-read the log and retried.",
            commits.lost_races,
        ),
        (
            "quantatom_commit_conflicts_total",
            "Commits refused with a serialization error (40001).",
            commits.conflicts,
        ),
        (
            "quantatom_ledger_commits_total",
            "Commits to the ledger.",
            commits.ledger_commits,
        ),
        (
            "quantatom_ledger_entries_total",
            "Entries (cell and formula changes) appended to the ledger.",
            commits.ledger_entries,
        ),
    ] {
        write_counter(&mut out, metric, help, count);
    }
    cache_metrics(observed, &mut out).await;
    out
}

/// The cache tiers, as `system.cache` shows them.
async fn cache_metrics(observed: &Observed, out: &mut String) {
    let columns = [
        "hits",
        "misses",
        "inserts",
        "evictions",
        "errors",
        "entries",
        "bytes",
    ];
    let sql = format!("SELECT tier, {} FROM system.cache", columns.join(", "));
    let batches = match observed.engine.sql(&sql).await {
        Ok(frame) => frame.collect().await,
        Err(error) => Err(error),
    };
    let batches = match batches {
        Ok(batches) => batches,
        Err(error) => {
            tracing::warn!(%error, "the cache tiers could not be read for /metrics");
            return;
        }
    };
    for (index, column) in columns.iter().enumerate() {
        let (metric, kind) = match *column {
            "entries" | "bytes" => (format!("quantatom_cache_{column}"), "gauge"),
            _ => (format!("quantatom_cache_{column}_total"), "counter"),
        };
        let _ = writeln!(
            out,
            "# HELP {metric} The cache tier's {column}.\n# TYPE {metric} {kind}"
        );
        for batch in &batches {
            let tiers = batch.column(0).as_string::<i32>();
            let values = batch.column(index + 1).as_primitive::<Int64Type>();
            for row in 0..batch.num_rows() {
                if values.is_valid(row) {
                    let _ = writeln!(
                        out,
                        "{metric}{{tier=\"{}\"}} {}",
                        tiers.value(row),
                        values.value(row)
                    );
                }
            }
        }
    }
}
