//! A binary with no `#[event_listener]` linked: the bus starts, and warns why it will not
//! consume (this file defines none and links no crate that does).

use std::sync::{Arc, Mutex, PoisonError};

/// Log lines written while it is alive, through a `tracing` subscriber of this thread.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn a_binary_without_listeners_warns_that_none_is_linked() {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt().with_writer(logs.clone()).with_ansi(false).finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let bus = eventing::builder().url("memory://no-listeners").start().await.unwrap();
    bus.shutdown().await.unwrap();
    let text = String::from_utf8_lossy(&logs.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned();
    assert!(text.contains("WARN") && text.contains("no #[event_listener] is linked into this binary"), "{text}");
    assert!(text.contains("use my_listeners as _;"), "{text}");
}
