//! Logging and OpenTelemetry.
//!
//! Logs: `tracing` to stdout (the worker) or stderr (one-shot commands), JSON when not on a
//! terminal, pretty on one. `RUST_LOG` overrides `[log] level`.
//!
//! OpenTelemetry, off unless `[telemetry] otlp_endpoint` or a standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` / `…_TRACES_ENDPOINT` / `…_METRICS_ENDPOINT` variable is
//! set (and `OTEL_SDK_DISABLED` is not `true`): the `tracing` spans are exported as traces
//! and the [`crate::metrics`] instruments as metrics, over OTLP/HTTP (protobuf). When off,
//! no exporter exists and the instruments are no-ops. [`Telemetry::shutdown`] flushes.

use std::io::IsTerminal;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, LogSettings};

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Stdout,
    Stderr,
}

/// Whether lines are JSON: as configured, or for `auto` whenever the output is not a
/// terminal (CloudWatch, files, pipes).
pub fn is_json(format: LogFormat, terminal: bool) -> bool {
    match format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !terminal,
    }
}

/// Whether OpenTelemetry export is on, given the config's endpoint and the environment.
pub fn otel_enabled(configured: Option<&str>, env: impl Fn(&str) -> Option<String>) -> bool {
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return false;
    }
    configured.is_some()
        || [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        ]
        .iter()
        .any(|name| env(name).is_some_and(|v| !v.is_empty()))
}

/// The exporters, when on; flush them with [`Telemetry::shutdown`].
#[derive(Default)]
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

impl Telemetry {
    /// [`Telemetry::shutdown`], waiting at most `limit` for it (an unreachable collector
    /// must not hold up the exit); returns whether it finished.
    pub fn shutdown_within(self, limit: std::time::Duration) -> bool {
        if self.tracer.is_none() && self.meter.is_none() {
            return true;
        }
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            self.shutdown();
            let _ = done.send(());
        });
        let flushed = finished.recv_timeout(limit).is_ok();
        if !flushed {
            eprintln!("telemetry: flush still running after {limit:?}; exiting without it");
        }
        flushed
    }

    /// Exports what is buffered and stops the exporters.
    pub fn shutdown(self) {
        if let Some(tracer) = self.tracer {
            if let Err(e) = tracer.shutdown() {
                eprintln!("telemetry: flushing traces failed: {e}");
            }
        }
        if let Some(meter) = self.meter {
            if let Err(e) = meter.shutdown() {
                eprintln!("telemetry: flushing metrics failed: {e}");
            }
        }
    }
}

/// Installs the global subscriber (and, when on, the OpenTelemetry exporters). Call once,
/// before any work, from inside no async runtime.
pub fn init(log: &LogSettings, output: Output) -> Telemetry {
    let env = |name: &str| std::env::var(name).ok();
    let mut telemetry = Telemetry::default();
    let mut otel_layer = None;
    if otel_enabled(log.otlp_endpoint.as_deref(), env) {
        match exporters(log.otlp_endpoint.as_deref()) {
            Ok((tracer, meter)) => {
                let layer = tracing_opentelemetry::layer()
                    .with_tracer(tracer.tracer("lakeworker"))
                    .with_filter(EnvFilter::new("lakeworker=info"));
                otel_layer = Some(layer);
                opentelemetry::global::set_meter_provider(meter.clone());
                telemetry.tracer = Some(tracer);
                telemetry.meter = Some(meter);
            }
            Err(e) => eprintln!("telemetry: OpenTelemetry export is off: {e}"),
        }
    }

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.level));
    let terminal = match output {
        Output::Stdout => std::io::stdout().is_terminal(),
        Output::Stderr => std::io::stderr().is_terminal(),
    };
    let json = is_json(log.format, terminal);
    let fmt = tracing_subscriber::fmt::layer().with_ansi(terminal && !json);
    let fmt: Box<dyn Layer<_> + Send + Sync> = match (json, output) {
        (true, Output::Stdout) => fmt
            .json()
            .with_span_list(true)
            .with_current_span(false)
            .boxed(),
        (true, Output::Stderr) => fmt
            .json()
            .with_span_list(true)
            .with_current_span(false)
            .with_writer(std::io::stderr)
            .boxed(),
        (false, Output::Stdout) => fmt.boxed(),
        (false, Output::Stderr) => fmt.with_writer(std::io::stderr).boxed(),
    };
    // `try_init` fails only if a subscriber is already set (tests); keep that one.
    let _ = tracing_subscriber::registry()
        .with(otel_layer)
        .with(fmt.with_filter(filter))
        .try_init();
    telemetry
}

/// The OTLP/HTTP trace and metric pipelines. `base` (from the config) gets the signal
/// paths appended; without it the exporters read the `OTEL_EXPORTER_OTLP_*` variables.
fn exporters(
    base: Option<&str>,
) -> Result<(SdkTracerProvider, SdkMeterProvider), opentelemetry_otlp::ExporterBuildError> {
    let mut resource = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name("lakeworker");
    }
    let resource = resource.build();
    let endpoint = |path: &str| base.map(|b| format!("{}/{path}", b.trim_end_matches('/')));

    let mut spans = opentelemetry_otlp::SpanExporter::builder().with_http();
    if let Some(url) = endpoint("v1/traces") {
        spans = spans.with_endpoint(url);
    }
    let tracer = SdkTracerProvider::builder()
        .with_batch_exporter(spans.build()?)
        .with_resource(resource.clone())
        .build();

    let mut metrics = opentelemetry_otlp::MetricExporter::builder().with_http();
    if let Some(url) = endpoint("v1/metrics") {
        metrics = metrics.with_endpoint(url);
    }
    let meter = SdkMeterProvider::builder()
        .with_periodic_exporter(metrics.build()?)
        .with_resource(resource)
        .build();
    Ok((tracer, meter))
}

/// The current span's OpenTelemetry trace id, for log lines (`None` when export is off).
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let context = span.context();
    let id = context.span().span_context().trace_id();
    (id != opentelemetry::trace::TraceId::INVALID).then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_is_json_off_a_terminal_and_pretty_on_one() {
        assert!(is_json(LogFormat::Auto, false));
        assert!(!is_json(LogFormat::Auto, true));
        assert!(is_json(LogFormat::Json, true));
        assert!(!is_json(LogFormat::Pretty, false));
    }

    #[test]
    fn telemetry_is_off_unless_an_endpoint_is_given() {
        let none = |_: &str| None;
        assert!(!otel_enabled(None, none));
        assert!(otel_enabled(Some("http://c:4318"), none));
        let env =
            |name: &str| (name == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| "http://c:4318".into());
        assert!(otel_enabled(None, env));
        let disabled = |name: &str| match name {
            "OTEL_SDK_DISABLED" => Some("TRUE".into()),
            _ => Some("http://c:4318".into()),
        };
        assert!(!otel_enabled(Some("http://c:4318"), disabled));
    }
}
