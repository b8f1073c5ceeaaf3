use eventing::request;
use serde::{Deserialize, Serialize};

pub struct Sum {
    pub answer: i64,
}

#[request(reply = Sum)]
#[derive(Serialize, Deserialize)]
pub struct Add {
    pub x: i64,
}

#[request]
pub struct NoSerde {
    pub x: i64,
}

fn main() {}
