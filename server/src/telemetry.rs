//! Logs and traces of the `quantatom` binary: log lines on stderr, as text or as one JSON
//! object per line (for Loki and other collectors), filtered by `QUANTATOM_LOG`; and, when an
//! OTLP endpoint is configured, Quantatom's spans (a `query` per statement with its
//! `planning`, `scan`, `cache` and `commit` children) exported over OTLP/HTTP in batches from
//! the SDK's own thread. Export failures are logged (target `opentelemetry*`).

use std::io::IsTerminal;

use opentelemetry::Key;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Level;
use tracing::subscriber::Interest;
use tracing_subscriber::filter::{DynFilterFn, FilterExt, LevelFilter, Targets};
use tracing_subscriber::layer::{Filter, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    #[default]
    Text,
    /// One JSON object per line, with the fields of the event and of its spans.
    Json,
}

/// Which events become log lines: those `chosen` lets through, and the query log's lines. Its
/// level hint is `chosen`'s (at least the query log's INFO), which `try_init` also makes the
/// `log` crate's maximum level.
fn event_filter(chosen: EnvFilter) -> impl Filter<Registry> + Send + Sync + 'static {
    let query_log = Targets::new().with_target("quantatom::query", Level::INFO);
    // Spans are never this layer's: it says so per callsite, so that without an exporter
    // no span is made at all (a filter deciding per span would still be asked each time).
    let only_events = DynFilterFn::new(|metadata, _| metadata.is_event())
        .with_callsite_filter(|metadata| match metadata.is_span() {
            true => Interest::never(),
            false => Interest::sometimes(),
        })
        // Leaves the level to `chosen`: a filter without a hint would make the combined
        // hint, and so the `log` crate's maximum level, TRACE, and every `log::debug!` of
        // DataFusion's would then be turned into an event only to be dropped.
        .with_max_level_hint(LevelFilter::TRACE);
    only_events.and(chosen.or(query_log))
}

/// The installed logging and tracing; [`Telemetry::shutdown`] sends the spans still queued.
#[must_use = "dropping it without shutdown loses the spans still queued"]
pub struct Telemetry {
    exporting: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Installs the process's subscriber: log lines in `format`, filtered by `QUANTATOM_LOG`
    /// (the query log's lines always pass); and, when there is an `otlp_endpoint` (an
    /// OTLP/HTTP collector's base URL), Quantatom's spans at `info` exported there. Spans go
    /// only to the exporter: without one, a statement's spans are not even created.
    pub fn install(format: LogFormat, otlp_endpoint: Option<&str>) -> Result<Self, String> {
        let chosen =
            EnvFilter::try_from_env("QUANTATOM_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
        let events = event_filter(chosen);
        let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
        let lines = match format {
            // Colours only on a terminal: logs written to files and collectors stay plain.
            LogFormat::Text => lines
                .with_ansi(std::io::stderr().is_terminal())
                .with_filter(events)
                .boxed(),
            LogFormat::Json => lines
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .with_filter(events)
                .boxed(),
        };
        let exporting = otlp_endpoint.map(tracer_provider).transpose()?;
        let logging = tracing_subscriber::registry().with(lines);
        // Without an exporter no layer is added for spans: even a layer that is `None` would
        // have every span made.
        let installed = match &exporting {
            Some(provider) => logging.with(span_exporter(provider)).try_init(),
            None => logging.try_init(),
        };
        installed.map_err(|e| format!("cannot install logging: {e}"))?;
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

/// The layer that hands Quantatom's spans at `info` to `provider`.
fn span_exporter<S>(provider: &SdkTracerProvider) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    let ours = Targets::new()
        .with_target("quantatom_server", Level::INFO)
        .with_target("quantatom_engine", Level::INFO)
        .with_target("quantatom_table_providers", Level::INFO);
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("quantatom"))
        .with_filter(ours)
}

/// A provider exporting spans in batches to the OTLP/HTTP collector at `endpoint`.
fn tracer_provider(endpoint: &str) -> Result<SdkTracerProvider, String> {
    let base = endpoint.trim_end_matches('/');
    let url = match base.ends_with("/v1/traces") {
        true => base.to_owned(),
        false => format!("{base}/v1/traces"),
    };
    // The endpoint may come from the standard variable, set for collectors that take gRPC:
    // this exporter speaks HTTP/protobuf only, so say so rather than send to the wrong port.
    match std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").as_deref() {
        Err(_) | Ok("http/protobuf") => {}
        Ok(other) => {
            return Err(format!(
                "OTEL_EXPORTER_OTLP_PROTOCOL is {other:?}: Quantatom exports spans over OTLP/HTTP \
                 (http/protobuf, port 4318) only"
            ));
        }
    }
    let exporter = SpanExporter::builder()
        .with_http()
        .with_endpoint(url.clone())
        .build()
        .map_err(|e| format!("invalid setting `otlp_endpoint` ({url}): {e}"))?;
    // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES name the service; without either it is
    // `quantatom` rather than the SDK's `unknown_service`.
    let detected = Resource::builder().build();
    let unnamed = detected
        .get(&Key::new("service.name"))
        .is_none_or(|name| name.as_str().starts_with("unknown_service"));
    let resource = match unnamed {
        true => Resource::builder().with_service_name("quantatom").build(),
        false => detected,
    };
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_level_hint_is_the_chosen_level_or_the_query_logs() {
        let hint = |chosen: &str| event_filter(EnvFilter::new(chosen)).max_level_hint();
        assert_eq!(hint("warn"), Some(LevelFilter::INFO));
        assert_eq!(hint("info"), Some(LevelFilter::INFO));
        assert_eq!(hint("warn,datafusion=debug"), Some(LevelFilter::DEBUG));
        assert_eq!(hint("trace"), Some(LevelFilter::TRACE));
    }
}
