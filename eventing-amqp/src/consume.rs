//! A listener's subscription: its own channel and prefetch, deliveries converted to
//! eventing's, and lapin's recovery awaited when the connection drops.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use eventing::transport::{Acker, BoxFuture, Delivery, Settle, Subscription, TransportError};
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicNackOptions};
use lapin::types::ShortString;
use lapin::{Channel, Consumer};

use crate::convert;
use crate::publish::other;

pub(crate) struct AmqpSubscription {
    deliveries: BoxStream<'static, Result<Delivery, TransportError>>,
    channel: Channel,
    consumer_tag: ShortString,
}

impl AmqpSubscription {
    pub(crate) fn new(channel: Channel, consumer: Consumer, consumer_tag: ShortString, queue: String) -> Self {
        let deliveries = futures_util::stream::unfold(
            Some((consumer, channel.clone(), queue)),
            |state| async move {
                let (mut consumer, channel, queue) = state?;
                loop {
                    match consumer.next().await? {
                        Ok(delivery) => {
                            let delivery = convert_delivery(delivery);
                            return Some((Ok(delivery), Some((consumer, channel, queue))));
                        }
                        Err(error) => {
                            tracing::warn!(queue = %queue, %error, "consumer interrupted; waiting for the connection to recover");
                            match channel.wait_for_recovery(error).await {
                                Ok(()) => tracing::info!(queue = %queue, "consuming again after recovery"),
                                Err(error) => return Some((Err(other("consuming", error)), None)),
                            }
                        }
                    }
                }
            },
        )
        .boxed();
        Self { deliveries, channel, consumer_tag }
    }
}

fn convert_delivery(delivery: lapin::message::Delivery) -> Delivery {
    let message = convert::message(delivery.data, &delivery.properties, delivery.routing_key.as_str());
    Delivery {
        message: Arc::new(message),
        exchange: delivery.exchange.as_str().into(),
        routing_key: delivery.routing_key.as_str().into(),
        redelivered: delivery.redelivered,
        acker: Acker::new(Arc::new(LapinAcker(delivery.acker)), delivery.delivery_tag),
    }
}

impl Stream for AmqpSubscription {
    type Item = Result<Delivery, TransportError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.deliveries.poll_next_unpin(cx)
    }
}

impl Subscription for AmqpSubscription {
    fn cancel(&mut self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            self.channel
                .basic_cancel(self.consumer_tag.clone(), BasicCancelOptions::default())
                .await
                .map_err(|error| other("cancelling the consumer", error))
        })
    }
}

/// Settles one delivery through lapin's acker, which knows the channel it came from: after
/// a recovery, settling a delivery of the old channel is refused (the broker has requeued
/// it) instead of acknowledging an unrelated message with the same tag on the new channel.
struct LapinAcker(lapin::Acker);

impl Settle for LapinAcker {
    fn ack(&self, _tag: u64) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move { settled(self.0.ack(BasicAckOptions::default()).await) })
    }

    fn requeue(&self, _tag: u64) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move { settled(self.0.nack(BasicNackOptions { requeue: true, multiple: false }).await) })
    }
}

fn settled(result: lapin::Result<bool>) -> Result<(), TransportError> {
    match result {
        Ok(true) => Ok(()),
        Ok(false) => Err(TransportError::Closed),
        Err(error) => Err(other("settling a delivery", error)),
    }
}
