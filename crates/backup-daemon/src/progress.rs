//! A spinner on stderr while a long operation runs, shown only when stderr is a terminal.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Spins until dropped; the line is erased on drop.
#[derive(Debug)]
pub struct Spinner {
    /// Tells the spinner thread to erase its line and stop.
    done: Arc<AtomicBool>,
    /// The spinner thread; joined on drop so the line is gone before anything else prints.
    thread: Option<JoinHandle<()>>,
}

impl Spinner {
    /// Start spinning with `label`, if stderr is a terminal.
    pub fn start(label: &str) -> Spinner {
        let done = Arc::new(AtomicBool::new(false));
        let thread = std::io::stderr().is_terminal().then(|| {
            let done = done.clone();
            let label = label.to_string();
            std::thread::Builder::new()
                .name("spinner".into())
                .spawn(move || spin(&label, &done))
                .expect("spawning the spinner thread")
        });
        Spinner { done, thread }
    }
}

fn spin(label: &str, done: &AtomicBool) {
    const FRAMES: [char; 4] = ['|', '/', '-', '\\'];
    let started = Instant::now();
    let mut i = 0;
    while !done.load(Ordering::Relaxed) {
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r{} {label} ({}s)",
            FRAMES[i % FRAMES.len()],
            started.elapsed().as_secs()
        );
        let _ = err.flush();
        drop(err);
        i += 1;
        std::thread::sleep(Duration::from_millis(120));
    }
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r\x1b[2K");
    let _ = err.flush();
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
