//! `#[recurring]` on the in-memory broker: one run per period across buses sharing a
//! broker, takeover when the runner stops, cron schedules, failing and slow runs.

use std::collections::BTreeMap;
use std::time::Duration;

use eventing::memory::MemoryBroker;
use eventing::{Context, FromState, HandlerError, MissingState, Recurring, State, event, recurring};
use serde::{Deserialize, Serialize};

/// What every run publishes: which item, which bus.
#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ran {
    pub item: String,
    pub by: String,
}

/// Which bus a run happens in.
#[derive(Debug, Clone)]
pub struct Who(pub &'static str);

fn who(state: &State) -> Result<&'static str, MissingState> {
    Ok(state.get::<Who>()?.0)
}

#[derive(Debug)]
pub struct Ticker(&'static str);

impl FromState for Ticker {
    fn from_state(state: &State) -> Result<Self, MissingState> {
        Ok(Self(who(state)?))
    }
}

#[recurring(every = "1s")]
impl Recurring for Ticker {
    async fn run(&self, ctx: &Context) -> Result<(), HandlerError> {
        ctx.publish(&Ran { item: "ticker".into(), by: self.0.into() }).await?;
        Ok(())
    }
}

#[derive(Debug)]
pub struct EveryTenSeconds(&'static str);

impl FromState for EveryTenSeconds {
    fn from_state(state: &State) -> Result<Self, MissingState> {
        Ok(Self(who(state)?))
    }
}

#[recurring(cron = "*/10 * * * * *", name = "every_ten_seconds")]
impl Recurring for EveryTenSeconds {
    async fn run(&self, ctx: &Context) -> Result<(), HandlerError> {
        ctx.publish(&Ran { item: "every_ten_seconds".into(), by: self.0.into() }).await?;
        Ok(())
    }
}

#[derive(Debug)]
pub struct AlwaysFails(&'static str);

impl FromState for AlwaysFails {
    fn from_state(state: &State) -> Result<Self, MissingState> {
        Ok(Self(who(state)?))
    }
}

#[recurring(every = "1s")]
impl Recurring for AlwaysFails {
    async fn run(&self, ctx: &Context) -> Result<(), HandlerError> {
        ctx.publish(&Ran { item: "always_fails".into(), by: self.0.into() }).await?;
        Err(HandlerError::permanent(std::io::Error::other("the run failed on purpose")))
    }
}

#[derive(Debug)]
pub struct TakesThreeSeconds(&'static str);

impl FromState for TakesThreeSeconds {
    fn from_state(state: &State) -> Result<Self, MissingState> {
        Ok(Self(who(state)?))
    }
}

#[recurring(every = "1s")]
impl Recurring for TakesThreeSeconds {
    async fn run(&self, ctx: &Context) -> Result<(), HandlerError> {
        ctx.publish(&Ran { item: "takes_three_seconds".into(), by: self.0.into() }).await?;
        tokio::time::sleep(Duration::from_millis(2500)).await;
        Ok(())
    }
}

async fn bus(broker: &MemoryBroker, name: &'static str) -> eventing::Bus {
    eventing::builder()
        .transport(broker.transport())
        .service("clock")
        .process_id(name)
        .state(Who(name))
        .start()
        .await
        .expect("bus starts")
}

/// The runs of `item` so far: (bus, correlation id), in order.
fn runs(broker: &MemoryBroker, item: &str) -> Vec<(String, String)> {
    broker
        .published()
        .iter()
        .filter_map(|published| {
            let ran: Ran = published.decode()?;
            (ran.item == item).then(|| (ran.by, published.message.chain_id().to_owned()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_buses_run_it_once_per_second_and_the_survivor_carries_on() {
    let broker = MemoryBroker::new();
    broker.record_published();
    let buses = [bus(&broker, "a").await, bus(&broker, "b").await, bus(&broker, "c").await];
    tokio::time::sleep(Duration::from_millis(5200)).await;

    let before = runs(&broker, "ticker");
    assert!((4..=6).contains(&before.len()), "about one run per second in all, not three: {before:?}");
    let mut ids: Vec<&String> = before.iter().map(|(_, id)| id).collect();
    ids.dedup();
    assert_eq!(ids.len(), before.len(), "each period ran once: {before:?}");
    assert!(before.iter().all(|(_, id)| id.starts_with("ticker@") && id.ends_with('Z')), "{before:?}");
    let mut by_bus: BTreeMap<&str, usize> = BTreeMap::new();
    for (by, _) in &before {
        *by_bus.entry(by).or_default() += 1;
    }
    assert_eq!(by_bus.len(), 1, "one bus runs it: {by_bus:?}");

    // Stop the runner and one other: the survivor takes over within two periods.
    let runner = before[0].0.clone();
    let survivor = ["a", "b", "c"].into_iter().rfind(|name| *name != runner).expect("a survivor");
    for bus in &buses {
        if bus.process_id() != survivor {
            bus.shutdown().await.expect("shutdown");
        }
    }
    let stopped = runs(&broker, "ticker").len();
    tokio::time::sleep(Duration::from_millis(4200)).await;
    let after = &runs(&broker, "ticker")[stopped..];
    assert!(after.len() >= 2, "the survivor took over within two periods: {after:?}");
    assert!(after.iter().all(|(by, _)| by == survivor), "{after:?}");
    let mut all: Vec<String> = runs(&broker, "ticker").into_iter().map(|(_, id)| id).collect();
    let count = all.len();
    all.dedup();
    assert_eq!(all.len(), count, "no period ran twice across the takeover");
    for bus in &buses {
        bus.shutdown().await.expect("shutdown");
    }
}

#[tokio::test(start_paused = true)]
async fn cron_schedules_run_on_their_seconds() {
    let broker = MemoryBroker::new();
    broker.record_published();
    let bus = bus(&broker, "solo").await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    let ran = runs(&broker, "every_ten_seconds");
    assert!((5..=6).contains(&ran.len()), "every ten seconds for a minute: {ran:?}");
    for (_, id) in &ran {
        let second = id.trim_end_matches('Z').rsplit(':').next().expect("seconds");
        assert!(second.ends_with('0'), "period starts on a multiple of ten seconds: {id}");
    }
    bus.shutdown().await.expect("shutdown");
}

#[tokio::test(start_paused = true)]
async fn a_failed_run_runs_again_next_period_and_a_slow_one_is_not_started_twice() {
    let broker = MemoryBroker::new();
    broker.record_published();
    let bus = bus(&broker, "solo").await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let failed = runs(&broker, "always_fails");
    assert!((19..=20).contains(&failed.len()), "a failing run is tried every period: {}", failed.len());
    let slow = runs(&broker, "takes_three_seconds");
    assert!((6..=7).contains(&slow.len()), "a run still going skips the next periods: {}", slow.len());
    bus.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_recurring_item_can_be_disabled_and_rescheduled_by_the_file() {
    let dir = std::env::temp_dir().join(format!("eventing-recurring-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("eventing.toml");
    std::fs::write(&path, "[recurring.ticker]\ncron = \"0 0 * * * *\"\n\n[recurring.always_fails]\nenabled = false\n")
        .expect("write");
    let settings = eventing::builder().service("clock").config_file(&path).recurring_settings().expect("settings");
    let ticker = settings.iter().find(|item| item.name == "ticker").expect("ticker");
    assert_eq!(ticker.schedule.to_string(), "cron 0 0 * * * *");
    assert_eq!(ticker.lock, "clock.recurring.ticker");
    assert!(!settings.iter().find(|item| item.name == "always_fails").expect("always_fails").enabled);

    std::fs::write(&path, "[recurring.tikcer]\nevery = \"5s\"\n").expect("write");
    let error = eventing::builder().config_file(&path).recurring_settings().expect_err("unknown name");
    assert!(error.to_string().ends_with(":1: `recurring.tikcer`: no recurring item is named `tikcer`; recurring items: `always_fails`, `every_ten_seconds`, `takes_three_seconds`, `ticker`"), "{error}");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(start_paused = true)]
async fn a_bus_can_leave_recurring_work_to_others() {
    let broker = MemoryBroker::new();
    broker.record_published();
    let bus = eventing::builder()
        .transport(broker.transport())
        .state(Who("publisher"))
        .recurring(false)
        .start()
        .await
        .expect("bus starts");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(runs(&broker, "ticker").is_empty(), "a bus with .recurring(false) runs nothing");
    bus.shutdown().await.expect("shutdown");
}
