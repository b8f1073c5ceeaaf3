//! Two event types with one name: start fails naming both Rust types.

use eventing::event;
use serde::{Deserialize, Serialize};

mod billing {
    #[eventing::event(name = "payment_received")]
    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct PaymentReceived {
        pub amount: u64,
    }
}

#[event]
#[derive(Debug, Serialize, Deserialize)]
pub struct PaymentReceived {
    pub cents: u64,
}

#[tokio::test]
async fn duplicate_event_names_fail_at_start_naming_both_types() {
    let error = eventing::builder().start().await.unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, eventing::Error::DuplicateEvent { .. }), "{text}");
    assert!(text.contains("`payment_received`"), "{text}");
    assert!(text.contains("duplicate_events::PaymentReceived"), "{text}");
    assert!(text.contains("duplicate_events::billing::PaymentReceived"), "{text}");
    let _ = billing::PaymentReceived { amount: 1 }.amount + PaymentReceived { cents: 1 }.cents;
}
