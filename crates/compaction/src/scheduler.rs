//! A named thread that runs a job on a fixed interval: [`Schedule`]. It knows nothing of
//! maintenance: a job is a closure. The maintainer's two schedules, compaction and backups,
//! are started in [`crate::schedules`].
//!
//! The next run is planned one interval after the previous run *ended*: a slow run delays the
//! next one and missed ticks are never queued, so runs never pile up. A job that panics is
//! logged and the schedule carries on.
//!
//! Stopping never interrupts a run, but a job started with [`Schedule::start_stoppable`] sees
//! the stop request and can cut its run short (compaction skips its remaining tables).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};

/// A running schedule. Dropping it (or [`Schedule::stop`]) stops the thread and joins it; a
/// run in progress is finished first, never interrupted.
#[derive(Debug)]
pub struct Schedule {
    // Field order matters: `stop` must drop before the thread is joined in `Drop`, so that
    // the thread sees its channel close.
    /// Closing it tells the thread to stop.
    stop: Option<Sender<()>>,
    /// Shared with the thread: the next run time, the run count, the stop request.
    state: Arc<ScheduleState>,
    /// Joined on drop.
    thread: Option<JoinHandle<()>>,
    /// The schedule's name (also the thread's name).
    name: String,
}

/// What a schedule's thread publishes.
#[derive(Debug, Default)]
pub(crate) struct ScheduleState {
    /// When the next run is due; `None` while a run is in progress or once stopped.
    next_run: Mutex<Option<SystemTime>>,
    /// Runs finished so far.
    n_runs: AtomicU64,
    /// Set when the schedule is asked to stop; a stoppable job sees it during its run.
    stopping: Arc<AtomicBool>,
}

impl ScheduleState {
    fn set_next(&self, next: Option<SystemTime>) {
        *self.next_run.lock().unwrap_or_else(|p| p.into_inner()) = next;
    }

    /// When the next run is due.
    pub(crate) fn next_run(&self) -> Option<SystemTime> {
        *self.next_run.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Starting a schedule failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartScheduleError {
    /// The thread could not be spawned.
    #[error("cannot spawn the schedule thread: {0}")]
    Spawn(#[from] std::io::Error),
}

impl Schedule {
    /// Run `job` every `interval`, the first time one interval from now, on a thread named
    /// `name`.
    pub fn start(
        name: &str,
        interval: Duration,
        mut job: impl FnMut() + Send + 'static,
    ) -> Result<Schedule, StartScheduleError> {
        Schedule::start_stoppable(name, interval, move |_| job())
    }

    /// Like [`Schedule::start`], for a job that can end a run early: the flag it is given turns
    /// true as soon as the schedule is asked to stop (a stop waits for the run to return).
    pub fn start_stoppable(
        name: &str,
        interval: Duration,
        mut job: impl FnMut(&AtomicBool) + Send + 'static,
    ) -> Result<Schedule, StartScheduleError> {
        Schedule::start_stoppable_after(name, interval, interval, move |s| job(s))
    }

    /// Like [`Schedule::start_stoppable`], the first run `first` from now rather than one
    /// interval; the job gets the stop request as a flag it can share with other threads.
    pub fn start_stoppable_after(
        name: &str,
        first: Duration,
        interval: Duration,
        job: impl FnMut(&Arc<AtomicBool>) + Send + 'static,
    ) -> Result<Schedule, StartScheduleError> {
        let (stop, stopped) = bounded::<()>(0);
        let state = Arc::new(ScheduleState::default());
        state.set_next(Some(SystemTime::now() + first));
        let thread = {
            let state = state.clone();
            let name = name.to_string();
            std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || run(&name, first, interval, job, &stopped, &state))?
        };
        Ok(Schedule {
            stop: Some(stop),
            state,
            thread: Some(thread),
            name: name.to_string(),
        })
    }

    /// The schedule's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// When the next run is due; `None` while a run is in progress or after the schedule
    /// stopped.
    pub fn next_run(&self) -> Option<SystemTime> {
        self.state.next_run()
    }

    /// The state the thread publishes, held weakly (it goes away with the schedule).
    pub(crate) fn watch(&self) -> Weak<ScheduleState> {
        Arc::downgrade(&self.state)
    }

    /// Runs finished so far.
    pub fn n_runs(&self) -> u64 {
        self.state.n_runs.load(Ordering::SeqCst)
    }

    /// Ask the schedule to stop without waiting: a run in progress sees the request (if its
    /// job is stoppable) and no run starts after it. Use it to wind several schedules down
    /// at once before dropping them.
    pub fn request_stop(&self) {
        self.state.stopping.store(true, Ordering::SeqCst);
        if let Some(stop) = &self.stop {
            // Wakes the thread if it is waiting for the next run; otherwise it sees the flag.
            let _ = stop.try_send(());
        }
    }

    /// Stop: tell a run in progress to end early (if its job is stoppable), wait for it to
    /// end, then for the thread to exit.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Schedule {
    fn drop(&mut self) {
        self.state.stopping.store(true, Ordering::SeqCst);
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(
    name: &str,
    first: Duration,
    interval: Duration,
    mut job: impl FnMut(&Arc<AtomicBool>),
    stopped: &Receiver<()>,
    state: &ScheduleState,
) {
    let mut wait = first;
    // Anything but a timeout means the handle dropped its sender (or sent a stop): leave.
    while !state.stopping.load(Ordering::SeqCst)
        && let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(wait)
    {
        wait = interval;
        state.set_next(None);
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| job(&state.stopping))) {
            let text = store_owners::panic_text(&panic);
            tracing::error!(schedule = name, panic = %text, "scheduled job panicked");
        }
        state.n_runs.fetch_add(1, Ordering::SeqCst);
        // Planned from the end of this run: a slow run delays the next one.
        state.set_next(Some(SystemTime::now() + interval));
    }
    state.set_next(None);
    tracing::info!(schedule = name, "schedule stopped");
}
