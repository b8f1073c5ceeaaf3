//! End-to-end throughput of the in-memory transport: publish → route → decode → handler →
//! ack, through one listener, against a reference measured in the same run: a bare tokio
//! `mpsc` channel carrying the same serde_json bodies from a spawned publisher to a spawned
//! consumer that decodes them (no routing, no acks, no metadata: the floor of any in-process
//! event bus).
//!
//! With `--features count-allocations` the global allocator counts heap allocations and
//! each side reports its allocations per event. The count is kept out of timed runs by
//! default: its shared atomic counters, hit by both workers, slow both sides.
//!
//! `cargo run --release --example bench_memory [--features count-allocations] [-- --messages N]`;
//! `-- --eventing-only` runs eventing's side alone (for a profiler).

use std::sync::Arc;
use std::time::Instant;

use eventing::{Context, FromState, HandlerError, Listener, MissingState, State, event, event_listener};
use eventing_examples::{Progress, status_kib};
use serde::{Deserialize, Serialize};

#[cfg(feature = "count-allocations")]
#[global_allocator]
static GLOBAL: &stats_alloc::StatsAlloc<std::alloc::System> = &stats_alloc::INSTRUMENTED_SYSTEM;

/// Heap allocations so far (reallocations included); `None` without the counting allocator.
fn allocations() -> Option<usize> {
    #[cfg(feature = "count-allocations")]
    {
        let stats = GLOBAL.stats();
        Some(stats.allocations + stats.reallocations)
    }
    #[cfg(not(feature = "count-allocations"))]
    None
}

/// Allocations since `before`, per event.
fn per_event(before: Option<usize>, messages: u64) -> Option<f64> {
    Some((allocations()? - before?) as f64 / messages as f64)
}

/// A small event (about 60 bytes of JSON).
#[event(name = "bench.tick")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tick {
    pub sequence: u64,
    pub account: String,
    pub amount_cents: i64,
}

#[derive(Debug)]
pub struct Count {
    progress: Arc<Progress>,
}

impl FromState for Count {
    fn from_state(state: &State) -> Result<Self, MissingState> {
        Ok(Self { progress: Arc::clone(state.get::<Arc<Progress>>()?) })
    }
}

#[event_listener]
impl Listener<Tick> for Count {
    async fn on(&self, tick: Tick, _ctx: &Context) -> Result<(), HandlerError> {
        std::hint::black_box(tick);
        self.progress.handled_one();
        Ok(())
    }
}

/// The reference: serde_json bodies through a bounded `mpsc` channel, publisher and
/// consumer on spawned tasks. Returns messages per second, end to end, and allocations.
async fn bare_channel(messages: u64) -> Result<(f64, Option<f64>), Box<dyn std::error::Error>> {
    let allocations_before = allocations();
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Vec<u8>>(1024);
    let started = Instant::now();
    let consumer = tokio::spawn(async move {
        let mut received = 0_u64;
        while let Some(body) = receiver.recv().await {
            let tick: Tick = serde_json::from_slice(&body)?;
            std::hint::black_box(tick);
            received += 1;
        }
        Ok::<_, serde_json::Error>(received)
    });
    let publisher = tokio::spawn(async move {
        let account = "acct-0001-eu-west".to_owned();
        for sequence in 0..messages {
            let body = serde_json::to_vec(&Tick { sequence, account: account.clone(), amount_cents: 1_250 })?;
            if sender.send(body).await.is_err() {
                break;
            }
        }
        Ok::<_, serde_json::Error>(())
    });
    publisher.await??;
    let received = consumer.await??;
    assert_eq!(received, messages, "the reference consumer saw every message");
    Ok((messages as f64 / started.elapsed().as_secs_f64(), per_event(allocations_before, messages)))
}

fn messages_from_args() -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|arg| arg == "--messages")
        .and_then(|index| args.get(index + 1))
        .and_then(|value| value.parse().ok())
        .unwrap_or(1_000_000)
}

#[allow(clippy::print_stdout)] // the benchmark's report is its output
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let messages = messages_from_args();
    let progress = Arc::new(Progress::default());
    progress.expect(messages);
    let broker = eventing::memory::MemoryBroker::new();
    let bus = eventing::builder().transport(broker.transport()).state(Arc::clone(&progress)).start().await?;

    let rss_before = status_kib("VmHWM:");
    let done = progress.done.notified();
    tokio::pin!(done);
    done.as_mut().enable();
    let allocations_before = allocations();
    let started = Instant::now();
    // The publisher runs as a task on the runtime's two workers, beside the consumer.
    let publisher = tokio::spawn({
        let bus = bus.clone();
        async move {
            let account = "acct-0001-eu-west".to_owned();
            for sequence in 0..messages {
                bus.publish(&Tick { sequence, account: account.clone(), amount_cents: 1_250 }).await?;
            }
            Ok::<_, eventing::Error>(started.elapsed())
        }
    });
    let published = publisher.await??;
    done.await;
    let elapsed = started.elapsed();
    let allocated = per_event(allocations_before, messages);
    bus.shutdown().await?;
    let peak = status_kib("VmHWM:");
    let per_second = |seconds: f64| (messages as f64 / seconds) as u64;
    if std::env::args().any(|arg| arg == "--eventing-only") {
        println!("end_to_end_msgs_per_s={}", per_second(elapsed.as_secs_f64()));
        return Ok(());
    }
    // The reference runs second, on the same runtime, so that its allocations do not
    // change the allocator's state under eventing's run.
    let (reference, reference_allocated) = bare_channel(messages).await?;

    println!("messages={messages}");
    println!("publish_msgs_per_s={}", per_second(published.as_secs_f64()));
    println!("end_to_end_msgs_per_s={}", per_second(elapsed.as_secs_f64()));
    println!("elapsed_ms={}", elapsed.as_millis());
    println!("reference_msgs_per_s={}", reference as u64);
    println!("ratio_to_bare_channel={:.2}", messages as f64 / elapsed.as_secs_f64() / reference);
    if let (Some(allocated), Some(reference_allocated)) = (allocated, reference_allocated) {
        println!("allocations_per_event={allocated:.2}");
        println!("reference_allocations_per_event={reference_allocated:.2}");
    }
    if let (Some(before), Some(peak)) = (rss_before, peak) {
        println!("peak_rss_kib={peak} (at start {before})");
    }
    Ok(())
}
