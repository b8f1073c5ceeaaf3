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

/// Deliveries handled so far, and a signal when the expected number is reached: what a
/// benchmark's listeners share with the clock.
#[derive(Debug, Default)]
pub struct Progress {
    /// Deliveries handled since the last [`expect`](Self::expect).
    pub handled: std::sync::atomic::AtomicU64,
    /// How many to wait for.
    pub target: std::sync::atomic::AtomicU64,
    /// Notified once `handled` reaches `target`.
    pub done: tokio::sync::Notify,
}

impl Progress {
    /// Starts counting afresh towards `total`.
    pub fn expect(&self, total: u64) {
        self.handled.store(0, std::sync::atomic::Ordering::Relaxed);
        self.target.store(total, std::sync::atomic::Ordering::Relaxed);
    }

    /// Counts one handled delivery; the last one expected signals `done`.
    pub fn handled_one(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        if self.handled.fetch_add(1, Relaxed) + 1 == self.target.load(Relaxed) {
            self.done.notify_one();
        }
    }
}

/// A memory figure of this process in KiB from /proc/self/status (Linux): `"VmRSS:"` for
/// the resident size now, `"VmHWM:"` for its peak.
pub fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find(|line| line.starts_with(field))?.split_whitespace().nth(1)?.parse().ok()
}
