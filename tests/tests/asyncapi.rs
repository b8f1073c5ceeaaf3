//! The AsyncAPI document of a service binary (`src/bin/asyncapi.rs`: events with and
//! without `JsonSchema`, a typed, a per-process and a pattern listener, a request with its
//! reply and handler, a recurring item): its channels, operations, reply, bindings and
//! payload schemas, and that every reference in it resolves.

use serde_json::Value;

/// Runs the service binary with `url` as `EVENTING_URL` and parses what it prints.
fn document(url: &str) -> Value {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_eventing-test-asyncapi"))
        .env("EVENTING_URL", url)
        .env_remove("EVENTING_SERVICE")
        .env_remove("EVENTING_EXCHANGE")
        .env_remove("EVENTING_CONFIG")
        .output()
        .expect("the asyncapi test binary runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("the document is JSON")
}

/// Every `$ref` in `value`, with where it was found.
fn references(value: &Value, at: &str, found: &mut Vec<(String, String)>) {
    match value {
        Value::Object(object) => {
            for (key, child) in object {
                match (key.as_str(), child) {
                    ("$ref", Value::String(target)) => found.push((at.to_owned(), target.clone())),
                    _ => references(child, &format!("{at}/{key}"), found),
                }
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                references(item, &format!("{at}/{index}"), found);
            }
        }
        _ => {}
    }
}

#[test]
fn the_document_describes_the_registry_on_rabbitmq() {
    let doc = document("amqp://guest:s3cret@rabbit.example:5672/%2f");
    assert_eq!(doc["asyncapi"], "3.0.0");
    assert_eq!(doc["info"]["title"], "shop");
    assert_eq!(doc["info"]["version"], "1.2.3");
    assert_eq!(doc["defaultContentType"], "application/json");
    let server = &doc["servers"]["rabbitmq"];
    assert_eq!((&server["host"], &server["protocol"]), (&"rabbit.example:5672".into(), &"amqp".into()));
    assert!(!doc.to_string().contains("s3cret"), "the password is left out");

    // Each event is a routing key on the topic exchange.
    let placed = &doc["channels"]["event.orders.placed"];
    assert_eq!(placed["address"], "orders.placed");
    assert_eq!(placed["bindings"]["amqp"]["is"], "routingKey");
    assert_eq!(placed["bindings"]["amqp"]["exchange"]["name"], "eventing");
    assert_eq!(placed["bindings"]["amqp"]["exchange"]["type"], "topic");
    assert_eq!(placed["bindings"]["amqp"]["exchange"]["vhost"], "/");
    assert_eq!(placed["messages"]["orders.placed"]["$ref"], "#/components/messages/event.orders.placed");

    // A typed listener receives from its queue, durable like its event, with a dead-letter queue.
    let queue = &doc["channels"]["queue.shop.orders.placed.reserve_stock"];
    assert_eq!(queue["address"], "shop.orders.placed.reserve_stock");
    assert_eq!(queue["bindings"]["amqp"]["is"], "queue");
    assert_eq!(queue["bindings"]["amqp"]["queue"]["durable"], true);
    assert_eq!(queue["bindings"]["amqp"]["queue"]["exclusive"], false);
    let receive = &doc["operations"]["receive.shop.orders.placed.reserve_stock"];
    assert_eq!(receive["action"], "receive");
    assert_eq!(receive["channel"]["$ref"], "#/channels/queue.shop.orders.placed.reserve_stock");
    assert_eq!(receive["bindings"]["amqp"]["ack"], true);
    assert!(receive["description"].as_str().unwrap().contains("shop.orders.placed.reserve_stock.dead_letter"));
    let dead_letters = &doc["channels"]["queue.shop.orders.placed.reserve_stock.dead_letter"];
    assert_eq!(dead_letters["bindings"]["amqp"]["queue"]["durable"], true);
    assert_eq!(doc["operations"]["dead_letter.shop.orders.placed.reserve_stock.dead_letter"]["action"], "send");

    // A per-process queue: the process id is a parameter, the queue exclusive.
    let per_process = &doc["channels"]["queue.shop.catalog.price_changed.refresh_price_cache.process_id"];
    assert_eq!(per_process["address"], "shop.catalog.price_changed.refresh_price_cache.{process_id}");
    assert!(per_process["parameters"]["process_id"].is_object());
    assert_eq!(per_process["bindings"]["amqp"]["queue"]["exclusive"], true);

    // A pattern listener takes the registered events its pattern matches.
    let audit = &doc["channels"]["queue.shop.order_audit"];
    let taken: Vec<&String> = audit["messages"].as_object().unwrap().keys().collect();
    assert_eq!(taken, ["orders.cancelled", "orders.placed"]);
    assert!(audit["description"].as_str().unwrap().contains("`orders.#`"));
    assert_eq!(audit["x-eventing-binding"]["routingKey"], "orders.#");
    assert_eq!(audit["x-eventing-binding"]["exchange"], "eventing");

    // A request: its routing key, its handler's queue and the receive with its reply.
    assert_eq!(doc["channels"]["request.shipping.quote"]["address"], "shipping.quote");
    let handle = &doc["operations"]["handle.shipping.quote"];
    assert_eq!(handle["action"], "receive");
    assert_eq!(handle["channel"]["$ref"], "#/channels/queue.request.shipping.quote");
    assert_eq!(handle["reply"]["channel"]["$ref"], "#/channels/reply.shipping.quote");
    assert_eq!(handle["reply"]["address"]["location"], "$message.header#/reply_to");
    let reply = &doc["channels"]["reply.shipping.quote"];
    assert_eq!(reply["address"], Value::Null, "the reply address is the request's reply_to");
    assert_eq!(reply["bindings"]["amqp"]["queue"]["name"], "amq.rabbitmq.reply-to");

    // A recurring item's lock.
    let lock = &doc["channels"]["lock.shop.recurring.expire_carts"];
    assert_eq!(lock["address"], "shop.recurring.expire_carts");
    assert_eq!(lock["x-eventing-recurring"]["schedule"], "every 5m");

    // Messages: payload schemas where the type derives JsonSchema, headers on the wire.
    let messages = &doc["components"]["messages"];
    let order = &messages["event.orders.placed"];
    assert_eq!(order["contentType"], "application/json");
    assert_eq!(order["payload"]["properties"]["order_id"]["type"], "integer");
    assert_eq!(order["payload"]["properties"]["lines"]["items"]["$ref"], "#/components/schemas/Line");
    assert_eq!(doc["components"]["schemas"]["Line"]["properties"]["sku"]["type"], "string");
    assert_eq!(order["correlationId"]["location"], "$message.header#/correlation_id");
    let cancelled = messages["event.orders.cancelled"]["payload"]["description"].as_str().unwrap();
    assert!(cancelled.contains("schema not available") && cancelled.contains("OrderCancelled"), "{cancelled}");
    assert_eq!(messages["request.shipping.quote"]["payload"]["properties"]["order_id"]["type"], "integer");
    assert_eq!(messages["reply.shipping.quote"]["payload"]["properties"]["cents"]["type"], "integer");
    let headers = &doc["components"]["schemas"]["eventing.event_headers"]["properties"];
    for header in ["message_id", "correlation_id", "x-eventing-causation-id", "x-eventing-attempt", "x-eventing-error"]
    {
        assert!(headers[header].is_object(), "event headers lack {header}");
    }
    assert!(doc["components"]["schemas"]["eventing.request_headers"]["properties"]["reply_to"].is_object());

    // Every reference points at something in the document.
    let mut found = Vec::new();
    references(&doc, "", &mut found);
    assert!(found.len() > 20, "{found:?}");
    for (at, target) in found {
        let pointer = target.strip_prefix('#').unwrap_or_else(|| panic!("{at}: `{target}` is not local"));
        assert!(doc.pointer(pointer).is_some(), "{at}: `{target}` resolves to nothing");
    }
}

#[test]
fn on_the_in_memory_broker_there_is_no_server() {
    let doc = document("memory://");
    assert!(doc.get("servers").is_none(), "{}", doc["servers"]);
    assert_eq!(doc["channels"]["event.orders.placed"]["address"], "orders.placed");
}
