//! Logs and traces of the `quantatom` binary: log lines on stderr, as text or as one JSON
//! object per line (for Loki and other collectors), filtered by `QUANTATOM_LOG`; and, when an
//! OTLP endpoint is configured, every span (a `query` per statement with its `planning`,
//! `scan`, `cache` and `commit` children) exported over OTLP/HTTP in batches.

use std::io::IsTerminal;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    #[default]
    Text,
    /// One JSON object per line, with the fields of the event and of its spans.
    Json,
}

/// The installed logging and tracing; [`Telemetry::shutdown`] sends the spans still queued.
#[must_use = "dropping it without shutdown loses the spans still queued"]
pub struct Telemetry {
    exporting: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Installs the process's subscriber: logs in `format`, spans exported to
    /// `otlp_endpoint` (an OTLP/HTTP collector's base URL) when there is one. Call it before
    /// any async runtime starts: the exporter keeps a blocking HTTP client on a thread of its
    /// own, so that a slow collector never holds up a query.
    pub fn install(format: LogFormat, otlp_endpoint: Option<&str>) -> Result<Self, String> {
        let filter =
            EnvFilter::try_from_env("QUANTATOM_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
        let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
        let lines = match format {
            // Colours only on a terminal: logs written to files and collectors stay plain.
            LogFormat::Text => lines.with_ansi(std::io::stderr().is_terminal()).boxed(),
            LogFormat::Json => lines.json().flatten_event(true).boxed(),
        };
        let exporting = otlp_endpoint.map(tracer_provider).transpose()?;
        let spans = exporting.as_ref().map(|provider| {
            tracing_opentelemetry::layer().with_tracer(provider.tracer("quantatom"))
        });
        tracing_subscriber::registry()
            .with(filter)
            .with(lines)
            .with(spans)
            .try_init()
            .map_err(|e| format!("cannot install logging: {e}"))?;
        Ok(Self { exporting })
    }

    /// Sends the spans still queued and stops exporting.
    pub fn shutdown(self) {
        if let Some(provider) = self.exporting
            && let Err(error) = provider.shutdown()
        {
            eprintln!("quantatom: the last spans could not be exported: {error}");
        }
    }
}

/// A provider exporting spans in batches to the OTLP/HTTP collector at `endpoint`.
fn tracer_provider(endpoint: &str) -> Result<SdkTracerProvider, String> {
    let base = endpoint.trim_end_matches('/');
    let url = match base.ends_with("/v1/traces") {
        true => base.to_owned(),
        false => format!("{base}/v1/traces"),
    };
    let exporter = SpanExporter::builder()
        .with_http()
        .with_endpoint(url.clone())
        .build()
        .map_err(|e| format!("invalid setting `otlp_endpoint` ({url}): {e}"))?;
    // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES still apply; the name defaults to ours.
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("quantatom");
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}
