//! `[log]` and `[telemetry]`, which together make [`LogSettings`]: the log format and
//! filter, and where OpenTelemetry traces and metrics go.

use serde::Deserialize;

use super::checks::choice;
use super::Problems;

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A tracing filter directive such as `info` or `lakeworker=debug,info`.
    pub level: String,
    /// `[telemetry] otlp_endpoint`: the OTLP/HTTP base URL (`…/v1/traces` and
    /// `…/v1/metrics` are appended). Unset: the standard `OTEL_EXPORTER_OTLP_*` variables
    /// decide, and without them telemetry is off.
    pub otlp_endpoint: Option<String>,
}

/// Log output format. `auto` is JSON when stdout is not a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Auto,
    Json,
    Pretty,
}

const LOG_FORMATS: [(&str, LogFormat); 3] = [
    ("auto", LogFormat::Auto),
    ("json", LogFormat::Json),
    ("pretty", LogFormat::Pretty),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    #[serde(default = "default_log_format")]
    format: String,
    #[serde(default = "default_log_level")]
    level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            format: default_log_format(),
            level: default_log_level(),
        }
    }
}

fn default_log_format() -> String {
    "auto".into()
}

fn default_log_level() -> String {
    "info".into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTelemetry {
    otlp_endpoint: Option<String>,
}

impl RawLog {
    /// `format`; `level` is checked by [`RawLog::validate`], after `[catalog]` and `[health]`
    /// (the order problems are reported in).
    pub(super) fn validate_format(&self, p: &mut Problems) -> Option<LogFormat> {
        choice(p, "log.format", &self.format, &LOG_FORMATS)
    }

    /// `level`, then the settings with the `format` [`RawLog::validate_format`] read and the
    /// endpoint of `[telemetry]`. `None` when the format is unknown (a problem is recorded).
    pub(super) fn validate(
        self,
        format: Option<LogFormat>,
        telemetry: RawTelemetry,
        p: &mut Problems,
    ) -> Option<LogSettings> {
        p.check(
            tracing_subscriber::EnvFilter::try_new(&self.level).is_ok(),
            "log.level",
            format!("{:?} is not a tracing filter such as \"info\"", self.level),
        );
        Some(LogSettings {
            format: format?,
            level: self.level,
            otlp_endpoint: telemetry.otlp_endpoint,
        })
    }
}

impl RawTelemetry {
    pub(super) fn validate(&self, p: &mut Problems) {
        if let Some(endpoint) = &self.otlp_endpoint {
            p.check(
                endpoint.starts_with("http://") || endpoint.starts_with("https://"),
                "telemetry.otlp_endpoint",
                format!("{endpoint:?} is not an http(s):// URL such as \"http://collector:4318\""),
            );
        }
    }
}
