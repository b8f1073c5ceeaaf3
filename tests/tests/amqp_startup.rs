//! Starting on RabbitMQ: the contract unchanged but for the URL, the names and flags on the
//! broker, and what a wrong URL or a conflicting queue says.

mod support;

use std::process::Command;
use std::time::Duration;

use eventing::{Context, HandlerError, Listener, event, event_listener};
use eventing_amqp::{AmqpOptions, AmqpTransport};
use serde::{Deserialize, Serialize};
use support::broker::{reachable_amqp_url, unique};

#[event] // name "user_created", not durable
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserCreated {
    pub user_id: u64,
    pub email: String,
}

#[event(name = "billing.invoice_paid", durable)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InvoicePaid {
    pub invoice: String,
}

#[derive(Debug, Default)]
pub struct SendWelcomeMail;

#[event_listener] // name "send_welcome_mail", competing consumers
impl Listener<UserCreated> for SendWelcomeMail {
    async fn on(&self, event: UserCreated, ctx: &Context) -> Result<(), HandlerError> {
        ctx.publish(&InvoicePaid { invoice: format!("welcome-{}", event.user_id) }).await?;
        Ok(())
    }
}

#[derive(Debug, Default)]
pub struct InvalidateCache;

#[event_listener(per_process)] // every running process gets every event
impl Listener<UserCreated> for InvalidateCache {
    async fn on(&self, _event: UserCreated, _ctx: &Context) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[derive(Debug, Default)]
pub struct RecordInvoice;

#[event_listener]
impl Listener<InvoicePaid> for RecordInvoice {
    async fn on(&self, _event: InvoicePaid, _ctx: &Context) -> Result<(), HandlerError> {
        Ok(())
    }
}

/// `rabbitmqctl list_queues name durable exclusive`, rows whose name starts with `prefix`.
fn list_queues(prefix: &str) -> Vec<String> {
    let output = Command::new("rabbitmqctl")
        .args(["list_queues", "--quiet", "--no-table-headers", "name", "durable", "exclusive", "arguments"])
        .output()
        .expect("rabbitmqctl runs");
    let mut rows: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.starts_with(prefix))
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    rows.sort();
    rows
}

async fn admin(url: &str) -> AmqpTransport {
    AmqpTransport::connect(url, AmqpOptions::default()).await.expect("admin connection")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_contract_runs_on_rabbitmq_with_the_names_and_flags_of_the_table() {
    let Some(url) = reachable_amqp_url() else { return };
    let service = unique("contract");
    let exchange = unique("contract-exchange");
    let bus = eventing::builder()
        .url(url.clone())
        .service(service.clone())
        .exchange(exchange.clone())
        .process_id("host-1")
        .retry_policy(eventing::RetryPolicy::fixed(3, Duration::from_secs(1)))
        .start()
        .await
        .expect("start on RabbitMQ");
    bus.publish(&UserCreated { user_id: 7, email: "a@example.com".into() }).await.expect("publish");

    let rows = list_queues(&service);
    let expiry = "[{\"x-expires\",1800000}]";
    let invoices = format!("{service}.billing.invoice_paid.record_invoice");
    let cache = format!("{service}.user_created.invalidate_cache.host-1");
    let mail = format!("{service}.user_created.send_welcome_mail");
    let tier = format!("{service}.delay.1000ms");
    let (tiers, others): (Vec<&String>, Vec<&String>) = rows.iter().partition(|row| row.starts_with(&tier));
    assert_eq!(
        others,
        vec![
            &format!("{invoices} true false []"),
            &format!("{invoices}.dead_letter true false []"),
            &format!("{service}.user_created.invalidate_cache.dead_letter true false []"),
            &format!("{cache} false true []"),
            &format!("{mail} true false {expiry}"),
            &format!("{mail}.dead_letter true false []"),
        ]
    );
    // The retries of all three listeners wait 1 s in the service's delay tiers, durable
    // queues whose messages expire through the default exchange with their own routing key.
    assert_eq!(tiers.len(), 2, "{tiers:#?}");
    for row in &tiers {
        assert_eq!(row.split(' ').nth(1), Some("true"), "durable: {row}");
        assert!(row.contains("{\"x-message-ttl\",1000}"), "{row}");
        assert!(row.contains("{\"x-dead-letter-exchange\",[]}"), "{row}");
        assert!(!row.contains("x-dead-letter-routing-key"), "{row}");
    }
    // The invoices' tier (durable queues) moves at least once; the tier of the per-process
    // and expiring queues drops a retry whose queue is gone.
    let durable_tier = tiers.iter().find(|row| row.starts_with(&format!("{tier} "))).expect("the durable tier");
    assert!(durable_tier.contains("{\"x-dead-letter-strategy\",\"at-least-once\"}"), "{durable_tier}");
    let transient_tier =
        tiers.iter().find(|row| row.starts_with(&format!("{tier}.transient "))).expect("the transient tier");
    assert!(!transient_tier.contains("at-least-once"), "{transient_tier}");
    bus.shutdown().await.expect("shutdown");
    assert!(
        !list_queues(&service).iter().any(|row| row.contains("host-1")),
        "the per-process queue goes with the connection"
    );

    support::broker::delete_scope(&url, &service, &exchange).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declaring_twice_and_from_many_processes_at_once_is_harmless() {
    let Some(url) = reachable_amqp_url() else { return };
    let service = unique("twice");
    let exchange = unique("twice-exchange");
    let start = |process: &str| {
        eventing::builder()
            .url(url.clone())
            .service(service.clone())
            .exchange(exchange.clone())
            .process_id(process.to_owned())
            .start()
    };
    let (a, b, c) = tokio::join!(start("a"), start("b"), start("c"));
    for bus in [a.expect("a"), b.expect("b"), c.expect("c")] {
        bus.shutdown().await.expect("shutdown");
    }
    support::broker::delete_scope(&url, &service, &exchange).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_existing_queue_is_a_start_error_naming_it() {
    let Some(url) = reachable_amqp_url() else { return };
    let service = unique("conflict");
    // The shared queue of a non-durable event exists already, declared without expiry.
    let queue = format!("{service}.user_created.send_welcome_mail");
    let admin = admin(&url).await;
    use eventing::transport::{QueueLifetime, QueueRole, QueueSpec, Topology, Transport};
    let plain = QueueSpec { name: queue.clone(), lifetime: QueueLifetime::Durable, role: QueueRole::Listener };
    admin.declare(&Topology { queues: vec![plain], ..Topology::default() }).await.expect("declare plain queue");

    let exchange = unique("conflict-exchange");
    let error = eventing::builder()
        .url(url.clone())
        .service(service.clone())
        .exchange(exchange.clone())
        .start()
        .await
        .expect_err("conflict");
    let text = error.to_string();
    assert!(text.contains(&format!("queue `{queue}` exists with different arguments")), "{text}");
    assert!(text.contains("x-expires"), "{text}");

    support::broker::delete_scope(&url, &service, &exchange).await;
    assert!(list_queues(&service).is_empty(), "a failed start leaves nothing behind: {:?}", list_queues(&service));
}

#[tokio::test]
async fn a_wrong_port_host_password_or_vhost_says_which() {
    let Some(_) = reachable_amqp_url() else { return };
    let cases = [
        ("amqp://guest:guest@127.0.0.1:1/%2f", "127.0.0.1:1 (connection refused)"),
        ("amqp://guest:guest@no-such-host.invalid:5672/%2f", "cannot reach no-such-host.invalid:5672"),
        ("amqp://guest:wrong-secret@127.0.0.1:5672/%2f", "refused the credentials of user `guest`"),
        ("amqp://guest:guest@127.0.0.1:5672/no-such-vhost", "vhost `no-such-vhost`"),
    ];
    for (url, expected) in cases {
        let started = std::time::Instant::now();
        let error = eventing::builder().url(url).start().await.expect_err(url);
        let text = error.to_string();
        assert!(text.contains(expected), "{url}: {text}");
        assert!(!text.contains("wrong-secret"), "the password leaked: {text}");
        assert!(started.elapsed() < Duration::from_secs(15), "{url} took {:?}", started.elapsed());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_queues_are_selectable_for_durable_queues() {
    let Some(url) = reachable_amqp_url() else { return };
    let service = unique("quorum");
    let exchange = unique("quorum-exchange");
    let options =
        AmqpOptions::default().with_queue_type(eventing_amqp::QueueType::Quorum).with_connection_name(service.clone());
    let transport = AmqpTransport::connect(&url, options).await.expect("connect");
    let bus = eventing::builder()
        .transport(transport)
        .service(service.clone())
        .exchange(exchange.clone())
        .listeners(|info| info.event == "billing.invoice_paid")
        .retry_policy(eventing::RetryPolicy::fixed(2, Duration::from_secs(1)))
        .start()
        .await
        .expect("start with quorum queues");
    bus.shutdown().await.expect("shutdown");
    let output = Command::new("rabbitmqctl")
        .args(["list_queues", "--quiet", "--no-table-headers", "name", "type"])
        .output()
        .expect("rabbitmqctl runs");
    let mut rows: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.starts_with(&service))
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        vec![
            format!("{service}.billing.invoice_paid.record_invoice quorum"),
            format!("{service}.billing.invoice_paid.record_invoice.dead_letter quorum"),
            // Delay tiers are always quorum: they dead-letter at-least-once.
            format!("{service}.delay.1000ms quorum"),
        ]
    );
    support::broker::delete_scope(&url, &service, &exchange).await;
}
