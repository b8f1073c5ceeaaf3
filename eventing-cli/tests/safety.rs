//! What the operator command refuses, and how it behaves on dead letters set up by a plain
//! AMQP client (issue 12: defects 2, 3, 4 and 6).

mod support;

use std::process::Stdio;
use std::time::Duration;

use eventing::message::header;
use lapin::types::AMQPValue;
use support::{Cleanup, Plain, broker_url, eventing, stderr, stdout, unique};
use tokio::io::AsyncReadExt;

/// Defect 4: `--help` printed `[env: EVENTING_URL=amqp://guest:s3cr3t@…]`.
#[tokio::test]
async fn help_never_shows_the_broker_password() {
    let url = "amqp://guest:s3cr3t@127.0.0.1:5672/%2f";
    for args in
        [&["--help"][..], &["dlq", "list", "--help"], &["dlq", "purge", "--help"], &["topology", "delete", "--help"]]
    {
        let help = eventing(args, url).await;
        assert!(help.status.success(), "{args:?}: {help:?}");
        let text = stdout(&help);
        assert!(text.contains("EVENTING_URL"), "{args:?} names the variable: {text}");
        assert!(!text.contains("s3cr3t") && !stderr(&help).contains("s3cr3t"), "{args:?} shows the password: {text}");
    }
}

/// Defect 2: `dlq purge <listener queue>` purged live events and exited 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_commands_refuse_queues_that_are_not_dead_letter_queues() {
    let Some(url) = broker_url() else { return };
    let plain = Plain::connect(&url).await;
    let mut cleanup = Cleanup::new(&url);
    let live = cleanup.queue(&format!("{}.orders_placed.charge_card", unique("cli-live")));
    plain.declare(&live).await;
    for n in 0..3 {
        plain.put(&live, format!(r#"{{"n":{n}}}"#).as_bytes(), &[]).await;
    }
    for args in [vec!["dlq", "purge", &live, "--yes"], vec!["dlq", "requeue", &live], vec!["dlq", "list", &live]] {
        let refused = eventing(&args, &url).await;
        assert!(!refused.status.success(), "{args:?} must be refused: {refused:?}");
        let error = stderr(&refused);
        assert!(error.contains("not a dead-letter queue") && error.contains(".dead_letter"), "{args:?}: {error}");
        assert!(stdout(&refused).is_empty(), "{args:?}: {refused:?}");
    }
    assert_eq!(plain.count(&live).await, 3, "the live queue is untouched");

    // Named like a dead-letter queue, but something consumes it: it is live.
    let consumed = cleanup.queue(&format!("{}.dead_letter", unique("cli-consumed")));
    plain.declare(&consumed).await;
    plain.put(&consumed, b"{}", &[]).await;
    let consumer_channel = plain.connection.create_channel().await.expect("channel");
    consumer_channel.basic_qos(1, lapin::options::BasicQosOptions::default()).await.expect("qos");
    let _consumer = consumer_channel
        .basic_consume(
            consumed.as_str().into(),
            "cli-test".into(),
            lapin::options::BasicConsumeOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await
        .expect("consume");
    plain.put(&consumed, b"{}", &[]).await;
    let refused = eventing(&["dlq", "purge", &consumed, "--yes"], &url).await;
    assert!(!refused.status.success(), "{refused:?}");
    assert!(stderr(&refused).contains("1 consumer"), "{}", stderr(&refused));
    assert_eq!(plain.count(&consumed).await, 1, "nothing purged");

    // Named like a dead-letter queue, but declared otherwise: transient, or expiring (as a
    // listener named `dead_letter` of a non-durable event would be).
    let transient = cleanup.queue(&format!("{}.dead_letter", unique("cli-transient")));
    plain.declare_with(&transient, false, &[]).await;
    let expiring = cleanup.queue(&format!("{}.dead_letter", unique("cli-expiring")));
    plain.declare_with(&expiring, true, &[("x-expires", AMQPValue::LongLongInt(600_000))]).await;
    for queue in [&transient, &expiring] {
        plain.put(queue, b"{}", &[]).await;
        let refused = eventing(&["dlq", "purge", queue, "--yes"], &url).await;
        assert!(!refused.status.success(), "{refused:?}");
        assert!(stderr(&refused).contains("declared with other arguments"), "{}", stderr(&refused));
        assert_eq!(plain.count(queue).await, 1, "nothing purged");
    }

    let missing = eventing(&["dlq", "list", "no.such.queue.dead_letter"], &url).await;
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("does not exist"), "{}", stderr(&missing));

    consumer_channel.close(200, "done".into()).await.expect("close");
}

/// Defect 2: purging asks first; without a terminal it needs `--yes`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_needs_yes_without_a_terminal() {
    let Some(url) = broker_url() else { return };
    let plain = Plain::connect(&url).await;
    let mut cleanup = Cleanup::new(&url);
    let dead_letters = cleanup.queue(&format!("{}.refund_requested.refund.dead_letter", unique("cli-purge")));
    plain.declare(&dead_letters).await;
    plain.put(&dead_letters, b"{}", &[]).await;
    plain.put(&dead_letters, b"{}", &[]).await;

    let unasked = eventing(&["dlq", "purge", &dead_letters], &url).await;
    assert!(!unasked.status.success(), "{unasked:?}");
    assert!(stderr(&unasked).contains("--yes"), "{}", stderr(&unasked));
    assert_eq!(plain.count(&dead_letters).await, 2, "nothing purged without confirmation");

    let purged = eventing(&["dlq", "purge", &dead_letters, "--yes"], &url).await;
    assert!(purged.status.success(), "{purged:?}");
    assert!(stdout(&purged).contains(&format!("purged 2 dead letter(s) from `{dead_letters}`")), "{purged:?}");
    assert_eq!(plain.count(&dead_letters).await, 0);
}

/// Dead-letter queues are quorum queues with `EVENTING_AMQP_QUEUE_TYPE=quorum`: accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_dead_letter_queues_are_dead_letter_queues() {
    let Some(url) = broker_url() else { return };
    let plain = Plain::connect(&url).await;
    let mut cleanup = Cleanup::new(&url);
    let dead_letters = cleanup.queue(&format!("{}.refund_requested.refund.dead_letter", unique("cli-quorum")));
    plain.declare_with(&dead_letters, true, &[("x-queue-type", AMQPValue::LongString("quorum".into()))]).await;
    plain.put(&dead_letters, b"{}", &[(header::ERROR, "boom")]).await;
    let listed = eventing(&["dlq", "list", &dead_letters], &url).await;
    assert!(listed.status.success(), "{listed:?}");
    assert!(stdout(&listed).contains("reason:   boom"), "{listed:?}");
}

/// Defect 3: a dead letter that names the queue it is read from was moved onto it again
/// and again; now requeue moves each message at most once, never onto the queue it reads,
/// and says what it moved before it stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requeue_moves_each_message_at_most_once_and_never_onto_its_own_queue() {
    let Some(url) = broker_url() else { return };
    let plain = Plain::connect(&url).await;
    let mut cleanup = Cleanup::new(&url);
    let target = cleanup.queue(&format!("{}.refund_requested.refund", unique("cli-requeue")));
    let dead_letters = cleanup.queue(&format!("{target}.dead_letter"));
    plain.declare(&target).await;
    plain.declare(&dead_letters).await;
    plain.put(&dead_letters, br#"{"n":1}"#, &[(header::ORIGINAL_QUEUE, &target)]).await;
    plain.put(&dead_letters, br#"{"n":2}"#, &[(header::ORIGINAL_QUEUE, &target)]).await;
    plain.put(&dead_letters, br#"{"n":3}"#, &[(header::ORIGINAL_QUEUE, &dead_letters)]).await;

    let args = ["dlq", "requeue", &dead_letters, "--limit", "1000"];
    let stopped =
        tokio::time::timeout(Duration::from_secs(30), eventing(&args, &url)).await.expect("requeue must not loop");
    assert!(!stopped.status.success(), "{stopped:?}");
    let error = stderr(&stopped);
    assert!(error.contains("after requeueing 2"), "{error}");
    assert!(error.contains("the queue it is read from"), "{error}");
    assert_eq!(plain.count(&target).await, 2);
    assert_eq!(plain.count(&dead_letters).await, 1, "the self-naming dead letter stays");

    // Three good ones with a limit far above: each moves once, the count taken first.
    plain.delete(&dead_letters).await;
    plain.declare(&dead_letters).await;
    for n in 0..3 {
        plain.put(&dead_letters, format!(r#"{{"n":{n}}}"#).as_bytes(), &[(header::ORIGINAL_QUEUE, &target)]).await;
    }
    let requeued = eventing(&["dlq", "requeue", &dead_letters, "--limit", "1000"], &url).await;
    assert!(requeued.status.success(), "{requeued:?}");
    assert!(stdout(&requeued).contains(&format!("requeued 3 dead letter(s) from `{dead_letters}`")), "{requeued:?}");
    assert_eq!(plain.count(&target).await, 5);
    assert_eq!(plain.count(&dead_letters).await, 0);
}

/// Defect 6: bodies are truncated unless `--full`, custom headers show, `--json` gives one
/// JSON object per line, and piping into `head` ends quietly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_truncates_shows_headers_speaks_json_and_survives_head() {
    let Some(url) = broker_url() else { return };
    let plain = Plain::connect(&url).await;
    let mut cleanup = Cleanup::new(&url);
    let dead_letters = cleanup.queue(&format!("{}.refund_requested.refund.dead_letter", unique("cli-list")));
    plain.declare(&dead_letters).await;
    let big = format!(r#"{{"note":"{}"}}"#, "x".repeat(5000));
    let headers = [(header::ERROR, "boom"), ("tenant", "acme"), (header::LISTENER, "refund")];
    plain.put(&dead_letters, big.as_bytes(), &headers).await;
    plain.put(&dead_letters, br#"{"n":2}"#, &headers).await;

    let listed = eventing(&["dlq", "list", &dead_letters], &url).await;
    assert!(listed.status.success(), "{listed:?}");
    let text = stdout(&listed);
    assert!(text.contains("2 dead letter(s)"), "{text}");
    assert!(text.contains("tenant: acme"), "custom headers show: {text}");
    assert!(text.contains(&format!("{} bytes", big.len())) && text.contains("--full"), "{text}");
    assert!(text.len() < 4000, "the body is truncated: {} bytes printed", text.len());

    let full = eventing(&["dlq", "list", &dead_letters, "--full"], &url).await;
    assert!(stdout(&full).contains(&big), "{full:?}");

    let json = eventing(&["dlq", "list", &dead_letters, "--json", "--full"], &url).await;
    assert!(json.status.success(), "{json:?}");
    let lines: Vec<serde_json::Value> =
        stdout(&json).lines().map(|line| serde_json::from_str(line).expect("each line is JSON")).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["queue"], dead_letters.as_str());
    assert_eq!(lines[0]["reason"], "boom");
    assert_eq!(lines[0]["headers"]["tenant"], "acme");
    assert_eq!(lines[0]["body"], big.as_str());
    assert_eq!(lines[0]["body_bytes"], big.len());
    assert_eq!(lines[1]["body_truncated"], false);

    // Listing leaves the dead letters where they were.
    assert_eq!(plain.count(&dead_letters).await, 2);

    // `eventing dlq list … --full | head -c 100`: more output than a pipe holds, reader gone.
    let huge = "y".repeat(1 << 20);
    plain.put(&dead_letters, huge.as_bytes(), &headers).await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_eventing"))
        .args(["dlq", "list", &dead_letters, "--full"])
        .env("EVENTING_URL", &url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut head = [0_u8; 100];
    child.stdout.take().expect("stdout").read_exact(&mut head).await.expect("the first bytes");
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await.expect("exits");
    let output = output.expect("waits");
    assert!(output.status.success(), "a closed pipe ends the listing quietly: {output:?}");
    assert!(output.stderr.is_empty(), "{}", stderr(&output));
}
