//! Declaring exchanges, queues and bindings, with the arguments DESIGN.md's table gives.

use eventing::transport::{BindingSpec, QueueLifetime, QueueRole, QueueSpec, TransportError};
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ErrorKind, ExchangeKind};

use crate::options::QueueType;

/// Declares a durable topic exchange.
pub(crate) async fn declare_exchange(channel: &Channel, name: &str) -> Result<(), TransportError> {
    let options = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
    channel
        .exchange_declare(name.into(), ExchangeKind::Topic, options, FieldTable::default())
        .await
        .map_err(|error| declare_error(&format!("exchange `{name}`"), error))
}

/// Declares a queue; returns how many messages it holds.
pub(crate) async fn declare_queue(
    channel: &Channel,
    spec: &QueueSpec,
    queue_type: QueueType,
    cluster: bool,
) -> Result<u32, TransportError> {
    let (mut options, mut arguments) = queue_arguments(spec, queue_type);
    if cluster {
        expiring_as_quorum(spec, &mut options, &mut arguments);
    }
    channel
        .queue_declare(spec.name.as_str().into(), options, arguments)
        .await
        .map(|queue| queue.message_count())
        .map_err(|error| declare_error(&format!("queue `{}`", spec.name), error))
}

/// Binds a queue to a topic exchange.
pub(crate) async fn bind(channel: &Channel, binding: &BindingSpec) -> Result<(), TransportError> {
    channel
        .queue_bind(
            binding.queue.as_str().into(),
            binding.exchange.as_str().into(),
            binding.pattern.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|error| {
            declare_error(
                &format!("binding of queue `{}` to `{}` on `{}`", binding.queue, binding.exchange, binding.pattern),
                error,
            )
        })
}

/// Declaration flags and arguments of a queue:
/// - durable: durable (classic, or quorum when configured);
/// - expiring: durable with `x-expires`, the form RabbitMQ 4.x accepts for shared queues of
///   non-durable events (transient non-exclusive queues are deprecated);
/// - exclusive: exclusive and auto-delete, gone with the connection;
/// - delay tiers: durable quorum queues whatever the queue type, with `x-message-ttl` and
///   dead-lettering through the default exchange with no routing key of their own, so an
///   expired message goes to the queue its routing key names. A tier of durable queues
///   dead-letters at-least-once, so a broker restart cannot drop a retry in flight; a
///   transient tier at-most-once, so a retry whose queue is gone is dropped instead of held.
pub(crate) fn queue_arguments(spec: &QueueSpec, queue_type: QueueType) -> (QueueDeclareOptions, FieldTable) {
    let mut arguments = FieldTable::default();
    let is_tier = matches!(spec.role, QueueRole::Delay { .. });
    if let QueueRole::Delay { delay, transient } = spec.role {
        let millis = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        arguments.insert("x-message-ttl".into(), AMQPValue::LongLongInt(millis));
        arguments.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("".into()));
        // Quorum on a single node too: a classic tier lives on one node of a cluster, and
        // RabbitMQ moves expired messages out of classic queues without confirms.
        arguments.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
        if !transient {
            // At-least-once dead-lettering (RabbitMQ 3.10+) needs `reject-publish` overflow.
            arguments.insert("x-dead-letter-strategy".into(), AMQPValue::LongString("at-least-once".into()));
            arguments.insert("x-overflow".into(), AMQPValue::LongString("reject-publish".into()));
        }
    }
    let options = match spec.lifetime {
        QueueLifetime::Durable => {
            if queue_type == QueueType::Quorum && !is_tier {
                arguments.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
            }
            QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() }
        }
        QueueLifetime::Expiring { idle } => {
            let millis = i64::try_from(idle.as_millis()).unwrap_or(i64::MAX).max(1);
            arguments.insert("x-expires".into(), AMQPValue::LongLongInt(millis));
            QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() }
        }
        QueueLifetime::Exclusive => {
            QueueDeclareOptions { exclusive: true, auto_delete: true, ..QueueDeclareOptions::default() }
        }
    };
    (options, arguments)
}

/// On a cluster URL with the default queue type, the shared queue of a non-durable event
/// (durable with `x-expires`) is a quorum queue too: a classic one lives on one node, and
/// while that node is down no connection could declare it again, so no connection that
/// declares it (the publisher's, its listener's) could fail over. Only there: existing
/// deployments that chose `QueueType::Quorum` keep their classic expiring queues.
fn expiring_as_quorum(spec: &QueueSpec, options: &mut QueueDeclareOptions, arguments: &mut FieldTable) {
    if matches!(spec.lifetime, QueueLifetime::Expiring { .. }) && options.durable {
        arguments.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    }
}

/// Maps a failed declaration to an error naming the object.
pub(crate) fn declare_error(object: &str, error: lapin::Error) -> TransportError {
    if let ErrorKind::ProtocolError(amqp) = error.kind() {
        let reason = amqp.get_message().to_string();
        match amqp.kind() {
            AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED) => {
                return TransportError::Conflict { object: object.to_owned(), reason };
            }
            AMQPErrorKind::Soft(AMQPSoftError::RESOURCELOCKED) => {
                return TransportError::Locked {
                    queue: object.trim_start_matches("queue ").trim_matches('`').to_owned(),
                };
            }
            AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND) => {
                return TransportError::NotFound { object: format!("{object} ({reason})") };
            }
            _ => {}
        }
    }
    TransportError::Other { context: format!("declaring {object}"), source: Box::new(error) }
}
