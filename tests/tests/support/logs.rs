//! Logs in tests: to the test's captured output, or captured as text to assert on.

use std::io::Write;
use std::sync::{Arc, Mutex};

/// Logs go to the test's captured output (shown when a test fails); `RUST_LOG` overrides
/// the filter.
pub fn init_logs() {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info,lapin=warn".into());
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter(filter).try_init();
}

/// Every log line written through it, as text: a writer for a global subscriber in test
/// binaries that assert on what lapin logs from its own threads.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Installs the global subscriber at `filter` writing here (once per test binary).
    pub fn install(&self, filter: &str) {
        let writer = self.clone();
        tracing_subscriber::fmt().with_ansi(false).with_env_filter(filter).with_writer(move || writer.clone()).init();
    }

    /// What was logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
