//! Opening a connection, and saying precisely what is wrong when it fails.

use eventing::transport::{TransportError, redact_url};
use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use lapin::tcp::OwnedTLSConfig;
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{Connection, ConnectionProperties, ErrorKind};

use crate::options::AmqpOptions;
use crate::tls::TlsError;

/// Opens one connection, with `options`' TLS settings for `amqps://`. Fails at once (no
/// retry) with an error naming the host, port, vhost, user or certificate at fault; the URL's
/// password is never shown.
pub(crate) async fn open(
    url: &str,
    connection_name: &str,
    options: &AmqpOptions,
) -> Result<Connection, TransportError> {
    let uri: AMQPUri = url.parse().map_err(|reason| TransportError::Connect {
        url: redact_url(url),
        reason: format!("not an AMQP URL: {reason}"),
    })?;
    let tls = tls_config(&uri, options)
        .map_err(|error| TransportError::Connect { url: redact_url(url), reason: error.to_string() })?;
    let runtime = lapin::runtime::default_runtime().map_err(|error| connect_error(url, &uri, &error))?;
    let properties = ConnectionProperties::default().with_connection_name(connection_name.into());
    Connection::connect_uri_with_config(uri.clone(), properties, tls, runtime)
        .await
        .map_err(|error| connect_error(url, &uri, &error))
}

/// `options`' TLS settings, read now, for an `amqps://` URL; nothing for `amqp://`.
pub(crate) fn tls_config(uri: &AMQPUri, options: &AmqpOptions) -> Result<OwnedTLSConfig, TlsError> {
    if uri.scheme != AMQPScheme::AMQPS {
        return Ok(OwnedTLSConfig::default());
    }
    options.tls()
}

/// Which part of the URL was wrong, from lapin's error.
fn connect_error(url: &str, uri: &AMQPUri, error: &lapin::Error) -> TransportError {
    let host = &uri.authority.host;
    let port = uri.authority.port;
    let user = &uri.authority.userinfo.username;
    let vhost = &uri.vhost;
    if let ErrorKind::IOError(io) = error.kind()
        && let Some(reason) = certificate_problem(uri, io)
    {
        return TransportError::Connect { url: redact_url(url), reason };
    }
    let reason = match error.kind() {
        ErrorKind::IOError(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!("nothing accepts connections at {host}:{port} (connection refused): check the host and port")
        }
        ErrorKind::IOError(io) if uri.scheme == AMQPScheme::AMQPS && tls_mismatch(io) => format!(
            "the TLS handshake with {host}:{port} failed ({io}): is this a plain AMQP port? `amqps://` needs \
             RabbitMQ's TLS listener (5671 by default); use `amqp://` for a plain one"
        ),
        ErrorKind::IOError(io) => format!("cannot reach {host}:{port}: {io}"),
        ErrorKind::ProtocolError(amqp) => match amqp.kind() {
            AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED) | AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED)
                if amqp.get_message().as_str().contains("vhost") =>
            {
                format!("vhost `{vhost}` does not exist or user `{user}` may not use it ({})", amqp.get_message())
            }
            AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED) => {
                format!("the broker refused the credentials of user `{user}` ({})", amqp.get_message())
            }
            AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED) => {
                format!("user `{user}` may not open vhost `{vhost}` ({})", amqp.get_message())
            }
            _ => format!("the broker closed the connection: {}", amqp.get_message()),
        },
        other => format!("{other:?}"),
    };
    TransportError::Connect { url: redact_url(url), reason }
}

/// What was wrong with the broker's certificate, when a TLS handshake failed over it (also
/// for the lenient reader's connections, `raw`).
pub(crate) fn certificate_problem(uri: &AMQPUri, io: &std::io::Error) -> Option<String> {
    let (host, port) = (&uri.authority.host, uri.authority.port);
    if uri.scheme != AMQPScheme::AMQPS {
        None
    } else if wrong_name(io) {
        Some(format!(
            "the TLS certificate of {host}:{port} is not valid for `{host}` ({io}): connect with a host name \
             the certificate names"
        ))
    } else if untrusted_certificate(io) {
        Some(format!(
            "the TLS certificate of {host}:{port} was not trusted ({io}): give the CA that signed it \
             (AmqpOptions::ca_file, EVENTING_AMQP_CA_FILE)"
        ))
    } else {
        None
    }
}

/// Whether a TLS handshake failed because no trusted authority signed the broker's
/// certificate: rustls says `UnknownIssuer` (or `invalid peer certificate`), OpenSSL
/// `certificate verify failed` with `unable to get local issuer certificate` or
/// `self-signed certificate`.
fn untrusted_certificate(io: &std::io::Error) -> bool {
    let text = io.to_string();
    ["UnknownIssuer", "certificate verify failed", "unable to get local issuer", "self-signed certificate"]
        .iter()
        .any(|sign| text.contains(sign))
}

/// Whether a TLS handshake failed because the certificate does not name the host connected
/// to (rustls: `NotValidForName`, OpenSSL: `hostname mismatch`).
fn wrong_name(io: &std::io::Error) -> bool {
    let text = io.to_string();
    ["NotValidForName", "hostname mismatch"].iter().any(|sign| text.contains(sign))
}

/// Whether an I/O error of a TLS connection looks like the peer does not speak TLS: rustls
/// reports the plain AMQP greeting as a corrupt TLS record (`InvalidContentType`), other
/// backends as invalid data or a handshake failure.
fn tls_mismatch(io: &std::io::Error) -> bool {
    let text = io.to_string();
    io.kind() == std::io::ErrorKind::InvalidData
        || ["InvalidContentType", "corrupt message", "wrong version number", "handshake"]
            .iter()
            .any(|sign| text.contains(sign))
}
