//! [`Health`]: whether a bus can do its work right now, for readiness probes.

/// A snapshot of a bus's health, from [`Bus::health`](crate::Bus::health).
///
/// ```rust,standalone_crate
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), eventing::Error> {
/// let bus = eventing::builder().start().await?;
/// assert!(bus.health().is_ready());
/// bus.shutdown().await?;
/// assert!(!bus.health().is_ready());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    running: bool,
    connected: bool,
    blocked: bool,
    consumers: usize,
    consumers_running: usize,
}

impl Health {
    pub(crate) fn new(
        running: bool,
        connected: bool,
        blocked: bool,
        consumers: usize,
        consumers_running: usize,
    ) -> Self {
        Self { running, connected, blocked, consumers, consumers_running }
    }

    /// Ready to take traffic: not shut down, connected to the broker, not blocked by it,
    /// and every listener's consumer running.
    pub fn is_ready(&self) -> bool {
        self.running && self.connected && !self.blocked && self.consumers_running == self.consumers
    }

    /// Whether the broker blocks publishes now (a RabbitMQ memory or disk alarm): they
    /// wait, up to the publish timeout, and then fail as unconfirmed.
    pub fn is_blocked(&self) -> bool {
        self.blocked
    }

    /// Whether the transport's connection is up (on RabbitMQ: false while it reconnects).
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// How many listeners this bus consumes for.
    pub fn consumers(&self) -> usize {
        self.consumers
    }

    /// How many of them are consuming now.
    pub fn consumers_running(&self) -> usize {
        self.consumers_running
    }
}
