//! What the server tells the outside world about itself besides metrics:
//! log lines on stderr (human text, or one JSON object per line for log
//! collectors) and, when the standard `OTEL_EXPORTER_OTLP_*` variables ask
//! for it, OpenTelemetry traces over OTLP/HTTP.
//!
//! Traces: one span per execution (node uid, instanceId, nodeId, transport,
//! outcome, queue wait, duration), spans for library loads and swaps, a W3C
//! `traceparent` on an HTTP execute request continuing the caller's trace.
//! Spans are batched and exported off the request path, by the SDK's batch
//! processor, through the server's one HTTP client; an unreachable
//! collector costs a warning at most once a minute. With no endpoint
//! configured nothing of this is installed, so it costs nothing.

use std::time::Duration;

use bytes::Bytes;
use opentelemetry::{propagation::TextMapPropagator, trace::TracerProvider as _};
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_sdk::{
    Resource,
    propagation::TraceContextPropagator,
    trace::{SdkTracerProvider, Tracer},
};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::rate_limit::RateLimitedCount;
use tracing_subscriber::{
    EnvFilter, Layer, filter::Targets, layer::SubscriberExt, registry::LookupSpan, util::SubscriberInitExt,
};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable text (colours on a terminal).
    #[default]
    Text,
    /// One JSON object per line: timestamp, level, target, message, and the
    /// fields of the spans it happened in (instanceId, node, library).
    Json,
}

/// Traces being exported; flushed when dropped.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether traces are exported.
    pub fn tracing_enabled(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            // Exports what is still batched (bounded by the exporter's timeout).
            let _ = provider.shutdown();
        }
    }
}

/// Whether spans are exported (OpenTelemetry is configured and set up).
static TRACES_ON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether an execution's span should carry the fields it gets at its end
/// (`outcome`, `queue_wait_ms`, `duration_ms`): when spans are exported, or
/// when debug lines (which show them) are logged. Otherwise nobody reads
/// them, and the log layer would still format each one, a few percent of
/// the server's CPU per execution.
pub fn span_details_wanted() -> bool {
    TRACES_ON.load(std::sync::atomic::Ordering::Relaxed)
        || tracing::enabled!(target: "nano_server::execution", tracing::Level::DEBUG)
}

/// Installs the global subscriber: logs in `format` filtered by `filter`,
/// and traces when configured, exported on `runtime`.
pub fn init(format: LogFormat, filter: EnvFilter, runtime: tokio::runtime::Handle) -> Telemetry {
    let logs = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
    };
    let (provider, setup_error) = match tracer_provider(runtime) {
        Ok(provider) => (provider, None),
        Err(err) => (None, Some(err)),
    };
    let traces = provider.as_ref().map(|provider| {
        // Our own spans only (executions, loads, swaps, requests), whatever
        // RUST_LOG says for the log lines.
        otel_layer(provider.tracer("nano-server"))
            .with_filter(Targets::new().with_target("nano_server", tracing::Level::INFO))
    });
    TRACES_ON.store(traces.is_some(), std::sync::atomic::Ordering::Relaxed);
    tracing_subscriber::registry().with(logs).with(traces).init();
    if let Some(err) = setup_error {
        tracing::warn!("OpenTelemetry traces are off: {err}");
    } else if provider.is_some() {
        tracing::info!("exporting OpenTelemetry traces");
    }
    Telemetry { provider }
}

fn otel_layer<S: tracing::Subscriber + for<'a> LookupSpan<'a>>(
    tracer: Tracer,
) -> tracing_opentelemetry::OpenTelemetryLayer<S, Tracer> {
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_tracked_inactivity(false)
        .with_threads(false)
}

/// The tracer provider the standard variables ask for, or none.
fn tracer_provider(runtime: tokio::runtime::Handle) -> Result<Option<SdkTracerProvider>, String> {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let configured = set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
        || std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v.eq_ignore_ascii_case("none"));
    if !configured || disabled {
        return Ok(None);
    }
    if let Ok(protocol) = std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL")
        && !matches!(protocol.as_str(), "http/protobuf" | "http/json")
    {
        return Err(format!(
            "OTEL_EXPORTER_OTLP_PROTOCOL={protocol} is not supported (use http/protobuf or http/json)"
        ));
    }
    use opentelemetry_otlp::WithHttpConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(SharedClient {
            runtime,
            failures: Failures::default(),
        })
        .build()
        .map_err(|e| e.to_string())?;
    let mut resource = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name("nano-server");
    }
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build(),
    ))
}

/// The server's HTTP client, for the exporter, taken at the first export
/// (not at start: see `nanocore::http_client`). The SDK's batch processor
/// exports from a thread of its own, outside the runtime reqwest needs, so
/// each request runs as a task on the server's runtime.
#[derive(Debug)]
struct SharedClient {
    runtime: tokio::runtime::Handle,
    failures: Failures,
}

#[async_trait::async_trait]
impl HttpClient for SharedClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let sent = match crate::nanocore::http_client() {
            Ok(client) => self
                .runtime
                .spawn(async move {
                    let request = reqwest::Request::try_from(request)?;
                    let response = client.execute(request).await?;
                    let mut answer = Response::builder().status(response.status());
                    if let Some(headers) = answer.headers_mut() {
                        *headers = response.headers().clone();
                    }
                    let body = response.bytes().await?;
                    Ok::<_, HttpError>(answer.body(body)?)
                })
                .await
                .map_err(|e| Box::new(e) as HttpError)
                .and_then(|result| result),
            Err(err) => Err(HttpError::from(format!("cannot create the HTTP client: {err:#}"))),
        };
        match &sent {
            Ok(response) if !response.status().is_success() => self
                .failures
                .note(&format!("the collector answered {}", response.status())),
            Err(err) => self.failures.note(&err.to_string()),
            Ok(_) => {}
        }
        sent
    }
}

/// Export failures, logged at most once a minute with how many there were.
#[derive(Debug)]
struct Failures(RateLimitedCount);

impl Default for Failures {
    fn default() -> Self {
        Self(RateLimitedCount::every(Duration::from_secs(60)))
    }
}

impl Failures {
    fn note(&self, why: &str) {
        if let Some(failures) = self.0.hit() {
            tracing::warn!(failures, "cannot export OpenTelemetry traces: {why}");
        }
    }
}

/// Continues the trace a W3C `traceparent` header names, as `span`'s parent.
pub fn continue_trace(span: &tracing::Span, traceparent: &str) {
    let headers = std::collections::HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let context = TraceContextPropagator::new().extract(&headers);
    let _ = span.set_parent(context);
}
