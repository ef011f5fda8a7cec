//! What a bench report records about where it ran: machine, disk, commit and date.

use std::path::Path;
use std::process::Command;

use serde::Serialize;

/// The machine and revision a report was measured on.
#[derive(Debug, Clone, Serialize)]
pub struct MachineInfo {
    /// Logical cores available to the process.
    pub cores: usize,
    /// CPU model, from /proc/cpuinfo.
    pub cpu: String,
    /// Total memory in bytes, from /proc/meminfo.
    pub memory_bytes: u64,
    /// The `df` line of the file system the bench files live on.
    pub disk: String,
    /// Kernel release.
    pub kernel: String,
    /// `git rev-parse HEAD`, with `-dirty` when the work tree has changes.
    pub commit: String,
    /// UTC date and time the run started.
    pub date: String,
}

impl MachineInfo {
    /// Gather what can be found; a missing piece reads "unknown".
    pub fn gather(bench_dir: &Path) -> MachineInfo {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map_or_else(|| "unknown".to_string(), |s| s.trim().to_string());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_bytes = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024);
        let df = output("df", &["-hT", &bench_dir.to_string_lossy()]);
        let disk = df
            .lines()
            .nth(1)
            .unwrap_or("unknown")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let root = crate::project_root();
        let root = root.to_string_lossy();
        let mut commit = output("git", &["-C", &root, "rev-parse", "HEAD"])
            .trim()
            .to_string();
        if commit.is_empty() {
            commit = "unknown".into();
        } else if !output(
            "git",
            &["-C", &root, "status", "--porcelain", "--untracked-files=no"],
        )
        .trim()
        .is_empty()
        {
            commit.push_str("-dirty");
        }
        MachineInfo {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu,
            memory_bytes,
            disk: format!("{disk} (df -hT: filesystem type size used avail use% mount)"),
            kernel: output("uname", &["-r"]).trim().to_string(),
            commit,
            date: output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"])
                .trim()
                .to_string(),
        }
    }
}

/// Standard output of a command, or nothing if it cannot run.
fn output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}
