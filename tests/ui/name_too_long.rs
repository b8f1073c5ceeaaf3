// An event name longer than AMQP's short strings (255 bytes) is refused where it is written.
use eventing::event;
use serde::{Deserialize, Serialize};

#[event(name = "billing.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Overlong {
    pub n: u64,
}

fn main() {}
