//! [`Recorder`]: what listeners saw, shared with the test that waits for it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventing::Context;
use tokio::sync::{Notify, Semaphore};

/// One handled delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Which bus handled it (the recorder's label).
    pub bus: Arc<str>,
    /// Which listener.
    pub listener: &'static str,
    /// The event's number.
    pub n: u64,
    /// Delivery metadata.
    pub message_id: String,
    /// The chain's id.
    pub correlation_id: String,
    /// The causing message.
    pub causation_id: Option<String>,
    /// The attempt.
    pub attempt: u32,
    /// The delivery's headers (those given to `publish_with` or set by interceptors).
    pub headers: eventing::message::Headers,
    /// What the listener noted besides (e.g. a task-local it saw).
    pub note: Option<String>,
}

#[derive(Debug, Default)]
struct Shared {
    records: Mutex<Vec<Record>>,
    changed: Notify,
}

/// Records deliveries; clones with another [`label`](Recorder::labeled) share the records,
/// so two buses in one test write to one list and can be told apart.
#[derive(Debug, Clone)]
pub struct Recorder {
    shared: Arc<Shared>,
    label: Arc<str>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self { shared: Arc::default(), label: "bus".into() }
    }
}

impl Recorder {
    /// A handle writing to the same records under another bus label.
    pub fn labeled(&self, label: &str) -> Self {
        Self { shared: Arc::clone(&self.shared), label: label.into() }
    }

    /// Records one delivery.
    pub fn record(&self, n: u64, ctx: &Context) {
        self.record_noted(n, ctx, None);
    }

    /// Records one delivery with a note.
    pub fn record_noted(&self, n: u64, ctx: &Context, note: Option<String>) {
        let record = Record {
            bus: Arc::clone(&self.label),
            listener: ctx.listener(),
            n,
            message_id: ctx.message_id().to_owned(),
            correlation_id: ctx.correlation_id().to_owned(),
            causation_id: ctx.causation_id().map(str::to_owned),
            attempt: ctx.attempt(),
            headers: ctx.headers().clone(),
            note,
        };
        self.shared.records.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(record);
        self.shared.changed.notify_waiters();
    }

    /// Everything recorded so far.
    pub fn records(&self) -> Vec<Record> {
        self.shared.records.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The records of one listener.
    pub fn of(&self, listener: &str) -> Vec<Record> {
        self.records().into_iter().filter(|record| record.listener == listener).collect()
    }

    /// Waits until `done` holds for the records; panics with the records after `timeout`.
    pub async fn wait_until(&self, timeout: Duration, done: impl Fn(&[Record]) -> bool) -> Vec<Record> {
        let wait = async {
            loop {
                let changed = self.shared.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                let records = self.records();
                if done(&records) {
                    return records;
                }
                changed.await;
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(records) => records,
            Err(_) => panic!("condition not reached after {timeout:?}; records: {:#?}", self.records()),
        }
    }
}

/// Holds handlers inside `on` until the test releases them.
#[derive(Debug, Clone)]
pub struct Gate {
    entered: Arc<Semaphore>,
    release: Arc<Semaphore>,
}

impl Default for Gate {
    fn default() -> Self {
        Self { entered: Arc::new(Semaphore::new(0)), release: Arc::new(Semaphore::new(0)) }
    }
}

impl Gate {
    /// Called by a handler: announces it is inside and waits to be released.
    pub async fn pass(&self) {
        self.entered.add_permits(1);
        if let Ok(permit) = self.release.acquire().await {
            permit.forget();
        }
    }

    /// Waits until `count` handlers are inside.
    pub async fn entered(&self, count: u32) {
        let permits = self.entered.acquire_many(count).await.expect("the gate is never closed");
        permits.forget();
    }

    /// Lets `count` handlers go on.
    pub fn release(&self, count: usize) {
        self.release.add_permits(count);
    }
}
