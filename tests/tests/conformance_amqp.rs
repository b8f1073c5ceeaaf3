//! The conformance suite on RabbitMQ.

mod support;

use std::sync::Arc;

use eventing::message::Message;
use eventing::transport::Transport;
use eventing_amqp::{AmqpOptions, AmqpTransport};
use eventing_tests::conformance::{Backend, Scope};
use support::broker::reachable_amqp_url;

/// The local RabbitMQ; each test uses its own exchange and service names.
struct Rabbit {
    url: String,
}

impl Rabbit {
    async fn admin(&self) -> AmqpTransport {
        AmqpTransport::connect(&self.url, AmqpOptions::default().with_connection_name("conformance-admin"))
            .await
            .expect("admin connection")
    }
}

impl Backend for Rabbit {
    fn builder(&self) -> eventing::Builder {
        eventing::builder().url(self.url.clone())
    }

    async fn transport(&self) -> Arc<dyn Transport> {
        Arc::new(self.admin().await)
    }

    async fn queue_messages(&self, queue: &str) -> Vec<Message> {
        let admin = self.admin().await;
        let messages = admin.peek(queue, 10_000).await.expect("peek");
        admin.close().await.expect("close");
        messages
    }

    async fn cleanup(&self, scope: &Scope) {
        let admin = self.admin().await;
        for queue in scope.queues() {
            admin.delete_queue(&queue).await.expect("delete queue");
        }
        for exchange in scope.exchanges() {
            admin.delete_exchange(&exchange).await.expect("delete exchange");
        }
        admin.close().await.expect("close");
    }
}

async fn rabbit() -> Option<Rabbit> {
    reachable_amqp_url().map(|url| Rabbit { url })
}

eventing_tests::conformance_suite!(rabbit);
