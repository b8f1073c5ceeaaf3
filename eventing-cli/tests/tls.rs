//! The operator command over `amqps://`, with the TLS settings services take from the
//! environment (`EVENTING_AMQP_CA_FILE`, a client identity): the broker of
//! `scripts/tls-broker.sh`, found through `EVENTING_TEST_TLS_URL` and `EVENTING_TEST_TLS_DIR`.
//! In CI (`CI` set) a missing TLS broker fails; on a laptop the test is skipped loudly.

mod support;

use std::path::PathBuf;
use std::process::{Output, Stdio};

use support::stderr;

/// The TLS broker's URL and certificate directory, or `None` after a loud message.
fn tls_broker() -> Option<(String, PathBuf)> {
    match (std::env::var("EVENTING_TEST_TLS_URL"), std::env::var_os("EVENTING_TEST_TLS_DIR")) {
        (Ok(url), Some(dir)) => Some((url, PathBuf::from(dir))),
        _ => {
            assert!(std::env::var_os("CI").is_none(), "CI must run the TLS tests: see scripts/tls-broker.sh");
            eprintln!("\n!!! SKIPPED: no TLS broker; run scripts/tls-broker.sh up and eval its `env` !!!\n");
            None
        }
    }
}

/// `eventing dlq list <queue>` against `url` with exactly the TLS variables `tls`.
async fn dlq_list(url: &str, queue: &str, tls: &[(&str, PathBuf)]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_eventing"));
    command.args(["--url", url, "dlq", "list", queue]).stdin(Stdio::null()).kill_on_drop(true);
    for name in [
        "EVENTING_AMQP_CA_FILE",
        "EVENTING_AMQP_CLIENT_CERT_FILE",
        "EVENTING_AMQP_CLIENT_KEY_FILE",
        "EVENTING_AMQP_CLIENT_PKCS12_FILE",
        "EVENTING_AMQP_CLIENT_PKCS12_PASSWORD",
    ] {
        command.env_remove(name);
    }
    for (name, value) in tls {
        command.env(name, value);
    }
    command.output().await.expect("the eventing binary runs")
}

#[tokio::test]
async fn the_command_takes_its_tls_settings_from_the_environment() {
    let Some((url, dir)) = tls_broker() else { return };
    let queue = format!("{}.dead_letter", support::unique("cli-tls-nothing"));

    let untrusted = dlq_list(&url, &queue, &[("EVENTING_AMQP_CA_FILE", dir.join("wrong-ca.pem"))]).await;
    assert!(!untrusted.status.success());
    assert!(stderr(&untrusted).contains("was not trusted"), "{}", stderr(&untrusted));

    // Trusted, with a client certificate as a PKCS#12 archive: the connection is made, and the
    // command gets as far as the broker's answer about the queue.
    let password = PathBuf::from("eventing");
    let connected = dlq_list(
        &url,
        &queue,
        &[
            ("EVENTING_AMQP_CA_FILE", dir.join("ca.pem")),
            ("EVENTING_AMQP_CLIENT_PKCS12_FILE", dir.join("client.p12")),
            ("EVENTING_AMQP_CLIENT_PKCS12_PASSWORD", password),
        ],
    )
    .await;
    assert!(stderr(&connected).contains("does not exist"), "{}", stderr(&connected));

    let half = dlq_list(&url, &queue, &[("EVENTING_AMQP_CLIENT_CERT_FILE", dir.join("client.pem"))]).await;
    assert!(stderr(&half).contains("go together"), "{}", stderr(&half));
}
