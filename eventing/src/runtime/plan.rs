//! From registrations and configuration to queue names, topology and listener settings.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::naming::NameError;
use crate::registry::{RegisteredListener, ordered};
use crate::transport::{BindingSpec, QueueLifetime, QueueRole, QueueSpec, Topology};
use crate::{Error, ListenerMode, Registry, RetryPolicy, naming};

/// Configuration that decides names and limits.
pub(crate) struct PlanConfig<'a> {
    pub(crate) exchange: &'a str,
    pub(crate) service: Option<&'a str>,
    pub(crate) process_id: &'a str,
    pub(crate) concurrency: u16,
    pub(crate) prefetch: Option<u16>,
    pub(crate) idle_queue_expiry: Duration,
    pub(crate) retry: RetryPolicy,
    pub(crate) include: &'a dyn Fn(&crate::ListenerInfo) -> bool,
    /// What `eventing.toml` says per listener (wins over attributes and builder).
    pub(crate) file: &'a crate::config::FileConfig,
}

/// One listener, ready to consume.
pub(crate) struct PlannedListener {
    pub(crate) registered: RegisteredListener,
    pub(crate) queue: QueueSpec,
    pub(crate) dead_letter: QueueSpec,
    pub(crate) concurrency: u16,
    pub(crate) prefetch: u16,
    pub(crate) retry: RetryPolicy,
    /// The delay tier of each wait of the policy: retries are published to the exchange of
    /// this name with the listener's queue as routing key.
    pub(crate) retry_tiers: Vec<(Duration, String)>,
}

pub(crate) struct Plan {
    /// The service the bus runs as (connection name, `app_id`): the configured one, else
    /// the one its listeners' crate gives them all; `None` when there are no listeners or
    /// they come from several crates.
    pub(crate) service: Option<String>,
    pub(crate) topology: Topology,
    pub(crate) listeners: Vec<PlannedListener>,
    /// Every registered event's name and durability, for publishing by name.
    pub(crate) events: HashMap<&'static str, bool>,
}

pub(crate) fn plan(registry: &Registry, config: &PlanConfig<'_>) -> Result<Plan, Error> {
    if let Some(service) = config.service {
        check(naming::check_word(service), "service", service, "the builder or EVENTING_SERVICE")?;
    }
    check(
        naming::check_word(config.process_id),
        "process id",
        config.process_id,
        "the builder or EVENTING_PROCESS_ID",
    )?;
    check(naming::check_event_name(config.exchange), "exchange", config.exchange, "the builder or EVENTING_EXCHANGE")?;

    let mut topology = Topology { exchanges: vec![config.exchange.to_owned()], ..Topology::default() };
    // The delay tiers of every service, declared once whatever number of listeners use them.
    // By service, then durable before transient, then shortest wait first.
    let mut tiers: BTreeMap<(String, bool, Duration), QueueSpec> = BTreeMap::new();
    let mut listeners = Vec::new();
    let mut owners: HashMap<String, &'static str> = HashMap::new();
    let mut services: Vec<String> = Vec::new();
    for registered in registry.registered() {
        let info = &registered.info;
        if !(config.include)(info) {
            continue;
        }
        let file = config.file.listener(info.name);
        if file.enabled == Some(false) {
            tracing::info!(listener = info.name, event = info.event, "disabled by the configuration file");
            continue;
        }
        let service = match config.service {
            Some(service) => service.to_owned(),
            None => {
                let service = naming::service_from_crate(info.crate_name);
                check(naming::check_word(&service), "service", &service, info.rust_type)?;
                service
            }
        };
        if !services.contains(&service) {
            services.push(service.clone());
        }
        let (shared_name, per_process_name, dead_letter_name) = match info.pattern {
            Some(_) => (
                naming::pattern_listener_queue(&service, info.name),
                naming::pattern_per_process_queue(&service, info.name, config.process_id),
                naming::pattern_dead_letter_queue(&service, info.name),
            ),
            None => (
                naming::listener_queue(&service, info.event, info.name),
                naming::per_process_queue(&service, info.event, info.name, config.process_id),
                naming::dead_letter_queue(&service, info.event, info.name),
            ),
        };
        // Every name a listener owns, so no two listeners share a queue, whatever their kind.
        for owned in [&shared_name, &dead_letter_name] {
            if let Some(first) = owners.insert(owned.clone(), info.rust_type) {
                let (first, second) = ordered(first, info.rust_type);
                return Err(Error::DuplicateListener {
                    listener: info.name.to_owned(),
                    event: info.event.to_owned(),
                    queue: owned.clone(),
                    first,
                    second,
                });
            }
        }
        let queue = match (info.mode, info.durable || info.pattern.is_some()) {
            (ListenerMode::PerProcess, _) => {
                QueueSpec { name: per_process_name, lifetime: QueueLifetime::Exclusive, role: QueueRole::Listener }
            }
            // A pattern queue takes durable events too: it lives as they do.
            (ListenerMode::Competing, true) => {
                QueueSpec { name: shared_name, lifetime: QueueLifetime::Durable, role: QueueRole::Listener }
            }
            (ListenerMode::Competing, false) => QueueSpec {
                name: shared_name,
                lifetime: QueueLifetime::Expiring { idle: config.idle_queue_expiry },
                role: QueueRole::Listener,
            },
        };
        let dead_letter =
            QueueSpec { name: dead_letter_name, lifetime: QueueLifetime::Durable, role: QueueRole::DeadLetter };
        let concurrency = if info.concurrency == 0 { config.concurrency } else { info.concurrency };
        let concurrency = file.concurrency.unwrap_or(concurrency);
        if concurrency == 0 {
            return Err(Error::InvalidListenerConfig {
                listener: info.rust_type,
                event: info.event,
                reason: "concurrency must be at least 1".into(),
            });
        }
        let prefetch = match (file.prefetch, info.prefetch, config.prefetch) {
            (Some(prefetch), _, _) => prefetch,
            (None, 0, None) => concurrency.saturating_mul(2),
            (None, 0, Some(prefetch)) => prefetch,
            (None, prefetch, _) => prefetch,
        }
        .max(concurrency);
        topology.bindings.push(BindingSpec {
            exchange: config.exchange.to_owned(),
            pattern: file.pattern.clone().unwrap_or_else(|| info.event.to_owned()),
            queue: queue.name.clone(),
        });
        let retry = file.apply(info.retry.apply(config.retry));
        // A queue that may be gone when a retry's wait ends has tiers of its own, which drop
        // such a retry: in the tiers of durable queues RabbitMQ would keep it, retrying, and
        // stop moving any other retry of the service once it holds 32 of them.
        let transient = queue.lifetime != QueueLifetime::Durable;
        let retry_tiers: Vec<(Duration, String)> = retry
            .delays()
            .into_iter()
            .map(|delay| {
                let tier = if transient {
                    naming::transient_delay_tier(&service, delay)
                } else {
                    naming::delay_tier(&service, delay)
                };
                (delay, tier)
            })
            .collect();
        for name in [&queue.name, &dead_letter.name].into_iter().chain(retry_tiers.iter().map(|(_, name)| name)) {
            check(naming::check_length(name), "queue", name, info.rust_type)?;
        }
        for (delay, tier) in &retry_tiers {
            tiers.entry((service.clone(), transient, *delay)).or_insert_with(|| QueueSpec {
                name: tier.clone(),
                lifetime: QueueLifetime::Durable,
                role: QueueRole::Delay { delay: *delay, transient },
            });
        }
        topology.queues.push(queue.clone());
        topology.queues.push(dead_letter.clone());
        listeners.push(PlannedListener {
            registered: registered.clone(),
            queue,
            dead_letter,
            concurrency,
            prefetch,
            retry,
            retry_tiers,
        });
    }
    // A listener whose queue is named like a tier (a per-process listener `delay` of a
    // process `1000ms`) would take the retries of the whole service.
    for listener in &listeners {
        for name in [&listener.queue.name, &listener.dead_letter.name] {
            if tiers.values().any(|tier| tier.name == *name) {
                return Err(Error::InvalidName {
                    kind: "queue",
                    name: name.clone(),
                    rust_type: listener.registered.info.rust_type.to_owned(),
                    reason: "it is the name of the service's delay tier for retries; rename the listener".into(),
                });
            }
        }
    }
    // Tiers first: they belong to no listener (see `Topology::queues`).
    let listener_queues = std::mem::take(&mut topology.queues);
    for tier in tiers.into_values() {
        topology.exchanges.push(tier.name.clone());
        topology.bindings.push(BindingSpec {
            exchange: tier.name.clone(),
            pattern: "#".into(),
            queue: tier.name.clone(),
        });
        topology.queues.push(tier);
    }
    topology.queues.extend(listener_queues);
    let service = match (config.service, services.as_slice()) {
        (Some(service), _) => Some(service.to_owned()),
        (None, [service]) => Some(service.clone()),
        (None, _) => None,
    };
    let events = registry.events().iter().map(|event| (event.name, event.durable)).collect();
    Ok(Plan { service, topology, listeners, events })
}

fn check(result: Result<(), NameError>, kind: &'static str, name: &str, origin: &str) -> Result<(), Error> {
    result.map_err(|reason| Error::InvalidName {
        kind,
        name: name.to_owned(),
        rust_type: origin.to_owned(),
        reason: reason.to_string(),
    })
}
