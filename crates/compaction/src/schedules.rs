//! The maintainer's two schedules, each a [`Schedule`] whose job holds the maintainer weakly
//! (once it is gone, runs do nothing): compaction
//! ([`Maintainer::start_compaction_schedule`], its next run shown in health) and backups
//! ([`Maintainer::start_backup_schedule`]). Both wait for a maintenance operation in progress
//! rather than skip a run.

use std::sync::{Arc, Weak};
use std::time::SystemTime;

use crate::backup::BackupOptions;
use crate::compact::CompactOptions;
use crate::maintainer::Maintainer;
use crate::report::Trigger;
use crate::scheduler::{Schedule, StartScheduleError};

impl Maintainer {
    /// Start the compaction schedule: every [`crate::CompactionConfig::interval`],
    /// [`Maintainer::compact_all`] with [`Trigger::Schedule`] (waiting for a maintenance
    /// operation in progress to end). The first run is one interval from now. Stopping the
    /// schedule during a run lets the table being compacted finish and skips the others. The
    /// schedule holds the maintainer weakly: once the maintainer is gone, runs do nothing. Its
    /// next run time shows in [`Maintainer::health_metrics`].
    pub fn start_compaction_schedule(self: &Arc<Self>) -> Result<Schedule, StartScheduleError> {
        let maintainer: Weak<Maintainer> = Arc::downgrade(self);
        let schedule = Schedule::start_stoppable(
            "compaction-schedule",
            self.config.compaction.interval,
            move |stopping| {
                let Some(maintainer) = maintainer.upgrade() else {
                    return;
                };
                let options = CompactOptions {
                    trigger: Trigger::Schedule,
                    ..CompactOptions::default()
                };
                if let Err(e) = maintainer.compact_all_until(options, stopping) {
                    tracing::error!(error = %e, "scheduled compaction did not run");
                }
            },
        )?;
        *self
            .compaction_schedule
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = schedule.watch();
        Ok(schedule)
    }

    /// When the compaction schedule runs next: `None` if it was not started, has stopped, or
    /// is in a run.
    pub fn next_compaction(&self) -> Option<SystemTime> {
        let state = self
            .compaction_schedule
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .upgrade();
        state?.next_run()
    }

    /// Start the backup schedule: every [`crate::BackupConfig::interval`], back up all tables
    /// with trigger `schedule` (waiting for a maintenance operation in progress to end). The
    /// first run is one interval from now. The schedule holds the maintainer weakly: once the
    /// maintainer is gone, runs do nothing.
    pub fn start_backup_schedule(self: &Arc<Self>) -> Result<Schedule, StartScheduleError> {
        let maintainer: Weak<Maintainer> = Arc::downgrade(self);
        Schedule::start("backup-schedule", self.config.backup.interval, move || {
            let Some(maintainer) = maintainer.upgrade() else {
                return;
            };
            let options = BackupOptions {
                trigger: Trigger::Schedule,
                wait: true,
            };
            if let Err(e) = maintainer.backup_all(options) {
                tracing::error!(error = %e, "scheduled backup did not run");
            }
        })
    }
}
