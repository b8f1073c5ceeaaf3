//! From a URL to a transport: `memory://` is built in, other schemes come from linked
//! transport crates through [`TransportFactory`].

use std::sync::Arc;

use crate::Error;
use crate::memory::MemoryBroker;
use crate::transport::{ConnectOptions, Transport, TransportFactory, redact_url};

/// The scheme of the built-in transport.
const MEMORY: &str = "memory";

pub(crate) async fn connect(url: &str, service: &str, process_id: &str) -> Result<Arc<dyn Transport>, Error> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(Error::InvalidUrl { url: redact_url(url), reason: "expected `<scheme>://...`".into() });
    };
    if scheme == MEMORY {
        let name = rest.trim_end_matches('/');
        return Ok(Arc::new(MemoryBroker::named(name).transport()));
    }
    let Some(factory) =
        inventory::iter::<TransportFactory>.into_iter().find(|factory| factory.schemes.contains(&scheme))
    else {
        return Err(Error::UnknownScheme {
            scheme: scheme.to_owned(),
            url: redact_url(url),
            known: known_schemes().join(", "),
        });
    };
    let options = ConnectOptions::new(url, service, process_id);
    Ok((factory.connect)(options).await?)
}

/// `messaging.system` of a transport that does not name itself and was not picked by URL.
pub(crate) const OTHER_SYSTEM: &str = "other";

/// `messaging.system` of a transport connected from `url` that does not name itself
/// ([`Transport::system`]).
pub(crate) fn system_of(url: &str) -> &'static str {
    match url.split_once("://").map(|(scheme, _)| scheme) {
        Some("amqp" | "amqps") => "rabbitmq",
        Some(MEMORY) => "memory",
        _ => OTHER_SYSTEM,
    }
}

/// Every scheme a URL may use in this program, `memory` first.
pub(crate) fn known_schemes() -> Vec<&'static str> {
    let mut schemes = vec![MEMORY];
    for factory in inventory::iter::<TransportFactory> {
        for scheme in factory.schemes {
            if !schemes.contains(scheme) {
                schemes.push(scheme);
            }
        }
    }
    schemes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_names_the_messaging_system_of_a_transport_that_does_not() {
        assert_eq!(system_of("amqp://guest:guest@localhost:5672/%2f"), "rabbitmq");
        assert_eq!(system_of("amqps://broker.example"), "rabbitmq");
        assert_eq!(system_of("memory://"), "memory");
        assert_eq!(system_of("kafka://broker"), OTHER_SYSTEM);
        assert_eq!(system_of("no scheme"), OTHER_SYSTEM);
    }
}
