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

/// Whether lines are JSON: as configured, or for `auto` whenever the output is not a
/// terminal (CloudWatch, files, pipes).
pub fn is_json(format: LogFormat, terminal: bool) -> bool {
    match format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !terminal,
    }
}

/// Installs the global subscriber. Call once, before any work.
pub fn init(log: &LogSettings, output: Output) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.level));
    let terminal = match output {
        Output::Stdout => std::io::stdout().is_terminal(),
        Output::Stderr => std::io::stderr().is_terminal(),
    };
    let json = is_json(log.format, terminal);
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
}
