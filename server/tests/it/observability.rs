//! What the server binary tells operators: spans exported over OTLP/HTTP to a collector (here
//! a real HTTP endpoint in the test that decodes OTLP's protobuf), JSON log lines with a
//! redacted query log, and the per-statement memory limit.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use crate::support::{connect_when_up, demo_engine, rows, serve_command, value};

/// A cell of the demo cube.
const CELL: &str = "version = 'Budget' AND time = '2025_01' AND entity = 'DE' AND account = '4000' AND product = 'P0001' AND currency = 'EUR'";

/// An OTLP/HTTP collector on a free loopback port that keeps every span it receives.
async fn collector() -> (u16, Arc<Mutex<Vec<Span>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let spans = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&spans);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let kept = Arc::clone(&kept);
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let kept = Arc::clone(&kept);
                    async move {
                        assert_eq!(request.uri().path(), "/v1/traces");
                        let body = request.into_body().collect().await?.to_bytes();
                        let export =
                            ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                        let received = export.resource_spans.into_iter().flat_map(|resource| {
                            resource
                                .scope_spans
                                .into_iter()
                                .flat_map(|scope| scope.spans)
                        });
                        kept.lock().unwrap().extend(received);
                        Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (port, spans)
}

/// `span`'s attributes, as text.
fn attributes(span: &Span) -> HashMap<String, String> {
    span.attributes
        .iter()
        .map(|attribute| {
            let value = match attribute.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(text)) => text.clone(),
                Some(Value::IntValue(number)) => number.to_string(),
                Some(Value::DoubleValue(number)) => number.to_string(),
                Some(Value::BoolValue(flag)) => flag.to_string(),
                other => format!("{other:?}"),
            };
            (attribute.key.clone(), value)
        })
        .collect()
}

/// The `query` span of the statement of `kind` that sent `rows` rows, waiting up to 20 s for
/// the exporter's batch.
async fn query_span(spans: &Mutex<Vec<Span>>, kind: &str, rows: &str) -> Span {
    for _ in 0..200 {
        let found = spans
            .lock()
            .unwrap()
            .iter()
            .find(|span| {
                let attributes = attributes(span);
                span.name == "query"
                    && attributes.get("kind").map(String::as_str) == Some(kind)
                    && attributes.get("rows").map(String::as_str) == Some(rows)
            })
            .cloned();
        if let Some(span) = found {
            return span;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no `query` span of a {kind} with {rows} rows reached the collector");
}

/// The names of the spans below `parent` (at any depth) in its trace.
fn descendants(spans: &[Span], parent: &Span) -> Vec<String> {
    let mut names = Vec::new();
    let mut frontier = vec![parent.span_id.clone()];
    while let Some(id) = frontier.pop() {
        for span in spans.iter().filter(|span| span.parent_span_id == id) {
            assert_eq!(span.trace_id, parent.trace_id);
            names.push(span.name.clone());
            frontier.push(span.span_id.clone());
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_the_otlp_collector_and_the_query_log_is_json_and_redacted() {
    let data_dir = tempfile::tempdir().unwrap();
    drop(demo_engine(data_dir.path()).await);
    let (collector_port, spans) = collector().await;
    let port = crate::crash::free_port();
    let mut server = serve_command(data_dir.path(), port)
        .args(["--log-format", "json", "--query-log", "redacted"])
        .args([
            "--otlp-endpoint",
            &format!("http://127.0.0.1:{collector_port}"),
        ])
        .env("QUANTATOM_LOG", "info")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .stderr(Stdio::piped())
        .spawn()
        .expect("the server binary starts");
    let config = format!("host=127.0.0.1 port={port} user=planner dbname=quantatom");
    let mut client = connect_when_up(&config).await;
    let grid =
        "SELECT entity, sum(amount) FROM cube.finance WHERE account = '4000' GROUP BY entity";
    let grid_rows = rows(&client, grid).await.len();
    client
        .batch_execute(&format!(
            "UPDATE cube.finance SET amount = 7391.5247 WHERE {CELL}"
        ))
        .await
        .unwrap();
    let prepared = client
        .query("SELECT amount FROM cube.finance WHERE entity = $1 AND account = '4000' AND product = 'P0001' AND currency = 'EUR' AND version = 'Budget' AND time = '2025_01'", &[&"DE"])
        .await
        .unwrap();
    assert_eq!(prepared.len(), 1);
    // A cursor fetching in pages: each Execute is a statement of the rows it sent.
    let paged = client.transaction().await.unwrap();
    let statement = paged
        .prepare("SELECT entity, time, amount FROM cube.finance WHERE account = '4000' ORDER BY entity, time")
        .await
        .unwrap();
    let portal = paged.bind(&statement, &[]).await.unwrap();
    for _ in 0..2 {
        assert_eq!(paged.query_portal(&portal, 5).await.unwrap().len(), 5);
    }
    paged.commit().await.unwrap();

    let select = query_span(&spans, "select", &grid_rows.to_string()).await;
    let attributes = attributes(&select);
    assert_eq!(attributes["user"], "planner");
    assert!(attributes["query_id"].parse::<u64>().unwrap() > 0);
    assert!(attributes["duration_ms"].parse::<f64>().unwrap() > 0.0);
    let update = query_span(&spans, "update", "0").await;
    let extended = query_span(&spans, "select", "1").await;
    query_span(&spans, "select", "5").await;
    let all = spans.lock().unwrap().clone();
    let below_select = descendants(&all, &select);
    for child in ["planning", "scan", "cache"] {
        assert!(below_select.contains(&child.to_owned()), "{below_select:?}");
    }
    let below_update = descendants(&all, &update);
    assert!(
        below_update.contains(&"commit".to_owned()),
        "{below_update:?}"
    );
    assert!(descendants(&all, &extended).contains(&"scan".to_owned()));

    // Stop, then read the log: one JSON object per line, the query log among them.
    let pid = server.id().unwrap().to_string();
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(signalled.success());
    let mut log = String::new();
    let mut stderr = server.stderr.take().unwrap();
    tokio::time::timeout(Duration::from_secs(60), stderr.read_to_string(&mut log))
        .await
        .expect("the server exits")
        .unwrap();
    assert!(server.wait().await.unwrap().success());
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let statements: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|line| line["target"] == "quantatom::query")
        .collect();
    let logged = |start: &str| {
        statements
            .iter()
            .find(|line| line["statement"].as_str().unwrap().starts_with(start))
            .unwrap_or_else(|| panic!("no {start}... in {statements:?}"))
    };
    let update = logged("UPDATE");
    assert_eq!(
        update["statement"],
        "UPDATE cube.finance SET amount = ? WHERE version = ? AND time = ? AND entity = ? AND account = ? AND product = ? AND currency = ?"
    );
    assert_eq!(update["user"], "planner");
    assert_eq!(update["sqlstate"], "00000");
    assert!(update["duration_ms"].as_f64().unwrap() > 0.0);
    let grid_logged = logged("SELECT entity, sum");
    assert_eq!(grid_logged["rows"], grid_rows as u64);
    let pages: Vec<_> = statements
        .iter()
        .filter(|line| {
            line["statement"]
                .as_str()
                .unwrap()
                .starts_with("SELECT entity, time")
        })
        .map(|line| line["rows"].as_u64().unwrap())
        .collect();
    assert_eq!(pages, [5, 5]);
    // A number with a point, which no trace or span id (hex digits) can hold by chance.
    let leaked: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("7391.52"))
        .collect();
    assert!(leaked.is_empty(), "a literal reached the log: {leaked:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_over_its_memory_limit_fails_with_53200_and_the_server_goes_on() {
    let data_dir = tempfile::tempdir().unwrap();
    let port = crate::crash::free_port();
    let _server = serve_command(data_dir.path(), port)
        .args(["--query-memory-mb", "8"])
        .env("QUANTATOM_LOG", "warn")
        .spawn()
        .expect("the server binary starts");
    let config = format!("host=127.0.0.1 port={port} user=tester dbname=quantatom");
    let client = connect_when_up(&config).await;
    let other = connect_when_up(&config).await;
    // A hash join's build side of two million rows needs far more than 8 MiB, and a hash
    // join does not spill.
    let join = "SELECT count(*) FROM generate_series(1, 2000000) AS a \
                JOIN generate_series(1, 2000000) AS b ON a.value = b.value";
    let error = client.simple_query(join).await.unwrap_err();
    let error = error.as_db_error().expect("a server error");
    assert_eq!(error.code().code(), "53200", "{error}");
    assert!(error.message().contains("Resources exhausted"), "{error}");
    // The connection and the others go on; a statement within the limit runs.
    assert_eq!(value(&client, "SELECT 1").await, "1");
    let small = "SELECT count(*) FROM generate_series(1, 20000) AS a \
                 JOIN generate_series(1, 20000) AS b ON a.value = b.value";
    assert_eq!(value(&other, small).await, "20000");
    assert_eq!(value(&client, small).await, "20000");
}
