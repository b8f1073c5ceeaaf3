//! Fault tests on a three-node RabbitMQ cluster (scripts/cluster.sh; `.ci/run` starts it and
//! sets `EVENTING_TEST_CLUSTER_URL`): two worker processes publish 10 000 durable jobs
//! between them (each publish confirmed) and consume them with a competing listener, while
//! the node each is connected to is stopped (`rabbitmqctl stop_app`) or killed (`kill -9`
//! of its Erlang VM), and later started again. Checked: nothing confirmed is lost, both
//! processes fail over to a live node within seconds, and `Bus::health()` shows it.
//! Duplicates (redeliveries of jobs whose ack was lost with the node) are counted and
//! printed, as are the failover times.
//!
//! Without the cluster these tests skip loudly on a laptop and fail in CI (`CI` set).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The cluster's nodes by AMQP port, as scripts/cluster.sh starts them.
const NODES: [(u16, &str); 3] = [(5673, "rabbit2@localhost"), (5674, "rabbit3@localhost"), (5675, "rabbit4@localhost")];
const JOBS_PER_PROCESS: u64 = 5_000;
/// Pause between two publishes of one worker: the publishing spans the faults.
const PUBLISH_PAUSE_MICROS: u64 = 4_000;
/// Longest acceptable failover.
const FAILOVER_LIMIT: Duration = Duration::from_secs(10);

/// One test on the cluster at a time: both stop nodes.
static CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// `rabbitmqctl stop_app`, later `start_app`.
    StopApp,
    /// `kill -9` of the node's Erlang VM, later a restart.
    Kill,
}

/// What a worker printed.
#[derive(Default, Debug)]
struct Seen {
    ready: bool,
    published: bool,
    confirmed: BTreeSet<u64>,
    failed: Vec<String>,
    /// (connected, ready, unix ms)
    health: Vec<(bool, bool, u128)>,
}

#[derive(Default)]
struct Record {
    processes: HashMap<String, Seen>,
    /// Job number -> how many times it was handled (by any process).
    handled: BTreeMap<u64, u32>,
}

fn now_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_millis()).unwrap_or(0)
}

/// The cluster URL when the cluster answers; `None` (after a loud message) on a laptop; a
/// panic in CI.
fn cluster_url() -> Option<String> {
    let url = std::env::var("EVENTING_TEST_CLUSTER_URL").ok();
    let reachable = url.as_deref().is_some_and(|_| {
        NODES.iter().all(|(port, _)| {
            ("127.0.0.1", *port)
                .to_socket_addrs()
                .ok()
                .and_then(|mut addresses| addresses.next())
                .is_some_and(|address| TcpStream::connect_timeout(&address, Duration::from_secs(2)).is_ok())
        })
    });
    if reachable {
        return url;
    }
    let why = match url {
        None => "EVENTING_TEST_CLUSTER_URL is not set".to_owned(),
        Some(_) => "the cluster's nodes do not all answer on 127.0.0.1:5673-5675".to_owned(),
    };
    if std::env::var_os("CI").is_some() {
        panic!("{why}, and CI must run the cluster tests (.ci/run starts scripts/cluster.sh)");
    }
    eprintln!(
        "\n!!! SKIPPED: {why}; run `sudo scripts/cluster.sh up` and \
         `export EVENTING_TEST_CLUSTER_URL=$(scripts/cluster.sh url)` to run the cluster tests !!!\n"
    );
    None
}

fn harness() -> String {
    format!("{}/../scripts/cluster.sh", env!("CARGO_MANIFEST_DIR"))
}

async fn rabbitmqctl(node: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new("rabbitmqctl")
        .arg("-n")
        .arg(node)
        .args(args)
        .output()
        .await
        .map_err(|error| format!("rabbitmqctl: {error}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!("rabbitmqctl -n {node} {args:?}: {}", String::from_utf8_lossy(&output.stderr)))
    }
}

/// Connection name -> node, asked of the first node that answers.
async fn connections() -> Vec<(String, &'static str)> {
    for (_, node) in NODES {
        let listed =
            rabbitmqctl(node, &["list_connections", "--quiet", "--no-table-headers", "port", "client_properties"])
                .await;
        let Ok(out) = listed else { continue };
        // `5673\t[..., {"connection_name","svc@alpha"}, ...]`
        const KEY: &str = "{\"connection_name\",\"";
        return out
            .lines()
            .filter_map(|line| {
                let (port, properties) = line.split_once('\t')?;
                let port: u16 = port.trim().parse().ok()?;
                let node = NODES.iter().find(|(p, _)| *p == port)?.1;
                let name = &properties[properties.find(KEY)? + KEY.len()..];
                Some((name[..name.find('"')?].to_owned(), node))
            })
            .collect();
    }
    panic!("no cluster node answers rabbitmqctl");
}

/// The nodes `process`'s connections are on.
async fn nodes_of(service: &str, process: &str) -> BTreeSet<&'static str> {
    let prefix = format!("{service}@{process}");
    connections()
        .await
        .into_iter()
        .filter(|(name, _)| name == &prefix || name.starts_with(&format!("{prefix} ")))
        .map(|(_, node)| node)
        .collect()
}

fn cluster_dir() -> String {
    std::env::var("EVENTING_CLUSTER_DIR").unwrap_or_else(|_| "/tmp/eventing-cluster".into())
}

async fn break_node(node: &str, fault: Fault) {
    match fault {
        Fault::StopApp => {
            rabbitmqctl(node, &["stop_app"]).await.expect("stop_app");
        }
        Fault::Kill => {
            let short = node.split('@').next().expect("node name");
            let pid_file = format!("{}/{short}/node.pid", cluster_dir());
            let pid = std::fs::read_to_string(&pid_file).unwrap_or_else(|error| panic!("{pid_file}: {error}"));
            let status = Command::new("kill").args(["-9", pid.trim()]).status().await.expect("kill runs");
            assert!(status.success(), "kill -9 {pid}");
        }
    }
}

async fn heal_node(node: &str, fault: Fault) {
    match fault {
        Fault::StopApp => {
            rabbitmqctl(node, &["start_app"]).await.expect("start_app");
        }
        Fault::Kill => {
            let short = node.split('@').next().expect("node name");
            let status = Command::new(harness()).args(["restart", short]).status().await.expect("harness runs");
            assert!(status.success(), "restarting {node}");
        }
    }
    rabbitmqctl(node, &["await_startup", "--timeout", "120"]).await.expect("node back");
}

fn spawn_worker(
    url: &str,
    service: &str,
    exchange: &str,
    process: &str,
    first: u64,
    record: Arc<Mutex<Record>>,
) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_eventing-test-cluster-worker"))
        .args([first.to_string(), JOBS_PER_PROCESS.to_string(), PUBLISH_PAUSE_MICROS.to_string()])
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
            let mut record = record.lock().expect("record");
            let mut words = line.split(' ');
            match (words.next(), words.next()) {
                (Some("job"), Some(n)) => *record.handled.entry(n.parse().expect("number")).or_default() += 1,
                (Some("confirmed"), Some(n)) => {
                    record.processes.entry(process.clone()).or_default().confirmed.insert(n.parse().expect("number"));
                }
                (Some("failed"), Some(_)) => record.processes.entry(process.clone()).or_default().failed.push(line),
                (Some("health"), Some(connected)) => {
                    let ready = words.next() == Some("true");
                    let at: u128 = words.next().and_then(|at| at.parse().ok()).unwrap_or(0);
                    record.processes.entry(process.clone()).or_default().health.push((connected == "true", ready, at));
                }
                (Some("ready"), None) => record.processes.entry(process.clone()).or_default().ready = true,
                (Some("published"), None) => record.processes.entry(process.clone()).or_default().published = true,
                _ => {}
            }
        }
    });
    child
}

/// When `process` was connected again after losing its connection at or after `since`.
fn reconnected_at(record: &Mutex<Record>, process: &str, since: u128) -> Option<(u128, u128)> {
    let record = record.lock().expect("record");
    let health = &record.processes.get(process)?.health;
    let lost = health.iter().find(|(connected, _, at)| !connected && *at >= since)?.2;
    let back = health.iter().find(|(connected, _, at)| *connected && *at >= lost)?.2;
    Some((lost, back))
}

async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn delete_scope(url: &str, service: &str, exchange: &str) {
    let admin = eventing_amqp::AmqpTransport::connect(url, eventing_amqp::AmqpOptions::default())
        .await
        .expect("admin connection");
    let mut listed = None;
    for (_, node) in NODES {
        let queues = rabbitmqctl(node, &["list_queues", "--quiet", "--no-table-headers", "name"]).await;
        let exchanges = rabbitmqctl(node, &["list_exchanges", "--quiet", "--no-table-headers", "name"]).await;
        if let (Ok(queues), Ok(exchanges)) = (queues, exchanges) {
            listed = Some((queues, exchanges));
            break;
        }
    }
    let (queues, exchanges) = listed.expect("queues listed");
    for queue in queues.lines().map(str::trim).filter(|name| name.starts_with(service)) {
        admin.delete_queue(queue).await.expect("delete queue");
    }
    // The service's delay tiers have exchanges of their names.
    for tier in exchanges.lines().map(str::trim).filter(|name| name.starts_with(service)) {
        admin.delete_exchange(tier).await.expect("delete exchange");
    }
    admin.delete_exchange(exchange).await.expect("delete exchange");
    eventing::transport::Transport::close(&admin).await.expect("close admin");
}

async fn fail_over_twice(fault: Fault) {
    let Some(url) = cluster_url() else { return };
    let _cluster = CLUSTER.lock().await;
    let stamp = format!(
        "{}-{}",
        std::process::id(),
        SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_nanos()).unwrap_or(0)
    );
    let service = format!("cluster-{stamp}");
    let exchange = format!("cluster-exchange-{stamp}");
    let record = Arc::new(Mutex::new(Record::default()));
    let processes = ["alpha", "beta"];
    let mut workers: Vec<Child> = processes
        .iter()
        .zip([0, JOBS_PER_PROCESS])
        .map(|(process, first)| spawn_worker(&url, &service, &exchange, process, first, Arc::clone(&record)))
        .collect();
    wait_for("both workers to consume", Duration::from_secs(60), || {
        let record = record.lock().expect("record");
        processes.iter().all(|process| record.processes.get(*process).is_some_and(|seen| seen.ready))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // For each process in turn: break the node it is on, watch it (and any other process on
    // that node) fail over, then bring the node back.
    let mut failovers: Vec<(String, &'static str, Duration, Duration)> = Vec::new();
    for process in processes {
        let before = nodes_of(&service, process).await;
        assert_eq!(before.len(), 1, "{process}'s connections are all on one node (one shuffled order): {before:?}");
        let node = *before.first().expect("a node");
        let mut affected = Vec::new();
        for other in processes {
            if nodes_of(&service, other).await.contains(node) {
                affected.push(other);
            }
        }
        let since = now_ms();
        eprintln!("[{fault:?}] breaking {node}, which {affected:?} are connected to");
        break_node(node, fault).await;
        for other in &affected {
            wait_for(&format!("{other} to fail over from {node}"), Duration::from_secs(30), || {
                reconnected_at(&record, other, since).is_some()
            })
            .await;
            let (lost, back) = reconnected_at(&record, other, since).expect("reconnected");
            let failover = Duration::from_millis(u64::try_from(back - since).unwrap_or(u64::MAX));
            let outage = Duration::from_millis(u64::try_from(back - lost).unwrap_or(u64::MAX));
            let now_on = nodes_of(&service, other).await;
            eprintln!(
                "[{fault:?}] {other}: connected again {failover:?} after {node} was broken \
                 (disconnected for {outage:?}), now on {now_on:?}"
            );
            assert!(!now_on.contains(node), "{other} failed over to a live node: {now_on:?}");
            assert!(failover < FAILOVER_LIMIT, "{other} failed over in {failover:?}");
            failovers.push(((*other).to_owned(), node, failover, outage));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        heal_node(node, fault).await;
        eprintln!("[{fault:?}] {node} is back");
    }
    for process in processes {
        assert!(failovers.iter().any(|(failed, ..)| failed == process), "{process} never failed over");
    }

    // Every confirmed job is handled, at least once.
    wait_for("every confirmed job to be handled", Duration::from_secs(180), || {
        let record = record.lock().expect("record");
        processes.iter().all(|process| record.processes.get(*process).is_some_and(|seen| seen.published))
            && record.processes.values().all(|seen| seen.confirmed.iter().all(|n| record.handled.contains_key(n)))
    })
    .await;
    // Let late redeliveries arrive, so duplicates are counted.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for worker in &mut workers {
        drop(worker.stdin.take()); // a graceful shutdown
    }
    for worker in &mut workers {
        let status =
            tokio::time::timeout(Duration::from_secs(60), worker.wait()).await.expect("worker exits").expect("wait");
        assert!(status.success(), "worker exited with {status}");
    }

    let (lost, confirmed, failed) = {
        let record = record.lock().expect("record");
        let confirmed: BTreeSet<u64> =
            record.processes.values().flat_map(|seen| seen.confirmed.iter().copied()).collect();
        let failed: Vec<&String> = record.processes.values().flat_map(|seen| seen.failed.iter()).collect();
        let lost: Vec<u64> = confirmed.iter().copied().filter(|n| !record.handled.contains_key(n)).collect();
        let duplicates: Vec<(u64, u32)> =
            record.handled.iter().filter(|(_, times)| **times > 1).map(|(n, times)| (*n, *times)).collect();
        let extra: u32 = duplicates.iter().map(|(_, times)| times - 1).sum();
        let times: Vec<String> = failovers
            .iter()
            .map(|(process, node, failover, outage)| format!("{process} off {node}: {failover:?} (outage {outage:?})"))
            .collect();
        eprintln!(
            "[{fault:?}] RESULT: published {} jobs, confirmed {}, failed (not confirmed) {}, handled {} distinct, \
             lost {}, duplicates {} ({} jobs); failover: {}",
            2 * JOBS_PER_PROCESS,
            confirmed.len(),
            failed.len(),
            record.handled.len(),
            lost.len(),
            extra,
            duplicates.len(),
            times.join("; ")
        );
        if !duplicates.is_empty() {
            eprintln!("[{fault:?}] duplicates (job, times handled): {duplicates:?}");
        }
        for line in failed.iter().take(10) {
            eprintln!("[{fault:?}] {line}");
        }
        (lost, confirmed.len() as u64, failed.len() as u64)
    };
    delete_scope(&url, &service, &exchange).await;
    assert!(lost.is_empty(), "confirmed jobs lost: {lost:?}");
    assert!(
        confirmed + failed == 2 * JOBS_PER_PROCESS,
        "every publish returned: {confirmed} confirmed, {failed} failed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_processes_fail_over_when_their_node_stops_and_nothing_confirmed_is_lost() {
    fail_over_twice(Fault::StopApp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_processes_fail_over_when_their_node_is_killed_and_nothing_confirmed_is_lost() {
    fail_over_twice(Fault::Kill).await;
}

/// A non-durable event: its shared listener queue expires when idle.
#[eventing::event(name = "cluster.ping")]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ClusterPing {
    pub n: u64,
}

/// Started only by the test below (`.listeners(...)`).
#[derive(Debug, Default)]
pub struct CountPings;

#[eventing::event_listener]
impl eventing::Listener<ClusterPing> for CountPings {
    async fn on(&self, _ping: ClusterPing, _ctx: &eventing::Context) -> Result<(), eventing::HandlerError> {
        Ok(())
    }
}

/// On a cluster URL every shared queue is a quorum queue, the expiring one of a non-durable
/// event included: no queue lives on one node only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_every_shared_queue_is_a_quorum_queue() {
    let Some(url) = cluster_url() else { return };
    let _cluster = CLUSTER.lock().await;
    let stamp = format!("{}-{}", std::process::id(), now_ms());
    let service = format!("cluster-types-{stamp}");
    let exchange = format!("cluster-types-exchange-{stamp}");
    let bus = eventing::builder()
        .url(url.clone())
        .service(service.clone())
        .exchange(exchange.clone())
        .listeners(|info| info.rust_type.ends_with("CountPings"))
        .start()
        .await
        .expect("bus on the cluster");
    bus.publish(&ClusterPing { n: 1 }).await.expect("publish");
    let mut types = BTreeMap::new();
    for (_, node) in NODES {
        if let Ok(out) = rabbitmqctl(node, &["list_queues", "--quiet", "--no-table-headers", "name", "type"]).await {
            for line in out.lines() {
                if let Some((name, kind)) = line.split_once('\t') {
                    if name.starts_with(&service) {
                        types.insert(name.trim().to_owned(), kind.trim().to_owned());
                    }
                }
            }
            break;
        }
    }
    bus.shutdown().await.expect("shutdown");
    delete_scope(&url, &service, &exchange).await;
    assert!(!types.is_empty(), "the listener declared queues");
    assert!(types.values().all(|kind| kind == "quorum"), "every shared queue is quorum: {types:?}");
}
