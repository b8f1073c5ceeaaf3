use eventing::{event, event_listener};

#[event]
pub fn not_a_type() {}

#[event_listener]
pub struct NotAnImpl;

#[derive(Default)]
pub struct Handler;

#[event_listener]
impl Handler {
    pub fn helper(&self) {}
}

fn main() {}
