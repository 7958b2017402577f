//! Logging: `tracing` to stdout (the worker) or stderr (one-shot commands), JSON when not
//! on a terminal, pretty on one. `RUST_LOG` overrides `[log] level`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Stdout,
    Stderr,
}

/// Installs the global subscriber. Call once, before any work.
pub fn init(log: &LogSettings, output: Output) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.level));
    let terminal = match output {
        Output::Stdout => std::io::stdout().is_terminal(),
        Output::Stderr => std::io::stderr().is_terminal(),
    };
    let json = match log.format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !terminal,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(terminal && !json);
    // `try_init` fails only if a subscriber is already set (tests); keep that one.
    let _ = match (json, output) {
        (true, Output::Stdout) => builder
            .json()
            .with_span_list(true)
            .with_current_span(false)
            .try_init(),
        (true, Output::Stderr) => builder
            .json()
            .with_span_list(true)
            .with_current_span(false)
            .with_writer(std::io::stderr)
            .try_init(),
        (false, Output::Stdout) => builder.try_init(),
        (false, Output::Stderr) => builder.with_writer(std::io::stderr).try_init(),
    };
}
