//! Configuration, start-up and shutdown: [`builder`], [`Builder`], [`Bus`], [`run`].

mod connect;
mod consumer;
mod describe;
mod handle;
mod plan;
mod publisher;
mod requests;
mod schedule;
mod serve;
mod settings;
mod settle;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::consumer::Consumer;
pub(crate) use self::describe::{DescribedListener, DescribedRequest, Description};
use self::handle::HandleStack;
use self::plan::{PlanConfig, plan};
pub(crate) use self::publisher::{Publisher, extra_headers};
pub use self::settings::{ListenerSettings, RecurringSettings};
use self::settle::Settler;
use crate::interceptor::{ErasedInterceptor, Placed};
use crate::message::{HeaderValue, Headers};
use crate::transport::{Topology, Transport};
use crate::{Chaos, Error, Event, Health, Interceptor, ListenerInfo, Registry, RetryPolicy, State, naming};
use crate::{Request, RequestError};

/// The default number of handler calls in flight per listener.
pub const DEFAULT_CONCURRENCY: u16 = 16;

/// Starts configuring a bus.
///
/// ```rust,standalone_crate
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), eventing::Error> {
/// let bus = eventing::builder()
///     .url("memory://")
///     .service("shop")
///     .exchange("acme")
///     .start()
///     .await?;
/// bus.shutdown().await?;
/// # Ok(())
/// # }
/// ```
#[must_use]
pub fn builder() -> Builder {
    Builder::default()
}

/// Starts the bus configured from the environment and runs it until SIGINT or SIGTERM,
/// then shuts down gracefully (in-flight handlers finish and are acknowledged).
///
/// The transport comes from `EVENTING_URL` (`memory://` when unset); `EVENTING_SERVICE`,
/// `EVENTING_PROCESS_ID` and `EVENTING_EXCHANGE` override the defaults.
///
/// With the `signal` cargo feature (a default one: it enables tokio's signal handling).
#[cfg(feature = "signal")]
pub async fn run() -> Result<(), Error> {
    builder().run().await
}

type ListenerFilter = Box<dyn Fn(&ListenerInfo) -> bool + Send + Sync>;

/// How a started bus runs.
struct Running {
    exchange: String,
    app_id: Arc<str>,
    process_id: String,
    shutdown_timeout: Duration,
    chaos: Option<Arc<Chaos>>,
    /// The transport's `messaging.system` (see [`Transport::system`]).
    system: &'static str,
}

/// The names a bus runs under.
struct Settings {
    exchange: String,
    service: Option<String>,
    process_id: String,
}

/// Configures and starts a [`Bus`]. Every setting has a default; see [`builder`].
pub struct Builder {
    url: Option<String>,
    transport: Option<Arc<dyn Transport>>,
    exchange: Option<String>,
    service: Option<String>,
    process_id: Option<String>,
    state: State,
    concurrency: u16,
    prefetch: Option<u16>,
    idle_queue_expiry: Duration,
    shutdown_timeout: Duration,
    retry: RetryPolicy,
    chaos: Option<Chaos>,
    include: ListenerFilter,
    interceptors: Vec<Placed>,
    // Configuration file and recurring work (see `settings.rs`).
    config_file: Option<PathBuf>,
    run_recurring: bool,
    request_timeout: Duration,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            url: None,
            transport: None,
            exchange: None,
            service: None,
            process_id: None,
            state: State::default(),
            concurrency: DEFAULT_CONCURRENCY,
            prefetch: None,
            idle_queue_expiry: Duration::from_secs(30 * 60),
            shutdown_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            chaos: None,
            include: Box::new(|_| true),
            interceptors: Vec::new(),
            config_file: None,
            run_recurring: true,
            request_timeout: crate::request::DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("url", &self.url.as_deref().map(crate::transport::redact_url))
            .field("exchange", &self.exchange)
            .field("service", &self.service)
            .field("process_id", &self.process_id)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl Builder {
    /// The broker URL; its scheme picks the transport (`memory://`, or `amqp://` and
    /// `amqps://` with `eventing-amqp` linked). Default: `EVENTING_URL`, else `memory://`.
    #[must_use]
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// A transport picked in code, e.g. [`MemoryBroker::transport`](crate::memory::MemoryBroker::transport).
    /// Takes precedence over [`url`](Self::url).
    #[must_use]
    pub fn transport(mut self, transport: impl Transport) -> Self {
        self.transport = Some(Arc::new(transport));
        self
    }

    /// The topic exchange (default `eventing`, or `EVENTING_EXCHANGE`).
    #[must_use]
    pub fn exchange(mut self, exchange: impl Into<String>) -> Self {
        self.exchange = Some(exchange.into());
        self
    }

    /// The service name: first part of every queue name, the `app_id` of published messages
    /// and the first part of the connection name (`<service>@<process id>`). Default:
    /// `EVENTING_SERVICE`, else each listener's crate name in snake case; the bus itself is
    /// named after its listeners' crate when they share one, else after the executable.
    #[must_use]
    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.service = Some(service.into());
        self
    }

    /// This process's id, the last part of `per_process` queue names.
    /// Default: `EVENTING_PROCESS_ID`, else `<host>-<pid>`.
    #[must_use]
    pub fn process_id(mut self, process_id: impl Into<String>) -> Self {
        self.process_id = Some(process_id.into());
        self
    }

    /// Gives listeners a value to build from (see [`FromState`](crate::FromState)).
    /// One value per type; a later one replaces an earlier one.
    #[must_use]
    pub fn state<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.state.insert(value);
        self
    }

    /// Handler calls in flight at once per listener, unless the listener's attribute says
    /// otherwise (default 16; 1 handles one message at a time, in queue order).
    #[must_use]
    pub fn concurrency(mut self, concurrency: u16) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// Deliveries buffered per consumer, unless the listener's attribute says otherwise
    /// (default: twice the concurrency; never less than the concurrency).
    #[must_use]
    pub fn prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = Some(prefetch);
        self
    }

    /// How long the broker keeps an unused shared queue of a non-durable event (default 30 min).
    #[must_use]
    pub fn idle_queue_expiry(mut self, expiry: Duration) -> Self {
        self.idle_queue_expiry = expiry;
        self
    }

    /// How long [`Bus::shutdown`] waits for in-flight handlers (default 30 s); messages of
    /// handlers still running then are redelivered later.
    #[must_use]
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// How failed deliveries are retried, unless the listener's attribute says otherwise
    /// (default: [`RetryPolicy::default`], 5 attempts, waits from 1 s doubling).
    #[must_use]
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Injects faults into this bus's deliveries (see [`Chaos`]); also read from
    /// `EVENTING_CHAOS` (`fail=0.2,nack=0.05,delay=10..50ms,exempt=a|b`). Off by default.
    #[must_use]
    pub fn chaos(mut self, chaos: Chaos) -> Self {
        self.chaos = Some(chaos);
        self
    }

    /// Adds an interceptor value to this bus, after the `#[interceptor]`s registered with
    /// the same order (0); see [`Interceptor`] for what runs where.
    #[must_use]
    pub fn interceptor(mut self, interceptor: impl Interceptor) -> Self {
        self.interceptors.push(Placed::given(interceptor));
        self
    }

    /// How long [`Bus::request`] and [`Context::request`](crate::Context::request) wait for
    /// a reply (default 30 s); also the request's expiration on the broker.
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Starts only the listeners for which `include` returns true (default: all).
    #[must_use]
    pub fn listeners(mut self, include: impl Fn(&ListenerInfo) -> bool + Send + Sync + 'static) -> Self {
        self.include = Box::new(include);
        self
    }

    /// Collects registrations, builds listeners, connects, declares the topology and starts
    /// consuming. Fails naming the culprit on duplicate names, missing listener state, a
    /// bad URL or an unreachable broker.
    pub async fn start(self) -> Result<Bus, Error> {
        let file = self.load_config()?;
        let settings = self.settings(&file);
        let plan = self.plan(&settings, &file)?;
        let recurring = self.plan_recurring(&settings, &file, &plan)?;
        let request_plan = requests::RequestPlan::collect(&self.include)?;
        let chaos = match self.chaos.clone() {
            Some(chaos) => Some(chaos),
            None => env("EVENTING_CHAOS")
                .map(|text| Chaos::parse(&text))
                .transpose()
                .map_err(|source| Error::InvalidChaos { source })?,
        }
        .filter(Chaos::is_active)
        .map(Arc::new);
        if let Some(chaos) = &chaos {
            tracing::warn!(?chaos, "CHAOS IS ON: failures, nacks and delays are being injected on purpose");
        }
        if plan.listeners.is_empty() {
            crate::registry::warn_no_listeners();
        }
        let handlers =
            crate::registry::build_handlers(plan.listeners.iter().map(|listener| &listener.registered), &self.state)
                .and_then(|handlers| Ok((handlers, settings::build_recurring(recurring, &self.state)?)));
        let interceptors = crate::interceptor::chain(&self.state, self.interceptors);
        let ((handlers, recurring), interceptors) = match (handlers, interceptors) {
            (Ok(handlers), Ok(interceptors)) => (handlers, interceptors),
            // Name everything that is missing at once, listeners first.
            (Err(Error::MissingState { mut missing }), Err(Error::MissingState { missing: more })) => {
                missing.extend(more);
                return Err(Error::MissingState { missing });
            }
            (Err(error), _) | (_, Err(error)) => return Err(error),
        };

        let Settings { exchange, process_id, .. } = settings;
        let app_id: Arc<str> = plan.service.clone().unwrap_or_else(naming::service_from_executable).into();
        let (transport, system) = match self.transport {
            Some(transport) => {
                let system = transport.system().unwrap_or(connect::OTHER_SYSTEM);
                (transport, system)
            }
            None => {
                let url = self.url.or_else(|| env("EVENTING_URL")).or(file.url).unwrap_or_else(|| "memory://".into());
                let transport = connect::connect(&url, &app_id, &process_id).await?;
                let system = transport.system().unwrap_or_else(|| connect::system_of(&url));
                (transport, system)
            }
        };
        let running = Running { exchange, app_id, process_id, shutdown_timeout: self.shutdown_timeout, chaos, system };
        let launched = launch(&transport, &plan, handlers, interceptors, running).await;
        let launched = match launched {
            Ok(shared) => {
                let serving = start_requests(
                    &request_plan,
                    &shared,
                    &self.state,
                    (self.request_timeout, self.concurrency, self.shutdown_timeout),
                )
                .await;
                match serving {
                    Ok(()) => Ok(shared),
                    Err(error) => {
                        Bus { shared: Arc::new(shared) }.stop_consumers().await;
                        Err(error)
                    }
                }
            }
            Err(error) => Err(error),
        };
        match launched {
            Ok(shared) => {
                let scheduled =
                    schedule::spawn(recurring, &transport, &shared.publisher, &shared.stop, self.shutdown_timeout);
                *shared.recurring.lock().unwrap_or_else(PoisonError::into_inner) = scheduled;
                Ok(Bus { shared: Arc::new(shared) })
            }
            Err(error) => {
                // Nothing may linger after a failed start: no consumer, no connection
                // (whose recovery would otherwise keep re-declaring what it had declared).
                if let Err(close_error) = transport.close().await {
                    tracing::warn!(error = %close_error, "closing the connection after a failed start");
                }
                Err(error)
            }
        }
    }

    /// What [`start`](Self::start) would declare, without connecting: the exchange, every
    /// queue with its lifetime and role, and the bindings (for `eventing topology`).
    pub fn topology(&self) -> Result<Topology, Error> {
        let file = self.load_config()?;
        Ok(self.plan(&self.settings(&file), &file)?.topology)
    }

    /// Names from the builder, else the environment, else the configuration file, else the
    /// defaults.
    fn settings(&self, file: &crate::config::FileConfig) -> Settings {
        Settings {
            exchange: self
                .exchange
                .clone()
                .or_else(|| env("EVENTING_EXCHANGE"))
                .or_else(|| file.exchange.clone())
                .unwrap_or_else(|| naming::DEFAULT_EXCHANGE.into()),
            service: self.service.clone().or_else(|| env("EVENTING_SERVICE")).or_else(|| file.service.clone()),
            process_id: self
                .process_id
                .clone()
                .or_else(|| env("EVENTING_PROCESS_ID"))
                .or_else(|| file.process_id.clone())
                .unwrap_or_else(naming::default_process_id),
        }
    }

    fn plan(&self, settings: &Settings, file: &crate::config::FileConfig) -> Result<plan::Plan, Error> {
        let registry = Registry::collect()?;
        settings::check_file_names(file, &registry)?;
        let mut plan = plan(
            &registry,
            &PlanConfig {
                exchange: &settings.exchange,
                service: settings.service.as_deref(),
                process_id: &settings.process_id,
                concurrency: self.concurrency,
                prefetch: self.prefetch,
                idle_queue_expiry: self.idle_queue_expiry,
                retry: self.retry,
                include: &self.include,
                file,
            },
        )?;
        requests::RequestPlan::collect(&self.include)?.extend_topology(&mut plan.topology, &settings.exchange);
        Ok(plan)
    }

    /// [`start`](Self::start)s the bus, waits for SIGINT or SIGTERM, then shuts down gracefully.
    /// (With the `signal` cargo feature, a default one.)
    #[cfg(feature = "signal")]
    pub async fn run(self) -> Result<(), Error> {
        let bus = self.start().await?;
        let signal = shutdown_signal().await;
        tracing::info!("shutdown signal received; draining");
        bus.shutdown().await?;
        signal
    }
}

/// Serves the request handlers and gives the bus its request client (`requests.rs`).
async fn start_requests(
    request_plan: &requests::RequestPlan,
    shared: &Shared,
    state: &State,
    (timeout, concurrency, shutdown_timeout): (Duration, u16, Duration),
) -> Result<(), Error> {
    let client = requests::RequestClient { timeout, stop: shared.stop.clone() };
    let _ = shared.publisher.requests.set(client);
    let tasks = request_plan.start(state, &shared.publisher, &shared.stop, concurrency, shutdown_timeout).await?;
    shared.consumers.lock().unwrap_or_else(PoisonError::into_inner).extend(tasks);
    Ok(())
}

/// Declares the topology and starts one consumer per listener. On failure, the consumers
/// already started are stopped before the error is returned.
async fn launch(
    transport: &Arc<dyn Transport>,
    plan: &plan::Plan,
    handlers: Vec<Arc<dyn crate::registry::ErasedHandler>>,
    interceptors: Arc<[Arc<dyn ErasedInterceptor>]>,
    running: Running,
) -> Result<Shared, Error> {
    let Running { exchange, app_id, process_id, shutdown_timeout, chaos, system } = running;
    transport.declare(&plan.topology).await.map_err(|source| Error::Declare { source })?;
    let publisher =
        Arc::new(Publisher::new(Arc::clone(transport), exchange, app_id, interceptors, plan.events.clone(), system));
    let stop = CancellationToken::new();
    let mut consumers = Vec::with_capacity(plan.listeners.len());
    for (listener, handler) in plan.listeners.iter().zip(handlers) {
        let info = listener.registered.info;
        let subscription = match transport.consume(&listener.queue, listener.prefetch).await {
            Ok(subscription) => subscription,
            Err(source) => {
                stop.cancel();
                for consumer in consumers {
                    let _ = consumer.await;
                }
                return Err(Error::Consume { listener: info.rust_type, queue: listener.queue.name.clone(), source });
            }
        };
        let consumer = Arc::new(Consumer {
            stack: HandleStack { info, handler, publisher: Arc::clone(&publisher), chaos: chaos.clone() },
            settler: Settler {
                info,
                queue: listener.queue.name.clone(),
                dead_letter_queue: listener.dead_letter.name.clone(),
                retry: listener.retry,
                retry_tiers: listener.retry_tiers.clone(),
            },
            concurrency: listener.concurrency,
        });
        tracing::info!(
            listener = info.name,
            event = info.event,
            queue = %listener.queue.name,
            concurrency = listener.concurrency,
            prefetch = listener.prefetch,
            "listening"
        );
        consumers.push(tokio::spawn(consumer::run(consumer, subscription, stop.child_token(), shutdown_timeout)));
    }
    Ok(Shared {
        publisher,
        stop,
        consumers: Mutex::new(consumers),
        topology: plan.topology.clone(),
        process_id,
        recurring: Mutex::default(),
    })
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

#[cfg(all(unix, feature = "signal"))]
async fn shutdown_signal() -> Result<(), Error> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).map_err(Error::Signal)?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.map_err(Error::Signal),
        _ = terminate.recv() => Ok(()),
    }
}

#[cfg(all(not(unix), feature = "signal"))]
async fn shutdown_signal() -> Result<(), Error> {
    tokio::signal::ctrl_c().await.map_err(Error::Signal)
}

/// A running bus: publish events, then [`shutdown`](Self::shutdown). Clones share the bus.
#[derive(Clone)]
pub struct Bus {
    shared: Arc<Shared>,
}

struct Shared {
    publisher: Arc<Publisher>,
    stop: CancellationToken,
    consumers: Mutex<Vec<JoinHandle<()>>>,
    topology: Topology,
    process_id: String,
    /// The schedulers of recurring work.
    recurring: Mutex<Vec<JoinHandle<()>>>,
}

impl Bus {
    /// Publishes an event and returns once the broker confirmed it. The message starts a
    /// new causal chain (its correlation id is its own message id).
    pub async fn publish<E: Event>(&self, event: &E) -> Result<(), Error> {
        self.shared.publisher.publish(event, Headers::new(), None).await
    }

    /// [`publish`](Self::publish) with extra headers, which handlers read with
    /// [`Context::headers`](crate::Context::headers). Names starting with `x-eventing-` are
    /// eventing's own: giving one is an error and nothing is sent.
    ///
    /// ```rust,standalone_crate
    /// # use eventing::event;
    /// # use serde::{Deserialize, Serialize};
    /// # #[event] #[derive(Serialize, Deserialize)] struct InvoicePaid { invoice: String }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), eventing::Error> {
    /// let bus = eventing::builder().start().await?;
    /// bus.publish_with(&InvoicePaid { invoice: "A-1".into() }, [("tenant", "acme")]).await?;
    /// assert!(bus.publish_with(&InvoicePaid { invoice: "A-2".into() }, [("x-eventing-attempt", "9")]).await.is_err());
    /// # bus.shutdown().await
    /// # }
    /// ```
    pub async fn publish_with<E: Event, K: Into<String>, V: Into<HeaderValue>>(
        &self,
        event: &E,
        headers: impl IntoIterator<Item = (K, V)>,
    ) -> Result<(), Error> {
        self.shared.publisher.publish(event, extra_headers(headers)?, None).await
    }

    /// Publishes a JSON `body` as the event `name`, for producers that have JSON but no Rust
    /// type (bridges, scripts, other languages' payloads). The name must be a valid event
    /// name and the body valid JSON, else nothing is sent; a registered event's
    /// durability applies, and its typed listeners receive it like any other.
    ///
    /// ```rust,standalone_crate
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), eventing::Error> {
    /// let bus = eventing::builder().start().await?;
    /// bus.publish_raw("billing.invoice_paid", br#"{"invoice":"A-1"}"#.to_vec()).await?;
    /// assert!(bus.publish_raw("billing.invoice_paid", b"not json".to_vec()).await.is_err());
    /// assert!(bus.publish_raw("billing.*", b"{}".to_vec()).await.is_err());
    /// # bus.shutdown().await
    /// # }
    /// ```
    pub async fn publish_raw(&self, name: &str, body: Vec<u8>) -> Result<(), Error> {
        self.shared.publisher.publish_raw(name, body, Headers::new(), None).await
    }

    /// Sends `request` to its handler (wherever it runs) and waits for the reply, up to the
    /// builder's [`request_timeout`](Builder::request_timeout) (default 30 s).
    pub async fn request<R: Request>(&self, request: &R) -> Result<R::Reply, RequestError> {
        let within = self
            .shared
            .publisher
            .requests
            .get()
            .map_or(crate::request::DEFAULT_REQUEST_TIMEOUT, |client| client.timeout);
        self.request_within(request, within).await
    }

    /// [`request`](Self::request), waiting up to `timeout` (also the request's expiration).
    pub async fn request_within<R: Request>(&self, request: &R, timeout: Duration) -> Result<R::Reply, RequestError> {
        let publisher = &self.shared.publisher;
        match publisher.requests.get() {
            Some(client) => client.call(publisher, request, timeout, None).await,
            None => Err(RequestError::ShutDown { request: R::NAME.to_owned() }),
        }
    }

    /// Sends `request` to be handled once, without waiting for a reply: returns once the
    /// broker took it. Fails with [`RequestError::NoHandler`] when no queue takes it.
    pub async fn send<R: Request>(&self, request: &R) -> Result<(), RequestError> {
        let publisher = &self.shared.publisher;
        match publisher.requests.get() {
            Some(client) => client.send(publisher, request, None).await,
            None => Err(RequestError::ShutDown { request: R::NAME.to_owned() }),
        }
    }

    /// Whether the bus is connected and every listener consuming, for readiness probes.
    pub fn health(&self) -> Health {
        let consumers = self.shared.consumers.lock().unwrap_or_else(PoisonError::into_inner);
        let transport = self.shared.publisher.transport();
        Health::new(
            !self.shared.publisher.is_closed() && !self.shared.stop.is_cancelled(),
            transport.is_connected(),
            transport.is_blocked(),
            consumers.len(),
            consumers.iter().filter(|consumer| !consumer.is_finished()).count(),
        )
    }

    /// Stops taking deliveries, returns unstarted ones to their queues, waits for handlers
    /// in flight to finish and be acknowledged, then closes the connection. Calling it
    /// again, or from a clone, does nothing more.
    pub async fn shutdown(&self) -> Result<(), Error> {
        self.shared.stop.cancel();
        let schedulers = std::mem::take(&mut *self.shared.recurring.lock().unwrap_or_else(PoisonError::into_inner));
        for scheduler in schedulers {
            if let Err(error) = scheduler.await {
                tracing::error!(%error, "a recurring scheduler failed during shutdown");
            }
        }
        let consumers = std::mem::take(&mut *self.shared.consumers.lock().unwrap_or_else(PoisonError::into_inner));
        if consumers.is_empty() && self.shared.publisher.is_closed() {
            return Ok(());
        }
        for consumer in consumers {
            if let Err(error) = consumer.await {
                tracing::error!(%error, "a consumer task failed during shutdown");
            }
        }
        self.shared.publisher.close();
        self.shared.publisher.transport().close().await?;
        tracing::info!("bus shut down");
        Ok(())
    }

    /// Cancels and awaits the consumers started so far (after a failed start).
    async fn stop_consumers(&self) {
        self.shared.stop.cancel();
        let consumers = std::mem::take(&mut *self.shared.consumers.lock().unwrap_or_else(PoisonError::into_inner));
        for consumer in consumers {
            let _ = consumer.await;
        }
    }

    /// What this bus declared.
    pub fn topology(&self) -> &Topology {
        &self.shared.topology
    }

    /// This bus's process id (the suffix of its `per_process` queues).
    pub fn process_id(&self) -> &str {
        &self.shared.process_id
    }
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus").field("process_id", &self.shared.process_id).finish_non_exhaustive()
    }
}
