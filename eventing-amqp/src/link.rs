//! A connection that heals itself: when RabbitMQ drops it (restart, network reset), a
//! supervisor reconnects with backoff, declares the recorded topology again and restarts
//! every consumer; publishes wait, bounded, for the new connection.
//!
//! Why not lapin's own recovery: with `enable_auto_recover`, a connection *reset* (TCP RST,
//! as `rabbitmqctl stop_app` produces about one time in three here) leaves lapin's recovery
//! stuck: no error reaches consumers or pending confirms and nothing reconnects (lapin issue
//! #450 reports the same hang). Without it, lapin fails every pending operation promptly on
//! any connection loss, which is the behaviour this supervisor builds on.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use eventing::transport::{BindingSpec, QueueSpec, Topology, TransportError};
use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection, ErrorKind};
use tokio::sync::{Notify, watch};

use crate::consume::ConsumerSlot;
use crate::options::AmqpOptions;
use crate::{connect, topology};

/// How often the supervisor looks at the connection's state (it is also woken at once when
/// an operation fails).
const HEALTH_CHECK: Duration = Duration::from_millis(250);
/// Reconnect backoff: from the first to the largest delay, doubling.
const FIRST_RETRY: Duration = Duration::from_millis(200);
const LARGEST_RETRY: Duration = Duration::from_secs(5);

/// Locks a mutex of this crate; no critical section can panic half-way, so poisoning is ignored.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn other(context: &str, error: lapin::Error) -> TransportError {
    TransportError::Other { context: context.to_owned(), source: Box::new(error) }
}

/// One live connection with its publish channels.
pub(crate) struct Session {
    pub(crate) connection: Connection,
    publish_channels: Mutex<Vec<Channel>>,
    next: AtomicUsize,
    pub(crate) generation: u64,
    /// Set when an operation on this connection failed at the connection level: lapin's
    /// status can still say "connected" after a reset, so failures decide too.
    broken: AtomicBool,
}

impl Session {
    async fn open(url: &str, options: &AmqpOptions, generation: u64) -> Result<Self, TransportError> {
        let connection = connect::open(url, &options.connection_name).await?;
        let mut channels = Vec::with_capacity(options.publish_channels.max(1));
        for _ in 0..options.publish_channels.max(1) {
            channels.push(confirming_channel(&connection).await?);
        }
        Ok(Self {
            connection,
            publish_channels: Mutex::new(channels),
            next: AtomicUsize::new(0),
            generation,
            broken: AtomicBool::new(false),
        })
    }

    /// A publish channel; one the broker closed (a channel error) is replaced first.
    pub(crate) async fn publish_channel(&self) -> Result<Channel, TransportError> {
        let slot = self.next.fetch_add(1, Ordering::Relaxed);
        let channel = {
            let channels = lock(&self.publish_channels);
            channels[slot % channels.len()].clone()
        };
        if channel.status().connected() || !self.connection.status().connected() {
            return Ok(channel);
        }
        let fresh = confirming_channel(&self.connection).await?;
        let mut channels = lock(&self.publish_channels);
        let index = slot % channels.len();
        channels[index] = fresh.clone();
        Ok(fresh)
    }

    pub(crate) fn is_alive(&self) -> bool {
        !self.broken.load(Ordering::Acquire) && self.connection.status().connected()
    }

    /// An operation failed at the connection level: treat the connection as lost.
    pub(crate) fn mark_broken(&self) {
        self.broken.store(true, Ordering::Release);
    }
}

async fn confirming_channel(connection: &Connection) -> Result<Channel, TransportError> {
    let channel = connection.create_channel().await.map_err(|error| other("opening a publish channel", error))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|error| other("enabling publisher confirms", error))?;
    Ok(channel)
}

/// What was declared, to declare again on a new connection.
#[derive(Default)]
struct Recorded {
    exchanges: Vec<String>,
    queues: Vec<QueueSpec>,
    bindings: Vec<BindingSpec>,
}

/// The connection, healed by a supervisor task.
pub(crate) struct Link {
    url: String,
    pub(crate) options: AmqpOptions,
    session: watch::Sender<Option<Arc<Session>>>,
    generations: AtomicU64,
    closed: AtomicBool,
    trouble: Notify,
    recorded: Mutex<Recorded>,
    consumers: Mutex<Vec<Weak<ConsumerSlot>>>,
}

impl Link {
    /// Connects (failing at once on a bad URL) and starts the supervisor.
    pub(crate) async fn connect(url: &str, options: AmqpOptions) -> Result<Arc<Self>, TransportError> {
        let session = Session::open(url, &options, 0).await?;
        let link = Arc::new(Self {
            url: url.to_owned(),
            options,
            session: watch::Sender::new(Some(Arc::new(session))),
            generations: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            trouble: Notify::new(),
            recorded: Mutex::default(),
            consumers: Mutex::default(),
        });
        tokio::spawn(supervise(Arc::downgrade(&link)));
        Ok(link)
    }

    /// The current session, waiting up to `deadline` while reconnecting.
    pub(crate) async fn session(&self, deadline: tokio::time::Instant) -> Result<Arc<Session>, TransportError> {
        // The usual case, on every publish: connected. No watcher and no timer then.
        if let Ok(session) = self.current() {
            return Ok(session);
        }
        let mut watcher = self.session.subscribe();
        let waiting =
            watcher.wait_for(|session| session.as_ref().is_some_and(|session| session.is_alive()) || self.is_closed());
        match tokio::time::timeout_at(deadline, waiting).await {
            Ok(Ok(_)) if self.is_closed() => Err(TransportError::Closed),
            Ok(Ok(session)) => session.clone().ok_or(TransportError::Closed),
            Ok(Err(_)) => Err(TransportError::Closed),
            Err(_) => Err(TransportError::Other {
                context: "waiting for the connection".into(),
                source: format!("RabbitMQ was not reachable again within {:?}", self.options.publish_timeout).into(),
            }),
        }
    }

    /// The current session without waiting (for operator calls).
    pub(crate) fn current(&self) -> Result<Arc<Session>, TransportError> {
        if self.is_closed() {
            return Err(TransportError::Closed);
        }
        self.session.borrow().clone().filter(|session| session.is_alive()).ok_or(TransportError::Closed)
    }

    /// An operation failed in a way that may mean the connection is gone: look now.
    pub(crate) fn report_trouble(&self) {
        self.trouble.notify_one();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Declares `topology` on the current connection and records it for reconnects.
    pub(crate) async fn declare(&self, topology: &Topology) -> Result<(), TransportError> {
        let session = self.current()?;
        declare_on(
            &session.connection,
            &topology.exchanges,
            &topology.queues,
            &topology.bindings,
            self.options.queue_type,
        )
        .await?;
        let mut recorded = lock(&self.recorded);
        for exchange in &topology.exchanges {
            if !recorded.exchanges.contains(exchange) {
                recorded.exchanges.push(exchange.clone());
            }
        }
        for queue in &topology.queues {
            if !recorded.queues.contains(queue) {
                recorded.queues.push(queue.clone());
            }
        }
        for binding in &topology.bindings {
            if !recorded.bindings.contains(binding) {
                recorded.bindings.push(binding.clone());
            }
        }
        Ok(())
    }

    /// Registers a consumer to restart after every reconnect, and starts it now.
    pub(crate) async fn add_consumer(&self, slot: &Arc<ConsumerSlot>) -> Result<(), TransportError> {
        lock(&self.consumers).push(Arc::downgrade(slot));
        let session = self.current()?;
        slot.start(&session).await
    }

    pub(crate) fn consumers(&self) -> Vec<Arc<ConsumerSlot>> {
        let mut consumers = lock(&self.consumers);
        consumers.retain(|slot| slot.strong_count() > 0);
        consumers.iter().filter_map(Weak::upgrade).collect()
    }

    /// Stops healing and closes the connection.
    pub(crate) async fn close(&self) -> Result<(), TransportError> {
        self.closed.store(true, Ordering::Release);
        self.trouble.notify_one();
        let session = self.session.send_replace(None);
        let Some(session) = session.filter(|session| session.is_alive()) else { return Ok(()) };
        match session.connection.close(200, "eventing: shutting down".into()).await {
            Ok(()) => Ok(()),
            // lapin reports a channel that was already closing; the connection closes anyway.
            Err(error) if matches!(error.kind(), ErrorKind::InvalidChannelState(..)) => {
                tracing::debug!(%error, "a channel was already closing when the connection closed");
                Ok(())
            }
            Err(error) => Err(other("closing the connection", error)),
        }
    }

    /// Declares what was recorded and restarts the consumers on a new session.
    async fn restore(&self, session: &Arc<Session>) -> Result<(), TransportError> {
        let (exchanges, queues, bindings) = {
            let recorded = lock(&self.recorded);
            (recorded.exchanges.clone(), recorded.queues.clone(), recorded.bindings.clone())
        };
        declare_on(&session.connection, &exchanges, &queues, &bindings, self.options.queue_type).await?;
        for consumer in self.consumers() {
            consumer.start(session).await?;
        }
        Ok(())
    }
}

async fn declare_on(
    connection: &Connection,
    exchanges: &[String],
    queues: &[QueueSpec],
    bindings: &[BindingSpec],
    queue_type: crate::QueueType,
) -> Result<(), TransportError> {
    let channel = connection.create_channel().await.map_err(|error| other("opening a channel", error))?;
    for exchange in exchanges {
        topology::declare_exchange(&channel, exchange).await?;
    }
    for queue in queues {
        topology::declare_queue(&channel, queue, queue_type).await?;
    }
    for binding in bindings {
        topology::bind(&channel, binding).await?;
    }
    let _ = channel.close(200, "topology declared".into()).await;
    Ok(())
}

/// Watches the connection; when it is gone, reconnects with backoff and restores topology
/// and consumers. Ends when the link is closed or dropped.
async fn supervise(link: Weak<Link>) {
    loop {
        // Wait until the connection is lost (or the link closed/dropped).
        loop {
            let Some(link) = link.upgrade() else { return };
            if link.is_closed() {
                return;
            }
            let current = link.session.borrow().clone();
            if !current.as_ref().is_some_and(|session| session.is_alive()) {
                if let Some(lost) = current {
                    // Best effort: release whatever is left of the old connection.
                    tokio::spawn(async move {
                        let closing = lost.connection.close(320, "eventing: reconnecting".into());
                        let _ = tokio::time::timeout(Duration::from_secs(2), closing).await;
                    });
                }
                break;
            }
            let _ = tokio::time::timeout(HEALTH_CHECK, link.trouble.notified()).await;
        }
        let mut delay = FIRST_RETRY;
        let mut attempt = 0_u32;
        loop {
            let Some(link) = link.upgrade() else { return };
            if link.is_closed() {
                return;
            }
            attempt += 1;
            let generation = link.generations.fetch_add(1, Ordering::AcqRel) + 1;
            if attempt == 1 {
                tracing::warn!(connection = %link.options.connection_name, "connection to RabbitMQ lost; reconnecting");
            }
            match Session::open(&link.url, &link.options, generation).await.map(Arc::new) {
                Ok(session) => match link.restore(&session).await {
                    Ok(()) if link.is_closed() => {
                        // Closed while reconnecting: this connection must not outlive the link.
                        let _ = session.connection.close(200, "eventing: shutting down".into()).await;
                        return;
                    }
                    Ok(()) => {
                        tracing::info!(connection = %link.options.connection_name, attempt, "reconnected; topology and consumers restored");
                        link.session.send_replace(Some(session));
                        break;
                    }
                    Err(error) => {
                        tracing::warn!(%error, attempt, "restoring after reconnect failed; retrying");
                        let _ = session.connection.close(200, "restore failed".into()).await;
                    }
                },
                Err(error) => tracing::debug!(%error, attempt, "reconnect attempt failed"),
            }
            drop(link);
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(LARGEST_RETRY);
        }
    }
}
