//! What `#[event]` and `#[event_listener]` registered, collected through `inventory`
//! and checked at start.

use std::any::{Any, TypeId, type_name};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::message::Message;
use crate::raw::Receivable;
use crate::schema::SchemaFn;
use crate::transport::BoxFuture;
use crate::{Context, Error, Event, FromState, HandlerError, Listener, MissingState, State, naming};

/// Registered by `#[event]`.
#[doc(hidden)]
pub struct EventDescriptor {
    name: &'static str,
    durable: bool,
    rust_type: fn() -> &'static str,
    schema: SchemaFn,
}

impl EventDescriptor {
    /// Describes event type `E` (without a schema until [`with_schema`](Self::with_schema)).
    pub const fn new<E: Event>() -> Self {
        Self { name: E::NAME, durable: E::DURABLE, rust_type: type_name::<E>, schema: crate::schema::unavailable::<E> }
    }

    /// The payload's schema function, from the macro's [`SchemaProbe`](crate::schema::SchemaProbe).
    #[must_use]
    pub const fn with_schema(mut self, schema: SchemaFn) -> Self {
        self.schema = schema;
        self
    }
}

/// The payload schema of the registered event `name`: its JSON Schema, or why there is none
/// (`None` for a name no `#[event]` registered).
pub(crate) fn event_schema(name: &str) -> Option<Result<serde_json::Value, String>> {
    inventory::iter::<EventDescriptor>.into_iter().find(|event| event.name == name).map(|event| (event.schema)())
}

impl std::fmt::Debug for EventDescriptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventDescriptor")
            .field("name", &self.name)
            .field("durable", &self.durable)
            .field("rust_type", &(self.rust_type)())
            .finish_non_exhaustive()
    }
}

inventory::collect!(EventDescriptor);

/// Whether every process of a service shares a listener's deliveries or each gets all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListenerMode {
    /// One queue per service: the processes are competing consumers (the default).
    Competing,
    /// One exclusive queue per process: every running process gets every event.
    PerProcess,
}

/// Builds a listener's type-erased handler from the state given to the builder.
type MakeHandler = fn(&mut Instances, &State) -> Result<Arc<dyn ErasedHandler>, MissingState>;

/// Registered by `#[event_listener]`.
#[doc(hidden)]
pub struct ListenerDescriptor {
    attributes: ListenerAttributes,
    /// The event's name; `None` for a pattern listener of [`RawEvent`](crate::RawEvent)s.
    event: Option<&'static str>,
    durable: bool,
    rust_type: fn() -> &'static str,
    event_type: fn() -> &'static str,
    make_handler: MakeHandler,
}

/// Attribute settings of one `#[event_listener]`, filled in by the macro.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct ListenerAttributes {
    pub name: &'static str,
    pub per_process: bool,
    pub crate_name: &'static str,
    pub concurrency: u16,
    pub prefetch: u16,
    pub max_attempts: u16,
    pub retry_delay_ms: u16,
    pub backoff: &'static str,
    /// The binding pattern of a `Listener<RawEvent>`; empty for a typed listener.
    pub pattern: &'static str,
}

impl ListenerDescriptor {
    /// Describes listener `L` of event `E`.
    pub const fn new<L: Listener<E> + FromState, E: Receivable>(attributes: ListenerAttributes) -> Self {
        Self {
            attributes,
            event: E::NAME,
            durable: E::DURABLE,
            rust_type: type_name::<L>,
            event_type: type_name::<E>,
            make_handler: make_handler::<L, E>,
        }
    }

    fn info(&self) -> ListenerInfo {
        let attributes = &self.attributes;
        let pattern = (!attributes.pattern.is_empty()).then_some(attributes.pattern);
        ListenerInfo {
            name: attributes.name,
            rust_type: (self.rust_type)(),
            event: self.event.unwrap_or(attributes.pattern),
            pattern,
            event_type: (self.event_type)(),
            durable: self.durable,
            mode: if attributes.per_process { ListenerMode::PerProcess } else { ListenerMode::Competing },
            crate_name: attributes.crate_name,
            concurrency: attributes.concurrency,
            prefetch: attributes.prefetch,
            retry: RetryOverride {
                max_attempts: attributes.max_attempts,
                delay_ms: attributes.retry_delay_ms,
                fixed_backoff: match attributes.backoff {
                    "fixed" => Some(true),
                    "exponential" => Some(false),
                    _ => None,
                },
            },
        }
    }
}

impl std::fmt::Debug for ListenerDescriptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerDescriptor")
            .field("rust_type", &(self.rust_type)())
            .field("event", &self.event)
            .field("event_type", &(self.event_type)())
            .field("durable", &self.durable)
            .field("attributes", &self.attributes)
            .finish_non_exhaustive()
    }
}

inventory::collect!(ListenerDescriptor);

/// One registered event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventInfo {
    /// Routing name.
    pub name: &'static str,
    /// Whether it is durable.
    pub durable: bool,
    /// The Rust type's path.
    pub rust_type: &'static str,
}

/// One registered listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListenerInfo {
    /// The listener name (last part of its queue name).
    pub name: &'static str,
    /// The Rust type's path.
    pub rust_type: &'static str,
    /// The event it handles; for a pattern listener, its pattern.
    pub event: &'static str,
    /// The binding pattern of a pattern listener (`Listener<RawEvent>`), e.g. `billing.#`.
    pub pattern: Option<&'static str>,
    /// The event's Rust type path.
    pub event_type: &'static str,
    /// Whether the event is durable.
    pub durable: bool,
    /// Competing or per-process.
    pub mode: ListenerMode,
    /// The crate that defines it: its snake case is the default service.
    pub crate_name: &'static str,
    /// Handler calls in flight at once (0: the builder's default).
    pub concurrency: u16,
    /// Deliveries buffered per consumer (0: the builder's default).
    pub prefetch: u16,
    /// What the listener's attribute says of its retry policy.
    pub retry: RetryOverride,
}

/// Retry settings from `#[event_listener(...)]`; what is unset comes from the builder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RetryOverride {
    /// `max_attempts = N` (0: unset).
    pub max_attempts: u16,
    /// `retry_delay_ms = N` (0: unset).
    pub delay_ms: u16,
    /// `backoff = "fixed"` (`Some(true)`) or `"exponential"` (`Some(false)`).
    pub fixed_backoff: Option<bool>,
}

impl RetryOverride {
    /// `default` with this listener's settings applied.
    pub fn apply(&self, default: crate::RetryPolicy) -> crate::RetryPolicy {
        let mut policy = default;
        if self.max_attempts > 0 {
            policy.max_attempts = u32::from(self.max_attempts);
        }
        if self.delay_ms > 0 {
            policy.first_delay = std::time::Duration::from_millis(u64::from(self.delay_ms));
        }
        match self.fixed_backoff {
            Some(true) => policy.backoff = crate::Backoff::Fixed,
            Some(false) if policy.backoff == crate::Backoff::Fixed => {
                policy.backoff = crate::Backoff::Exponential { max: std::time::Duration::from_secs(60) };
            }
            _ => {}
        }
        policy
    }
}

/// Every event and listener linked into this program, checked for clashes.
#[derive(Debug, Clone)]
pub struct Registry {
    events: Vec<EventInfo>,
    listeners: Vec<RegisteredListener>,
}

/// A listener's description with the descriptor that builds it.
#[derive(Clone)]
pub(crate) struct RegisteredListener {
    pub(crate) info: ListenerInfo,
    pub(crate) descriptor: &'static ListenerDescriptor,
}

impl std::fmt::Debug for RegisteredListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.info.fmt(f)
    }
}

impl Registry {
    /// Collects all registrations; invalid names and duplicate event names are errors
    /// naming the Rust types.
    pub fn collect() -> Result<Self, Error> {
        let mut events: Vec<EventInfo> = Vec::new();
        let mut by_name: HashMap<&str, &str> = HashMap::new();
        for event in inventory::iter::<EventDescriptor> {
            let rust_type = (event.rust_type)();
            naming::check_event_name(event.name).map_err(|reason| Error::InvalidName {
                kind: "event",
                name: event.name.to_owned(),
                rust_type: rust_type.to_owned(),
                reason: reason.to_string(),
            })?;
            if let Some(first) = by_name.insert(event.name, rust_type) {
                let (first, second) = ordered(first, rust_type);
                return Err(Error::DuplicateEvent { name: event.name.to_owned(), first, second });
            }
            events.push(EventInfo { name: event.name, durable: event.durable, rust_type });
        }
        events.sort_by_key(|event| event.name);

        let mut listeners: Vec<RegisteredListener> = inventory::iter::<ListenerDescriptor>
            .into_iter()
            .map(|descriptor| RegisteredListener { info: descriptor.info(), descriptor })
            .collect();
        for listener in &listeners {
            let info = &listener.info;
            naming::check_word(info.name).map_err(|reason| Error::InvalidName {
                kind: "listener",
                name: info.name.to_owned(),
                rust_type: info.rust_type.to_owned(),
                reason: reason.to_string(),
            })?;
            check_pattern(info, listener.descriptor.event.is_none())?;
        }
        listeners.sort_by_key(|listener| (listener.info.event, listener.info.name, listener.info.rust_type));
        Ok(Self { events, listeners })
    }

    /// The registered events, by name.
    pub fn events(&self) -> &[EventInfo] {
        &self.events
    }

    /// The registered listeners, by event and name.
    pub fn listeners(&self) -> impl ExactSizeIterator<Item = &ListenerInfo> {
        self.listeners.iter().map(|listener| &listener.info)
    }

    pub(crate) fn registered(&self) -> &[RegisteredListener] {
        &self.listeners
    }
}

/// Warns that a bus starts without a listener, naming the likely cause: none is linked
/// into this binary, or the builder's filter excluded them all.
pub(crate) fn warn_no_listeners() {
    match inventory::iter::<ListenerDescriptor>.into_iter().count() {
        0 => tracing::warn!(
            "no #[event_listener] is linked into this binary, so this bus only publishes; if it should \
             consume, check that the binary uses the crate that defines the listeners (a library's \
             listeners are linked only when the binary refers to that library, e.g. `use my_listeners as _;`)"
        ),
        linked => tracing::warn!(
            linked,
            "`.listeners(...)` excluded every one of the {linked} linked listener(s), so this bus only publishes"
        ),
    }
}

/// A `Listener<RawEvent>` needs a valid pattern, and only it may have one (the macro checks
/// literals; this covers what it cannot see, such as a type alias of `RawEvent`).
fn check_pattern(info: &ListenerInfo, raw: bool) -> Result<(), Error> {
    let invalid = |reason: String| Error::InvalidListenerConfig { listener: info.rust_type, event: info.event, reason };
    match (raw, info.pattern) {
        (true, Some(pattern)) => {
            naming::check_pattern(pattern).map_err(|reason| invalid(format!("pattern `{pattern}`: {reason}")))
        }
        (true, None) => Err(invalid("a `Listener<RawEvent>` needs `#[event_listener(pattern = \"...\")]`".into())),
        (false, Some(_)) => {
            Err(invalid("`pattern` is only for `Listener<RawEvent>`; a typed listener binds its event's name".into()))
        }
        (false, None) => Ok(()),
    }
}

/// Sorts two type names so error messages do not depend on link order.
pub(crate) fn ordered(a: &'static str, b: &'static str) -> (&'static str, &'static str) {
    if a <= b { (a, b) } else { (b, a) }
}

/// Builds the handler of every listener, each listener type once (shared by all its
/// `Listener` impls). When state is missing, every listener is still tried, so that the
/// error names every listener that cannot be built and every type each one lacks.
pub(crate) fn build_handlers<'a>(
    listeners: impl IntoIterator<Item = &'a RegisteredListener>,
    state: &State,
) -> Result<Vec<Arc<dyn ErasedHandler>>, Error> {
    let mut instances = Instances::default();
    let mut handlers = Vec::new();
    let mut missing: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for listener in listeners {
        let rust_type = listener.info.rust_type;
        if missing.iter().any(|(failed, _)| *failed == rust_type) {
            continue;
        }
        // Forget what earlier listeners' optional look-ups missed.
        state.take_misses();
        match (listener.descriptor.make_handler)(&mut instances, state) {
            Ok(handler) => handlers.push(handler),
            Err(error) => {
                let mut types = state.take_misses();
                if !types.contains(&error.type_name) {
                    types.push(error.type_name);
                }
                missing.push((rust_type, types));
            }
        }
    }
    if missing.is_empty() { Ok(handlers) } else { Err(Error::MissingState { missing }) }
}

/// Listener values built so far, one per Rust type, shared by all its `Listener` impls.
#[derive(Default)]
struct Instances {
    built: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl Instances {
    fn get_or_build<L: FromState>(&mut self, state: &State) -> Result<Arc<L>, MissingState> {
        let any = match self.built.entry(TypeId::of::<L>()) {
            Entry::Occupied(entry) => Arc::clone(entry.get()),
            Entry::Vacant(entry) => Arc::clone(entry.insert(Arc::new(L::from_state(state)?))),
        };
        Ok(any.downcast::<L>().unwrap_or_else(|_| unreachable!("instances are keyed by TypeId")))
    }
}

/// What a listener makes of one delivery's body.
pub(crate) enum Handling {
    /// The body does not decode as the listener's event.
    Undecodable(serde_json::Error),
    /// The listener's filter declined the event.
    Declined,
    /// The handler call, to be awaited.
    Run(BoxFuture<'static, Result<(), HandlerError>>),
}

/// A listener with its event type erased: decodes the body, asks the filter, then starts
/// the handler.
pub(crate) trait ErasedHandler: Send + Sync {
    fn call(&self, message: &Arc<Message>, ctx: Context) -> Handling;
}

struct TypedHandler<L, E> {
    listener: Arc<L>,
    event: PhantomData<fn() -> E>,
}

impl<L: Listener<E>, E: Receivable> ErasedHandler for TypedHandler<L, E> {
    fn call(&self, message: &Arc<Message>, ctx: Context) -> Handling {
        let event = match E::receive(message) {
            Ok(event) => event,
            Err(error) => return Handling::Undecodable(error),
        };
        if !self.listener.accepts(&event, &ctx) {
            return Handling::Declined;
        }
        let listener = Arc::clone(&self.listener);
        Handling::Run(Box::pin(async move { listener.on(event, &ctx).await }))
    }
}

fn make_handler<L: Listener<E> + FromState, E: Receivable>(
    instances: &mut Instances,
    state: &State,
) -> Result<Arc<dyn ErasedHandler>, MissingState> {
    let listener = instances.get_or_build::<L>(state)?;
    Ok(Arc::new(TypedHandler::<L, E> { listener, event: PhantomData }))
}
