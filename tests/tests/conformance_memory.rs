//! The conformance suite on the in-memory transport.

use std::sync::Arc;

use eventing::memory::MemoryBroker;
use eventing::message::Message;
use eventing::transport::Transport;
use eventing_tests::conformance::{Backend, Scope};

/// A private broker per test.
#[derive(Default)]
struct Memory {
    broker: MemoryBroker,
}

impl Backend for Memory {
    fn builder(&self) -> eventing::Builder {
        eventing::builder().transport(self.broker.transport())
    }

    async fn transport(&self) -> Arc<dyn Transport> {
        Arc::new(self.broker.transport())
    }

    async fn queue_messages(&self, queue: &str) -> Vec<Message> {
        self.broker.messages(queue).unwrap_or_default().into_iter().map(|queued| (*queued.message).clone()).collect()
    }

    async fn cleanup(&self, _scope: &Scope) {}
}

async fn memory() -> Option<Memory> {
    Some(Memory::default())
}

eventing_tests::conformance_suite!(memory);
