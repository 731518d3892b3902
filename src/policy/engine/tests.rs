//! Loading, validation, reload and decisions of the policy engine against the shipped set.

use super::*;
use crate::domain::Stage;
use crate::policy::{AuthzContext, PrincipalInfo};
use chrono::Utc;

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

/// A scratch copy of the shipped policies that a test may break.
fn scratch() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in fs::read_dir(shipped()).expect("policies dir") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            let name = path.file_name().expect("file name");
            fs::copy(&path, dir.path().join(name)).expect("copy");
        }
    }
    dir
}

fn principal(subject: &str, groups: &[&str]) -> PrincipalInfo {
    PrincipalInfo {
        subject: subject.into(),
        issuer: "https://idp.example.com".into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        is_service_account: false,
        display_name: Some(subject.into()),
    }
}

fn request<'a>(p: &'a PrincipalInfo, action: &'a str) -> AuthzRequest<'a> {
    AuthzRequest {
        principal: p,
        action,
        model_name: "fraud",
        model: None,
        version: None,
        context: AuthzContext {
            from_stage: None,
            to_stage: None,
            comment: None,
            now: Utc::now(),
            rename: None,
            request: None,
        },
    }
}

#[test]
fn shipped_policies_validate() {
    let report = validate_dir(&shipped()).unwrap_or_else(|e| panic!("{e}"));
    assert!(report.policy_ids.contains(&"admins-all".to_string()));
    assert_eq!(report.digest.len(), 64);
    // 6, plus webhooks.cedar (issue #18), run_evidence.cedar (issue #16) and approvals.cedar
    // (issue #17).
    assert_eq!(report.policy_files.len(), 9);
    for governed in [
        "gates-only-release-managers-and-admins",
        "rename-serving-or-used-names",
    ] {
        assert!(
            report.policy_ids.contains(&governed.to_string()),
            "{governed}"
        );
    }
}

#[test]
fn syntax_error_names_file_and_line() {
    let dir = scratch();
    let file = dir.path().join("broken.cedar");
    fs::write(
        &file,
        "// fine so far\n@id(\"ok\")\npermit(principal, action, resource);\n\n@id(\"bad\")\npermit(principal, action resource);\n",
    )
    .expect("write");
    let err = validate_dir(dir.path()).expect_err("must refuse");
    eprintln!("{err}");
    match &err {
        PolicyError::Parse { file: f, line, .. } => {
            assert_eq!(f, &file);
            assert_eq!(*line, 6, "{err}");
        }
        other => panic!("expected Parse, got {other:?}"),
    }
    assert!(err.to_string().contains("broken.cedar:6:"), "{err}");
}

#[test]
fn validation_error_names_file_line_and_policy() {
    let dir = scratch();
    let file = dir.path().join("typo.cedar");
    fs::write(
        &file,
        "@id(\"typo\")\npermit(principal, action, resource)\nwhen {\n  context.to_stag == \"Production\"\n};\n",
    )
    .expect("write");
    let err = PolicyEngine::load(dir.path(), GroupNames::default()).expect_err("must refuse");
    eprintln!("{err}");
    match &err {
        PolicyError::Validation {
            file: f,
            line,
            policy_id,
            ..
        } => {
            assert_eq!(f, &file);
            assert_eq!(*line, 4, "{err}");
            assert_eq!(policy_id, "typo");
        }
        other => panic!("expected Validation, got {other:?}"),
    }
    assert!(err.to_string().contains("typo.cedar:4:"), "{err}");
}

#[test]
fn missing_and_duplicate_ids_are_refused() {
    let dir = scratch();
    fs::write(
        dir.path().join("noid.cedar"),
        "\n\npermit(principal, action, resource);\n",
    )
    .expect("write");
    let err = validate_dir(dir.path()).expect_err("missing @id");
    assert!(err.to_string().contains("noid.cedar:3:"), "{err}");

    let dir = scratch();
    fs::write(
        dir.path().join("zz.cedar"),
        "@id(\"admins-all\")\npermit(principal, action, resource);\n",
    )
    .expect("write");
    let err = validate_dir(dir.path()).expect_err("duplicate @id");
    assert!(
        err.to_string()
            .contains("duplicate policy id \"admins-all\""),
        "{err}"
    );
    assert!(err.to_string().contains("admins.cedar"), "{err}");
}

#[test]
fn schema_error_names_the_schema_file() {
    let dir = scratch();
    fs::write(
        dir.path().join("model_ledger.cedarschema"),
        "namespace ModelLedger {\n  entity User\n  entity Group;\n}\n",
    )
    .expect("write");
    let err = validate_dir(dir.path()).expect_err("bad schema");
    eprintln!("{err}");
    assert!(matches!(err, PolicyError::Schema { .. }), "{err:?}");
    assert!(
        err.to_string().contains("model_ledger.cedarschema:"),
        "{err}"
    );
}

#[test]
fn reload_keeps_the_old_set_on_error_and_swaps_on_success() {
    let dir = scratch();
    let engine = PolicyEngine::load(dir.path(), GroupNames::default()).expect("load");
    let before = engine.policy_set_digest();
    let alice = principal("alice", &["ml-readers"]);
    assert!(engine.authorize(&request(&alice, "ReadModel")).allowed);

    fs::write(
        dir.path().join("readers.cedar"),
        "@id(\"readers-read\")\npermit(",
    )
    .expect("write");
    let err = engine.reload().expect_err("broken file must be refused");
    assert!(err.to_string().contains("readers.cedar"), "{err}");
    assert_eq!(engine.policy_set_digest(), before);
    assert!(engine.authorize(&request(&alice, "ReadModel")).allowed);

    fs::remove_file(dir.path().join("readers.cedar")).expect("remove");
    engine.reload().expect("valid set reloads");
    assert_ne!(engine.policy_set_digest(), before);
    let d = engine.authorize(&request(&alice, "ReadModel"));
    assert!(!d.allowed);
    assert_eq!(d.policy_set_digest, engine.policy_set_digest());
}

#[test]
fn digest_changes_when_a_policy_changes_and_only_then() {
    let dir = scratch();
    let a = validate_dir(dir.path()).expect("valid").digest;
    assert_eq!(a, validate_dir(dir.path()).expect("valid").digest);
    let path = dir.path().join("ci.cedar");
    let text = fs::read_to_string(&path).expect("read");
    fs::write(&path, text.replace("\"Staging\"", "\"Archived\"")).expect("write");
    let b = validate_dir(dir.path()).expect("valid").digest;
    assert_ne!(a, b);
}

#[test]
fn decisions_name_policies_and_reasons() {
    let engine = PolicyEngine::load(&shipped(), GroupNames::default()).expect("load");
    let eve = principal("eve", &[]);
    let d = engine.authorize(&request(&eve, "DeleteModel"));
    assert!(!d.allowed);
    assert!(d.policy_ids.is_empty());
    assert_eq!(
        d.reason,
        "no policy permits ModelLedger::User::\"eve@https://idp.example.com\" to DeleteModel \
         on ModelLedger::RegisteredModel::\"fraud\""
    );

    let root = principal("root", &["ml-admins"]);
    let mut req = request(&root, "TransitionStage");
    req.version = Some(1);
    req.context.to_stage = Some(Stage::Production);
    let d = engine.authorize(&req);
    assert!(!d.allowed);
    assert_eq!(
        d.policy_ids,
        vec![
            "production-only-release-managers",
            "production-requires-verified-artifact"
        ]
    );
    assert!(
        d.reason.contains("Production requires a verified artifact"),
        "{}",
        d.reason
    );
    assert_eq!(d.resource, "ModelLedger::ModelVersion::\"fraud/1\"");

    let d = engine.authorize(&request(&root, "DeleteModel"));
    assert!(d.allowed);
    assert_eq!(d.policy_ids, vec!["admins-all"]);
    assert!(d.errors.is_empty());
}

#[test]
fn unknown_action_is_a_deny_with_an_error() {
    let engine = PolicyEngine::load(&shipped(), GroupNames::default()).expect("load");
    let root = principal("root", &["ml-admins"]);
    let d = engine.authorize(&request(&root, "FlyToTheMoon"));
    assert!(!d.allowed);
    assert!(!d.errors.is_empty());
}

#[test]
fn configured_group_names_grant_the_canonical_roles() {
    let groups = GroupNames {
        readers: "corp-readers".into(),
        ..GroupNames::default()
    };
    let engine = PolicyEngine::load(&shipped(), groups).expect("load");
    let configured = principal("alice", &["corp-readers"]);
    assert!(engine.authorize(&request(&configured, "ReadModel")).allowed);
    // The canonical name is not a back door once another IdP group holds the role.
    let stray = principal("mallory", &["ml-readers"]);
    assert!(!engine.authorize(&request(&stray, "ReadModel")).allowed);
}
