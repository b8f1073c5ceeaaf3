//! A connection that heals itself: when RabbitMQ drops it (restart, network reset, a frame
//! lapin cannot parse), a supervisor reconnects with jittered backoff, declares the recorded
//! topology again and restores everything registered on it (see [`Restore`]); publishes wait,
//! bounded, for the new connection.
//!
//! Why not lapin's own recovery: with `enable_auto_recover`, a connection *reset* (TCP RST,
//! as `rabbitmqctl stop_app` produces about one time in three here) leaves lapin's recovery
//! stuck: no error reaches consumers or pending confirms and nothing reconnects (lapin issue
//! #450 reports the same hang). Without it, lapin fails every pending operation promptly on
//! any connection loss, which is the behaviour this supervisor builds on.
//!
//! Backoff: the first reconnect after a loss is immediate, unless the connection that was
//! lost had lived less than [`STABLE`]: then the backoff carries on from where the previous
//! loss left it. Without that, a connection that fails at once every time (a message lapin
//! cannot parse, redelivered on every connect) was reconnected about 90 times in 10 s.
//! Every delay is jittered (between half and all of it), so processes that lost the broker
//! together do not come back in lockstep.
//!
//! Several endpoints (the nodes of a cluster, see the `endpoints` module): a link connects
//! to the first endpoint of its list that answers; after a loss it tries the *next* node
//! first, then the others in turn, the lost one last, with no pause between the nodes of
//! one round (a stopped node refuses at once) and the jittered backoff between rounds. The
//! first attempt after a loss waits a short random moment when there are several
//! endpoints, so the connections that lost one node do not land on the next all at once.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use eventing::transport::{BindingSpec, BoxFuture, QueueSpec, Topology, TransportError};
use futures_util::StreamExt;
use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection, ErrorKind};
use tokio::sync::{Notify, watch};

use crate::options::AmqpOptions;
use crate::util::{lock, other};
use crate::{connect, topology};

/// How often the supervisor looks at the connection's state (it is also woken at once when
/// an operation fails).
const HEALTH_CHECK: Duration = Duration::from_millis(250);
/// Reconnect backoff: from the first to the largest delay, doubling, each jittered.
const FIRST_RETRY: Duration = Duration::from_millis(200);
const LARGEST_RETRY: Duration = Duration::from_secs(5);
/// A connection that lived this long was healthy: the next loss starts the backoff afresh.
const STABLE: Duration = Duration::from_secs(10);
/// How long closing a lost connection may take (a blocked connection never answers).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long opening a connection to one endpoint may take before the next one is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// With several endpoints, the first reconnect after a loss waits up to this (at random).
const FAILOVER_SPREAD: Duration = Duration::from_millis(100);

/// Why [`Restore::restore`] is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resume {
    /// The first start on the link's first connection.
    First,
    /// A new connection replaced one that was lost.
    AfterLoss,
    /// A new connection replaced one lapin dropped because a frame did not parse: a message
    /// that lapin cannot read is on the way to a consumer of this connection.
    AfterUnreadableFrame,
}

/// Something that lives on a link's connection and must be started again on every new one
/// (a consumer). The link owns this trait, so the link never needs to know what a consumer is.
pub(crate) trait Restore: Send + Sync {
    /// Starts on `session`; `resume` says why.
    fn restore<'a>(&'a self, session: &'a Arc<Session>, resume: Resume) -> BoxFuture<'a, Result<(), TransportError>>;
}

/// One live connection with its publish channels (none on a consumer's connection).
pub(crate) struct Session {
    pub(crate) connection: Connection,
    publish_channels: Mutex<Vec<Channel>>,
    /// The channel replies go out on, without publisher confirms; opened on first use.
    reply_channel: Mutex<Option<Channel>>,
    next: AtomicUsize,
    pub(crate) generation: u64,
    /// Which of the link's endpoints this connection went to.
    endpoint: usize,
    opened: tokio::time::Instant,
    /// Set when an operation on this connection failed at the connection level: lapin's
    /// status can still say "connected" after a reset, so failures decide too.
    broken: AtomicBool,
    /// Set when lapin dropped the connection because a frame did not parse.
    unreadable: AtomicBool,
    /// Why RabbitMQ blocked this connection (`connection.blocked`: a resource alarm), while
    /// it does.
    blocked: Mutex<Option<String>>,
}

impl Session {
    async fn open(
        url: &str,
        endpoint: usize,
        options: &AmqpOptions,
        publish_channels: usize,
        generation: u64,
        trouble: Weak<Notify>,
    ) -> Result<Arc<Self>, TransportError> {
        let connection =
            match tokio::time::timeout(CONNECT_TIMEOUT, connect::open(url, &options.connection_name, options)).await {
                Ok(connection) => connection?,
                Err(_) => {
                    return Err(TransportError::Connect {
                        url: eventing::transport::redact_url(url),
                        reason: format!("no answer within {CONNECT_TIMEOUT:?}"),
                    });
                }
            };
        let events = connection.events_listener();
        let mut channels = Vec::with_capacity(publish_channels);
        for _ in 0..publish_channels {
            channels.push(confirming_channel(&connection).await?);
        }
        let session = Arc::new(Self {
            connection,
            publish_channels: Mutex::new(channels),
            reply_channel: Mutex::new(None),
            next: AtomicUsize::new(0),
            generation,
            endpoint,
            opened: tokio::time::Instant::now(),
            broken: AtomicBool::new(false),
            unreadable: AtomicBool::new(false),
            blocked: Mutex::new(None),
        });
        tokio::spawn(watch_events(events, Arc::downgrade(&session), trouble, options.connection_name.clone()));
        Ok(session)
    }

    /// A publish channel; one the broker closed (a channel error) is replaced first.
    pub(crate) async fn publish_channel(&self) -> Result<Channel, TransportError> {
        let slot = self.next.fetch_add(1, Ordering::Relaxed);
        let channel = {
            let channels = lock(&self.publish_channels);
            if channels.is_empty() {
                return Err(TransportError::Other {
                    context: "publishing".into(),
                    source: "this connection has no publish channels (it is a consumer's)".into(),
                });
            }
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

    /// The channel for replies to requests: no publisher confirms (see
    /// [`Transport::reply`](eventing::transport::Transport::reply)), opened on first use
    /// and again after the broker closed it.
    pub(crate) async fn reply_channel(&self) -> Result<Channel, TransportError> {
        if let Some(channel) = lock(&self.reply_channel).clone().filter(|channel| channel.status().connected()) {
            return Ok(channel);
        }
        let fresh =
            self.connection.create_channel().await.map_err(|error| other("opening the reply channel", error))?;
        *lock(&self.reply_channel) = Some(fresh.clone());
        Ok(fresh)
    }

    pub(crate) fn is_alive(&self) -> bool {
        !self.broken.load(Ordering::Acquire) && self.connection.status().connected()
    }

    /// An operation failed at the connection level: treat the connection as lost.
    pub(crate) fn mark_broken(&self) {
        self.broken.store(true, Ordering::Release);
    }

    /// Why RabbitMQ blocks this connection (a memory or disk alarm), while it does:
    /// publishes wait for it, up to the publish timeout.
    pub(crate) fn blocked(&self) -> Option<String> {
        lock(&self.blocked).clone()
    }

    /// Closes the connection; gives up after [`CLOSE_TIMEOUT`] (a blocked or dead connection
    /// never answers), then drops it, which makes lapin stop its I/O loop.
    async fn close(&self, code: u16, text: &str) -> Result<(), lapin::Error> {
        match tokio::time::timeout(CLOSE_TIMEOUT, self.connection.close(code, text.into())).await {
            Ok(result) => result,
            Err(_) => {
                tracing::debug!(generation = self.generation, "the connection did not answer its close in time");
                Ok(())
            }
        }
    }
}

/// Follows lapin's connection events: a frame that did not parse marks the session
/// unreadable (and lost), `connection.blocked`/`unblocked` are logged and recorded.
async fn watch_events(
    mut events: impl futures_util::Stream<Item = lapin::Event> + Unpin,
    session: Weak<Session>,
    trouble: Weak<Notify>,
    connection_name: String,
) {
    loop {
        // Bounded, so the task also ends when the session is gone but lapin keeps the stream.
        let event = match tokio::time::timeout(HEALTH_CHECK * 20, events.next()).await {
            Ok(Some(event)) => event,
            Ok(None) => return,
            Err(_) if session.strong_count() == 0 => return,
            Err(_) => continue,
        };
        let Some(session) = session.upgrade() else { return };
        match event {
            lapin::Event::Error(error) if matches!(error.kind(), ErrorKind::ParsingError(_)) => {
                tracing::warn!(connection = %connection_name, %error, "RabbitMQ sent a frame lapin cannot parse (a message with invalid UTF-8 in a short-string field); dead-lettering it");
                session.unreadable.store(true, Ordering::Release);
                session.mark_broken();
            }
            // Other errors include channel errors (a refused declare): not a lost connection,
            // which the supervisor detects from the connection's status and failed operations.
            lapin::Event::ConnectionBlocked(reason) => {
                tracing::warn!(connection = %connection_name, %reason, "RabbitMQ blocked the connection (resource alarm): publishes wait until it is unblocked, up to the publish timeout, then fail as unconfirmed");
                *lock(&session.blocked) = Some(reason);
            }
            lapin::Event::ConnectionUnblocked => {
                tracing::info!(connection = %connection_name, "RabbitMQ unblocked the connection");
                *lock(&session.blocked) = None;
            }
            _ => continue,
        }
        if let Some(trouble) = trouble.upgrade() {
            trouble.notify_one();
        }
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
    /// The URL as given (every endpoint, with credentials: never log it).
    url: String,
    /// The single-host URLs, in this process's order.
    endpoints: Vec<String>,
    /// A cluster URL with the default queue type: expiring queues are quorum queues too.
    cluster: bool,
    pub(crate) options: AmqpOptions,
    publish_channels: usize,
    session: watch::Sender<Option<Arc<Session>>>,
    generations: AtomicU64,
    closed: AtomicBool,
    trouble: Arc<Notify>,
    recorded: Mutex<Recorded>,
    restorers: Mutex<Vec<Weak<dyn Restore>>>,
}

impl Link {
    /// Connects to the first of `endpoints` (single-host URLs split from `url`) that
    /// answers, failing at once when none does, and starts the supervisor. The connection
    /// has `publish_channels` confirming channels (0 for a consumer's connection).
    pub(crate) async fn connect(
        url: &str,
        endpoints: Vec<String>,
        cluster: bool,
        options: AmqpOptions,
        publish_channels: usize,
    ) -> Result<Arc<Self>, TransportError> {
        let trouble = Arc::new(Notify::new());
        let endpoints = if endpoints.is_empty() { vec![url.to_owned()] } else { endpoints };
        let mut failures = Vec::new();
        let mut opened = None;
        for (index, endpoint) in endpoints.iter().enumerate() {
            match Session::open(endpoint, index, &options, publish_channels, 0, Arc::downgrade(&trouble)).await {
                Ok(session) => {
                    opened = Some(session);
                    break;
                }
                Err(error) => failures.push(error),
            }
        }
        let session = match opened {
            Some(session) => session,
            None if failures.len() == 1 => return Err(failures.remove(0)),
            None => {
                let reasons: Vec<String> = failures.iter().map(ToString::to_string).collect();
                return Err(TransportError::Connect {
                    url: eventing::transport::redact_url(url),
                    reason: format!("no endpoint answered: {}", reasons.join("; ")),
                });
            }
        };
        if endpoints.len() > 1 {
            tracing::debug!(connection = %options.connection_name, endpoint = %eventing::transport::redact_url(&endpoints[session.endpoint]), "connected");
        }
        let link = Arc::new(Self {
            url: url.to_owned(),
            endpoints,
            cluster,
            options,
            publish_channels,
            session: watch::Sender::new(Some(session)),
            generations: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            trouble,
            recorded: Mutex::default(),
            restorers: Mutex::default(),
        });
        tokio::spawn(supervise(Arc::downgrade(&link)));
        Ok(link)
    }

    /// The URL this link connects to (with credentials: never log it).
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The single-host URLs, in this process's order (with credentials: never log them).
    pub(crate) fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Whether expiring queues are declared as quorum queues (see `topology`).
    pub(crate) fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// The single-host URL of the current connection, when connected (with credentials).
    pub(crate) fn connected_endpoint(&self) -> Option<&str> {
        let session = self.current().ok()?;
        self.endpoints.get(session.endpoint).map(String::as_str)
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
            self.cluster,
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

    /// Registers something to restore after every reconnect, and starts it now.
    pub(crate) async fn add(&self, restorer: Arc<dyn Restore>) -> Result<(), TransportError> {
        lock(&self.restorers).push(Arc::downgrade(&restorer));
        let session = self.current()?;
        restorer.restore(&session, Resume::First).await
    }

    fn restorers(&self) -> Vec<Arc<dyn Restore>> {
        let mut restorers = lock(&self.restorers);
        restorers.retain(|restorer| restorer.strong_count() > 0);
        restorers.iter().filter_map(Weak::upgrade).collect()
    }

    /// Stops healing and closes the connection.
    pub(crate) async fn close(&self) -> Result<(), TransportError> {
        self.closed.store(true, Ordering::Release);
        self.trouble.notify_one();
        let session = self.session.send_replace(None);
        let Some(session) = session.filter(|session| session.is_alive()) else { return Ok(()) };
        match session.close(200, "eventing: shutting down").await {
            Ok(()) => Ok(()),
            // lapin reports a channel that was already closing; the connection closes anyway.
            Err(error) if matches!(error.kind(), ErrorKind::InvalidChannelState(..)) => {
                tracing::debug!(%error, "a channel was already closing when the connection closed");
                Ok(())
            }
            Err(error) => Err(other("closing the connection", error)),
        }
    }

    /// Declares what was recorded and restores what was registered on a new session.
    async fn restore(&self, session: &Arc<Session>, resume: Resume) -> Result<(), TransportError> {
        let (exchanges, queues, bindings) = {
            let recorded = lock(&self.recorded);
            (recorded.exchanges.clone(), recorded.queues.clone(), recorded.bindings.clone())
        };
        declare_on(&session.connection, &exchanges, &queues, &bindings, self.options.queue_type, self.cluster).await?;
        for restorer in self.restorers() {
            restorer.restore(session, resume).await?;
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
    cluster: bool,
) -> Result<(), TransportError> {
    if exchanges.is_empty() && queues.is_empty() && bindings.is_empty() {
        return Ok(());
    }
    let channel = connection.create_channel().await.map_err(|error| other("opening a channel", error))?;
    for exchange in exchanges {
        topology::declare_exchange(&channel, exchange).await?;
    }
    for queue in queues {
        topology::declare_queue(&channel, queue, queue_type, cluster).await?;
    }
    for binding in bindings {
        topology::bind(&channel, binding).await?;
    }
    let _ = channel.close(200, "topology declared".into()).await;
    Ok(())
}

/// The reconnect backoff of one link (see the module documentation).
struct Backoff {
    /// The next delay before jitter.
    delay: Duration,
}

impl Backoff {
    fn new() -> Self {
        Self { delay: FIRST_RETRY }
    }

    /// The pause before the first reconnect after losing a connection that lived `lived`:
    /// none after a healthy connection, else the next (jittered) delay.
    fn before_reconnect(&mut self, lived: Duration) -> Option<Duration> {
        if lived >= STABLE {
            self.delay = FIRST_RETRY;
            None
        } else {
            Some(self.next())
        }
    }

    /// The pause after a failed reconnect attempt.
    fn after_failure(&mut self) -> Duration {
        self.next()
    }

    /// The current delay jittered (uniformly between half of it and all of it), then doubled.
    fn next(&mut self) -> Duration {
        let half = self.delay / 2;
        let pause = half + half.mul_f64(fastrand::f64());
        self.delay = (self.delay * 2).min(LARGEST_RETRY);
        pause
    }
}

/// Watches the connection; when it is gone, reconnects with backoff and restores topology
/// and consumers. Ends when the link is closed or dropped.
async fn supervise(link: Weak<Link>) {
    let mut backoff = Backoff::new();
    loop {
        // Wait until the connection is lost (or the link closed/dropped).
        let (resume, lived, lost_endpoint) = loop {
            let Some(link) = link.upgrade() else { return };
            if link.is_closed() {
                return;
            }
            let current = link.session.borrow().clone();
            match current {
                Some(session) if session.is_alive() => {}
                Some(lost) => {
                    let resume = if lost.unreadable.load(Ordering::Acquire) {
                        Resume::AfterUnreadableFrame
                    } else {
                        Resume::AfterLoss
                    };
                    let lived = lost.opened.elapsed();
                    let endpoint = lost.endpoint;
                    // Release whatever is left of the old connection, bounded.
                    tokio::spawn(async move {
                        let _ = lost.close(320, "eventing: reconnecting").await;
                    });
                    break (resume, lived, endpoint);
                }
                None => break (Resume::AfterLoss, Duration::ZERO, 0),
            }
            let trouble = Arc::clone(&link.trouble);
            drop(link);
            let _ = tokio::time::timeout(HEALTH_CHECK, trouble.notified()).await;
        };
        let endpoint_count = link.upgrade().map_or(1, |link| link.endpoints.len().max(1));
        if let Some(pause) = backoff.before_reconnect(lived) {
            // Lost again soon after connecting: no immediate reconnect, carry the backoff on.
            tokio::time::sleep(pause).await;
        } else if endpoint_count > 1 {
            tokio::time::sleep(FAILOVER_SPREAD.mul_f64(fastrand::f64())).await;
        }
        let mut attempt = 0_u32;
        loop {
            let Some(link) = link.upgrade() else { return };
            if link.is_closed() {
                return;
            }
            attempt += 1;
            // The next node after the lost one first, the lost one last.
            let endpoint = failover_endpoint(lost_endpoint, attempt, endpoint_count);
            let generation = link.generations.fetch_add(1, Ordering::AcqRel) + 1;
            if attempt == 1 {
                tracing::warn!(connection = %link.options.connection_name, "connection to RabbitMQ lost; reconnecting");
            }
            let opened = Session::open(
                &link.endpoints[endpoint],
                endpoint,
                &link.options,
                link.publish_channels,
                generation,
                Arc::downgrade(&link.trouble),
            )
            .await;
            match opened {
                Ok(session) => match link.restore(&session, resume).await {
                    Ok(()) if link.is_closed() => {
                        // Closed while reconnecting: this connection must not outlive the link.
                        let _ = session.close(200, "eventing: shutting down").await;
                        return;
                    }
                    Ok(()) => {
                        let endpoint = eventing::transport::redact_url(&link.endpoints[endpoint]);
                        tracing::info!(connection = %link.options.connection_name, attempt, %endpoint, "reconnected; topology and consumers restored");
                        eventing::observe::connection_recovered();
                        link.session.send_replace(Some(session));
                        break;
                    }
                    Err(error) => {
                        tracing::warn!(connection = %link.options.connection_name, %error, attempt, "restoring after reconnect failed; retrying");
                        let _ = session.close(200, "restore failed").await;
                    }
                },
                Err(error) => {
                    tracing::debug!(connection = %link.options.connection_name, %error, attempt, "reconnect attempt failed")
                }
            }
            drop(link);
            if attempt.is_multiple_of(u32::try_from(endpoint_count).unwrap_or(u32::MAX)) {
                // A whole round of nodes failed: back off before the next round.
                tokio::time::sleep(backoff.after_failure()).await;
            }
        }
    }
}

/// The endpoint of reconnect attempt `attempt` (from 1) after losing `lost`, of `count`:
/// the next one first, the lost one last in each round.
fn failover_endpoint(lost: usize, attempt: u32, count: usize) -> usize {
    let count = count.max(1);
    let step = usize::try_from(attempt).unwrap_or(usize::MAX) % count;
    let step = if step == 0 { count } else { step };
    (lost + step) % count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failover_tries_the_next_node_first_and_the_lost_one_last() {
        let order: Vec<usize> = (1..=6).map(|attempt| failover_endpoint(1, attempt, 3)).collect();
        assert_eq!(order, [2, 0, 1, 2, 0, 1]);
        let single: Vec<usize> = (1..=3).map(|attempt| failover_endpoint(0, attempt, 1)).collect();
        assert_eq!(single, [0, 0, 0]);
    }

    #[test]
    fn a_connection_that_keeps_failing_at_once_is_not_reconnected_in_a_hot_loop() {
        let mut backoff = Backoff::new();
        // Each connection dies right after it opened (a poison message, say): count the
        // reconnects that fit in 10 s with the shortest jitter.
        let (mut elapsed, mut reconnects) = (Duration::ZERO, 0);
        while elapsed < Duration::from_secs(10) {
            elapsed += backoff.before_reconnect(Duration::from_millis(50)).expect("a pause");
            reconnects += 1;
        }
        assert!(reconnects <= 10, "{reconnects} reconnects in 10 s");
    }

    #[test]
    fn pauses_are_jittered_within_half_and_all_of_the_delay_and_reset_after_a_stable_connection() {
        let mut backoff = Backoff::new();
        let pauses: Vec<Duration> = (0..40).map(|_| backoff.after_failure()).collect();
        assert!(pauses[0] >= FIRST_RETRY / 2 && pauses[0] <= FIRST_RETRY);
        assert!(pauses.iter().all(|pause| *pause <= LARGEST_RETRY));
        let capped = &pauses[10..];
        assert!(capped.iter().any(|pause| *pause != capped[0]), "jittered: {capped:?}");
        assert_eq!(backoff.before_reconnect(STABLE), None, "a healthy connection reconnects at once");
        assert!(backoff.after_failure() <= FIRST_RETRY, "and the backoff starts afresh");
    }
}
