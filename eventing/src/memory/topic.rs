//! AMQP topic matching: `*` matches exactly one dot-separated word, `#` zero or more.

/// Whether `routing_key` matches the binding `pattern`. As on RabbitMQ, an empty routing
/// key has no words (only `#` matches it), while `a..b` has an empty middle word.
pub(crate) fn matches(pattern: &str, routing_key: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('.').collect();
    let key: Vec<&str> = if routing_key.is_empty() { Vec::new() } else { routing_key.split('.').collect() };
    matches_words(&pattern, &key)
}

fn matches_words(pattern: &[&str], key: &[&str]) -> bool {
    match pattern.split_first() {
        None => key.is_empty(),
        Some((&"#", rest)) => (0..=key.len()).any(|skip| matches_words(rest, &key[skip..])),
        Some((&word, rest)) => match key.split_first() {
            Some((&first, key_rest)) => (word == "*" || word == first) && matches_words(rest, key_rest),
            None => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn exact_words_match_only_themselves() {
        assert!(matches("user_created", "user_created"));
        assert!(!matches("user_created", "user_deleted"));
        assert!(!matches("billing", "billing.invoice_paid"));
    }

    #[test]
    fn star_matches_exactly_one_word() {
        assert!(matches("billing.*", "billing.invoice_paid"));
        assert!(!matches("billing.*", "billing"));
        assert!(!matches("billing.*", "billing.invoice.paid"));
        assert!(matches("*.paid", "invoice.paid"));
    }

    #[test]
    fn hash_matches_zero_or_more_words() {
        assert!(matches("#", "anything.at.all"));
        assert!(matches("billing.#", "billing"));
        assert!(matches("billing.#", "billing.invoice.paid"));
        assert!(matches("#.paid", "paid"));
        assert!(matches("a.#.z", "a.b.c.z"));
        assert!(!matches("a.#.z", "a.b.c"));
    }

    #[test]
    fn an_empty_key_has_no_words_but_empty_words_count() {
        assert!(matches("#", ""));
        assert!(!matches("*", ""));
        assert!(matches("a.*.b", "a..b"));
    }
}
