//! Settings of the RabbitMQ transport.

use std::ffi::OsString;
use std::num::ParseIntError;
use std::path::PathBuf;
use std::time::Duration;

use crate::tls::{self, ClientIdentity, TlsError};

/// How durable queues are declared.
///
/// Delay tiers (`<service>.delay.<ms>ms`) are quorum queues whatever this says; exclusive
/// (per-process) queues and expiring queues (non-durable events) stay classic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
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
    #[must_use]
    pub fn resolve(self, endpoints: usize) -> Self {
        match self {
            Self::Auto if endpoints > 1 => Self::Quorum,
            Self::Auto => Self::Classic,
            other => other,
        }
    }
}

/// Settings of an [`AmqpTransport`](crate::AmqpTransport): [`AmqpOptions::default`] (or
/// [`AmqpOptions::from_env`]) with the `with_*` methods.
///
/// ```
/// use std::time::Duration;
/// use eventing_amqp::{AmqpOptions, ClientIdentity, QueueType};
///
/// let options = AmqpOptions::default()
///     .with_queue_type(QueueType::Quorum)
///     .with_publish_timeout(Duration::from_secs(10))
///     // For `amqps://`: a private CA, and a client certificate for brokers that ask for one.
///     .with_ca_file("/etc/eventing/rabbitmq-ca.pem")
///     .with_client_identity(ClientIdentity::pem("/etc/eventing/client.pem", "/etc/eventing/client.key"));
/// assert_eq!(options.queue_type, QueueType::Quorum);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
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

/// Why [`AmqpOptions::from_env`] could not read the environment: each names the variable
/// and, where one is at fault, its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OptionsError {
    /// A variable holds a value it does not take.
    #[error("{variable} is `{value}`; expected {expected}")]
    InvalidValue {
        /// The variable, e.g. `EVENTING_AMQP_QUEUE_TYPE`.
        variable: &'static str,
        /// Its value.
        value: String,
        /// The values it takes, e.g. `` `auto`, `classic` or `quorum` ``.
        expected: &'static str,
    },
    /// A number of seconds that is not a whole number.
    #[error("{variable} is `{value}`; expected whole seconds")]
    NotSeconds {
        /// The variable, e.g. `EVENTING_AMQP_PUBLISH_TIMEOUT_SECS`.
        variable: &'static str,
        /// Its value.
        value: String,
        /// What the number parser found.
        #[source]
        source: ParseIntError,
    },
    /// Only one of the client certificate and its key is given.
    #[error(
        "EVENTING_AMQP_CLIENT_CERT_FILE and EVENTING_AMQP_CLIENT_KEY_FILE go together: set both ({missing} is unset)"
    )]
    IncompletePem {
        /// The variable that is unset.
        missing: &'static str,
    },
    /// A client identity is given both as PEM files and as a PKCS#12 archive.
    #[error(
        "EVENTING_AMQP_CLIENT_PKCS12_FILE and EVENTING_AMQP_CLIENT_CERT_FILE/KEY_FILE are two ways to give one \
         client identity: set one of them"
    )]
    TwoIdentities,
}

impl AmqpOptions {
    /// Sets the name the connection shows in the management UI (default `eventing`).
    #[must_use]
    pub fn with_connection_name(mut self, name: impl Into<String>) -> Self {
        self.connection_name = name.into();
        self
    }

    /// Sets how durable queues are declared (default [`QueueType::Auto`]).
    #[must_use]
    pub fn with_queue_type(mut self, queue_type: QueueType) -> Self {
        self.queue_type = queue_type;
        self
    }

    /// Sets how many channels publishes are spread over (default 1).
    #[must_use]
    pub fn with_publish_channels(mut self, channels: usize) -> Self {
        self.publish_channels = channels;
        self
    }

    /// Sets how long a publish may wait for a lost connection to recover (default 60 s).
    #[must_use]
    pub fn with_publish_timeout(mut self, timeout: Duration) -> Self {
        self.publish_timeout = timeout;
        self
    }

    /// Whether to try a cluster's nodes in an order shuffled once per process (default
    /// `true`) or in the order written (`false`).
    #[must_use]
    pub fn with_shuffle_endpoints(mut self, shuffle: bool) -> Self {
        self.shuffle_endpoints = shuffle;
        self
    }

    /// For `amqps://`: trusts the certificate authorities of this PEM bundle besides the
    /// platform's.
    #[must_use]
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// For `amqps://`: presents this certificate to a broker that asks for one.
    #[must_use]
    pub fn with_client_identity(mut self, identity: ClientIdentity) -> Self {
        self.client_identity = Some(identity);
        self
    }

    /// Defaults, overridden by `EVENTING_AMQP_QUEUE_TYPE` (`auto`, `classic` or `quorum`),
    /// `EVENTING_AMQP_PUBLISH_TIMEOUT_SECS`, `EVENTING_AMQP_SHUFFLE_ENDPOINTS` (`false` to
    /// try a cluster's nodes in the order written), and the TLS settings:
    /// `EVENTING_AMQP_CA_FILE` (a PEM bundle), a client identity as
    /// `EVENTING_AMQP_CLIENT_CERT_FILE` with `EVENTING_AMQP_CLIENT_KEY_FILE` (PEM), or as
    /// `EVENTING_AMQP_CLIENT_PKCS12_FILE` with `EVENTING_AMQP_CLIENT_PKCS12_PASSWORD`; for
    /// transports selected by URL. An empty TLS variable counts as unset.
    pub fn from_env() -> Result<Self, OptionsError> {
        Self::from_vars(|name| std::env::var_os(name))
    }

    /// [`from_env`](Self::from_env) with the variables from `lookup`.
    fn from_vars(lookup: impl Fn(&str) -> Option<OsString>) -> Result<Self, OptionsError> {
        // Unset, or not Unicode (ignored, as `std::env::var` would).
        let var = |name: &str| lookup(name).and_then(|value| value.into_string().ok());
        // Unset or empty is `None`.
        let path_var = |name: &str| lookup(name).filter(|value| !value.is_empty()).map(PathBuf::from);
        let mut options = Self::default();
        if let Some(value) = var("EVENTING_AMQP_QUEUE_TYPE") {
            options.queue_type = match value.as_str() {
                "auto" | "" => QueueType::Auto,
                "classic" => QueueType::Classic,
                "quorum" => QueueType::Quorum,
                _ => {
                    return Err(OptionsError::InvalidValue {
                        variable: "EVENTING_AMQP_QUEUE_TYPE",
                        value,
                        expected: "`auto`, `classic` or `quorum`",
                    });
                }
            };
        }
        if let Some(value) = var("EVENTING_AMQP_PUBLISH_TIMEOUT_SECS") {
            let seconds: u64 = value.parse().map_err(|source| OptionsError::NotSeconds {
                variable: "EVENTING_AMQP_PUBLISH_TIMEOUT_SECS",
                value: value.clone(),
                source,
            })?;
            options.publish_timeout = Duration::from_secs(seconds);
        }
        if let Some(value) = var("EVENTING_AMQP_SHUFFLE_ENDPOINTS") {
            options.shuffle_endpoints = match value.as_str() {
                "true" | "1" | "" => true,
                "false" | "0" => false,
                _ => {
                    return Err(OptionsError::InvalidValue {
                        variable: "EVENTING_AMQP_SHUFFLE_ENDPOINTS",
                        value,
                        expected: "`true` or `false`",
                    });
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
            (Some(cert_file), Some(key_file), None) => Some(ClientIdentity::pem(cert_file, key_file)),
            (None, None, Some(file)) => {
                Some(ClientIdentity::pkcs12(file, var("EVENTING_AMQP_CLIENT_PKCS12_PASSWORD").unwrap_or_default()))
            }
            (Some(_), None, None) => {
                return Err(OptionsError::IncompletePem { missing: "EVENTING_AMQP_CLIENT_KEY_FILE" });
            }
            (None, Some(_), None) => {
                return Err(OptionsError::IncompletePem { missing: "EVENTING_AMQP_CLIENT_CERT_FILE" });
            }
            (_, _, Some(_)) => return Err(OptionsError::TwoIdentities),
        };
        Ok(options)
    }

    /// The TLS settings in lapin's form, the files read now.
    pub(crate) fn tls(&self) -> Result<lapin::tcp::OwnedTLSConfig, TlsError> {
        tls::load(self.ca_file.as_deref(), self.client_identity.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::ffi::OsString;
    use std::time::Duration;

    use super::{AmqpOptions, ClientIdentity, OptionsError, QueueType};

    fn from(vars: &[(&str, &str)]) -> Result<AmqpOptions, OptionsError> {
        let vars: HashMap<String, OsString> =
            vars.iter().map(|(name, value)| ((*name).to_owned(), OsString::from(value))).collect();
        AmqpOptions::from_vars(|name| vars.get(name).cloned())
    }

    #[test]
    fn settings_come_from_the_variables() {
        let options = from(&[
            ("EVENTING_AMQP_QUEUE_TYPE", "quorum"),
            ("EVENTING_AMQP_PUBLISH_TIMEOUT_SECS", "7"),
            ("EVENTING_AMQP_SHUFFLE_ENDPOINTS", "false"),
            ("EVENTING_AMQP_CLIENT_PKCS12_FILE", "/etc/client.p12"),
            ("EVENTING_AMQP_CA_FILE", ""),
        ])
        .expect("valid");
        assert_eq!(options.queue_type, QueueType::Quorum);
        assert_eq!(options.publish_timeout, Duration::from_secs(7));
        assert!(!options.shuffle_endpoints);
        assert_eq!(options.ca_file, None, "empty counts as unset");
        assert_eq!(options.client_identity, Some(ClientIdentity::pkcs12("/etc/client.p12", "")));
    }

    #[test]
    fn mistakes_are_typed_and_name_the_variable_and_its_value() {
        let error = from(&[("EVENTING_AMQP_QUEUE_TYPE", "mirrored")]).expect_err("unknown type");
        assert_eq!(
            error,
            OptionsError::InvalidValue {
                variable: "EVENTING_AMQP_QUEUE_TYPE",
                value: "mirrored".into(),
                expected: "`auto`, `classic` or `quorum`",
            }
        );
        assert_eq!(error.to_string(), "EVENTING_AMQP_QUEUE_TYPE is `mirrored`; expected `auto`, `classic` or `quorum`");

        let error = from(&[("EVENTING_AMQP_PUBLISH_TIMEOUT_SECS", "1.5")]).expect_err("not whole seconds");
        assert!(matches!(&error, OptionsError::NotSeconds { value, .. } if value == "1.5"), "{error:?}");
        assert_eq!(error.to_string(), "EVENTING_AMQP_PUBLISH_TIMEOUT_SECS is `1.5`; expected whole seconds");
        assert!(std::error::Error::source(&error).is_some(), "the parser's error is kept as the cause");

        let error = from(&[("EVENTING_AMQP_SHUFFLE_ENDPOINTS", "maybe")]).expect_err("not a boolean");
        assert!(matches!(error, OptionsError::InvalidValue { variable: "EVENTING_AMQP_SHUFFLE_ENDPOINTS", .. }));

        let error = from(&[("EVENTING_AMQP_CLIENT_CERT_FILE", "/c.pem")]).expect_err("no key");
        assert_eq!(error, OptionsError::IncompletePem { missing: "EVENTING_AMQP_CLIENT_KEY_FILE" });
        assert!(error.to_string().contains("go together"), "{error}");

        let error =
            from(&[("EVENTING_AMQP_CLIENT_KEY_FILE", "/c.key"), ("EVENTING_AMQP_CLIENT_PKCS12_FILE", "/c.p12")])
                .expect_err("two identities");
        assert_eq!(error, OptionsError::TwoIdentities);
    }

    #[test]
    fn every_setting_has_a_with_method() {
        let options = AmqpOptions::default()
            .with_connection_name("billing@host-1")
            .with_queue_type(QueueType::Classic)
            .with_publish_channels(2)
            .with_publish_timeout(Duration::from_secs(5))
            .with_shuffle_endpoints(false)
            .with_ca_file("/ca.pem")
            .with_client_identity(ClientIdentity::pem("/c.pem", "/c.key"));
        assert_eq!(options.connection_name, "billing@host-1");
        assert_eq!(options.queue_type, QueueType::Classic);
        assert_eq!(options.publish_channels, 2);
        assert_eq!(options.publish_timeout, Duration::from_secs(5));
        assert!(!options.shuffle_endpoints);
        assert_eq!(options.ca_file.as_deref(), Some(std::path::Path::new("/ca.pem")));
        assert_eq!(options.client_identity, Some(ClientIdentity::pem("/c.pem", "/c.key")));
    }
}
