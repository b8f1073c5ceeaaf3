//! Publishing with confirms over shared channels (one by default, `publish_channels` to
//! change it); confirms are pipelined (each
//! publish awaits only its own). A publish caught by a lost connection waits, bounded by
//! the publish timeout, for the link to reconnect and publishes again: it never reports
//! success without the broker's confirm.

use eventing::message::Message;
use eventing::transport::{Route, TransportError};
use lapin::options::BasicPublishOptions;
use lapin::{Confirmation, ErrorKind};

use crate::convert;
use crate::link::Link;
use crate::util::other;

/// AMQP reply code of a missing exchange or queue.
const NOT_FOUND: u16 = 404;

/// Why one publish attempt did not go through.
enum Failure {
    /// The broker answered: nack, return, or a channel error. Final.
    Refused(TransportError),
    /// The connection went away: publish again once reconnected.
    Lost(lapin::Error),
}

/// Publishes and returns once the broker confirmed. Events go to the exchange without
/// `mandatory` (an event nobody listens to is not an error); messages for one queue (dead
/// letters, requeues) are `mandatory`, so a missing queue is an error.
pub(crate) async fn publish(link: &Link, route: Route<'_>, message: &Message) -> Result<(), TransportError> {
    let (exchange, routing_key, mandatory) = match route {
        Route::Exchange { exchange, routing_key } => (exchange, routing_key, false),
        Route::Queue(queue) => ("", queue, true),
    };
    let deadline = tokio::time::Instant::now() + link.options.publish_timeout;
    loop {
        let session = link.session(deadline).await?;
        let attempt = async {
            let channel = session.publish_channel().await.map_err(Failure::Refused)?;
            let confirm = channel
                .basic_publish(
                    exchange.into(),
                    routing_key.into(),
                    BasicPublishOptions { mandatory, ..BasicPublishOptions::default() },
                    &message.body,
                    convert::properties(message),
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
        // Bounded: on a connection that died without lapin noticing, a confirm can stay
        // pending for ever.
        let outcome = match tokio::time::timeout_at(deadline, attempt).await {
            Ok(outcome) => outcome,
            Err(_) => {
                session.mark_broken();
                link.report_trouble();
                return Err(TransportError::Other {
                    context: "publishing".into(),
                    source: format!("no confirm within {:?}", link.options.publish_timeout).into(),
                });
            }
        };
        match outcome {
            Ok(()) => return Ok(()),
            Err(Failure::Refused(error)) => return Err(error),
            Err(Failure::Lost(error)) => {
                if session.is_alive() {
                    match error.kind() {
                        // The channel was closed by an error of another publish on it: publish
                        // again at once on a fresh channel (`publish_channel` replaces it).
                        ErrorKind::InvalidChannelState(..) | ErrorKind::InvalidChannel(_)
                            if tokio::time::Instant::now() < deadline =>
                        {
                            continue;
                        }
                        // The connection is fine: the broker refused the publish (a missing
                        // exchange closes the channel). It was not confirmed: say so.
                        ErrorKind::ProtocolError(amqp) => {
                            return Err(if amqp.get_id() == NOT_FOUND {
                                TransportError::NotFound {
                                    object: format!("exchange `{exchange}` ({})", amqp.get_message()),
                                }
                            } else {
                                other("publishing", error)
                            });
                        }
                        _ => {}
                    }
                }
                tracing::warn!(%error, "publish interrupted by a lost connection; publishing again once reconnected");
                session.mark_broken();
                link.report_trouble();
                // Wait for a newer session than the one that failed.
                let failed = session.generation;
                drop(session);
                loop {
                    let next = link.session(deadline).await?;
                    if next.generation != failed {
                        break;
                    }
                    link.report_trouble();
                    tokio::time::sleep_until(std::cmp::min(
                        deadline,
                        tokio::time::Instant::now() + std::time::Duration::from_millis(50),
                    ))
                    .await;
                    if tokio::time::Instant::now() >= deadline {
                        return Err(TransportError::Other {
                            context: "publishing".into(),
                            source: format!(
                                "the connection did not come back within {:?}",
                                link.options.publish_timeout
                            )
                            .into(),
                        });
                    }
                }
            }
        }
    }
}
