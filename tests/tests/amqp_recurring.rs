//! Recurring work on RabbitMQ across two OS processes: one runs each period, and when the
//! runner is killed with SIGKILL the other takes over within two periods.

mod support;

use std::collections::HashSet;
use std::process::Stdio;
use std::time::Duration;

use support::broker::reachable_amqp_url;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

fn spawn(url: &str, service: &str, exchange: &str, process: &str, lines: mpsc::UnboundedSender<String>) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_eventing-test-recurring"))
        .env("EVENTING_URL", url)
        .env("EVENTING_SERVICE", service)
        .env("EVENTING_EXCHANGE", exchange)
        .env("EVENTING_PROCESS_ID", process)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the recurring service starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    tokio::spawn(async move {
        let mut reader = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    child
}

/// `(process, run id)` of the runs printed until `until`.
async fn runs_until(lines: &mut mpsc::UnboundedReceiver<String>, until: Instant) -> Vec<(String, String, Instant)> {
    let mut runs = Vec::new();
    while let Ok(Some(line)) = tokio::time::timeout_at(until, lines.recv()).await {
        let mut words = line.split(' ');
        if words.next() == Some("ran") {
            let process = words.next().unwrap_or_default().to_owned();
            let run = words.next().unwrap_or_default().to_owned();
            runs.push((process, run, Instant::now()));
        }
    }
    runs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_processes_runs_each_period_and_the_other_takes_over_after_kill_9() {
    let Some(url) = reachable_amqp_url() else { return };
    let stamp = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
    );
    let service = format!("recurring-{stamp}");
    let exchange = format!("recurring-exchange-{stamp}");
    let (alpha_lines, mut alpha) = mpsc::unbounded_channel();
    let (beta_lines, mut beta) = mpsc::unbounded_channel();
    let mut alpha_child = spawn(&url, &service, &exchange, "alpha", alpha_lines);
    let mut beta_child = spawn(&url, &service, &exchange, "beta", beta_lines);
    for lines in [&mut alpha, &mut beta] {
        let ready = tokio::time::timeout(Duration::from_secs(30), lines.recv()).await;
        assert!(matches!(ready, Ok(Some(ref line)) if line == "ready"), "started: {ready:?}");
    }

    let until = Instant::now() + Duration::from_millis(5500);
    let (from_alpha, from_beta) = tokio::join!(runs_until(&mut alpha, until), runs_until(&mut beta, until));
    let total = from_alpha.len() + from_beta.len();
    assert!((4..=6).contains(&total), "about one run per second in all: {from_alpha:?} {from_beta:?}");
    assert!(from_alpha.is_empty() || from_beta.is_empty(), "one process runs it: {from_alpha:?} {from_beta:?}");
    let ids: HashSet<&String> = from_alpha.iter().chain(&from_beta).map(|(_, id, _)| id).collect();
    assert_eq!(ids.len(), total, "no period ran twice");

    // kill -9 the runner: its connection dies with it, and so does the lock.
    let (runner, survivor_lines, survivor_child) = if from_alpha.is_empty() {
        (&mut beta_child, &mut alpha, &mut alpha_child)
    } else {
        (&mut alpha_child, &mut beta, &mut beta_child)
    };
    runner.start_kill().expect("SIGKILL");
    let killed = Instant::now();
    runner.wait().await.expect("the runner is gone");
    let after = runs_until(survivor_lines, killed + Duration::from_millis(4500)).await;
    let first = after.first().expect("the survivor took over");
    let takeover = first.2.duration_since(killed);
    assert!(takeover <= Duration::from_millis(2200), "took over within two periods: {takeover:?}");
    assert!(after.len() >= 2, "and carries on: {after:?}");
    assert!(!ids.contains(&first.1), "the takeover did not run a period again");

    drop(survivor_child.stdin.take());
    let status =
        tokio::time::timeout(Duration::from_secs(30), survivor_child.wait()).await.expect("exits").expect("wait");
    assert!(status.success(), "the survivor exited with {status}");
    support::broker::delete_scope(&url, &service, &exchange).await;
}
