//! `eventing publish <name> <json | @file | ->`: checked before anything is sent, confirmed
//! by the broker before it exits 0 (issue 9).

mod support;

use std::process::Stdio;

use lapin::options::{BasicGetOptions, ExchangeDeclareOptions, QueueBindOptions};
use lapin::types::FieldTable;
use support::{Cleanup, Plain, broker_url, eventing, stderr, stdout, unique};
use tokio::io::AsyncWriteExt;

/// A queue bound to `exchange` on `pattern`, standing in for a typed listener's queue.
async fn bound_queue(plain: &Plain, cleanup: &mut Cleanup, exchange: &str, pattern: &str) -> String {
    let queue = cleanup.queue(&format!("{exchange}.probe"));
    plain.declare(&queue).await;
    let channel = plain.connection.create_channel().await.expect("channel");
    let durable = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
    channel
        .exchange_declare(exchange.into(), lapin::ExchangeKind::Topic, durable, FieldTable::default())
        .await
        .expect("exchange");
    channel
        .queue_bind(
            queue.as_str().into(),
            exchange.into(),
            pattern.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
    queue
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_sends_checked_json_by_name() {
    let Some(url) = broker_url() else { return };
    let plain = Plain::connect(&url).await;
    let mut cleanup = Cleanup::new(&url);
    let exchange = cleanup.exchange(&unique("cli-publish"));
    let queue = bound_queue(&plain, &mut cleanup, &exchange, "billing.#").await;

    for (args, why) in [
        (
            vec!["publish", "--exchange", &exchange, "billing.invoice_paid", "{not json"],
            "is not JSON: key must be a string",
        ),
        (vec!["publish", "--exchange", &exchange, "billing.*", "{}"], "invalid event name `billing.*`"),
        (
            vec!["publish", "--exchange", &exchange, "billing.invoice_paid", "@/definitely/not/here.json"],
            "reading the body",
        ),
    ] {
        let refused = eventing(&args, &url).await;
        assert!(!refused.status.success(), "{args:?}: {refused:?}");
        assert!(stderr(&refused).contains(why), "{args:?}: {}", stderr(&refused));
    }
    assert_eq!(plain.count(&queue).await, 0, "nothing refused was sent");

    let sent =
        eventing(&["publish", "--exchange", &exchange, "billing.invoice_paid", r#"{"invoice":"A-1"}"#], &url).await;
    assert!(sent.status.success(), "{sent:?}");
    assert!(stdout(&sent).contains("published `billing.invoice_paid`"), "{}", stdout(&sent));

    let file = std::env::temp_dir().join(format!("{}.json", unique("cli-publish-body")));
    std::fs::write(&file, br#"{"invoice":"A-2"}"#).expect("write body file");
    let from_file =
        eventing(&["publish", "--exchange", &exchange, "billing.refund_issued", &format!("@{}", file.display())], &url)
            .await;
    std::fs::remove_file(&file).expect("remove body file");
    assert!(from_file.status.success(), "{from_file:?}");

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_eventing"))
        .args(["publish", "--exchange", &exchange, "billing.invoice_voided", "-"])
        .env("EVENTING_URL", &url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(br#"{"invoice":"A-3"}"#).await.expect("write stdin");
    drop(stdin);
    let from_stdin = child.wait_with_output().await.expect("wait");
    assert!(from_stdin.status.success(), "{from_stdin:?}");

    let channel = plain.connection.create_channel().await.expect("channel");
    let mut received = Vec::new();
    while let Some(message) =
        channel.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true }).await.expect("get")
    {
        let properties = &message.delivery.properties;
        assert_eq!(properties.content_type().as_ref().map(|t| t.as_str()), Some("application/json"));
        received.push((
            properties.kind().as_ref().map(|kind| kind.as_str().to_owned()).unwrap_or_default(),
            String::from_utf8_lossy(&message.delivery.data).into_owned(),
        ));
    }
    assert_eq!(
        received,
        vec![
            ("billing.invoice_paid".to_owned(), r#"{"invoice":"A-1"}"#.to_owned()),
            ("billing.refund_issued".to_owned(), r#"{"invoice":"A-2"}"#.to_owned()),
            ("billing.invoice_voided".to_owned(), r#"{"invoice":"A-3"}"#.to_owned()),
        ]
    );
}
