//! `eventing asyncapi`, run in-process through `eventing_cli::run_in` so the event and
//! listener of this test binary are linked in.

use std::ffi::OsString;
use std::process::ExitCode;

use eventing::{Context, HandlerError, Listener, event, event_listener};
use eventing_cli::Console;
use serde::{Deserialize, Serialize};

#[event(name = "cli.parcel_sent")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParcelSent {
    pub parcel: u64,
}

#[derive(Debug, Default)]
pub struct NotifyRecipient;

#[event_listener]
impl Listener<ParcelSent> for NotifyRecipient {
    async fn on(&self, _: ParcelSent, _: &Context) -> Result<(), HandlerError> {
        Ok(())
    }
}

/// Runs `eventing <args>`; returns the exit code, stdout and stderr.
async fn eventing(args: &[&str]) -> (ExitCode, String, String) {
    let args = std::iter::once("eventing").chain(args.iter().copied()).map(OsString::from);
    let mut input: &[u8] = &[];
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let console = Console { input: &mut input, interactive: false, out: &mut out, err: &mut err };
    let code = eventing_cli::run_in(args, console).await;
    (code, String::from_utf8_lossy(&out).into_owned(), String::from_utf8_lossy(&err).into_owned())
}

#[tokio::test]
async fn prints_the_document_as_yaml_by_default_and_as_json() {
    let args = [
        "asyncapi",
        "--service",
        "parcels",
        "--exchange",
        "logistics",
        "--app-version",
        "2.0.1",
        "--url",
        "amqps://ops:hunter2@mq.example:5671/prod",
    ];
    let (code, yaml, err) = eventing(&args).await;
    assert_eq!(code, ExitCode::SUCCESS, "{err}");
    assert!(yaml.starts_with("asyncapi: 3.0.0\n"), "{yaml}");
    assert!(!yaml.contains("hunter2"), "the password is left out: {yaml}");
    let from_yaml: serde_json::Value = serde_norway::from_str(&yaml).expect("the output is YAML");

    let (code, json, err) = eventing(&[&args[..], &["--format", "json"]].concat()).await;
    assert_eq!(code, ExitCode::SUCCESS, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&json).expect("the output is JSON");
    assert_eq!(doc, from_yaml, "both formats hold the same document");

    assert_eq!(doc["info"]["title"], "parcels");
    assert_eq!(doc["info"]["version"], "2.0.1");
    assert_eq!(doc["servers"]["rabbitmq"]["protocol"], "amqps");
    assert_eq!(doc["servers"]["rabbitmq"]["host"], "mq.example:5671");
    let channel = &doc["channels"]["event.cli.parcel_sent"];
    assert_eq!(channel["bindings"]["amqp"]["exchange"]["name"], "logistics");
    assert_eq!(channel["bindings"]["amqp"]["exchange"]["vhost"], "prod");
    let receive = &doc["operations"]["receive.parcels.cli.parcel_sent.notify_recipient"];
    assert_eq!(receive["channel"]["$ref"], "#/channels/queue.parcels.cli.parcel_sent.notify_recipient");
    let payload = doc["components"]["messages"]["event.cli.parcel_sent"]["payload"]["description"].as_str();
    assert!(payload.is_some_and(|text| text.contains("schema not available")), "{payload:?}");
}

#[tokio::test]
async fn an_unknown_format_is_a_usage_error() {
    let (code, out, err) = eventing(&["asyncapi", "--format", "xml"]).await;
    assert_eq!(code, ExitCode::from(2));
    assert!(out.is_empty());
    assert!(err.contains("yaml") && err.contains("json"), "{err}");
}
