use eventing::event;

#[event]
#[derive(Debug, Clone)]
pub struct UserCreated {
    pub user_id: u64,
}

fn main() {}
