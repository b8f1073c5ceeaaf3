//! A small shop: an order is placed, stock is reserved (or found short), and the customer
//! gets a confirmation mail; every process keeps its own price cache fresh.
//!
//! A catch-all store keeps every event of the shop, whatever its type, as petisco's `store`
//! subscriber does.
//!
//! `cargo run --example quickstart` runs it on the in-memory transport and exits once every
//! order has an outcome; with `EVENTING_URL=amqp://guest:guest@127.0.0.1:5672/%2f` the same
//! program runs on RabbitMQ. `cargo run --example quickstart -- --asyncapi` prints its
//! AsyncAPI document instead (JSON; the events derive `JsonSchema`, so it has their schemas).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventing::asyncapi::Info;
use eventing::{Context, FromState, HandlerError, Listener, MissingState, RawEvent, State, event, event_listener};
use eventing_amqp as _; // links the amqp:// transport, for EVENTING_URL=amqp://...
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

// ---- events ---------------------------------------------------------------------------

/// A customer placed an order. Durable: it must survive a broker restart.
#[event(name = "orders.placed", durable)]
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OrderPlaced {
    pub order_id: u64,
    pub email: String,
    pub sku: String,
    pub quantity: u32,
}

#[event(name = "inventory.stock_reserved", durable)]
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StockReserved {
    pub order_id: u64,
    pub email: String,
}

#[event(name = "inventory.stock_short")]
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StockShort {
    pub order_id: u64,
    pub sku: String,
    pub missing: u32,
}

#[event(name = "catalog.price_changed")]
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PriceChanged {
    pub sku: String,
    pub cents: u64,
}

// ---- state the listeners are built from -------------------------------------------------

/// Stock per SKU (a database in a real service).
#[derive(Debug, Clone, Default)]
pub struct Warehouse(Arc<Mutex<HashMap<String, u32>>>);

/// Where order outcomes are written, so `main` knows when all orders are through.
#[derive(Debug, Clone, Default)]
pub struct Outcomes {
    done: Arc<Mutex<Vec<String>>>,
    changed: Arc<Notify>,
}

impl Outcomes {
    fn push(&self, outcome: String) {
        self.done.lock().expect("outcomes lock").push(outcome);
        self.changed.notify_waiters();
    }

    async fn wait_for(&self, count: usize) -> Vec<String> {
        loop {
            let changed = self.changed.notified();
            let done = self.done.lock().expect("outcomes lock").clone();
            if done.len() >= count {
                return done;
            }
            changed.await;
        }
    }
}

/// Every event the shop saw, as stored by [`StoreEveryEvent`] (a table in a real service).
#[derive(Debug, Clone, Default)]
pub struct EventLog {
    rows: Arc<Mutex<Vec<StoredEvent>>>,
    changed: Arc<Notify>,
}

/// One row of the event log.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub name: String,
    pub message_id: String,
    pub correlation_id: String,
    pub body: String,
}

impl EventLog {
    async fn wait_for(&self, count: usize) -> Vec<StoredEvent> {
        loop {
            let changed = self.changed.notified();
            let rows = self.rows.lock().expect("event log lock").clone();
            if rows.len() >= count {
                return rows;
            }
            changed.await;
        }
    }
}

// ---- listeners ---------------------------------------------------------------------------

/// Stores every event, whatever its type: a pattern listener on `#` takes them all, undecoded.
#[derive(Debug)]
pub struct StoreEveryEvent {
    log: EventLog,
}

impl FromState for StoreEveryEvent {
    fn from_state(state: &State) -> Result<Self, MissingState> {
        Ok(Self { log: state.get::<EventLog>()?.clone() })
    }
}

#[event_listener(pattern = "#")]
impl Listener<RawEvent> for StoreEveryEvent {
    async fn on(&self, event: RawEvent, ctx: &Context) -> Result<(), HandlerError> {
        let row = StoredEvent {
            name: event.name().to_owned(),
            message_id: ctx.message_id().to_owned(),
            correlation_id: ctx.correlation_id().to_owned(),
            body: String::from_utf8_lossy(event.body()).into_owned(),
        };
        self.log.rows.lock().map_err(|_| HandlerError::msg("event log lock poisoned"))?.push(row);
        self.log.changed.notify_waiters();
        Ok(())
    }
}

/// Reserves stock for each order: publishes `StockReserved` or `StockShort`.
#[derive(Debug)]
pub struct ReserveStock {
    warehouse: Warehouse,
}

impl FromState for ReserveStock {
    fn from_state(state: &State) -> Result<Self, MissingState> {
        Ok(Self { warehouse: state.get::<Warehouse>()?.clone() })
    }
}

#[event_listener(concurrency = 1)] // one reservation at a time keeps the stock count simple
impl Listener<OrderPlaced> for ReserveStock {
    async fn on(&self, order: OrderPlaced, ctx: &Context) -> Result<(), HandlerError> {
        let shortage = {
            let mut stock = self.warehouse.0.lock().map_err(|_| HandlerError::msg("warehouse lock poisoned"))?;
            let available = stock.entry(order.sku.clone()).or_default();
            if *available >= order.quantity {
                *available -= order.quantity;
                None
            } else {
                Some(order.quantity - *available)
            }
        };
        match shortage {
            None => ctx.publish(&StockReserved { order_id: order.order_id, email: order.email }).await?,
            Some(missing) => ctx.publish(&StockShort { order_id: order.order_id, sku: order.sku, missing }).await?,
        }
        Ok(())
    }
}

/// Mails the customer once the stock is reserved.
#[derive(Debug)]
pub struct SendConfirmation {
    outcomes: Outcomes,
}

impl FromState for SendConfirmation {
    fn from_state(state: &State) -> Result<Self, MissingState> {
        Ok(Self { outcomes: state.get::<Outcomes>()?.clone() })
    }
}

#[event_listener]
impl Listener<StockReserved> for SendConfirmation {
    async fn on(&self, reserved: StockReserved, ctx: &Context) -> Result<(), HandlerError> {
        tracing::info!(order = reserved.order_id, to = %reserved.email, chain = ctx.correlation_id(), "confirmation mailed");
        self.outcomes.push(format!("order {} confirmed to {}", reserved.order_id, reserved.email));
        Ok(())
    }
}

/// Tells the purchasing team about shortages.
#[derive(Debug)]
pub struct ReportShortage {
    outcomes: Outcomes,
}

impl FromState for ReportShortage {
    fn from_state(state: &State) -> Result<Self, MissingState> {
        Ok(Self { outcomes: state.get::<Outcomes>()?.clone() })
    }
}

#[event_listener]
impl Listener<StockShort> for ReportShortage {
    async fn on(&self, short: StockShort, _ctx: &Context) -> Result<(), HandlerError> {
        tracing::warn!(order = short.order_id, sku = %short.sku, missing = short.missing, "stock short");
        self.outcomes.push(format!("order {} short of {} x {}", short.order_id, short.missing, short.sku));
        Ok(())
    }
}

/// Every running process keeps its own price cache: `per_process` gives each one every event.
#[derive(Debug, Default)]
pub struct RefreshPriceCache {
    prices: Mutex<HashMap<String, u64>>,
}

#[event_listener(per_process)]
impl Listener<PriceChanged> for RefreshPriceCache {
    async fn on(&self, change: PriceChanged, _ctx: &Context) -> Result<(), HandlerError> {
        self.prices
            .lock()
            .map_err(|_| HandlerError::msg("cache lock poisoned"))?
            .insert(change.sku.clone(), change.cents);
        tracing::info!(sku = %change.sku, cents = change.cents, "price cache refreshed");
        Ok(())
    }
}

// ---- the program ---------------------------------------------------------------------------

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    eventing_examples::init_logging();

    let warehouse = Warehouse::default();
    warehouse.0.lock().expect("fresh lock").extend([("kettle".to_owned(), 3), ("teapot".to_owned(), 1)]);
    let outcomes = Outcomes::default();
    let log = EventLog::default();

    // The transport comes from EVENTING_URL; unset, it is the in-memory broker.
    let builder = eventing::builder().service("shop").state(warehouse).state(outcomes.clone()).state(log.clone());
    if std::env::args().any(|arg| arg == "--asyncapi") {
        // What this service's bus would declare and consume, from the same builder.
        println!("{}", builder.asyncapi(&Info::new(env!("CARGO_PKG_VERSION")))?.to_json_pretty());
        return Ok(());
    }
    let bus = builder.start().await?;

    bus.publish(&PriceChanged { sku: "kettle".into(), cents: 2_999 }).await?;
    let orders =
        [(1, "ada@example.com", "kettle", 2), (2, "bob@example.com", "teapot", 2), (3, "cy@example.com", "kettle", 1)];
    for (order_id, email, sku, quantity) in orders {
        bus.publish(&OrderPlaced { order_id, email: email.into(), sku: sku.into(), quantity }).await?;
    }

    let done = tokio::time::timeout(Duration::from_secs(30), outcomes.wait_for(orders.len())).await?;
    for outcome in &done {
        tracing::info!("{outcome}");
    }
    // One price change, three orders and their three outcomes.
    let stored = tokio::time::timeout(Duration::from_secs(30), log.wait_for(7)).await?;
    for row in &stored {
        tracing::info!(event = %row.name, id = %row.message_id, chain = %row.correlation_id, body = %row.body, "stored");
    }
    bus.shutdown().await?;
    Ok(())
}
