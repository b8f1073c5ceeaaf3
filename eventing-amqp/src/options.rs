//! Settings of the RabbitMQ transport.

use std::path::PathBuf;
use std::time::Duration;

use crate::tls::{self, ClientIdentity, TlsError};

/// How durable queues are declared.
///
/// Delay tiers (`<service>.delay.<ms>ms`) are quorum queues whatever this says; exclusive
/// (per-process) queues and expiring queues (non-durable events) stay classic.
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
///     // For `amqps://`: a private CA, and a client certificate for brokers that ask for one.
///     ca_file: Some("/etc/eventing/rabbitmq-ca.pem".into()),
///     client_identity: Some(eventing_amqp::ClientIdentity::Pem {
///         cert_file: "/etc/eventing/client.pem".into(),
///         key_file: "/etc/eventing/client.key".into(),
///     }),
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
    /// For `amqps://`: a PEM bundle of certificate authorities to trust besides the
    /// platform's (a private CA that signed the broker's certificate). Unused by `amqp://`.
    pub ca_file: Option<PathBuf>,
    /// For `amqps://`: the certificate to present to a broker that asks for one. Unused by
    /// `amqp://`.
    pub client_identity: Option<ClientIdentity>,
}

impl Default for AmqpOptions {
    fn default() -> Self {
        Self {
            connection_name: "eventing".into(),
            queue_type: QueueType::Auto,
            publish_channels: 1,
            publish_timeout: Duration::from_secs(60),
            shuffle_endpoints: true,
            ca_file: None,
            client_identity: None,
        }
    }
}

impl AmqpOptions {
    /// Defaults, overridden by `EVENTING_AMQP_QUEUE_TYPE` (`auto`, `classic` or `quorum`),
    /// `EVENTING_AMQP_PUBLISH_TIMEOUT_SECS`, `EVENTING_AMQP_SHUFFLE_ENDPOINTS` (`false` to
    /// try a cluster's nodes in the order written), and the TLS settings:
    /// `EVENTING_AMQP_CA_FILE` (a PEM bundle), a client identity as
    /// `EVENTING_AMQP_CLIENT_CERT_FILE` with `EVENTING_AMQP_CLIENT_KEY_FILE` (PEM), or as
    /// `EVENTING_AMQP_CLIENT_PKCS12_FILE` with `EVENTING_AMQP_CLIENT_PKCS12_PASSWORD`; for
    /// transports selected by URL. An empty TLS variable counts as unset.
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
        options.ca_file = path_var("EVENTING_AMQP_CA_FILE");
        options.client_identity = match (
            path_var("EVENTING_AMQP_CLIENT_CERT_FILE"),
            path_var("EVENTING_AMQP_CLIENT_KEY_FILE"),
            path_var("EVENTING_AMQP_CLIENT_PKCS12_FILE"),
        ) {
            (None, None, None) => None,
            (Some(cert_file), Some(key_file), None) => Some(ClientIdentity::Pem { cert_file, key_file }),
            (None, None, Some(file)) => Some(ClientIdentity::Pkcs12 {
                file,
                password: std::env::var("EVENTING_AMQP_CLIENT_PKCS12_PASSWORD").unwrap_or_default(),
            }),
            (Some(_), None, None) | (None, Some(_), None) => {
                return Err(
                    "EVENTING_AMQP_CLIENT_CERT_FILE and EVENTING_AMQP_CLIENT_KEY_FILE go together: set both".into()
                );
            }
            (_, _, Some(_)) => {
                return Err(
                    "EVENTING_AMQP_CLIENT_PKCS12_FILE and EVENTING_AMQP_CLIENT_CERT_FILE/KEY_FILE are two ways to \
                            give one client identity: set one of them"
                        .into(),
                );
            }
        };
        Ok(options)
    }

    /// The TLS settings in lapin's form, the files read now.
    pub(crate) fn tls(&self) -> Result<lapin::tcp::OwnedTLSConfig, TlsError> {
        tls::load(self.ca_file.as_deref(), self.client_identity.as_ref())
    }
}

/// A path from the environment; unset or empty is `None`.
fn path_var(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).filter(|value| !value.is_empty()).map(PathBuf::from)
}
