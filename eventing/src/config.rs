//! `eventing.toml`: settings an operator changes without a rebuild.
//!
//! The file is `builder().config_file(path)`, else `EVENTING_CONFIG`, else `./eventing.toml`
//! when it exists. Every mistake (an unknown key, an unknown listener or recurring name, a
//! bad value) is a start error naming the file, the line and the key.
//!
//! Precedence, lowest first (README, "The configuration file"):
//!
//! | setting | default | attribute | builder | file | environment |
//! |---|---|---|---|---|---|
//! | per listener (`concurrency`, `prefetch`, retry, `enabled`, `pattern`) | 1 | 3 (this listener) | 2 (every listener) | 4 (this listener) | - |
//! | per recurring item (`every`/`cron`, `enabled`) | - | 1 | - | 2 | - |
//! | bus names (`url`, `service`, `exchange`, `process_id`) | 1 | - | 4 | 2 | 3 |
//!
//! Per listener, the more specific setting wins and the operator's file has the last word
//! (the builder's values are defaults for every listener, the attribute is one listener's
//! own). For the bus's names, the file is the deploy-wide default, the environment is one
//! instance's (a process id per pod), and a name given in code is meant: it wins, as it
//! always has.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::recurring::Schedule;
use crate::{Backoff, Error, RetryPolicy};

/// The file's top level.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    url: Option<Spanned<String>>,
    service: Option<Spanned<String>>,
    exchange: Option<Spanned<String>>,
    process_id: Option<Spanned<String>>,
    #[serde(default)]
    listeners: BTreeMap<Spanned<String>, RawListener>,
    #[serde(default)]
    recurring: BTreeMap<Spanned<String>, RawRecurring>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    concurrency: Option<Spanned<u16>>,
    prefetch: Option<Spanned<u16>>,
    max_attempts: Option<Spanned<u32>>,
    retry_delay: Option<Spanned<String>>,
    backoff: Option<Spanned<String>>,
    enabled: Option<bool>,
    pattern: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecurring {
    every: Option<Spanned<String>>,
    cron: Option<Spanned<String>>,
    enabled: Option<bool>,
}

/// A read and checked `eventing.toml` (empty when there is none).
#[derive(Debug, Default, Clone)]
pub(crate) struct FileConfig {
    pub(crate) url: Option<String>,
    pub(crate) service: Option<String>,
    pub(crate) exchange: Option<String>,
    pub(crate) process_id: Option<String>,
    pub(crate) listeners: BTreeMap<String, ListenerOverride>,
    pub(crate) recurring: BTreeMap<String, RecurringOverride>,
    /// Where each `[listeners.<name>]` and `[recurring.<name>]` was, for "unknown name" errors.
    sections: Vec<(String, Located)>,
    path: Option<PathBuf>,
}

/// What the file says of one listener.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ListenerOverride {
    pub(crate) concurrency: Option<u16>,
    pub(crate) prefetch: Option<u16>,
    pub(crate) max_attempts: Option<u32>,
    pub(crate) retry_delay: Option<Duration>,
    pub(crate) fixed_backoff: Option<bool>,
    pub(crate) enabled: Option<bool>,
    pub(crate) pattern: Option<String>,
}

impl ListenerOverride {
    /// `policy` with the file's retry settings applied.
    pub(crate) fn apply(&self, mut policy: RetryPolicy) -> RetryPolicy {
        if let Some(max_attempts) = self.max_attempts {
            policy.max_attempts = max_attempts;
        }
        if let Some(delay) = self.retry_delay {
            policy.first_delay = delay;
        }
        match self.fixed_backoff {
            Some(true) => policy.backoff = Backoff::Fixed,
            Some(false) if policy.backoff == Backoff::Fixed => {
                policy.backoff = Backoff::Exponential { max: Duration::from_secs(60) };
            }
            _ => {}
        }
        // A first wait longer than the exponential cap raises the cap: the file's delay is meant.
        if let Backoff::Exponential { max } = &mut policy.backoff {
            *max = (*max).max(policy.first_delay);
        }
        policy
    }
}

/// What the file says of one recurring item.
#[derive(Debug, Default, Clone)]
pub(crate) struct RecurringOverride {
    pub(crate) schedule: Option<Schedule>,
    pub(crate) enabled: Option<bool>,
}

#[derive(Debug, Clone)]
struct Located {
    line: usize,
    key: String,
}

/// Which file to read: the builder's, else `EVENTING_CONFIG`, else `./eventing.toml` if it
/// exists; `None` when there is none.
pub(crate) fn locate(given: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Option<(PathBuf, bool)> {
    if let Some(path) = given {
        return Some((path.to_owned(), true));
    }
    if let Some(path) = env("EVENTING_CONFIG") {
        return Some((PathBuf::from(path), true));
    }
    let default = PathBuf::from("eventing.toml");
    default.is_file().then_some((default, false))
}

impl FileConfig {
    /// Reads the file; a file that was asked for must exist.
    pub(crate) fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|error| Error::Config {
            file: path.display().to_string(),
            line: 0,
            key: String::new(),
            reason: format!("cannot read it: {error}"),
        })?;
        Self::parse(path, &text)
    }

    /// Parses `text` (read from `path`) and checks every value.
    pub(crate) fn parse(path: &Path, text: &str) -> Result<Self, Error> {
        let file = path.display().to_string();
        let raw: Raw = toml::from_str(text).map_err(|error| {
            let span = error.span().unwrap_or(0..0);
            let (line, key) = locate_span(text, &span);
            Error::Config { file: file.clone(), line, key, reason: error.message().trim().to_owned() }
        })?;
        let fail = |span: Range<usize>, reason: String| {
            let (line, key) = locate_span(text, &span);
            Error::Config { file: file.clone(), line, key, reason }
        };
        let mut config = Self {
            url: raw.url.map(Spanned::into_inner),
            service: raw.service.map(Spanned::into_inner),
            exchange: raw.exchange.map(Spanned::into_inner),
            process_id: raw.process_id.map(Spanned::into_inner),
            path: Some(path.to_owned()),
            ..Self::default()
        };
        for (name, listener) in raw.listeners {
            let (line, _) = locate_span(text, &name.span());
            config.sections.push((
                format!("listeners.{}", name.get_ref()),
                Located { line, key: format!("listeners.{}", name.get_ref()) },
            ));
            let retry_delay = match listener.retry_delay {
                Some(delay) => Some(humantime::parse_duration(delay.get_ref()).map_err(|error| {
                    fail(delay.span(), format!("`{}` is not a duration: {error}", delay.get_ref()))
                })?),
                None => None,
            };
            let fixed_backoff = match listener.backoff {
                Some(backoff) => match backoff.get_ref().as_str() {
                    "fixed" => Some(true),
                    "exponential" => Some(false),
                    other => {
                        return Err(fail(
                            backoff.span(),
                            format!("`{other}`: backoff is \"fixed\" or \"exponential\""),
                        ));
                    }
                },
                None => None,
            };
            for value in [&listener.concurrency, &listener.prefetch].into_iter().flatten() {
                if *value.get_ref() == 0 {
                    return Err(fail(value.span(), "must be at least 1".into()));
                }
            }
            if let Some(attempts) = &listener.max_attempts {
                if *attempts.get_ref() == 0 {
                    return Err(fail(attempts.span(), "must be at least 1 (1: no retry)".into()));
                }
            }
            if let Some(pattern) = &listener.pattern {
                crate::naming::check_pattern(pattern.get_ref())
                    .map_err(|reason| fail(pattern.span(), format!("pattern `{}`: {reason}", pattern.get_ref())))?;
            }
            config.listeners.insert(
                name.into_inner(),
                ListenerOverride {
                    concurrency: listener.concurrency.map(Spanned::into_inner),
                    prefetch: listener.prefetch.map(Spanned::into_inner),
                    max_attempts: listener.max_attempts.map(Spanned::into_inner),
                    retry_delay,
                    fixed_backoff,
                    enabled: listener.enabled,
                    pattern: listener.pattern.map(Spanned::into_inner),
                },
            );
        }
        for (name, recurring) in raw.recurring {
            let (line, _) = locate_span(text, &name.span());
            config.sections.push((
                format!("recurring.{}", name.get_ref()),
                Located { line, key: format!("recurring.{}", name.get_ref()) },
            ));
            let schedule = match (recurring.every, recurring.cron) {
                (Some(_), Some(cron)) => {
                    return Err(fail(cron.span(), "give `every` or `cron`, not both".into()));
                }
                (Some(every), None) => {
                    Some(Schedule::every(every.get_ref()).map_err(|reason| fail(every.span(), reason.to_string()))?)
                }
                (None, Some(cron)) => {
                    Some(Schedule::cron(cron.get_ref()).map_err(|reason| fail(cron.span(), reason.to_string()))?)
                }
                (None, None) => None,
            };
            config.recurring.insert(name.into_inner(), RecurringOverride { schedule, enabled: recurring.enabled });
        }
        Ok(config)
    }

    /// Checks that every `[listeners.<name>]` names a listener, that `pattern` is given only
    /// to pattern listeners, and that every `[recurring.<name>]` names a recurring item.
    pub(crate) fn check_names(&self, listeners: &[(&str, bool)], recurring: &[&str]) -> Result<(), Error> {
        for (section, located) in &self.sections {
            let error = |reason: String| Error::Config {
                file: self.file_name(),
                line: located.line,
                key: located.key.clone(),
                reason,
            };
            if let Some(name) = section.strip_prefix("listeners.") {
                let matching: Vec<bool> =
                    listeners.iter().filter(|(known, _)| *known == name).map(|(_, pattern)| *pattern).collect();
                if matching.is_empty() {
                    let mut known: Vec<&str> = listeners.iter().map(|(name, _)| *name).collect();
                    known.dedup();
                    return Err(error(format!("no listener is named `{name}`; listeners: {}", list(&known))));
                }
                if self.listeners[name].pattern.is_some() && !matching.iter().all(|pattern| *pattern) {
                    return Err(error(format!(
                        "`pattern` is only for pattern listeners (`Listener<RawEvent>`); `{name}` takes its event's name"
                    )));
                }
            } else if let Some(name) = section.strip_prefix("recurring.") {
                if !recurring.contains(&name) {
                    return Err(error(format!(
                        "no recurring item is named `{name}`; recurring items: {}",
                        list(recurring)
                    )));
                }
            }
        }
        Ok(())
    }

    fn file_name(&self) -> String {
        self.path.as_deref().map_or_else(|| "eventing.toml".into(), |path| path.display().to_string())
    }

    /// What the file says of listener `name` (nothing when it has no section).
    pub(crate) fn listener(&self, name: &str) -> ListenerOverride {
        self.listeners.get(name).cloned().unwrap_or_default()
    }

    /// What the file says of recurring item `name`.
    pub(crate) fn recurring(&self, name: &str) -> RecurringOverride {
        self.recurring.get(name).cloned().unwrap_or_default()
    }
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.iter().map(|name| format!("`{name}`")).collect::<Vec<_>>().join(", ")
    }
}

/// The 1-based line of `span` and the dotted key written there (`listeners.x.concurrency`),
/// from the nearest table header above and the `key =` of the line.
fn locate_span(text: &str, span: &Range<usize>) -> (usize, String) {
    let start = span.start.min(text.len());
    let line = text[..start].matches('\n').count() + 1;
    let lines: Vec<&str> = text.lines().collect();
    let current = lines.get(line - 1).copied().unwrap_or("").trim();
    let table = lines[..(line - 1).min(lines.len())]
        .iter()
        .rev()
        .map(|line| line.trim())
        .find(|line| line.starts_with('['))
        .map(|header| header.trim_start_matches('[').split(']').next().unwrap_or("").trim().to_owned());
    let key = if current.starts_with('[') {
        current.trim_start_matches('[').split(']').next().unwrap_or("").trim().to_owned()
    } else {
        let key = current.split('=').next().unwrap_or("").trim().trim_matches('"').to_owned();
        match table {
            Some(table) if !table.is_empty() => format!("{table}.{key}"),
            _ => key,
        }
    };
    (line, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FileConfig, Error> {
        FileConfig::parse(Path::new("eventing.toml"), text)
    }

    fn located(error: Error) -> (usize, String) {
        match error {
            Error::Config { line, key, .. } => (line, key),
            other => panic!("not a config error: {other}"),
        }
    }

    #[test]
    fn the_design_example_parses() {
        let config = parse(
            "service = \"shop\"\n\n[listeners.send_welcome_mail]   # by listener name\nconcurrency = 4\n\
             max_attempts = 3\nretry_delay = \"500ms\"\nenabled = false\n\n[listeners.audit_trail]\n\
             pattern = \"billing.#\"\n\n[recurring.send_heartbeat]\nevery = \"10s\"\n",
        )
        .unwrap();
        assert_eq!(config.service.as_deref(), Some("shop"));
        let mail = config.listener("send_welcome_mail");
        assert_eq!(mail.concurrency, Some(4));
        assert_eq!(mail.retry_delay, Some(Duration::from_millis(500)));
        assert_eq!(mail.enabled, Some(false));
        assert_eq!(config.listener("audit_trail").pattern.as_deref(), Some("billing.#"));
        assert!(config.recurring("send_heartbeat").schedule.is_some());
    }

    #[test]
    fn a_long_retry_delay_has_no_cap() {
        let config = parse("[listeners.x]\nretry_delay = \"10m\"\n").unwrap();
        assert_eq!(config.listener("x").retry_delay, Some(Duration::from_secs(600)));
    }

    #[test]
    fn mistakes_name_line_and_key() {
        assert_eq!(
            located(parse("service = \"a\"\n[listeners.x]\nconcurency = 4\n").unwrap_err()),
            (3, "listeners.x.concurency".into())
        );
        assert_eq!(
            located(parse("[listeners.x]\n\nretry_delay = \"soon\"\n").unwrap_err()),
            (3, "listeners.x.retry_delay".into())
        );
        assert_eq!(
            located(parse("[listeners.x]\nconcurrency = \"four\"\n").unwrap_err()),
            (2, "listeners.x.concurrency".into())
        );
        assert_eq!(
            located(parse("[listeners.x]\nconcurrency = 0\n").unwrap_err()),
            (2, "listeners.x.concurrency".into())
        );
        assert_eq!(located(parse("servce = \"a\"\n").unwrap_err()), (1, "servce".into()));
        assert_eq!(
            located(parse("[recurring.r]\nevery = \"5s\"\ncron = \"* * * * * *\"\n").unwrap_err()),
            (3, "recurring.r.cron".into())
        );
        assert_eq!(located(parse("[recurring.r]\ncron = \"nope\"\n").unwrap_err()), (2, "recurring.r.cron".into()));
        assert_eq!(
            located(parse("[listeners.x]\nbackoff = \"linear\"\n").unwrap_err()),
            (2, "listeners.x.backoff".into())
        );
    }

    #[test]
    fn unknown_names_are_errors() {
        let config = parse("\n[listeners.send_welcom_mail]\nconcurrency = 2\n").unwrap();
        let error = config.check_names(&[("send_welcome_mail", false)], &[]).unwrap_err();
        assert!(error.to_string().contains("send_welcome_mail"), "{error}");
        assert_eq!(located(error), (2, "listeners.send_welcom_mail".into()));
        let config = parse("[recurring.beat]\nenabled = false\n").unwrap();
        assert_eq!(located(config.check_names(&[], &["heartbeat"]).unwrap_err()), (1, "recurring.beat".into()));
        let config = parse("[listeners.typed]\npattern = \"a.#\"\n").unwrap();
        assert!(config.check_names(&[("typed", false)], &[]).is_err());
        assert!(config.check_names(&[("typed", true)], &[]).is_ok());
    }

    #[test]
    fn the_file_is_found_in_order() {
        let env = |_: &str| Some("from-env.toml".to_owned());
        let none = |_: &str| None;
        assert_eq!(locate(Some(Path::new("given.toml")), env), Some((PathBuf::from("given.toml"), true)));
        assert_eq!(locate(None, env), Some((PathBuf::from("from-env.toml"), true)));
        // The crate's directory has no eventing.toml.
        assert_eq!(locate(None, none), None);
    }
}
