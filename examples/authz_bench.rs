//! Per-request cost of authentication and authorization, the two steps every API call takes
//! before touching the store.
//!
//! ```text
//! cargo run --release --example authz_bench
//! ```
//! Measures, over many iterations: verifying a fresh dev token (Ed25519 signature, claims),
//! reusing a verified token (what a client sending the same token sees), a Cedar `ReadModel`
//! decision, and the most expensive decision: a Production promotion of a model with two
//! quality gates (three Cedar evaluations, entities built from the model's state).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;
use model_ledger::auth::{AuthConfig, Authenticator, PrincipalKind, dev};
use model_ledger::domain::command::VerificationOutcome;
use model_ledger::domain::names::{ModelName, Stage, TagKey};
use model_ledger::domain::state::{ModelState, fold};
use model_ledger::domain::{Actor, Command, decide};
use model_ledger::policy::{AuthzContext, AuthzRequest, GroupNames, PolicyEngine, PrincipalInfo};
use uuid::Uuid;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn gated_model() -> Result<ModelState, Box<dyn std::error::Error>> {
    let name = ModelName::parse("fraud")?;
    let ci = Actor {
        subject: "ci-bot".into(),
        issuer: dev::DEV_ISSUER.into(),
        display_name: None,
    };
    let commands = [
        Command::CreateModel {
            name: name.clone(),
            description: String::new(),
            tags: BTreeMap::from([
                (TagKey::parse("gate.f1")?, "0.78".into()),
                (TagKey::parse("gate.auc")?, "0.85".into()),
            ]),
        },
        Command::CreateVersion {
            name: name.clone(),
            source: "s3://m/fraud/1".into(),
            run_id: None,
            description: String::new(),
            tags: BTreeMap::new(),
            metrics: BTreeMap::from([("f1".into(), 0.81), ("auc".into(), 0.9)]),
            signature: None,
            input_example: None,
            artifact: None,
            run_evidence: None,
        },
        Command::TransitionStage {
            name: name.clone(),
            version: 1,
            stage: Stage::Staging,
            comment: None,
            archive_existing_versions: false,
        },
        Command::RecordVerification {
            name,
            version: 1,
            outcome: VerificationOutcome::Verified {
                digest: "d".into(),
                files: 1,
            },
        },
    ];
    let id = Uuid::now_v7();
    let mut state = None;
    for command in &commands {
        for event in decide(state.as_ref(), command)? {
            state = fold(state, id, &event, Utc::now(), &ci);
        }
    }
    state.ok_or_else(|| "no state".into())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir()?;
    dev::ensure_dev_key(dir.path())?;
    let auth = Authenticator::new(AuthConfig {
        dev_auth_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    })
    .await?;
    let groups = vec!["ml-release-managers".to_string()];
    const N: usize = 5_000;

    let tokens: Vec<String> = (0..N)
        .map(|i| {
            dev::mint_token(
                dir.path(),
                &format!("user-{i}"),
                &groups,
                Duration::from_secs(3600),
                PrincipalKind::User,
            )
        })
        .collect::<Result<_, _>>()?;
    let mut fresh = Vec::with_capacity(N);
    for token in &tokens {
        let header = format!("Bearer {token}");
        let t = Instant::now();
        std::hint::black_box(auth.authenticate(Some(&header)).await?);
        fresh.push(t.elapsed());
    }
    let mut reused = Vec::with_capacity(N);
    let header = format!("Bearer {}", tokens[0]);
    for _ in 0..N {
        let t = Instant::now();
        std::hint::black_box(auth.authenticate(Some(&header)).await?);
        reused.push(t.elapsed());
    }

    let engine = PolicyEngine::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"),
        GroupNames::default(),
    )?;
    let rita = PrincipalInfo {
        subject: "rita".into(),
        issuer: dev::DEV_ISSUER.into(),
        groups: groups.clone(),
        is_service_account: false,
        display_name: None,
    };
    let model = gated_model()?;
    let read = AuthzRequest {
        principal: &rita,
        action: "ReadModel",
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
    };
    let promote = AuthzRequest {
        principal: &rita,
        action: "TransitionStage",
        model_name: "fraud",
        model: Some(&model),
        version: Some(1),
        context: AuthzContext {
            from_stage: Some(Stage::Staging),
            to_stage: Some(Stage::Production),
            comment: None,
            now: Utc::now(),
            rename: None,
            request: None,
        },
    };
    let decision = engine.authorize(&promote);
    if !decision.allowed {
        return Err(format!("promotion should be allowed: {}", decision.reason).into());
    }
    let time = |request: &AuthzRequest| {
        let mut samples = Vec::with_capacity(N);
        for _ in 0..N {
            let t = Instant::now();
            std::hint::black_box(engine.authorize(request));
            samples.push(t.elapsed());
        }
        median(samples)
    };
    let read_median = time(&read);
    let promote_median = time(&promote);
    let fresh_median = median(fresh);
    let reused_median = median(reused);
    println!("authenticate, new token (Ed25519 verify): median {fresh_median:?}");
    println!("authenticate, token seen before:          median {reused_median:?}");
    println!("authorize ReadModel:                       median {read_median:?}");
    println!("authorize gated Production promotion:      median {promote_median:?}");
    println!(
        "auth + authz, typical read (reused token):  {:?}",
        reused_median + read_median
    );
    println!(
        "auth + authz, worst case (new token, gated promotion): {:?}",
        fresh_median + promote_median
    );
    Ok(())
}
