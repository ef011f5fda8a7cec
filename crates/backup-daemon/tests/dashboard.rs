//! The dashboard at `/` in a real headless browser (Debian's `chromium`, `--dump-dom` after
//! the page's requests have been answered): with the token, nine cards with their figures,
//! a table that is not serving highlighted, the compaction runs and the backups listed;
//! without the token, or with a wrong one, nothing of the data. Without chromium the browser
//! tests say so and pass (`.ci/run` installs it).

#[path = "support/cdp.rs"]
mod cdp;
mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cdp::Browser;
use store_owners::{Stores, StoresOptions};
use support::{Daemon, call};

/// The DOM of `url` once its scripts ran, or `None` when no chromium is installed.
fn dump_dom(url: &str) -> Option<String> {
    if Command::new("chromium").arg("--version").output().is_err() {
        eprintln!("skipped: `chromium` is not installed (.ci/run installs it)");
        return None;
    }
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        // Virtual time: the page's requests are answered before the DOM is dumped.
        .args(["--virtual-time-budget=10000", "--dump-dom", url])
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap())
}

/// The `<article class="card ...">` elements of `dom`, as (class, table, inner text).
fn cards(dom: &str) -> Vec<(String, String, String)> {
    dom.split("<article class=\"")
        .skip(1)
        .map(|rest| {
            let class = rest[..rest.find('"').unwrap()].to_string();
            let table = rest
                .split("data-table=\"")
                .nth(1)
                .and_then(|t| t.split('"').next())
                .unwrap()
                .to_string();
            let body = rest[..rest.find("</article>").unwrap()].to_string();
            (class, table, body)
        })
        .collect()
}

/// A data dir whose `task_queue` is degraded (its file lost, no backup to restore).
fn start_with_a_degraded_table(root: &Path) -> Daemon {
    let data = root.join("data");
    let mut first = Daemon::start(root, &data);
    assert!(first.terminate().success());
    std::fs::remove_file(data.join("task_queue.redb")).unwrap();
    let daemon = Daemon::start(root, &data);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, health) = daemon.call("GET", "/health", None);
        let state = health["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == "task_queue")
            .map(|t| t["status"].clone());
        if state == Some("degraded".into()) {
            return daemon;
        }
        assert!(Instant::now() < deadline, "task_queue never degraded");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn with_the_token_nine_cards_show_their_figures_and_a_failing_table_stands_out() {
    let root = tempfile::tempdir().unwrap();
    let daemon = start_with_a_degraded_table(root.path());
    assert_eq!(daemon.call("POST", "/backup", None).0, 200);
    assert_eq!(daemon.call("POST", "/compact?force=true", None).0, 200);
    let url = format!("{}#token={}", daemon.url("/"), daemon.token);
    let Some(dom) = dump_dom(&url) else { return };
    let cards = cards(&dom);
    assert_eq!(cards.len(), 9, "{dom}");
    for (class, table, body) in &cards {
        for figure in [
            "class=\"file-size\">",
            "class=\"records\">",
            "% of threshold 0.0%",
            "class=\"next-compaction\">in ",
            "ago",
            "<polyline",
            "data-action=\"compact\"",
            "data-action=\"restore\"",
        ] {
            assert!(body.contains(figure), "{table}: no {figure:?} in\n{body}");
        }
        assert!(body.contains("KiB"), "{table}: no file size in\n{body}");
        // task_queue serves an empty table after losing its data: highlighted.
        assert_eq!(
            class.contains("bad"),
            table == "task_queue",
            "{table}: {class}"
        );
        assert!(
            !class.contains("stale"),
            "{table} was just backed up: {class}"
        );
    }
    assert!(dom.contains("1 failing: task_queue (degraded)"), "{dom}");
    // The compaction run and the nine backups are listed.
    let history = dom.split("id=\"history\"").nth(1).unwrap();
    assert!(history.contains("<td>manual</td>"), "{history}");
    let backups = dom.split("id=\"backups\"").nth(1).unwrap();
    assert_eq!(backups.matches("<tr>").count(), 1 + 9, "{backups}");
}

/// Give every table something to reclaim: records written, then half of them deleted.
fn fragment_tables(data_dir: &Path) {
    let stores = Stores::open(data_dir, StoresOptions::default()).expect("open stores");
    for owner in stores.owners() {
        for delete in [false, true] {
            owner
                .write(move |batch| {
                    for i in 0..3000 {
                        let key = format!("key-{i:05}");
                        if !delete {
                            batch.put(key.as_bytes(), &[7u8; 500])?;
                        } else if i % 2 == 0 {
                            batch.delete(key.as_bytes())?;
                        }
                    }
                    Ok(())
                })
                .expect("write records");
        }
    }
    stores.close();
}

#[test]
fn pressing_compact_on_a_fragmented_table_compacts_it_and_its_event_reaches_the_feed() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    fragment_tables(&data);
    let daemon = Daemon::start(root.path(), &data);
    let Some(mut browser) = Browser::launch() else {
        return;
    };
    let page = browser.open(&format!("{}#token={}", daemon.url("/"), daemon.token));
    browser.wait_for(&page, "document.querySelectorAll('.card').length === 9");
    // The live feed is subscribed (so the event cannot come before it).
    browser.wait_for(
        &page,
        "document.getElementById('feed-state').textContent === 'live'",
    );
    let card = "document.querySelector('.card[data-table=\"task_queue\"]')";
    let fragmentation = browser.eval(
        &page,
        &format!("{card}.querySelector('.fragmentation').textContent"),
    );
    assert!(
        fragmentation.as_str().unwrap().contains("warn")
            || !fragmentation.as_str().unwrap().starts_with("0.0%"),
        "{fragmentation}"
    );
    // The operator presses compact and confirms.
    let asked = browser.eval(
        &page,
        &format!(
            "window.asked = []; window.confirm = (q) => (window.asked.push(q), true); \
             {card}.querySelector('button[data-action=\"compact\"]').click(); window.asked"
        ),
    );
    assert!(
        asked[0].as_str().unwrap().contains("Compact task_queue"),
        "{asked}"
    );
    browser.wait_for(
        &page,
        "document.getElementById('feed').textContent.includes('compaction_complete compacted task_queue')",
    );
    browser.wait_for(
        &page,
        &format!("{card}.querySelector('.result').textContent.startsWith('compact: compacted')"),
    );
    // It really ran: the history has the manual run of task_queue.
    let (_, history) = daemon.call("GET", "/history", None);
    let runs = history.as_array().unwrap();
    let last = &runs.last().expect("a compaction run")["results"][0];
    assert_eq!(
        (last["table"].as_str(), last["status"].as_str()),
        (Some("task_queue"), Some("compacted"))
    );
}

#[test]
fn without_the_token_the_page_shows_no_data() {
    let root = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(root.path(), &root.path().join("data"));
    for (url, says) in [
        (daemon.url("/"), ""),
        (
            format!("{}#token=wrong", daemon.url("/")),
            "The token was refused.",
        ),
    ] {
        let Some(dom) = dump_dom(&url) else { return };
        assert!(cards(&dom).is_empty(), "{dom}");
        for table in ["agent_mailbox", "task_queue", "message_history"] {
            assert!(
                !dom.contains(table),
                "{table} shown without a token:\n{dom}"
            );
        }
        assert!(dom.contains("<section id=\"login\">"), "{dom}");
        assert!(dom.contains(&format!("id=\"login-error\" class=\"error\">{says}<")));
    }
}

#[test]
fn the_assets_need_no_token_and_the_samples_do() {
    let root = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(root.path(), &root.path().join("data"));
    for path in ["/", "/dashboard.js", "/dashboard.css"] {
        let response = ureq::get(&daemon.url(path)).call().unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let text = response.into_string().unwrap();
        assert!(!text.contains("agent_mailbox"), "{path} carries data");
    }
    let (status, _) = call("GET", &daemon.url("/dashboard/samples"), None, None);
    assert_eq!(status, 401);
    let (status, samples) = daemon.call("GET", "/dashboard/samples", None);
    assert_eq!(status, 200);
    assert_eq!(samples["tables"].as_object().unwrap().len(), 9, "{samples}");
    let point = &samples["tables"]["task_queue"][0];
    assert!(point[1].as_u64().unwrap() > 0, "file bytes: {samples}");
    assert_eq!(samples["threshold"], 0.0);
}
