//! RabbitMQ over TLS (`amqps://`, the broker of `scripts/tls-broker.sh`), with peer
//! verification: the conformance suite once, a CA that did not sign the broker's certificate,
//! and client certificates (PEM and PKCS#12) that the broker must see.
//!
//! The suite's buses are built from the URL, as applications are, so they take their TLS
//! settings from the environment: `EVENTING_AMQP_CA_FILE` (which `scripts/tls-broker.sh env`
//! and `.ci/run` export, next to `EVENTING_TEST_TLS_URL` and `EVENTING_TEST_TLS_DIR`).

mod support;

use std::sync::Arc;
use std::time::Duration;

use eventing::message::Message;
use eventing::transport::Transport;
use eventing_amqp::{AmqpOptions, AmqpTransport, ClientIdentity};
use eventing_tests::conformance::{Backend, Scope};
use support::tls::{TlsBroker, reachable_tls_broker};

/// The TLS broker, with the CA from the environment (as a bus built from the URL gets it).
struct Tls {
    broker: TlsBroker,
}

impl Tls {
    async fn admin(&self) -> AmqpTransport {
        let options = trusting(&self.broker).with_connection_name("conformance-tls-admin");
        AmqpTransport::connect(&self.broker.url, options).await.expect("admin connection over TLS")
    }
}

impl Backend for Tls {
    fn builder(&self) -> eventing::Builder {
        eventing::builder().url(self.broker.url.clone())
    }

    async fn transport(&self) -> Arc<dyn Transport> {
        Arc::new(self.admin().await)
    }

    async fn queue_messages(&self, queue: &str) -> Vec<Message> {
        let admin = self.admin().await;
        let messages = admin.peek(queue, 10_000).await.expect("peek over TLS");
        admin.close().await.expect("close");
        messages
    }

    async fn cleanup(&self, scope: &Scope) {
        let admin = self.admin().await;
        for queue in scope.queues() {
            admin.delete_queue(&queue).await.expect("delete queue");
        }
        for exchange in scope.exchanges() {
            admin.delete_exchange(&exchange).await.expect("delete exchange");
        }
        admin.close().await.expect("close");
    }
}

async fn tls() -> Option<Tls> {
    let broker = reachable_tls_broker()?;
    let ca = broker.file("ca.pem");
    let from_env = std::env::var_os("EVENTING_AMQP_CA_FILE");
    assert_eq!(
        from_env.as_deref(),
        Some(ca.as_os_str()),
        "buses built from the URL need EVENTING_AMQP_CA_FILE={} (`scripts/tls-broker.sh env` prints it)",
        ca.display()
    );
    Some(Tls { broker })
}

eventing_tests::conformance_suite!(tls);

/// Options that trust the TLS broker's CA.
fn trusting(broker: &TlsBroker) -> AmqpOptions {
    AmqpOptions::default().with_ca_file(broker.file("ca.pem"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_no_trusted_ca_signed_fails_the_start_and_says_so() {
    let Some(broker) = reachable_tls_broker() else { return };
    let options = AmqpOptions::default().with_ca_file(broker.file("wrong-ca.pem"));
    let connecting = AmqpTransport::connect(&broker.url, options);
    let error = tokio::time::timeout(Duration::from_secs(15), connecting)
        .await
        .expect("fails promptly")
        .expect_err("a certificate from an untrusted CA is refused");
    let text = error.to_string();
    assert!(text.contains("certificate") && text.contains("not trusted"), "{text}");
    assert!(text.contains("EVENTING_AMQP_CA_FILE"), "says how to trust a CA: {text}");
    assert!(!text.contains(":guest@"), "the password leaked: {text}");

    // Without a CA file only the platform's authorities are trusted: not a throw-away CA.
    let error = AmqpTransport::connect(&broker.url, AmqpOptions::default()).await.expect_err("untrusted");
    assert!(error.to_string().contains("not trusted"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_ca_file_is_named() {
    let Some(broker) = reachable_tls_broker() else { return };
    let options = AmqpOptions::default().with_ca_file(broker.file("no-such-ca.pem"));
    let error = AmqpTransport::connect(&broker.url, options).await.expect_err("the CA file does not exist");
    let text = error.to_string();
    assert!(text.contains("CA bundle") && text.contains("no-such-ca.pem"), "{text}");
}

/// A client certificate, as PEM files and as a PKCS#12 archive: the broker sees the
/// certificate's subject on the connection (`rabbitmqctl list_connections peer_cert_subject`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_sees_the_client_certificate() {
    let Some(broker) = reachable_tls_broker() else { return };
    let identities = [
        ("pem", Some(ClientIdentity::pem(broker.file("client.pem"), broker.file("client.key")))),
        ("pkcs12", Some(ClientIdentity::pkcs12(broker.file("client.p12"), "eventing"))),
        ("none", None),
    ];
    for (form, client_identity) in identities {
        let name = format!("tls-client-cert-{form}-{}", std::process::id());
        let presents = client_identity.is_some();
        let mut options = trusting(&broker).with_connection_name(name.clone());
        options.client_identity = client_identity;
        let transport = AmqpTransport::connect(&broker.url, options).await.expect("connects over TLS");
        let seen = peer_cert_subject(&name);
        transport.close().await.expect("close");
        if presents {
            assert!(seen.contains("CN=eventing-tls-client"), "{form}: the broker saw `{seen}`");
        } else {
            assert!(!seen.contains("CN=eventing-tls-client"), "no certificate was given, yet the broker saw: {seen}");
        }
    }
}

/// The certificate subject the TLS broker saw on the connection named `name`.
fn peer_cert_subject(name: &str) -> String {
    let output = std::process::Command::new("rabbitmqctl")
        .args(["-n", "rabbit-tls@localhost", "list_connections", "--quiet", "--no-table-headers"])
        .args(["client_properties", "peer_cert_subject"])
        .output()
        .expect("rabbitmqctl runs");
    let listing = String::from_utf8_lossy(&output.stdout);
    let line = listing
        .lines()
        .find(|line| line.contains(&format!("\"{name}\"")))
        .unwrap_or_else(|| panic!("no connection `{name}` on the TLS broker: {listing}"));
    line.to_owned()
}
