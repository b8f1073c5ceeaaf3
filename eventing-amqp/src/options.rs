//! Settings of the RabbitMQ transport.

use std::time::Duration;

/// How durable queues are declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueType {
    /// Classic durable queues (the default).
    #[default]
    Classic,
    /// Quorum queues: replicated, for clusters. Applies to durable listener queues and
    /// dead-letter queues; exclusive and expiring queues stay classic.
    Quorum,
}

/// Settings of an [`AmqpTransport`](crate::AmqpTransport).
///
/// ```
/// use std::time::Duration;
/// let options = eventing_amqp::AmqpOptions {
///     queue_type: eventing_amqp::QueueType::Quorum,
///     publish_timeout: Duration::from_secs(10),
///     ..Default::default()
/// };
/// # let _ = options;
/// ```
#[derive(Debug, Clone)]
pub struct AmqpOptions {
    /// The name the connection shows in the management UI and `rabbitmqctl list_connections`.
    pub connection_name: String,
    /// How durable queues are declared.
    pub queue_type: QueueType,
    /// How many channels publishes are spread over (confirms are pipelined on each). One
    /// measured fastest on a 2-core broker host; more can help a broker with cores to spare.
    pub publish_channels: usize,
    /// How long a publish may wait for a lost connection to recover before it fails.
    pub publish_timeout: Duration,
}

impl Default for AmqpOptions {
    fn default() -> Self {
        Self {
            connection_name: "eventing".into(),
            queue_type: QueueType::Classic,
            publish_channels: 1,
            publish_timeout: Duration::from_secs(60),
        }
    }
}

impl AmqpOptions {
    /// Defaults, overridden by `EVENTING_AMQP_QUEUE_TYPE` (`classic` or `quorum`) and
    /// `EVENTING_AMQP_PUBLISH_TIMEOUT_SECS`, for transports selected by URL.
    pub fn from_env() -> Result<Self, String> {
        let mut options = Self::default();
        if let Ok(value) = std::env::var("EVENTING_AMQP_QUEUE_TYPE") {
            options.queue_type = match value.as_str() {
                "classic" | "" => QueueType::Classic,
                "quorum" => QueueType::Quorum,
                other => return Err(format!("EVENTING_AMQP_QUEUE_TYPE is `{other}`; expected `classic` or `quorum`")),
            };
        }
        if let Ok(value) = std::env::var("EVENTING_AMQP_PUBLISH_TIMEOUT_SECS") {
            let seconds: u64 = value
                .parse()
                .map_err(|_| format!("EVENTING_AMQP_PUBLISH_TIMEOUT_SECS is `{value}`; expected whole seconds"))?;
            options.publish_timeout = Duration::from_secs(seconds);
        }
        Ok(options)
    }
}
