//! A graceful shutdown on RabbitMQ logs no error (issue 12, defect 8: every shutdown logged
//! `ERROR lapin::channels: Connection error … invalid channel state: Closing`). Its own test
//! binary, because it installs the global log subscriber: lapin logs from its own threads.

mod support;

use std::sync::Arc;
use std::time::Duration;

use eventing::{Context, FromState, HandlerError, Listener, MissingState, State, event, event_listener};
use serde::{Deserialize, Serialize};
use support::broker::{reachable_amqp_url, scope};
use support::logs::Captured;
use tokio::sync::Notify;

#[event(name = "shutdown.lamp_switched", durable)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LampSwitched {
    pub on: bool,
}

#[derive(Debug)]
pub struct RecordSwitch {
    handled: Arc<Notify>,
}

impl FromState for RecordSwitch {
    fn from_state(state: &State) -> Result<Self, MissingState> {
        Ok(Self { handled: Arc::clone(state.get::<Arc<Notify>>()?) })
    }
}

#[event_listener]
impl Listener<LampSwitched> for RecordSwitch {
    async fn on(&self, _event: LampSwitched, _ctx: &Context) -> Result<(), HandlerError> {
        self.handled.notify_one();
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_logs_no_error() {
    let Some(url) = reachable_amqp_url() else { return };
    let captured = Captured::default();
    captured.install(&std::env::var("RUST_LOG").unwrap_or_else(|_| "debug".into()));
    let (service, exchange) = scope("shutdown");
    let handled = Arc::new(Notify::new());

    for round in 0..3 {
        let bus = eventing::builder()
            .url(url.clone())
            .service(service.clone())
            .exchange(exchange.clone())
            .process_id(format!("p{round}"))
            .state(Arc::clone(&handled))
            .start()
            .await
            .expect("start");
        bus.publish(&LampSwitched { on: true }).await.expect("publish");
        tokio::time::timeout(Duration::from_secs(10), handled.notified()).await.expect("handled");
        bus.shutdown().await.expect("shutdown");
    }
    // Let lapin's I/O threads finish what a shutdown started.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let logs = captured.text();
    let lines: Vec<&str> = logs.lines().collect();
    // A second defect hid behind the first: the runtime's drop of a subscription and the
    // transport's shutdown both closed the consumer's channel, and the second returned at
    // once, so the connection closed while the channel's close-ok was on its way and lapin
    // logged `Connection error error=invalid channel: N` (about one shutdown in fifteen).
    let errors: Vec<usize> =
        (0..lines.len()).filter(|&at| lines[at].contains(" ERROR ") || lines[at].contains(" WARN ")).collect();
    support::broker::delete_scope(&url, &service, &exchange).await;
    if let Some(&first) = errors.first() {
        let context = lines[first.saturating_sub(60)..=first].join("\n");
        panic!(
            "a clean shutdown logged {} errors or warnings; the first, after what led to it:\n{context}",
            errors.len()
        );
    }
}
