//! The registry's state as Cedar sees it: entities and context for one request.
//!
//! This is the only code that decides what a policy can read, so it mirrors
//! `policies/model_ledger.cedarschema` field for field (a mismatch fails every request's schema
//! check, which the unit tests exercise). It reads `domain` state and never decides anything:
//! every rule, including the quality-gate comparison, lives in the Cedar policies.

use std::str::FromStr;

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression, Schema,
};

use super::{AuthzRequest, GroupNames};
use crate::domain::ModelState;

pub use crate::domain::names::GATE_TAG_PREFIX;

/// Cedar's `decimal` is an i64 count of 10^-4 units, so its range is about ±922337203685477.58.
/// Values at or beyond this magnitude (and infinities) are clamped to ±922337203685477.5807.
pub const DECIMAL_LIMIT: f64 = 922_337_203_685_477.0;

/// Entity type names, parsed once per loaded policy set instead of per request.
#[derive(Debug, Clone)]
pub(crate) struct TypeNames {
    user: EntityTypeName,
    service_account: EntityTypeName,
    group: EntityTypeName,
    model: EntityTypeName,
    version: EntityTypeName,
    action: EntityTypeName,
}

impl TypeNames {
    pub(crate) fn new() -> Result<Self, String> {
        let parse = |s: &str| EntityTypeName::from_str(s).map_err(|e| format!("{s}: {e}"));
        Ok(TypeNames {
            user: parse("ModelLedger::User")?,
            service_account: parse("ModelLedger::ServiceAccount")?,
            group: parse("ModelLedger::Group")?,
            model: parse("ModelLedger::RegisteredModel")?,
            version: parse("ModelLedger::ModelVersion")?,
            action: parse("ModelLedger::Action")?,
        })
    }

    fn uid(ty: &EntityTypeName, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
    }

    /// Issuer and subject together identify a principal; `subject@issuer` keeps the uid
    /// readable in the audit trail.
    pub(crate) fn principal_uid(&self, req: &AuthzRequest) -> EntityUid {
        let ty = if req.principal.is_service_account {
            &self.service_account
        } else {
            &self.user
        };
        let id = format!("{}@{}", req.principal.subject, req.principal.issuer);
        Self::uid(ty, &id)
    }

    pub(crate) fn action_uid(&self, action: &str) -> EntityUid {
        Self::uid(&self.action, action)
    }

    pub(crate) fn model_uid(&self, model_name: &str) -> EntityUid {
        Self::uid(&self.model, model_name)
    }

    pub(crate) fn resource_uid(&self, req: &AuthzRequest) -> EntityUid {
        match req.version {
            Some(v) => Self::uid(&self.version, &format!("{}/{v}", req.model_name)),
            None => self.model_uid(req.model_name),
        }
    }
}

/// A declared quality gate, as found on the model's tags.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    pub metric: String,
    /// The tag value as written, for the decision's reason.
    pub raw_threshold: String,
    /// The threshold as a Cedar decimal literal, rounded up; `None` if the tag is not a finite
    /// number, which makes the gate fail.
    pub threshold: Option<String>,
}

/// The gates declared on a model (`gate.<metric>` tags), in tag order.
pub fn declared_gates(model: Option<&ModelState>) -> Vec<Gate> {
    let Some(model) = model else {
        return Vec::new();
    };
    model
        .tags
        .iter()
        .filter_map(|(key, value)| {
            let metric = key.as_str().strip_prefix(GATE_TAG_PREFIX)?;
            let threshold = value
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|t| t.is_finite())
                .and_then(|t| to_decimal(t, Rounding::Up));
            Some(Gate {
                metric: metric.to_string(),
                raw_threshold: value.clone(),
                threshold,
            })
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rounding {
    /// For metrics: a value is never rounded up past a threshold it does not meet.
    Down,
    /// For thresholds: a gate is never made easier by rounding.
    Up,
}

/// A Cedar `decimal` literal for `x`: 4 fractional digits (Cedar's maximum), clamped to
/// the largest decimal beyond ±[`DECIMAL_LIMIT`]. Values within 1e-6 of a 4-digit number snap to
/// it, so binary noise (0.29 is 0.28999999999999998) does not become a rounding step. `None`
/// for NaN.
pub fn to_decimal(x: f64, rounding: Rounding) -> Option<String> {
    if x.is_nan() {
        return None;
    }
    let units = if x >= DECIMAL_LIMIT {
        i64::MAX
    } else if x <= -DECIMAL_LIMIT {
        -i64::MAX
    } else {
        let scaled = x * 10_000.0;
        let nearest = scaled.round();
        let units = if (scaled - nearest).abs() < 1e-6 {
            nearest
        } else {
            match rounding {
                Rounding::Down => scaled.floor(),
                Rounding::Up => scaled.ceil(),
            }
        };
        // |x| < DECIMAL_LIMIT keeps this inside i64.
        units as i64
    };
    let sign = if units < 0 { "-" } else { "" };
    let abs = units.unsigned_abs();
    Some(format!("{sign}{}.{:04}", abs / 10_000, abs % 10_000))
}

fn string(s: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(s.to_string())
}

/// The entities one request needs: the principal and its groups, the model and, for version
/// requests, the version. Built per request from the state the service already loaded.
pub(crate) fn build_entities(
    types: &TypeNames,
    groups: &GroupNames,
    schema: &Schema,
    req: &AuthzRequest,
) -> Result<Entities, String> {
    let mut entities = Vec::with_capacity(8);

    let group_uids: Vec<EntityUid> = groups
        .cedar_groups(&req.principal.groups)
        .iter()
        .map(|g| TypeNames::uid(&types.group, g))
        .collect();
    let mut principal_attrs = vec![
        ("subject".to_string(), string(&req.principal.subject)),
        ("issuer".to_string(), string(&req.principal.issuer)),
    ];
    if let Some(name) = &req.principal.display_name {
        principal_attrs.push(("display_name".to_string(), string(name)));
    }
    entities.push(
        Entity::new_with_tags(
            types.principal_uid(req),
            principal_attrs,
            group_uids.iter().cloned(),
            [],
        )
        .map_err(|e| format!("principal entity: {e}"))?,
    );
    for g in group_uids {
        entities.push(Entity::new_no_attrs(g, Default::default()));
    }

    let model_uid = types.model_uid(req.model_name);
    let model = req.model;
    let (created_subject, created_issuer) = model
        .map(|m| (m.created_by.subject.as_str(), m.created_by.issuer.as_str()))
        .unwrap_or(("", ""));
    let model_tags = model
        .into_iter()
        .flat_map(|m| m.tags.iter())
        .map(|(k, v)| (k.as_str().to_string(), string(v)));
    entities.push(
        Entity::new_with_tags(
            model_uid.clone(),
            [
                ("name".to_string(), string(req.model_name)),
                (
                    "exists".to_string(),
                    RestrictedExpression::new_bool(model.is_some()),
                ),
                ("created_by_subject".to_string(), string(created_subject)),
                ("created_by_issuer".to_string(), string(created_issuer)),
            ],
            [],
            model_tags,
        )
        .map_err(|e| format!("model entity: {e}"))?,
    );

    if let Some(number) = req.version {
        // A version the state does not know (or that was deleted) is described as unverified,
        // unstaged and created by nobody: the Production rules then fail closed.
        let state = model.and_then(|m| m.live_version(number));
        let tags = state
            .into_iter()
            .flat_map(|v| v.tags.iter())
            .map(|(k, v)| {
                RestrictedExpression::new_record([
                    ("key".to_string(), string(k.as_str())),
                    ("value".to_string(), string(v)),
                ])
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("version tags: {e}"))?;
        let metrics =
            state
                .into_iter()
                .flat_map(|v| v.metrics.iter())
                .filter_map(|(name, value)| {
                    to_decimal(*value, Rounding::Down)
                        .map(|d| (name.clone(), RestrictedExpression::new_decimal(d)))
                });
        let signing = state.and_then(|v| v.signing.as_ref());
        let signed_by_san = RestrictedExpression::new_set(
            signing
                .into_iter()
                .flat_map(|s| s.signer.san.iter())
                .map(|san| string(san)),
        );
        // The model's tags again, as a set the version's policies can read: Cedar cannot reach
        // a parent entity's tags, and the approval rules (risk=high) are about the model.
        let model_tag_records = model
            .into_iter()
            .flat_map(|m| m.tags.iter())
            .map(|(k, v)| {
                RestrictedExpression::new_record([
                    ("key".to_string(), string(k.as_str())),
                    ("value".to_string(), string(v)),
                ])
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("model tags: {e}"))?;
        let (stage, subject, issuer, verified, pin) = match state {
            Some(v) => (
                v.stage.as_str(),
                v.created_by.subject.as_str(),
                v.created_by.issuer.as_str(),
                v.artifact_verified(),
                // Versions not registered from a run have nothing to pin.
                v.run_pin.as_deref().unwrap_or("none"),
            ),
            None => ("None", "", "", false, "none"),
        };
        entities.push(
            Entity::new_with_tags(
                types.resource_uid(req),
                [
                    ("model_name".to_string(), string(req.model_name)),
                    (
                        "version".to_string(),
                        RestrictedExpression::new_long(i64::try_from(number).unwrap_or(i64::MAX)),
                    ),
                    ("stage".to_string(), string(stage)),
                    ("created_by_subject".to_string(), string(subject)),
                    ("created_by_issuer".to_string(), string(issuer)),
                    (
                        "artifact_verified".to_string(),
                        RestrictedExpression::new_bool(verified),
                    ),
                    ("artifact_pin".to_string(), string(pin)),
                    (
                        "signature".to_string(),
                        string(signing.map(|s| s.status.as_str()).unwrap_or("unsigned")),
                    ),
                    (
                        "signed_by_key".to_string(),
                        string(signing.map(|s| s.signer.key_id.as_str()).unwrap_or("")),
                    ),
                    ("signed_by_san".to_string(), signed_by_san),
                    (
                        "signed_by_issuer".to_string(),
                        string(
                            signing
                                .and_then(|s| s.signer.issuer.as_deref())
                                .unwrap_or(""),
                        ),
                    ),
                    ("tags".to_string(), RestrictedExpression::new_set(tags)),
                    (
                        "model_tags".to_string(),
                        RestrictedExpression::new_set(model_tag_records),
                    ),
                ],
                [model_uid],
                metrics,
            )
            .map_err(|e| format!("version entity: {e}"))?,
        );
    }

    Entities::from_entities(entities, Some(schema)).map_err(|e| format!("entities: {e}"))
}

/// The request context; `gate` is set only on the per-gate sub-requests.
pub(crate) fn build_context(req: &AuthzRequest, gate: Option<&Gate>) -> Result<Context, String> {
    let stage = |s: Option<crate::domain::Stage>| string(s.map(|s| s.as_str()).unwrap_or(""));
    let mut pairs = vec![
        ("from_stage".to_string(), stage(req.context.from_stage)),
        ("to_stage".to_string(), stage(req.context.to_stage)),
        (
            "comment".to_string(),
            string(req.context.comment.as_deref().unwrap_or("")),
        ),
        (
            "now".to_string(),
            RestrictedExpression::new_long(req.context.now.timestamp()),
        ),
    ];
    if let Some(rename) = &req.context.rename {
        let record = RestrictedExpression::new_record([
            ("new_name".to_string(), string(&rename.new_name)),
            (
                "holds_stage_or_alias".to_string(),
                RestrictedExpression::new_bool(rename.holds_stage_or_alias),
            ),
            (
                "new_name_used_before".to_string(),
                RestrictedExpression::new_bool(rename.new_name_used_before),
            ),
        ])
        .map_err(|e| format!("rename context: {e}"))?;
        pairs.push(("rename".to_string(), record));
    }
    if let Some(request) = &req.context.request {
        let record = RestrictedExpression::new_record([
            ("id".to_string(), string(&request.id)),
            (
                "requester_subject".to_string(),
                string(&request.requester_subject),
            ),
            (
                "requester_issuer".to_string(),
                string(&request.requester_issuer),
            ),
            ("to_stage".to_string(), string(request.to_stage.as_str())),
            (
                "age_seconds".to_string(),
                RestrictedExpression::new_long(request.age_seconds),
            ),
            (
                "approvals_so_far".to_string(),
                RestrictedExpression::new_long(request.approvals_so_far),
            ),
            (
                "approvers".to_string(),
                RestrictedExpression::new_set(request.approvers.iter().map(|a| string(a))),
            ),
            (
                "executes".to_string(),
                RestrictedExpression::new_bool(request.executes),
            ),
        ])
        .map_err(|e| format!("request context: {e}"))?;
        pairs.push(("request".to_string(), record));
    }
    if let Some(gate) = gate {
        let record = RestrictedExpression::new_record([
            ("metric".to_string(), string(&gate.metric)),
            (
                "threshold".to_string(),
                RestrictedExpression::new_decimal(gate.threshold.as_deref().unwrap_or("0.0")),
            ),
            (
                "threshold_valid".to_string(),
                RestrictedExpression::new_bool(gate.threshold.is_some()),
            ),
        ])
        .map_err(|e| format!("gate context: {e}"))?;
        pairs.push(("gate".to_string(), record));
    }
    Context::from_pairs(pairs).map_err(|e| format!("context: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_have_four_digits_and_round_conservatively() {
        assert_eq!(to_decimal(0.78, Rounding::Up).as_deref(), Some("0.7800"));
        assert_eq!(to_decimal(0.29, Rounding::Down).as_deref(), Some("0.2900"));
        assert_eq!(
            to_decimal(0.77996, Rounding::Down).as_deref(),
            Some("0.7799")
        );
        assert_eq!(to_decimal(0.78001, Rounding::Up).as_deref(), Some("0.7801"));
        assert_eq!(to_decimal(-1.5, Rounding::Down).as_deref(), Some("-1.5000"));
        assert_eq!(
            to_decimal(-0.00005, Rounding::Down).as_deref(),
            Some("-0.0001")
        );
        assert_eq!(to_decimal(f64::NAN, Rounding::Down), None);
    }

    #[test]
    fn out_of_range_values_clamp_to_a_valid_decimal() {
        for x in [1e300, f64::INFINITY, -1e300, f64::NEG_INFINITY] {
            let d = to_decimal(x, Rounding::Down).unwrap_or_default();
            assert!(d.ends_with("922337203685477.5807"), "{x} -> {d}");
            // Entity construction evaluates the decimal() call, so this proves Cedar accepts it.
            let uid = EntityUid::from_type_name_and_id(
                EntityTypeName::from_str("T").unwrap(),
                EntityId::new("t"),
            );
            let entity = Entity::new_with_tags(
                uid,
                [("m".to_string(), RestrictedExpression::new_decimal(&d))],
                [],
                [],
            );
            assert!(entity.is_ok(), "{d}: {entity:?}");
        }
    }
}
