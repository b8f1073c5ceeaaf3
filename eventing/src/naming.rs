//! Names on the wire: validation, queue names, the default service and process id.
//!
//! | thing | name |
//! |---|---|
//! | routing key | `<event name>` |
//! | listener queue | `<service>.<event name>.<listener name>` |
//! | per-process queue | `<service>.<event name>.<listener name>.<process id>` |
//! | dead-letter queue | `<service>.<event name>.<listener name>.dead_letter` |
//! | delay tier (one per wait, shared by the service's durable queues) | `<service>.delay.<ms>ms` |
//! | delay tier of the service's transient queues | `<service>.delay.<ms>ms.transient` |
//!
//! A delay tier is a queue and an exchange of the same name. Before the tiers were shared,
//! each listener queue had retry queues of its own, `<listener queue>.retry.<ms>ms`
//! ([`retry_queue`]).

use std::sync::atomic::{AtomicUsize, Ordering};

use heck::ToSnakeCase;

/// The exchange used when none is configured.
pub const DEFAULT_EXCHANGE: &str = "eventing";

/// Suffix of dead-letter queues.
pub const DEAD_LETTER_SUFFIX: &str = "dead_letter";

/// Why a name cannot be used on the wire (from the `check_*` functions of this module).
/// The messages read as the end of a sentence about the name: "invalid event name `a..b`:
/// it has an empty dot-separated word".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("it is empty")]
    Empty,
    /// The pattern is empty.
    #[error("it is empty; `#` matches every event")]
    EmptyPattern,
    /// Two dots in a row, or a dot at either end.
    #[error("it has an empty dot-separated word")]
    EmptyWord,
    /// Longer than [`MAX_NAME_BYTES`].
    #[error("it is {len} bytes long; at most {MAX_NAME_BYTES} fit AMQP's short strings")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// A wildcard in a name (they are for binding patterns).
    #[error("wildcards `*` and `#` are only for bindings")]
    Wildcard,
    /// A wildcard inside a word of a pattern (`billing.inv*`).
    #[error("`{word}`: `*` and `#` stand alone between dots (`billing.*`, `billing.#`)")]
    MisplacedWildcard {
        /// The word.
        word: String,
    },
    /// White space in the name.
    #[error("it contains white space")]
    WhiteSpace,
    /// Another character than ASCII letters, digits, `_` and `-`.
    #[error("`{character}` is not allowed (use ASCII letters, digits, `_` and `-`)")]
    InvalidCharacter {
        /// The first such character.
        character: char,
    },
}

/// Checks an event name: dot-separated words of ASCII letters, digits, `_` and `-`.
///
/// ```
/// use eventing::naming::{NameError, check_event_name};
/// assert!(check_event_name("billing.invoice_paid").is_ok());
/// assert_eq!(check_event_name("billing.*"), Err(NameError::Wildcard));
/// ```
pub fn check_event_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    check_length(name)?;
    for word in name.split('.') {
        if word.is_empty() {
            return Err(NameError::EmptyWord);
        }
        check_word(word)?;
    }
    Ok(())
}

/// Checks a binding pattern in AMQP topic syntax: dot-separated words, each `*` (exactly one
/// word), `#` (zero or more words) or a word of ASCII letters, digits, `_` and `-`.
///
/// ```
/// use eventing::naming::{NameError, check_pattern};
/// assert!(check_pattern("billing.#").is_ok());
/// assert!(check_pattern("pylabs.event.crm.*.cancel.#").is_ok());
/// assert!(check_pattern("#").is_ok());
/// assert!(matches!(check_pattern("billing.inv*"), Err(NameError::MisplacedWildcard { .. })));
/// assert_eq!(check_pattern("billing..paid"), Err(NameError::EmptyWord));
/// ```
pub fn check_pattern(pattern: &str) -> Result<(), NameError> {
    if pattern.is_empty() {
        return Err(NameError::EmptyPattern);
    }
    check_length(pattern)?;
    for word in pattern.split('.') {
        match word {
            "*" | "#" => {}
            "" => return Err(NameError::EmptyWord),
            word if word.contains(['*', '#']) => return Err(NameError::MisplacedWildcard { word: word.to_owned() }),
            word => check_word(word)?,
        }
    }
    Ok(())
}

/// The longest event name, pattern, queue name or header name, in bytes: AMQP carries
/// them in short strings.
pub const MAX_NAME_BYTES: usize = 255;

/// Checks that `name` fits an AMQP short string.
///
/// ```
/// use eventing::naming::{NameError, check_length};
/// assert!(check_length("billing.invoice_paid").is_ok());
/// assert_eq!(check_length(&"x".repeat(256)), Err(NameError::TooLong { len: 256 }));
/// ```
pub fn check_length(name: &str) -> Result<(), NameError> {
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong { len: name.len() });
    }
    Ok(())
}

/// Checks a listener, service or process-id name: one word of ASCII letters, digits, `_`, `-`.
///
/// ```
/// use eventing::naming::{NameError, check_word};
/// assert!(check_word("send_welcome_mail").is_ok());
/// assert_eq!(check_word("send mail"), Err(NameError::WhiteSpace));
/// ```
pub fn check_word(word: &str) -> Result<(), NameError> {
    if word.is_empty() {
        return Err(NameError::Empty);
    }
    check_length(word)?;
    match word.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-')) {
        Some('*' | '#') => Err(NameError::Wildcard),
        Some(c) if c.is_whitespace() => Err(NameError::WhiteSpace),
        Some(character) => Err(NameError::InvalidCharacter { character }),
        None => Ok(()),
    }
}

/// The queue shared by all processes of `service` for one listener.
///
/// ```
/// assert_eq!(eventing::naming::listener_queue("shop", "user_created", "send_welcome_mail"),
///            "shop.user_created.send_welcome_mail");
/// ```
pub fn listener_queue(service: &str, event: &str, listener: &str) -> String {
    format!("{service}.{event}.{listener}")
}

/// The exclusive queue of one process for a `per_process` listener.
pub fn per_process_queue(service: &str, event: &str, listener: &str, process_id: &str) -> String {
    format!("{service}.{event}.{listener}.{process_id}")
}

/// The queue shared by all processes of `service` for a pattern listener.
///
/// ```
/// assert_eq!(eventing::naming::pattern_listener_queue("shop", "audit_trail"), "shop.audit_trail");
/// ```
pub fn pattern_listener_queue(service: &str, listener: &str) -> String {
    format!("{service}.{listener}")
}

/// The exclusive queue of one process for a `per_process` pattern listener.
pub fn pattern_per_process_queue(service: &str, listener: &str, process_id: &str) -> String {
    format!("{service}.{listener}.{process_id}")
}

/// The dead-letter queue of a pattern listener.
pub fn pattern_dead_letter_queue(service: &str, listener: &str) -> String {
    format!("{service}.{listener}.{DEAD_LETTER_SUFFIX}")
}

/// The dead-letter queue of a listener (shared by all processes, also for `per_process`).
pub fn dead_letter_queue(service: &str, event: &str, listener: &str) -> String {
    format!("{service}.{event}.{listener}.{DEAD_LETTER_SUFFIX}")
}

/// The delay tier of `service` where retries into its durable queues wait `delay`: a queue
/// and an exchange of this name, `<service>.delay.<ms>ms`. A retry is published to the
/// exchange with its listener's queue as routing key, and expires back into that queue.
///
/// ```
/// # use std::time::Duration;
/// assert_eq!(eventing::naming::delay_tier("shop", Duration::from_secs(2)), "shop.delay.2000ms");
/// ```
pub fn delay_tier(service: &str, delay: std::time::Duration) -> String {
    format!("{service}.delay.{}ms", delay.as_millis())
}

/// The delay tier of `service` for retries into queues that may be gone when the wait ends
/// (per-process queues, the expiring queues of non-durable events):
/// `<service>.delay.<ms>ms.transient`. A retry whose queue is gone is dropped there.
///
/// ```
/// # use std::time::Duration;
/// assert_eq!(eventing::naming::transient_delay_tier("shop", Duration::from_secs(2)), "shop.delay.2000ms.transient");
/// ```
pub fn transient_delay_tier(service: &str, delay: std::time::Duration) -> String {
    format!("{}.transient", delay_tier(service, delay))
}

/// The retry queue one listener queue had per wait before the delay tiers were shared,
/// `<queue>.retry.<ms>ms`: what `eventing topology prune` looks for after an upgrade.
///
/// ```
/// # use std::time::Duration;
/// assert_eq!(eventing::naming::retry_queue("shop.user_created.send_mail", Duration::from_secs(2)),
///            "shop.user_created.send_mail.retry.2000ms");
/// ```
pub fn retry_queue(queue: &str, delay: std::time::Duration) -> String {
    format!("{queue}.retry.{}ms", delay.as_millis())
}

/// The default service of a listener: the snake case of the crate that defines it.
pub fn service_from_crate(crate_name: &str) -> String {
    crate_name.to_snake_case()
}

/// The name of a bus that has no configured service and no listeners' crate to take one
/// from (none, or several): the executable's name in snake case.
pub(crate) fn service_from_executable() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|path| path.file_stem().map(|stem| stem.to_string_lossy().to_snake_case()))
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "eventing".into())
}

/// A process id that is readable and unique per bus: `<host>-<pid>`, with `-<n>` added
/// for the second and later bus started in the same process.
pub fn default_process_id() -> String {
    static BUSES: AtomicUsize = AtomicUsize::new(0);
    let host: String = gethostname::gethostname()
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
        .collect();
    let host = if host.is_empty() { "host".to_owned() } else { host };
    let pid = std::process::id();
    match BUSES.fetch_add(1, Ordering::Relaxed) {
        0 => format!("{host}-{pid}"),
        n => format!("{host}-{pid}-{}", n + 1),
    }
}
