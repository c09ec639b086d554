//! The log stream: structured `tracing` events on standard error, human-readable by
//! default or one JSON object per line with `--log-format json`.
//!
//! lakescore's own events are shown from `info` up; libraries' events are not shown (their
//! failures reach the user as lakescore's errors). `LAKESCORE_LOG` takes a filter such as
//! `debug` or `lakescore_jobs=debug,deltalake=warn` instead.

use std::io::IsTerminal;

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

/// The variable holding a log filter that replaces the default.
pub const FILTER_VARIABLE: &str = "LAKESCORE_LOG";

const DEFAULT_FILTER: &str = "off,lakescore=info,lakescore_engine=info,lakescore_connectors=info,lakescore_sql=info,lakescore_jobs=info";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Lines for people: time, level, message, fields
    Text,
    /// One JSON object per line, for log collectors
    Json,
}

/// Installs the log subscriber for the whole process.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_env(FILTER_VARIABLE).unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    match format {
        LogFormat::Text => builder.compact().init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
