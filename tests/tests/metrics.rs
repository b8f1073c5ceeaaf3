//! The `metrics` feature on the in-memory transport, with `metrics-util`'s
//! `DebuggingRecorder` as the global recorder (this binary's only test, so nothing else
//! records into it): what a handled, a retried-then-handled, a dead-lettered and a declined
//! delivery count, and that retry and dead-letter moves are not counted as published; a
//! pattern listener's `event` label is the delivered event's name. Requests count like
//! deliveries, with the request name as `event` and the handler as `listener`.

use std::collections::BTreeMap;
use std::time::Duration;

use eventing::testing::TestBus;
use eventing::{
    Context, HandlerError, Listener, RawEvent, RequestError, RequestHandler, RetryPolicy, event, event_listener,
    request, request_handler,
};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::{CompositeKey, MetricKind};
use serde::{Deserialize, Serialize};

#[event(name = "metrics.job")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    /// `ok`, `flaky` (fails its first attempt), `broken` (a permanent error) or `skip`
    /// (declined by the filter).
    pub kind: String,
}

#[event(name = "metrics.job_done")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobDone {
    pub kind: String,
}

#[derive(Debug, Default)]
pub struct Worker;

#[event_listener(name = "worker")]
impl Listener<Job> for Worker {
    fn accepts(&self, job: &Job, _ctx: &Context) -> bool {
        job.kind != "skip"
    }

    async fn on(&self, job: Job, ctx: &Context) -> Result<(), HandlerError> {
        match job.kind.as_str() {
            "flaky" if ctx.attempt() == 1 => Err(HandlerError::msg("flaky: first attempt fails")),
            "broken" => Err(HandlerError::permanent_msg("broken: never works")),
            _ => {
                ctx.publish(&JobDone { kind: job.kind }).await?;
                Ok(())
            }
        }
    }
}

/// Sees every `metrics.*` event: its `event` label is the delivered event's name, not
/// its pattern.
#[derive(Debug, Default)]
pub struct Audit;

#[event_listener(name = "audit", pattern = "metrics.#")]
impl Listener<RawEvent> for Audit {
    async fn on(&self, _event: RawEvent, _ctx: &Context) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[request(name = "metrics.lookup", reply = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lookup {
    pub key: u64,
}

#[derive(Debug, Default)]
pub struct Directory;

#[request_handler]
impl RequestHandler<Lookup> for Directory {
    async fn on(&self, lookup: Lookup, _ctx: &Context) -> Result<u64, HandlerError> {
        if lookup.key == 0 { Err(HandlerError::msg("no key 0")) } else { Ok(lookup.key * 2) }
    }
}

type Labels = Vec<(String, String)>;

/// Every metric of the snapshot: (kind, name, sorted labels) → value.
fn snapshot(recorder: &metrics_util::debugging::Snapshotter) -> BTreeMap<(MetricKind, String, Labels), DebugValue> {
    recorder
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value): (CompositeKey, _, _, DebugValue)| {
            let (kind, key) = key.into_parts();
            let mut labels: Labels =
                key.labels().map(|label| (label.key().to_owned(), label.value().to_owned())).collect();
            labels.sort();
            ((kind, key.name().to_owned(), labels), value)
        })
        .collect()
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    let mut labels: Labels = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    labels.sort();
    labels
}

fn counter(
    metrics: &BTreeMap<(MetricKind, String, Labels), DebugValue>,
    name: &str,
    pairs: &[(&str, &str)],
) -> Option<u64> {
    match metrics.get(&(MetricKind::Counter, name.to_owned(), labels(pairs)))? {
        DebugValue::Counter(value) => Some(*value),
        other => panic!("{name} is not a counter: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_histogram_and_gauge_follow_each_outcome() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().expect("the only recorder of this binary");

    let bus = TestBus::start_with(eventing::builder().retry_policy(RetryPolicy::fixed(3, Duration::from_millis(50))))
        .await
        .expect("start");
    for kind in ["ok", "flaky", "broken", "skip"] {
        bus.publish(&Job { kind: kind.into() }).await.expect("publish");
    }
    assert_eq!(bus.bus().request(&Lookup { key: 21 }).await.expect("reply"), 42);
    assert!(matches!(bus.bus().request(&Lookup { key: 0 }).await, Err(RequestError::Failed { .. })));
    bus.settle().await.expect("settle");
    assert_eq!(bus.dead_letters().len(), 1, "only the broken job is dead-lettered");
    bus.shutdown().await.expect("shutdown");

    let metrics = snapshot(&snapshotter);
    let job = [("event", "metrics.job"), ("listener", "worker")];
    let handled = |outcome: &str| {
        let mut pairs = job.to_vec();
        pairs.push(("outcome", outcome));
        counter(&metrics, "eventing_handled_total", &pairs)
    };
    assert_eq!(handled("ok"), Some(2), "ok, and flaky on its second attempt: {metrics:#?}");
    assert_eq!(handled("retried"), Some(1), "flaky's first attempt: {metrics:#?}");
    assert_eq!(handled("dead_lettered"), Some(1), "broken: {metrics:#?}");
    assert_eq!(handled("declined"), Some(1), "skip: {metrics:#?}");

    // The four publishes of the test and the two follow-ups; the retry and the
    // dead-letter move went through the send stack too, but are not publishes.
    assert_eq!(counter(&metrics, "eventing_published_total", &[("event", "metrics.job")]), Some(4), "{metrics:#?}");
    assert_eq!(
        counter(&metrics, "eventing_published_total", &[("event", "metrics.job_done")]),
        Some(2),
        "{metrics:#?}"
    );

    let audit = |event: &str| {
        counter(&metrics, "eventing_handled_total", &[("event", event), ("listener", "audit"), ("outcome", "ok")])
    };
    assert_eq!(audit("metrics.job"), Some(4), "a pattern listener labels by event name: {metrics:#?}");
    assert_eq!(audit("metrics.job_done"), Some(2), "{metrics:#?}");

    match metrics.get(&(MetricKind::Histogram, "eventing_handle_duration_seconds".to_owned(), labels(&job))) {
        Some(DebugValue::Histogram(seconds)) => {
            assert_eq!(seconds.len(), 5, "one duration per handled attempt: {seconds:?}");
            assert!(seconds.iter().all(|s| s.into_inner() >= 0.0 && s.into_inner() < 30.0), "{seconds:?}");
        }
        other => panic!("no handle duration histogram: {other:?} in {metrics:#?}"),
    }
    match metrics.get(&(MetricKind::Gauge, "eventing_handlers_in_flight".to_owned(), labels(&[("listener", "worker")])))
    {
        Some(DebugValue::Gauge(in_flight)) => assert_eq!(in_flight.into_inner(), 0.0, "all settled"),
        other => panic!("no in-flight gauge: {other:?} in {metrics:#?}"),
    }

    let lookup = [("event", "metrics.lookup"), ("listener", "directory")];
    for outcome in ["ok", "failed"] {
        let mut pairs = lookup.to_vec();
        pairs.push(("outcome", outcome));
        assert_eq!(counter(&metrics, "eventing_handled_total", &pairs), Some(1), "request {outcome}: {metrics:#?}");
    }
    match metrics.get(&(MetricKind::Histogram, "eventing_handle_duration_seconds".to_owned(), labels(&lookup))) {
        Some(DebugValue::Histogram(seconds)) => assert_eq!(seconds.len(), 2, "one per request: {seconds:?}"),
        other => panic!("no request handle duration: {other:?} in {metrics:#?}"),
    }

    eventing::observe::connection_recovered();
    assert_eq!(counter(&snapshot(&snapshotter), "eventing_reconnects_total", &[]), Some(1));
}
