//! Descriptions of every model-ledger metric (the `# HELP` lines), `model_ledger_build_info`,
//! and the standard `process_*` metrics, read from `/proc/self` on each scrape.
//!
//! The process figures are the ones Prometheus client libraries export under the same names
//! (so stock dashboards and alerts work): CPU seconds, resident and virtual memory, open and
//! maximum file descriptors, threads and start time. They are read at scrape time rather than
//! sampled, so they cost nothing between scrapes. On a system without `/proc` they are absent.

use metrics::{describe_counter, describe_gauge, describe_histogram};

/// Every metric this crate records, with its kind and help text. `docs/operations.md`
/// documents the same list; a test keeps the two in step.
pub const METRICS: &[(&str, &str, &str)] = &[
    (
        "model_ledger_http_requests_total",
        "counter",
        "HTTP requests answered, by route template, method and status.",
    ),
    (
        "model_ledger_http_request_duration_seconds",
        "histogram",
        "Time to answer an HTTP request (until the response head), by route template, method and status.",
    ),
    (
        "model_ledger_outbox_pending",
        "gauge",
        "Committed events not yet published to NATS.",
    ),
    (
        "model_ledger_outbox_oldest_age_seconds",
        "gauge",
        "Age of the oldest unpublished event (0 when the outbox is empty).",
    ),
    (
        "model_ledger_events_published_total",
        "counter",
        "Events the relay published to JetStream and saw acknowledged.",
    ),
    (
        "model_ledger_events_published_duplicate_total",
        "counter",
        "Publishes JetStream acknowledged as duplicates (a re-publish after a crash or failover).",
    ),
    (
        "model_ledger_publish_delay_seconds",
        "summary",
        "Time from an event's commit to its acknowledged publish to JetStream.",
    ),
    (
        "model_ledger_checkpoints_published_total",
        "counter",
        "Signed checkpoints published to NATS.",
    ),
    (
        "model_ledger_append_group_size",
        "summary",
        "Commands committed together in one grouped append transaction.",
    ),
    (
        "model_ledger_artifact_verifications_total",
        "counter",
        "Artifact verifications, by outcome: verified, failed (a file is missing or differs) or error (the store could not be read).",
    ),
    (
        "model_ledger_access_denials_total",
        "counter",
        "Refused requests, by Cedar action (every refusal, including the repeats the decision log coalesces).",
    ),
    (
        "model_ledger_build_info",
        "gauge",
        "Always 1; the version label is the running model-ledger version.",
    ),
];

/// Registers the help texts and the build-info gauge; call once, after the recorder exists.
pub fn describe_all() {
    for (name, kind, help) in METRICS {
        match *kind {
            "counter" => describe_counter!(*name, *help),
            "histogram" | "summary" => describe_histogram!(*name, *help),
            _ => describe_gauge!(*name, *help),
        }
    }
    for (name, _, help) in PROCESS_METRICS {
        describe_gauge!(*name, *help);
    }
    metrics::gauge!("model_ledger_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}

/// The `process_*` metrics exported, with kind and help.
pub const PROCESS_METRICS: &[(&str, &str, &str)] = &[
    (
        "process_cpu_seconds_total",
        "gauge",
        "Total user and system CPU time spent, in seconds.",
    ),
    (
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
    ),
    (
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
    ),
    (
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
    ),
    (
        "process_max_fds",
        "gauge",
        "Maximum number of open file descriptors.",
    ),
    ("process_threads", "gauge", "Number of OS threads."),
    (
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch, in seconds.",
    ),
];

/// `/proc` reports CPU time in USER_HZ ticks, which the kernel fixes at 100 on every
/// architecture for this interface (independent of the scheduler's HZ).
const USER_HZ: f64 = 100.0;

/// The process figures, read now; whatever cannot be read is left out.
#[derive(Debug, Default, PartialEq)]
pub struct ProcessSample {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<f64>,
    pub virtual_bytes: Option<f64>,
    pub open_fds: Option<f64>,
    pub max_fds: Option<f64>,
    pub threads: Option<f64>,
    pub start_time_seconds: Option<f64>,
}

/// A `Key:   123 kB` line of `/proc/self/status`, in units (kB become bytes).
fn status_value(status: &str, key: &str) -> Option<f64> {
    let rest = status.lines().find_map(|l| l.strip_prefix(key))?;
    let mut parts = rest.split_whitespace();
    let value: f64 = parts.next()?.parse().ok()?;
    Some(if parts.next() == Some("kB") {
        value * 1024.0
    } else {
        value
    })
}

/// Fields of `/proc/self/stat` after the command name (which may contain spaces and
/// parentheses, hence the split at the last `)`); index 0 is field 3, the state.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().collect())
}

impl ProcessSample {
    pub fn read() -> Self {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let fields = stat_fields(&stat).unwrap_or_default();
        // Fields 14 and 15 (utime, stime) and 22 (starttime, ticks after boot).
        let ticks = |field: usize| fields.get(field - 3).and_then(|v| v.parse::<f64>().ok());
        let cpu_seconds = match (ticks(14), ticks(15)) {
            (Some(user), Some(system)) => Some((user + system) / USER_HZ),
            _ => None,
        };
        let boot_time = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse::<f64>().ok())
        });
        let start_time_seconds = match (boot_time, ticks(22)) {
            (Some(boot), Some(start)) => Some(boot + start / USER_HZ),
            _ => None,
        };
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|entries| entries.count() as f64);
        let max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|limits| {
                let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
                let soft = line
                    .trim_start_matches("Max open files")
                    .split_whitespace()
                    .next()?;
                soft.parse::<f64>().ok()
            });
        ProcessSample {
            cpu_seconds,
            resident_bytes: status_value(&status, "VmRSS:"),
            virtual_bytes: status_value(&status, "VmSize:"),
            open_fds,
            max_fds,
            threads: status_value(&status, "Threads:"),
            start_time_seconds,
        }
    }

    /// Records the sample into the process-wide recorder, just before a scrape renders it.
    pub fn record(&self) {
        // `process_cpu_seconds_total` is a counter by meaning, but the metrics crate's counters
        // are whole numbers; a gauge keeps the fraction, and rate() treats both alike.
        let gauges = [
            ("process_cpu_seconds_total", self.cpu_seconds),
            ("process_resident_memory_bytes", self.resident_bytes),
            ("process_virtual_memory_bytes", self.virtual_bytes),
            ("process_open_fds", self.open_fds),
            ("process_max_fds", self.max_fds),
            ("process_threads", self.threads),
            ("process_start_time_seconds", self.start_time_seconds),
        ];
        for (name, value) in gauges {
            if let Some(v) = value {
                metrics::gauge!(name).set(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_parsed() {
        let status = "Name:\tmodel-ledger\nVmSize:\t  2048 kB\nVmRSS:\t   512 kB\nThreads:\t7\n";
        assert_eq!(status_value(status, "VmRSS:"), Some(512.0 * 1024.0));
        assert_eq!(status_value(status, "Threads:"), Some(7.0));
        assert_eq!(status_value(status, "VmSwap:"), None);
        let stat = "42 (model (ledger)) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 7 0 1000 0";
        let fields = stat_fields(stat).expect("fields");
        assert_eq!(fields[0], "S");
        assert_eq!(fields[14 - 3], "250");
    }

    #[test]
    fn docs_operations_lists_every_metric() {
        let docs = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md"),
        )
        .expect("docs/operations.md");
        for (name, _, _) in METRICS.iter().chain(PROCESS_METRICS) {
            assert!(
                docs.contains(&format!("| `{name}` |")),
                "docs/operations.md has no table row for {name}"
            );
        }
    }

    #[test]
    fn this_process_can_be_read() {
        let sample = ProcessSample::read();
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(sample.resident_bytes.is_some_and(|v| v > 0.0), "{sample:?}");
            assert!(sample.open_fds.is_some_and(|v| v > 0.0), "{sample:?}");
            assert!(sample.cpu_seconds.is_some(), "{sample:?}");
            assert!(
                sample.start_time_seconds.is_some_and(|v| v > 1.0e9),
                "{sample:?}"
            );
        }
    }
}
