//! `cargo xtask load` through the built binary: it fills the nine tables and deletes the
//! asked fraction, and it refuses a data dir another process holds.

use std::process::Command;

use store_owners::{Stores, StoresOptions};

#[test]
fn load_fills_nine_tables_and_deletes_a_fraction() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "load",
            "--records",
            "1000",
            "--delete-fraction",
            "0.25",
            "--value-size",
            "64",
        ])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("fragmentation"), "{stdout}");
    // Sizes in MiB, as `backup-daemon status` shows them.
    assert!(stdout.contains("file MiB"), "{stdout}");
    let stores = Stores::open(&data, StoresOptions::default()).unwrap();
    for owner in stores.owners() {
        assert_eq!(owner.shared().counters().records, 750, "{}", owner.table());
        assert!(
            owner.shared().counters().live_bytes > 750 * 64,
            "{}",
            owner.table()
        );
    }
}

#[test]
fn load_refuses_a_data_dir_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let held = Stores::open(&data, StoresOptions::default()).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["load", "--records", "10"])
        .arg("--data-dir")
        .arg(&data)
        // The error stays one line even when a backtrace is asked for.
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("in use by another process"), "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    drop(held);
}
