//! NATS subjects for events: `<prefix>.<encoded model>.<event type>`.
//!
//! Model names may contain anything but control characters, while a subject token may not
//! contain `.`, `*`, `>` or whitespace. The encoding keeps `A–Z a–z 0–9 _ -` as they are (so
//! common names stay readable in `nats sub` output) and writes every other byte of the UTF-8 name
//! as `~XX` (uppercase hex). `~` itself is escaped, so the mapping is injective and reversible:
//! each name has exactly one token and each token at most one name.

/// Encodes a model name as one subject token (see the module docs).
pub fn encode_model(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("~{byte:02X}"));
        }
    }
    out
}

/// Reverses [`encode_model`]; `None` if the token is not an encoding of a UTF-8 name.
pub fn decode_model(token: &str) -> Option<String> {
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'~' => {
                let hex = token.get(i + 1..i + 3)?;
                if hex.chars().any(|c| c.is_ascii_lowercase()) {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// The subject one event of `model` with type `event_type` is published on.
pub fn event_subject(prefix: &str, model: &str, event_type: &str) -> String {
    format!("{prefix}.{}.{event_type}", encode_model(model))
}

/// The subject signed checkpoints are published on: `<prefix>.~checkpoint`. No model token can
/// be `~checkpoint` (after `~` an encoding always has two uppercase hex digits), and it has one
/// token fewer than an event subject, so `<prefix>.*.*` and per-model filters never match it
/// while `<prefix>.>` carries both.
pub fn checkpoint_subject(prefix: &str) -> String {
    format!("{prefix}.~checkpoint")
}

/// The subject filter for every event of one model (`<prefix>.<model>.*`).
pub fn model_filter(prefix: &str, model: &str) -> String {
    format!("{prefix}.{}.*", encode_model(model))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn weird_names_become_one_safe_token() {
        assert_eq!(encode_model("churn-v2_x"), "churn-v2_x");
        assert_eq!(encode_model("a.b *>c"), "a~2Eb~20~2A~3Ec");
        assert_eq!(encode_model("~"), "~7E");
        assert_eq!(encode_model("é"), "~C3~A9");
        assert_eq!(
            event_subject("p.q", "a.b", "AliasSet"),
            "p.q.a~2Eb.AliasSet"
        );
    }

    #[test]
    fn the_checkpoint_subject_is_no_model_subject() {
        let subject = checkpoint_subject("p.q");
        assert_eq!(subject, "p.q.~checkpoint");
        assert_eq!(decode_model("~checkpoint"), None);
        assert_eq!(subject.split('.').count(), 3);
        assert_eq!(event_subject("p.q", "m", "AliasSet").split('.').count(), 4);
    }

    #[test]
    fn malformed_tokens_do_not_decode() {
        assert_eq!(decode_model("a.b"), None);
        assert_eq!(decode_model("~2"), None);
        assert_eq!(decode_model("~2e"), None);
        assert_eq!(decode_model("~FF"), None);
    }

    proptest! {
        #[test]
        fn encoding_round_trips_and_is_a_valid_token(name in "\\PC{1,40}") {
            let token = encode_model(&name);
            prop_assert!(!token.is_empty());
            prop_assert!(!token.contains(['.', '*', '>']));
            prop_assert!(!token.chars().any(char::is_whitespace));
            prop_assert_eq!(decode_model(&token), Some(name));
        }
    }
}
