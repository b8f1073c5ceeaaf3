//! Running recurring work once per period per service, however many processes run it.
//!
//! **Election.** Each item has a lock, `<service>.recurring.<name>`, taken with
//! [`Transport::try_lock`]: on RabbitMQ an exclusive queue of that name, declared on a
//! connection of its own. RabbitMQ lets one connection own an exclusive queue and deletes it
//! when that connection closes or dies (heartbeat timeout, TCP reset, `kill -9`), so the
//! lock needs no extra infrastructure, no clock agreement and no expiry to tune, and cannot
//! outlive its holder. A single-active-consumer queue would elect as well, but its elected
//! consumer learns of its election only from a delivery, so it needs a token message kept
//! circulating, which a crash can lose or duplicate. The in-memory broker has the same
//! exclusive queues, so buses sharing one [`MemoryBroker`](crate::memory::MemoryBroker)
//! elect alike.
//!
//! **Periods.** Period starts come from the schedule (fixed periods are aligned to the Unix
//! epoch), so every process agrees on them and a run is named `<name>@<period start>`.
//! The holder runs at each period start after confirming it still holds the lock (a lost
//! connection means another process may hold it by now). The others try to take the lock
//! in the middle of each period and, once they hold it, run from the next period start on:
//! a process never runs a period whose start it saw without the lock, so a period is never
//! run twice, and when the holder stops, another takes over within one and a half periods.
//! Periods missed while nobody held the lock are not caught up. A run still going at the
//! next period start makes that period skipped (logged), and a failed run is logged and the
//! next period runs as usual.
//!
//! **Clock.** The scheduler reads wall-clock time through tokio's clock (anchored at start,
//! moved forward when the wall clock is ahead, e.g. after a suspend), so schedules can be
//! tested with `#[tokio::test(start_paused = true)]`.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Publisher;
use crate::message::{Headers, JSON, Message};
use crate::recurring::{ErasedRecurring, Schedule};
use crate::transport::{Lock, Transport};
use crate::{Context, naming};

/// One recurring item, ready to schedule.
pub(crate) struct PlannedRecurring {
    pub(crate) name: &'static str,
    pub(crate) rust_type: &'static str,
    pub(crate) lock: String,
    pub(crate) schedule: Schedule,
    pub(crate) work: Arc<dyn ErasedRecurring>,
}

/// The lock of recurring item `name` of `service`.
pub(crate) fn lock_name(service: &str, name: &str) -> String {
    format!("{service}.recurring.{name}")
}

/// Starts one scheduler task per item; they end when `stop` is cancelled, after a run in
/// progress finished (or `shutdown_timeout` passed), releasing their locks.
pub(crate) fn spawn(
    items: Vec<PlannedRecurring>,
    transport: &Arc<dyn Transport>,
    publisher: &Arc<Publisher>,
    stop: &CancellationToken,
    shutdown_timeout: Duration,
) -> Vec<JoinHandle<()>> {
    items
        .into_iter()
        .map(|item| {
            tracing::info!(recurring = item.name, schedule = %item.schedule, lock = %item.lock, "scheduling");
            let scheduler = Scheduler {
                item,
                transport: Arc::clone(transport),
                publisher: Arc::clone(publisher),
                stop: stop.child_token(),
                clock: Clock::new(),
                shutdown_timeout,
            };
            tokio::spawn(scheduler.run())
        })
        .collect()
}

/// Wall-clock time read through tokio's clock.
struct Clock {
    anchor: SystemTime,
    at: Instant,
}

impl Clock {
    fn new() -> Self {
        Self { anchor: SystemTime::now(), at: Instant::now() }
    }

    fn now(&mut self) -> SystemTime {
        let now = self.anchor + self.at.elapsed();
        let wall = SystemTime::now();
        if wall.duration_since(now).is_ok_and(|ahead| ahead > Duration::from_secs(1)) {
            // The wall clock moved ahead (a suspend, a clock step): follow it.
            self.anchor = wall;
            self.at = Instant::now();
            return wall;
        }
        now
    }

    fn instant_of(&mut self, time: SystemTime) -> Instant {
        let now = self.now();
        Instant::now() + time.duration_since(now).unwrap_or_default()
    }
}

struct Scheduler {
    item: PlannedRecurring,
    transport: Arc<dyn Transport>,
    publisher: Arc<Publisher>,
    stop: CancellationToken,
    clock: Clock,
    shutdown_timeout: Duration,
}

impl Scheduler {
    async fn run(mut self) {
        let name = self.item.name;
        let mut held: Option<Box<dyn Lock>> = None;
        let mut running: Option<JoinHandle<()>> = None;
        // The first try is at once; later ones in the middle of a period.
        let mut try_at = self.clock.now();
        // The latest time waited for: period starts are looked up after it, so a clock that
        // does not move (paused tokio time) still moves on.
        let mut cursor = try_at;
        loop {
            if held.is_none() {
                if !self.sleep_until(try_at).await {
                    break;
                }
                cursor = cursor.max(try_at);
                match self.transport.try_lock(&self.item.lock).await {
                    Ok(Some(lock)) => {
                        tracing::info!(recurring = name, lock = %self.item.lock, "this process runs it now");
                        held = Some(lock);
                    }
                    Ok(None) => tracing::trace!(recurring = name, "another process runs it"),
                    Err(error) => {
                        tracing::warn!(recurring = name, %error, "cannot take the lock; trying again next period")
                    }
                }
                if held.is_none() {
                    let Some(next) = self.midpoint_after(cursor) else { break };
                    try_at = next;
                    continue;
                }
            }
            let Some(start) = self.item.schedule.next_after(cursor.max(self.clock.now())) else {
                tracing::info!(recurring = name, "the schedule has no more periods");
                self.stop.cancelled().await;
                break;
            };
            if !self.sleep_until(start).await {
                break;
            }
            cursor = start;
            let still_held = match &held {
                Some(lock) => lock.confirm().await,
                None => false,
            };
            if !still_held {
                tracing::warn!(recurring = name, "lost the lock (connection lost?); another process may run it");
                held = None;
                let Some(next) = self.midpoint_after(cursor) else { break };
                try_at = next;
                continue;
            }
            if running.as_ref().is_some_and(|run| !run.is_finished()) {
                tracing::warn!(
                    recurring = name,
                    period = %period_text(start),
                    "the previous run is still going: skipping this period"
                );
                counted(name, "skipped");
                continue;
            }
            running = Some(self.start_run(start));
        }
        if let Some(run) = running {
            if tokio::time::timeout(self.shutdown_timeout, run).await.is_err() {
                tracing::warn!(recurring = name, "a run was still going at shutdown and was abandoned");
            }
        }
        drop(held);
    }

    /// Sleeps until `time`; false when stopped first.
    async fn sleep_until(&mut self, time: SystemTime) -> bool {
        let deadline = self.clock.instant_of(time);
        tokio::select! {
            () = self.stop.cancelled() => false,
            () = tokio::time::sleep_until(deadline) => true,
        }
    }

    /// The middle of the first period that starts after `time`.
    fn midpoint_after(&self, time: SystemTime) -> Option<SystemTime> {
        let start = self.item.schedule.next_after(time)?;
        let end = self.item.schedule.next_after(start)?;
        Some(start + end.duration_since(start).unwrap_or_default() / 2)
    }

    fn start_run(&self, start: SystemTime) -> JoinHandle<()> {
        let name = self.item.name;
        let run_id = format!("{name}@{}", period_text(start));
        let cause = Message {
            body: b"{}".to_vec(),
            message_id: run_id.clone(),
            correlation_id: None,
            causation_id: None,
            event_type: Cow::Owned(format!("recurring.{name}")),
            content_type: Some(Cow::Borrowed(JSON)),
            timestamp: start,
            app_id: None,
            persistent: false,
            attempt: 1,
            headers: Headers::new(),
            reply_to: None,
            expiration: None,
        };
        let ctx = Context::new(Arc::clone(&self.publisher), Arc::new(cause), name, false);
        let work = Arc::clone(&self.item.work);
        let rust_type = self.item.rust_type;
        tokio::spawn(async move {
            tracing::debug!(recurring = name, run = %run_id, "running");
            match tokio::spawn(work.run(ctx)).await {
                Ok(Ok(())) => {
                    tracing::debug!(recurring = name, run = %run_id, "done");
                    counted(name, "ok");
                }
                Ok(Err(error)) => {
                    tracing::error!(recurring = name, rust_type, run = %run_id, %error, "the run failed; it runs again next period");
                    counted(name, "failed");
                }
                Err(error) => {
                    tracing::error!(recurring = name, rust_type, run = %run_id, %error, "the run panicked; it runs again next period");
                    counted(name, "failed");
                }
            }
        })
    }
}

/// Counts a period of recurring item `name` by outcome (`ok`, `failed`, `skipped`) as
/// `eventing_recurring_runs_total{recurring,outcome}` when the `metrics` feature is on.
fn counted(name: &'static str, outcome: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("eventing_recurring_runs_total", "recurring" => name, "outcome" => outcome).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (name, outcome);
}

/// A period start as RFC 3339 UTC, with milliseconds only when it has some.
fn period_text(start: SystemTime) -> String {
    let subsec = start.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    if subsec == 0 {
        humantime::format_rfc3339_seconds(start).to_string()
    } else {
        humantime::format_rfc3339_millis(start).to_string()
    }
}

/// The default service of an item defined in crate `crate_name`.
pub(crate) fn default_service(crate_name: &str) -> String {
    naming::service_from_crate(crate_name)
}
