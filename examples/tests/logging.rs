//! The examples' logging: to stderr, plain text when redirected, stdout left alone.

use std::process::Command;

const CHILD: &str = "EVENTING_EXAMPLES_LOGGING_CHILD";

#[test]
fn logs_go_to_stderr_without_colour_codes_when_redirected() {
    if std::env::var_os(CHILD).is_some() {
        eventing_examples::init_logging();
        tracing::info!(order = 7, "confirmation mailed");
        return;
    }
    // Run this test again in a child whose stdout and stderr are pipes, not a terminal.
    let output = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "logs_go_to_stderr_without_colour_codes_when_redirected", "--nocapture"])
        .env(CHILD, "1")
        .env_remove("RUST_LOG")
        .output()
        .expect("the child runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("INFO") && stderr.contains("confirmation mailed order=7"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "colour codes in redirected logs: {stderr:?}");
    assert!(!stdout.contains("confirmation mailed"), "logs on stdout: {stdout}");
}
