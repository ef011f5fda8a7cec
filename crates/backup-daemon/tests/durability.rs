//! Power-loss durability of the directory entries a backup and a restore make, checked on the
//! real system calls (`strace`) of the real binary. A file system promises that a new name
//! survives a power loss only once its directory is fsynced: an independent campaign lost
//! verified backups because `backups/` and `backups/<table>/` were created and never made
//! durable. Rule checked here, for everything under the test's directory: every directory
//! created, every rename and every link is followed by an fsync of the directory that holds
//! the new name, and a file is fsynced before it is renamed to its final name.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{BIN, write_config};

/// One system call of interest, in the order they were issued.
#[derive(Debug, Clone, PartialEq)]
enum Call {
    Mkdir(PathBuf),
    Rename { from: PathBuf, to: PathBuf },
    Link(PathBuf),
    Sync(PathBuf),
}

/// The quoted strings of an strace line, in order.
fn quoted(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(start) = rest.find('"') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('"') else { break };
        out.push(after[..end].to_string());
        rest = &after[end + 1..];
    }
    out
}

/// The path strace shows for a file descriptor argument: `fsync(5</a/b>)`.
fn fd_path(line: &str) -> Option<PathBuf> {
    let start = line.find('<')? + 1;
    let end = start + line[start..].find('>')?;
    Some(PathBuf::from(&line[start..end]))
}

/// Parse `strace -f -y` output (`<pid> <call>(...) = <result>`), keeping successful calls.
fn parse(trace: &str) -> Vec<Call> {
    let mut calls = Vec::new();
    for line in trace.lines() {
        let body = line.split_once(' ').map_or(line, |(_, b)| b).trim_start();
        // A call split by another thread's: its start line carries the arguments.
        let failed = body.contains(" = -1");
        if failed {
            continue;
        }
        let name = body.split('(').next().unwrap_or("");
        let strings = quoted(body);
        let call = match name {
            "mkdir" | "mkdirat" => strings.first().map(|p| Call::Mkdir(p.into())),
            "rename" | "renameat" | "renameat2" if strings.len() >= 2 => Some(Call::Rename {
                from: strings[0].clone().into(),
                to: strings[1].clone().into(),
            }),
            "link" | "linkat" if strings.len() >= 2 => Some(Call::Link(strings[1].clone().into())),
            "fsync" | "fdatasync" => fd_path(body).map(Call::Sync),
            _ => None,
        };
        calls.extend(call);
    }
    calls
}

/// The breaches of the rule in the module doc among `calls`, for names under `root`.
fn breaches(calls: &[Call], root: &Path) -> Vec<String> {
    let synced_after = |i: usize, path: &Path| {
        calls[i + 1..]
            .iter()
            .any(|c| matches!(c, Call::Sync(p) if p == path))
    };
    let synced_before = |i: usize, path: &Path| {
        calls[..i]
            .iter()
            .any(|c| matches!(c, Call::Sync(p) if p == path))
    };
    let mut out = Vec::new();
    for (i, call) in calls.iter().enumerate() {
        let (new_name, from) = match call {
            Call::Mkdir(p) | Call::Link(p) => (p, None),
            Call::Rename { from, to } => (to, Some(from)),
            Call::Sync(_) => continue,
        };
        if !new_name.starts_with(root) {
            continue;
        }
        let dir = new_name.parent().expect("a parent");
        if !synced_after(i, dir) {
            out.push(format!(
                "{call:?}: {} never fsynced afterwards",
                dir.display()
            ));
        }
        let renamed_a_dir = |from: &PathBuf| {
            calls[..i]
                .iter()
                .any(|c| matches!(c, Call::Mkdir(p) if p == from))
        };
        if let Some(from) = from
            && !renamed_a_dir(from)
            && !synced_before(i, from)
        {
            out.push(format!(
                "{call:?}: the file was not fsynced before its rename"
            ));
        }
    }
    out
}

/// Run the binary under strace; returns the trace.
fn traced(root: &Path, name: &str, args: &[&str]) -> String {
    let trace = root.join(format!("{name}.strace"));
    let status = Command::new("strace")
        .args(["-f", "-y", "-qq", "-s", "4096", "-e"])
        .arg("trace=mkdir,mkdirat,rename,renameat,renameat2,link,linkat,fsync,fdatasync")
        .arg("-o")
        .arg(&trace)
        .arg(BIN)
        .args(args)
        .status()
        .expect("strace is needed for this test (apt-get install strace; .ci/run installs it)");
    assert!(status.success(), "{name} failed: {status}");
    std::fs::read_to_string(&trace).unwrap()
}

#[test]
fn every_name_a_backup_or_restore_creates_is_made_durable_before_it_reports_success() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path().canonicalize().unwrap();
    let config = write_config(&root, "");
    let data = root.join("nested").join("data");
    let common = |verb: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = verb.iter().map(|s| s.to_string()).collect();
        args.extend([
            "--config".into(),
            config.display().to_string(),
            "--data-dir".into(),
            data.display().to_string(),
        ]);
        args
    };

    // First use: the data dir, the tables, the backup dirs and the backups are all created.
    let args = common(&["backup", "--table", "task_queue"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let trace = traced(&root, "backup", &args);
    let calls = parse(&trace);
    let created: Vec<_> = calls
        .iter()
        .filter(|c| matches!(c, Call::Mkdir(p) if p.starts_with(&root)))
        .collect();
    // The precondition: the directories of interest were created by this run.
    for dir in [
        data.clone(),
        data.join("backups"),
        data.join("backups/task_queue"),
    ] {
        assert!(
            created.contains(&&Call::Mkdir(dir.clone())),
            "{} not created by the traced run: {created:?}",
            dir.display()
        );
    }
    assert_eq!(breaches(&calls, &root), Vec::<String>::new());

    // A restore: quarantine dir, a link into it, the restored file renamed in.
    let args = common(&["restore", "--table", "task_queue"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let trace = traced(&root, "restore", &args);
    let calls = parse(&trace);
    assert!(
        calls
            .iter()
            .any(|c| matches!(c, Call::Mkdir(p) if p == &data.join("quarantine"))),
        "the restore did not create the quarantine: {calls:?}"
    );
    assert!(
        calls.iter().any(|c| matches!(c, Call::Link(_))),
        "{calls:?}"
    );
    assert_eq!(breaches(&calls, &root), Vec::<String>::new());
}

#[test]
fn the_rule_checker_finds_a_missing_directory_fsync() {
    let root = Path::new("/r");
    let calls = vec![
        Call::Mkdir("/r/a".into()),
        Call::Sync("/r".into()),
        Call::Mkdir("/r/a/b".into()),
        Call::Sync("/r/a/b/.x.tmp".into()),
        Call::Rename {
            from: "/r/a/b/.x.tmp".into(),
            to: "/r/a/b/x".into(),
        },
        Call::Sync("/r/a/b".into()),
    ];
    // /r/a/b was created but /r/a never fsynced.
    let found = breaches(&calls, root);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("/r/a never fsynced"), "{found:?}");
    let trace = "42 mkdir(\"/r/a\", 0700) = 0\n42 fsync(3</r>) = 0\n\
                 43 renameat(AT_FDCWD</r>, \"/r/.t\", AT_FDCWD</r>, \"/r/t\") = 0\n\
                 43 mkdir(\"/r/z\", 0700) = -1 EEXIST (File exists)\n";
    assert_eq!(
        parse(trace),
        vec![
            Call::Mkdir("/r/a".into()),
            Call::Sync("/r".into()),
            Call::Rename {
                from: "/r/.t".into(),
                to: "/r/t".into()
            },
        ]
    );
}
