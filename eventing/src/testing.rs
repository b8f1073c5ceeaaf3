//! A test harness: a bus on a private in-memory broker that records what is published
//! and waits until whole causal chains have settled.
//!
//! ```rust,standalone_crate
//! # use eventing::{event, event_listener, Context, HandlerError, Listener};
//! # use serde::{Deserialize, Serialize};
//! # #[event] #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)] struct OrderPlaced { id: u64 }
//! # #[event] #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)] struct StockReserved { order: u64 }
//! # #[derive(Default)] struct ReserveStock;
//! # #[event_listener]
//! # impl Listener<OrderPlaced> for ReserveStock {
//! #     async fn on(&self, order: OrderPlaced, ctx: &Context) -> Result<(), HandlerError> {
//! #         ctx.publish(&StockReserved { order: order.id }).await?;
//! #         Ok(())
//! #     }
//! # }
//! use eventing::testing::TestBus;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let bus = TestBus::start().await?;
//! bus.publish(&OrderPlaced { id: 1 }).await?;
//! bus.settle().await?; // OrderPlaced handled, StockReserved published and handled
//! assert_eq!(bus.published::<StockReserved>(), vec![StockReserved { order: 1 }]);
//! assert!(bus.dead_letters().is_empty());
//! # bus.shutdown().await?;
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use crate::memory::{MemoryBroker, PublishedMessage, QueuedMessage, SettleTimeout};
use crate::{Builder, Bus, Error, Event};

/// How long [`TestBus::settle`] waits by default.
pub const DEFAULT_SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A [`Bus`] on its own [`MemoryBroker`], recording every published message.
#[derive(Debug)]
pub struct TestBus {
    broker: MemoryBroker,
    bus: Bus,
}

impl TestBus {
    /// Starts every registered listener on a new private broker.
    pub async fn start() -> Result<Self, Error> {
        Self::start_with(crate::builder()).await
    }

    /// Starts `builder` (with its state, service, filters...) on a new private broker;
    /// the builder's URL or transport is replaced.
    pub async fn start_with(builder: Builder) -> Result<Self, Error> {
        Self::start_on(MemoryBroker::new(), builder).await
    }

    /// Starts `builder` on `broker`, to run several buses on one broker.
    pub async fn start_on(broker: MemoryBroker, builder: Builder) -> Result<Self, Error> {
        broker.record_published();
        let bus = builder.transport(broker.transport()).start().await?;
        Ok(Self { broker, bus })
    }

    /// Publishes an event (a new causal chain).
    pub async fn publish<E: Event>(&self, event: &E) -> Result<(), Error> {
        self.bus.publish(event).await
    }

    /// Waits until every message published so far, and every message their handlers
    /// published in turn, was handled or dead-lettered. Fails after
    /// [`DEFAULT_SETTLE_TIMEOUT`] listing what is still pending.
    pub async fn settle(&self) -> Result<(), SettleTimeout> {
        self.broker.settled(DEFAULT_SETTLE_TIMEOUT).await
    }

    /// [`settle`](Self::settle) with another timeout.
    pub async fn settle_within(&self, timeout: Duration) -> Result<(), SettleTimeout> {
        self.broker.settled(timeout).await
    }

    /// Every `E` published so far, by anyone on this broker, in order.
    pub fn published<E: Event>(&self) -> Vec<E> {
        self.broker.published().iter().filter_map(PublishedMessage::decode::<E>).collect()
    }

    /// Every message published so far, with its metadata.
    pub fn published_messages(&self) -> Vec<PublishedMessage> {
        self.broker.published()
    }

    /// Every message in a dead-letter queue, with [`reason`](QueuedMessage::reason).
    pub fn dead_letters(&self) -> Vec<QueuedMessage> {
        self.broker.dead_letters()
    }

    /// The broker, to start more buses on it or inspect queues.
    pub fn broker(&self) -> &MemoryBroker {
        &self.broker
    }

    /// The bus.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// Shuts the bus down gracefully.
    pub async fn shutdown(&self) -> Result<(), Error> {
        self.bus.shutdown().await
    }
}
