//! The lock that elects the runner of recurring work: an exclusive queue, declared on a
//! connection of its own that nothing heals.
//!
//! RabbitMQ lets one connection own an exclusive queue and deletes the queue when that
//! connection closes or is lost (the kernel closes a killed process's socket at once; a
//! silent network partition is noticed by the heartbeat). Another connection declaring it
//! meanwhile gets `RESOURCE_LOCKED`. The connection is not healed on purpose: a lock that
//! came back by itself after a loss could hide that another process took it in between, so
//! a lost connection is a lost lock, and the scheduler tries again as any other process.

use std::sync::Mutex;

use eventing::transport::{BoxFuture, Lock, QueueLifetime, QueueRole, QueueSpec, TransportError};
use lapin::{Channel, Connection};

use crate::options::{AmqpOptions, QueueType};
use crate::util::{lock, other};
use crate::{connect, topology};

/// A held lock: the connection that owns the exclusive queue.
pub(crate) struct AmqpLock {
    /// Taken when the lock is dropped.
    connection: Option<Connection>,
    channel: Mutex<Channel>,
    spec: QueueSpec,
}

/// Takes the lock `name` on a new connection named `<connection name> lock <name>` (with
/// `options`' name and TLS settings), to the first of `endpoints` (a cluster's nodes, in this
/// process's order) that answers:
/// `Ok(None)` when another connection owns it. An exclusive queue is exclusive cluster-wide.
pub(crate) async fn try_lock(
    endpoints: &[String],
    options: &AmqpOptions,
    name: &str,
) -> Result<Option<Box<dyn Lock>>, TransportError> {
    let connection_name = format!("{} lock {name}", options.connection_name);
    let mut opened = Err(TransportError::Closed);
    for endpoint in endpoints {
        opened = connect::open(endpoint, &connection_name, options).await;
        if opened.is_ok() {
            break;
        }
    }
    let connection = opened?;
    let spec = QueueSpec { name: name.to_owned(), lifetime: QueueLifetime::Exclusive, role: QueueRole::Listener };
    let declared = async {
        let channel = connection.create_channel().await.map_err(|error| other("opening a channel", error))?;
        topology::declare_queue(&channel, &spec, QueueType::Classic, false).await?;
        Ok::<_, TransportError>(channel)
    }
    .await;
    match declared {
        Ok(channel) => {
            Ok(Some(Box::new(AmqpLock { connection: Some(connection), channel: Mutex::new(channel), spec })))
        }
        Err(error) => {
            let _ = connection.close(200, "lock taken elsewhere".into()).await;
            match error {
                TransportError::Locked { .. } => Ok(None),
                error => Err(error),
            }
        }
    }
}

impl AmqpLock {
    async fn still_held(&self) -> bool {
        let Some(connection) = self.connection.as_ref().filter(|connection| connection.status().connected()) else {
            return false;
        };
        let current = lock(&self.channel).clone();
        let channel = if current.status().connected() {
            current
        } else {
            match connection.create_channel().await {
                Ok(channel) => {
                    *lock(&self.channel) = channel.clone();
                    channel
                }
                Err(_) => return false,
            }
        };
        // Declaring it again succeeds only while this connection owns it.
        topology::declare_queue(&channel, &self.spec, QueueType::Classic, false).await.is_ok()
    }
}

impl Lock for AmqpLock {
    fn confirm(&self) -> BoxFuture<'_, bool> {
        Box::pin(self.still_held())
    }
}

impl Drop for AmqpLock {
    fn drop(&mut self) {
        // Closing the connection deletes the queue, which releases the lock.
        let Some(connection) = self.connection.take() else { return };
        let channel = lock(&self.channel).clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                // The channel first, up to its close-ok: a connection closed under an open
                // channel makes lapin log `Connection error … invalid channel state`.
                if channel.status().connected() {
                    let _ = channel.close(200, "lock released".into()).await;
                }
                let _ = connection.close(200, "lock released".into()).await;
            });
        }
    }
}
