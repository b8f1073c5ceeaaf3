//! Publishing with confirms over shared channels (one by default, `publish_channels` to
//! change it); confirms are pipelined (each
//! publish awaits only its own). A publish caught by a lost connection waits, bounded by
//! the publish timeout, for the link to reconnect and publishes again: it never reports
//! success without the broker's confirm.
//!
//! Failure says whether the message may still arrive: once it was handed to a connection,
//! a publish that gets no confirm in time fails with [`TransportError::Unconfirmed`] (the
//! broker may have it, or a blocked connection may still deliver it); every other error
//! means it was not taken.
//!
//! On a cluster (several endpoints), a negative confirm is published again, with a jittered
//! pause that doubles from 50 ms to 1 s, until the publish timeout: a quorum queue nacks
//! while its leader is being re-elected after a node died (about 1 s of publishes in the
//! kill -9 test), and the publisher wants "confirmed", not a transient refusal. A nacked
//! message may still have been stored, so this can duplicate (as can any redelivery). On one
//! node a nack is final, as before (an overflowing `reject-publish` queue).
//!
//! A connection RabbitMQ blocks (`connection.blocked`, a memory or disk alarm) is waited
//! for, not abandoned: publishes wait up to the publish timeout and then fail as
//! unconfirmed, and the connection is kept, so it delivers what it holds once the alarm
//! clears. Reconnecting instead would leave the blocked connection behind (a blocked
//! connection cannot even be closed: the broker no longer reads from it) and block the
//! next one as soon as it publishes.

use eventing::message::Message;
use eventing::transport::{Origin, Route, TransportError};
use lapin::options::BasicPublishOptions;
use lapin::{Confirmation, ErrorKind};

use crate::convert;
use crate::link::Link;
use crate::util::other;

/// AMQP reply code of a missing exchange or queue.
const NOT_FOUND: u16 = 404;
/// On a cluster, pauses before publishing a nacked message again: from the first to the
/// largest, doubling, each jittered.
const NACK_FIRST_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);
const NACK_LARGEST_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// Why one publish attempt did not go through.
enum Failure {
    /// The broker answered: nack, return, or a channel error. Final.
    Refused(TransportError),
    /// The connection went away: publish again once reconnected.
    Lost(lapin::Error),
    /// Negatively confirmed.
    Nacked(TransportError),
}

/// Publishes and returns once the broker confirmed. Events go to the exchange without
/// `mandatory` (an event nobody listens to is not an error); messages for one queue (dead
/// letters, requeues) and the runtime's moves (a retry into a delay tier) are `mandatory`,
/// so a missing queue is an error, not a message lost.
pub(crate) async fn publish(
    link: &Link,
    route: Route<'_>,
    message: &Message,
    origin: Origin,
) -> Result<(), TransportError> {
    let (exchange, routing_key, mandatory) = match route {
        Route::Exchange { exchange, routing_key } => (exchange, routing_key, origin == Origin::Runtime),
        Route::Queue(queue) => ("", queue, true),
    };
    let timeout = link.options.publish_timeout;
    let deadline = tokio::time::Instant::now() + timeout;
    // Whether the message was handed to a connection: from then on it may be delivered.
    let mut sent = false;
    let mut nack_pause = NACK_FIRST_PAUSE;
    loop {
        let session = match link.session(deadline).await {
            Ok(session) => session,
            Err(error) => {
                return Err(if sent { unconfirmed(format!("the connection was lost: {error}")) } else { error });
            }
        };
        let attempt = async {
            let channel = session.publish_channel().await.map_err(Failure::Refused)?;
            sent = true;
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
                Confirmation::Nack(_) => Err(Failure::Nacked(TransportError::Rejected {
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
                let blocked = session.blocked();
                if blocked.is_none() {
                    // No confirm and no alarm: the connection may be dead without lapin knowing.
                    session.mark_broken();
                    link.report_trouble();
                }
                let reason = match blocked {
                    Some(alarm) => format!(
                        "no confirm within {timeout:?}: RabbitMQ blocks the connection ({alarm}); it is delivered \
                         once the alarm clears"
                    ),
                    None => format!("no confirm within {timeout:?}"),
                };
                return Err(if sent {
                    unconfirmed(reason)
                } else {
                    TransportError::Other { context: "publishing (not sent)".into(), source: reason.into() }
                });
            }
        };
        match outcome {
            Ok(()) => return Ok(()),
            Err(Failure::Refused(error)) => return Err(error),
            Err(Failure::Nacked(error)) => {
                let pause = nack_pause / 2 + (nack_pause / 2).mul_f64(fastrand::f64());
                if link.endpoints().len() < 2 || tokio::time::Instant::now() + pause >= deadline {
                    return Err(error);
                }
                tracing::debug!(%error, ?pause, "negatively confirmed on a cluster (a queue leader may be re-elected); publishing again");
                tokio::time::sleep(pause).await;
                nack_pause = (nack_pause * 2).min(NACK_LARGEST_PAUSE);
            }
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
                    let next = match link.session(deadline).await {
                        Ok(next) => next,
                        Err(error) => return Err(unconfirmed(format!("the connection was lost: {error}"))),
                    };
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
                        return Err(unconfirmed(format!("the connection did not come back within {timeout:?}")));
                    }
                }
            }
        }
    }
}

/// A message handed to a connection that got no confirm: it may still be delivered.
fn unconfirmed(reason: String) -> TransportError {
    TransportError::Unconfirmed { reason }
}
