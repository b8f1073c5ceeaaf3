//! The request/response suite, run on the in-memory broker (`requests_memory.rs`) and on
//! RabbitMQ (`requests_amqp.rs`) with the same bodies. It lives apart from the conformance
//! suite so that its request handlers are linked only into these two binaries (every bus
//! of a binary would otherwise declare their queues).
//!
//! Each test uses request types of its own (request queues are named after the request, not
//! the service) and its own exchange, serves only its own requests (`.listeners(..)`), and
//! deletes its `request.<name>` queues at the end.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use eventing::{
    Builder, Bus, Context, Envelope, HandlerError, Interceptor, Next, Request, RequestError, RequestHandler, request,
    request_handler,
};
use serde::{Deserialize, Serialize};

/// A broker to run the suite on.
pub trait Backend: Send + Sync + 'static {
    /// A builder whose `start` connects to this backend's broker.
    fn builder(&self) -> Builder;
    /// Deletes the request queues and the exchange a test used.
    fn cleanup(&self, exchange: &str, queues: &[String]) -> impl Future<Output = ()> + Send;
}

/// A unique exchange for one test.
pub fn exchange(test: &str) -> String {
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("reqs-{test}-{}-{nanos}", std::process::id())
}

/// A bus that serves only the requests named in `serves` (none: a pure caller).
pub async fn bus(backend: &impl Backend, exchange: &str, serves: &'static [&'static str]) -> Bus {
    backend
        .builder()
        .exchange(exchange)
        .service("reqsuite")
        .listeners(move |info| serves.contains(&info.event))
        .start()
        .await
        .expect("bus starts")
}

fn queues(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| format!("request.{name}")).collect()
}

// --- a typed reply from another bus ---------------------------------------------------

#[request(name = "reqsuite.add", reply = Sum)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Add {
    pub x: i64,
    pub y: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sum {
    pub answer: i64,
}

#[derive(Default)]
pub struct Adder;

#[request_handler]
impl RequestHandler<Add> for Adder {
    async fn on(&self, request: Add, _ctx: &Context) -> Result<Sum, HandlerError> {
        Ok(Sum { answer: request.x + request.y })
    }
}

pub async fn typed_reply_from_another_bus(backend: impl Backend) {
    let exchange = exchange("typed");
    let server = bus(&backend, &exchange, &[Add::NAME]).await;
    let caller = bus(&backend, &exchange, &[]).await;
    let sum = caller.request(&Add { x: 1, y: 1 }).await.expect("reply");
    assert_eq!(sum, Sum { answer: 2 });
    let sum = caller.request_within(&Add { x: 40, y: 2 }, Duration::from_secs(2)).await.expect("reply");
    assert_eq!(sum, Sum { answer: 42 });
    caller.shutdown().await.expect("shutdown");
    server.shutdown().await.expect("shutdown");
    backend.cleanup(&exchange, &queues(&[Add::NAME])).await;
}

// --- 1 000 concurrent requests --------------------------------------------------------

#[request(name = "reqsuite.echo", reply = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Echo {
    pub n: u64,
}

#[derive(Default)]
pub struct Echoer;

#[request_handler(concurrency = 64)]
impl RequestHandler<Echo> for Echoer {
    async fn on(&self, request: Echo, _ctx: &Context) -> Result<u64, HandlerError> {
        // Out of order on purpose: replies come back in another order than the calls.
        tokio::time::sleep(Duration::from_millis(request.n % 7)).await;
        Ok(request.n * 3)
    }
}

pub async fn concurrent_requests_get_their_own_replies(backend: impl Backend) {
    let exchange = exchange("concurrent");
    let server = bus(&backend, &exchange, &[Echo::NAME]).await;
    let caller = bus(&backend, &exchange, &[]).await;
    let calls = (0..1_000u64).map(|n| {
        let caller = caller.clone();
        tokio::spawn(async move { (n, caller.request_within(&Echo { n }, Duration::from_secs(30)).await) })
    });
    let results = futures_util::future::join_all(calls).await;
    for result in results {
        let (n, reply) = result.expect("task");
        assert_eq!(reply.expect("reply"), n * 3, "request {n} got another request's reply");
    }
    caller.shutdown().await.expect("shutdown");
    server.shutdown().await.expect("shutdown");
    backend.cleanup(&exchange, &queues(&[Echo::NAME])).await;
}

// --- failures come back as Failed -----------------------------------------------------

#[request(name = "reqsuite.fail")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fail {
    pub panic: bool,
}

/// An error with a source, to check the chain comes back.
#[derive(Debug)]
pub struct Outer(std::io::Error);

impl std::fmt::Display for Outer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the ledger is locked")
    }
}

impl std::error::Error for Outer {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

#[derive(Default)]
pub struct Failer;

#[request_handler]
impl RequestHandler<Fail> for Failer {
    async fn on(&self, request: Fail, _ctx: &Context) -> Result<(), HandlerError> {
        if request.panic {
            panic!("the abacus broke");
        }
        Err(Outer(std::io::Error::other("disk on fire")).into())
    }
}

pub async fn handler_errors_come_back_as_failed(backend: impl Backend) {
    let exchange = exchange("failed");
    let server = bus(&backend, &exchange, &[Fail::NAME]).await;
    let caller = bus(&backend, &exchange, &[]).await;
    match caller.request(&Fail { panic: false }).await {
        Err(RequestError::Failed { request, error }) => {
            assert_eq!(request, Fail::NAME);
            assert_eq!(error, "the ledger is locked: disk on fire");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    match caller.request(&Fail { panic: true }).await {
        Err(RequestError::Failed { error, .. }) => assert!(error.contains("the abacus broke"), "{error}"),
        other => panic!("expected Failed, got {other:?}"),
    }
    caller.shutdown().await.expect("shutdown");
    server.shutdown().await.expect("shutdown");
    backend.cleanup(&exchange, &queues(&[Fail::NAME])).await;
}

// --- Timeout, NoHandler, shutdown -------------------------------------------------------

#[request(name = "reqsuite.slow")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Slow {
    pub millis: u64,
}

#[derive(Default)]
pub struct Sleeper;

#[request_handler]
impl RequestHandler<Slow> for Sleeper {
    async fn on(&self, request: Slow, _ctx: &Context) -> Result<(), HandlerError> {
        tokio::time::sleep(Duration::from_millis(request.millis)).await;
        Ok(())
    }
}

pub async fn timeout_is_honoured(backend: impl Backend) {
    let exchange = exchange("timeout");
    let server = bus(&backend, &exchange, &[Slow::NAME]).await;
    let caller = bus(&backend, &exchange, &[]).await;
    let deadline = Duration::from_secs(1);
    let started = Instant::now();
    let result = caller.request_within(&Slow { millis: 3_000 }, deadline).await;
    let took = started.elapsed();
    assert!(matches!(result, Err(RequestError::Timeout { timeout, .. }) if timeout == deadline), "{result:?}");
    assert!(took >= deadline && took <= deadline.mul_f64(1.1), "timed out after {took:?}, deadline {deadline:?}");
    // The builder's default applies to `request`.
    let short = backend
        .builder()
        .exchange(&exchange)
        .listeners(|_| false)
        .request_timeout(Duration::from_millis(300))
        .start()
        .await
        .expect("bus");
    let started = Instant::now();
    assert!(matches!(short.request(&Slow { millis: 2_000 }).await, Err(RequestError::Timeout { .. })));
    assert!(started.elapsed() < Duration::from_millis(330), "{:?}", started.elapsed());
    short.shutdown().await.expect("shutdown");
    caller.shutdown().await.expect("shutdown");
    server.shutdown().await.expect("shutdown");
    backend.cleanup(&exchange, &queues(&[Slow::NAME])).await;
}

#[request(name = "reqsuite.orphan")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Orphan {}

pub async fn no_handler_fails_fast(backend: impl Backend) {
    let exchange = exchange("nohandler");
    let caller = bus(&backend, &exchange, &[]).await;
    let started = Instant::now();
    let result = caller.request(&Orphan {}).await;
    assert!(matches!(&result, Err(RequestError::NoHandler { request }) if request == Orphan::NAME), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    assert!(matches!(caller.send(&Orphan {}).await, Err(RequestError::NoHandler { .. })));
    caller.shutdown().await.expect("shutdown");
    backend.cleanup(&exchange, &[]).await;
}

/// An unserved request fails fast while served ones keep replies streaming in on the same
/// connection (on RabbitMQ the return is found by polling between replies), and the served
/// ones are not disturbed.
pub async fn no_handler_fails_fast_amid_replies(backend: impl Backend) {
    let exchange = exchange("nohandler-amid");
    let server = bus(&backend, &exchange, &[Echo::NAME]).await;
    let caller = bus(&backend, &exchange, &[]).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let streams: Vec<_> = (0..8u64)
        .map(|stream| {
            let caller = caller.clone();
            let stop = std::sync::Arc::clone(&stop);
            tokio::spawn(async move {
                let mut served = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let n = stream * 1_000_000 + served;
                    let reply = caller.request_within(&Echo { n }, Duration::from_secs(30)).await.expect("served");
                    assert_eq!(reply, n * 3);
                    served += 1;
                }
                served
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..5 {
        let started = Instant::now();
        let result = caller.request(&Orphan {}).await;
        assert!(matches!(&result, Err(RequestError::NoHandler { .. })), "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut served = 0;
    for stream in streams {
        served += stream.await.expect("stream");
    }
    assert!(served > 8, "the served requests did not keep coming: {served}");
    caller.shutdown().await.expect("shutdown");
    server.shutdown().await.expect("shutdown");
    backend.cleanup(&exchange, &queues(&[Echo::NAME])).await;
}

#[request(name = "reqsuite.linger")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Linger {}

#[derive(Default)]
pub struct Lingerer;

#[request_handler]
impl RequestHandler<Linger> for Lingerer {
    async fn on(&self, _request: Linger, _ctx: &Context) -> Result<(), HandlerError> {
        tokio::time::sleep(Duration::from_secs(2)).await;
        Ok(())
    }
}

pub async fn shutdown_fails_pending_requests(backend: impl Backend) {
    let exchange = exchange("shutdown");
    let server = bus(&backend, &exchange, &[Linger::NAME]).await;
    let caller = bus(&backend, &exchange, &[]).await;
    let pending = {
        let caller = caller.clone();
        tokio::spawn(async move { caller.request_within(&Linger {}, Duration::from_secs(60)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    caller.shutdown().await.expect("shutdown");
    let result = tokio::time::timeout(Duration::from_secs(5), pending).await.expect("not hanging").expect("task");
    assert!(matches!(&result, Err(RequestError::ShutDown { .. })), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert!(matches!(caller.request(&Linger {}).await, Err(RequestError::ShutDown { .. })));
    server.shutdown().await.expect("shutdown");
    backend.cleanup(&exchange, &queues(&[Linger::NAME])).await;
}

// --- send: handled once ---------------------------------------------------------------

#[request(name = "reqsuite.count")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Count {
    pub run: String,
    pub n: u32,
}

static COUNTED: Mutex<Vec<(String, u32)>> = Mutex::new(Vec::new());

#[derive(Default)]
pub struct Counter;

#[request_handler]
impl RequestHandler<Count> for Counter {
    async fn on(&self, request: Count, _ctx: &Context) -> Result<(), HandlerError> {
        COUNTED.lock().unwrap_or_else(PoisonError::into_inner).push((request.run, request.n));
        Ok(())
    }
}

pub async fn send_is_handled_once(backend: impl Backend) {
    let exchange = exchange("send");
    // Two serving buses (two processes of a service, or two services): each send once.
    let first = bus(&backend, &exchange, &[Count::NAME]).await;
    let second = bus(&backend, &exchange, &[Count::NAME]).await;
    let caller = bus(&backend, &exchange, &[]).await;
    for n in 0..50 {
        caller.send(&Count { run: exchange.clone(), n }).await.expect("sent");
    }
    let counts = || {
        let mut counts: HashMap<u32, usize> = HashMap::new();
        for (run, n) in COUNTED.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            if *run == exchange {
                *counts.entry(*n).or_default() += 1;
            }
        }
        counts
    };
    let started = Instant::now();
    while counts().len() < 50 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let counts = counts();
    assert_eq!(counts.len(), 50, "{counts:?}");
    assert!(counts.values().all(|count| *count == 1), "handled more than once: {counts:?}");
    caller.shutdown().await.expect("shutdown");
    first.shutdown().await.expect("shutdown");
    second.shutdown().await.expect("shutdown");
    backend.cleanup(&exchange, &queues(&[Count::NAME])).await;
}

// --- Context::request keeps the chain -------------------------------------------------

#[request(name = "reqsuite.double_add", reply = Sum)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DoubleAdd {
    pub x: i64,
}

#[derive(Default)]
pub struct DoubleAdder;

#[request_handler]
impl RequestHandler<DoubleAdd> for DoubleAdder {
    async fn on(&self, request: DoubleAdd, ctx: &Context) -> Result<Sum, HandlerError> {
        // Two requests at once from one handler: each gets its own reply.
        let (left, right) = (Add { x: request.x, y: 0 }, Add { x: 0, y: request.x });
        let (a, b) = tokio::join!(ctx.request(&left), ctx.request(&right));
        Ok(Sum { answer: a?.answer + b?.answer })
    }
}

pub async fn context_requests_from_a_handler(backend: impl Backend) {
    let exchange = exchange("ctx");
    let server = bus(&backend, &exchange, &[DoubleAdd::NAME, Add::NAME]).await;
    let caller = bus(&backend, &exchange, &[]).await;
    assert_eq!(caller.request(&DoubleAdd { x: 21 }).await.expect("reply"), Sum { answer: 42 });
    caller.shutdown().await.expect("shutdown");
    server.shutdown().await.expect("shutdown");
    backend.cleanup(&exchange, &queues(&[DoubleAdd::NAME, Add::NAME])).await;
}

// --- interceptors run on requests, on both sides ---------------------------------------

tokio::task_local! {
    static TENANT: String;
}

/// DESIGN.md's tenant propagation, given to the builder (a registered one would run on
/// every bus of the suite), recording what its `handle` saw.
struct TenantPropagation;

impl Interceptor for TenantPropagation {
    fn send(&self, envelope: &mut Envelope) {
        if let Ok(tenant) = TENANT.try_with(Clone::clone) {
            envelope.set("tenant", tenant);
        }
    }

    async fn handle(&self, envelope: &Envelope, next: Next<'_>) -> Result<(), HandlerError> {
        let tenant = envelope.get("tenant").unwrap_or("none").to_owned();
        HANDLED_BY_INTERCEPTOR.lock().unwrap_or_else(PoisonError::into_inner).push(format!(
            "{} for {} in {}",
            envelope.event_name(),
            tenant,
            envelope.listener().unwrap_or("?")
        ));
        TENANT.scope(tenant, next.run()).await
    }
}

/// What `TenantPropagation::handle` saw: `<request> for <tenant> in <handler>`.
static HANDLED_BY_INTERCEPTOR: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[request(name = "reqsuite.whoami", reply = String)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WhoAmI {}

#[derive(Default)]
pub struct WhoAmIHandler;

#[request_handler]
impl RequestHandler<WhoAmI> for WhoAmIHandler {
    async fn on(&self, _request: WhoAmI, _ctx: &Context) -> Result<String, HandlerError> {
        Ok(TENANT.try_with(Clone::clone).unwrap_or_else(|_| "no interceptor ran".to_owned()))
    }
}

pub async fn interceptors_see_requests_on_both_sides(backend: impl Backend) {
    let exchange = exchange("intercepted");
    let intercepted = |serves: &'static [&'static str]| {
        backend
            .builder()
            .exchange(&exchange)
            .service("reqsuite")
            .interceptor(TenantPropagation)
            .listeners(move |info| serves.contains(&info.event))
            .start()
    };
    let server = intercepted(&[WhoAmI::NAME]).await.expect("server starts");
    let caller = intercepted(&[]).await.expect("caller starts");
    let run = WhoAmI {};
    let tenant = TENANT.scope("acme".to_owned(), caller.request(&run)).await.expect("reply");
    assert_eq!(tenant, "acme", "the caller's task-local reached the request handler");
    let tenant = caller.request(&run).await.expect("reply");
    assert_eq!(tenant, "none", "no tenant on the caller: the interceptor's default");
    TENANT.scope("globex".to_owned(), caller.send(&run)).await.expect("sent");
    let expected = [
        "reqsuite.whoami for acme in who_am_i_handler",
        "reqsuite.whoami for none in who_am_i_handler",
        "reqsuite.whoami for globex in who_am_i_handler",
    ];
    let started = Instant::now();
    while HANDLED_BY_INTERCEPTOR.lock().unwrap_or_else(PoisonError::into_inner).len() < expected.len()
        && started.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = std::mem::take(&mut *HANDLED_BY_INTERCEPTOR.lock().unwrap_or_else(PoisonError::into_inner));
    assert_eq!(seen, expected, "the server's interceptor handled every request and the send");
    caller.shutdown().await.expect("shutdown");
    server.shutdown().await.expect("shutdown");
    backend.cleanup(&exchange, &queues(&[WhoAmI::NAME])).await;
}

/// Expands one `#[tokio::test]` per suite test, each with a fresh backend from `$backend`
/// (an `async fn() -> Option<B>`; `None` skips).
#[macro_export]
macro_rules! request_suite {
    ($backend:ident) => {
        $crate::request_suite!(@tests $backend:
            typed_reply_from_another_bus,
            concurrent_requests_get_their_own_replies,
            handler_errors_come_back_as_failed,
            timeout_is_honoured,
            no_handler_fails_fast,
            no_handler_fails_fast_amid_replies,
            shutdown_fails_pending_requests,
            send_is_handled_once,
            context_requests_from_a_handler,
            interceptors_see_requests_on_both_sides,
        );
    };
    (@tests $backend:ident: $($test:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                if let Some(backend) = $backend().await {
                    request_suite::$test(backend).await;
                }
            }
        )*
    };
}
