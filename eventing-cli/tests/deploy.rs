//! `eventing config check`, `eventing topology declare` and `eventing topology --format
//! json|mermaid`, run in-process so this binary's listener and recurring item are linked in.

mod support;

use std::ffi::OsString;
use std::process::ExitCode;

use eventing::{Context, HandlerError, Listener, Recurring, event, event_listener, recurring};
use eventing_cli::Console;
use serde::{Deserialize, Serialize};
use support::{Cleanup, Plain, broker_url, unique};

#[event(name = "deploy.order_shipped", durable)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderShipped {
    pub order: u64,
}

#[derive(Debug, Default)]
pub struct NotifyCustomer;

#[event_listener(max_attempts = 2)]
impl Listener<OrderShipped> for NotifyCustomer {
    async fn on(&self, _: OrderShipped, _: &Context) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[derive(Debug, Default)]
pub struct Reconcile;

#[recurring(cron = "0 0 * * * *")]
impl Recurring for Reconcile {
    async fn run(&self, _: &Context) -> Result<(), HandlerError> {
        Ok(())
    }
}

async fn eventing(args: &[&str]) -> (ExitCode, String, String) {
    let args = std::iter::once("eventing").chain(args.iter().copied()).map(OsString::from);
    let mut input: &[u8] = b"";
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let console = Console { input: &mut input, interactive: false, out: &mut out, err: &mut err };
    let code = eventing_cli::run_in(args, console).await;
    (code, String::from_utf8_lossy(&out).into_owned(), String::from_utf8_lossy(&err).into_owned())
}

fn file(name: &str, text: &str) -> String {
    let path = std::env::temp_dir().join(format!("{}.toml", unique(name)));
    std::fs::write(&path, text).expect("write");
    path.display().to_string()
}

#[tokio::test]
async fn config_check_prints_resolved_settings_and_names_mistakes() {
    let path = file(
        "check",
        "service = \"shop\"\n[listeners.notify_customer]\nconcurrency = 3\nretry_delay = \"90s\"\n\n[recurring.reconcile]\nenabled = false\n",
    );
    let (code, out, err) = eventing(&["config", "check", &path]).await;
    assert_eq!(code, ExitCode::SUCCESS, "{err}");
    assert!(out.contains(&format!("config {path}: ok")), "{out}");
    assert!(
        out.contains("listener notify_customer (deploy::NotifyCustomer) on `deploy.order_shipped`: queue shop.deploy.order_shipped.notify_customer, concurrency 3, prefetch 6, max_attempts 2, retry_delay 90s, backoff exponential"),
        "{out}"
    );
    assert!(
        out.contains(
            "recurring reconcile (deploy::Reconcile): cron 0 0 * * * *, lock shop.recurring.reconcile, disabled"
        ),
        "{out}"
    );
    std::fs::remove_file(&path).ok();

    let path = file("typo", "[listeners.notify_customer]\nprefetsh = 3\n");
    let (code, _, err) = eventing(&["config", "check", &path]).await;
    assert_eq!(code, ExitCode::FAILURE);
    assert!(err.contains(&format!("{path}:2: `listeners.notify_customer.prefetsh`: unknown field")), "{err}");
    std::fs::remove_file(&path).ok();
}

#[tokio::test]
async fn topology_prints_as_json_and_mermaid() {
    let (code, out, err) = eventing(&["topology", "--service", "shop", "--format", "json"]).await;
    assert_eq!(code, ExitCode::SUCCESS, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(json["exchanges"][0], "eventing");
    assert_eq!(json["listeners"][0]["queue"], "shop.deploy.order_shipped.notify_customer");
    assert_eq!(json["recurring"][0]["lock"], "shop.recurring.reconcile");
    let tier = serde_json::json!({ "name": "shop.delay.1000ms", "lifetime": "durable", "role": "delay", "delay_ms": 1000, "transient": false });
    assert_eq!(json["queues"][0], tier, "the service's delay tier comes first: {json}");
    assert_eq!(json["exchanges"][1], "shop.delay.1000ms", "with its exchange");
    assert_eq!(json["listeners"][0]["retry_tiers"], serde_json::json!(["shop.delay.1000ms"]));

    let (code, out, err) = eventing(&["topology", "--service", "shop", "--format", "mermaid"]).await;
    assert_eq!(code, ExitCode::SUCCESS, "{err}");
    assert!(out.starts_with("flowchart LR\n"), "{out}");
    for expected in [
        "x0{{\"exchange eventing\"}}",
        "x0 -- \"deploy.order_shipped\" --> q1",
        "q0[/\"shop.delay.1000ms\"/]",
        "x1 -- \"#\" --> q0",
        "-. \"after 1s\" .-> q1",
        "([\"listener notify_customer\"])",
        "-. \"failed\" .->",
        "-. \"retry\" .->",
        "[[\"recurring reconcile: cron 0 0 * * * *\"]]",
    ] {
        assert!(out.contains(expected), "missing {expected}:\n{out}");
    }

    let (code, out, _) = eventing(&["topology", "--service", "shop"]).await;
    assert_eq!(code, ExitCode::SUCCESS);
    assert!(out.starts_with("exchange eventing (durable topic)\n"), "the plain output is unchanged: {out}");
}

#[tokio::test]
async fn topology_declare_declares_and_exits() {
    let Some(url) = broker_url() else { return };
    let service = unique("declare");
    let mut cleanup = Cleanup::new(&url);
    let exchange = cleanup.exchange(&unique("declare-exchange"));
    let queue = cleanup.queue(&format!("{service}.deploy.order_shipped.notify_customer"));
    cleanup.queue(&format!("{queue}.dead_letter"));
    let tier = cleanup.queue(&format!("{service}.delay.1000ms"));
    cleanup.exchange(&tier);
    let (code, out, err) =
        eventing(&["--url", &url, "topology", "declare", "--service", &service, "--exchange", &exchange]).await;
    assert_eq!(code, ExitCode::SUCCESS, "{err}");
    assert!(
        out.starts_with(&format!(
            "declared exchange {exchange}, 3 queues (1 of them delay tiers, each with its exchange), 2 bindings"
        )),
        "{out}"
    );
    let plain = Plain::connect(&url).await;
    assert_eq!(plain.count(&queue).await, 0, "the listener queue exists");
}
