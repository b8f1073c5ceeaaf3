//! DESIGN.md part 2, "Request/response and fire-and-forget": the example verbatim (its
//! items at the top level, its statements in a function), compiled and run in memory.

use design::{Add, Sum};

#[rustfmt::skip]
#[allow(unused_variables)] // `ctx`, and the first `sum`, as written in the design
mod design {
use std::time::Duration;
use serde::{Deserialize, Serialize};

// ---- DESIGN.md, verbatim from here ----
use eventing::{request, request_handler, Context, HandlerError, RequestError, RequestHandler};

#[request(name = "math.add", reply = Sum)]      // name defaults to snake case, as for events
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Add { pub x: i64, pub y: i64 }

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sum { pub answer: i64 }

#[derive(Default)]
pub struct Calculator;

#[request_handler]                              // queue `request.math.add`, shared by all handlers
impl RequestHandler<Add> for Calculator {
    async fn on(&self, request: Add, ctx: &Context) -> Result<Sum, HandlerError> {
        Ok(Sum { answer: request.x + request.y })
    }
}

pub async fn design_statements(bus: &eventing::Bus) -> Result<(), RequestError> {
let sum: Sum = bus.request(&Add { x: 1, y: 1 }).await?;                         // timeout 30 s
let sum: Sum = bus.request_within(&Add { x: 1, y: 1 }, Duration::from_secs(2)).await?;
bus.send(&Add { x: 1, y: 2 }).await?;          // fire and forget: handled once, no reply
// errors: RequestError::Failed { .. } (the handler's error text; also panics and
// undecodable requests), RequestError::Timeout { .. }, RequestError::NoHandler { .. }
    assert_eq!(sum, Sum { answer: 2 });
    Ok(())
}
// ---- to here ----
}

#[tokio::test]
async fn the_design_example_runs() {
    let bus = eventing::testing::TestBus::start().await.expect("bus");
    assert_eq!(bus.bus().request(&Add { x: 20, y: 22 }).await.expect("reply"), Sum { answer: 42 });
    design::design_statements(bus.bus()).await.expect("requests");
    bus.settle().await.expect("settled");
    let topology = bus.bus().topology();
    assert!(topology.queues.iter().any(|queue| queue.name == "request.math.add"), "{topology:?}");
    assert!(
        topology.bindings.iter().any(|binding| binding.queue == "request.math.add" && binding.pattern == "math.add"),
        "{topology:?}"
    );
    bus.shutdown().await.expect("shutdown");
}
