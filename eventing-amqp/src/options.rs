//! Settings of the RabbitMQ transport.

use std::time::Duration;

/// How durable queues are declared.
///
/// Retry tiers of durable events are quorum queues whatever this says (they dead-letter
/// at-least-once); exclusive (per-process) queues and expiring queues (non-durable events)
/// stay classic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueType {
    /// Quorum when the URL lists several endpoints (a cluster), classic for one: existing
    /// single-node deployments keep their classic queues (declaring an existing classic
    /// queue as quorum fails with `PRECONDITION_FAILED`). The default. On a cluster it also
    /// makes the expiring shared queues of non-durable events quorum queues, so that no
    /// queue lives on one node only (which would keep its connections from failing over).
    #[default]
    Auto,
    /// Classic durable queues: for a single node, or to keep queues declared before.
    Classic,
    /// Quorum queues: replicated (Raft) over the cluster, so a publisher confirm means a
    /// majority of the nodes wrote the message and a queue survives the loss of a minority
    /// of nodes. Applies to durable listener queues and dead-letter queues.
    Quorum,
}

impl QueueType {
    /// `Auto` decided by the number of endpoints; the others as they are.
    pub fn resolve(self, endpoints: usize) -> Self {
        match self {
            Self::Auto if endpoints > 1 => Self::Quorum,
            Self::Auto => Self::Classic,
            other => other,
        }
    }
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
    /// With several endpoints in the URL: try them in an order shuffled once per process
    /// (the default, so processes spread over the nodes), or in the order written (`false`).
    pub shuffle_endpoints: bool,
}

impl Default for AmqpOptions {
    fn default() -> Self {
        Self {
            connection_name: "eventing".into(),
            queue_type: QueueType::Auto,
            publish_channels: 1,
            publish_timeout: Duration::from_secs(60),
            shuffle_endpoints: true,
        }
    }
}

impl AmqpOptions {
    /// Defaults, overridden by `EVENTING_AMQP_QUEUE_TYPE` (`auto`, `classic` or `quorum`),
    /// `EVENTING_AMQP_PUBLISH_TIMEOUT_SECS` and `EVENTING_AMQP_SHUFFLE_ENDPOINTS` (`false` to
    /// try a cluster's nodes in the order written), for transports selected by URL.
    pub fn from_env() -> Result<Self, String> {
        let mut options = Self::default();
        if let Ok(value) = std::env::var("EVENTING_AMQP_QUEUE_TYPE") {
            options.queue_type = match value.as_str() {
                "auto" | "" => QueueType::Auto,
                "classic" => QueueType::Classic,
                "quorum" => QueueType::Quorum,
                other => {
                    return Err(format!(
                        "EVENTING_AMQP_QUEUE_TYPE is `{other}`; expected `auto`, `classic` or `quorum`"
                    ));
                }
            };
        }
        if let Ok(value) = std::env::var("EVENTING_AMQP_PUBLISH_TIMEOUT_SECS") {
            let seconds: u64 = value
                .parse()
                .map_err(|_| format!("EVENTING_AMQP_PUBLISH_TIMEOUT_SECS is `{value}`; expected whole seconds"))?;
            options.publish_timeout = Duration::from_secs(seconds);
        }
        if let Ok(value) = std::env::var("EVENTING_AMQP_SHUFFLE_ENDPOINTS") {
            options.shuffle_endpoints = match value.as_str() {
                "true" | "1" | "" => true,
                "false" | "0" => false,
                other => {
                    return Err(format!("EVENTING_AMQP_SHUFFLE_ENDPOINTS is `{other}`; expected `true` or `false`"));
                }
            };
        }
        Ok(options)
    }
}
