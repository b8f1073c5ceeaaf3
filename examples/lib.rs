//! Helpers shared by the example programs.

use std::io::IsTerminal;

/// Logs through `tracing` to stderr, at `info` unless `RUST_LOG` says otherwise, with
/// colours only when stderr is a terminal (so redirected logs are plain text). Standard
/// output stays free for what a program prints as its result.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .compact()
        .init();
}
