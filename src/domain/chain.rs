//! Canonical event bytes and the SHA-256 hash chain.
//!
//! Every event stores `prev_hash` and `hash = SHA-256(prev_hash_bytes ‖ canonical_bytes(event))`,
//! one chain over all events in global-position order. The first event links to 32 zero bytes.
//! Changing, deleting, inserting or reordering any event breaks the chain at that position; a
//! truncated tail is caught against a signed checkpoint (see docs/events.md).
//!
//! The canonical bytes are defined here and in docs/events.md, and must never change for an
//! existing schema version: they are what an auditor recomputes offline.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::events::EventEnvelope;

/// `prev_hash` of the first event: 64 hex zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Timestamps are kept to the microsecond everywhere (PostgreSQL's precision), so the value that
/// was hashed is exactly the value read back.
pub fn truncate_to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    let micros = t.timestamp_micros();
    DateTime::from_timestamp_micros(micros).unwrap_or(t)
}

/// RFC 3339 in UTC with exactly six fractional digits and a `Z`, e.g. `2026-11-25T14:47:35.123456Z`.
pub fn canonical_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Writes `value` as canonical JSON: object keys sorted by their UTF-8 bytes, no whitespace,
/// strings escaped as serde_json does, numbers as serde_json prints them. Implemented by hand so
/// the result does not depend on whether some dependency turned on serde_json's
/// `preserve_order` feature.
pub fn write_canonical_json(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::String(s) => write_json_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical_json(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json_string(key, out);
                out.push(b':');
                write_canonical_json(&map[key.as_str()], out);
            }
            out.push(b'}');
        }
    }
}

fn write_json_string(s: &str, out: &mut Vec<u8>) {
    // serde_json's string escaping is the canonical one; serializing a &str into a Vec cannot
    // fail.
    if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}

/// Canonical JSON text of a value, as stored in the `payload` and `decision` columns.
pub fn canonical_json_string(value: &Value) -> String {
    let mut out = Vec::new();
    write_canonical_json(value, &mut out);
    // Only valid UTF-8 is ever written above.
    String::from_utf8(out).unwrap_or_default()
}

/// The bytes an event's hash covers: the canonical JSON of the envelope without `hash` and
/// `prev_hash` (the link is hashed as raw bytes in front instead). Written field by field, in
/// sorted key order, rather than through an intermediate `Value`: `audit verify` runs this once
/// per event, and cloning each payload and decision into a document halved its throughput. The
/// tests pin it to the generic canonical writer.
pub fn canonical_bytes(event: &EventEnvelope) -> Vec<u8> {
    let event_id = event.event_id.to_string();
    let stream_id = event.stream_id.to_string();
    write_envelope(&EventText {
        position: event.position,
        event_id: &event_id,
        stream_id: &stream_id,
        stream_version: event.stream_version,
        model_name: &event.model_name,
        event_type: &event.event_type,
        schema_version: event.schema_version,
        payload: Json::Value(&event.payload),
        occurred_at: event.occurred_at,
        actor_subject: &event.actor.subject,
        actor_issuer: &event.actor.issuer,
        actor_display_name: event.actor.display_name.as_deref(),
        request_id: event.request_id.as_deref(),
        correlation_id: event.correlation_id.as_deref(),
        decision: event.decision.as_ref().map(Json::Value),
        prev_hash: &event.prev_hash,
        hash: &event.hash,
    })
}

/// A JSON member of an event: a document, or text already in canonical form (as stored in the
/// `payload` and `decision` columns, and as an export writes them).
#[derive(Debug, Clone, Copy)]
pub enum Json<'a> {
    Value(&'a Value),
    Canonical(&'a str),
}

/// An event's fields as they are stored, borrowed: what verification hashes without decoding
/// payload and decision into documents (parsing them was most of `audit verify`'s time).
#[derive(Debug, Clone, Copy)]
pub struct EventText<'a> {
    pub position: i64,
    pub event_id: &'a str,
    pub stream_id: &'a str,
    pub stream_version: i64,
    pub model_name: &'a str,
    pub event_type: &'a str,
    pub schema_version: i32,
    pub payload: Json<'a>,
    pub occurred_at: DateTime<Utc>,
    pub actor_subject: &'a str,
    pub actor_issuer: &'a str,
    pub actor_display_name: Option<&'a str>,
    pub request_id: Option<&'a str>,
    pub correlation_id: Option<&'a str>,
    pub decision: Option<Json<'a>>,
    pub prev_hash: &'a str,
    pub hash: &'a str,
}

impl EventText<'_> {
    /// `SHA-256(prev_hash ‖ canonical bytes)` taking the JSON members' text as it is. Equal to
    /// [`compute_hash`] of the decoded event whenever that text is canonical, which is how the
    /// store writes it; for text that is not, the result differs and the caller falls back to
    /// decoding (see [`ChainVerifier::push_link`]'s callers), so this is only ever a shortcut.
    pub fn hash_as_stored(&self) -> String {
        hash_with_prev(self.prev_hash, &write_envelope(self))
    }
}

fn write_json(json: Json<'_>, out: &mut Vec<u8>) {
    match json {
        Json::Value(v) => write_canonical_json(v, out),
        Json::Canonical(text) => out.extend_from_slice(text.as_bytes()),
    }
}

/// An integer in decimal, appended without an intermediate `String`.
fn write_integer(n: i64, out: &mut Vec<u8>) {
    use std::io::Write as _;
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{n}");
}

fn write_envelope(event: &EventText<'_>) -> Vec<u8> {
    fn opt_str(s: Option<&str>, out: &mut Vec<u8>) {
        match s {
            Some(s) => write_json_string(s, out),
            None => out.extend_from_slice(b"null"),
        }
    }
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(b"{\"actor\":{\"display_name\":");
    opt_str(event.actor_display_name, &mut out);
    out.extend_from_slice(b",\"issuer\":");
    write_json_string(event.actor_issuer, &mut out);
    out.extend_from_slice(b",\"subject\":");
    write_json_string(event.actor_subject, &mut out);
    out.extend_from_slice(b"},\"correlation_id\":");
    opt_str(event.correlation_id, &mut out);
    out.extend_from_slice(b",\"decision\":");
    match event.decision {
        Some(d) => write_json(d, &mut out),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"event_id\":");
    write_json_string(event.event_id, &mut out);
    out.extend_from_slice(b",\"event_type\":");
    write_json_string(event.event_type, &mut out);
    out.extend_from_slice(b",\"model_name\":");
    write_json_string(event.model_name, &mut out);
    out.extend_from_slice(b",\"occurred_at\":");
    write_json_string(&canonical_time(&event.occurred_at), &mut out);
    out.extend_from_slice(b",\"payload\":");
    write_json(event.payload, &mut out);
    out.extend_from_slice(b",\"position\":");
    write_integer(event.position, &mut out);
    out.extend_from_slice(b",\"request_id\":");
    opt_str(event.request_id, &mut out);
    out.extend_from_slice(b",\"schema_version\":");
    write_integer(event.schema_version.into(), &mut out);
    out.extend_from_slice(b",\"stream_id\":");
    write_json_string(event.stream_id, &mut out);
    out.extend_from_slice(b",\"stream_version\":");
    write_integer(event.stream_version, &mut out);
    out.push(b'}');
    out
}

fn hash_with_prev(prev_hash: &str, canonical: &[u8]) -> String {
    let mut hasher = Sha256::new();
    // Every real prev_hash is 32 bytes of hex: decoded without allocating. (Verification hashes
    // every event, so this and the encoding below are a measurable part of `audit verify`.)
    let mut fixed = [0u8; 32];
    if prev_hash.len() == 64 && hex::decode_to_slice(prev_hash, &mut fixed).is_ok() {
        hasher.update(fixed);
    } else {
        match hex::decode(prev_hash) {
            Ok(bytes) => hasher.update(&bytes),
            // A malformed stored prev_hash still hashes deterministically (and fails to match).
            Err(_) => hasher.update(prev_hash.as_bytes()),
        }
    }
    hasher.update(canonical);
    lower_hex(&hasher.finalize())
}

/// Lowercase hex, as `hex::encode` writes it, through a table instead of a char iterator.
fn lower_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)]);
        out.push(DIGITS[usize::from(byte & 0x0f)]);
    }
    // Only ASCII digits were written.
    String::from_utf8(out).unwrap_or_default()
}

/// `hash = SHA-256(prev_hash_bytes ‖ canonical_bytes(event))`, lowercase hex.
pub fn compute_hash(prev_hash: &str, event: &EventEnvelope) -> String {
    hash_with_prev(prev_hash, &canonical_bytes(event))
}

/// Why a chain did not verify, naming the first bad position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    #[error(
        "position {position}: expected position {expected} (an event is missing, duplicated or out of order)"
    )]
    PositionGap { position: i64, expected: i64 },
    #[error(
        "position {position}: prev_hash {found} does not link to the previous event's hash {expected}"
    )]
    BrokenLink {
        position: i64,
        expected: String,
        found: String,
    },
    #[error(
        "position {position}: stored hash {stored} does not match recomputed hash {computed} (the event was altered)"
    )]
    HashMismatch {
        position: i64,
        stored: String,
        computed: String,
    },
}

impl ChainBreak {
    pub fn position(&self) -> i64 {
        match self {
            ChainBreak::PositionGap { position, .. }
            | ChainBreak::BrokenLink { position, .. }
            | ChainBreak::HashMismatch { position, .. } => *position,
        }
    }
}

/// Incremental verifier, so a million events can be checked as they stream past.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    expected_position: i64,
    head_hash: String,
    count: u64,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl ChainVerifier {
    pub fn new() -> Self {
        ChainVerifier {
            expected_position: 1,
            head_hash: GENESIS_HASH.to_string(),
            count: 0,
        }
    }

    /// Checks the next event: its position follows, it links to the previous hash, and its own
    /// hash is what its content hashes to.
    pub fn push(&mut self, event: &EventEnvelope) -> Result<(), ChainBreak> {
        let computed = compute_hash(&event.prev_hash, event);
        self.push_with_hash(event, computed)
    }

    /// [`ChainVerifier::push`] with the event's recomputed hash supplied.
    fn push_with_hash(
        &mut self,
        event: &EventEnvelope,
        computed: String,
    ) -> Result<(), ChainBreak> {
        self.push_link(event.position, &event.prev_hash, &event.hash, computed)
    }

    /// Checks the next event given only what linking needs: its position, stored `prev_hash`
    /// and `hash`, and the hash recomputed from its content (by whatever route; see
    /// [`EventText::hash_as_stored`]).
    pub fn push_link(
        &mut self,
        position: i64,
        prev_hash: &str,
        stored_hash: &str,
        computed: String,
    ) -> Result<(), ChainBreak> {
        if position != self.expected_position {
            return Err(ChainBreak::PositionGap {
                position,
                expected: self.expected_position,
            });
        }
        if prev_hash != self.head_hash {
            return Err(ChainBreak::BrokenLink {
                position,
                expected: self.head_hash.clone(),
                found: prev_hash.to_string(),
            });
        }
        if computed != stored_hash {
            return Err(ChainBreak::HashMismatch {
                position,
                stored: stored_hash.to_string(),
                computed,
            });
        }
        self.head_hash = computed;
        self.expected_position += 1;
        self.count += 1;
        Ok(())
    }

    pub fn head_hash(&self) -> &str {
        &self.head_hash
    }

    pub fn count(&self) -> u64 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::events::Actor;
    use uuid::Uuid;

    fn event(position: i64, prev_hash: &str) -> EventEnvelope {
        let mut e = EventEnvelope {
            position,
            event_id: Uuid::now_v7(),
            stream_id: Uuid::nil(),
            stream_version: position,
            model_name: "m".into(),
            event_type: "ModelTagSet".into(),
            schema_version: 1,
            payload: serde_json::json!({"type": "ModelTagSet", "key": "k", "value": position.to_string()}),
            occurred_at: truncate_to_micros(Utc::now()),
            actor: Actor::system(),
            request_id: None,
            correlation_id: None,
            decision: None,
            prev_hash: prev_hash.to_string(),
            hash: String::new(),
        };
        e.hash = compute_hash(prev_hash, &e);
        e
    }

    fn chain(n: i64) -> Vec<EventEnvelope> {
        let mut out: Vec<EventEnvelope> = Vec::new();
        for p in 1..=n {
            let prev = out
                .last()
                .map(|e| e.hash.clone())
                .unwrap_or(GENESIS_HASH.into());
            out.push(event(p, &prev));
        }
        out
    }

    fn verify(events: &[EventEnvelope]) -> Result<ChainVerifier, ChainBreak> {
        let mut v = ChainVerifier::new();
        for e in events {
            v.push(e)?;
        }
        Ok(v)
    }

    #[test]
    fn canonical_json_sorts_keys_and_has_no_whitespace() {
        let v = serde_json::json!({"b": 1, "a": [true, null, "x\"y"], "c": {"z": 1.5, "y": -2}});
        assert_eq!(
            canonical_json_string(&v),
            r#"{"a":[true,null,"x\"y"],"b":1,"c":{"y":-2,"z":1.5}}"#
        );
    }

    #[test]
    fn canonical_bytes_equal_the_generic_canonical_form_of_the_envelope() {
        let mut e = event(7, GENESIS_HASH);
        for (display_name, decision, request_id) in [
            (None, None, None),
            (
                Some("Ana \"Q\" \u{e9}\n".to_string()),
                Some(
                    serde_json::json!({"policy_ids": ["b", "a"], "z": 0.1, "a": {"y": 1e100, "x": null}}),
                ),
                Some("req-1".to_string()),
            ),
        ] {
            e.actor.display_name = display_name;
            e.decision = decision;
            e.request_id = request_id.clone();
            e.correlation_id = request_id;
            let doc = serde_json::json!({
                "actor": {
                    "subject": e.actor.subject,
                    "issuer": e.actor.issuer,
                    "display_name": e.actor.display_name,
                },
                "correlation_id": e.correlation_id,
                "decision": e.decision,
                "event_id": e.event_id.to_string(),
                "event_type": e.event_type,
                "model_name": e.model_name,
                "occurred_at": canonical_time(&e.occurred_at),
                "payload": e.payload,
                "position": e.position,
                "request_id": e.request_id,
                "schema_version": e.schema_version,
                "stream_id": e.stream_id.to_string(),
                "stream_version": e.stream_version,
            });
            assert_eq!(
                String::from_utf8(canonical_bytes(&e)).unwrap(),
                canonical_json_string(&doc)
            );
        }
    }

    #[test]
    fn hashing_stored_text_equals_the_definition_only_when_the_text_is_canonical() {
        let mut e = event(3, GENESIS_HASH);
        e.decision = Some(serde_json::json!({"z": [1, 2.5], "a": "é\u{1}"}));
        e.hash = compute_hash(&e.prev_hash, &e);
        let payload = canonical_json_string(&e.payload);
        let decision = e.decision.as_ref().map(canonical_json_string);
        let (event_id, stream_id) = (e.event_id.to_string(), e.stream_id.to_string());
        let mut text = EventText {
            position: e.position,
            event_id: &event_id,
            stream_id: &stream_id,
            stream_version: e.stream_version,
            model_name: &e.model_name,
            event_type: &e.event_type,
            schema_version: e.schema_version,
            payload: Json::Canonical(&payload),
            occurred_at: e.occurred_at,
            actor_subject: &e.actor.subject,
            actor_issuer: &e.actor.issuer,
            actor_display_name: e.actor.display_name.as_deref(),
            request_id: e.request_id.as_deref(),
            correlation_id: e.correlation_id.as_deref(),
            decision: decision.as_deref().map(Json::Canonical),
            prev_hash: &e.prev_hash,
            hash: &e.hash,
        };
        assert_eq!(text.hash_as_stored(), e.hash);
        let spaced = payload.replace(',', ", ");
        text.payload = Json::Canonical(&spaced);
        assert_ne!(text.hash_as_stored(), e.hash);
    }

    #[test]
    fn an_untouched_chain_verifies_and_reports_its_head() {
        let events = chain(5);
        let v = verify(&events).unwrap();
        assert_eq!(v.count(), 5);
        assert_eq!(v.head_hash(), events[4].hash);
    }

    #[test]
    fn each_kind_of_tampering_names_the_first_bad_position() {
        let mut altered = chain(5);
        altered[2].payload =
            serde_json::json!({"type": "ModelTagSet", "key": "k", "value": "evil"});
        assert!(matches!(
            verify(&altered),
            Err(ChainBreak::HashMismatch { position: 3, .. })
        ));

        let mut deleted = chain(5);
        deleted.remove(1);
        assert!(matches!(
            verify(&deleted),
            Err(ChainBreak::PositionGap {
                position: 3,
                expected: 2
            })
        ));

        let mut swapped = chain(5);
        swapped.swap(1, 2);
        assert_eq!(verify(&swapped).unwrap_err().position(), 3);

        // Renumbering after a deletion keeps positions dense but breaks the link.
        let mut renumbered = chain(5);
        renumbered.remove(1);
        for (i, e) in renumbered.iter_mut().enumerate() {
            e.position = i as i64 + 1;
        }
        assert!(matches!(
            verify(&renumbered),
            Err(ChainBreak::BrokenLink { position: 2, .. })
        ));
    }
}
