//! Automatic recovery: [`Maintainer::start_auto_recovery`] runs a thread that listens to the
//! tables' reports (corruption found at open or at run time, a file lost or unavailable) and
//! recovers each reported table that still needs it with
//! [`Maintainer::recover_corrupt_table`]: the newest verified backup, or degraded mode. A
//! table that is merely unavailable is first asked to reopen, since a restore would roll back
//! its writes since the last backup.

use std::sync::{Arc, Weak};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded, select};
use store_owners::TableStatus;

use crate::maintainer::Maintainer;

/// The running automatic recovery. Dropping it (or [`AutoRecovery::stop`]) stops the thread,
/// after a recovery in progress ends.
#[derive(Debug)]
pub struct AutoRecovery {
    // Field order matters: the stop sender drops before the join, so the thread sees it.
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl AutoRecovery {
    /// Stop listening and wait for the thread.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for AutoRecovery {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starting automatic recovery failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AutoRecoveryError {
    /// The recovery thread could not be spawned.
    #[error("cannot start the recovery thread: {0}")]
    Spawn(#[source] std::io::Error),
}

impl Maintainer {
    /// Listen to corruption reports (the `corruption_reports` channel given to the tables) and
    /// recover each reported table that is still corrupt or unavailable, with trigger auto.
    /// Reports queued before the call are handled too. The thread holds the maintainer
    /// weakly and ends once it is gone, or when the handle is dropped.
    pub fn start_auto_recovery(
        self: &Arc<Self>,
        reports: Receiver<&'static str>,
    ) -> Result<AutoRecovery, AutoRecoveryError> {
        let (stop, stopped) = bounded::<()>(0);
        // Held weakly, like the schedules: the thread never keeps the tables open.
        let weak: Weak<Maintainer> = Arc::downgrade(self);
        let thread = std::thread::Builder::new()
            .name("auto-recovery".into())
            .spawn(move || {
                loop {
                    let table = select! {
                        recv(reports) -> table => match table {
                            Ok(table) => table,
                            Err(_) => break,
                        },
                        recv(stopped) -> _ => break,
                    };
                    let Some(maintainer) = weak.upgrade() else {
                        break;
                    };
                    let Some(owner) = maintainer.owner_of(table) else {
                        continue;
                    };
                    let status = owner.shared().status();
                    if !status.needs_restore() {
                        tracing::info!(table, %status, "report ignored: table serving");
                        continue;
                    }
                    // A file that merely did not open (busy, a transient I/O error) may open
                    // now: a restore would roll back its writes since the last backup.
                    if matches!(status, TableStatus::Unavailable(_)) && owner.reopen().is_ok() {
                        tracing::info!(table, "table reopened; no restore needed");
                        continue;
                    }
                    if let Err(e) = maintainer.recover_corrupt_table(table) {
                        tracing::error!(table, error = %e, "automatic recovery failed");
                    }
                }
            })
            .map_err(AutoRecoveryError::Spawn)?;
        Ok(AutoRecovery {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}
