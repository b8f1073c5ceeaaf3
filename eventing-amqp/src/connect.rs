//! Opening a connection, and saying precisely what is wrong when it fails.

use eventing::transport::{TransportError, redact_url};
use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{Connection, ConnectionProperties, ErrorKind};

/// Opens one connection. Fails at once (no retry) with an error naming the host, port,
/// vhost or user at fault; the URL's password is never shown.
pub(crate) async fn open(url: &str, connection_name: &str) -> Result<Connection, TransportError> {
    let uri: AMQPUri = url.parse().map_err(|reason| TransportError::Connect {
        url: redact_url(url),
        reason: format!("not an AMQP URL: {reason}"),
    })?;
    let properties = ConnectionProperties::default().with_connection_name(connection_name.into());
    Connection::connect_uri(uri.clone(), properties).await.map_err(|error| connect_error(url, &uri, &error))
}

/// Which part of the URL was wrong, from lapin's error.
fn connect_error(url: &str, uri: &AMQPUri, error: &lapin::Error) -> TransportError {
    let host = &uri.authority.host;
    let port = uri.authority.port;
    let user = &uri.authority.userinfo.username;
    let vhost = &uri.vhost;
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
