//! A minimal, blocking AMQP 0-9-1 client for messages lapin cannot read: connect, `basic.get`,
//! `basic.ack`, publish with a confirm, close. Content headers are parsed leniently
//! ([`crate::lenient`]); everything else (method frames, frame generation, authentication
//! strings, TLS) comes from amq-protocol, the crate lapin itself is built on.
//!
//! Blocking I/O on a short-lived connection of its own: callers run it in
//! `spawn_blocking` ([`RawClient`]). It is used rarely (after lapin failed on a frame, and by
//! operator calls), never on a hot path, so simplicity wins over throughput. Every read is
//! bounded by [`READ_TIMEOUT`], so nothing here can hang.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amq_protocol::auth::Credentials;
use amq_protocol::frame::{AMQPContentHeader, AMQPFrame, ProtocolVersion, WriteContext, gen_frame};
use amq_protocol::protocol::{AMQPClass, basic, channel, confirm, connection, parse_class};
use amq_protocol::tcp::{AMQPUriTcpExt, HandshakeError, TcpStream};
use amq_protocol::uri::AMQPUri;
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString};

use crate::lenient::{self, ContentHeader};
use crate::options::AmqpOptions;
use crate::tls::TlsError;
use crate::util::lock;

/// How long one read may wait for the broker.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest frame we ask for (RabbitMQ's default).
const FRAME_MAX: u32 = 131_072;
/// The one channel this client uses.
const CHANNEL: u16 = 1;
const FRAME_METHOD: u8 = 1;
const FRAME_HEADER: u8 = 2;
const FRAME_BODY: u8 = 3;
const FRAME_HEARTBEAT: u8 = 8;
const FRAME_END: u8 = 0xCE;
/// Class id of `basic` (content headers carry it).
const BASIC_CLASS: u16 = 60;

/// Why a raw operation failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RawError {
    /// The URL is not an AMQP URL.
    #[error("not an AMQP URL: {0}")]
    Url(String),
    /// The TLS settings could not be used (the error names the file).
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The broker's TLS certificate was not accepted (the text says why and what to do).
    #[error("{0}")]
    Certificate(String),
    /// Reading from or writing to the broker failed.
    #[error("I/O with the broker failed: {0}")]
    Io(#[from] std::io::Error),
    /// The broker closed the channel or the connection.
    #[error("the broker closed the {what}: {code} {text}")]
    Closed {
        /// `channel` or `connection`.
        what: &'static str,
        /// The AMQP reply code (404: no such queue).
        code: u16,
        /// The broker's text.
        text: String,
    },
    /// The broker sent something this client did not expect or cannot parse.
    #[error("unexpected reply from the broker: {0}")]
    Protocol(String),
    /// A published message was returned (no such queue) or negatively confirmed.
    #[error("the broker did not take the message: {0}")]
    Refused(String),
}

/// One message fetched with `basic.get`, not yet acknowledged.
#[derive(Debug)]
pub(crate) struct Fetched {
    /// Its delivery tag on the client's channel.
    pub(crate) delivery_tag: u64,
    /// The exchange it was published to.
    pub(crate) exchange: String,
    /// The routing key it was published with.
    pub(crate) routing_key: String,
    /// Its properties, leniently parsed.
    pub(crate) header: ContentHeader,
    /// Its body.
    pub(crate) body: Vec<u8>,
}

struct Frame {
    kind: u8,
    payload: Vec<u8>,
}

/// A blocking connection with one channel open.
pub(crate) struct RawConnection {
    stream: TcpStream,
    frame_max: u32,
    confirming: bool,
}

impl RawConnection {
    /// Connects (with `options`' TLS settings for `amqps://`, as lapin's connections),
    /// authenticates (PLAIN, or what the URL asks for), opens the vhost and one channel.
    pub(crate) fn open(url: &str, connection_name: &str, options: &AmqpOptions) -> Result<Self, RawError> {
        let uri: AMQPUri = url.parse().map_err(RawError::Url)?;
        let tls = crate::connect::tls_config(&uri, options)?;
        let failed = |error: std::io::Error| match crate::connect::certificate_problem(&uri, &error) {
            Some(reason) => RawError::Certificate(reason),
            None => RawError::Io(error),
        };
        let stream = match uri.connect_with_config(tls.as_ref()) {
            Ok(stream) => stream,
            Err(HandshakeError::Failure(error)) => return Err(failed(error)),
            Err(HandshakeError::WouldBlock(mut mid)) => loop {
                match mid.handshake() {
                    Ok(stream) => break stream,
                    Err(HandshakeError::WouldBlock(again)) => mid = again,
                    Err(HandshakeError::Failure(error)) => return Err(failed(error)),
                }
            },
        };
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        stream.set_write_timeout(Some(READ_TIMEOUT))?;
        let mut raw = Self { stream, frame_max: FRAME_MAX, confirming: false };
        raw.send(&AMQPFrame::ProtocolHeader(ProtocolVersion::amqp_0_9_1()))?;
        raw.expect(0, |method| matches!(method, AMQPClass::Connection(connection::AMQPMethod::Start(_))))?;
        let mechanism = uri.query.auth_mechanism.unwrap_or_default();
        let credentials = Credentials::new(
            uri.authority.userinfo.username.as_str().into(),
            uri.authority.userinfo.password.as_str().into(),
        );
        let mut client_properties = FieldTable::default();
        client_properties.insert("connection_name".into(), AMQPValue::LongString(connection_name.into()));
        client_properties.insert("product".into(), AMQPValue::LongString("eventing-amqp (rescue)".into()));
        raw.send_method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
                client_properties,
                mechanism: mechanism.to_string().into(),
                response: credentials.sasl_auth_string(mechanism),
                locale: "en_US".into(),
            })),
        )?;
        let AMQPClass::Connection(connection::AMQPMethod::Tune(tune)) =
            raw.expect(0, |method| matches!(method, AMQPClass::Connection(connection::AMQPMethod::Tune(_))))?
        else {
            return Err(RawError::Protocol("expected connection.tune".into()));
        };
        let wanted = uri.query.frame_max.unwrap_or(FRAME_MAX);
        raw.frame_max = if tune.frame_max == 0 { wanted } else { wanted.min(tune.frame_max) };
        raw.send_method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::TuneOk(connection::TuneOk {
                channel_max: tune.channel_max,
                frame_max: raw.frame_max,
                // Short-lived and never idle for long: no heartbeats.
                heartbeat: 0,
            })),
        )?;
        raw.send_method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open {
                virtual_host: uri.vhost.as_str().into(),
            })),
        )?;
        raw.expect(0, |method| matches!(method, AMQPClass::Connection(connection::AMQPMethod::OpenOk(_))))?;
        raw.send_method(CHANNEL, AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})))?;
        raw.expect(CHANNEL, |method| matches!(method, AMQPClass::Channel(channel::AMQPMethod::OpenOk(_))))?;
        Ok(raw)
    }

    /// Fetches the message at the head of `queue` without acknowledging it; `None` when the
    /// queue is empty.
    pub(crate) fn get(&mut self, queue: &str) -> Result<Option<Fetched>, RawError> {
        self.send_method(
            CHANNEL,
            AMQPClass::Basic(basic::AMQPMethod::Get(basic::Get { queue: queue.into(), no_ack: false })),
        )?;
        // get-ok is read leniently too: its exchange and routing key are short strings.
        let frame = self.frame()?;
        if frame.kind == FRAME_METHOD && frame.payload.starts_with(&lenient::GET_OK) {
            let ok = lenient::get_ok(&frame.payload).map_err(|error| RawError::Protocol(error.to_string()))?;
            let (mut header, body) = self.content()?;
            header.problems.splice(0..0, ok.problems);
            return Ok(Some(Fetched {
                delivery_tag: ok.delivery_tag,
                exchange: ok.exchange,
                routing_key: ok.routing_key,
                header,
                body,
            }));
        }
        match self.method(frame, CHANNEL)? {
            AMQPClass::Basic(basic::AMQPMethod::GetEmpty(_)) => Ok(None),
            other => Err(RawError::Protocol(format!("expected basic.get-ok or get-empty, got {other:?}"))),
        }
    }

    /// Acknowledges a fetched message: the broker forgets it.
    pub(crate) fn ack(&mut self, delivery_tag: u64) -> Result<(), RawError> {
        self.send_method(
            CHANNEL,
            AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack { delivery_tag, multiple: false })),
        )
    }

    /// Publishes to `queue` through the default exchange (`mandatory`, so a missing queue is
    /// an error) and waits for the broker's confirm.
    pub(crate) fn publish_confirmed(
        &mut self,
        queue: &str,
        properties: BasicProperties,
        body: &[u8],
    ) -> Result<(), RawError> {
        if !self.confirming {
            self.send_method(
                CHANNEL,
                AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select { nowait: false })),
            )?;
            self.expect(CHANNEL, |method| matches!(method, AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(_))))?;
            self.confirming = true;
        }
        self.send_method(
            CHANNEL,
            AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                exchange: "".into(),
                routing_key: queue.into(),
                mandatory: true,
                immediate: false,
            })),
        )?;
        let header = AMQPContentHeader { class_id: BASIC_CLASS, body_size: body.len() as u64, properties };
        self.send(&AMQPFrame::Header(CHANNEL, header))?;
        // A body frame has 8 bytes of framing around its payload.
        let chunk = usize::try_from(self.frame_max.saturating_sub(8).max(1)).unwrap_or(usize::MAX);
        for part in body.chunks(chunk) {
            self.send(&AMQPFrame::Body(CHANNEL, part.to_vec()))?;
        }
        let mut returned = None;
        loop {
            match self.next_method(CHANNEL)? {
                AMQPClass::Basic(basic::AMQPMethod::Return(back)) => {
                    self.content()?;
                    returned = Some(format!("{} {}", back.reply_code, back.reply_text));
                }
                AMQPClass::Basic(basic::AMQPMethod::Ack(_)) => {
                    return match returned {
                        None => Ok(()),
                        Some(reason) => Err(RawError::Refused(format!("returned: {reason} (queue `{queue}`)"))),
                    };
                }
                AMQPClass::Basic(basic::AMQPMethod::Nack(_)) => {
                    return Err(RawError::Refused("negatively confirmed (nack)".into()));
                }
                other => return Err(RawError::Protocol(format!("expected a confirm, got {other:?}"))),
            }
        }
    }

    /// Closes the connection; unacknowledged messages go back to their queues.
    pub(crate) fn close(mut self) {
        let close = connection::Close { reply_code: 200, reply_text: "done".into(), class_id: 0, method_id: 0 };
        if self.send_method(0, AMQPClass::Connection(connection::AMQPMethod::Close(close))).is_ok() {
            // Wait (bounded) for close-ok, so the broker has requeued before we return.
            let _ =
                self.expect(0, |method| matches!(method, AMQPClass::Connection(connection::AMQPMethod::CloseOk(_))));
        }
    }

    /// A content header and the body frames after it.
    fn content(&mut self) -> Result<(ContentHeader, Vec<u8>), RawError> {
        let frame = self.frame()?;
        if frame.kind != FRAME_HEADER {
            return Err(RawError::Protocol(format!("expected a content header, got frame type {}", frame.kind)));
        }
        let header = lenient::content_header(&frame.payload).map_err(|error| RawError::Protocol(error.to_string()))?;
        let size = usize::try_from(header.body_size)
            .map_err(|_| RawError::Protocol(format!("a body of {} bytes", header.body_size)))?;
        let mut body = Vec::with_capacity(size.min(16 << 20));
        while body.len() < size {
            let frame = self.frame()?;
            if frame.kind != FRAME_BODY {
                return Err(RawError::Protocol(format!("expected a body frame, got frame type {}", frame.kind)));
            }
            body.extend_from_slice(&frame.payload);
        }
        Ok((header, body))
    }

    fn send_method(&mut self, channel: u16, method: AMQPClass) -> Result<(), RawError> {
        self.send(&AMQPFrame::Method(channel, method))
    }

    fn send(&mut self, frame: &AMQPFrame) -> Result<(), RawError> {
        let written = gen_frame(frame)(WriteContext::from(Vec::new()))
            .map_err(|error| RawError::Protocol(format!("cannot encode a frame: {error:?}")))?;
        let (bytes, _) = written.into_inner();
        self.stream.write_all(&bytes)?;
        self.stream.flush()?;
        Ok(())
    }

    /// The next frame other than a heartbeat.
    fn frame(&mut self) -> Result<Frame, RawError> {
        loop {
            let mut head = [0_u8; 7];
            self.stream.read_exact(&mut head)?;
            let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]);
            if size > self.frame_max.max(FRAME_MAX) {
                return Err(RawError::Protocol(format!("a frame of {size} bytes, above the frame size")));
            }
            let mut payload = vec![0_u8; size as usize + 1];
            self.stream.read_exact(&mut payload)?;
            if payload.pop() != Some(FRAME_END) {
                return Err(RawError::Protocol("a frame without its end marker".into()));
            }
            if head[0] != FRAME_HEARTBEAT {
                return Ok(Frame { kind: head[0], payload });
            }
        }
    }

    /// The next method on `channel`; a close of the channel or connection is an error (after
    /// answering it).
    fn next_method(&mut self, channel: u16) -> Result<AMQPClass, RawError> {
        let frame = self.frame()?;
        self.method(frame, channel)
    }

    /// The method `frame` carries (on `channel`); a close is answered and an error.
    fn method(&mut self, frame: Frame, channel: u16) -> Result<AMQPClass, RawError> {
        if frame.kind != FRAME_METHOD {
            return Err(RawError::Protocol(format!("expected a method frame, got frame type {}", frame.kind)));
        }
        let (_, method) = parse_class(frame.payload.as_slice())
            .map_err(|error| RawError::Protocol(format!("a method frame lapin's parser rejects: {error:?}")))?;
        match method {
            AMQPClass::Connection(connection::AMQPMethod::Close(close)) => {
                let _ =
                    self.send_method(0, AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {})));
                Err(RawError::Closed { what: "connection", code: close.reply_code, text: close.reply_text.to_string() })
            }
            AMQPClass::Channel(channel::AMQPMethod::Close(close)) => {
                let _ =
                    self.send_method(channel, AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})));
                Err(RawError::Closed { what: "channel", code: close.reply_code, text: close.reply_text.to_string() })
            }
            method => Ok(method),
        }
    }

    fn expect(&mut self, channel: u16, wanted: impl Fn(&AMQPClass) -> bool) -> Result<AMQPClass, RawError> {
        let method = self.next_method(channel)?;
        if wanted(&method) { Ok(method) } else { Err(RawError::Protocol(format!("unexpected {method:?}"))) }
    }
}

/// A [`RawConnection`] used from async code: each call runs on tokio's blocking pool.
pub(crate) struct RawClient {
    connection: Arc<Mutex<Option<RawConnection>>>,
}

impl RawClient {
    /// Connects on the blocking pool; with several endpoints in `url`, to the first that
    /// answers.
    pub(crate) async fn open(url: &str, connection_name: &str, options: &AmqpOptions) -> Result<Self, RawError> {
        let endpoints = crate::endpoints::split(url);
        let name = connection_name.to_owned();
        let options = options.clone();
        let connection = blocking(move || {
            let mut last = None;
            for endpoint in &endpoints {
                match RawConnection::open(endpoint, &name, &options) {
                    Ok(connection) => return Ok(connection),
                    Err(error) => last = Some(error),
                }
            }
            Err(last.unwrap_or_else(|| RawError::Url("no endpoint".into())))
        })
        .await?;
        Ok(Self { connection: Arc::new(Mutex::new(Some(connection))) })
    }

    /// Runs `operation` on the connection, on the blocking pool.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        operation: impl FnOnce(&mut RawConnection) -> Result<T, RawError> + Send + 'static,
    ) -> Result<T, RawError> {
        let connection = Arc::clone(&self.connection);
        blocking(move || match lock(&connection).as_mut() {
            Some(connection) => operation(connection),
            None => Err(RawError::Protocol("the rescue connection is closed".into())),
        })
        .await
    }

    /// Closes the connection (unacknowledged messages return to their queues).
    pub(crate) async fn close(self) {
        let connection = Arc::clone(&self.connection);
        let _ = blocking(move || {
            if let Some(connection) = lock(&connection).take() {
                connection.close();
            }
            Ok(())
        })
        .await;
    }
}

async fn blocking<T: Send + 'static>(
    operation: impl FnOnce() -> Result<T, RawError> + Send + 'static,
) -> Result<T, RawError> {
    tokio::task::spawn_blocking(operation)
        .await
        .unwrap_or_else(|error| Err(RawError::Protocol(format!("the blocking task failed: {error}"))))
}

/// A long string header value.
pub(crate) fn text(value: impl Into<String>) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value.into()))
}
