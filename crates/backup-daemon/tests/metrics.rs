//! The latency histograms of `/metrics` (issue 17): a hub writes through the embedded daemon,
//! which then compacts and backs up every table; the scrape is parsed as OpenMetrics text and
//! each histogram must be whole: one series per table, buckets cumulative and in ascending
//! order of their bounds, the `+Inf` bucket equal to the count, and the count of what was
//! done. The exposition is OpenMetrics (`# EOF` at the end, its content type) and keeps the
//! names of the families it had before.

use std::collections::BTreeMap;
use std::path::Path;

mod support;

use backup_daemon::{Daemon, DaemonConfig};
use store_owners::TABLE_NAMES;

/// One histogram series as read from the exposition.
#[derive(Debug, Default)]
struct Series {
    /// `(le, cumulative count)` in the order of the exposition.
    buckets: Vec<(f64, u64)>,
    count: Option<u64>,
    sum: Option<f64>,
}

/// The value of label `key` in a sample's label text (`a="x",b="y"`); label values here never
/// hold quotes.
fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    labels.split(',').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| v.trim_matches('"'))
    })
}

/// The series of histogram `name` per table, from the samples `name_bucket`, `name_count` and
/// `name_sum`.
fn histogram(text: &str, name: &str) -> BTreeMap<String, Series> {
    let mut series: BTreeMap<String, Series> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (sample, value) = line.rsplit_once(' ').expect("a sample and its value");
        let (metric, labels) = match sample.split_once('{') {
            Some((metric, labels)) => (metric, labels.trim_end_matches('}')),
            None => (sample, ""),
        };
        let Some(suffix) = metric.strip_prefix(name).and_then(|s| s.strip_prefix('_')) else {
            continue;
        };
        let table = label(labels, "table").expect("a table label").to_string();
        let entry = series.entry(table).or_default();
        match suffix {
            "bucket" => {
                let le = label(labels, "le").expect("an le label");
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                };
                entry.buckets.push((le, value.parse().unwrap()));
            }
            "count" => entry.count = Some(value.parse().unwrap()),
            "sum" => entry.sum = Some(value.parse().unwrap()),
            other => panic!("unexpected sample {metric} ({other})"),
        }
    }
    series
}

/// Check that every table has a whole series of `name`, and return the counts per table.
fn check_histogram(text: &str, name: &str) -> BTreeMap<String, u64> {
    let series = histogram(text, name);
    let tables: Vec<&str> = series.keys().map(String::as_str).collect();
    assert_eq!(tables, sorted(&TABLE_NAMES), "{name}:\n{text}");
    assert!(
        text.contains(&format!("# TYPE {name} histogram\n")),
        "{name}:\n{text}"
    );
    let mut counts = BTreeMap::new();
    for (table, s) in series {
        let count = s
            .count
            .unwrap_or_else(|| panic!("{name} {table}: no count"));
        let sum = s.sum.unwrap_or_else(|| panic!("{name} {table}: no sum"));
        assert!(s.buckets.len() > 2, "{name} {table}: {:?}", s.buckets);
        for pair in s.buckets.windows(2) {
            let ((le_a, n_a), (le_b, n_b)) = (pair[0], pair[1]);
            assert!(le_a < le_b, "{name} {table}: bounds out of order {pair:?}");
            assert!(n_a <= n_b, "{name} {table}: not cumulative {pair:?}");
        }
        let (last_le, last_n) = *s.buckets.last().unwrap();
        assert_eq!(last_le, f64::INFINITY, "{name} {table}: no +Inf bucket");
        assert_eq!(
            last_n, count,
            "{name} {table}: +Inf bucket is not the count"
        );
        assert!(sum >= 0.0, "{name} {table}: sum {sum}");
        if count > 0 {
            // No operation here takes longer than a minute, per run or in all.
            assert!(sum < 60.0 * count as f64, "{name} {table}: sum {sum}");
        } else {
            assert_eq!(sum, 0.0, "{name} {table}: a sum without a count");
        }
        counts.insert(table, count);
    }
    counts
}

fn sorted(names: &[&'static str]) -> Vec<&'static str> {
    let mut names = names.to_vec();
    names.sort_unstable();
    names
}

fn config(data_dir: &Path) -> DaemonConfig {
    let mut config = DaemonConfig {
        data_dir: data_dir.to_path_buf(),
        ..DaemonConfig::default()
    };
    config.admin.listen = "127.0.0.1:0".parse().unwrap();
    config
}

#[test]
fn commit_latency_compaction_pause_and_backup_duration_histograms_count_what_was_done() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let daemon = Daemon::start(&config(&data)).unwrap();
    let url = |path: &str| format!("http://{}{path}", daemon.admin_addr());
    let token = std::fs::read_to_string(daemon.token_file()).unwrap();
    let token = token.trim();

    let scrape = || {
        let response = ureq::get(&url("/metrics")).call().expect("GET /metrics");
        assert_eq!(
            response.header("Content-Type"),
            Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
        );
        let text = response.into_string().unwrap();
        assert!(text.ends_with("# EOF\n"), "{text}");
        text
    };
    // Before anything ran: a series per table, every count 0.
    let before = scrape();
    for name in [
        "agentcom_store_compaction_pause_seconds",
        "agentcom_store_backup_duration_seconds",
    ] {
        let counts = check_histogram(&before, name);
        assert!(counts.values().all(|n| *n == 0), "{name}: {counts:?}");
    }

    const N_WRITES: u64 = 40;
    support::submit_tasks(&daemon, 0..N_WRITES);
    let (status, run) = support::call("POST", &url("/compact?force=true"), Some(token), None);
    assert_eq!(status, 200, "{run}");
    let n_compacted = run["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "compacted")
        .count();
    assert_eq!(n_compacted, TABLE_NAMES.len(), "{run}");
    let (status, run) = support::call("POST", &url("/backup"), Some(token), None);
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["backups"].as_array().unwrap().len(), TABLE_NAMES.len());

    let text = scrape();
    // One write per commit here (each submit waits for its acknowledgement): at least one
    // commit each, and no more commits than writes and the compaction's and backup's own.
    let commits = check_histogram(&text, "agentcom_store_commit_latency_seconds");
    assert!(commits["task_queue"] >= 1, "{commits:?}");
    assert!(commits["task_queue"] <= N_WRITES + 10, "{commits:?}");
    let pauses = check_histogram(&text, "agentcom_store_compaction_pause_seconds");
    assert!(pauses.values().all(|n| *n == 1), "{pauses:?}");
    let backups = check_histogram(&text, "agentcom_store_backup_duration_seconds");
    assert!(backups.values().all(|n| *n == 1), "{backups:?}");

    // The families from before keep their names: a gauge, a counter (its sample with
    // `_total`), and the per-table ones the alerts read.
    for line in [
        "# TYPE agentcom_store_table_records gauge",
        "agentcom_store_table_records{table=\"task_queue\"} ",
        "# TYPE agentcom_store_events_dropped counter",
        "agentcom_store_events_dropped_total 0",
        "agentcom_store_table_reopens_total{table=\"task_queue\"} 0",
        "agentcom_store_last_backup_success{table=\"task_queue\"} 1",
        "agentcom_store_table_state{table=\"task_queue\",state=\"ok\"} 1",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    daemon.shutdown();
}
