//! The request/response suite on the in-memory transport, and what only memory shows:
//! `TestBus::settle` waits for requests and their replies.

mod request_suite;

use std::time::Duration;

use eventing::Request as _;
use eventing::memory::MemoryBroker;
use eventing::testing::TestBus;
use request_suite::{Backend, Slow};

/// A private broker per test.
#[derive(Default)]
struct Memory {
    broker: MemoryBroker,
}

impl Backend for Memory {
    fn builder(&self) -> eventing::Builder {
        eventing::builder().transport(self.broker.transport())
    }

    async fn cleanup(&self, _exchange: &str, _queues: &[String]) {}
}

async fn memory() -> Option<Memory> {
    Some(Memory::default())
}

request_suite!(memory);

#[tokio::test]
async fn settle_waits_for_requests_and_replies() {
    let bus = TestBus::start_with(eventing::builder().listeners(|info| info.event == Slow::NAME)).await.expect("bus");
    let caller = bus.bus().clone();
    let call = tokio::spawn(async move { caller.request_within(&Slow { millis: 300 }, Duration::from_secs(5)).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(bus.broker().pending() > 0, "a request in flight is pending work");
    bus.settle().await.expect("settles");
    assert_eq!(bus.broker().pending(), 0);
    call.await.expect("task").expect("reply");
    // Nothing was declared per request or per caller: only the request queue.
    let queues: Vec<String> = bus.broker().queues().into_iter().map(|queue| queue.spec.name).collect();
    assert_eq!(queues, vec![format!("request.{}", Slow::NAME)]);
    bus.shutdown().await.expect("shutdown");
}
