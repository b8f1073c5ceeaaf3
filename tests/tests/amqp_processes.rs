//! Two real OS processes on RabbitMQ: a competing listener shares the work between them, a
//! `per_process` listener gets every event in each.

mod support;

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use eventing::event;
use serde::{Deserialize, Serialize};
use support::broker::reachable_amqp_url;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// The worker's event, as any publisher would declare it.
#[event(name = "jobs.run", durable)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub n: u64,
}

const JOBS: u64 = 60;

fn spawn_worker(
    url: &str,
    service: &str,
    exchange: &str,
    process: &str,
    lines: mpsc::UnboundedSender<(String, String)>,
) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_eventing-test-worker"))
        .env("EVENTING_URL", url)
        .env("EVENTING_SERVICE", service)
        .env("EVENTING_EXCHANGE", exchange)
        .env("EVENTING_PROCESS_ID", process)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("worker starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let process = process.to_owned();
    tokio::spawn(async move {
        let mut reader = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            if lines.send((process.clone(), line)).is_err() {
                break;
            }
        }
    });
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_compete_for_work_and_each_sees_per_process_events() {
    let Some(url) = reachable_amqp_url() else { return };
    let stamp = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
    );
    let service = format!("procs-{stamp}");
    let exchange = format!("procs-exchange-{stamp}");
    let (sender, mut lines) = mpsc::unbounded_channel();
    let mut workers = vec![
        spawn_worker(&url, &service, &exchange, "alpha", sender.clone()),
        spawn_worker(&url, &service, &exchange, "beta", sender.clone()),
    ];
    drop(sender);

    // Wait for both workers to be consuming before publishing.
    let mut ready = 0;
    while ready < 2 {
        match tokio::time::timeout(Duration::from_secs(30), lines.recv()).await {
            Ok(Some((_, line))) if line == "ready" => ready += 1,
            Ok(Some(_)) => {}
            other => panic!("workers did not start: {other:?}"),
        }
    }
    let mut run: HashMap<u64, Vec<String>> = HashMap::new();
    let mut watched: HashMap<String, Vec<u64>> = HashMap::new();
    let publisher = async {
        let bus = eventing::builder()
            .url(url.clone())
            .service(service.clone())
            .exchange(exchange.clone())
            .listeners(|_| false)
            .start()
            .await
            .expect("publisher");
        for n in 0..JOBS {
            bus.publish(&Job { n }).await.expect("publish");
        }
        bus.shutdown().await.expect("publisher shutdown");
    };
    let collect = async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while let Ok(Some((process, line))) = tokio::time::timeout_at(deadline, lines.recv()).await {
            match line.split_once(' ') {
                Some(("run_job", n)) => run.entry(n.parse().expect("number")).or_default().push(process),
                Some(("watch_jobs", n)) => watched.entry(process).or_default().push(n.parse().expect("number")),
                _ => {}
            }
            let watched_all = watched.values().filter(|jobs| jobs.len() as u64 >= JOBS).count() == 2;
            if run.len() as u64 >= JOBS && watched_all {
                break;
            }
        }
    };
    tokio::join!(publisher, collect);

    assert_eq!(run.len() as u64, JOBS, "every job ran: {run:?}");
    assert!(run.values().all(|processes| processes.len() == 1), "no job ran twice: {run:?}");
    for process in ["alpha", "beta"] {
        assert!(run.values().any(|processes| processes[0] == process), "{process} got no competing work");
        let mut seen = watched.get(process).cloned().unwrap_or_default();
        seen.sort_unstable();
        assert_eq!(seen, (0..JOBS).collect::<Vec<_>>(), "{process} missed per-process events");
    }

    for worker in &mut workers {
        drop(worker.stdin.take()); // closing stdin asks for a graceful shutdown
    }
    for worker in &mut workers {
        let status =
            tokio::time::timeout(Duration::from_secs(30), worker.wait()).await.expect("worker exits").expect("wait");
        assert!(status.success(), "worker exited with {status}");
    }

    support::broker::delete_scope(&url, &service, &exchange).await;
}
