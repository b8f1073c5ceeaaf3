//! `eventing.toml` and recurring work as DESIGN.md part 2 shows them (the examples are
//! copied verbatim), and the precedence table of the README, one test per row.

use std::path::PathBuf;
use std::time::Duration;

use eventing::memory::MemoryBroker;
use eventing::{RawEvent, event, event_listener};
use serde::{Deserialize, Serialize};

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Heartbeat {
    pub at: u64,
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_secs())
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserCreated {
    pub user_id: u64,
}

// --- DESIGN.md part 2, "Recurring work (seed 004) and configuration", verbatim ---
#[rustfmt::skip]
mod design {
use super::{Heartbeat, now};
use eventing::{recurring, Context, HandlerError, Recurring};

#[derive(Default)]
pub struct SendHeartbeat;

#[recurring(every = "5s")]                      // or cron = "0 */5 * * * *"; name "send_heartbeat"
impl Recurring for SendHeartbeat {
    async fn run(&self, ctx: &Context) -> Result<(), HandlerError> {
        ctx.publish(&Heartbeat { at: now() }).await?;
        Ok(())
    }
}
}
// --- end of the verbatim example ---
use eventing::{Context, HandlerError};

/// The `eventing.toml` of DESIGN.md part 2, verbatim.
const DESIGN_TOML: &str = r##"service = "shop"

[listeners.send_welcome_mail]   # by listener name
concurrency = 4
max_attempts = 3
retry_delay = "500ms"
enabled = false

[listeners.audit_trail]
pattern = "billing.#"

[recurring.send_heartbeat]
every = "10s"
"##;

#[derive(Debug, Default)]
pub struct SendWelcomeMail;

#[event_listener]
impl eventing::Listener<UserCreated> for SendWelcomeMail {
    async fn on(&self, _event: UserCreated, _ctx: &Context) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[derive(Debug, Default)]
pub struct AuditTrail;

#[event_listener(pattern = "#")]
impl eventing::Listener<RawEvent> for AuditTrail {
    async fn on(&self, _event: RawEvent, _ctx: &Context) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[derive(Debug, Default)]
pub struct ReserveStock;

#[event_listener(concurrency = 2, retry_delay_ms = 100)]
impl eventing::Listener<UserCreated> for ReserveStock {
    async fn on(&self, _event: UserCreated, _ctx: &Context) -> Result<(), HandlerError> {
        Ok(())
    }
}

/// A file `eventing.toml` in a directory of its own, removed when dropped.
struct TempFile(PathBuf);

impl std::ops::Deref for TempFile {
    type Target = PathBuf;

    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

impl AsRef<std::path::Path> for TempFile {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn file(name: &str, text: &str) -> TempFile {
    let dir = std::env::temp_dir().join(format!("eventing-config-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("eventing.toml");
    std::fs::write(&path, text).expect("write");
    TempFile(path)
}

fn setting<'a>(all: &'a [eventing::ListenerSettings], name: &str) -> &'a eventing::ListenerSettings {
    all.iter().find(|listener| listener.info.name == name).expect("listener")
}

#[tokio::test]
async fn the_design_file_disables_a_listener_rebinds_a_pattern_and_reschedules() {
    let path = file("design", DESIGN_TOML);
    let builder = eventing::builder().transport(MemoryBroker::new().transport()).config_file(&*path);
    let listeners = builder.listener_settings().expect("the file checks");
    assert!(!setting(&listeners, "send_welcome_mail").enabled);
    assert_eq!(setting(&listeners, "audit_trail").binding, "billing.#");
    let recurring = builder.recurring_settings().expect("the file checks");
    let heartbeat = recurring.iter().find(|item| item.name == "send_heartbeat").expect("send_heartbeat");
    assert_eq!(heartbeat.schedule.to_string(), "every 10s");
    assert_eq!(heartbeat.lock, "shop.recurring.send_heartbeat");

    let bus = builder.start().await.expect("starts");
    let topology = bus.topology();
    assert!(topology.queues.iter().all(|queue| !queue.name.contains("send_welcome_mail")), "{topology:?}");
    assert!(
        topology.bindings.iter().any(|binding| binding.queue == "shop.audit_trail" && binding.pattern == "billing.#"),
        "{topology:?}"
    );
    bus.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_file_changes_concurrency_and_retry_delay_beyond_the_attribute_cap() {
    let path = file("tuning", "[listeners.reserve_stock]\nconcurrency = 8\nretry_delay = \"2m\"\n");
    let builder = eventing::builder().service("shop").concurrency(5).config_file(&*path);
    let listeners = builder.listener_settings().expect("the file checks");
    let reserve = setting(&listeners, "reserve_stock");
    assert_eq!(reserve.concurrency, 8, "the file wins over attribute and builder");
    assert_eq!(reserve.retry.first_delay, Duration::from_secs(120));
    let topology = builder.topology().expect("topology");
    // Its 2-minute retries wait in a delay tier of the service (of transient queues: a
    // non-durable event's queue expires when idle).
    assert!(topology.queues.iter().any(|queue| queue.name == "shop.delay.120000ms.transient"), "{topology:?}");
}

#[tokio::test]
async fn a_typo_fails_the_start_naming_file_line_and_key() {
    let path = file("typo", "service = \"shop\"\n\n[listeners.reserve_stock]\nconcurency = 8\n");
    let error = eventing::builder().transport(MemoryBroker::new().transport()).config_file(&*path).start().await;
    let error = error.expect_err("a typo is a start error").to_string();
    let expected = format!("{}:4: `listeners.reserve_stock.concurency`: unknown field `concurency`", path.display());
    assert!(error.starts_with(&expected), "{error}");

    let path = file("unknown-listener", "[listeners.reserve_stok]\nconcurrency = 8\n");
    let error = eventing::builder().config_file(&*path).topology().expect_err("unknown listener").to_string();
    assert!(error.contains(":1: `listeners.reserve_stok`: no listener is named `reserve_stok`"), "{error}");

    let path = file("bad-value", "[listeners.reserve_stock]\nretry_delay = \"soon\"\n");
    let error = eventing::builder().config_file(&*path).topology().expect_err("bad value").to_string();
    assert!(error.contains(":2: `listeners.reserve_stock.retry_delay`: `soon` is not a duration"), "{error}");

    let missing = std::env::temp_dir().join("eventing-no-such-dir").join("eventing.toml");
    assert!(eventing::builder().config_file(&missing).topology().is_err(), "a file asked for must exist");
}

// Precedence, one test per row of the README's table.

#[test]
fn row_defaults() {
    let listeners = eventing::builder().service("shop").listener_settings().expect("settings");
    let mail = setting(&listeners, "send_welcome_mail");
    assert_eq!((mail.concurrency, mail.prefetch), (eventing::DEFAULT_CONCURRENCY, 32));
    assert_eq!(mail.retry, eventing::RetryPolicy::default());
}

#[test]
fn row_attributes_over_defaults() {
    let listeners = eventing::builder().service("shop").listener_settings().expect("settings");
    let reserve = setting(&listeners, "reserve_stock");
    assert_eq!(reserve.concurrency, 2);
    assert_eq!(reserve.retry.first_delay, Duration::from_millis(100));
}

#[test]
fn row_builder_is_every_listeners_default_and_the_attribute_wins_for_its_listener() {
    let listeners = eventing::builder().service("shop").concurrency(5).listener_settings().expect("settings");
    assert_eq!(setting(&listeners, "send_welcome_mail").concurrency, 5);
    assert_eq!(setting(&listeners, "reserve_stock").concurrency, 2);
}

#[test]
fn row_file_over_attribute_and_builder() {
    let path = file(
        "row-file",
        "[listeners.reserve_stock]\nconcurrency = 3\n\n[listeners.send_welcome_mail]\nconcurrency = 7\n",
    );
    let listeners =
        eventing::builder().service("shop").concurrency(5).config_file(&*path).listener_settings().expect("settings");
    assert_eq!(setting(&listeners, "reserve_stock").concurrency, 3);
    assert_eq!(setting(&listeners, "send_welcome_mail").concurrency, 7);
}

#[test]
fn row_names_file_over_defaults_and_builder_over_file() {
    let path = file("row-names", "service = \"from_file\"\nexchange = \"file_exchange\"\n");
    let topology = eventing::builder().config_file(&*path).topology().expect("topology");
    assert_eq!(topology.exchanges[0], "file_exchange");
    // The others are the service's delay tiers.
    assert!(topology.exchanges[1..].iter().all(|tier| tier.starts_with("from_file.delay.")), "{topology:?}");
    assert!(topology.queues.iter().all(|queue| queue.name.starts_with("from_file.")), "{topology:?}");
    let topology = eventing::builder().service("from_code").config_file(&*path).topology().expect("topology");
    assert!(topology.queues.iter().all(|queue| queue.name.starts_with("from_code.")), "{topology:?}");
}

/// The environment row needs its own process: this test runs this binary again with
/// `EVENTING_SERVICE` and `EVENTING_CONFIG` set, and the child prints its queue names.
#[test]
fn row_names_environment_over_file() {
    if std::env::var_os("EVENTING_TEST_CHILD").is_some() {
        let topology = eventing::builder().topology().expect("topology");
        for queue in &topology.queues {
            println!("queue {}", queue.name);
        }
        return;
    }
    let path = file("row-env", "service = \"from_file\"\n");
    let output = std::process::Command::new(std::env::current_exe().expect("this test binary"))
        .args(["--exact", "row_names_environment_over_file", "--nocapture", "--test-threads", "1"])
        .env("EVENTING_TEST_CHILD", "1")
        .env("EVENTING_CONFIG", &*path)
        .env("EVENTING_SERVICE", "from_env")
        .output()
        .expect("the child runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let queues: Vec<&str> = stdout.lines().filter_map(|line| line.strip_prefix("queue ")).collect();
    assert!(!queues.is_empty() && queues.iter().all(|queue| queue.starts_with("from_env.")), "{stdout}");
}
