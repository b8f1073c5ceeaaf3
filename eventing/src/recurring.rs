//! [`Recurring`] work that `#[recurring]` registers: what runs, and on which [`Schedule`].

use std::any::type_name;
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::transport::{BoxError, BoxFuture};
use crate::{Context, Error, FromState, HandlerError, MissingState, State, naming};

/// Work that runs once per period per service, however many processes run the service.
/// Register an implementation with [`#[recurring(every = "5s")]`](macro@crate::recurring) or
/// `#[recurring(cron = "0 */5 * * * *")]`; it is built at start like a listener
/// ([`Default`] or [`FromState`]).
///
/// ```
/// use eventing::{event, recurring, Context, HandlerError, Recurring};
/// # use serde::{Deserialize, Serialize};
/// # #[event] #[derive(Serialize, Deserialize)] struct Heartbeat { beat: u64 }
///
/// #[derive(Default)]
/// struct SendHeartbeat;
///
/// #[recurring(every = "5s")]
/// impl Recurring for SendHeartbeat {
///     async fn run(&self, ctx: &Context) -> Result<(), HandlerError> {
///         // Follow-ups carry the run's id, `send_heartbeat@<period start>`, as correlation id.
///         assert!(ctx.correlation_id().starts_with("send_heartbeat@"));
///         ctx.publish(&Heartbeat { beat: 1 }).await?;
///         Ok(())
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not recurring work",
    note = "implement `eventing::Recurring` for `{Self}` and register it with `#[eventing::recurring(every = \"...\")]`"
)]
pub trait Recurring: Send + Sync + 'static {
    /// Runs once for one period. An error is logged and the work runs again next period.
    fn run(&self, ctx: &Context) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// When recurring work runs: every fixed duration (periods aligned to the Unix epoch, so
/// every process agrees on them) or on a cron schedule (UTC, with seconds).
#[derive(Debug, Clone)]
pub enum Schedule {
    /// Every this long.
    Every(Duration),
    /// On a cron schedule: `sec min hour day-of-month month day-of-week [year]`.
    Cron(Box<cron::Schedule>),
}

/// Why a schedule could not be read: each names the text as written, and keeps the
/// parser's error as its source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// Not a duration in humantime syntax.
    #[error("`{text}` is not a duration: {source}")]
    NotADuration {
        /// The text.
        text: String,
        /// What the duration parser found.
        #[source]
        source: BoxError,
    },
    /// A period shorter than a millisecond.
    #[error("`{text}`: the period must be at least 1ms")]
    TooShort {
        /// The text.
        text: String,
    },
    /// Not a cron expression.
    #[error("`{text}` is not a cron expression (sec min hour day month weekday [year]): {source}")]
    NotCron {
        /// The text.
        text: String,
        /// What the cron parser found.
        #[source]
        source: BoxError,
    },
}

impl Schedule {
    /// A fixed period in humantime syntax (`5s`, `1m 30s`, `250ms`).
    ///
    /// ```
    /// use eventing::recurring::{Schedule, ScheduleError};
    /// assert!(Schedule::every("1m 30s").is_ok());
    /// assert!(matches!(Schedule::every("0s"), Err(ScheduleError::TooShort { .. })));
    /// assert!(matches!(Schedule::every("soon"), Err(ScheduleError::NotADuration { .. })));
    /// ```
    pub fn every(text: &str) -> Result<Self, ScheduleError> {
        let period = humantime::parse_duration(text)
            .map_err(|error| ScheduleError::NotADuration { text: text.to_owned(), source: error.into() })?;
        if period < Duration::from_millis(1) {
            return Err(ScheduleError::TooShort { text: text.to_owned() });
        }
        Ok(Self::Every(period))
    }

    /// A cron expression with seconds (`0 */5 * * * *`: every five minutes).
    ///
    /// ```
    /// use eventing::recurring::{Schedule, ScheduleError};
    /// assert!(Schedule::cron("0 */5 * * * *").is_ok());
    /// assert!(matches!(Schedule::cron("every monday"), Err(ScheduleError::NotCron { .. })));
    /// ```
    pub fn cron(text: &str) -> Result<Self, ScheduleError> {
        cron::Schedule::from_str(text)
            .map(|schedule| Self::Cron(Box::new(schedule)))
            .map_err(|error| ScheduleError::NotCron { text: text.to_owned(), source: error.into() })
    }

    /// The first period start strictly after `time`, if any.
    pub fn next_after(&self, time: SystemTime) -> Option<SystemTime> {
        match self {
            Self::Every(period) => {
                let since = time.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
                let period_nanos = period.as_nanos().max(1);
                let next = (since / period_nanos + 1) * period_nanos;
                let nanos = u64::try_from(next).ok()?;
                Some(UNIX_EPOCH + Duration::from_nanos(nanos))
            }
            Self::Cron(schedule) => {
                let after: chrono::DateTime<chrono::Utc> = time.into();
                schedule.after(&after).next().map(SystemTime::from)
            }
        }
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Every(period) => write!(f, "every {}", humantime::format_duration(*period)),
            Self::Cron(schedule) => write!(f, "cron {}", schedule.source()),
        }
    }
}

/// Registered by `#[recurring]`.
#[doc(hidden)]
pub struct RecurringDescriptor {
    attributes: RecurringAttributes,
    rust_type: fn() -> &'static str,
    make: fn(&State) -> Result<Arc<dyn ErasedRecurring>, MissingState>,
}

/// Attribute settings of one `#[recurring]`, filled in by the macro.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct RecurringAttributes {
    pub name: &'static str,
    pub crate_name: &'static str,
    /// Humantime period; empty when `cron` is given.
    pub every: &'static str,
    /// Cron expression; empty when `every` is given.
    pub cron: &'static str,
}

impl RecurringDescriptor {
    /// Describes recurring work `T`.
    pub const fn new<T: Recurring + FromState>(attributes: RecurringAttributes) -> Self {
        Self { attributes, rust_type: type_name::<T>, make: make::<T> }
    }
}

impl std::fmt::Debug for RecurringDescriptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecurringDescriptor")
            .field("rust_type", &(self.rust_type)())
            .field("attributes", &self.attributes)
            .finish_non_exhaustive()
    }
}

inventory::collect!(RecurringDescriptor);

fn make<T: Recurring + FromState>(state: &State) -> Result<Arc<dyn ErasedRecurring>, MissingState> {
    Ok(Arc::new(T::from_state(state)?))
}

/// A recurring item with its type erased.
pub(crate) trait ErasedRecurring: Send + Sync + 'static {
    fn run(self: Arc<Self>, ctx: Context) -> BoxFuture<'static, Result<(), HandlerError>>;
}

impl<T: Recurring> ErasedRecurring for T {
    fn run(self: Arc<Self>, ctx: Context) -> BoxFuture<'static, Result<(), HandlerError>> {
        Box::pin(async move { Recurring::run(&*self, &ctx).await })
    }
}

/// One registered recurring item.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RecurringInfo {
    /// Its name (`<service>.recurring.<name>` is its lock).
    pub name: &'static str,
    /// The Rust type's path.
    pub rust_type: &'static str,
    /// The crate that defines it: its snake case is the default service.
    pub crate_name: &'static str,
    /// The schedule its attribute gives.
    pub schedule: Schedule,
}

/// A registered item with the descriptor that builds it.
#[derive(Clone)]
pub(crate) struct RegisteredRecurring {
    pub(crate) info: RecurringInfo,
    pub(crate) descriptor: &'static RecurringDescriptor,
}

impl RegisteredRecurring {
    pub(crate) fn build(&self, state: &State) -> Result<Arc<dyn ErasedRecurring>, MissingState> {
        (self.descriptor.make)(state)
    }
}

/// Every `#[recurring]` linked into this program, by name; bad names and duplicates are errors.
pub(crate) fn collect() -> Result<Vec<RegisteredRecurring>, Error> {
    let mut items: Vec<RegisteredRecurring> = Vec::new();
    for descriptor in inventory::iter::<RecurringDescriptor> {
        let attributes = descriptor.attributes;
        let rust_type = (descriptor.rust_type)();
        let invalid = |reason: &dyn std::fmt::Display| Error::InvalidName {
            kind: "recurring item",
            name: attributes.name.to_owned(),
            rust_type: rust_type.to_owned(),
            reason: reason.to_string(),
        };
        naming::check_word(attributes.name).map_err(|reason| invalid(&reason))?;
        let schedule = if attributes.cron.is_empty() {
            Schedule::every(attributes.every)
        } else {
            Schedule::cron(attributes.cron)
        }
        .map_err(|reason| invalid(&reason))?;
        if let Some(first) = items.iter().find(|item| item.info.name == attributes.name) {
            let (first, second) = crate::registry::ordered(first.info.rust_type, rust_type);
            return Err(Error::InvalidName {
                kind: "recurring item",
                name: attributes.name.to_owned(),
                rust_type: format!("{first} and {second}"),
                reason: "two recurring items share this name; rename one with #[recurring(name = \"...\")]".into(),
            });
        }
        items.push(RegisteredRecurring {
            info: RecurringInfo { name: attributes.name, rust_type, crate_name: attributes.crate_name, schedule },
            descriptor,
        });
    }
    items.sort_by_key(|item| item.info.name);
    Ok(items)
}

/// Every registered recurring item (for tools such as `eventing topology`).
pub fn registered() -> Result<Vec<RecurringInfo>, Error> {
    Ok(collect()?.into_iter().map(|item| item.info).collect())
}
