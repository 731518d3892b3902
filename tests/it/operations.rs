//! What an operator scrapes: `/metrics` describes every series it exports, includes the
//! standard `process_*` figures and the build version, and needs no token.

use crate::helpers::{Backend, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_have_help_process_figures_and_build_info() {
    let app = spawn_app(Backend::Sqlite).await;
    app.create_model("metrics-model").await;
    let response = app
        .client
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .expect("scrape");
    assert_eq!(response.status(), 200, "no token needed");
    let text = response.text().await.expect("body");
    for name in [
        "model_ledger_http_requests_total",
        "model_ledger_http_request_duration_seconds",
        "model_ledger_outbox_pending",
        // Present without NATS too: the outbox fills whether or not a relay drains it.
        "model_ledger_outbox_oldest_age_seconds",
        "model_ledger_build_info",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_threads",
        "process_start_time_seconds",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "{name} missing:\n{text}"
        );
    }
    // Every exported series is described, whichever of them exist in this process so far.
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split_whitespace().next().unwrap_or_default();
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "{name} has no HELP line:\n{text}"
            );
        }
    }
    let version = format!(
        "model_ledger_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    assert!(text.contains(&version), "{version} missing:\n{text}");
}

/// `docs/README.md` is the index: every document in `docs/` has its line there.
#[test]
fn the_docs_index_lists_every_document() {
    let docs = crate::helpers::repo_path("docs");
    let index = std::fs::read_to_string(docs.join("README.md")).expect("docs/README.md");
    for entry in std::fs::read_dir(&docs).expect("docs/") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if name.ends_with(".md") && name != "README.md" {
            assert!(
                index.contains(&format!("- [{name}]({name}): ")),
                "docs/README.md has no line for {name}"
            );
        }
    }
}
