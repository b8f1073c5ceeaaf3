//! The builder's side of `eventing.toml` and recurring work: which file, the resolved
//! settings of every listener and recurring item (for `eventing config check`), and the
//! recurring items to schedule.

use std::path::PathBuf;
use std::sync::Arc;

use super::schedule::{PlannedRecurring, default_service, lock_name};
use super::{Builder, Settings, env, plan};
use crate::config::FileConfig;
use crate::recurring::{RegisteredRecurring, Schedule};
use crate::{Error, ListenerInfo, Registry, RetryPolicy, State};

/// A recurring item with its settings, before it is built.
pub(crate) struct RecurringPlan {
    item: RegisteredRecurring,
    lock: String,
    schedule: Schedule,
}

/// One listener's settings after defaults, attributes, builder and file.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ListenerSettings {
    /// The listener's registration.
    pub info: ListenerInfo,
    /// Whether it runs (`enabled = false` in the file, or excluded by
    /// [`Builder::listeners`], stops it).
    pub enabled: bool,
    /// The queue it consumes (`None` when disabled).
    pub queue: Option<String>,
    /// The binding pattern (its event's name, or the pattern of a pattern listener).
    pub binding: String,
    /// Handler calls in flight at once.
    pub concurrency: u16,
    /// Deliveries buffered.
    pub prefetch: u16,
    /// How failures are retried.
    pub retry: RetryPolicy,
    /// The delay tiers its retries wait in, one per wait of `retry`, shortest first (empty
    /// when disabled).
    pub retry_tiers: Vec<String>,
}

/// One recurring item's settings after attribute and file.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RecurringSettings {
    /// Its name.
    pub name: &'static str,
    /// The Rust type.
    pub rust_type: &'static str,
    /// Whether it runs.
    pub enabled: bool,
    /// When it runs.
    pub schedule: Schedule,
    /// The lock that elects its runner (`<service>.recurring.<name>`).
    pub lock: String,
}

impl Builder {
    /// Reads settings from this `eventing.toml` (default: `EVENTING_CONFIG`, else
    /// `./eventing.toml` when present). A mistake in it is a start error naming the file,
    /// line and key; see the README for what it holds and what wins over what.
    #[must_use]
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config_file = Some(path.into());
        self
    }

    /// Whether this bus runs the `#[recurring]` items linked into the program (default:
    /// true). A bus that only publishes (a CLI, a script) turns them off.
    #[must_use]
    pub fn recurring(mut self, run: bool) -> Self {
        self.run_recurring = run;
        self
    }

    /// The configuration file in effect, read and checked (empty when there is none).
    pub(super) fn load_config(&self) -> Result<FileConfig, Error> {
        match crate::config::locate(self.config_file.as_deref(), env) {
            Some((path, _)) => {
                let file = FileConfig::load(&path)?;
                tracing::debug!(path = %path.display(), "read the configuration file");
                Ok(file)
            }
            None => Ok(FileConfig::default()),
        }
    }

    /// The path of the configuration file in effect, if any.
    pub fn config_path(&self) -> Option<PathBuf> {
        crate::config::locate(self.config_file.as_deref(), env).map(|(path, _)| path)
    }

    /// Every registered listener with the settings it would run with: checks the
    /// configuration file against the registry (for `eventing config check`).
    pub fn listener_settings(&self) -> Result<Vec<ListenerSettings>, Error> {
        let file = self.load_config()?;
        let settings = self.settings(&file);
        let planned = self.plan(&settings, &file)?;
        let registry = Registry::collect()?;
        let mut all = Vec::new();
        for info in registry.listeners() {
            let found = planned.listeners.iter().find(|listener| listener.registered.info == *info);
            let binding = file.listener(info.name).pattern.unwrap_or_else(|| info.event.to_owned());
            all.push(match found {
                Some(listener) => ListenerSettings {
                    info: *info,
                    enabled: true,
                    queue: Some(listener.queue.name.clone()),
                    binding,
                    concurrency: listener.concurrency,
                    prefetch: listener.prefetch,
                    retry: listener.retry,
                    retry_tiers: listener.retry_tiers.iter().map(|(_, tier)| tier.clone()).collect(),
                },
                None => ListenerSettings {
                    info: *info,
                    enabled: false,
                    queue: None,
                    binding,
                    concurrency: 0,
                    prefetch: 0,
                    retry: file.listener(info.name).apply(info.retry.apply(self.retry)),
                    retry_tiers: Vec::new(),
                },
            });
        }
        Ok(all)
    }

    /// Every registered recurring item with the settings it would run with.
    pub fn recurring_settings(&self) -> Result<Vec<RecurringSettings>, Error> {
        let file = self.load_config()?;
        let settings = self.settings(&file);
        let registry = Registry::collect()?;
        check_file_names(&file, &registry)?;
        let mut all = Vec::new();
        for item in crate::recurring::collect()? {
            let setting = file.recurring(item.info.name);
            all.push(RecurringSettings {
                name: item.info.name,
                rust_type: item.info.rust_type,
                enabled: setting.enabled != Some(false),
                schedule: setting.schedule.unwrap_or_else(|| item.info.schedule.clone()),
                lock: lock_of(&settings, &item),
            });
        }
        Ok(all)
    }

    /// The recurring items to run, with their schedules and locks.
    pub(super) fn plan_recurring(
        &self,
        settings: &Settings,
        file: &FileConfig,
        _plan: &plan::Plan,
    ) -> Result<Vec<RecurringPlan>, Error> {
        let mut planned = Vec::new();
        if !self.run_recurring {
            return Ok(planned);
        }
        for item in crate::recurring::collect()? {
            let setting = file.recurring(item.info.name);
            if setting.enabled == Some(false) {
                tracing::info!(recurring = item.info.name, "disabled by the configuration file");
                continue;
            }
            let schedule = setting.schedule.unwrap_or_else(|| item.info.schedule.clone());
            let lock = lock_of(settings, &item);
            planned.push(RecurringPlan { item, lock, schedule });
        }
        Ok(planned)
    }
}

fn lock_of(settings: &Settings, item: &RegisteredRecurring) -> String {
    let service = settings.service.clone().unwrap_or_else(|| default_service(item.info.crate_name));
    lock_name(&service, item.info.name)
}

/// Every `[listeners.<name>]` and `[recurring.<name>]` of the file names something registered.
pub(super) fn check_file_names(file: &FileConfig, registry: &Registry) -> Result<(), Error> {
    let listeners: Vec<(&str, bool)> = registry.listeners().map(|info| (info.name, info.pattern.is_some())).collect();
    let recurring: Vec<&str> = crate::recurring::collect()?.iter().map(|item| item.info.name).collect();
    file.check_names(&listeners, &recurring)
}

/// Builds every recurring item from state; names every one that cannot be built.
pub(super) fn build_recurring(plans: Vec<RecurringPlan>, state: &State) -> Result<Vec<PlannedRecurring>, Error> {
    let mut built = Vec::new();
    let mut missing: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for plan in plans {
        state.take_misses();
        match plan.item.build(state) {
            Ok(work) => built.push(PlannedRecurring {
                name: plan.item.info.name,
                rust_type: plan.item.info.rust_type,
                lock: plan.lock,
                schedule: plan.schedule,
                work: Arc::clone(&work),
            }),
            Err(error) => {
                let mut types = state.take_misses();
                if !types.contains(&error.type_name) {
                    types.push(error.type_name);
                }
                missing.push((plan.item.info.rust_type, types));
            }
        }
    }
    if missing.is_empty() { Ok(built) } else { Err(Error::MissingState { missing }) }
}
