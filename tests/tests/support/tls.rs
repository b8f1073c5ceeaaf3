//! The TLS broker of `scripts/tls-broker.sh`, and the same rule as for the plain broker: in
//! CI (`CI` set) a missing TLS broker fails the test; on a laptop the test is skipped loudly.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// Where the TLS broker is and what it trusts.
#[derive(Debug, Clone)]
pub struct TlsBroker {
    /// `amqps://...` (`EVENTING_TEST_TLS_URL`).
    pub url: String,
    /// The certificate directory (`EVENTING_TEST_TLS_DIR`): `ca.pem`, `client.pem`,
    /// `client.key`, `client.p12` (password `eventing`), `wrong-ca.pem`.
    pub dir: PathBuf,
}

impl TlsBroker {
    /// A file of the certificate directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// The TLS broker when it answers; `None` (after a loud message) on a laptop without one; a
/// panic in CI, where the TLS tests must run.
pub fn reachable_tls_broker() -> Option<TlsBroker> {
    let missing = |why: String| {
        if std::env::var_os("CI").is_some() {
            panic!("the TLS broker is missing ({why}), and CI must run the TLS tests: see scripts/tls-broker.sh");
        }
        eprintln!(
            "\n!!! SKIPPED: {why}; run `scripts/tls-broker.sh up` and `eval \"$(scripts/tls-broker.sh env)\"` to run this test !!!\n"
        );
        None
    };
    let (Ok(url), Some(dir)) = (std::env::var("EVENTING_TEST_TLS_URL"), std::env::var_os("EVENTING_TEST_TLS_DIR"))
    else {
        return missing("EVENTING_TEST_TLS_URL and EVENTING_TEST_TLS_DIR are not set".into());
    };
    let address = url
        .split_once("://")
        .map(|(_, rest)| rest.rsplit_once('@').map_or(rest, |(_, host)| host))
        .map(|rest| rest.split('/').next().unwrap_or(rest).to_owned())
        .unwrap_or_default();
    let reachable = address
        .to_socket_addrs()
        .ok()
        .and_then(|mut addresses| addresses.next())
        .is_some_and(|address| TcpStream::connect_timeout(&address, Duration::from_secs(2)).is_ok());
    if !reachable {
        return missing(format!("nothing answers at {address}"));
    }
    Some(TlsBroker { url, dir: PathBuf::from(dir) })
}
