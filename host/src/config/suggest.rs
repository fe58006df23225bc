//! "Did you mean ...?" for unknown keys. serde's message names the unknown
//! key and lists the ones the table takes; the closest of those is offered.

/// serde's "unknown field `x`, expected one of `a`, `b`" with a suggestion
/// appended when one of the expected keys is close; other messages as
/// they are.
pub(super) fn unknown_field(message: &str) -> String {
    if !message.starts_with("unknown field `") {
        return message.to_string();
    }
    let mut quoted = message.split('`').skip(1).step_by(2);
    let Some(unknown) = quoted.next() else {
        return message.to_string();
    };
    match closest(unknown, quoted) {
        Some(known) => format!("{message}; did you mean `{known}`?"),
        None => message.to_string(),
    }
}

/// The candidate a person most likely meant by `typed`: one a few edits
/// away (a typo), or one `typed` is a longer or shorter spelling of
/// (`initial_delay_ms` for `initial_delay`, `signing_secret` for `secret`).
pub(super) fn closest<'a>(
    typed: &str,
    candidates: impl Iterator<Item = &'a str>,
) -> Option<&'a str> {
    let typed_lower = typed.to_ascii_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        let lower = candidate.to_ascii_lowercase();
        let edits = strsim::damerau_levenshtein(&typed_lower, &lower);
        let budget = (typed.len().max(candidate.len()) / 3).max(1);
        let score = if edits <= budget {
            edits
        } else if lower.len() >= 3 && (typed_lower.contains(&lower) || lower.contains(&typed_lower))
        {
            // Ranked after every typo match.
            100 + typed_lower.len().abs_diff(lower.len())
        } else {
            continue;
        };
        if best.is_none_or(|(s, _)| score < s) {
            best = Some((score, candidate));
        }
    }
    best.map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typo_or_a_longer_spelling_gets_a_suggestion() {
        assert_eq!(
            unknown_field("unknown field `listn`, expected one of `listen`, `admin_token`"),
            "unknown field `listn`, expected one of `listen`, `admin_token`; did you mean `listen`?"
        );
        assert!(
            unknown_field("unknown field `initial_delay_ms`, expected one of `max_attempts`, `initial_delay`, `max_delay`")
                .ends_with("did you mean `initial_delay`?")
        );
        assert!(
            unknown_field("unknown field `max_attempt`, expected `max_attempts` or `backoff`")
                .ends_with("did you mean `max_attempts`?")
        );
        // Nothing close: no guess.
        let far = "unknown field `zzz`, expected one of `listen`, `admin_token`";
        assert_eq!(unknown_field(far), far);
        assert_eq!(
            unknown_field("unknown field `x`, there are no fields"),
            "unknown field `x`, there are no fields"
        );
        assert_eq!(unknown_field("invalid type"), "invalid type");
    }

    #[test]
    fn a_typo_beats_a_containing_key() {
        assert_eq!(
            closest("secrets", ["secret", "secrets_file"].into_iter()),
            Some("secret")
        );
        assert_eq!(
            closest("signing_secret", ["secret", "header"].into_iter()),
            Some("secret")
        );
    }
}
