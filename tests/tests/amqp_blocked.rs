//! A publish under a RabbitMQ memory alarm (issue 12, defect 5): the broker blocks the
//! connection, no confirm comes, and the publish fails after the publish timeout as
//! *unconfirmed* (it may still be delivered), not as "not sent"; the transport reports the
//! blocked state; once the alarm clears the message is delivered and the connection (kept,
//! not abandoned) publishes again. No connection is left behind.
//!
//! The alarm affects everything on the broker, so it lasts a few seconds only and the
//! previous watermark is restored even when the test fails. Its own test binary: cargo runs
//! test binaries one after another, so no other test of this repository sees the alarm.

mod support;

use std::borrow::Cow;
use std::process::Command;
use std::time::{Duration, SystemTime};

use eventing::message::Message;
use eventing::transport::{Origin, QueueLifetime, QueueRole, QueueSpec, Route, Topology, Transport, TransportError};
use eventing_amqp::{AmqpOptions, AmqpTransport};
use support::broker::reachable_amqp_url;

fn rabbitmqctl(args: &[&str]) -> String {
    let output = Command::new("rabbitmqctl").args(args).output().expect("rabbitmqctl runs");
    assert!(output.status.success(), "rabbitmqctl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Raises a memory alarm; restores the previous watermark when dropped (also on panic).
struct MemoryAlarm {
    restore: Vec<String>,
}

impl MemoryAlarm {
    fn raise() -> Self {
        let previous = rabbitmqctl(&["eval", "vm_memory_monitor:get_vm_memory_high_watermark()."]);
        // `0.4`, or `{absolute,1073741824}` when set as an absolute amount.
        let restore = match previous.strip_prefix("{absolute,").and_then(|rest| rest.strip_suffix('}')) {
            Some(bytes) => vec!["set_vm_memory_high_watermark".into(), "absolute".into(), bytes.trim().into()],
            None => vec!["set_vm_memory_high_watermark".into(), previous],
        };
        let alarm = Self { restore };
        rabbitmqctl(&["set_vm_memory_high_watermark", "0.0000001"]);
        alarm
    }
}

impl Drop for MemoryAlarm {
    fn drop(&mut self) {
        let output = Command::new("rabbitmqctl").args(&self.restore).output();
        if !output.is_ok_and(|output| output.status.success()) {
            eprintln!("!!! could not restore the memory watermark: run rabbitmqctl {}", self.restore.join(" "));
        }
    }
}

fn message(n: u32) -> Message {
    Message {
        body: format!(r#"{{"n":{n}}}"#).into_bytes(),
        message_id: format!("blocked-{n}"),
        correlation_id: None,
        causation_id: None,
        event_type: Cow::Borrowed("blocked.probe"),
        content_type: Some(Cow::Borrowed(eventing::message::JSON)),
        timestamp: SystemTime::now(),
        app_id: None,
        persistent: true,
        attempt: 1,
        headers: Default::default(),
        reply_to: None,
        expiration: None,
    }
}

fn connections_named(name: &str) -> usize {
    rabbitmqctl(&["list_connections", "--quiet", "--no-table-headers", "client_properties"])
        .lines()
        .filter(|line| line.contains(name))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_under_a_memory_alarm_fails_as_unconfirmed_and_is_delivered_later() {
    let Some(url) = reachable_amqp_url() else { return };
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("info,lapin=warn").try_init();
    let stamp = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let name = format!("blocked-{}-{stamp}", std::process::id());
    let queue = format!("{name}.probe");
    let options =
        AmqpOptions::default().with_connection_name(name.clone()).with_publish_timeout(Duration::from_millis(1500));
    let transport = AmqpTransport::connect(&url, options).await.expect("connect");
    let spec = QueueSpec { name: queue.clone(), lifetime: QueueLifetime::Durable, role: QueueRole::Listener };
    transport.declare(&Topology { queues: vec![spec], ..Topology::default() }).await.expect("declare");
    transport.publish(Route::Queue(&queue), message(1), Origin::Outside).await.expect("a publish before the alarm");

    let alarm = MemoryAlarm::raise();
    let started = std::time::Instant::now();
    let outcome = transport.publish(Route::Queue(&queue), message(2), Origin::Outside).await;
    // Before the alarm is lifted: `rabbitmqctl` itself is slow on a loaded machine.
    let waited = started.elapsed();
    // Through the seam `Bus::health()` reads.
    let blocked = (&transport as &dyn Transport).is_blocked();
    drop(alarm);

    match outcome {
        Err(TransportError::Unconfirmed { reason }) => {
            assert!(reason.contains("blocks the connection"), "{reason}");
        }
        other => panic!("expected an unconfirmed publish, got {other:?}"),
    }
    assert!(waited < Duration::from_secs(5), "the publish waited {waited:?}");
    assert!(blocked, "the transport did not report the blocked connection");

    // Once the alarm clears, the connection (kept) is unblocked and delivers what it held.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while transport.is_blocked() || transport.message_count(&queue).await.expect("count") < 2 {
        assert!(tokio::time::Instant::now() < deadline, "the unconfirmed message never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    transport.publish(Route::Queue(&queue), message(3), Origin::Outside).await.expect("a publish after the alarm");
    assert_eq!(transport.message_count(&queue).await.expect("count"), 3, "each message once");
    assert_eq!(connections_named(&name), 1, "a connection was left behind");

    transport.delete_queue(&queue).await.expect("delete");
    transport.close().await.expect("close");
}
