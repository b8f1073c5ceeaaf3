//! Publishing with confirms over a few shared channels; confirms are pipelined (each
//! publish awaits only its own), and a publish caught by a lost connection waits, bounded,
//! for lapin's recovery and publishes again.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use eventing::message::Message;
use eventing::transport::{Route, TransportError};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{Channel, Confirmation, Connection};

use crate::convert;

pub(crate) struct Publishers {
    channels: Vec<Channel>,
    next: AtomicUsize,
    timeout: Duration,
}

/// Why one publish attempt did not go through.
enum Failure {
    /// The broker answered: nack or return. Final.
    Refused(TransportError),
    /// The connection or channel went away: recoverable.
    Lost(lapin::Error),
}

impl Publishers {
    pub(crate) async fn open(connection: &Connection, count: usize, timeout: Duration) -> Result<Self, TransportError> {
        let mut channels = Vec::with_capacity(count);
        for _ in 0..count.max(1) {
            let channel =
                connection.create_channel().await.map_err(|error| other("opening a publish channel", error))?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(|error| other("enabling publisher confirms", error))?;
            channels.push(channel);
        }
        Ok(Self { channels, next: AtomicUsize::new(0), timeout })
    }

    /// Publishes and returns once the broker confirmed. Events go to the exchange without
    /// `mandatory` (an event nobody listens to is not an error); messages for one queue
    /// (dead letters, requeues) are `mandatory`, so a missing queue is an error.
    pub(crate) async fn publish(&self, route: Route<'_>, message: &Message) -> Result<(), TransportError> {
        let (exchange, routing_key, mandatory) = match route {
            Route::Exchange { exchange, routing_key } => (exchange, routing_key, false),
            Route::Queue(queue) => ("", queue, true),
        };
        let channel = &self.channels[self.next.fetch_add(1, Ordering::Relaxed) % self.channels.len()];
        let properties = convert::properties(message);
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let attempt = async {
                let confirm = channel
                    .basic_publish(
                        exchange.into(),
                        routing_key.into(),
                        BasicPublishOptions { mandatory, ..BasicPublishOptions::default() },
                        &message.body,
                        properties.clone(),
                    )
                    .await
                    .map_err(Failure::Lost)?;
                match confirm.await.map_err(Failure::Lost)? {
                    Confirmation::Ack(None) => Ok(()),
                    Confirmation::Ack(Some(returned)) => Err(Failure::Refused(TransportError::Rejected {
                        reason: format!(
                            "returned by the broker: {} {} (routing key `{routing_key}` on exchange `{exchange}`)",
                            returned.reply_code, returned.reply_text
                        ),
                    })),
                    Confirmation::Nack(_) => Err(Failure::Refused(TransportError::Rejected {
                        reason: "negatively confirmed (nack): the broker could not store it".into(),
                    })),
                    Confirmation::NotRequested => Err(Failure::Refused(TransportError::Rejected {
                        reason: "publisher confirms are not enabled on this channel".into(),
                    })),
                }
            };
            match attempt.await {
                Ok(()) => return Ok(()),
                Err(Failure::Refused(error)) => return Err(error),
                Err(Failure::Lost(error)) => {
                    tracing::warn!(%error, "publish interrupted; waiting for the connection to recover");
                    match tokio::time::timeout_at(deadline, channel.wait_for_recovery(error)).await {
                        Ok(Ok(())) => continue,
                        Ok(Err(error)) => return Err(other("publishing", error)),
                        Err(_) => {
                            return Err(TransportError::Other {
                                context: "publishing".into(),
                                source: format!("the connection did not recover within {:?}", self.timeout).into(),
                            });
                        }
                    }
                }
            }
        }
    }
}

pub(crate) fn other(context: &str, error: lapin::Error) -> TransportError {
    TransportError::Other { context: context.to_owned(), source: Box::new(error) }
}
