//! Name checks done at compile time, so a bad literal is underlined where it is written.
//! The runtime checks the same rules again (`eventing::naming`).

/// Checks a dot-separated event name.
pub(crate) fn check_event_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("an event name cannot be empty".into());
    }
    check_length(name)?;
    name.split('.').try_for_each(|word| {
        if word.is_empty() {
            Err("an event name cannot have an empty dot-separated word".into())
        } else {
            check_word(word)
        }
    })
}

/// Checks a binding pattern: dot-separated words, each `*`, `#` or a word.
pub(crate) fn check_pattern(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("a pattern cannot be empty; `#` matches every event".into());
    }
    check_length(pattern)?;
    pattern.split('.').try_for_each(|word| match word {
        "*" | "#" => Ok(()),
        "" => Err("a pattern cannot have an empty dot-separated word".into()),
        word if word.contains(['*', '#']) => {
            Err(format!("`{word}`: `*` (one word) and `#` (zero or more words) stand alone between dots"))
        }
        word => check_word(word),
    })
}

/// Checks one word: ASCII letters, digits, `_` and `-`.
pub(crate) fn check_word(word: &str) -> Result<(), String> {
    if word.is_empty() {
        return Err("a name cannot be empty".into());
    }
    check_length(word)?;
    match word.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-')) {
        Some('*' | '#') => Err("wildcards `*` and `#` are only for bindings, not for names".into()),
        Some(c) if c.is_whitespace() => Err("a name cannot contain white space".into()),
        Some(c) => Err(format!("`{c}` is not allowed in a name (use ASCII letters, digits, `_` and `-`)")),
        None => Ok(()),
    }
}

/// Checks that a name fits an AMQP short string (255 bytes).
fn check_length(name: &str) -> Result<(), String> {
    if name.len() > 255 {
        return Err(format!("a name is at most 255 bytes long (AMQP's short strings); this one is {}", name.len()));
    }
    Ok(())
}
