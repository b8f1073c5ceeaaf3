//! Locks for electing the runner of recurring work: an exclusive queue, as on RabbitMQ,
//! owned by the connection that declared it and gone when that connection closes.

use std::sync::{Arc, Weak};

use super::Broker;
use super::queue::lock;
use crate::transport::{BoxFuture, Lock, QueueLifetime, QueueRole, QueueSpec, TransportError};

/// The lock `name` held by `connection`.
pub(super) struct MemoryLock {
    broker: Weak<Broker>,
    name: String,
    connection: u64,
}

/// Takes the lock `name` for `connection`, unless another connection holds it.
pub(super) fn try_lock(
    broker: &Arc<Broker>,
    name: &str,
    connection: u64,
) -> Result<Option<Box<dyn Lock>>, TransportError> {
    let spec = QueueSpec { name: name.to_owned(), lifetime: QueueLifetime::Exclusive, role: QueueRole::Listener };
    match broker.declare_queue(&spec, connection) {
        Ok(()) => Ok(Some(Box::new(MemoryLock { broker: Arc::downgrade(broker), name: name.to_owned(), connection }))),
        Err(TransportError::Locked { .. }) => Ok(None),
        Err(error) => Err(error),
    }
}

impl MemoryLock {
    fn held(&self) -> bool {
        let Some(broker) = self.broker.upgrade() else { return false };
        lock(&broker.queues).get(&self.name).is_some_and(|queue| queue.owner == Some(self.connection))
    }
}

impl Lock for MemoryLock {
    fn confirm(&self) -> BoxFuture<'_, bool> {
        Box::pin(std::future::ready(self.held()))
    }
}

impl Drop for MemoryLock {
    fn drop(&mut self) {
        if self.held() {
            if let Some(broker) = self.broker.upgrade() {
                broker.delete_queue(&self.name);
            }
        }
    }
}
