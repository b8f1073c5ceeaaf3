//! What a [`Builder`] would run, named and resolved without connecting: the input of the
//! AsyncAPI document ([`crate::asyncapi`]).

use super::{Builder, env, requests};
use crate::recurring::Schedule;
use crate::request::RequestDescriptor;
use crate::transport::QueueSpec;
use crate::{EventInfo, ListenerInfo, Registry, RetryPolicy, naming};

/// Everything the registry and the builder's settings say about a service.
pub(crate) struct Description {
    /// The service the bus runs as (`app_id`).
    pub(crate) service: String,
    /// The exchange everything is published to.
    pub(crate) exchange: String,
    /// This process's id, the last part of per-process queue names.
    pub(crate) process_id: String,
    /// The URL the bus would connect to; `None` when the builder was given a transport.
    pub(crate) url: Option<String>,
    pub(crate) events: Vec<EventInfo>,
    /// The listeners that would run (enabled and included).
    pub(crate) listeners: Vec<DescribedListener>,
    pub(crate) requests: Vec<DescribedRequest>,
    pub(crate) recurring: Vec<DescribedRecurring>,
}

/// One listener that would run.
pub(crate) struct DescribedListener {
    pub(crate) info: ListenerInfo,
    /// Its binding: the event name, or the pattern (the configuration file's, if it rebinds it).
    pub(crate) binding: String,
    pub(crate) queue: QueueSpec,
    pub(crate) dead_letter: QueueSpec,
    pub(crate) retry: RetryPolicy,
    /// The delay tiers its retries wait in.
    pub(crate) retry_tiers: Vec<String>,
}

/// One registered request, and its handler in this binary if there is one.
pub(crate) struct DescribedRequest {
    pub(crate) descriptor: &'static RequestDescriptor,
    /// The Rust type of the handler that would serve it here.
    pub(crate) handler: Option<&'static str>,
}

/// One recurring item that would run.
pub(crate) struct DescribedRecurring {
    pub(crate) name: &'static str,
    pub(crate) rust_type: &'static str,
    pub(crate) schedule: Schedule,
    /// The exclusive queue whose holder runs it.
    pub(crate) lock: String,
}

impl Builder {
    /// The registry as this builder would run it: names, queues, bindings, requests and
    /// recurring items, after attributes, builder, file and environment.
    pub(crate) fn describe(&self) -> Result<Description, crate::Error> {
        let file = self.load_config()?;
        let settings = self.settings(&file);
        let plan = self.plan(&settings, &file)?;
        let registry = Registry::collect()?;
        let request_plan = requests::RequestPlan::collect(&self.include)?;
        let mut requests: Vec<DescribedRequest> = inventory::iter::<RequestDescriptor>
            .into_iter()
            .map(|descriptor| DescribedRequest { descriptor, handler: request_plan.handler_of(descriptor.name) })
            .collect();
        requests.sort_by_key(|request| request.descriptor.name);
        let listeners = plan
            .listeners
            .iter()
            .map(|listener| DescribedListener {
                info: listener.registered.info,
                binding: file.listener(listener.registered.info.name).pattern.unwrap_or_else(|| {
                    listener.registered.info.pattern.unwrap_or(listener.registered.info.event).to_owned()
                }),
                queue: listener.queue.clone(),
                dead_letter: listener.dead_letter.clone(),
                retry: listener.retry,
                retry_tiers: listener.retry_tiers.iter().map(|(_, name)| name.clone()).collect(),
            })
            .collect();
        let recurring = self
            .recurring_settings()?
            .into_iter()
            .filter(|item| item.enabled)
            .map(|item| DescribedRecurring {
                name: item.name,
                rust_type: item.rust_type,
                schedule: item.schedule,
                lock: item.lock,
            })
            .collect();
        let url = match self.transport {
            Some(_) => None,
            None => Some(
                self.url.clone().or_else(|| env("EVENTING_URL")).or(file.url).unwrap_or_else(|| "memory://".into()),
            ),
        };
        Ok(Description {
            service: plan.service.unwrap_or_else(naming::service_from_executable),
            exchange: settings.exchange,
            process_id: settings.process_id,
            url,
            events: registry.events().to_vec(),
            listeners,
            requests,
            recurring,
        })
    }
}
