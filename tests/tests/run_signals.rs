//! `eventing::run()` runs until SIGTERM, then drains: the handler in flight finishes before
//! the process exits successfully.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

#[tokio::test]
async fn sigterm_drains_in_flight_handlers_and_exits_cleanly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_eventing-test-run"))
        .env("EVENTING_URL", "memory://signal-test")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start");
    let stderr = child.stderr.take().expect("piped");
    let mut lines = BufReader::new(stderr).lines();
    let mut log = Vec::new();
    // Wait until the handler is busy, then ask the process to stop.
    while let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await.expect("output") {
        let started = line.contains("tick started");
        log.push(line);
        if started {
            break;
        }
    }
    let pid = child.id().expect("running").to_string();
    let killed = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
    assert!(killed.success());
    while let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await.expect("output") {
        log.push(line);
    }
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait()).await.expect("exits").expect("wait");
    assert!(status.success(), "exit status {status}; log:\n{}", log.join("\n"));
    // The last "bus shut down" is run()'s (the program starts and stops two buses first).
    let position = |text: &str| log.iter().rposition(|line| line.contains(text));
    let (Some(signal), Some(finished), Some(down)) =
        (position("shutdown signal received"), position("tick finished"), position("bus shut down"))
    else {
        panic!("missing log lines:\n{}", log.join("\n"));
    };
    assert!(signal < finished && finished < down, "the handler finished before the bus shut down:\n{}", log.join("\n"));
}
