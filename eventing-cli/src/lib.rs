//! The `eventing` operator command, as a library so a service can ship it with its own
//! listeners linked in (then `topology` shows, and `topology delete` deletes, that
//! service's queues):
//!
//! ```no_run
//! // src/bin/eventing.rs of a service
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     eventing_cli::main(std::env::args_os()).await
//! }
//! ```
//!
//! Commands:
//! - `eventing topology [--service S] [--exchange E]` — the exchange, queues and bindings
//!   the registry and configuration declare (`EVENTING_SERVICE`, `EVENTING_EXCHANGE`,
//!   `EVENTING_PROCESS_ID` apply; the flags win);
//! - `eventing topology --format json|mermaid` — the same with listeners' settings and
//!   recurring items, as JSON or as a Mermaid flowchart;
//! - `eventing topology declare` — declares it all and exits (a deploy step);
//! - `eventing asyncapi [--format yaml|json]` — an AsyncAPI 3.0 document of the events,
//!   requests, listeners and recurring items linked into the binary (see
//!   `eventing::asyncapi`);
//! - `eventing config check [path]` — checks an `eventing.toml` against this binary's
//!   listeners and recurring items and prints the settings each runs with;
//! - `eventing topology delete [--yes] [--force]` — deletes those queues (listener and
//!   dead-letter queues, the service's delay tiers) and the exchanges once nothing else is
//!   bound to them; refuses queues that hold messages or have consumers unless `--force`;
//! - `eventing topology prune` — deletes, when empty, the per-listener retry queues
//!   (`<queue>.retry.<ms>ms`) that versions before the shared delay tiers declared;
//! - `eventing dlq list <queue> [--limit N] [--full] [--json]` — dead letters with reason,
//!   attempts, times, custom headers and body (1 KiB of it unless `--full`);
//! - `eventing dlq requeue <queue> [--limit N]` — back to the listener that failed, as a
//!   first attempt; each is confirmed by the broker before it leaves the dead-letter queue;
//! - `eventing dlq purge <queue> [--yes]` — delete every dead letter of the queue.
//!
//! The `dlq` commands refuse a queue that is not an eventing dead-letter queue; commands
//! that delete ask for confirmation on a terminal and refuse without one unless `--yes`.
//! The broker comes from `--url` or `EVENTING_URL` (whose value `--help` never shows).
#![warn(missing_docs, unreachable_pub)]

mod asyncapi;
mod deploy;

use std::borrow::Cow;
use std::ffi::OsString;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};
use eventing::message::{HeaderValue, Message, header};
use eventing::naming::DEAD_LETTER_SUFFIX;
use eventing::transport::{QueueLifetime, QueueRole, Topology, TransportError, redact_url};
use eventing_amqp::{AmqpOptions, AmqpTransport};

/// How much of a body `dlq list` prints without `--full`.
const BODY_PREVIEW_BYTES: usize = 1024;

/// Operate eventing's queues on RabbitMQ.
#[derive(Debug, Parser)]
#[command(name = "eventing", version, about)]
struct Cli {
    /// The broker, e.g. amqp://guest:guest@127.0.0.1:5672/%2f.
    #[arg(long, env = "EVENTING_URL", hide_env_values = true, global = true)]
    url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// What the registry and configuration declare: exchange, queues, bindings.
    Topology(TopologyArgs),
    /// An AsyncAPI 3.0 document of the events, requests, listeners and recurring items
    /// linked into this binary, with the names the topology uses.
    Asyncapi(asyncapi::AsyncapiArgs),
    /// The configuration file (eventing.toml).
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Dead-letter queues (names ending in `.dead_letter`; others are refused).
    Dlq {
        #[command(subcommand)]
        action: Dlq,
    },
    /// Publish an event by name with a JSON body; exits 0 once the broker confirmed it.
    Publish {
        /// The event name (its routing key), e.g. billing.invoice_paid.
        name: String,
        /// The body: JSON text, `@path` to read a file, or `-` to read standard input.
        body: String,
        /// The exchange (default: EVENTING_EXCHANGE, else `eventing`).
        #[arg(long)]
        exchange: Option<String>,
    },
}

#[derive(Debug, Args)]
struct TopologyArgs {
    #[command(subcommand)]
    action: Option<TopologyAction>,
    /// The service whose queues these are (default: EVENTING_SERVICE, else each listener's crate).
    #[arg(long, global = true)]
    service: Option<String>,
    /// The exchange (default: EVENTING_EXCHANGE, else `eventing`).
    #[arg(long, global = true)]
    exchange: Option<String>,
    /// How to print it.
    #[arg(long, value_enum, default_value_t = deploy::Format::Text)]
    format: deploy::Format,
    /// The configuration file (default: EVENTING_CONFIG, else ./eventing.toml when present).
    #[arg(long, global = true)]
    config: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
enum TopologyAction {
    /// Declare the exchange, queues and bindings the registry and configuration describe,
    /// then exit (for a deploy step).
    Declare,
    /// Delete the listener and dead-letter queues of the linked listeners, their service's
    /// delay tiers, and the exchanges when nothing else is bound to them. Asks first unless
    /// --yes.
    Delete {
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        /// Delete also queues that hold messages (dead letters included) or have consumers.
        #[arg(long)]
        force: bool,
    },
    /// Delete the retry queues `<queue>.retry.<ms>ms` of the linked listeners, left by
    /// versions before the shared delay tiers, each only once it is empty (its retries have
    /// returned to their listener). Run it once no process of an earlier version runs. It
    /// deletes nothing that holds a message, so it does not ask.
    Prune,
}

#[derive(Debug, Subcommand)]
enum ConfigAction {
    /// Check a configuration file against this binary's listeners and recurring items and
    /// print the settings each would run with.
    Check {
        /// The file (default: EVENTING_CONFIG, else ./eventing.toml when present).
        path: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum Dlq {
    /// Show dead letters (they stay in the queue).
    List {
        /// The dead-letter queue, e.g. shop.user_created.send_mail.dead_letter.
        queue: String,
        /// Show at most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print whole bodies (default: the first 1 KiB and the full size).
        #[arg(long)]
        full: bool,
        /// One JSON object per dead letter and line (JSON Lines), for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Send dead letters back to the listener that failed, attempts reset; each at most once.
    Requeue {
        /// The dead-letter queue.
        queue: String,
        /// Requeue at most this many (default: all the queue holds when the command starts).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Delete every dead letter of the queue. Asks first unless --yes.
    Purge {
        /// The dead-letter queue.
        queue: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

/// Why a command failed or refused.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("no broker: pass --url amqp://... or set EVENTING_URL")]
    NoBroker,
    #[error("`{url}`: the operator commands work on RabbitMQ; give an amqp:// URL")]
    NotAmqp { url: String },
    #[error("cannot connect to {url}: {source}")]
    Settings {
        url: String,
        #[source]
        source: eventing_amqp::OptionsError,
    },
    #[error(transparent)]
    Broker(#[from] TransportError),
    #[error("the registry: {0}")]
    Registry(#[from] eventing::Error),
    #[error("refusing to {action} `{queue}`: {reason}")]
    Refused {
        action: &'static str,
        queue: String,
        #[source]
        reason: NotDeadLetters,
    },
    #[error("refusing to delete the topology: {}; pass --force to delete anyway (their messages are lost)", join(.problems))]
    TopologyInUse { problems: Vec<InUse> },
    #[error(
        "no listeners are linked into this binary, so it knows no queues to delete; run the `eventing` command your service builds with `eventing_cli::main`"
    )]
    NoListeners,
    #[error("{what}: {reason}; nothing was changed")]
    NotConfirmed {
        what: String,
        #[source]
        reason: NotConfirmed,
    },
    #[error("requeue from `{queue}` stopped after requeueing {moved} dead letter(s): {source}")]
    RequeueStopped {
        queue: String,
        moved: usize,
        #[source]
        source: TransportError,
    },
    #[error(
        "no #[event], #[request] or listener is linked into this binary, so there is nothing to describe; run the `eventing` command your service builds with `eventing_cli::main`"
    )]
    NothingToDescribe,
    #[error("rendering the AsyncAPI document as {format}: {source}")]
    Render {
        format: &'static str,
        #[source]
        source: serde_norway::Error,
    },
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
    #[error("reading the body from {from}: {source}")]
    Input {
        from: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid event name `{name}`: {source}; nothing was sent")]
    EventName {
        name: String,
        #[source]
        source: eventing::naming::NameError,
    },
    #[error("the body is not JSON: {source}; nothing was sent")]
    NotJson {
        #[source]
        source: serde_json::Error,
    },
}

/// Why a `dlq` command takes a queue for something else than an eventing dead-letter queue.
#[derive(Debug, thiserror::Error)]
enum NotDeadLetters {
    #[error("it is not a dead-letter queue: their names end in `{suffix}` (`<service>.<event>.<listener>{suffix}`)")]
    Name { suffix: String },
    #[error("it is not a dead-letter queue: the listeners linked into this binary declare it as a {role} queue")]
    DeclaredAs { role: &'static str },
    #[error(
        "it is not a dead-letter queue: it was declared with other arguments than eventing gives dead-letter \
         queues (durable, no TTL, expiry or dead-lettering)"
    )]
    Shape,
    #[error("it is not a dead-letter queue: {consumers} consumer(s) read it, and eventing never consumes dead letters")]
    Consumed { consumers: u32 },
}

/// Why `topology delete` keeps a queue without `--force`.
#[derive(Debug)]
enum InUse {
    DeadLetters { queue: String, messages: u32 },
    Messages { queue: String, messages: u32 },
    Retries { queue: String, messages: u32 },
    Consumers { queue: String, consumers: u32 },
}

impl std::fmt::Display for InUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::DeadLetters { queue, messages } => {
                write!(f, "`{queue}` holds {messages} dead letter(s) (requeue or purge them first)")
            }
            Self::Messages { queue, messages } => write!(f, "`{queue}` holds {messages} message(s) not yet handled"),
            Self::Retries { queue, messages } => write!(
                f,
                "`{queue}` holds {messages} retry(ies) waiting to return to their queues (the service's tier: \
                 they may be other listeners' too)"
            ),
            Self::Consumers { queue, consumers } => {
                write!(f, "`{queue}` has {consumers} consumer(s): its service is running")
            }
        }
    }
}

/// The problems, separated by `; `.
fn join(problems: &[InUse]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Why a question that guards a deletion was not answered yes.
#[derive(Debug, thiserror::Error)]
enum NotConfirmed {
    #[error("not confirmed: stdin is not a terminal (pass --yes to confirm)")]
    NotATerminal,
    #[error("not confirmed: stdin closed before an answer (pass --yes to confirm)")]
    InputClosed,
    #[error("not confirmed")]
    Declined,
}

/// Where a command reads confirmations and writes its results and errors: the process's
/// terminal in [`main`], buffers in tests.
pub struct Console<'a> {
    /// Answers to confirmation questions, one per line.
    pub input: &'a mut (dyn BufRead + Send),
    /// Whether a person types into `input`. Commands that delete refuse to ask otherwise:
    /// scripts pass `--yes`.
    pub interactive: bool,
    /// Results.
    pub out: &'a mut (dyn Write + Send),
    /// Errors and questions.
    pub err: &'a mut (dyn Write + Send),
}

impl std::fmt::Debug for Console<'_> {
    /// Whether it is interactive; the streams have nothing to show.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").field("interactive", &self.interactive).finish_non_exhaustive()
    }
}

/// Runs the command line `args` (the program name first) on the process's stdin, stdout
/// and stderr. A closed stdout (`eventing dlq list … | head`) ends it quietly with success.
pub async fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    let mut input = std::io::BufReader::new(stdin);
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    run_in(args, Console { input: &mut input, interactive, out: &mut out, err: &mut err }).await
}

/// Runs the command line `args` (the program name first) with `console`: what [`main`]
/// does, with other input and output. Exit codes: 0 done (or the output was closed),
/// 1 failed or refused, 2 a usage error.
pub async fn run_in(args: impl IntoIterator<Item = OsString>, mut console: Console<'_>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            let target = if error.use_stderr() { &mut *console.err } else { &mut *console.out };
            let _ = write!(target, "{error}");
            return if error.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    match run(cli, &mut console).await.and_then(|()| console.out.flush().map_err(CliError::Output)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Output(error)) if error.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(error) => {
            let _ = writeln!(console.err, "eventing: {}", report(&error));
            ExitCode::FAILURE
        }
    }
}

/// `error`'s message, then on a line each the causes in its source chain that the message
/// does not already say (most of ours end with their cause's text).
fn report(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    for cause in std::iter::successors(error.source(), |cause| cause.source()) {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str("\n  caused by: ");
            text.push_str(&line);
        }
    }
    text
}

async fn run(cli: Cli, console: &mut Console<'_>) -> Result<(), CliError> {
    match cli.command {
        Command::Asyncapi(args) => asyncapi::print(args, cli.url, console.out),
        Command::Config { action: ConfigAction::Check { path } } => {
            let mut builder = eventing::builder();
            if let Some(path) = path {
                builder = builder.config_file(path);
            }
            let listeners = builder.listener_settings()?;
            let recurring = builder.recurring_settings()?;
            Ok(deploy::print_settings(builder.config_path().as_deref(), &listeners, &recurring, console.out)?)
        }
        Command::Topology(TopologyArgs { action, service, exchange, format, config }) => {
            let mut builder = eventing::builder();
            if let Some(service) = service {
                builder = builder.service(service);
            }
            if let Some(exchange) = exchange {
                builder = builder.exchange(exchange);
            }
            if let Some(config) = config {
                builder = builder.config_file(config);
            }
            let topology = builder.topology()?;
            match action {
                None => match format {
                    deploy::Format::Text => Ok(print_topology(&topology, console.out)?),
                    deploy::Format::Json => {
                        let json =
                            deploy::to_json(&topology, &builder.listener_settings()?, &builder.recurring_settings()?);
                        Ok(writeln!(console.out, "{json:#}")?)
                    }
                    deploy::Format::Mermaid => Ok(deploy::to_mermaid(
                        &topology,
                        &builder.listener_settings()?,
                        &builder.recurring_settings()?,
                        console.out,
                    )?),
                },
                Some(TopologyAction::Declare) => {
                    let broker = connect(cli.url).await?;
                    let declared = eventing::transport::Transport::declare(&broker, &topology).await;
                    let _ = eventing::transport::Transport::close(&broker).await;
                    declared?;
                    let tiers = topology.queues.iter().filter(|queue| is_tier(queue)).count();
                    let events = topology.exchanges.iter().filter(|exchange| !is_tier_exchange(&topology, exchange));
                    Ok(writeln!(
                        console.out,
                        "declared exchange {}, {} queues ({tiers} of them delay tiers, each with its exchange), {} bindings",
                        events.cloned().collect::<Vec<_>>().join(", "),
                        topology.queues.len(),
                        topology.bindings.len()
                    )?)
                }
                Some(TopologyAction::Delete { yes, force }) => {
                    if topology.queues.is_empty() {
                        return Err(CliError::NoListeners);
                    }
                    let broker = connect(cli.url).await?;
                    let result = delete_topology(&broker, &topology, yes, force, console).await;
                    let _ = eventing::transport::Transport::close(&broker).await;
                    result
                }
                Some(TopologyAction::Prune) => {
                    let listeners = builder.listener_settings()?;
                    if !listeners.iter().any(|listener| listener.enabled) {
                        return Err(CliError::NoListeners);
                    }
                    let broker = connect(cli.url).await?;
                    let result = prune(&broker, &topology, &listeners, console).await;
                    let _ = eventing::transport::Transport::close(&broker).await;
                    result
                }
            }
        }
        Command::Publish { name, body, exchange } => {
            eventing::naming::check_event_name(&name)
                .map_err(|source| CliError::EventName { name: name.clone(), source })?;
            let body = read_body(&body, console)?;
            serde_json::from_slice::<serde_json::Value>(&body).map_err(|source| CliError::NotJson { source })?;
            let broker = connect(cli.url).await?;
            let mut builder = eventing::builder().transport(broker).listeners(|_| false).recurring(false);
            if let Some(exchange) = exchange {
                builder = builder.exchange(exchange);
            }
            let bus = builder.start().await?;
            let published = bus.publish_raw(&name, body).await;
            bus.shutdown().await?;
            published?;
            Ok(writeln!(console.out, "published `{name}` (confirmed by the broker)")?)
        }
        Command::Dlq { action } => {
            let (queue, verb) = action.target();
            check_dead_letter_name(queue, verb)?;
            let broker = connect(cli.url).await?;
            let result = dlq(&broker, action, console).await;
            let _ = eventing::transport::Transport::close(&broker).await;
            result
        }
    }
}

/// The body argument of `publish`: the JSON itself, `@path`, or `-` for standard input.
fn read_body(argument: &str, console: &mut Console<'_>) -> Result<Vec<u8>, CliError> {
    if argument == "-" {
        let mut body = Vec::new();
        console
            .input
            .read_to_end(&mut body)
            .map_err(|source| CliError::Input { from: "standard input".into(), source })?;
        Ok(body)
    } else if let Some(path) = argument.strip_prefix('@') {
        std::fs::read(path).map_err(|source| CliError::Input { from: format!("`{path}`"), source })
    } else {
        Ok(argument.as_bytes().to_vec())
    }
}

/// A connection for the operator commands, to RabbitMQ only, with the settings services
/// take from the environment (`EVENTING_AMQP_*`: queue type, TLS files, ...).
async fn connect(url: Option<String>) -> Result<AmqpTransport, CliError> {
    let url = url.ok_or(CliError::NoBroker)?;
    if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
        return Err(CliError::NotAmqp { url: redact_url(&url) });
    }
    let options = AmqpOptions::from_env()
        .map_err(|source| CliError::Settings { url: redact_url(&url), source })?
        .with_connection_name("eventing-cli");
    Ok(AmqpTransport::connect(&url, options).await?)
}

async fn dlq(broker: &AmqpTransport, action: Dlq, console: &mut Console<'_>) -> Result<(), CliError> {
    match action {
        Dlq::List { queue, limit, full, json } => {
            let total = check_dead_letter_queue(broker, &queue, "list").await?;
            let total = usize::try_from(total).unwrap_or(usize::MAX);
            let messages = broker.peek(&queue, limit.min(total)).await?;
            if json {
                for message in &messages {
                    writeln!(console.out, "{}", to_json(message, &queue, full))?;
                }
            } else {
                write!(console.out, "{total} dead letter(s) in `{queue}`")?;
                if messages.len() < total {
                    write!(console.out, ", the first {} shown (--limit)", messages.len())?;
                }
                writeln!(console.out)?;
                for message in &messages {
                    describe(message, full, console.out)?;
                }
            }
            Ok(())
        }
        Dlq::Requeue { queue, limit } => {
            check_dead_letter_queue(broker, &queue, "requeue from").await?;
            let mut moved = 0;
            match broker.requeue_dead_letters_once(&queue, limit.unwrap_or(usize::MAX), |_, _| moved += 1).await {
                Ok(moved) => Ok(writeln!(console.out, "requeued {moved} dead letter(s) from `{queue}`")?),
                Err(source) => Err(CliError::RequeueStopped { queue, moved, source }),
            }
        }
        Dlq::Purge { queue, yes } => {
            let count = check_dead_letter_queue(broker, &queue, "purge").await?;
            if !yes {
                confirm(console, &format!("purge {count} dead letter(s) from `{queue}` (they cannot be recovered)"))?;
            }
            let purged = broker.purge(&queue).await?;
            Ok(writeln!(console.out, "purged {purged} dead letter(s) from `{queue}`")?)
        }
    }
}

impl Dlq {
    /// The queue a command works on, and what it does to it (for refusals).
    fn target(&self) -> (&str, &'static str) {
        match self {
            Self::List { queue, .. } => (queue, "list"),
            Self::Requeue { queue, .. } => (queue, "requeue from"),
            Self::Purge { queue, .. } => (queue, "purge"),
        }
    }
}

/// The first half of checking that `queue` is an eventing dead-letter queue, before any
/// connection: its name ends in `.dead_letter` (`eventing::naming::dead_letter_queue`),
/// and the listeners linked into this binary do not declare it in another role.
fn check_dead_letter_name(queue: &str, action: &'static str) -> Result<(), CliError> {
    let refuse = |reason: NotDeadLetters| CliError::Refused { action, queue: queue.to_owned(), reason };
    let suffix = format!(".{DEAD_LETTER_SUFFIX}");
    if !queue.ends_with(&suffix) || queue.len() == suffix.len() {
        return Err(refuse(NotDeadLetters::Name { suffix }));
    }
    let topology = eventing::builder().topology()?;
    if let Some(spec) = topology.queues.iter().find(|spec| spec.name == queue)
        && spec.role != QueueRole::DeadLetter
    {
        return Err(refuse(NotDeadLetters::DeclaredAs { role: role_name(&spec.role) }));
    }
    Ok(())
}

/// The second half, on the broker: `queue` exists (a passive declare), is not exclusive to
/// a connection, has the dead-letter shape (durable, no TTL, expiry or dead-lettering of
/// its own), and nothing consumes it (eventing never consumes dead letters, so a consumer
/// means a live queue). Returns how many messages it holds.
async fn check_dead_letter_queue(broker: &AmqpTransport, queue: &str, action: &'static str) -> Result<u32, CliError> {
    let refuse = |reason: NotDeadLetters| CliError::Refused { action, queue: queue.to_owned(), reason };
    if !broker.has_dead_letter_shape(queue).await? {
        return Err(refuse(NotDeadLetters::Shape));
    }
    let messages = broker.message_count(queue).await?;
    let consumers = broker.consumer_count(queue).await?;
    if consumers > 0 {
        return Err(refuse(NotDeadLetters::Consumed { consumers }));
    }
    Ok(messages)
}

/// Deletes what `topology` declares on the broker, after checking and asking.
async fn delete_topology(
    broker: &AmqpTransport,
    topology: &Topology,
    yes: bool,
    force: bool,
    console: &mut Console<'_>,
) -> Result<(), CliError> {
    let mut present = Vec::new();
    let mut problems = Vec::new();
    // Per-process queues are exclusive: they go with their process's connection.
    for spec in topology.queues.iter().filter(|spec| spec.lifetime != QueueLifetime::Exclusive) {
        let messages = match broker.message_count(&spec.name).await {
            Ok(messages) => messages,
            Err(TransportError::NotFound { .. }) => continue,
            Err(error) => return Err(error.into()),
        };
        let consumers = broker.consumer_count(&spec.name).await?;
        if messages > 0 {
            let queue = spec.name.clone();
            problems.push(match spec.role {
                QueueRole::DeadLetter => InUse::DeadLetters { queue, messages },
                QueueRole::Delay { .. } => InUse::Retries { queue, messages },
                _ => InUse::Messages { queue, messages },
            });
        }
        if consumers > 0 {
            problems.push(InUse::Consumers { queue: spec.name.clone(), consumers });
        }
        present.push(spec);
    }
    if !problems.is_empty() && !force {
        return Err(CliError::TopologyInUse { problems });
    }
    for spec in &present {
        writeln!(console.out, "to delete: queue {} ({})", spec.name, role_name(&spec.role))?;
    }
    for exchange in &topology.exchanges {
        writeln!(console.out, "to delete: exchange {exchange} (unless other queues are bound to it)")?;
    }
    if !yes {
        confirm(console, "delete these queues and their messages")?;
    }
    for spec in &present {
        broker.delete_queue(&spec.name).await?;
        writeln!(console.out, "deleted queue {}", spec.name)?;
    }
    for exchange in &topology.exchanges {
        if !broker.exchange_exists(exchange).await? {
            writeln!(console.out, "exchange {exchange} does not exist")?;
        } else if broker.delete_exchange_if_unused(exchange).await? {
            writeln!(console.out, "deleted exchange {exchange}")?;
        } else {
            writeln!(console.out, "kept exchange {exchange}: other queues are still bound to it")?;
        }
    }
    Ok(())
}

/// Deletes the retry queues that versions before the shared delay tiers declared per
/// listener queue (`<queue>.retry.<ms>ms`, one per wait of the listener's policy), each only
/// if it is empty. Exclusive ones went with their connection. Counting and then deleting is
/// safe once no process of an earlier version runs: nothing publishes into these queues any
/// more, messages only leave them (AMQP's atomic `if-empty` delete is not an option: quorum
/// queues refuse it with a connection error).
async fn prune(
    broker: &AmqpTransport,
    topology: &Topology,
    listeners: &[eventing::ListenerSettings],
    console: &mut Console<'_>,
) -> Result<(), CliError> {
    let (mut deleted, mut kept) = (0, 0);
    for listener in listeners.iter().filter(|listener| listener.enabled) {
        let Some(queue) = &listener.queue else { continue };
        if topology.queues.iter().any(|spec| spec.name == *queue && spec.lifetime == QueueLifetime::Exclusive) {
            continue;
        }
        for delay in listener.retry.delays() {
            let retry_queue = eventing::naming::retry_queue(queue, delay);
            let messages = match broker.message_count(&retry_queue).await {
                Ok(messages) => messages,
                Err(TransportError::NotFound { .. }) => continue,
                Err(error) => return Err(error.into()),
            };
            if messages == 0 {
                broker.delete_queue(&retry_queue).await?;
                deleted += 1;
                writeln!(console.out, "deleted queue {retry_queue}")?;
            } else {
                kept += 1;
                writeln!(
                    console.out,
                    "kept queue {retry_queue}: it holds {messages} retry(ies), which return to {queue} within {}ms; \
                     prune again then",
                    delay.as_millis()
                )?;
            }
        }
    }
    Ok(writeln!(console.out, "pruned {deleted} retry queue(s) of earlier versions, kept {kept}")?)
}

/// Asks `question` on the console; only a terminal's "y" or "yes" confirms.
fn confirm(console: &mut Console<'_>, question: &str) -> Result<(), CliError> {
    let refused = |reason| CliError::NotConfirmed { what: question.to_owned(), reason };
    if !console.interactive {
        return Err(refused(NotConfirmed::NotATerminal));
    }
    write!(console.err, "{question}? [y/N] ")?;
    console.err.flush()?;
    let mut answer = String::new();
    if console.input.read_line(&mut answer)? == 0 {
        return Err(refused(NotConfirmed::InputClosed));
    }
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(refused(NotConfirmed::Declined)),
    }
}

fn role_name(role: &QueueRole) -> &'static str {
    match role {
        QueueRole::Listener => "listener",
        QueueRole::DeadLetter => "dead-letter",
        QueueRole::Delay { .. } => "delay tier",
    }
}

/// The body as text: whole with `full`, else at most [`BODY_PREVIEW_BYTES`] cut at a
/// character boundary; and whether it was cut.
fn body_text(body: &[u8], full: bool) -> (Cow<'_, str>, bool) {
    if full || body.len() <= BODY_PREVIEW_BYTES {
        return (String::from_utf8_lossy(body), false);
    }
    let mut end = BODY_PREVIEW_BYTES;
    // Back to the start of a UTF-8 character (continuation bytes are 0b10xx_xxxx).
    while end > 0 && body.get(end).is_some_and(|byte| byte & 0xC0 == 0x80) {
        end -= 1;
    }
    (String::from_utf8_lossy(body.get(..end).unwrap_or_default()), true)
}

/// Text from a message, safe for a terminal: control characters (escape sequences,
/// carriage returns) are shown escaped instead of acting on the terminal.
fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect(),
    )
}

/// Headers other than eventing's own `x-eventing-*`.
fn custom_headers(message: &Message) -> impl Iterator<Item = (&String, &HeaderValue)> {
    message.headers.iter().filter(|(name, _)| !name.starts_with("x-eventing-"))
}

fn header_text(value: &HeaderValue) -> String {
    match value {
        HeaderValue::Text(text) => text.clone(),
        HeaderValue::Int(n) => n.to_string(),
        HeaderValue::Bool(b) => b.to_string(),
    }
}

fn describe(message: &Message, full: bool, out: &mut (dyn Write + Send)) -> std::io::Result<()> {
    let text = |name: &str| printable(message.header_text(name).unwrap_or("-")).into_owned();
    let time = |name: &str| match message.headers.get(name) {
        Some(HeaderValue::Int(millis)) => format_time(*millis),
        _ => "-".to_owned(),
    };
    let attempts = message.headers.get(header::ATTEMPTS).and_then(HeaderValue::as_int).unwrap_or(1);
    writeln!(out, "- {} `{}`", printable(&message.message_id), printable(&message.event_type))?;
    writeln!(out, "    reason:   {}", text(header::ERROR))?;
    writeln!(out, "    listener: {}  attempts: {attempts}", text(header::LISTENER))?;
    writeln!(out, "    failed:   first {}  last {}", time(header::FIRST_FAILURE_AT), time(header::LAST_FAILURE_AT))?;
    writeln!(out, "    from:     queue {}", text(header::ORIGINAL_QUEUE))?;
    for (name, value) in custom_headers(message) {
        writeln!(out, "    header:   {}: {}", printable(name), printable(&header_text(value)))?;
    }
    let (body, cut) = body_text(&message.body, full);
    write!(out, "    body:     {}", printable(&body))?;
    if cut {
        write!(out, " … ({} bytes in all; --full prints it)", message.body.len())?;
    }
    writeln!(out)
}

/// One dead letter as a JSON object (a line of `dlq list --json`).
fn to_json(message: &Message, queue: &str, full: bool) -> serde_json::Value {
    let text = |name: &str| message.header_text(name);
    let time = |name: &str| match message.headers.get(name) {
        Some(HeaderValue::Int(millis)) => Some(format_time(*millis)),
        _ => None,
    };
    let headers: serde_json::Map<String, serde_json::Value> = custom_headers(message)
        .map(|(name, value)| {
            let value = match value {
                HeaderValue::Text(text) => serde_json::Value::from(text.as_str()),
                HeaderValue::Int(n) => serde_json::Value::from(*n),
                HeaderValue::Bool(b) => serde_json::Value::from(*b),
            };
            (name.clone(), value)
        })
        .collect();
    let (body, cut) = body_text(&message.body, full);
    serde_json::json!({
        "queue": queue,
        "message_id": message.message_id,
        "event": message.event_type,
        "correlation_id": message.chain_id(),
        "reason": text(header::ERROR),
        "listener": text(header::LISTENER),
        "attempts": message.headers.get(header::ATTEMPTS).and_then(HeaderValue::as_int),
        "first_failure_at": time(header::FIRST_FAILURE_AT),
        "last_failure_at": time(header::LAST_FAILURE_AT),
        "original_queue": text(header::ORIGINAL_QUEUE),
        "original_exchange": text(header::ORIGINAL_EXCHANGE),
        "original_routing_key": text(header::ORIGINAL_ROUTING_KEY),
        "headers": headers,
        "body": body,
        "body_bytes": message.body.len(),
        "body_truncated": cut,
    })
}

/// Milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn format_time(millis: i64) -> String {
    let Ok(millis) = u64::try_from(millis) else { return millis.to_string() };
    let time = UNIX_EPOCH + Duration::from_millis(millis);
    let seconds = time.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        millis % 1000
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_tier(queue: &eventing::transport::QueueSpec) -> bool {
    matches!(queue.role, QueueRole::Delay { .. })
}

/// Whether `exchange` is the exchange of a delay tier (it has the tier's name).
fn is_tier_exchange(topology: &Topology, exchange: &str) -> bool {
    topology.queues.iter().any(|queue| is_tier(queue) && queue.name == exchange)
}

fn print_topology(topology: &Topology, out: &mut (dyn Write + Send)) -> std::io::Result<()> {
    for exchange in &topology.exchanges {
        if is_tier_exchange(topology, exchange) {
            writeln!(out, "exchange {exchange} (durable topic; of the delay tier of its name)")?;
        } else {
            writeln!(out, "exchange {exchange} (durable topic)")?;
        }
    }
    for queue in &topology.queues {
        let lifetime = match queue.lifetime {
            QueueLifetime::Durable => "durable".to_owned(),
            QueueLifetime::Expiring { idle } => format!("durable, expires after {}s idle", idle.as_secs()),
            QueueLifetime::Exclusive => "exclusive".to_owned(),
        };
        let role = match &queue.role {
            QueueRole::Listener => "listener".to_owned(),
            QueueRole::DeadLetter => "dead letters".to_owned(),
            QueueRole::Delay { delay, transient } => format!(
                "delay tier: retries wait {}ms, then return to the queue their routing key names{}",
                delay.as_millis(),
                if *transient { "; dropped if it is gone" } else { "" }
            ),
        };
        writeln!(out, "queue {} ({lifetime}; {role})", queue.name)?;
    }
    for binding in &topology.bindings {
        writeln!(out, "binding {} <- {} on `{}`", binding.queue, binding.exchange, binding.pattern)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{
        BODY_PREVIEW_BYTES, CliError, Console, InUse, NotConfirmed, NotDeadLetters, body_text, check_dead_letter_name,
        confirm, format_time, printable, report,
    };

    /// `confirm` with `answer` typed, on a terminal or not.
    fn answer(answer: &str, interactive: bool) -> (Result<(), CliError>, String) {
        let mut input = answer.as_bytes();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut console = Console { input: &mut input, interactive, out: &mut out, err: &mut err };
        let result = confirm(&mut console, "purge 3 dead letter(s)");
        (result, String::from_utf8_lossy(&err).into_owned())
    }

    #[test]
    fn only_a_terminal_saying_yes_confirms() {
        let (yes, asked) = answer("y\n", true);
        assert!(yes.is_ok());
        assert_eq!(asked, "purge 3 dead letter(s)? [y/N] ");
        assert!(answer(" YES \n", true).0.is_ok());
        for (typed, why) in [("n\n", "not confirmed;"), ("\n", "not confirmed;"), ("", "stdin closed")] {
            let error = answer(typed, true).0.expect_err(typed).to_string();
            assert!(error.contains(why) && error.contains("nothing was changed"), "{typed:?}: {error}");
        }
        let (piped, asked) = answer("y\n", false);
        let error = piped.expect_err("a pipe cannot confirm").to_string();
        assert!(error.contains("stdin is not a terminal (pass --yes to confirm)"), "{error}");
        assert!(asked.is_empty(), "nothing asked without a terminal");
    }

    #[test]
    fn refusals_are_typed_and_keep_their_wording() {
        assert!(matches!(answer("n\n", true).0, Err(CliError::NotConfirmed { reason: NotConfirmed::Declined, .. })));
        assert!(matches!(answer("", true).0, Err(CliError::NotConfirmed { reason: NotConfirmed::InputClosed, .. })));
        assert!(matches!(
            answer("y\n", false).0,
            Err(CliError::NotConfirmed { reason: NotConfirmed::NotATerminal, .. })
        ));

        let error = check_dead_letter_name("shop.user_created.send_mail", "purge").expect_err("not a dead-letter name");
        assert!(
            matches!(&error, CliError::Refused { action: "purge", reason: NotDeadLetters::Name { .. }, .. }),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "refusing to purge `shop.user_created.send_mail`: it is not a dead-letter queue: their names end in \
             `.dead_letter` (`<service>.<event>.<listener>.dead_letter`)"
        );

        let in_use = CliError::TopologyInUse {
            problems: vec![
                InUse::DeadLetters { queue: "a.dead_letter".into(), messages: 2 },
                InUse::Consumers { queue: "a".into(), consumers: 1 },
            ],
        };
        assert_eq!(
            in_use.to_string(),
            "refusing to delete the topology: `a.dead_letter` holds 2 dead letter(s) (requeue or purge them first); \
             `a` has 1 consumer(s): its service is running; pass --force to delete anyway (their messages are lost)"
        );
    }

    #[test]
    fn an_event_name_error_keeps_its_cause() {
        let source = eventing::naming::check_event_name("billing..paid").expect_err("empty word");
        let error = CliError::EventName { name: "billing..paid".into(), source };
        assert_eq!(
            error.to_string(),
            "invalid event name `billing..paid`: it has an empty dot-separated word; nothing was sent"
        );
        assert!(matches!(
            std::error::Error::source(&error).and_then(|cause| cause.downcast_ref()),
            Some(eventing::naming::NameError::EmptyWord)
        ));
        assert_eq!(report(&error), error.to_string(), "a cause the message says is not repeated");
    }

    #[test]
    fn causes_the_message_does_not_say_are_printed() {
        let io = std::io::Error::other("disk on fire");
        let error = CliError::Registry(eventing::Error::Transport(eventing::transport::TransportError::Other {
            context: "declaring".into(),
            source: Box::new(io),
        }));
        assert_eq!(report(&error), error.to_string());
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        assert_eq!(report(&Outer(std::io::Error::other("inner"))), "outer\n  caused by: inner");
    }

    #[test]
    fn bodies_are_cut_at_a_character_boundary() {
        let body = format!("{}é", "a".repeat(BODY_PREVIEW_BYTES - 1)).into_bytes();
        let (text, cut) = body_text(&body, false);
        assert!(cut);
        assert_eq!(text.len(), BODY_PREVIEW_BYTES - 1, "the split `é` is left out, not mangled");
        assert!(!text.contains('\u{fffd}'));
        assert_eq!(body_text(&body, true), (String::from_utf8_lossy(&body), false));
        assert_eq!(body_text(b"{}", false), ("{}".into(), false));
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("plain"), "plain");
        assert_eq!(printable("\u{1b}[2Jgone\r\n"), "\\u{1b}[2Jgone\\r\\n");
    }

    #[test]
    fn times_print_as_utc() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_time(1_795_466_913_857), "2026-11-23T20:48:33.857Z");
        assert_eq!(format_time(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
