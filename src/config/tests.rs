//! Tests of option parsing: durations in both spellings, and help output that never shows
//! a secret.

use clap::CommandFactory as _;

use super::*;

const SENTINEL: &str = "sentinel-5f3a9c-secret";
/// Variables whose values are credentials or may embed one.
const SECRET_VARS: [&str; 11] = [
    "MODEL_LEDGER_TOKEN",
    "MODEL_LEDGER_NATS_TOKEN",
    "MODEL_LEDGER_NATS_PASSWORD",
    "MODEL_LEDGER_NATS_URL",
    "MODEL_LEDGER_DATABASE_URL",
    "MODEL_LEDGER_MLFLOW_UPSTREAM",
    "MODEL_LEDGER_MLFLOW_UPSTREAM_TOKEN",
    "MODEL_LEDGER_MLFLOW_UPSTREAM_PASSWORD",
    "MODEL_LEDGER_ARTIFACT_STORE",
    "MODEL_LEDGER_ARTIFACT_STORES",
    "MODEL_LEDGER_ARTIFACT_STORE_OPTIONS",
];
const CHILD_MARKER: &str = "MODEL_LEDGER_TEST_HELP_CHILD";

/// Runs the help check in a child process with the secrets in its environment from the
/// start, because setting variables in this multi-threaded test process would race with
/// other tests.
#[test]
fn help_never_prints_secrets() {
    if std::env::var_os(CHILD_MARKER).is_some() {
        return render_help_and_look_for_secrets();
    }
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = std::process::Command::new(exe);
    child.args([
        "--exact",
        "config::tests::help_never_prints_secrets",
        "--nocapture",
        "--test-threads=1",
    ]);
    child.env(CHILD_MARKER, "1");
    for var in SECRET_VARS {
        let value = if var == "MODEL_LEDGER_DATABASE_URL" {
            format!("postgres://ledger:{SENTINEL}@db/ledger")
        } else {
            SENTINEL.to_owned()
        };
        child.env(var, value);
    }
    // A non-secret option still shows its value, so the child can tell that help renders
    // environment values at all (otherwise the sentinel check would prove nothing).
    child.env("MODEL_LEDGER_OIDC_GROUPS_CLAIM", "visible-claim");
    let output = child.output().expect("run the child test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "child failed:\n{stdout}\n{stderr}"
    );
}

fn render_help_and_look_for_secrets() {
    let mut cli = Cli::command();
    for name in ["serve", "watch", "push", "pull", "verify", "migrate"] {
        let sub = cli
            .find_subcommand_mut(name)
            .unwrap_or_else(|| panic!("subcommand {name}"));
        let help = sub.render_long_help().to_string();
        assert!(
            !help.contains(SENTINEL),
            "`{name} --help` shows a secret:\n{help}"
        );
        if name == "serve" {
            assert!(help.contains("visible-claim"), "{help}");
            for var in SECRET_VARS.iter().filter(|v| **v != "MODEL_LEDGER_TOKEN") {
                assert!(help.contains(var), "serve --help no longer names {var}");
            }
        }
        if name == "watch" {
            assert!(help.contains("MODEL_LEDGER_TOKEN"), "{help}");
        }
    }
}

#[test]
fn durations_parse_with_units() {
    assert_eq!(parse_duration("90").unwrap().as_secs(), 90);
    assert_eq!(parse_duration("30m").unwrap().as_secs(), 1800);
    assert_eq!(parse_duration("1h").unwrap().as_secs(), 3600);
    assert!(parse_duration("1w").is_err());
    assert!(parse_duration("h").is_err());
}

#[test]
fn durations_accept_humantime_forms() {
    let secs = |raw: &str| parse_duration(raw).map(|d| d.as_secs_f64());
    assert_eq!(secs("1h 30m"), Ok(5400.0));
    assert_eq!(secs("1h30m"), Ok(5400.0));
    assert_eq!(secs("2d"), Ok(172_800.0));
    assert_eq!(secs("250ms"), Ok(0.25));
    assert_eq!(secs("10 minutes"), Ok(600.0));
    assert_eq!(secs(" 0 "), Ok(0.0));
    assert_eq!(secs("0s"), Ok(0.0));
    assert_eq!(secs("1.5h"), Ok(5400.0));
    for bad in ["", "-5", "5 parsecs", "2 months", "1y", "3 weeks", "1M"] {
        let message = parse_duration(bad).expect_err(bad);
        assert!(message.contains("invalid duration"), "{bad}: {message}");
    }
    assert!(parse_duration("2 months").unwrap_err().contains("14d"));
    assert_eq!(parse_duration_secs("30"), Ok(30));
    assert_eq!(parse_duration_secs("1m"), Ok(60));
    assert!(parse_duration_secs("1500ms").is_err());
}

#[test]
fn duration_flags_take_both_spellings() {
    let serve = |extra: &[&str]| {
        let mut argv = vec!["model-ledger", "serve"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).map(|cli| cli.command) {
            Ok(Commands::Serve(args)) => Ok(args),
            Ok(_) => Err("not serve".to_owned()),
            Err(e) => Err(e.to_string()),
        }
    };
    let defaults = serve(&[]).expect("defaults parse");
    assert_eq!(defaults.jwt_leeway_secs, 30);
    assert_eq!(
        defaults.oidc_jwks_refetch_interval,
        std::time::Duration::from_secs(1)
    );
    assert_eq!(defaults.oidc_accepted_token_types, ["at+jwt"]);
    let args = serve(&[
        "--jwt-leeway-secs",
        "1m",
        "--oidc-jwks-refetch-interval",
        "500ms",
        "--nats-duplicate-window",
        "1h 30m",
        "--oidc-accepted-token-types",
        "at+jwt,JWT",
    ])
    .expect("parses");
    assert_eq!(args.jwt_leeway_secs, 60);
    assert_eq!(
        args.oidc_jwks_refetch_interval,
        std::time::Duration::from_millis(500)
    );
    assert_eq!(
        args.nats.nats_duplicate_window,
        std::time::Duration::from_secs(5400)
    );
    assert_eq!(args.oidc_accepted_token_types, ["at+jwt", "JWT"]);
    assert_eq!(
        serve(&["--jwt-leeway-secs", "45"])
            .expect("plain")
            .jwt_leeway_secs,
        45
    );
    let refused = serve(&["--jwt-leeway-secs", "soon"]).expect_err("refused");
    assert!(refused.contains("invalid duration"), "{refused}");
}
