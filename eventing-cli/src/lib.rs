//! The `eventing` operator command, as a library so a service can ship it with its own
//! listeners linked in (then `topology` shows that service's queues):
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
//! - `eventing topology` — the exchange, queues and bindings the registry and configuration
//!   declare (`EVENTING_SERVICE`, `EVENTING_EXCHANGE`, `EVENTING_PROCESS_ID` apply);
//! - `eventing dlq list <queue> [--limit N]` — dead letters with reason, attempts, times;
//! - `eventing dlq requeue <queue> [--limit N]` — back to the listener that failed, as a
//!   first attempt; each is confirmed by the broker before it leaves the dead-letter queue;
//! - `eventing dlq purge <queue>` — delete every dead letter of the queue.
//!
//! The broker comes from `--url` or `EVENTING_URL`.
#![warn(missing_docs, unreachable_pub)]

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use eventing::message::{HeaderValue, Message, header};
use eventing::transport::{QueueLifetime, QueueRole, Topology, redact_url};
use eventing_amqp::{AmqpOptions, AmqpTransport};

/// Operate eventing's queues on RabbitMQ.
#[derive(Debug, Parser)]
#[command(name = "eventing", version, about)]
struct Cli {
    /// The broker, e.g. amqp://guest:guest@127.0.0.1:5672/%2f.
    #[arg(long, env = "EVENTING_URL", global = true)]
    url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// What the registry and configuration declare: exchange, queues, bindings.
    Topology,
    /// Dead-letter queues.
    Dlq {
        #[command(subcommand)]
        action: Dlq,
    },
}

#[derive(Debug, Subcommand)]
enum Dlq {
    /// Show dead letters (left in the queue).
    List {
        /// The dead-letter queue, e.g. shop.user_created.send_mail.dead_letter.
        queue: String,
        /// Show at most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Send dead letters back to the listener that failed, attempts reset.
    Requeue {
        /// The dead-letter queue.
        queue: String,
        /// Requeue at most this many (default: all).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Delete every dead letter of the queue.
    Purge {
        /// The dead-letter queue.
        queue: String,
    },
}

/// Runs the command line `args` (the program name first); prints to stdout, errors to stderr.
pub async fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    let mut out = std::io::stdout().lock();
    match run(cli, &mut out).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "eventing: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, out: &mut impl Write) -> Result<(), String> {
    match cli.command {
        Command::Topology => {
            let topology = eventing::builder().topology().map_err(|error| error.to_string())?;
            print_topology(&topology, out).map_err(|error| error.to_string())
        }
        Command::Dlq { action } => {
            let url = cli.url.ok_or("no broker: pass --url amqp://... or set EVENTING_URL")?;
            if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
                return Err(format!("`{}`: dead-letter queues are on RabbitMQ; give an amqp:// URL", redact_url(&url)));
            }
            let options = AmqpOptions { connection_name: "eventing-cli".into(), ..AmqpOptions::default() };
            let broker = AmqpTransport::connect(&url, options).await.map_err(|error| error.to_string())?;
            let result = dlq(&broker, action, out).await;
            let _ = eventing::transport::Transport::close(&broker).await;
            result
        }
    }
}

async fn dlq(broker: &AmqpTransport, action: Dlq, out: &mut impl Write) -> Result<(), String> {
    let io = |error: std::io::Error| error.to_string();
    match action {
        Dlq::List { queue, limit } => {
            let total = broker.message_count(&queue).await.map_err(|error| error.to_string())?;
            let messages = broker.peek(&queue, limit).await.map_err(|error| error.to_string())?;
            writeln!(out, "{total} dead letter(s) in `{queue}`").map_err(io)?;
            for message in &messages {
                describe(message, out).map_err(io)?;
            }
            Ok(())
        }
        Dlq::Requeue { queue, limit } => {
            let moved = broker
                .requeue_dead_letters(&queue, limit.unwrap_or(usize::MAX))
                .await
                .map_err(|error| error.to_string())?;
            writeln!(out, "requeued {moved} dead letter(s) from `{queue}`").map_err(io)
        }
        Dlq::Purge { queue } => {
            let purged = broker.purge(&queue).await.map_err(|error| error.to_string())?;
            writeln!(out, "purged {purged} dead letter(s) from `{queue}`").map_err(io)
        }
    }
}

fn describe(message: &Message, out: &mut impl Write) -> std::io::Result<()> {
    let text = |name: &str| message.header_text(name).unwrap_or("-").to_owned();
    let time = |name: &str| match message.headers.get(name) {
        Some(HeaderValue::Int(millis)) => format_time(*millis),
        _ => "-".to_owned(),
    };
    let attempts = message.headers.get(header::ATTEMPTS).and_then(HeaderValue::as_int).unwrap_or(1);
    writeln!(out, "- {} `{}`", message.message_id, message.event_type)?;
    writeln!(out, "    reason:   {}", text(header::ERROR))?;
    writeln!(out, "    listener: {}  attempts: {attempts}", text(header::LISTENER))?;
    writeln!(out, "    failed:   first {}  last {}", time(header::FIRST_FAILURE_AT), time(header::LAST_FAILURE_AT))?;
    writeln!(out, "    from:     queue {}", text(header::ORIGINAL_QUEUE))?;
    writeln!(out, "    body:     {}", String::from_utf8_lossy(&message.body))
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

fn print_topology(topology: &Topology, out: &mut impl Write) -> std::io::Result<()> {
    for exchange in &topology.exchanges {
        writeln!(out, "exchange {exchange} (durable topic)")?;
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
            QueueRole::Retry { delay, target } => format!("retry after {}ms into {target}", delay.as_millis()),
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
    use super::format_time;

    #[test]
    fn times_print_as_utc() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_time(1_795_466_913_857), "2026-11-23T20:48:33.857Z");
        assert_eq!(format_time(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
