//! Progress bars on stderr while a long verb runs: one bar per running operation (a backup
//! of all nine tables shows each table's), with bytes, rate and ETA, drawn by `indicatif`
//! from the running operations (`GET /operations` of the daemon, or the maintainer of the
//! verb's own process), read every [`POLL_INTERVAL`]. While no operation is listed (a
//! retention pass, a listing, the swap of a restore) a spinner says what the verb does.
//!
//! Drawn only when [`draws`] says so: stderr a terminal and no `--json`. Otherwise nothing is
//! started at all.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use compaction::OperationInfo;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often the running operations are read.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Where the running operations are read from: `None` when they could not be read this
/// time (the bars stay as they are).
pub type Source = Box<dyn FnMut() -> Option<Vec<OperationInfo>> + Send>;

/// Whether a verb draws progress bars: only for a person watching a terminal, never into a
/// pipe, a file or a log, and never with `--json`, whose output is for programs.
pub fn draws(json: bool, stderr_is_terminal: bool) -> bool {
    !json && stderr_is_terminal
}

/// Whether this process's verbs draw progress bars, with or without `--json`.
pub fn draws_here(json: bool) -> bool {
    draws(json, std::io::stderr().is_terminal())
}

/// Draws until dropped; the bars are cleared on drop.
#[derive(Debug)]
pub struct Bars {
    /// Tells the drawing thread to clear the bars and stop.
    done: Arc<AtomicBool>,
    /// The drawing thread; joined on drop so the bars are gone before anything else prints.
    thread: Option<JoinHandle<()>>,
}

impl Bars {
    /// Draw the operations `source` lists, with `label` on the spinner shown while it lists
    /// none. Call only when [`draws`] said so.
    pub fn start(label: &str, source: Source) -> Bars {
        let done = Arc::new(AtomicBool::new(false));
        let thread = {
            let done = done.clone();
            let label = label.to_string();
            std::thread::Builder::new()
                .name("progress".into())
                .spawn(move || draw(&label, source, &done))
                .ok()
        };
        Bars { done, thread }
    }

    /// Only the spinner with `label`, for a job whose operations this process cannot read
    /// (a recovery opens its own tables). Call only when [`draws`] said so.
    pub fn spinner(label: &str) -> Bars {
        Bars::start(label, Box::new(|| Some(Vec::new())))
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The bar of one operation: its kind, table and phase, how far, how fast, how long still.
fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix:>10} {msg:<32} [{bar:30}] {binary_bytes:>10}/{binary_total_bytes:<10} \
         {binary_bytes_per_sec:>12} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}

/// The spinner shown while no operation is listed.
fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

/// What a bar says beside its kind: the table, the phase, and whether the total is a guess.
fn message(op: &OperationInfo) -> String {
    let estimated = if op.total_estimated {
        ", total estimated"
    } else {
        ""
    };
    format!("{} {}{estimated}", op.table, op.phase)
}

fn draw(label: &str, mut source: Source, done: &AtomicBool) {
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let mut bars: BTreeMap<u64, ProgressBar> = BTreeMap::new();
    let mut spinner: Option<ProgressBar> = None;
    let started = Instant::now();
    while !done.load(Ordering::Relaxed) {
        if let Some(running) = source() {
            // Operations that ended: their bar goes.
            bars.retain(|id, bar| {
                let alive = running.iter().any(|op| op.id == *id);
                if !alive {
                    bar.finish_and_clear();
                    multi.remove(bar);
                }
                alive
            });
            for op in &running {
                let bar = bars.entry(op.id).or_insert_with(|| {
                    let bar = ProgressBar::new(op.bytes_total)
                        .with_style(bar_style())
                        .with_prefix(op.kind.name())
                        .with_message(message(op))
                        .with_elapsed(op.elapsed);
                    multi.add(bar)
                });
                bar.set_length(op.bytes_total);
                bar.set_position(op.bytes_done);
                bar.set_message(message(op));
            }
            match (&spinner, bars.is_empty()) {
                (None, true) => {
                    let bar = ProgressBar::new_spinner()
                        .with_style(spinner_style())
                        .with_message(label.to_string())
                        .with_elapsed(started.elapsed());
                    bar.enable_steady_tick(Duration::from_millis(120));
                    spinner = Some(multi.add(bar));
                }
                (Some(bar), false) => {
                    bar.finish_and_clear();
                    multi.remove(bar);
                    spinner = None;
                }
                _ => {}
            }
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    for bar in bars.values().chain(&spinner) {
        bar.finish_and_clear();
    }
    let _ = multi.clear();
}
