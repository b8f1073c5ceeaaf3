//! Deploy-step commands: `config check`, `topology declare`, `topology --format json|mermaid`.

use std::io::Write;

use eventing::transport::{QueueLifetime, QueueRole, Topology};
use eventing::{Backoff, ListenerSettings, RecurringSettings};

/// How `eventing topology` prints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// One line per exchange, queue and binding.
    #[default]
    Text,
    /// One JSON document, for scripts.
    Json,
    /// A Mermaid flowchart: exchanges → bindings → queues → listeners, delay tiers and
    /// dead-letter queues, recurring items.
    Mermaid,
}

/// `eventing config check`: the file in effect and every listener's and recurring item's
/// resolved settings.
pub(crate) fn print_settings(
    path: Option<&std::path::Path>,
    listeners: &[ListenerSettings],
    recurring: &[RecurringSettings],
    out: &mut (dyn Write + Send),
) -> std::io::Result<()> {
    match path {
        Some(path) => writeln!(out, "config {}: ok", path.display())?,
        None => writeln!(out, "config: none (no --config, EVENTING_CONFIG or ./eventing.toml); built-in settings")?,
    }
    for listener in listeners {
        let info = &listener.info;
        if !listener.enabled {
            writeln!(out, "listener {} ({}) on `{}`: disabled", info.name, info.rust_type, listener.binding)?;
            continue;
        }
        writeln!(
            out,
            "listener {} ({}) on `{}`: queue {}, concurrency {}, prefetch {}, max_attempts {}, retry_delay {}, backoff {}",
            info.name,
            info.rust_type,
            listener.binding,
            listener.queue.as_deref().unwrap_or("-"),
            listener.concurrency,
            listener.prefetch,
            listener.retry.max_attempts,
            humantime(listener.retry.first_delay),
            backoff(listener.retry.backoff),
        )?;
    }
    for item in recurring {
        let state = if item.enabled { String::new() } else { ", disabled".into() };
        writeln!(out, "recurring {} ({}): {}, lock {}{state}", item.name, item.rust_type, item.schedule, item.lock)?;
    }
    Ok(())
}

fn humantime(duration: std::time::Duration) -> String {
    let millis = duration.as_millis();
    if millis.is_multiple_of(1000) { format!("{}s", millis / 1000) } else { format!("{millis}ms") }
}

fn backoff(backoff: Backoff) -> &'static str {
    match backoff {
        Backoff::Fixed => "fixed",
        Backoff::Exponential { .. } => "exponential",
        // `Backoff` is non-exhaustive: a kind this command does not know yet.
        _ => "other",
    }
}

fn lifetime(queue: QueueLifetime) -> String {
    match queue {
        QueueLifetime::Durable => "durable".into(),
        QueueLifetime::Expiring { idle } => format!("expiring after {}s idle", idle.as_secs()),
        QueueLifetime::Exclusive => "exclusive".into(),
    }
}

/// The topology with listeners and recurring items as one JSON document.
pub(crate) fn to_json(
    topology: &Topology,
    listeners: &[ListenerSettings],
    recurring: &[RecurringSettings],
) -> serde_json::Value {
    let queues: Vec<serde_json::Value> = topology
        .queues
        .iter()
        .map(|queue| {
            let mut value = serde_json::json!({ "name": queue.name, "lifetime": lifetime(queue.lifetime) });
            match &queue.role {
                QueueRole::Listener => value["role"] = "listener".into(),
                QueueRole::DeadLetter => value["role"] = "dead_letter".into(),
                QueueRole::Delay { delay, transient } => {
                    value["role"] = "delay".into();
                    value["delay_ms"] = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX).into();
                    value["transient"] = (*transient).into();
                }
            }
            value
        })
        .collect();
    let bindings: Vec<serde_json::Value> = topology
        .bindings
        .iter()
        .map(|binding| serde_json::json!({ "exchange": binding.exchange, "pattern": binding.pattern, "queue": binding.queue }))
        .collect();
    let listeners: Vec<serde_json::Value> = listeners
        .iter()
        .map(|listener| {
            serde_json::json!({
                "name": listener.info.name,
                "rust_type": listener.info.rust_type,
                "binding": listener.binding,
                "queue": listener.queue,
                "enabled": listener.enabled,
                "concurrency": listener.concurrency,
                "prefetch": listener.prefetch,
                "max_attempts": listener.retry.max_attempts,
                "retry_delay_ms": u64::try_from(listener.retry.first_delay.as_millis()).unwrap_or(u64::MAX),
                "backoff": backoff(listener.retry.backoff),
                "retry_tiers": listener.retry_tiers,
            })
        })
        .collect();
    let recurring: Vec<serde_json::Value> = recurring
        .iter()
        .map(|item| {
            serde_json::json!({
                "name": item.name,
                "rust_type": item.rust_type,
                "schedule": item.schedule.to_string(),
                "lock": item.lock,
                "enabled": item.enabled,
            })
        })
        .collect();
    serde_json::json!({
        "exchanges": topology.exchanges,
        "queues": queues,
        "bindings": bindings,
        "listeners": listeners,
        "recurring": recurring,
    })
}

/// The topology as a Mermaid flowchart.
pub(crate) fn to_mermaid(
    topology: &Topology,
    listeners: &[ListenerSettings],
    recurring: &[RecurringSettings],
    out: &mut (dyn Write + Send),
) -> std::io::Result<()> {
    let id = |prefix: &str, index: usize| format!("{prefix}{index}");
    let queue_id = |name: &str| topology.queues.iter().position(|queue| queue.name == name).map(|index| id("q", index));
    writeln!(out, "flowchart LR")?;
    for (index, exchange) in topology.exchanges.iter().enumerate() {
        writeln!(out, "    {}{{{{\"exchange {exchange}\"}}}}", id("x", index))?;
    }
    for (index, queue) in topology.queues.iter().enumerate() {
        let shape = match queue.role {
            QueueRole::Listener => format!("[\"{}\"]", queue.name),
            QueueRole::DeadLetter => format!("[(\"{}\")]", queue.name),
            QueueRole::Delay { .. } => format!("[/\"{}\"/]", queue.name),
        };
        writeln!(out, "    {}{shape}", id("q", index))?;
    }
    for binding in &topology.bindings {
        let exchange = topology.exchanges.iter().position(|name| *name == binding.exchange).unwrap_or(0);
        if let Some(queue) = queue_id(&binding.queue) {
            writeln!(out, "    {} -- \"{}\" --> {queue}", id("x", exchange), binding.pattern)?;
        }
    }
    for (index, listener) in listeners.iter().enumerate().filter(|(_, listener)| listener.enabled) {
        let Some(queue) = listener.queue.as_deref().and_then(queue_id) else { continue };
        writeln!(out, "    {}([\"listener {}\"])", id("l", index), listener.info.name)?;
        writeln!(out, "    {queue} --> {}", id("l", index))?;
        // A retry waits in the service's tier, then comes back to this queue only.
        for (delay, tier) in listener.retry.delays().into_iter().zip(&listener.retry_tiers) {
            let Some(tier) = queue_id(tier) else { continue };
            writeln!(out, "    {} -. \"retry\" .-> {tier}", id("l", index))?;
            writeln!(out, "    {tier} -. \"after {}\" .-> {queue}", humantime(delay))?;
        }
    }
    let mut listener_queue: Option<String> = None;
    for queue in &topology.queues {
        let Some(this) = queue_id(&queue.name) else { continue };
        match &queue.role {
            QueueRole::Listener => listener_queue = Some(this),
            QueueRole::DeadLetter => {
                if let Some(listener) = &listener_queue {
                    writeln!(out, "    {listener} -. \"failed\" .-> {this}")?;
                }
            }
            QueueRole::Delay { .. } => {}
        }
    }
    for (index, item) in recurring.iter().enumerate() {
        let state = if item.enabled { "" } else { ", disabled" };
        writeln!(out, "    {}[[\"recurring {}: {}{state}\"]]", id("r", index), item.name, item.schedule)?;
        if !topology.exchanges.is_empty() {
            writeln!(out, "    {} -. \"publishes\" .-> {}", id("r", index), id("x", 0))?;
        }
    }
    Ok(())
}
